{#- keepalived: one VRRP instance per VIP, this node's priority rotated so that
    each node is the preferred MASTER of its own VIP(s). Checked by
    `keepalived -t` on the node before it replaces the live file; a change
    reloads keepalived (SIGHUP), it is never restarted for config. -#}
{%- from tpldir ~ "/map.jinja" import pt with context %}

include:
  - {{ tpldir }}.common

proxytier-keepalived-pkg:
  pkg.installed:
    - name: {{ pt.params.pkgs.keepalived }}

proxytier-keepalived-config:
  file.managed:
    - name: {{ pt.params.config.keepalived }}
    - source: salt://{{ tpldir }}/templates/keepalived.conf.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - user: root
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
    # readable by the exporter (labels, base priorities), not by everyone (auth_pass)
    - group: {{ pt.params.exporter_user }}
{%- else %}
    - group: root
{%- endif %}
    - mode: "0640"
    - check_cmd: {{ pt.params.libexec_dir }}/check-keepalived
    - require:
      - pkg: proxytier-keepalived-pkg
      - file: proxytier-common-check-haproxy
      - file: proxytier-common-check-keepalived

{%- if grains.get("init") == "systemd" and "keepalived" in pt.params.restart_on_failure %}

proxytier-keepalived-restart-policy:
  file.managed:
    - name: {{ pt.params.systemd_dropin_dir }}/{{ pt.params.services.keepalived }}.service.d/proxytier.conf
    - source: salt://{{ tpldir }}/templates/restart.conf.jinja
    - template: jinja
    - context:
        after: {{ [pt.params.services.haproxy ~ '.service', pt.params.services.nginx ~ '.service'] | json }}
        release_vips: {{ pt.vrrp.instances | json }}
    - makedirs: True
    - mode: "0644"
    - require_in:
      - service: proxytier-keepalived-service

proxytier-keepalived-restart-policy-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: proxytier-keepalived-restart-policy
    - require_in:
      - service: proxytier-keepalived-service
{%- endif %}

proxytier-keepalived-service:
  service.running:
    - name: {{ pt.params.services.keepalived }}
    - enable: True
    - reload: True
    - watch:
      - file: proxytier-keepalived-config
