{#- HAProxy on every node: binds every VIP (ip_nonlocal_bind), health-checks and balances over
    nginx on every member. Checked by `haproxy -c` with every other configuration of the change
    (proxytier.check) before it replaces the live file; reloads are hitless (master-worker), and
    after each one HAProxy's live servers must equal the configuration. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.check
  - {{ tplroot }}.systemd
  - {{ tplroot }}.nginx

proxytier-haproxy-config:
  file.managed:
    - name: {{ pt.params.config.haproxy }}
    - source: {{ pt.params.staging_dir }}/haproxy.conf
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - test: proxytier-check-all

# Runtime changes (a drained server, a weight) survive the reload below: the states are saved
# where the new process loads them (load-server-state-from-file), except for servers whose
# address or port changed (a saved port would override the new one).
proxytier-haproxy-save-state:
  module.run:
    - proxytier.haproxy_save_state: []
    - onchanges:
      - file: proxytier-haproxy-config
    - require_in:
      - service: proxytier-haproxy-service

proxytier-haproxy-service:
  service.running:
    - name: {{ pt.params.services.haproxy }}
    - enable: True
    - reload: True
    - require:
      - cmd: proxytier-systemd-daemon-reload
    - watch:
      - file: proxytier-haproxy-config
{%- for f in pt.tls_files %}
      - proxytier: proxytier-tls-{{ f.path }}
{%- endfor %}
{%- for c in pt.crt_lists | default([]) %}
      - file: proxytier-tls-{{ c.path }}
{%- endfor %}

# Debian's reload exits 0 even when the new process cannot load the config (the old worker keeps
# serving): fail the state unless a new worker answers with the configured servers.
proxytier-haproxy-reloaded:
  module.run:
    - proxytier.haproxy_reloaded: []
    - onchanges:
      - file: proxytier-haproxy-config
    - require:
      - service: proxytier-haproxy-service

# Once HAProxy runs the new servers, record the nginx ports this apply configured: a site whose
# nginx port changed kept its previous port open (listen_also) for the HAProxies that had not
# switched yet; the next apply, reading this record, closes it.
proxytier-haproxy-nginx-ports-record:
  file.serialize:
    - name: {{ pt.params.nginx_ports_file }}
    - dataset: {{ pt.nginx.ports_record | json }}
    - serializer: json
    - makedirs: True
    - mode: "0644"
    - require:
      - service: proxytier-nginx-service
      - module: proxytier-haproxy-reloaded
