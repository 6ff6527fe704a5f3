"""The lab tier in dual stack: every node serves an IPv4 VIP and an IPv6 VIP, backends of both families.

The lab's network always has both families (lab.config: 198.18.0.0/24 and 2001:2::/64 on the bridge); the
checkout's pillar uses IPv4 only. This pillar is the checkout's with:
- the members' IPv6 addresses from the mine (``allow.networks`` gains 2001:2::/64, so each member's
  ``address6`` is its 2001:2::1N);
- the VIP pool's IPv6 twins (``vip_pool.addresses6``): proxyK holds 198.18.0.10K and 2001:2::10K, the
  IPv6 one in the VRRPv3 instance VI6_<vrid> with the same VRID as its IPv4 twin's VI_<vrid>;
- the site's backends be1 and be3 by IPv4 and be2 by IPv6 (nginx reaches a backend by either family);
- a second site on port 8000 (nginx 8081), the same backends, with the client address passed from
  HAProxy to nginx in PROXY v2 instead of X-Forwarded-For (PROXY_V2_PORT).

    python -m lab dualstack          # apply it to the running lab and print who answers on each VIP
    python -m lab dualstack --off    # back to the checkout's pillar (IPv4 only)
"""

from __future__ import annotations

import copy
from typing import Any

from lab import config, tier
from lab.sh import LabError

#: the lab backends the site reaches by IPv6 (the others by IPv4)
IPV6_BACKENDS = ("be2",)
#: the VIPs' port of the site whose client address goes from HAProxy to nginx in PROXY v2
PROXY_V2_PORT = 8000


def pillar() -> dict[str, Any]:
    """The checkout's lab pillar made dual stack (see the module's docstring)."""
    data = copy.deepcopy(tier.default_pillar())
    pt = data["proxytier"]
    pt["members_from_mine"]["allow"]["networks"].append(str(config.LAB_NET6))
    pool = pt["vip_pool"]
    pool["addresses6"] = [f"{config.home_vip6(i)}/{config.PREFIX6}" for i in range(1, len(pool["addresses"]) + 1)]
    backends = []
    for be in config.BACKENDS:
        address = be.address6 if be.name in IPV6_BACKENDS else be.address
        backends.append({"address": config.hostport(address, be.port)})
    pt["sites"][0]["backends"] = backends
    pt["sites"].append({"name": "proxyv2", "port": PROXY_V2_PORT, "nginx_port": 8081, "client_address": "proxy_v2",
                        "backends": copy.deepcopy(backends)})
    return data


def enable() -> float:
    """Write the dual-stack pillar as the lab's override and apply it (LabError if a minion fails) -> seconds."""
    tier.write_pillar(pillar())
    return tier.apply_ok("the dual-stack pillar")


def disable() -> float:
    """Back to the checkout's pillar (IPv4 only), applied -> seconds."""
    return tier.back_to_checkout_pillar()


def check_enabled() -> None:
    """LabError unless the lab's pillar override is the dual-stack one."""
    if tier.current_pillar() != pillar():
        raise LabError("the lab is not in dual stack: run python -m lab dualstack first")
