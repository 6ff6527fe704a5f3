"""VIP ownership, read from the kernel (`ip -j addr show`), independently of keepalived.

One series per configured VIP: 1 if the address is on one of this node's interfaces, else 0. The VIPs
come from --vip, or from the virtual_ipaddress blocks of keepalived.conf when none is given.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from proxytier_exporter.core import SourceError, describe_names
from proxytier_exporter.keepalived_conf import load_keepalived_conf

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def vip_address(text: str) -> IPAddress | None:
    """The address of a VIP as written in config ("198.18.0.101/32", "198.18.0.101"), None if invalid."""
    try:
        return ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return None


def parse_ip_addr_json(text: str) -> dict[IPAddress, str]:
    """Addresses held by this node's interfaces ({address: interface}) from `ip -j addr show`.

    Addresses still in IPv6 duplicate-address detection (tentative) or that failed it are not held.
    Raises SourceError if the output is not ip's JSON.
    """
    try:
        links = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SourceError(f"ip -j addr: output is not JSON: {error}") from error
    if not isinstance(links, list):
        raise SourceError("ip -j addr: expected a list of interfaces")
    held: dict[IPAddress, str] = {}
    for link in links:
        if not isinstance(link, dict) or not isinstance(link.get("addr_info", []), list):
            raise SourceError("ip -j addr: an interface entry is not an object with addr_info")
        name = link.get("ifname")
        for info in link.get("addr_info", []):
            if not isinstance(info, dict) or info.get("tentative") or info.get("dadfailed"):
                continue
            local = info.get("local")
            address = vip_address(local) if isinstance(local, str) else None
            if address is not None:
                held[address] = name if isinstance(name, str) else ""
    return held


def run_ip_addr(timeout: float = 2.0) -> str:
    try:
        answer = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=timeout, check=True
        )
    except FileNotFoundError as error:
        raise SourceError("ip: not found (install iproute2)") from error
    except subprocess.TimeoutExpired as error:
        raise SourceError(f"ip -j addr show took more than {timeout}s") from error
    except subprocess.CalledProcessError as error:
        raise SourceError(f"ip -j addr show failed: {error.stderr.strip()[:200]}") from error
    return answer.stdout


class VipCollector:
    name = "vip"

    def __init__(
        self,
        vips: Sequence[str],
        keepalived_config: str | None = None,
        read_addresses: Callable[[], str] = run_ip_addr,
    ):
        self.vips = list(vips)
        self.keepalived_config = keepalived_config
        self.read_addresses = read_addresses

    def configured(self) -> list[str]:
        if self.vips or not self.keepalived_config:
            return self.vips
        config = load_keepalived_conf(self.keepalived_config)
        return [vip for instance in config.values() for vip in instance.vips]

    def collect(self) -> Iterator[Metric]:
        held = parse_ip_addr_json(self.read_addresses())
        family = GaugeMetricFamily(
            "proxytier_vip_owned",
            "1 if this node holds the VIP on one of its interfaces (kernel addresses, ip -j addr show).",
            labels=["vip"],
        )
        seen: set[IPAddress] = set()
        for text in self.configured():
            address = vip_address(text)
            if address is None:
                raise SourceError(f"{text!r} is not an IP address (check --vip or virtual_ipaddress)")
            if address not in seen:
                seen.add(address)
                family.add_metric([str(address)], 1.0 if address in held else 0.0)
        yield family

    def describe(self) -> list[Metric]:
        return describe_names("proxytier_vip_owned")
