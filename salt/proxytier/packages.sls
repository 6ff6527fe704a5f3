{#- The tier's packages: every daemon is installed before any configuration is checked, since the
    check of one change runs every daemon's own parser (proxytier.check). -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import pt with context %}

proxytier-packages:
  pkg.installed:
    - pkgs:
      - {{ pt.params.pkgs.procps }}  # sysctl, for sysctl.present
      - {{ pt.params.pkgs.nftables }}  # nft, for proxytier.handover (its service stays off)
      - {{ pt.params.pkgs.nginx }}
      - {{ pt.params.pkgs.haproxy }}
      - {{ pt.params.pkgs.keepalived }}
{%- if pt.bgp is defined %}
      - {{ pt.bgp.package }}  # vip_mode bgp: BIRD 2 (its check, bird -p, runs before any change)
{%- endif %}
