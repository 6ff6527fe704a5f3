{#- nginx on the node's own address, balancing over the application backends.
    The whole configuration is one file, checked by `nginx -t` before it
    replaces the live one; a change reloads nginx (never restarts it). -#}
{%- from tpldir ~ "/map.jinja" import pt with context %}

proxytier-nginx-pkg:
  pkg.installed:
    - name: {{ pt.params.pkgs.nginx }}

proxytier-nginx-config:
  file.managed:
    - name: {{ pt.params.config.nginx }}
    - source: salt://{{ tpldir }}/templates/nginx.conf.jinja
    - template: jinja
    - context:
        pt: {{ pt | json }}
    - user: root
    - group: root
    - mode: "0644"
    - check_cmd: {{ pt.params.bin.nginx }} -t -q -c
    - require:
      - pkg: proxytier-nginx-pkg

proxytier-nginx-service:
  service.running:
    - name: {{ pt.params.services.nginx }}
    - enable: True
    - reload: True
    - watch:
      - file: proxytier-nginx-config
