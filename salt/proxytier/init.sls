{#- The whole tier on a node. Every configuration is checked first (proxytier.check: all or
    nothing); then the daemons are reloaded in this order: nginx, then HAProxy, then keepalived;
    the exporter, which reads all three, comes last. With vip_mode bgp, proxytier.keepalived is
    proxytier.bgp (BIRD and its health gate; keepalived stopped). -#}
include:
  - proxytier.packages
  - proxytier.common
  - proxytier.tls
  - proxytier.check
  - proxytier.systemd
  - proxytier.firewall
  - proxytier.nginx
  - proxytier.haproxy
  - proxytier.keepalived
  - proxytier.exporter
