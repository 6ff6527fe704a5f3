{#- The node's packet filter (templates/filter.nft.jinja: VRRP and the nginx listeners only from
    the tier's members), checked by `nft -c` with every other configuration of the change, loaded
    as one transaction by proxytier-filter.service, which also loads it at boot before keepalived
    and nginx start. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.check

proxytier-firewall-rules:
  file.managed:
    - name: {{ pt.firewall.file }}
    - source: {{ pt.params.staging_dir }}/filter.conf
    - makedirs: True
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - test: proxytier-check-all
{%- if grains.get("init") == "systemd" %}

proxytier-firewall-unit:
  file.managed:
    - name: {{ pt.params.systemd_dropin_dir }}/proxytier-filter.service
    - source: salt://{{ tplroot }}/templates/filter.service.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot | json }}  # the template imports map.jinja (one model per run), not a copy of it here
    - mode: "0644"
    - require:
      - test: proxytier-check-all

proxytier-firewall-service:
  service.running:
    - name: proxytier-filter
    - enable: True
    - reload: True
    - require:
      - file: proxytier-firewall-unit
      - file: proxytier-firewall-rules
    - watch:
      - file: proxytier-firewall-unit

{#- A changed ruleset is loaded by nft from here, as one transaction (the file replaces the table:
    no moment without a filter), not through the unit: a restart runs ExecStop (delete the table)
    first, and in the lab's containers (systemd 252) starting or reloading this oneshot unit again
    failed intermittently with status 219/CGROUP. The unit loads the file at boot. #}
proxytier-firewall-load:
  cmd.run:
    - name: {{ ((pt.params.nft | quote) ~ " -f " ~ (pt.firewall.file | quote)) | yaml_dquote }}
    - onchanges:
      - file: proxytier-firewall-rules
    - require:
      - service: proxytier-firewall-service
{%- else %}

proxytier-firewall-service:
  cmd.run:
    - name: {{ ((pt.params.nft | quote) ~ " -f " ~ (pt.firewall.file | quote)) | yaml_dquote }}
    - onchanges:
      - file: proxytier-firewall-rules
{%- endif %}
