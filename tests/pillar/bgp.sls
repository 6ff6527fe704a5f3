# The lab's three nodes in BGP mode: every node announces one IPv4 and one IPv6 service address to
# two routers (one per family) while its HAProxy serves, with BFD; proxy3 is in maintenance (its
# addresses withdrawn, its sessions up). The base pillar of the BGP unit and render tests.
proxytier:
  interface: host0
  vip_mode: bgp
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
    - address: 198.18.0.100
    - address: 2001:2::100/128
  bgp:
    asn: 64512
    peers:
      - address: 198.18.0.1
        asn: 64496
        password: lab-secret
      - address: 2001:2::1
        asn: 64496
        bfd: false
    communities:
      - "64512:100"
      - "4200000000:1:2"
    maintenance:
      - proxy3
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.0.21:8080
        - address: 198.18.0.22:8080
        - address: 198.18.0.23:8080
