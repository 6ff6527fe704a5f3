"""Keepalived's part of the model: the VIPs (proxytier:vips), the VRRP settings (proxytier:vrrp)
and one VRRP instance per VIP with its VRID, preferred owner and every member's priority.

Ownership: a VIP's preferred owner is its `owner` if given, else member ``index % members`` (the
i-th VIP on the i-th member); the other members follow in member order after the owner, each
`priority_step` lower than the previous, starting at `priority_base`. Facts used (FIELD-NOTES):
VRRPv2 adverts are whole seconds, VRRPv3 0.01..40.95 s with no authentication; VRIDs are 1..255
per interface.
"""

from __future__ import annotations

import re
from typing import Any

from proxytier_schema import boolean, extra, fail, integer, merge, vip

VIP_DEFAULTS: dict[str, Any] = {"address": None, "vrid": None, "owner": None, "interface": None}

VRRP_DEFAULTS: dict[str, Any] = {
    "version": 3,
    "advert_interval": 0.1,
    "priority_base": 150,
    "priority_step": 10,
    "preempt_delay": 0,
    "unicast": True,
    "check_unicast_src": True,
    "auth_pass": None,
    "garp_master_delay": 1,
    "garp_master_refresh": 0,
    "garp_lower_prio_repeat": 3,
    "track": "script",
    "check_interval": 1,
    "check_fall": 1,
    "check_rise": 2,
    "extra": {"global_defs": [], "instance": []},
}

#: a network device name: the kernel's dev_valid_name (1..15 bytes, not '.' or '..', no '/', ':' or
#: whitespace) narrowed to letters, digits, '_', '.', '-' (no '@': `ip link` shows a veth as NAME@ifN)
INTERFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
#: what keepalived 2.2.7 reads back as written after `auth_pass` (measured with its data dump,
#: SIGUSR1 -> keepalived.data "Password = ..."): one word; '#' and '!' start a comment anywhere,
#: whitespace ends the word, '{' '}' are words of their own, '"' quotes, '$NAME' is replaced by a
#: defined parameter, more than 8 bytes are cut. Also left out: "'", ';' and '\\' (quote, separator
#: and escape in the other configs' grammars, kept out of every rendered value)
AUTH_PASS_RE = re.compile(r"[%&()*+,./0-9:<=>?@A-Z\[\]^_`a-z|~-]{1,8}")


def interface(value: Any, path: tuple[Any, ...]) -> str:
    """A network interface name as the kernel and keepalived read it: 1..15 of letters, digits,
    '_', '.', '-' (not '.' or '..'; an alias label such as eth0:1 is not a device)."""
    if not isinstance(value, str) or not INTERFACE_RE.fullmatch(value) or value in (".", ".."):
        hint = " (`ip link` shows a veth as NAME@ifN: the name is the part before '@')" if "@" in str(value) else ""
        raise fail(path, value, "expected a network interface name like eth0: 1..15 letters, digits, '_', '.', '-'"
                   + hint)
    return value


def vips(raw_vips: Any, default_interface: str) -> list[dict[str, Any]]:
    """proxytier:vips -> [{"iface": IPv4Interface|IPv6Interface, "vrid", "owner", "interface", "index"}].
    Addresses are unique, and so is each (interface, VRID) pair."""
    if not isinstance(raw_vips, list) or not raw_vips:
        raise fail(("vips",), raw_vips, "list at least one VIP: [{address: 198.18.0.101/24, vrid: 51}]")
    out = []
    for i, raw in enumerate(raw_vips):
        v = merge(VIP_DEFAULTS, raw, ("vips", i))
        iface = vip(v["address"], ("vips", i, "address"))
        vrid = v["vrid"]
        if isinstance(vrid, bool) or not isinstance(vrid, int) or not 1 <= vrid <= 255:
            raise fail(("vips", i, "vrid"), vrid, "VRRP router ids are 1..255; pick an unused one in that range")
        vif = default_interface if v["interface"] is None else interface(v["interface"], ("vips", i, "interface"))
        out.append({"iface": iface, "vrid": vrid, "owner": v["owner"], "interface": vif, "index": i})
    seen_addr: dict[str, int] = {}
    seen_vrid: dict[tuple[str, int], int] = {}
    for v in out:
        a = str(v["iface"].ip)
        if a in seen_addr:
            raise fail(("vips", v["index"], "address"), a, f"duplicate of proxytier:vips:{seen_addr[a]}; remove one")
        seen_addr[a] = v["index"]
        k = (v["interface"], v["vrid"])
        if k in seen_vrid:
            raise fail(
                ("vips", v["index"], "vrid"),
                v["vrid"],
                f"already used by proxytier:vips:{seen_vrid[k]} on {v['interface']}; each VIP needs its own VRID",
            )
        seen_vrid[k] = v["index"]
    return out


