"""Who the tier's members are: proxytier:members (an explicit list) or the Salt mine of a target
(proxytier:members_from_mine), each member an ``{"id": minion id, "address": its own address}``,
plus ``"address6"`` (its IPv6 address) when it has one beside an IPv4 ``address``.

Address families (dual stack): every member's ``address`` is of one family, the one HAProxy reaches
each nginx over. A member with an IPv4 ``address`` may have an IPv6 ``address6`` beside it; an
IPv6-only member has its IPv6 address as ``address``. A VIP of a family needs every member to have
an address of that family (``check_families``): each VIP is one VRRP instance whose unicast
source and peers are the members' addresses of the VIP's family, and every member must be able to
take over every VIP.

Members keep the order the pillar lists them in; mine members are ordered by minion id in
natural order (proxy2 before proxy10). A member's address is never a VIP.

Membership is authorised, not self-declared: mine data is published by the minions themselves,
so a minion of the mine target becomes a member only if its id is allowed (``allow.ids``: ids or
glob patterns) and its address lies in an allowed network (``allow.networks``); any other is
ignored and reported in the model's ``members_ignored``, never a member.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from typing import Any

from proxytier_schema import NAME_RE, ProxytierError, fail, ip, member_id, merge, natural_key

MEMBER_DEFAULTS: dict[str, Any] = {"id": None, "address": None, "address6": None}
MINE_DEFAULTS: dict[str, Any] = {
    "target": None,
    "tgt_type": "glob",
    "function": "proxytier_address",
    "allow": {"ids": None, "networks": None},
}
#: Salt's targeting types (salt.client LocalClient / mine.get tgt_type)
TGT_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre", "nodegroup", "range",
             "compound", "ipcidr")
ID_PATTERN_RE = re.compile(r"[A-Za-z0-9_.*?\[\]-]{1,63}")
FUNCTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")


def from_list(given: Any) -> list[dict[str, str]]:
    """proxytier:members -> members. Ids and addresses (address and address6) must be unique."""
    path: tuple[Any, ...] = ("members",)
    if not isinstance(given, list) or not given:
        raise fail(path, given, "list the proxy nodes as [{id: proxy1, address: 198.18.0.11}, ...]")
    members, ids, addrs = [], set(), set()
    for i, raw in enumerate(given):
        m = merge(MEMBER_DEFAULTS, raw, (*path, i))
        if not isinstance(m["id"], str) or not m["id"]:
            raise fail((*path, i, "id"), m["id"], "each member needs the minion id it runs on")
        member_id(m["id"], (*path, i, "id"))
        primary = _global(ip(m["address"], (*path, i, "address")), m["address"], (*path, i, "address"))
        entry = {"id": m["id"], "address": str(primary)}
        if m["address6"] is not None:
            entry["address6"] = _address6(m["address6"], primary, (*path, i, "address6"))
        if m["id"] in ids:
            raise fail((*path, i, "id"), m["id"], "member ids must be unique; remove the duplicate")
        for k in ("address", "address6"):
            if k not in entry:
                continue
            if entry[k] in addrs:
                raise fail((*path, i, k), entry[k], "two members cannot share an address")
            addrs.add(entry[k])
        ids.add(m["id"])
        members.append(entry)
    return members


def _global(addr: Any, value: Any, path: tuple[Any, ...]) -> Any:
    """`addr` unless it is an IPv6 link-local address (fe80::/10), which is no member address: it
    needs a zone, and keepalived's unicast_src_ip and peers must be global addresses."""
    if addr.version == 6 and addr.is_link_local:
        raise fail(path, value, "a link-local address (fe80::/10) is only valid on one link and with a zone; "
                   "use the member's global IPv6 address on the interface, like 2001:2::11")
    return addr


def _address6(value: Any, primary: Any, path: tuple[Any, ...]) -> str:
    """A member's `address6`: a global IPv6 address beside an IPv4 `address`."""
    a6 = _global(ip(value, path), value, path)
    if a6.version != 6:
        raise fail(path, value, "address6 is the member's IPv6 address beside its IPv4 address; expected an "
                   "IPv6 address like 2001:2::11")
    if primary.version == 6:
        raise fail(path, value, f"address is already IPv6 ({primary}): address6 is for an IPv6 address beside an "
                   "IPv4 address; remove address6 (an IPv6-only member has its address in address)")
    return str(a6)


def address_of(member: dict[str, str], family: int) -> str | None:
    """The member's address of `family` (4 or 6): its ``address`` if of that family, else its
    ``address6`` for 6; None when it has none."""
    primary = member["address"]
    if (":" in primary) == (family == 6):
        return primary
    return member.get("address6") if family == 6 else None


def family_name(family: int) -> str:
    """"IPv4" or "IPv6" for an address family 4 or 6."""
    return "IPv6" if family == 6 else "IPv4"


def vip_key(v: dict[str, Any]) -> str:
    """The pillar key of a VIP entry's address, for messages: ``proxytier:vips:3:address`` or
    ``proxytier:vip_pool:addresses6:0``."""
    path = (*v["path"], "address") if v["path"][0] == "vips" else v["path"]
    return ":".join(["proxytier", *map(str, path)])


