# kitchen suite "seed": seed mode, one VIP. The kitchen container is proxy1 and
# the preferred MASTER of the VIP; proxy2 is listed so that keepalived has a
# unicast peer (keepalived -t refuses a unicast instance without peers), but in
# a single container it does not exist: its adverts go nowhere and its nginx is
# marked DOWN by HAProxy. Addresses are from 198.18.0.0/15 (benchmarking range),
# on the container's eth0 (kitchen.yml adds the node's address there).
proxytier:
  interface: eth0
  members:
    - id: proxy1
      address: 198.18.10.11
    - id: proxy2
      address: 198.18.10.12
  vips:
    - address: 198.18.10.101/24
      vrid: 51
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.10.21:8080
        - address: 198.18.10.22:8080
