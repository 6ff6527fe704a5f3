{#- What the daemons write to for the exporter, made before they start: its user, its runtime
    directory with keepalived's notify FIFO (systemd-tmpfiles, so it exists at boot before
    keepalived starts: a FIFO keepalived made itself would be root's and unreadable), and the
    socket nginx sends its JSON access log to (a systemd socket unit, which needs the service
    unit to exist). The exporter process itself is proxytier.exporter. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
{%-   set unit_dir = pt.params.systemd_dropin_dir ~ "/" ~ pt.params.exporter_service %}

include:
  - {{ tplroot }}.check

proxytier-exporter-user:
  user.present:
    - name: {{ pt.params.exporter_user }}
    - system: True
    - usergroup: True
    - createhome: False
    - home: /nonexistent
    - shell: /usr/sbin/nologin
{%- for id, path, template in [
      ("tmpfiles-conf", pt.params.tmpfiles_dir ~ "/" ~ pt.params.exporter_service ~ ".conf", "tmpfiles.conf.jinja"),
      ("unit", unit_dir ~ ".service", "exporter.service.jinja"),
      ("socket-unit", unit_dir ~ ".socket", "exporter.socket.jinja"),
    ] %}

proxytier-exporter-{{ id }}:
  file.managed:
    - name: {{ path }}
    - source: salt://{{ tplroot }}/templates/exporter/{{ template }}
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - mode: "0644"
    - require:
      - user: proxytier-exporter-user
      - test: proxytier-check-all
{%- endfor %}

proxytier-exporter-tmpfiles:
  cmd.run:
    - name: {{ ("systemd-tmpfiles --create " ~ ((pt.params.tmpfiles_dir ~ "/" ~ pt.params.exporter_service ~ ".conf") | quote)) | yaml_dquote }}
    - creates: {{ pt.exporter.fifo }}
    - require:
      - file: proxytier-exporter-tmpfiles-conf

proxytier-exporter-socket:
  service.running:
    - name: {{ pt.params.exporter_service }}.socket
    - enable: True
    - require:
      - cmd: proxytier-exporter-tmpfiles
      - file: proxytier-exporter-unit
    - watch:
      - file: proxytier-exporter-socket-unit
{%- endif %}
