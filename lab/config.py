"""Names, addresses and paths of the lab. One place; everything else imports from here.

Addresses are ONLY from 198.18.0.0/15 (RFC 2544 benchmarking range) on the lab's own bridge.
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
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
BRIDGE = "ptlab0"
HOST_ADDR = "198.18.0.1"
PREFIX = 24

SALT_DIR = STATE / "salt"  # salt-master root_dir
SALT_CONFIG = SALT_DIR / "etc" / "salt" / "master"
PILLAR_OVERRIDE = STATE / "pillar-override"
RESULTS = CACHE / "results.json"  # measurements; kept across `down`


@dataclass(frozen=True)
class Node:
    name: str
    address: str

    @property
    def dir(self) -> Path:
        return STATE / "nodes" / self.name


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
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


EXPORTER_PORT = 8408  # proxytier:exporter:port default of the formula

MAX_NODES = 5  # the lab pillar's VIP pool has 5 addresses (198.18.0.101..105), one per possible node
DEFAULT_NODES = 3
TOPOLOGY = STATE / "topology.json"  # which nodes the running lab has (written by up, add-node, remove-node)


def lab_node(index: int) -> Node:
    """proxy<i> lives at 198.18.0.(10+i), i in 1..MAX_NODES."""
    if not 1 <= index <= MAX_NODES:
        raise ValueError(f"lab node numbers are 1..{MAX_NODES}, not {index}")
    return Node(f"proxy{index}", f"198.18.0.{10 + index}")


def home_vip(index: int) -> str:
    """The VIP of proxy<i>: the i-th address of the lab pillar's vip_pool (its home), 198.18.0.(100+i)."""
    lab_node(index)  # the range check
    return f"198.18.0.{100 + index}"


#: every node the lab can have (cleanup and /etc/hosts cover them all, whatever is running)
ALL_NODES = [lab_node(i) for i in range(1, MAX_NODES + 1)]
# The running lab's nodes and their VIPs (proxyK holds 198.18.0.10K). These lists are changed IN PLACE by
# set_nodes(), so every module that reads config.NODES / config.VIPS sees the current tier.
NODES: list[Node] = []
VIPS: list[str] = []
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
    NODE_BY_ADDRESS.clear()
    NODE_BY_ADDRESS.update({n.address: n.name for n in NODES})
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
    """be<i> lives at 198.18.0.(20+i); be1..be3 are started by `up`, tests may add more."""
    return Backend(f"be{index}", f"198.18.0.{20 + index}")


BACKENDS = [backend(i) for i in (1, 2, 3)]


def node(name: str) -> Node:
    for n in ALL_NODES:
        if n.name == name:
            return n
    raise KeyError(f"no lab node named {name!r}; lab nodes are proxy1..proxy{MAX_NODES}")


def check_lab_address(addr: str) -> str:
    """Refuse any address outside 198.18.0.0/15 (and loopback): the lab never targets anything else."""
    ip = ipaddress.ip_address(addr)
    if ip not in ALLOWED and not ip.is_loopback:
        raise ValueError(f"{addr} is outside 198.18.0.0/15; the lab only talks to its own addresses")
    return addr
