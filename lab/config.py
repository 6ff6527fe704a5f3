"""Names, addresses and paths of the lab. One place; everything else imports from here.

Addresses are ONLY from 198.18.0.0/15 (RFC 2544 benchmarking range) on the lab's own bridge.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("PROXYTIER_LAB_STATE", "/var/lib/proxytier-lab"))
CACHE = Path(os.environ.get("PROXYTIER_LAB_CACHE", "/var/cache/proxytier-lab"))
IMAGE = CACHE / "image"

LAB_NET = ipaddress.ip_network("198.18.0.0/24")
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
BRIDGE = "ptlab0"
HOST_ADDR = "198.18.0.1"
PREFIX = 24

SALT_VERSION = "3008.3"
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


EXPORTER_PORT = 8408  # proxytier:exporter:port default of the formula

NODES = [Node(f"proxy{i}", f"198.18.0.{10 + i}") for i in (1, 2, 3)]
VIPS = [f"198.18.0.{100 + i}" for i in (1, 2, 3)]


def backend(index: int) -> Backend:
    """be<i> lives at 198.18.0.(20+i); be1..be3 are started by `up`, tests may add more."""
    return Backend(f"be{index}", f"198.18.0.{20 + index}")


BACKENDS = [backend(i) for i in (1, 2, 3)]
NODE_BY_ADDRESS = {n.address: n.name for n in NODES}


def node(name: str) -> Node:
    for n in NODES:
        if n.name == name:
            return n
    raise KeyError(f"no lab node named {name!r}; nodes are {', '.join(n.name for n in NODES)}")


def check_lab_address(addr: str) -> str:
    """Refuse any address outside 198.18.0.0/15 (and loopback): the lab never targets anything else."""
    ip = ipaddress.ip_address(addr)
    if ip not in ALLOWED and not ip.is_loopback:
        raise ValueError(f"{addr} is outside 198.18.0.0/15; the lab only talks to its own addresses")
    return addr
