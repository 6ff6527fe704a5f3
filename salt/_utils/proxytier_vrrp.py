"""Keepalived's part of the model: the VIPs (proxytier:vips), the VRRP settings (proxytier:vrrp)
and one VRRP instance per VIP with its VRID, preferred owner and every member's priority.

Ownership (proxytier_ownership): a VIP's preferred owner is its `owner` if given (and a member),
the member it was assigned to if it comes from the VIP pool (proxytier:vip_pool, one VIP per
member), else its home member (the n-th VIP: the member whose id ends in n) if present, else the
member of highest rendezvous weight for its address; the other members follow in that order, each
`priority_step` lower than the previous, starting at `priority_base`.

Why the step is wide by default (``auto``: as wide as `priority_base` allows, at most
AUTO_STEP_MAX): when a MASTER goes (or sinks to priority 1 in a handover), every backup's master
down timer ends at 3 x advert + skew, skew = (256 - priority) x advert / 256 (RFC 5798 6.1), so
the backups' timers end step x advert / 256 apart: 3.9 ms for a step of 10 at 0.1 s. The next
backup hears the new MASTER's first advert only that long after it, so with a narrow step two
backups become MASTER at once, the lower one yields a few ms later, and clients that took its
gratuitous ARP (or unsolicited NA) last send to a node without the VIP until the winner's next
round (garp_master_delay, 1 s): a SYN retransmitted in that second is lost. Measured in the lab
(dual stack, 3 nodes, 6 VIPs, handovers under load, keepalived's journal): at step 10, 2 double
MASTERs in 18 handovers (the two backups 2.4 ms apart, the winner's advert 7 ms in flight; 4
requests failed on one) and 3 in 24 (bench/handover); at step 50, none in 30 and none in 24.
A join or a leave moves only the VIPs that change concerns. Facts used (FIELD-NOTES):
VRRPv2 adverts are whole seconds, VRRPv3 0.01..40.95 s with no authentication; VRIDs are 1..255
per interface.

Dual stack: IPv4 and IPv6 VIPs are each one instance of one address family (keepalived allows no
mix in an instance). IPv6 instances are VRRPv3 (RFC 5798; VRRPv2 is IPv4 only), named
``VI6_<vrid>``, with their unicast source and peers the members' IPv6 addresses: keepalived binds
a link-local source without ``unicast_src_ip`` and every node then goes MASTER. VRIDs are unique
per interface and family (RFC 5798: IPv4 and IPv6 virtual routers are independent, and their
virtual MACs differ: 00-00-5E-00-01-vrid and 00-00-5E-00-02-vrid), so an IPv6 VIP may reuse the
VRID of its IPv4 twin. Homes count per family: the n-th IPv6 VIP is home of the member numbered n,
as the n-th IPv4 VIP is, so a dual-stack node owns one VIP of each family.
"""

from __future__ import annotations

import re
from typing import Any

import proxytier_ownership as ownership
from proxytier_members import address_of, vip_key
from proxytier_schema import DNS_LABEL_RE, boolean, extra, fail, integer, member_id, merge, vip

VIP_DEFAULTS: dict[str, Any] = {"address": None, "vrid": None, "owner": None, "interface": None}
#: proxytier:vip_pool: addresses handed out one per member (empty: no pool)
VIP_POOL_DEFAULTS: dict[str, Any] = {
    "addresses": [], "addresses6": [], "vrid_base": None, "interface": None, "pins": {},
}

