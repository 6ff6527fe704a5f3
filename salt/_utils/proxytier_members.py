"""Who the tier's members are: proxytier:members (an explicit list) or the Salt mine of a target
(proxytier:members_from_mine), each member an ``{"id": minion id, "address": its own address}``.

Members keep the order the pillar lists them in; mine members are ordered by minion id in
natural order (proxy2 before proxy10). A member's address is never a VIP.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from proxytier_schema import ProxytierError, fail, ip, member_id, merge, natural_key

MEMBER_DEFAULTS: dict[str, Any] = {"id": None, "address": None}
MINE_DEFAULTS: dict[str, Any] = {"target": "*", "tgt_type": "glob", "function": "proxytier_address"}


def from_list(given: Any) -> list[dict[str, str]]:
    """proxytier:members -> members. Ids and addresses must be unique."""
    path: tuple[Any, ...] = ("members",)
    if not isinstance(given, list) or not given:
        raise fail(path, given, "list the proxy nodes as [{id: proxy1, address: 198.18.0.11}, ...]")
    members, ids, addrs = [], set(), set()
    for i, raw in enumerate(given):
        m = merge(MEMBER_DEFAULTS, raw, (*path, i))
        if not isinstance(m["id"], str) or not m["id"]:
            raise fail((*path, i, "id"), m["id"], "each member needs the minion id it runs on")
        member_id(m["id"], (*path, i, "id"))
        addr = str(ip(m["address"], (*path, i, "address")))
        if m["id"] in ids:
            raise fail((*path, i, "id"), m["id"], "member ids must be unique; remove the duplicate")
        if addr in addrs:
            raise fail((*path, i, "address"), addr, "two members cannot share an address")
        ids.add(m["id"])
        addrs.add(addr)
        members.append({"id": m["id"], "address": addr})
    return members


def mine_settings(given: Any) -> dict[str, Any]:
    """proxytier:members_from_mine with its defaults (target, tgt_type, function)."""
    return merge(MINE_DEFAULTS, given, ("members_from_mine",))


def from_mine(cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]) -> list[dict[str, str]]:
    """Members from mine data ``{minion id: address or [addresses]}``: each minion's first address
    that is not a VIP, loopback or link-local."""
    path: tuple[Any, ...] = ("members_from_mine",)
    if not mine:
        raise fail(
            (*path, "target"),
            cfg["target"],
            f"no minion matching it has mine data for '{cfg['function']}'; set mine_functions in pillar "
            "(see pillar.example) and run `salt '*' mine.update`, or list proxytier:members explicitly",
        )
    members = []
    for minion in sorted(mine, key=natural_key):
        data = mine[minion]
        chosen = _usable_address(data if isinstance(data, list) else [data], vips)
        if chosen is None:
            raise fail(
                (*path, "function"),
                cfg["function"],
                f"mine data of minion {minion} has no usable address ({data!r}); check its interface",
            )
        members.append({"id": str(minion), "address": chosen})
    return members


def _usable_address(candidates: list[Any], vips: set[str]) -> str | None:
    for cand in candidates:
        try:
            addr = ipaddress.ip_address(str(cand))
        except ValueError:
            continue
        if str(addr) not in vips and not addr.is_loopback and not addr.is_link_local:
            return str(addr)
    return None


def members(cfg: dict[str, Any], mine: dict[str, Any] | None, vips: set[str]) -> tuple[list[dict[str, str]], str]:
    """(members, source) from the merged pillar: source is "pillar" or "mine"."""
    if cfg["members"] is not None and cfg["members_from_mine"] is not None:
        raise ProxytierError(
            "proxytier:members and proxytier:members_from_mine are both set: keep one (an explicit list, or the mine)"
        )
    if cfg["members"] is not None:
        found, source = from_list(cfg["members"]), "pillar"
    elif cfg["members_from_mine"] is not None:
        found, source = from_mine(mine_settings(cfg["members_from_mine"]), mine, vips), "mine"
    else:
        raise ProxytierError(
            "proxytier:members is not set: list the proxy nodes (members: [{id: proxy1, address: ...}]) "
            "or set members_from_mine: {target: 'proxy*'}"
        )
    for m in found:
        if m["address"] in vips:
            raise fail(("members",), m["address"], f"member {m['id']} uses a VIP as its own address")
    return found, source


def me(found: list[dict[str, str]], minion_id: str) -> dict[str, str]:
    """This minion's member entry; an error when the formula is applied to a non-member."""
    ids = [m["id"] for m in found]
    if minion_id not in ids:
        raise ProxytierError(
            f"proxytier:members: minion {minion_id!r} is not a member of the tier ({', '.join(ids)}); "
            "add it to proxytier:members or target the formula only at members"
        )
    return next(m for m in found if m["id"] == minion_id)
