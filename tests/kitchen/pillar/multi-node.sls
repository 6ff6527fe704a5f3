# kitchen suite "multi-node": the member set is listed here (four nodes) and
# the kitchen container is one of them, proxy2: not the first member, so the
# priorities and the peer list are the ones of a node in the middle of the
# set. proxy2 is the preferred MASTER of 198.18.10.102 only; in one
# container proxy1, proxy3 and proxy4 are absent, so it is MASTER of both VIPs
# (the node checks are told so: --node-alone). Two sites: the second passes the
# client address with PROXY protocol v2. Addresses are from 198.18.0.0/15, on
# the container's eth0 (kitchen.yml adds the node's address there).
proxytier:
  interface: eth0
  members:
    - id: proxy1
      address: 198.18.10.11
    - id: proxy2
      address: 198.18.10.12
    - id: proxy3
      address: 198.18.10.13
    - id: proxy4
      address: 198.18.10.14
  vips:
    - address: 198.18.10.101/24
      vrid: 51
    - address: 198.18.10.102/24
      vrid: 52
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.10.21:8080
        - address: 198.18.10.22:8080
    - name: api
      port: 8000
      nginx_port: 8081
      client_address: proxy_v2
      backends:
        - address: 198.18.10.31:9000
          weight: 2
        - address: 198.18.10.32:9000
          backup: true
