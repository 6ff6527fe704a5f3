# kitchen suite "active-active": three members, three VIPs, each member the
# preferred MASTER of one. The kitchen container is proxy1 (preferred MASTER of
# 198.18.10.101). In one container its VRRP peers proxy2 and proxy3 are absent,
# so it hears no adverts and is MASTER of all three VIPs; the node checks are
# told so (--node-alone). Addresses are from 198.18.0.0/15, on the container's
# eth0 (kitchen.yml adds the node's address there).
proxytier:
  interface: eth0
  members:
    - id: proxy1
      address: 198.18.10.11
    - id: proxy2
      address: 198.18.10.12
    - id: proxy3
      address: 198.18.10.13
  vips:
    - address: 198.18.10.101/24
      vrid: 51
    - address: 198.18.10.102/24
      vrid: 52
    - address: 198.18.10.103/24
      vrid: 53
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.10.21:8080
        - address: 198.18.10.22:8080
        - address: 198.18.10.23:8080
