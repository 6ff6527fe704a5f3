{#- The TLS certificates HAProxy terminates with, from pillar PEM text: each staged file is loaded
    by HAProxy itself (check-haproxy-crt) before it replaces the live one; 0600 root; its
    contents never appear in state output (show_changes off). -#}
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
  file.managed:
    - name: {{ f.path }}
    - source: salt://{{ tplroot }}/templates/tls.pem.jinja
    - template: jinja
    - context:
        pem: {{ f.contents | json }}
    - user: root
    - group: root
    - mode: "0600"
    - show_changes: False
    - check_cmd: {{ ((pt.params.libexec_dir ~ "/check-haproxy-crt") | quote) | yaml_dquote }}
    - require:
      - file: proxytier-tls-dir
      - file: proxytier-common-check-haproxy-crt
    - require_in:
      - test: proxytier-tls-files
{%- endfor %}

{#- Every certificate is in place (the HAProxy check and reload wait for this). #}
proxytier-tls-files:
  test.nop:
    - require:
      - file: proxytier-tls-dir
