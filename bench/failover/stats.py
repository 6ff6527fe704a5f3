"""Client-observed outage and failure counts from probe records (bench.failover.probe.Record).

GOOD probe: ok (HTTP 200, whole body) AND latency <= `good_latency` (default 0.3 s). A probe whose first SYN
was lost and whose retransmitted SYN (Linux: after 1 s) got through is ok to the program but was an outage to a
person waiting for it, so it counts as outage, not success.

Outage of one target for an event at `event_t` (all times time.monotonic()):
    from the start of the first probe at/after event_t that was not GOOD
    to the start of the first later GOOD probe after which every probe started within `settle` s
    (default 0.2 s) is GOOD too (a flapping recovery is one outage, not several).
0 when no probe at/after the event was bad. If the records end before such a recovery, the outage runs to the
last probe's start (and `recovered` is False): a lower bound.

Functions over records take any iterable of objects with .target .start .end .ok .error (probe.Record, as
BackgroundProbe.stop() or ProbeResult.from_dict() give them). Functions over several repetitions take the dicts
`event_stats` returns.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

GOOD_LATENCY = 0.3
SETTLE = 0.2


class _Rec(Protocol):
    target: str
    start: float
    end: float
    ok: bool
    error: str


def is_good(r: _Rec, good_latency: float = GOOD_LATENCY) -> bool:
    return bool(r.ok) and (r.end - r.start) <= good_latency


def _select(
    records: Iterable[_Rec], target: str | None = None, since: float | None = None, until: float | None = None
) -> list[_Rec]:
    """Records of `target` (all if None) whose start is in [since, until), sorted by start."""
    return sorted(
        (
            r
            for r in records
            if (target is None or r.target == target)
            and (since is None or r.start >= since)
            and (until is None or r.start < until)
        ),
        key=lambda r: r.start,
    )


def outage_span(
    records: Iterable[_Rec],
    target: str,
    event_t: float,
    *,
    good_latency: float = GOOD_LATENCY,
    settle: float = SETTLE,
    until: float | None = None,
) -> tuple[float, float, bool] | None:
    """(begin, end, recovered) of the outage after event_t (monotonic times), None when nothing went bad."""
    rs = _select(records, target, event_t, until)
    good = [is_good(r, good_latency) for r in rs]
    first_bad = next((i for i, g in enumerate(good) if not g), None)
    if first_bad is None:
        return None
    begin = rs[first_bad].start
    i = first_bad + 1
    while i < len(rs):
        if not good[i]:
            i += 1
            continue
        window_end = rs[i].start + settle
        j = i
        while j < len(rs) and rs[j].start <= window_end and good[j]:
            j += 1
        if j == len(rs) or rs[j].start > window_end:  # the settle window (or what is left of the run) is all good
            return begin, rs[i].start, True
        i = j  # rs[j] is bad inside the window: the outage goes on
    return begin, rs[-1].start, False


def outage(records: Iterable[_Rec], target: str, event_t: float, **options: float | None) -> float:
    """Client-observed outage in seconds of `target` after the event (see the module doc); 0.0 if none.
    Options as for outage_span (good_latency, settle, until)."""
    span = outage_span(records, target, event_t, **options)
    return 0.0 if span is None else span[1] - span[0]


def failed(
    records: Iterable[_Rec], target: str | None = None, since: float | None = None, until: float | None = None
) -> int:
    """Probes that did not get an HTTP 200 with its body (started in [since, until))."""
    return sum(1 for r in _select(records, target, since, until) if not r.ok)


#: probe error classes (probe.py) of a connection that was never established
CONNECT_ERRORS = frozenset({"refused", "connect-timeout", "unreachable"})


def failed_connect(
    records: Iterable[_Rec], target: str | None = None, since: float | None = None, until: float | None = None
) -> int:
    """Failed probes (started in [since, until)) whose connection was never established (CONNECT_ERRORS)."""
    return sum(1 for r in _select(records, target, since, until) if not r.ok and r.error in CONNECT_ERRORS)


def slow(
    records: Iterable[_Rec],
    target: str | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    good_latency: float = GOOD_LATENCY,
) -> int:
    """Probes that got their answer, but later than `good_latency` (typically a retransmitted SYN)."""
    return sum(1 for r in _select(records, target, since, until) if r.ok and r.end - r.start > good_latency)


def errors(
    records: Iterable[_Rec], target: str | None = None, since: float | None = None, until: float | None = None
) -> dict[str, int]:
    """Failed probes by error class, most common first."""
    counts = Counter(r.error or "?" for r in _select(records, target, since, until) if not r.ok)
    return dict(counts.most_common())


def event_stats(
    records: Iterable[_Rec],
    event_t: float,
    targets: Sequence[str] | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    good_latency: float = GOOD_LATENCY,
    settle: float = SETTLE,
) -> dict:
    """One repetition of one event, as a JSON-friendly dict.

    outage = the worst target's outage (a client of the DNS round robin hits every VIP), failed/slow = sums over
    targets of probes started in [since, until) (since defaults to event_t), per_target = the breakdown,
    worst_target = the target with the longest outage (then most failures), None when no target suffered.
    failed_connect = those failed probes whose connection was never established (CONNECT_ERRORS: refused,
    timed out or unreachable): new connections the fault turned away, as opposed to connections that were in
    flight when a process died or a VIP moved (reset, closed, timeout).
    """
    records = list(records)
    names = list(targets) if targets is not None else sorted({r.target for r in records})
    since = event_t if since is None else since
    per_target = {}
    for name in names:
        span = outage_span(records, name, event_t, good_latency=good_latency, settle=settle, until=until)
        per_target[name] = {
            "outage": 0.0 if span is None else round(span[1] - span[0], 4),
            "outage_begin": None if span is None else round(span[0] - event_t, 4),  # relative to the event
            "recovered": True if span is None else span[2],
            "failed": failed(records, name, since, until),
            "failed_connect": failed_connect(records, name, since, until),
            "slow": slow(records, name, since, until, good_latency=good_latency),
            "probes": len(_select(records, name, since, until)),
            "errors": errors(records, name, since, until),
        }
    worst = max(names, key=lambda n: (per_target[n]["outage"], per_target[n]["failed"]), default=None)
    if worst is not None and not (per_target[worst]["outage"] or per_target[worst]["failed"]):
        worst = None  # nobody suffered
    return {
        "outage": per_target[worst]["outage"] if worst else 0.0,
        "worst_target": worst,
        "recovered": all(p["recovered"] for p in per_target.values()),
        "failed": sum(p["failed"] for p in per_target.values()),
        "failed_connect": sum(p["failed_connect"] for p in per_target.values()),
        "slow": sum(p["slow"] for p in per_target.values()),
        "probes": sum(p["probes"] for p in per_target.values()),
        "per_target": per_target,
    }


def _med_max(values: Sequence[float]) -> tuple[float, float]:
    return (statistics.median(values), max(values)) if values else (0.0, 0.0)


def summarize(reps: Sequence[dict]) -> dict:
    """Median and max over repetitions (dicts from event_stats) of outage, failed and slow (and failed_connect
    when every repetition has it: runs before it was counted lack it), also per target."""
    out: dict = {"reps": len(reps)}
    with_connect = bool(reps) and all("failed_connect" in r for r in reps)
    keys = ("outage", "failed", "slow") + (("failed_connect",) if with_connect else ())
    for key in keys:
        out[f"{key}_median"], out[f"{key}_max"] = _med_max([r[key] for r in reps])
    out["unrecovered"] = sum(1 for r in reps if not r.get("recovered", True))
    names = sorted({n for r in reps for n in r.get("per_target", {})})
    out["per_target"] = {}
    for name in names:
        rows = [r["per_target"][name] for r in reps if name in r.get("per_target", {})]
        entry = {}
        for key in keys:
            entry[f"{key}_median"], entry[f"{key}_max"] = _med_max([row[key] for row in rows])
        out["per_target"][name] = entry
    def badness(name: str) -> tuple[float, float, float]:
        t = out["per_target"][name]
        return t["outage_median"], t["failed_median"], t["outage_max"]

    worst = max(names, key=badness, default=None)
    out["worst_target"] = worst if worst is not None and any(badness(worst)) else None  # None: nobody suffered
    return out


def median_rep(reps: Sequence[dict]) -> int:
    """Index of the repetition whose outage is the (lower) median: the one worth a timeline plot."""
    if not reps:
        raise ValueError("no repetitions")
    order = sorted(range(len(reps)), key=lambda i: (reps[i]["outage"], reps[i]["failed"]))
    return order[(len(order) - 1) // 2]


def ratio(a: float, b: float) -> float | None:
    """a / b, e.g. median outage with keepalived's defaults / with proxytier's defaults.

    Both 0 -> 1.0 (the same); b == 0 < a -> None (no finite ratio: say so, do not print infinity).
    """
    if b > 0:
        return a / b
    return 1.0 if a == 0 else None
