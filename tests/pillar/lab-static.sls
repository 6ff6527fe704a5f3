# The lab's tier with an explicit member list and VIP list, as a masterless (or kitchen) deployment
# writes it: three nodes, three VIPs, each node the preferred MASTER of one, one site over three
# backends. The base pillar of the unit and render tests (tests/formula.py: example_pillar). The lab
# itself runs pillar/proxytier.sls (members from the Salt mine, a VIP per member from a pool).
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
