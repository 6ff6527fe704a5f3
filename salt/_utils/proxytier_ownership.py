"""Who is the preferred MASTER of each VIP, and in which order the others back it up: stable under
membership change (ARCHITECTURE.md, "Stable ownership").

Method: a fixed preference order of all possible member ids per VIP; a VIP's order is the present
members in that order (the first is the preferred owner, the next its first backup, ...). The
preference of a member for a VIP depends on that pair alone:

1. home: the member whose id ends in the number n is the home of the n-th VIP (proxy1 of the first
   of proxytier:vips, proxy2 of the second, ...; of the pool, of the n-th pool address); homes
   come first;
2. then rendezvous (highest-random-weight) hashing: the first 8 bytes of
   sha256("<VIP address>\n<member id>") (hashlib, the same on every node and Python; never hash(),
   which is salted per process), highest first; ties (practically impossible) by id.

Because the order is fixed and only filtered by who is present:

- a member that leaves takes out only its own place in each order: the VIPs it owned go to their
  next member, every other VIP keeps its owner, and the survivors keep their relative order;
- a member that joins takes the VIPs it is home of and those for which it weighs most (each with
  probability 1/N), and nothing else; the others keep owner and relative order.

That is the only way to be stable for every join and leave when owners are computed from the
current member set alone: a stable choice of one member per VIP must be "the highest present member
of a fixed order of all possible ids" (if a leave of a non-owner never changes the owner, the
pairwise choices are transitive), and no fixed orders of three or more VIPs are balanced for every
member set (Erdos-Szekeres). The price is balance:

- numbered members (proxy1..proxyN) with N VIPs own one each (their homes), with fewer VIPs
  than members at most one each; VIPs beyond the numbers present go by rendezvous hashing, each
  to a uniformly random member, so the spread (max - min VIPs per member) is only even in
  expectation: with unnumbered ids and 3 members x 3 VIPs each owns one in 2 of 9 cases;
- no balancing step is applied on top: a cap on the count per member moves VIPs of members that
  stay (one move displaces the next), which is what this module is for avoiding.

Exact balance for any ids comes from the pillar: an explicit `owner` (proxytier:vips:N:owner) wins
while that member is present (its backups follow in the order above), and a VIP pool
(proxytier:vip_pool) gives every member one VIP of its own (`pool_assignment`).

Pure Python, standard library only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

_TRAILING_NUMBER = re.compile(r"[0-9]+$")


def ordinal(member: str) -> int | None:
    """The number an id ends in (proxy3 -> 3, web-07 -> 7), or None (proxy-a)."""
    m = _TRAILING_NUMBER.search(member)
    return int(m.group()) if m else None


def weight(key: str, member: str) -> int:
    """The rendezvous weight of `member` for `key` (a VIP address): an integer 0..2**64-1 from
    sha256, identical on every node and Python version."""
    return int.from_bytes(hashlib.sha256(f"{key}\n{member}".encode()).digest()[:8], "big")


def preference(key: str, member: str, home: int | None = None) -> tuple[int, int, str]:
    """How much `member` wants the VIP `key` (its address) whose home number is `home` (its 1-based
    position in vips or in the pool; None: no home), as a sort key (smaller first): home members,
    then descending rendezvous weight, then id. Depends on the pair alone."""
    return (0 if home is not None and ordinal(member) == home else 1, -weight(key, member), member)


def ranking(key: str, members: Iterable[str], home: int | None = None) -> list[str]:
    """`members` (ids) in the VIP's preference order (`preference`). The result does not depend on
    the order of `members`."""
    return sorted(members, key=lambda m: preference(key, m, home))


def order(key: str, members: Iterable[str], owner: str | None = None, home: int | None = None) -> list[str]:
    """The VRRP order of one VIP: [preferred owner, first backup, ...]. `owner` (pinned in pillar or
    assigned from the pool; it must be in `members`) goes first, the others follow in preference
    order; without it the whole order is the preference order."""
    ids = list(members)
    if owner is None:
        return ranking(key, ids, home)
    return [owner, *ranking(key, [m for m in ids if m != owner], home)]


def pool_assignment(
    slots: list[str], members: Iterable[str], pins: dict[str, str]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """One pool address per member -> ({member id: address}, contested).

    slots: the pool's addresses (as strings); members: the present member ids; pins: {member id:
    address} from pillar (proxytier:vip_pool:pins; a pinned address is reserved for its member even
    while it is absent, so nobody has to give it back when it joins).

    A pinned member gets its pin. Every other member wants the free address it prefers most
    (`preference`: the k-th address is home of the member numbered k, so proxy1..proxyN get the
    first N addresses; others by rendezvous weight); when two want the same one, the stronger pair
    wins and the other takes its next choice (pairs are taken strongest first: the unique stable
    matching of the pair preferences, independent of member order).

    Guarantee: a pinned member, and a member on its home address, keeps its address through any
    join or leave of others (except a join of another member with the same number: ids sharing a
    number, proxy1 and edge1, contest that home). Any other member is `contested`: its
    address depends on who else is present (a member joining whose home it holds, or whose hash
    weighs more, takes it; it moves to a preferred address freed by a leave). Contested members
    are returned as {"id", "address", "why"}; pinning them (to the address they hold: nothing
    moves) makes them stable.

    Raises ValueError when there are more unpinned members than free addresses (the caller turns
    it into a pillar error).
    """
    ids = sorted(set(members))
    reserved = set(pins.values())
    out = {m: pins[m] for m in ids if m in pins}
    free = [s for s in slots if s not in reserved]
    todo = [m for m in ids if m not in pins]
    if len(todo) > len(free):
        raise ValueError(f"{len(todo)} unpinned members need a VIP each, {len(free)} pool addresses are free")
    home = {s: k + 1 for k, s in enumerate(slots)}
    pairs = sorted((preference(s, m, home[s]), s) for m in todo for s in free)
    taken: dict[str, str] = {}
    for (_h, _w, m), s in pairs:
        if m not in out and s not in taken:
            out[m] = s
            taken[s] = m
    contested = []
    for m in todo:
        if home[out[m]] == ordinal(m):
            continue
        first = min(free, key=lambda s, m=m: (preference(s, m, home[s]), s))
        if first != out[m]:
            why = f"its first choice {first} is held by {taken[first]}"
        elif ordinal(m) is None or not 1 <= ordinal(m) <= len(slots):  # type: ignore[operator]
            why = f"no home address (its id does not end in 1..{len(slots)}): a member numbered like it can take it"
        else:
            why = f"its home address {slots[ordinal(m) - 1]} is pinned to another member"  # type: ignore[operator]
        contested.append({"id": m, "address": out[m], "why": why})
    return out, contested


def spread(owners: Iterable[str], members: Iterable[str]) -> int:
    """max - min of the number of VIPs each member owns (0: perfectly even), over `members`
    (members that own nothing count as 0)."""
    counts = dict.fromkeys(members, 0)
    for o in owners:
        counts[o] = counts.get(o, 0) + 1
    return max(counts.values()) - min(counts.values()) if counts else 0
