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
{%- set off = salt["proxytier.bgp_files"](pt.params) %}

# Back from vip_mode bgp (nothing to do, and no change, on a node that never ran it): the health
# gate stops (its unit withdraws every address as it stops) and goes; the addresses and routes it
# leaves by design go (proxytier_bgp_gate.py --retire); BIRD stops and is disabled, only where the
# gate's configuration shows that this formula ran it (a BIRD of the node's own is left alone); then
# the gate's files and BIRD's drop-in go. bird2 stays installed, /etc/bird/bird.conf stays.
proxytier-bgp-off-gate:
  service.dead:
    - name: proxytier-bgp-gate
    - enable: False

proxytier-bgp-off-addresses:
  cmd.run:
    - name: {{ pt.params.python3 }} {{ off.gate_script }} --retire {{ off.gate_config }}
    - onlyif: test -f {{ off.gate_config }}
    - require:
      - service: proxytier-bgp-off-gate

proxytier-bgp-off-bird:
  service.dead:
    - name: {{ off.service }}
    - enable: False
    - onlyif: test -f {{ off.gate_config }}
    - require:
      - cmd: proxytier-bgp-off-addresses
{%- for path in (off.gate_config, off.gate_unit, off.gate_script, off.bird_dropin) %}

proxytier-bgp-off-{{ path }}:
  file.absent:
    - name: {{ path }}
    - require:
      - service: proxytier-bgp-off-bird
{%- endfor %}

proxytier-bgp-off-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: proxytier-bgp-off-{{ off.gate_unit }}
      - file: proxytier-bgp-off-{{ off.bird_dropin }}

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
