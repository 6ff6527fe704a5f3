{#- All or nothing: every configuration a change touches is rendered into a staging directory and
    checked by its own daemon (nginx -t, haproxy -c, keepalived -t, nft -c for the packet
    filter) before ANY live file is
    replaced or any daemon reloaded. The live file states take the staged, checked bytes as their
    source and require every check here: if one check fails, nothing changes on the node. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.packages
  - {{ tplroot }}.common
  - {{ tplroot }}.tls

proxytier-check-staging-dir:
  file.directory:
    - name: {{ pt.params.staging_dir }}
    - user: root
    - group: root
    - mode: "0700"
    - makedirs: True
{%- if pt.exporter.enabled %}

{#- nginx -t opens (and creates) the access log nginx writes for the exporter: its directory must
    exist first. Readable and searchable by all: nginx's workers reopen the file themselves on
    USR1 (as nginx's user); the file's own mode keeps its lines from other users. #}
proxytier-check-exporter-log-dir:
  file.directory:
    - name: {{ pt.exporter.access_log_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True
{%- endif %}
{#- vip_mode bgp: BIRD's configuration (`bird -p`: parse only) instead of keepalived's #}
{%- set vip_daemon = ("bird", "bird.conf.jinja", (pt.bgp.paths.bin | quote) ~ " -p -c") if pt.bgp is defined
      else ("keepalived", "keepalived.conf.jinja", (pt.params.libexec_dir ~ "/check-keepalived") | quote) %}
{%- for daemon, template, check in [
      ("nginx", "nginx.conf.jinja", (pt.params.bin.nginx | quote) ~ " -t -q -c"),
      ("haproxy", "haproxy.cfg.jinja", (pt.params.bin.haproxy | quote) ~ " -c -q -f"),
      vip_daemon,
      ("filter", "filter.nft.jinja", (pt.params.nft | quote) ~ " -c -f"),
    ] %}

proxytier-check-{{ daemon }}:
  file.managed:
    - name: {{ pt.params.staging_dir }}/{{ daemon }}.conf
    - source: salt://{{ tplroot }}/templates/{{ template }}
    - template: jinja
    - context:
        tplroot: {{ tplroot | json }}  # the template imports map.jinja (one model per run), not a copy of it here
    - user: root
    - group: root
    - mode: "0600"
{%- if daemon == "bird" %}
    - show_changes: False  # the peers' passwords
{%- endif %}
    - check_cmd: {{ check | yaml_dquote }}
    - require:
      - file: proxytier-check-staging-dir
{%- if pt.exporter.enabled and daemon == "nginx" %}
      - file: proxytier-check-exporter-log-dir
{%- endif %}
      - pkg: proxytier-packages
      - file: proxytier-common-check-haproxy
      - file: proxytier-common-check-keepalived
      - user: proxytier-common-check-user
      - sysctl: proxytier-common-nonlocal-bind
{%- if pt.ipv6 is defined %}
      - sysctl: proxytier-common-nonlocal-bind-ipv6
{%- endif %}
      - test: proxytier-tls-files
{%- endfor %}

{#- What every live change waits for. #}
proxytier-check-all:
  test.nop:
    - require:
      - file: proxytier-check-nginx
      - file: proxytier-check-haproxy
      - file: proxytier-check-{{ vip_daemon[0] }}
      - file: proxytier-check-filter
