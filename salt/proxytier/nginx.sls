{#- nginx on the node's own address, balancing over the application backends. The whole
    configuration is one file, checked by `nginx -t` with every other configuration of the change
    (proxytier.check) before it replaces the live one; a change reloads nginx (never restarts it). -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.check
  - {{ tplroot }}.systemd
{%- if pt.exporter.enabled %}
  - {{ tplroot }}.exporter.room
{%- endif %}

proxytier-nginx-config:
  file.managed:
    - name: {{ pt.params.config.nginx }}
    - source: {{ pt.params.staging_dir }}/nginx.conf
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - test: proxytier-check-all

proxytier-nginx-service:
  service.running:
    - name: {{ pt.params.services.nginx }}
    - enable: True
    - reload: True
    - require:
      - cmd: proxytier-systemd-daemon-reload
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
      - file: proxytier-exporter-access-log
{%- endif %}
    - watch:
      - file: proxytier-nginx-config
