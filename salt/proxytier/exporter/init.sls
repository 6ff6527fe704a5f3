{#- proxytier-exporter on the node: Debian's python3-prometheus-client plus the package files
    served by the Salt master (no PyPI on nodes), run by systemd as its own unprivileged user.
    See exporter/README.md for every privilege. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}
{%- if pt.exporter.enabled %}

include:
  - {{ tplroot }}.exporter.room

proxytier-exporter-pkgs:
  pkg.installed:
    - pkgs: {{ pt.params.exporter_pkgs | json }}

proxytier-exporter-files:
  file.recurse:
    - name: {{ pt.params.exporter_lib_dir }}/proxytier_exporter
    - source: salt://{{ tplroot }}/files/proxytier_exporter
    - user: root
    - group: root
    - dir_mode: "0755"
    - file_mode: "0644"
    - clean: True
    - exclude_pat: E@(__pycache__|\.pyc$)

proxytier-exporter-service:
  service.running:
    - name: {{ pt.params.exporter_service }}
    - enable: True
    - require:
      - pkg: proxytier-exporter-pkgs
      - cmd: proxytier-exporter-tmpfiles
      - file: proxytier-exporter-access-log
    - watch:
      - file: proxytier-exporter-files
      - file: proxytier-exporter-unit
{%- endif %}
