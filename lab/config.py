"""Names, addresses and paths of the lab. One place; everything else imports from here.

Addresses are ONLY from 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180), the benchmarking ranges, on
the lab's own bridge with no route out, and loopback. Every node, backend and the host have an address of each
family; the lab pillar decides whether the tier uses IPv6 (the default pillar is IPv4 only).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PROXYTIER_LAB_STATE", "/var/lib/proxytier-lab"))
CACHE = Path(os.environ.get("PROXYTIER_LAB_CACHE", "/var/cache/proxytier-lab"))

# The platform of the lab's nodes: the Debian release of the node image and the Salt of its minions
# and of the lab master (make demo RELEASE=trixie SALT=3006.29; env PROXYTIER_LAB_RELEASE/_SALT).
RELEASES = {"bookworm": "Debian 12", "trixie": "Debian 13"}
SALT_VERSIONS = ("3006.29", "3007.16", "3008.3")  # the newest of each line that installs here (FIELD-NOTES)
RELEASE = os.environ.get("PROXYTIER_LAB_RELEASE") or "bookworm"
SALT_VERSION = os.environ.get("PROXYTIER_LAB_SALT") or "3008.3"
#: how the lab master serves the formula: "roots" (file_roots on this checkout's salt/, the default) or
#: "gitfs" (pygit2, from a bare clone of this checkout's HEAD: what is committed, not the work tree)
FORMULA_SOURCES = ("roots", "gitfs")
FORMULA_SOURCE = os.environ.get("PROXYTIER_LAB_FORMULA") or "roots"
PLATFORM = f"{RELEASE} salt {SALT_VERSION} {FORMULA_SOURCE}"
DEFAULT_PLATFORM = "bookworm salt 3008.3 roots"
IMAGE_PREFIX = CACHE / "image-"
IMAGE = Path(f"{IMAGE_PREFIX}{RELEASE}-salt{SALT_VERSION}")


def check_platform() -> None:
    """Refuse a release or Salt version the lab has no recipe for (ValueError naming the choices)."""
    if RELEASE not in RELEASES:
        raise ValueError(f"PROXYTIER_LAB_RELEASE={RELEASE!r}: the lab builds {', '.join(RELEASES)}")
    if FORMULA_SOURCE not in FORMULA_SOURCES:
        raise ValueError(f"PROXYTIER_LAB_FORMULA={FORMULA_SOURCE!r}: the lab master serves the formula by "
                         f"{' or '.join(FORMULA_SOURCES)}")
    if SALT_VERSION not in SALT_VERSIONS:
        raise ValueError(f"PROXYTIER_LAB_SALT={SALT_VERSION!r}: the lab runs Salt {', '.join(SALT_VERSIONS)}")


LAB_NET = ipaddress.ip_network("198.18.0.0/24")
LAB_NET6 = ipaddress.ip_network("2001:2::/64")
#: the only addresses the lab ever uses or sends to (besides loopback): the benchmarking ranges
ALLOWED = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))
BRIDGE = "ptlab0"
HOST_ADDR = "198.18.0.1"
HOST_ADDR6 = "2001:2::1"
PREFIX = 24
PREFIX6 = 64

SALT_DIR = STATE / "salt"  # salt-master root_dir
SALT_CONFIG = SALT_DIR / "etc" / "salt" / "master"
PILLAR_OVERRIDE = STATE / "pillar-override"
RESULTS = CACHE / "results.json"  # measurements; kept across `down`


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    address6: str

    @property
    def dir(self) -> Path:
        return STATE / "nodes" / self.name


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
    address6: str
    port: int = 8080

    @property
    def netns(self) -> str:
        return f"ptlab-{self.name}"

    @property
    def veth(self) -> str:
        return f"ptl-{self.name}"

    @property
    def mac(self) -> str:
        """The backend's interface MAC, fixed by its address (locally administered): a backend stopped
        and started again keeps it, so the nodes' neighbour caches stay right. A new random MAC left
        them sending to the old one until neighbour unreachability detection ran (seconds of 504s)."""
        a, b, c, d = (int(x) for x in self.address.split("."))
        return f"02:70:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


# BGP mode (lab.router, lab.bgp): a router on the bridge peering with every node, and a client network
# behind it. The router is the lab's only gateway to CLIENT_NET; nothing routes further.
ROUTER_NETNS = "ptlab-router"
CLIENT_NETNS = "ptlab-client"
ROUTER_VETH = "ptl-router"  # the router's bridge port on the host (ptl-*: cleaned with the backends' links)
ROUTER_ADDR = "198.18.0.2"  # the router on the bridge: the nodes' BGP peer
CLIENT_NET = ipaddress.ip_network("198.18.9.0/24")  # the router's other link, to the client namespace only
ROUTER_CLIENT_ADDR = "198.18.9.1"
CLIENT_ADDR = "198.18.9.2"
BGP_SERVICE = "198.18.0.200"  # the one service address every node announces in BGP mode (not a VRRP VIP)
ROUTER_ASN = 64496  # documentation range (RFC 5398): the network's AS
TIER_ASN = 64512  # private range (RFC 6996): the tier's AS

EXPORTER_PORT = 8408  # proxytier:exporter:port default of the formula

MAX_NODES = 5  # the lab pillar's VIP pool has 5 addresses (198.18.0.101..105), one per possible node
DEFAULT_NODES = 3
TOPOLOGY = STATE / "topology.json"  # which nodes the running lab has (written by up, add-node, remove-node)


def lab_node(index: int) -> Node:
    """proxy<i> lives at 198.18.0.(10+i) and 2001:2::(10+i) (the same digits), i in 1..MAX_NODES."""
    if not 1 <= index <= MAX_NODES:
        raise ValueError(f"lab node numbers are 1..{MAX_NODES}, not {index}")
    return Node(f"proxy{index}", f"198.18.0.{10 + index}", f"2001:2::{10 + index}")


def home_vip(index: int) -> str:
    """The VIP of proxy<i>: the i-th address of the lab pillar's vip_pool (its home), 198.18.0.(100+i)."""
    lab_node(index)  # the range check
    return f"198.18.0.{100 + index}"


