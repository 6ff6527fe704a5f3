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
    - group: root
    - mode: "0640"
    - check_cmd: {{ pt.params.libexec_dir }}/check-keepalived
    - require:
      - pkg: proxytier-keepalived-pkg
      - file: proxytier-common-check-haproxy
      - file: proxytier-common-check-keepalived

proxytier-keepalived-service:
  service.running:
    - name: {{ pt.params.services.keepalived }}
    - enable: True
    - reload: True
    - watch:
      - file: proxytier-keepalived-config
