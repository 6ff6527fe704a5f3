{#- vip_mode bgp: every node announces every service address (proxytier:vips) to the routers of
    proxytier:bgp with BIRD, only while its HAProxy serves (proxytier-bgp-gate), with BFD. The
    addresses live on the node's loopback (the gate puts them there), so HAProxy binds them and
    established connections survive a withdraw. keepalived holds nothing in this mode: it is
    stopped and disabled. BIRD's configuration is checked by `bird -p` with every other
    configuration of the change (proxytier.check) before it replaces the live file; a change
    reloads BIRD (`birdc configure`: sessions whose settings did not change stay up), it is never
    restarted for config. salt/_utils/proxytier_bgp.py says why BIRD and why this gate. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}
{%- set b = pt.bgp %}

include:
  - {{ tplroot }}.check
  - {{ tplroot }}.common
  - {{ tplroot }}.systemd
  - {{ tplroot }}.haproxy

# in this mode no node may answer VRRP for an address: keepalived goes, and its VIPs with it
# (its drop-in, written in VRRP mode, deletes them when it stops)
proxytier-bgp-keepalived-stopped:
  service.dead:
    - name: {{ pt.params.services.keepalived }}
    - enable: False

# the service addresses are on the loopback of every node: answer ARP only for addresses of the
# interface asked on, and never use them as the source of ARP requests (the LVS-DR settings)
{%- for key, value in (("net.ipv4.conf.all.arp_ignore", 1), ("net.ipv4.conf.all.arp_announce", 2)) %}

proxytier-bgp-sysctl-{{ key }}:
  sysctl.present:
    - name: {{ key }}
    - value: {{ value }}
    - config: {{ pt.params.sysctl_file }}
    - require:
      - pkg: proxytier-packages
{%- endfor %}

proxytier-bgp-gate-script:
  file.managed:
    - name: {{ b.gate_unit.script }}
    - source: salt://{{ tplroot }}/files/proxytier_bgp_gate.py
    - user: root
    - group: root
    - mode: "0755"
    - require:
      - file: proxytier-common-libexec

proxytier-bgp-gate-config:
  file.serialize:
    - name: {{ b.paths.gate_config }}
    - dataset: {{ b.gate | json }}
    - serializer: json
    - makedirs: True
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - test: proxytier-check-all

proxytier-bgp-gate-unit:
  file.managed:
    - name: {{ b.paths.gate_unit }}
    - source: salt://{{ tplroot }}/templates/bgp-gate.service.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot | json }}  # the template imports map.jinja (one model per run), not a copy of it here
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - test: proxytier-check-all

proxytier-bgp-gate-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: proxytier-bgp-gate-unit

# a changed configuration is re-read (SIGHUP: the announcement stays); a changed script or unit
# restarts the gate (a withdraw of rise x interval, ~0.6 s)
proxytier-bgp-gate-service:
  service.running:
    - name: proxytier-bgp-gate
    - enable: True
    - reload: True
    - require:
      - cmd: proxytier-bgp-gate-daemon-reload
      - service: proxytier-haproxy-service
      - service: proxytier-bgp-keepalived-stopped
    - watch:
      - file: proxytier-bgp-gate-config

proxytier-bgp-gate-restarted:
  cmd.run:
    - name: systemctl try-restart proxytier-bgp-gate
    - onchanges:
      - file: proxytier-bgp-gate-script
      - file: proxytier-bgp-gate-unit
    - require:
      - service: proxytier-bgp-gate-service

proxytier-bgp-config:
  file.managed:
    - name: {{ b.paths.config }}
    - source: {{ pt.params.staging_dir }}/bird.conf
    - user: root
    - group: {{ b.user }}
    # BIRD runs as its user and reads the peers' passwords here
    - mode: "0640"
    - show_changes: False
    - require:
      - test: proxytier-check-all

proxytier-bgp-service:
  service.running:
    - name: {{ b.service }}
    - enable: True
    - reload: True
    - require:
      - service: proxytier-bgp-keepalived-stopped
    - watch:
      - file: proxytier-bgp-config
