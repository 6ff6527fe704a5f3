"""VIP ownership from the kernel's address dump captured while keepalived held VI_1's VIP."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from proxytier_exporter import vip
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


# --- IPv6: a real dump of a namespace with only its loopback (127.0.0.1, ::1), and variants of it ---
# whose IPv6 address carries the flags an IPv6 VIP can have (the kernel sets them; keepalived adds
# IPv6 VIPs with IFA_F_NODAD, so never tentative, and a /128 one with preferred_lft 0: deprecated)

LOOPBACK_DUMP = "netlink_addr_dump_loopback.bin"
IFA_F_DEPRECATED = 0x20


def with_ipv6_flags(dump: bytes, flags: int) -> bytes:
    """The dump with `flags` added to every IPv6 address (its ifaddrmsg flags byte and its
    IFA_FLAGS attribute, which the kernel sends both of)."""
    data = bytearray(dump)
    offset = 0
    while offset + vip._NLMSGHDR.size <= len(data):
        length, kind = vip._NLMSGHDR.unpack_from(data, offset)[:2]
        body = offset + vip._NLMSGHDR.size
        if kind == vip.RTM_NEWADDR and data[body] == socket.AF_INET6:
            data[body + 2] |= flags & 0xFF
            attr = body + vip._IFADDRMSG.size
            while attr + vip._RTATTR.size <= offset + length:
                alen, akind = vip._RTATTR.unpack_from(data, attr)
                if akind == vip.IFA_FLAGS:
                    value = struct.unpack_from("=I", data, attr + 4)[0] | flags
                    struct.pack_into("=I", data, attr + 4, value)
                attr += (alen + 3) & ~3
        if length < vip._NLMSGHDR.size:
            break
        offset += (length + 3) & ~3
    return bytes(data)


def test_the_loopback_dump_holds_what_iproute2_listed_both_families(fixtures) -> None:
    held = parse_addr_dump((fixtures / LOOPBACK_DUMP).read_bytes())
    assert held == iproute2_addresses((fixtures / "ip_addr_loopback.json").read_text())
    assert held == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


@pytest.mark.parametrize(("flags", "held"), [
    (IFA_F_DEPRECATED, True),  # a /128 VIP keepalived added (preferred_lft 0): serves, so held
    (vip.IFA_F_TENTATIVE, False),  # still in duplicate address detection: cannot be used yet
    (vip.IFA_F_DADFAILED, False),  # another node has it
])
def test_an_ipv6_address_is_held_unless_tentative_or_dadfailed(fixtures, flags: int, held: bool) -> None:
    dump = with_ipv6_flags((fixtures / LOOPBACK_DUMP).read_bytes(), flags)
    assert dump != (fixtures / LOOPBACK_DUMP).read_bytes()
    collector = VipCollector(["::1/128", "127.0.0.1/8"], read_addresses=lambda: dump)
    assert owned(collector) == {"::1": 1.0 if held else 0.0, "127.0.0.1": 1.0}


def test_a_dual_stack_keepalived_conf_gives_one_series_per_vip_of_both_families(fixtures, tmp_path) -> None:
    """The VIPs default to the virtual_ipaddress blocks of the keepalived.conf the formula renders
    for a dual-stack node (IPv4 instances VI_<vrid>, IPv6 ones VI6_<vrid> with the same VRIDs)."""
    import yaml
    from formula import ROOT, build_model, os_params, render

    pillar = yaml.safe_load((ROOT / "tests" / "pillar" / "dual-stack.sls").read_text())["proxytier"]
    conf = tmp_path / "keepalived.conf"
    conf.write_text(render("keepalived.conf.jinja", build_model(pillar, "proxy1", params=os_params())))
    collector = VipCollector([], str(conf), read_addresses=lambda: (fixtures / LOOPBACK_DUMP).read_bytes())
    assert owned(collector) == {
        **{f"198.18.0.10{k}": 0.0 for k in (1, 2, 3)}, **{f"2001:2::10{k}": 0.0 for k in (1, 2, 3)},
    }
