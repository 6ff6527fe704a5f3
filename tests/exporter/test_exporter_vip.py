"""VIP ownership from the kernel's address dump captured while keepalived held VI_1's VIP."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
from proxytier_exporter.core import SourceError
from proxytier_exporter.vip import VipCollector, netlink_addr_dump, parse_addr_dump


def captured(fixtures: Path):
    return lambda: (fixtures / "netlink_addr_dump.bin").read_bytes()


def iproute2_addresses(text: str) -> set:
    """What `ip -j addr show` lists, minus tentative/dadfailed IPv6 addresses."""
    return {
        ipaddress.ip_address(info["local"])
        for link in json.loads(text) for info in link["addr_info"]
        if not info.get("tentative") and not info.get("dadfailed")
    }


def owned(collector: VipCollector) -> dict[str, float]:
    (family,) = collector.collect()
    return {sample.labels["vip"]: sample.value for sample in family.samples}


def test_exposition_matches_golden_file(fixtures, render, golden) -> None:
    collector = VipCollector(["198.18.0.101/32", "198.18.0.102", "198.18.0.103/32"],
                             read_addresses=captured(fixtures))
    golden("vip.prom", render(collector.collect))


def test_vips_default_to_the_keepalived_configuration(fixtures) -> None:
    collector = VipCollector([], str(fixtures / "keepalived.conf"), read_addresses=captured(fixtures))
    assert owned(collector) == {"198.18.0.101": 1.0, "198.18.0.102": 0.0, "198.18.0.103": 0.0}


def test_the_same_vip_written_twice_is_one_series(fixtures) -> None:
    collector = VipCollector(["198.18.0.101", "198.18.0.101/32"], read_addresses=captured(fixtures))
    assert owned(collector) == {"198.18.0.101": 1.0}


def test_a_vip_that_is_not_an_address_is_a_source_error(fixtures) -> None:
    with pytest.raises(SourceError, match="'vip1' is not an IP address"):
        owned(VipCollector(["vip1"], read_addresses=captured(fixtures)))


def test_the_captured_dump_holds_what_iproute2_listed_at_the_same_moment(fixtures) -> None:
    from_netlink = parse_addr_dump((fixtures / "netlink_addr_dump.bin").read_bytes())
    assert from_netlink == iproute2_addresses((fixtures / "ip_addr.json").read_text())
    assert ipaddress.ip_address("198.18.0.101") in from_netlink


def test_this_hosts_addresses_are_read_like_iproute2_does() -> None:
    listed = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    assert parse_addr_dump(netlink_addr_dump()) == iproute2_addresses(listed)


def test_a_truncated_dump_is_a_source_error(fixtures) -> None:
    dump = (fixtures / "netlink_addr_dump.bin").read_bytes()
    with pytest.raises(SourceError, match="netlink"):
        owned(VipCollector(["198.18.0.101"], read_addresses=lambda: dump[: len(dump) // 2]))
