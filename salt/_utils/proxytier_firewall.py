"""The node's packet filter (an nftables table of its own, ``inet proxytier_filter``): what only the
tier's members may send to a node.

- VRRP (IP protocol 112) is accepted only from member addresses: a LAN neighbour's adverts (say
  priority 255, to take a VIP) are dropped before keepalived sees them. Residual risk: a host on
  the same segment can spoof a member's source address; a dedicated VLAN for the tier, or VRRPv2
  with authentication, closes that (pillar.example says so).
- The nginx site listeners (each site's nginx_port on the node's own address) accept only the
  members (the HAProxies) and loopback: direct LAN clients cannot reach nginx and pass their own
  X-Forwarded-For or X-Forwarded-Proto.
- A new connection (a bare SYN) to a VIP on a frontend port is dropped, not answered with a reset,
  while no socket listens there (nftables ``socket`` expression: the kernel's own socket lookup, the
  one that would otherwise answer RST). Between HAProxy's death on the VIP holder and the VIP moving
  (keepalived's check, ~0.3 s) or systemd restarting HAProxy (1 s), clients' SYNs go unanswered and
  their kernels retransmit them (after 1 s, RFC 6298's initial RTO) to whichever node serves by
  then, instead of failing with "connection refused". bench/failover measures it (haproxy_sigkill).
  HAProxy's master-worker reloads hand the listening sockets to the new worker, so a reload never
  meets this rule. Traffic from the node itself (``lo``) is not held back: its checks see a dead
  HAProxy at once.
Every rule counts what it drops (nft counters), so a test or an operator can see it work.
"""

from __future__ import annotations

from typing import Any

from proxytier_members import address_of

TABLE = "proxytier_filter"
VRRP_PROTOCOL = 112  # IANA protocol number of VRRP


def firewall(
    members: list[dict[str, str]], sites: list[dict[str, Any]], params: dict[str, Any], vips: list[str]
) -> dict[str, Any]:
    """-> {"table", "file", "vrrp_protocol", "members4", "members6", "nginx_ports", "vips4", "vips6",
    "frontend_ports"} for the filter template: the member addresses by family (a dual-stack member's
    address6 among members6), the nginx ports to guard, the VIPs (`vips`: addresses, both families)
    by family, and the ports HAProxy binds on them (each site's port and TLS port; sorted, unique)."""
    return {
        "table": TABLE,
        "file": params.get("filter_file", "/etc/proxytier/filter.nft"),
        "vrrp_protocol": VRRP_PROTOCOL,
        "members4": [a for a in (address_of(m, 4) for m in members) if a],
        "members6": [a for a in (address_of(m, 6) for m in members) if a],
        "nginx_ports": sorted({s["nginx_port"] for s in sites}),
        "vips4": [v for v in vips if ":" not in v],
        "vips6": [v for v in vips if ":" in v],
        "frontend_ports": sorted({s["port"] for s in sites} | {s["tls"]["port"] for s in sites if s["tls"]}),
    }
