{#- HAProxy on every node: binds every VIP (ip_nonlocal_bind), health-checks
    and balances over nginx on every member. Checked by `haproxy -c` before it
    replaces the live file; reloads are hitless (master-worker). -#}
{%- from tpldir ~ "/map.jinja" import pt with context %}

include:
  - {{ tpldir }}.common

proxytier-haproxy-pkg:
  pkg.installed:
    - pkgs:
      - {{ pt.params.pkgs.haproxy }}
      - {{ pt.params.pkgs.python3 }}  # haproxy-save-state

{%- if pt.tls_files %}

proxytier-haproxy-tls-dir:
  file.directory:
    - name: {{ pt.params.tls_dir }}
    - user: root
    - group: root
    - mode: "0700"
    - require:
      - pkg: proxytier-haproxy-pkg
{%- for f in pt.tls_files %}

proxytier-haproxy-tls-{{ f.path }}:
  file.managed:
    - name: {{ f.path }}
    - source: salt://{{ tpldir }}/templates/tls.pem.jinja
    - template: jinja
    - context:
        pem: {{ f.contents | json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - check_cmd: {{ pt.params.libexec_dir }}/check-haproxy-crt
    - require:
      - file: proxytier-haproxy-tls-dir
      - file: proxytier-common-check-haproxy-crt
    - require_in:
      - file: proxytier-haproxy-config
    - watch_in:
      - service: proxytier-haproxy-service
{%- endfor %}
{%- endif %}

proxytier-haproxy-config:
  file.managed:
    - name: {{ pt.params.config.haproxy }}
    - source: salt://{{ tpldir }}/templates/haproxy.cfg.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - user: root
    - group: root
    - mode: "0644"
    - check_cmd: {{ pt.params.bin.haproxy }} -c -f
    - require:
      - pkg: proxytier-haproxy-pkg
      - sysctl: proxytier-common-nonlocal-bind

{%- set guard = pt.params.libexec_dir ~ "/haproxy-reload-guard" %}
{%- set guard_pid = pt.params.haproxy_state_file ~ ".worker-pid" %}

# Runtime changes (a drained server, a weight) survive the reload below: the
# states are saved where the new process loads them (load-server-state-from-file).
proxytier-haproxy-save-state:
  cmd.run:
    - name: {{ guard }} before {{ pt.params.haproxy_admin_socket }} {{ pt.params.haproxy_state_file }} {{ guard_pid }}
    - onchanges:
      - file: proxytier-haproxy-config
    - require:
      - file: proxytier-common-haproxy-reload-guard
    - require_in:
      - service: proxytier-haproxy-service

proxytier-haproxy-service:
  service.running:
    - name: {{ pt.params.services.haproxy }}
    - enable: True
    - reload: True
    - watch:
      - file: proxytier-haproxy-config

# Debian's reload exits 0 even when the new process cannot load the config (the
# old worker keeps serving): fail the state unless a new worker answers.
proxytier-haproxy-reloaded:
  cmd.run:
    - name: {{ guard }} after {{ pt.params.haproxy_admin_socket }} {{ guard_pid }}
    - onchanges:
      - file: proxytier-haproxy-config
    - require:
      - service: proxytier-haproxy-service
