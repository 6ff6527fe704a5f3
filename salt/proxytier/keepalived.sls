{#- keepalived: one VRRP instance per VIP, each preferred on its home member, the others in a
    stable order (proxytier_ownership: a join or leave moves only the VIPs it concerns). Checked by `keepalived -t` on the node with every other
    configuration of the change (proxytier.check) before it replaces the live file; a change
    reloads keepalived (SIGHUP), it is never restarted for config. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}
{%- if pt.bgp is defined %}
{#- vip_mode bgp: the routers, not VRRP, bring clients to the nodes; keepalived is stopped there. #}

include:
  - {{ tplroot }}.bgp
{%- else %}

include:
  - {{ tplroot }}.check
  - {{ tplroot }}.systemd
  - {{ tplroot }}.firewall
{%- if pt.exporter.enabled %}
  - {{ tplroot }}.exporter.room
{%- endif %}

proxytier-keepalived-config:
  file.managed:
    - name: {{ pt.params.config.keepalived }}
    - source: {{ pt.params.staging_dir }}/keepalived.conf
    - user: root
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
    # readable by the exporter (labels, base priorities), not by everyone (auth_pass)
    - group: {{ pt.params.exporter_user }}
{%- else %}
    - group: root
{%- endif %}
    - mode: "0640"
    - require:
      - test: proxytier-check-all
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
      - user: proxytier-exporter-user
{%- endif %}

proxytier-keepalived-service:
  service.running:
    - name: {{ pt.params.services.keepalived }}
    - enable: True
    - reload: True
    - require:
      - cmd: proxytier-systemd-daemon-reload
{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}
      - cmd: proxytier-exporter-tmpfiles
{%- endif %}
    - watch:
      - file: proxytier-keepalived-config
{%- endif %}
