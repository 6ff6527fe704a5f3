{#- The TLS certificates HAProxy terminates with, from pillar PEM text: each staged file is loaded
    by HAProxy itself (check-haproxy-crt) before it replaces the live one; 0600 root. Key
    material is in no state's data: the model carries each file's path and sha256 only, and the
    state function proxytier.tls_file (salt/_states) gets the PEM from proxytier.tls_pem on the
    node and hands it to file.managed in process, with show_changes off. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.packages
  - {{ tplroot }}.common

proxytier-tls-dir:
  file.directory:
    - name: {{ pt.params.tls_dir }}
    - user: root
    - group: root
    - mode: "0700"
    - require:
      - pkg: proxytier-packages
{%- for f in pt.tls_files %}

proxytier-tls-{{ f.path }}:
  proxytier.tls_file:
    - name: {{ f.path }}
    - user: root
    - group: root
    - mode: "0600"
    - check: {{ ((pt.params.libexec_dir ~ "/check-haproxy-crt") | quote) | yaml_dquote }}
    - require:
      - file: proxytier-tls-dir
      - file: proxytier-common-check-haproxy-crt
    - require_in:
      - test: proxytier-tls-files
{%- endfor %}

{#- The crt-lists of TLS ports shared by several sites (routed by host name): paths and SNI names
    only (no key material), rendered from the model. Each staged file is loaded by HAProxy itself
    (check-haproxy-crt --list) once the certificates it names are in place, before it replaces the
    live one; haproxy -c then checks the staged haproxy.cfg that binds with it (proxytier.check). #}
{%- for c in pt.crt_lists | default([]) %}

proxytier-tls-{{ c.path }}:
  file.managed:
    - name: {{ c.path }}
    - source: salt://{{ tplroot }}/templates/crt-list.jinja
    - template: jinja
    - context:
        crt_list: {{ c | json }}
    - user: root
    - group: root
    - mode: "0600"
    - check_cmd: {{ ((pt.params.libexec_dir ~ "/check-haproxy-crt") | quote ~ " --list") | yaml_dquote }}
    - require:
      - file: proxytier-tls-dir
      - file: proxytier-common-check-haproxy-crt
{%- for f in pt.tls_files %}
      - proxytier: proxytier-tls-{{ f.path }}
{%- endfor %}
    - require_in:
      - test: proxytier-tls-files
{%- endfor %}

{#- Every certificate is in place (the HAProxy check and reload wait for this). #}
proxytier-tls-files:
  test.nop:
    - require:
      - file: proxytier-tls-dir