def check_families(found: list[dict[str, str]], vips: list[dict[str, Any]], source: str) -> None:
    """Every member's `address` is of one family, and every member has an address of each VIP's
    family (`vips`: VIP entries with "iface" and "path", as proxytier_vrrp.vips gives them). The
    error names the member's key (for mine members, ``members_from_mine:allow:networks``), its
    value, the VIP that needs it and the fix."""
    first = found[0]
    for i, m in enumerate(found):
        if (":" in m["address"]) != (":" in first["address"]):
            fam = family_name(6 if ":" in first["address"] else 4)
            where = ("members", i, "address") if source == "pillar" else ("members_from_mine", "allow", "networks")
            raise fail(where, m["address"], f"every member's address is of one family ({first['id']}'s is {fam}: "
                       f"HAProxy reaches each nginx at it); give {m['id']} an {fam} address"
                       + (" (an IPv6 address beside an IPv4 one goes in address6)" if fam == "IPv4" else ""))
    for family in (4, 6):
        needing = next((v for v in vips if v["iface"].version == family), None)
        if needing is None:
            continue
        for i, m in enumerate(found):
            if address_of(m, family) is not None:
                continue
            why = (f"{vip_key(needing)} ({needing['iface']}) is {family_name(family)}, and every member needs an "
                   f"address of each VIP's family (one VRRP instance per VIP, its unicast peers of the VIP's family)")
            if source != "pillar":
                raise fail(("members_from_mine", "allow", "networks"), m["address"],
                           f"minion {m['id']} publishes no {family_name(family)} address inside these networks, but "
                           f"{why}; add its {family_name(family)} network, or remove the {family_name(family)} VIPs")
            if family == 6:
                raise fail(("members", i, "address6"), m.get("address6"),
                           f"{why}; set {m['id']}'s address6 to its IPv6 address on the interface "
                           "(like 2001:2::11), or remove the IPv6 VIPs")
            raise fail(("members", i, "address"), m["address"],
                       f"{why}; give {m['id']} an IPv4 address (its IPv6 one then goes in address6), "
                       "or remove the IPv4 VIPs")


def mine_settings(given: Any) -> dict[str, Any]:
    """proxytier:members_from_mine with its defaults, validated: an explicit `target` (no default),
    `tgt_type`, the mine `function`, and the allow-list (`allow.ids`: minion ids or glob patterns;
    `allow.networks`: CIDRs a member's address must lie in), both required. The networks are
    returned as ipaddress networks."""
    path: tuple[Any, ...] = ("members_from_mine",)
    cfg = merge(MINE_DEFAULTS, given, path)
    target = cfg["target"]
    if isinstance(target, list):
        ok = bool(target) and all(isinstance(t, str) and t.strip() for t in target)
    else:
        ok = isinstance(target, str) and bool(target.strip())
    if not ok:
        raise fail((*path, "target"), target, "set the minions to read mine data from explicitly, e.g. 'proxy*' "
                   "(there is no default: every minion publishes its own mine data)")
    if cfg["tgt_type"] not in TGT_TYPES:
        raise fail((*path, "tgt_type"), cfg["tgt_type"], "one of Salt's target types: " + ", ".join(TGT_TYPES))
    if not isinstance(cfg["function"], str) or not FUNCTION_RE.fullmatch(cfg["function"]):
        raise fail((*path, "function"), cfg["function"], "expected a mine function name like proxytier_address")
    allow = cfg["allow"]
    ids = allow["ids"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and ID_PATTERN_RE.fullmatch(i) for i in ids):
        raise fail((*path, "allow", "ids"), ids, "list the minion ids that may be members, or glob patterns of "
                   "them: [proxy1, proxy2] or ['proxy*'] (letters, digits, '_', '.', '-', '*', '?', '[]')")
    nets = allow["networks"]
    if not isinstance(nets, list) or not nets:
        raise fail((*path, "allow", "networks"), nets, "list the networks members' addresses must be in, "
                   "e.g. [198.18.0.0/24]")
    networks = []
    for i, net in enumerate(nets):
        try:
            networks.append(ipaddress.ip_network(str(net).strip(), strict=True))
        except ValueError:
            raise fail((*path, "allow", "networks", i), net, "expected a network like 198.18.0.0/24 "
                       "(the network address, no host bits)") from None
    return {**cfg, "allow": {"ids": list(ids), "networks": networks}}


def from_mine(cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]) -> list[dict[str, str]]:
    """Members from mine data ``{minion id: address or [addresses]}`` (see `mine_members`)."""
    return mine_members(cfg, mine, vips)[0]