VRRP_DEFAULTS: dict[str, Any] = {
    "version": 3,
    "advert_interval": 0.1,
    "priority_base": 150,
    "priority_step": "auto",
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


def vips(raw_vips: Any, default_interface: str, pool: bool = False) -> list[dict[str, Any]]:
    """proxytier:vips -> [{"iface": IPv4Interface|IPv6Interface, "vrid", "owner", "interface", "index",
    "path"}] (`path`: the pillar key path of the entry, for errors; `index`: the VIP's position
    among the VIPs of its family, which makes the member numbered index + 1 its home). At least one
    VIP unless a VIP pool is set (`pool`). Addresses are unique, and so is each (interface, family,
    VRID)."""
    if not isinstance(raw_vips, list) or (not raw_vips and not pool):
        raise fail(("vips",), raw_vips, "list at least one VIP: [{address: 198.18.0.101/24, vrid: 51}] "
                   "(or set vip_pool)")
    out = []
    per_family = {4: 0, 6: 0}
    for i, raw in enumerate(raw_vips):
        v = merge(VIP_DEFAULTS, raw, ("vips", i))
        iface = vip(v["address"], ("vips", i, "address"))
        vrid = v["vrid"]
        if isinstance(vrid, bool) or not isinstance(vrid, int) or not 1 <= vrid <= 255:
            raise fail(("vips", i, "vrid"), vrid, "VRRP router ids are 1..255; pick an unused one in that range")
        vif = default_interface if v["interface"] is None else interface(v["interface"], ("vips", i, "interface"))
        out.append({"iface": iface, "vrid": vrid, "owner": v["owner"], "interface": vif,
                    "index": per_family[iface.version], "path": ("vips", i)})
        per_family[iface.version] += 1
    check_unique(out)
    return out


def check_unique(entries: list[dict[str, Any]]) -> None:
    """No two VIP entries (of vips and of the whole VIP pool) share an address, or a VRID on one
    interface within one address family (IPv4 and IPv6 VRIDs are separate spaces, RFC 5798); the
    error names the later entry's key path and the earlier one."""
    seen_addr: dict[str, tuple[Any, ...]] = {}
    seen_vrid: dict[tuple[str, int, int], tuple[Any, ...]] = {}
    for v in entries:
        a = str(v["iface"].ip)
        where = ":".join(map(str, v["path"]))
        if a in seen_addr:
            raise fail((*v["path"], "address"), a, f"duplicate of proxytier:{':'.join(map(str, seen_addr[a]))}; "
                       "remove one")
        seen_addr[a] = v["path"]
        k = (v["interface"], v["iface"].version, v["vrid"])
        if k in seen_vrid:
            other = ":".join(map(str, seen_vrid[k]))
            on = f"{v['interface']}" + (" (IPv6)" if v["iface"].version == 6 else "")
            if v["path"][0] == "vips":
                raise fail((*v["path"], "vrid"), v["vrid"],
                           f"already used by proxytier:{other} on {on}; each VIP needs its own VRID")
            raise fail(("vip_pool", "vrid_base"), v["vrid"] - v["index"],
                       f"proxytier:{where} would get VRID {v['vrid']}, already used by proxytier:{other} on "
                       f"{on}; move vrid_base so that the pool's VRIDs miss the VIPs' ones")
        seen_vrid[k] = v["path"]


def vip_pool(raw: Any, default_interface: str) -> dict[str, Any]:
    """proxytier:vip_pool -> {"slots": [VIP entries as `vips` returns them, "owner" None, one per
    pool address, VRID vrid_base + position], "slots6": [the same for addresses6, each the twin of
    the slot at its position: the same VRID (in the IPv6 space) and, once assigned, the same
    owner], "pins": {member id: address}}. An empty pool (the default) has no slots. The
    addresses are of one family; addresses6 (IPv6, as many as addresses) only beside IPv4 ones.
    Pool addresses are all reserved (validated against the VIPs, kept out of mine members'
    addresses) whether a member holds them or not, so a join never meets a conflict that was not
    there before."""
    path: tuple[Any, ...] = ("vip_pool",)
    cfg = merge(VIP_POOL_DEFAULTS, raw, path)
    addrs = cfg["addresses"]
    if not isinstance(addrs, list):
        raise fail((*path, "addresses"), addrs, "list the pool's addresses: [198.18.0.111/24, 198.18.0.112/24]")
    if not addrs:
        if cfg["pins"]:
            raise fail((*path, "pins"), cfg["pins"], "pins need pool addresses; list them in vip_pool:addresses")
        if cfg["addresses6"]:
            raise fail((*path, "addresses6"), cfg["addresses6"], "addresses6 are the IPv6 twins of "
                       "vip_pool:addresses (IPv4); list those too, or put IPv6-only pool addresses in addresses")
        return {"slots": [], "slots6": [], "pins": {}}
    base = cfg["vrid_base"]
    if isinstance(base, bool) or not isinstance(base, int) or not 1 <= base <= 256 - len(addrs):
        raise fail((*path, "vrid_base"), base, f"the pool's {len(addrs)} addresses take VRIDs vrid_base.."
                   f"vrid_base+{len(addrs) - 1}, all within 1..255: pick a vrid_base in 1..{256 - len(addrs)} "
                   "whose range no other VRRP router on the link uses")
    vif = default_interface if cfg["interface"] is None else interface(cfg["interface"], (*path, "interface"))
    slots = [
        {"iface": vip(a, (*path, "addresses", k)), "vrid": base + k, "owner": None, "interface": vif,
         "index": k, "path": (*path, "addresses", k)}
        for k, a in enumerate(addrs)
    ]
    for s in slots[1:]:
        if s["iface"].version != slots[0]["iface"].version:
            raise fail((*s["path"],), addrs[s["index"]], "the pool's addresses are of one family (the first is "
                       f"IPv{slots[0]['iface'].version}); put IPv6 twins of IPv4 pool addresses in vip_pool:addresses6")
    slots6 = _pool_twins(cfg["addresses6"], slots, vif)
    by_address = {str(s["iface"].ip): s for s in slots}
    pins = cfg["pins"]
    if not isinstance(pins, dict):
        raise fail((*path, "pins"), pins,
                   "a mapping of member id to one of the pool's addresses: {proxy4: 198.18.0.114}")
    out: dict[str, str] = {}
    for mid, addr in pins.items():
        member_id(mid, (*path, "pins"))
        a = str(addr).split("/")[0].strip()
        if a not in by_address:
            raise fail((*path, "pins", mid), addr, "pin one of vip_pool:addresses (without or with its prefix)")
        if a in out.values():
            other = next(k for k, v in out.items() if v == a)
            raise fail((*path, "pins", mid), addr, f"already pinned to {other}; each member gets its own address")
        out[mid] = a
    return {"slots": slots, "slots6": slots6, "pins": out}


def _pool_twins(addrs6: Any, slots: list[dict[str, Any]], vif: str) -> list[dict[str, Any]]:
    """vip_pool:addresses6: the IPv6 twin of each IPv4 pool address (same position, same VRID)."""
    path: tuple[Any, ...] = ("vip_pool", "addresses6")
    if not isinstance(addrs6, list):
        raise fail(path, addrs6, "list the IPv6 twins of the pool's addresses: [2001:2::111/64, 2001:2::112/64]")
    if not addrs6:
        return []
    if slots[0]["iface"].version == 6:
        raise fail(path, addrs6, "vip_pool:addresses are IPv6 already: addresses6 are IPv6 twins of IPv4 pool "
                   "addresses; remove addresses6")
    if len(addrs6) != len(slots):
        raise fail(path, addrs6, f"one IPv6 twin per pool address: {len(slots)} addresses, {len(addrs6)} "
                   "addresses6 (the k-th goes to the member that gets the k-th address)")
    twins = []
    for k, a in enumerate(addrs6):
        iface = vip(a, (*path, k))
        if iface.version != 6:
            raise fail((*path, k), a, "addresses6 are IPv6 addresses like 2001:2::111/64 (the IPv4 ones go in "
                       "vip_pool:addresses)")
        twins.append({**slots[k], "iface": iface, "path": (*path, k)})
    return twins


def pool_vips(pool: dict[str, Any], members: list[dict[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(VIP entries, contested) for the members present: one pool VIP per member, its "owner" that
    member (proxytier_ownership.pool_assignment), in pool order, then their IPv6 twins (if any) in
    the same order, each owned by the member of its IPv4 address. Contested members (whose address
    depends on another member staying) come back as {"id", "address", "first_choice", "held_by"}."""
    if not pool["slots"]:
        return [], []
    ids = [m["id"] for m in members]
    by_address = {str(s["iface"].ip): s for s in pool["slots"]}
    try:
        assigned, contested = ownership.pool_assignment(list(by_address), ids, pool["pins"])
    except ValueError as e:
        raise fail(("vip_pool", "addresses"), f"{len(by_address)} addresses",
                   f"{e}: add addresses to the pool (and widen the VRID range) or remove pins of "
                   "members that are gone") from None
    owner_of = {a: m for m, a in assigned.items()}
    out = [{**s, "owner": owner_of[a]} for a, s in by_address.items() if a in owner_of]
    twins = [{**t, "owner": owner_of[a]} for a, t in zip(by_address, pool["slots6"], strict=False) if a in owner_of]
    return out + twins, contested


#: the widest priority step `auto` picks: 3 members at the default base get 150, 100, 50
AUTO_STEP_MAX = 50


def auto_priority_step(base: int, n_members: int) -> int:
    """proxytier:vrrp:priority_step `auto`: the widest whole step (at most AUTO_STEP_MAX, at least 1)
    that keeps the lowest of `n_members` priorities at 2 or more (above a handover's held node at 1)."""
    if n_members < 2:
        return AUTO_STEP_MAX
    return max(1, min(AUTO_STEP_MAX, (base - 2) // (n_members - 1)))


def settings(raw: dict[str, Any], n_members: int) -> dict[str, Any]:
    """proxytier:vrrp (merged with its defaults) -> validated settings."""
    path: tuple[Any, ...] = ("vrrp",)
    version = raw["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version not in (2, 3):
        raise fail((*path, "version"), version, "VRRP version is 2 or 3 (3 allows sub-second adverts)")
    adv = _advert_interval(raw["advert_interval"], version)
    base = integer(raw["priority_base"], (*path, "priority_base"), 2, 254, "priority_base")
    if raw["priority_step"] == "auto":
        step = auto_priority_step(base, n_members)
    else:
        step = integer(raw["priority_step"], (*path, "priority_step"), 1, 100, "priority_step (or auto)")
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


def uses_ipv6(vip_list: list[dict[str, Any]], members: list[dict[str, str]]) -> bool:
    """Whether the tier has IPv6 anywhere: an IPv6 VIP or a member's IPv6 address."""
    return any(v["iface"].version == 6 for v in vip_list) or any(address_of(m, 6) for m in members)


def check_families(vip_list: list[dict[str, Any]], vrrp: dict[str, Any]) -> None:
    """IPv6 VIPs need VRRPv3 (RFC 5798: VRRPv2 is IPv4 only) and unicast adverts: IPv6 multicast
    adverts come from link-local addresses, which the tier's packet filter (VRRP only from the
    members' addresses, proxytier_firewall) cannot tell from a neighbour's."""
    v6 = next((v for v in vip_list if v["iface"].version == 6), None)
    if v6 is None:
        return
    which = f"{vip_key(v6)} ({v6['iface']}) is IPv6"
    if vrrp["version"] != 3:
        raise fail(("vrrp", "version"), vrrp["version"], f"{which}, and VRRP for IPv6 is version 3 only (RFC 5798); "
                   "set version 3 (which has no auth_pass)")
    if not vrrp["unicast"]:
        raise fail(("vrrp", "unicast"), vrrp["unicast"], f"{which}: IPv6 VRRP multicast adverts come from link-local "
                   "addresses, which the packet filter (VRRP only from members) cannot tell from a neighbour's; "
                   "keep unicast: true with IPv6 VIPs")


def instances(
    vip_list: list[dict[str, Any]], members: list[dict[str, str]], vrrp: dict[str, Any], minion_id: str
) -> list[dict[str, Any]]:
    """One VRRP instance per VIP (vips, then pool VIPs), each
    {"name": "VI_<vrid>" (IPv6: "VI6_<vrid>"; "VI_<vrid>_<interface>" for each of the instances that
    share a VRID of one family on several interfaces: keepalived refuses two instances of one
    name), "vrid", "address", "prefixlen", "cidr", "interface",
    "owner", "is_owner", "priority" (this node's), "priorities" ({member id: priority}, highest
    first)}. When the tier has IPv6 (`uses_ipv6`), each also has "family" (4 or 6),
    "unicast_src_ip" (this node's address of that family) and "unicast_peers" (the other members'
    addresses of that family, in member order); without, the instance's source and peers are the
    node's `address` and the model's `peers`, as they always were.

    The order of a VIP's members is proxytier_ownership.order(address, members, owner, home): its
    pinned owner (which must be a member) or pool owner first, then the home member (numbered like
    the VIP's position among the VIPs of its family), then rendezvous order. Member order in pillar
    or mine does not matter; every node computes the same."""
    ids = [m["id"] for m in members]
    ipv6 = uses_ipv6(vip_list, members)
    interfaces: dict[tuple[int, int], set[str]] = {}
    for v in vip_list:
        interfaces.setdefault((v["iface"].version, v["vrid"]), set()).add(v["interface"])
    out = []
    for v in vip_list:
        address = str(v["iface"].ip)
        family = v["iface"].version
        if v["owner"] is not None and v["owner"] not in ids:
            raise fail((*v["path"], "owner"), v["owner"], f"the owner must be one of the members: {', '.join(ids)} "
                       "(when it leaves, remove the owner: only that VIP moves; vip_pool:pins stay while absent)")
        # home: the member numbered like the VIP's 1-based position in vips (or in the pool), per family
        order = ownership.order(address, ids, v["owner"], home=v["index"] + 1)
        priorities = {mid: vrrp["priority_base"] - j * vrrp["priority_step"] for j, mid in enumerate(order)}
        name = f"VI6_{v['vrid']}" if family == 6 else f"VI_{v['vrid']}"
        if len(interfaces[(family, v["vrid"])]) > 1:
            name += f"_{v['interface']}"
        inst = {
            "name": name,
            "vrid": v["vrid"],
            "address": address,
            "prefixlen": v["iface"].network.prefixlen,
            "cidr": v["iface"].with_prefixlen,
            "interface": v["interface"],
            "owner": order[0],
            "is_owner": order[0] == minion_id,
            "priority": priorities[minion_id],
            "priorities": priorities,
        }
        if ipv6:
            me = next(m for m in members if m["id"] == minion_id)
            inst["family"] = family
            inst["unicast_src_ip"] = address_of(me, family)
            inst["unicast_peers"] = [address_of(m, family) for m in members if m["id"] != minion_id]
        out.append(inst)
    return out


def dns_name(value: Any) -> str | None:
    """proxytier:dns_name: the name clients resolve (the records of `dns_records`), or None. RFC 1123
    labels (letters, digits, inner '-', 1..63 each, 253 in all), an optional final '.'."""
    if value is None:
        return None
    text = value[:-1] if isinstance(value, str) and value.endswith(".") else value
    if not isinstance(text, str) or not text or len(text) > 253 or not all(
        DNS_LABEL_RE.fullmatch(label) for label in text.split(".")
    ):
        raise fail(("dns_name",), value, "a DNS name like www.example.com: dot-separated labels of letters, "
                   "digits and inner '-' (1..63 each, 253 in all)")
    return value


def dns_records(instances_: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    """The DNS records to publish for round robin over the VIPs, one per VRRP instance:
    [{"name": proxytier:dns_name (None if unset), "type": "A"|"AAAA", "address", "owner"}]."""
    return [
        {"name": name, "type": "AAAA" if ":" in i["address"] else "A", "address": i["address"], "owner": i["owner"]}
        for i in instances_
    ]
