{#- Shared by every daemon SLS: the kernel setting HAProxy needs to bind VIPs
    a node does not hold, and the helper scripts (check commands). -#}
{%- from tpldir ~ "/map.jinja" import pt with context %}

proxytier-common-pkgs:
  pkg.installed:
    - pkgs:
      - {{ pt.params.pkgs.procps }}  # sysctl, for sysctl.present
      - {{ pt.params.pkgs.nftables }}  # nft, for proxytier.handover (its service stays off)

proxytier-common-nonlocal-bind:
  sysctl.present:
    - name: net.ipv4.ip_nonlocal_bind
    - value: 1
    - config: {{ pt.params.sysctl_file }}
    - require:
      - pkg: proxytier-common-pkgs

proxytier-common-libexec:
  file.directory:
    - name: {{ pt.params.libexec_dir }}
    - user: root
    - group: root
    - mode: "0755"
    - makedirs: True

{%- for script in ("check-haproxy", "check-haproxy-crt", "check-keepalived", "haproxy-reload-guard") %}

proxytier-common-{{ script }}:
  file.managed:
    - name: {{ pt.params.libexec_dir }}/{{ script }}
    - source: salt://{{ tpldir }}/files/{{ script }}
    - user: root
    - group: root
    - mode: "0755"
    - require:
      - file: proxytier-common-libexec
{%- endfor %}

{%- if pt.exporter.enabled and grains.get("init") == "systemd" %}

{#- What the daemons write to must exist before they start: the exporter's
    user, its runtime dir with keepalived's notify FIFO, and the socket nginx
    sends its JSON access log to. The exporter itself is proxytier.exporter. #}
proxytier-common-exporter-user:
  user.present:
    - name: {{ pt.params.exporter_user }}
    - system: True
    - usergroup: True
    - createhome: False
    - home: /nonexistent
    - shell: /usr/sbin/nologin

proxytier-common-exporter-tmpfiles:
  file.managed:
    - name: {{ pt.params.tmpfiles_dir }}/{{ pt.params.exporter_service }}.conf
    - source: salt://{{ tpldir }}/templates/exporter/tmpfiles.conf.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - mode: "0644"
    - require:
      - user: proxytier-common-exporter-user
  cmd.run:
    - name: systemd-tmpfiles --create {{ pt.params.tmpfiles_dir }}/{{ pt.params.exporter_service }}.conf
    - unless: test -p {{ pt.exporter.fifo }} && test "$(stat -c %U {{ pt.exporter.fifo }})" = {{ pt.params.exporter_user }}
    - require:
      - file: proxytier-common-exporter-tmpfiles

# systemd refuses to start a socket whose service unit does not exist yet
proxytier-common-exporter-unit:
  file.managed:
    - name: {{ pt.params.systemd_dropin_dir }}/{{ pt.params.exporter_service }}.service
    - source: salt://{{ tpldir }}/templates/exporter/exporter.service.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - mode: "0644"

proxytier-common-exporter-socket:
  file.managed:
    - name: {{ pt.params.systemd_dropin_dir }}/{{ pt.params.exporter_service }}.socket
    - source: salt://{{ tpldir }}/templates/exporter/exporter.socket.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - mode: "0644"
    - require:
      - cmd: proxytier-common-exporter-tmpfiles
      - file: proxytier-common-exporter-unit
  service.running:
    - name: {{ pt.params.exporter_service }}.socket
    - enable: True
    - watch:
      - file: proxytier-common-exporter-socket
{%- endif %}