def mine_members(
    cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(members, ignored) from mine data ``{minion id: address or [addresses]}`` and the validated
    settings `cfg` (mine_settings). A minion is a member when its id is a valid member id allowed by
    ``allow.ids`` and one of its addresses (not a VIP, loopback or link-local) lies in
    ``allow.networks``: its address is the first such IPv4 address, and the first such IPv6 one is
    its address6 (an IPv6-only minion: the first IPv6 address is its address). Any other minion is
    ignored: ``{"id", "address", "why"}``. Two members with one address are an error."""
    path: tuple[Any, ...] = ("members_from_mine",)
    if not mine:
        raise fail(
            (*path, "target"),
            cfg["target"],
            f"no minion matching it has mine data for '{cfg['function']}'; set mine_functions in pillar "
            "(see pillar.example) and run `salt '*' mine.update`, or list proxytier:members explicitly",
        )
    allow = cfg["allow"]
    members: list[dict[str, str]] = []
    ignored: list[dict[str, Any]] = []
    by_address: dict[str, str] = {}
    for minion in sorted(mine, key=lambda m: natural_key(str(m))):
        data = mine[minion]
        usable = _usable_addresses(data if isinstance(data, list) else [data], vips)
        shown = usable[0] if usable else None
        if not isinstance(minion, str) or not NAME_RE.fullmatch(minion):
            ignored.append({"id": repr(minion), "address": shown, "why": "not a valid member id (letters, digits, "
                            "'.', '_', '-'; it would become an HAProxy server name and keepalived's router_id)"})
            continue
        if not any(fnmatch.fnmatchcase(minion, pattern) for pattern in allow["ids"]):
            ignored.append({"id": minion, "address": shown, "why": "id not in proxytier:members_from_mine:allow:ids"})
            continue
        allowed = [a for a in usable if any(ipaddress.ip_address(a) in net for net in allow["networks"])]
        if not allowed:
            why = ("no usable address in its mine data" if not usable
                   else "no address inside proxytier:members_from_mine:allow:networks")
            ignored.append({"id": minion, "address": shown, "why": why})
            continue
        v4 = [a for a in allowed if ":" not in a]
        v6 = [a for a in allowed if ":" in a]
        entry = {"id": minion, "address": (v4 or v6)[0]}
        if v4 and v6:
            entry["address6"] = v6[0]
        for chosen in (entry["address"], entry.get("address6")):
            if chosen is None:
                continue
            if chosen in by_address:
                raise fail((*path, "allow"), chosen, f"minions {by_address[chosen]} and {minion} both publish this "
                           "address; an address belongs to one member")
            by_address[chosen] = minion
        members.append(entry)
    if not members:
        raise fail(
            (*path, "allow"),
            {"ids": allow["ids"], "networks": [str(n) for n in allow["networks"]]},
            "no minion of the target is allowed: " + "; ".join(f"{i['id']}: {i['why']}" for i in ignored),
        )
    return members, ignored


def _usable_addresses(candidates: list[Any], vips: set[str]) -> list[str]:
    out = []
    for cand in candidates:
        text = str(cand).strip()
        if "%" in text:
            continue
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if str(addr) not in vips and not addr.is_loopback and not addr.is_link_local:
            out.append(str(addr))
    return out


def members(cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]) -> tuple[list[dict[str, str]], str]:
    """(members, source) from the merged pillar: source is "pillar" or "mine"."""
    found, source, _ignored = members_checked(cfg, mine, vips)
    return found, source


def members_checked(
    cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]
) -> tuple[list[dict[str, str]], str, list[dict[str, Any]]]:
    """(members, source, ignored) from the merged pillar: source is "pillar" or "mine"; ignored are
    the mine's minions that the allow-list keeps out (always empty for "pillar")."""
    ignored: list[dict[str, Any]] = []
    if cfg["members"] is not None and cfg["members_from_mine"] is not None:
        raise ProxytierError(
            "proxytier:members and proxytier:members_from_mine are both set: keep one (an explicit list, or the mine)"
        )
    if cfg["members"] is not None:
        found, source = from_list(cfg["members"]), "pillar"
    elif cfg["members_from_mine"] is not None:
        (found, ignored), source = mine_members(mine_settings(cfg["members_from_mine"]), mine, vips), "mine"
    else:
        raise ProxytierError(
            "proxytier:members is not set: list the proxy nodes (members: [{id: proxy1, address: ...}]) "
            "or set members_from_mine: {target: 'proxy*', allow: {ids: ['proxy*'], networks: [198.18.0.0/24]}}"
        )
    for m in found:
        for k in ("address", "address6"):
            if m.get(k) in vips:
                raise fail(("members",), m[k], f"member {m['id']} uses a VIP as its own address")
    return found, source, ignored


def me(found: list[dict[str, str]], minion_id: str, ignored: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """This minion's member entry; an error when the formula is applied to a non-member (saying why
    the allow-list ignored it, if it did)."""
    ids = [m["id"] for m in found]
    if minion_id not in ids:
        why = next((f" (ignored from the mine: {i['why']})" for i in ignored or [] if i["id"] == minion_id), "")
        raise ProxytierError(
            f"proxytier:members: minion {minion_id!r} is not a member of the tier ({', '.join(ids)}){why}; "
            "add it to proxytier:members or target the formula only at members"
        )
    return next(m for m in found if m["id"] == minion_id)
