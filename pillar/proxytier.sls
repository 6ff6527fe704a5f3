# The lab's tier: three nodes, three VIPs (active-active: each node is the
# preferred MASTER of one VIP), one site balanced over three backends.
# Every key and its default is documented in pillar.example at the repo root.
proxytier:
  interface: host0
  members:
    - id: proxy1
      address: 198.18.0.11
    - id: proxy2
      address: 198.18.0.12
    - id: proxy3
      address: 198.18.0.13
  vips:
    - address: 198.18.0.101/24
      vrid: 51
    - address: 198.18.0.102/24
      vrid: 52
    - address: 198.18.0.103/24
      vrid: 53
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.0.21:8080
        - address: 198.18.0.22:8080
        - address: 198.18.0.23:8080