def settings(raw: dict[str, Any], n_members: int) -> dict[str, Any]:
    """proxytier:vrrp (merged with its defaults) -> validated settings."""
    path: tuple[Any, ...] = ("vrrp",)
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in (2, 3):
        raise fail((*path, "version"), version, "VRRP version is 2 or 3 (3 allows sub-second adverts)")
    adv = _advert_interval(raw["advert_interval"], version)
    base = integer(raw["priority_base"], (*path, "priority_base"), 2, 254, "priority_base")
    step = integer(raw["priority_step"], (*path, "priority_step"), 1, 100, "priority_step")
    if base - (n_members - 1) * step < 1:
        raise fail(
            (*path, "priority_step"),
            step,
            f"with {n_members} members the lowest priority would be {base - (n_members - 1) * step}; "
            "lower priority_step or raise priority_base",
        )
    track = raw["track"]
    if track not in ("script", "process"):
        raise fail(
            (*path, "track"),
            track,
            "'script' (vrrp_script, works everywhere) or 'process' (track_process, not inside containers)",
        )

    def count(k: str, lo: int, hi: int, what: str) -> int:
        return integer(raw[k], (*path, k), lo, hi, what)

    return {
        "version": version,
        "advert_interval": adv,
        "priority_base": base,
        "priority_step": step,
        "preempt_delay": count("preempt_delay", 0, 1000, "preempt_delay (seconds)"),
        "unicast": boolean(raw["unicast"], (*path, "unicast")),
        "check_unicast_src": boolean(raw["check_unicast_src"], (*path, "check_unicast_src")),
        "auth_pass": _auth_pass(raw["auth_pass"], version),
        "garp_master_delay": count("garp_master_delay", 0, 255, "garp delay"),
        "garp_master_refresh": count("garp_master_refresh", 0, 3600, "refresh"),
        "garp_lower_prio_repeat": count("garp_lower_prio_repeat", 0, 100, "garp_lower_prio_repeat"),
        "track": track,
        "check_interval": count("check_interval", 1, 3600, "check_interval (seconds)"),
        "check_fall": count("check_fall", 1, 100, "check_fall"),
        "check_rise": count("check_rise", 1, 100, "check_rise"),
        "extra": extra(raw["extra"], (*path, "extra")),
    }


def _advert_interval(adv: Any, version: int) -> int | float:
    path = ("vrrp", "advert_interval")
    if isinstance(adv, bool) or not isinstance(adv, (int, float)):
        raise fail(path, adv, "expected seconds, e.g. 1 or 0.1")
    if version == 2 and (adv != int(adv) or not 1 <= adv <= 255):
        raise fail(path, adv, "VRRPv2 adverts are whole seconds 1..255; use version 3 for less")
    if version == 3 and not 0.01 <= adv <= 40.95:
        raise fail(path, adv, "VRRPv3 adverts are 0.01..40.95 seconds")
    if version == 3 and abs(adv * 100 - round(adv * 100)) > 1e-6:
        raise fail(path, adv, "VRRPv3 adverts are whole centiseconds (the packet field), e.g. 0.1 or 0.25")
    return (round(adv, 2) if isinstance(adv, float) else adv) if version == 3 else int(adv)


def _auth_pass(auth: Any, version: int) -> str | None:
    path = ("vrrp", "auth_pass")
    if auth is None:
        return None
    if version == 3:
        raise fail(path, "***", "VRRPv3 has no authentication; remove auth_pass or use version 2")
    if not isinstance(auth, str) or not AUTH_PASS_RE.fullmatch(auth):
        raise fail(
            path, "***", "keepalived reads a VRRPv2 password as one word of 1..8 printable ASCII characters "
            "(longer ones are cut; '#' and '!' start a comment, a space ends it); use letters, digits and "
            "%&()*+,./:<=>?@[]^_`|~- (not space \" # ! $ ' ; \\ { })",
        )
    return auth


def instances(
    vip_list: list[dict[str, Any]], members: list[dict[str, str]], vrrp: dict[str, Any], minion_id: str
) -> list[dict[str, Any]]:
    """One VRRP instance per VIP: name VI_<vrid>, owner, this node's priority and every member's."""
    ids = [m["id"] for m in members]
    out = []
    for v in vip_list:
        i = v["index"]
        if v["owner"] is None:
            owner_idx = i % len(members)
        elif v["owner"] in ids:
            owner_idx = ids.index(v["owner"])
        else:
            raise fail(("vips", i, "owner"), v["owner"], f"the owner must be one of the members: {', '.join(ids)}")
        order = [ids[(owner_idx + j) % len(ids)] for j in range(len(ids))]
        priorities = {mid: vrrp["priority_base"] - j * vrrp["priority_step"] for j, mid in enumerate(order)}
        out.append(
            {
                "name": f"VI_{v['vrid']}",
                "vrid": v["vrid"],
                "address": str(v["iface"].ip),
                "prefixlen": v["iface"].network.prefixlen,
                "cidr": v["iface"].with_prefixlen,
                "interface": v["interface"],
                "owner": order[0],
                "is_owner": order[0] == minion_id,
                "priority": priorities[minion_id],
                "priorities": priorities,
            }
        )
    return out
