# A dual-stack tier: three nodes, each with an IPv4 address and an IPv6 address beside it
# (address6), three IPv4 VIPs and three IPv6 VIPs (each node the preferred MASTER of one of each
# family: homes count per family), backends of both families and by host name, one site passing the
# client address in X-Forwarded-For and one in PROXY v2. Addresses: 198.18.0.0/15 and 2001:2::/48
# (the benchmarking ranges) only.
proxytier:
  interface: host0
  members:
    - id: proxy1
      address: 198.18.0.11
      address6: 2001:2::11
    - id: proxy2
      address: 198.18.0.12
      address6: 2001:2::12
    - id: proxy3
      address: 198.18.0.13
      address6: 2001:2::13
  vips:
    - address: 198.18.0.101/24
      vrid: 51
    - address: 198.18.0.102/24
      vrid: 52
    - address: 198.18.0.103/24
      vrid: 53
    # IPv6 VRIDs are a space of their own (RFC 5798): the twins of the IPv4 VIPs reuse their VRIDs
    - address: 2001:2::101/64
      vrid: 51
    - address: 2001:2::102/64
      vrid: 52
    - address: 2001:2::103/64
      vrid: 53
  dns_name: app.example
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.0.21:8080
        - address: '[2001:2::22]:8080'
        - address: backend3.example:8080
    - name: api
      port: 8000
      nginx_port: 8081
      client_address: proxy_v2
      backends:
        - address: '[2001:2::21]:9000'
          weight: 3
        - address: 198.18.0.22:9000
          backup: true
