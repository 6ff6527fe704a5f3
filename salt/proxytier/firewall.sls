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
        pt: {{ pt | json }}
    - mode: "0644"
    - require:
      - test: proxytier-check-all

proxytier-firewall-service:
  service.running:
    - name: proxytier-filter
    - enable: True
    # a changed ruleset or unit reloads (ExecReload: one nft transaction); a restart would delete
    # the table first (ExecStop) and leave the node without a filter for a moment
    - reload: True
    - require:
      - file: proxytier-firewall-unit
    - watch:
      - file: proxytier-firewall-rules
      - file: proxytier-firewall-unit
{%- else %}

proxytier-firewall-service:
  cmd.run:
    - name: {{ ((pt.params.nft | quote) ~ " -f " ~ (pt.firewall.file | quote)) | yaml_dquote }}
    - onchanges:
      - file: proxytier-firewall-rules
{%- endif %}
