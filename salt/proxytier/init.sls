{#- The whole tier on a node. Order matters: states run in this order, so
    config changes reload nginx, then HAProxy, then keepalived; the exporter,
    which reads all three, comes last. #}
include:
  - proxytier.common
  - proxytier.nginx
  - proxytier.haproxy
  - proxytier.keepalived
  - proxytier.exporter