def home_vip6(index: int) -> str:
    """The IPv6 VIP of proxy<i> in the dual-stack lab pillar (vip_pool addresses6): 2001:2::(100+i)."""
    lab_node(index)  # the range check
    return f"2001:2::{100 + index}"


#: every node the lab can have (cleanup and /etc/hosts cover them all, whatever is running)
ALL_NODES = [lab_node(i) for i in range(1, MAX_NODES + 1)]
# The running lab's nodes and their VIPs (proxyK holds 198.18.0.10K). These lists are changed IN PLACE by
# set_nodes(), so every module that reads config.NODES / config.VIPS sees the current tier.
NODES: list[Node] = []
VIPS: list[str] = []
VIPS6: list[str] = []  # the IPv6 VIPs the tier has when the dual-stack lab pillar is applied
NODE_BY_ADDRESS: dict[str, str] = {}


def node_index(name: str) -> int:
    for i, n in enumerate(ALL_NODES, start=1):
        if n.name == name:
            return i
    raise KeyError(f"no lab node named {name!r}; lab nodes are proxy1..proxy{MAX_NODES}")


def set_nodes(indices: list[int] | range, save: bool = False) -> None:
    """Make the lab's tier these node numbers (1..MAX_NODES); save=True records it in TOPOLOGY, so another
    `python -m lab` process sees the same tier."""
    chosen = sorted(set(indices))
    if not chosen:
        raise ValueError("the lab needs at least one node")
    NODES[:] = [lab_node(i) for i in chosen]
    VIPS[:] = [home_vip(i) for i in chosen]
    VIPS6[:] = [home_vip6(i) for i in chosen]
    NODE_BY_ADDRESS.clear()
    NODE_BY_ADDRESS.update({n.address: n.name for n in NODES})
    NODE_BY_ADDRESS.update({n.address6: n.name for n in NODES})
    if save:
        TOPOLOGY.parent.mkdir(parents=True, exist_ok=True)
        TOPOLOGY.write_text(json.dumps({"nodes": [n.name for n in NODES], "release": RELEASE,
                                        "salt": SALT_VERSION}) + "\n")


def check_running_platform() -> None:
    """Refuse to boot a node of another platform into the running lab (ValueError saying how to ask for
    the lab's): RELEASE and SALT_VERSION come from the environment, the running lab's from TOPOLOGY."""
    try:
        saved = json.loads(TOPOLOGY.read_text())
    except (OSError, ValueError):
        return
    release, salt = saved.get("release", "bookworm"), saved.get("salt", SALT_VERSION)
    if (release, salt) != (RELEASE, SALT_VERSION):
        raise ValueError(f"the running lab is {release} with Salt {salt}; run this with "
                         f"PROXYTIER_LAB_RELEASE={release} PROXYTIER_LAB_SALT={salt}")


def _saved_indices() -> list[int]:
    try:
        return [node_index(name) for name in json.loads(TOPOLOGY.read_text())["nodes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return list(range(1, DEFAULT_NODES + 1))


set_nodes(_saved_indices())


def backend(index: int) -> Backend:
    """be<i> lives at 198.18.0.(20+i) and 2001:2::(20+i); be1..be3 are started by `up`, tests may add more."""
    return Backend(f"be{index}", f"198.18.0.{20 + index}", f"2001:2::{20 + index}")


BACKENDS = [backend(i) for i in (1, 2, 3)]


def node(name: str) -> Node:
    for n in ALL_NODES:
        if n.name == name:
            return n
    raise KeyError(f"no lab node named {name!r}; lab nodes are proxy1..proxy{MAX_NODES}")


def hostport(addr: str, port: int) -> str:
    """`addr:port` for a URL or a socket address string; an IPv6 address in brackets ([2001:2::1]:80)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def check_lab_address(addr: str) -> str:
    """Refuse any address outside 198.18.0.0/15, 2001:2::/48 and loopback (ValueError naming the ranges): the
    lab never targets anything else. `addr` is an address without brackets or prefix length."""
    ip = ipaddress.ip_address(addr)
    if not ip.is_loopback and not any(ip in net for net in ALLOWED if net.version == ip.version):
        raise ValueError(f"{addr} is outside 198.18.0.0/15 and 2001:2::/48; the lab only talks to its own "
                         f"addresses")
    return addr
