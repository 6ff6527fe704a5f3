{#- What the daemons write to for the exporter, made before they start: its user, its runtime
    directory with keepalived's notify FIFO (systemd-tmpfiles, so it exists at boot before
    keepalived starts: a FIFO keepalived made itself would be root's and unreadable), and the
    access log nginx writes for it (owned by nginx's user, group the exporter's, 0640: the
    exporter reads it without joining adm; its directory is made by proxytier.check, since
    nginx -t opens the file) with the logrotate file that rotates it. The exporter process
    itself is proxytier.exporter. -#}
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
      ("logrotate", pt.params.logrotate_dir ~ "/" ~ pt.params.exporter_service, "logrotate.jinja"),
    ] %}

proxytier-exporter-{{ id }}:
  file.managed:
    - name: {{ path }}
    - source: salt://{{ tplroot }}/templates/exporter/{{ template }}
    - template: jinja
    - context:
        tplroot: {{ tplroot | json }}  # the template imports map.jinja (one model per run), not a copy of it here
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

proxytier-exporter-access-log:
  file.managed:
    - name: {{ pt.exporter.access_log }}
    - replace: False
    - user: {{ pt.params.nginx_user }}
    - group: {{ pt.params.exporter_user }}
    - mode: "0640"
    - require:
      - user: proxytier-exporter-user
      - test: proxytier-check-all

{#- Before the access log was a file, nginx sent it to a datagram socket of a systemd socket unit. #}
proxytier-exporter-socket-unit-retired:
  service.dead:
    - name: {{ pt.params.exporter_service }}.socket
    - enable: False
  file.absent:
    - name: {{ unit_dir }}.socket
    - require:
      - service: proxytier-exporter-socket-unit-retired

{#- A socket that failed before it was retired (e.g. 'service-start-limit-hit': it activated the exporter
    before the exporter was installed) stays in systemd's failed list, unit file gone, until reset. #}
proxytier-exporter-socket-unit-reset:
  cmd.run:
    - name: systemctl daemon-reload && systemctl reset-failed {{ pt.params.exporter_service }}.socket
    - onlyif: systemctl is-failed --quiet {{ pt.params.exporter_service }}.socket
    - require:
      - file: proxytier-exporter-socket-unit-retired
{%- endif %}
