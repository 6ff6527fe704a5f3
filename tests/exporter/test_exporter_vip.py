"""VIP ownership from `ip -j addr show` captured while keepalived held VI_1's VIP."""

from __future__ import annotations

from pathlib import Path

import pytest
from proxytier_exporter.core import SourceError
from proxytier_exporter.vip import VipCollector, run_ip_addr


def captured(fixtures: Path):
    return lambda: (fixtures / "ip_addr.json").read_text()


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


def test_ip_output_that_is_not_json_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="not JSON"):
        owned(VipCollector(["198.18.0.1"], read_addresses=lambda: "Error: ..."))


def test_this_hosts_kernel_addresses_are_read() -> None:
    assert owned(VipCollector(["127.0.0.1", "198.19.255.254"], read_addresses=run_ip_addr)) == {
        "127.0.0.1": 1.0,
        "198.19.255.254": 0.0,
    }
