{#- Shared by every daemon SLS: the kernel setting HAProxy needs to bind VIPs a node does not
    hold, and the helper scripts (check commands). -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

include:
  - {{ tplroot }}.packages

proxytier-common-nonlocal-bind:
  sysctl.present:
    - name: net.ipv4.ip_nonlocal_bind
    - value: 1
    - config: {{ pt.params.sysctl_file }}
    - require:
      - pkg: proxytier-packages
{%- if pt.ipv6 is defined %}

# the same for IPv6 VIPs (only in a tier with IPv6: a node booted with ipv6.disable=1 has no such key)
proxytier-common-nonlocal-bind-ipv6:
  sysctl.present:
    - name: net.ipv6.ip_nonlocal_bind
    - value: 1
    - config: {{ pt.params.sysctl_file }}
    - require:
      - pkg: proxytier-packages
{%- endif %}

# keepalived's vrrp_script runs as this user (script_user), not as root
proxytier-common-check-user:
  user.present:
    - name: {{ pt.params.check_user }}
    - system: True
    - usergroup: True
    - createhome: False
    - home: /nonexistent
    - shell: /usr/sbin/nologin

proxytier-common-libexec:
  file.directory:
    - name: {{ pt.params.libexec_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

{%- for script in ("check-haproxy", "check-haproxy-crt", "check-keepalived") %}

proxytier-common-{{ script }}:
  file.managed:
    - name: {{ pt.params.libexec_dir }}/{{ script }}
    - source: salt://{{ tplroot }}/files/{{ script }}
    - user: root
    - group: root
    - mode: "0755"
    - require:
      - file: proxytier-common-libexec
{%- endfor %}
