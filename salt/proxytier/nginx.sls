{#- nginx on the node's own address, balancing over the application backends.
    The whole configuration is one file, checked by `nginx -t` before it
    replaces the live one; a change reloads nginx (never restarts it). -#}
{%- from tpldir ~ "/map.jinja" import pt with context %}

include:
  - {{ tpldir }}.common

proxytier-nginx-pkg:
  pkg.installed:
    - name: {{ pt.params.pkgs.nginx }}

proxytier-nginx-config:
  file.managed:
    - name: {{ pt.params.config.nginx }}
    - source: salt://{{ tpldir }}/templates/nginx.conf.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - user: root
    - group: root
    - mode: "0644"
    - check_cmd: {{ pt.params.bin.nginx }} -t -q -c
    - require:
      - pkg: proxytier-nginx-pkg

{%- if grains.get("init") == "systemd" and "nginx" in pt.params.restart_on_failure %}

proxytier-nginx-restart-policy:
  file.managed:
    - name: {{ pt.params.systemd_dropin_dir }}/{{ pt.params.services.nginx }}.service.d/proxytier.conf
    - source: salt://{{ tpldir }}/templates/restart.conf.jinja
    - template: jinja
    - context:
        after: {{ [] | json }}
    - makedirs: True
    - mode: "0644"
    - require_in:
      - service: proxytier-nginx-service

proxytier-nginx-restart-policy-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: proxytier-nginx-restart-policy
    - require_in:
      - service: proxytier-nginx-service
{%- endif %}

proxytier-nginx-service:
  service.running:
    - name: {{ pt.params.services.nginx }}
    - enable: True
    - reload: True
    - watch:
      - file: proxytier-nginx-config
