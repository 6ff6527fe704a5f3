"""The node's packet filter (an nftables table of its own, ``inet proxytier_filter``): what only the
tier's members may send to a node.

- VRRP (IP protocol 112) is accepted only from member addresses: a LAN neighbour's adverts (say
  priority 255, to take a VIP) are dropped before keepalived sees them. Residual risk: a host on
  the same segment can spoof a member's source address; a dedicated VLAN for the tier, or VRRPv2
  with authentication, closes that (pillar.example says so).
- The nginx site listeners (each site's nginx_port on the node's own address) accept only the
  members (the HAProxies) and loopback: direct LAN clients cannot reach nginx and pass their own
  X-Forwarded-For or X-Forwarded-Proto.
Every rule counts what it drops (nft counters), so a test or an operator can see it work.
"""

from __future__ import annotations

from typing import Any

from proxytier_members import address_of

TABLE = "proxytier_filter"
VRRP_PROTOCOL = 112  # IANA protocol number of VRRP


def firewall(members: list[dict[str, str]], sites: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """-> {"table", "file", "members4", "members6", "nginx_ports"} for the filter template: the
    member addresses by family (a dual-stack member's address6 among members6) and the nginx
    ports to guard (sorted, unique)."""
    return {
        "table": TABLE,
        "file": params.get("filter_file", "/etc/proxytier/filter.nft"),
        "vrrp_protocol": VRRP_PROTOCOL,
        "members4": [a for a in (address_of(m, 4) for m in members) if a],
        "members6": [a for a in (address_of(m, 6) for m in members) if a],
        "nginx_ports": sorted({s["nginx_port"] for s in sites}),
    }
