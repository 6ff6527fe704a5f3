# The lab's tier, as a master-based deployment runs it: the members are the minions of the Salt
# mine (proxy*, within an allow-list), and each member gets a VIP of its own from a pool (proxy1
# the first address, proxy2 the second, ...). So the lab is active-active at any size, 2..5 nodes,
# one VIP per node, and a node that joins or leaves moves no other node's VIP. One site balanced
# over three backends. Every key and its default is documented in pillar.example at the repo root;
# tests/pillar/lab-static.sls is the same tier with explicit member and VIP lists (masterless).

# each node publishes its own address on the tier interface (VIPs left out) to the mine
mine_functions:
  proxytier_address:
    mine_function: proxytier.address

proxytier:
  interface: host0
  members_from_mine:
    target: 'proxy*'
    allow:
      ids: ['proxy[0-9]*']
      networks: [198.18.0.0/24]
  vip_pool:
    addresses:
      - 198.18.0.101/24
      - 198.18.0.102/24
      - 198.18.0.103/24
      - 198.18.0.104/24
      - 198.18.0.105/24
    vrid_base: 51
  sites:
    - name: app
      port: 80
      nginx_port: 8080
      backends:
        - address: 198.18.0.21:8080
        - address: 198.18.0.22:8080
        - address: 198.18.0.23:8080
