{#- systemd drop-ins of the tier's daemons (the model's systemd_dropins: restart policy, stop
    order, VIP release), written only after every configuration is checked, then one
    daemon-reload. The daemons' service states require proxytier-systemd-daemon-reload. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}
{%- set dropins = pt.systemd_dropins if grains.get("init") == "systemd" else [] %}

include:
  - {{ tplroot }}.check
{%- for dropin in dropins %}

proxytier-systemd-{{ dropin.service }}-dropin:
  file.managed:
    - name: {{ dropin.path }}
    - source: salt://{{ tplroot }}/templates/restart.conf.jinja
    - template: jinja
    - context:
        dropin: {{ dropin | json }}
    - makedirs: True
    - mode: "0644"
    - require:
      - test: proxytier-check-all
{%- endfor %}

proxytier-systemd-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
{%- if dropins %}
    - onchanges:
{%-   for dropin in dropins %}
      - file: proxytier-systemd-{{ dropin.service }}-dropin
{%-   endfor %}
{%- else %}
    - unless: "true"  # no drop-in here (not systemd, or restart_on_failure is empty)
{%- endif %}
