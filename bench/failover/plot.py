"""Timeline PNG of one failover event: what clients saw, and what VRRP did, on one time axis.

x = seconds relative to the event (dashed line at 0). Panels, top to bottom:
  1. probes per target (VIP): every probe a tick at its start; ok, slow (ok but > good_latency) and failed
     differ in colour AND marker; the outage span is shaded on its row and labelled;
  2. probe latency (log scale), with the good_latency line: a retransmitted SYN sits at ~1 s;
  3. VRRP state per node and instance as step lanes (MASTER / BACKUP / FAULT / STOPPED / unknown), labelled;
  4. which node holds each VIP (optional lane set; "nobody" is hatched).
Colours are the Okabe-Ito colour-blind safe palette; states also carry a text label or a hatch.

Samples are plain tuples (lists after a JSON round trip), times in the probe's clock (time.monotonic()):
  vrrp:    (t, node, instance, state)     e.g. (12.3, "proxy1", "VI_1", "MASTER")
  holders: (t, vip, node or None)         e.g. (12.3, "198.18.0.101", "proxy2")
A sample holds until the next sample of the same lane; before a lane's first sample its state is unknown.
Uses matplotlib's object API with the Agg canvas only: no display, no pyplot global state.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.failover import stats

OK, SLOW, FAILED = "#0072B2", "#E69F00", "#D55E00"  # blue, orange, vermilion
OUTAGE_SHADE = "#D55E00"
STATES = {  # colour, hatch
    "MASTER": ("#009E73", ""),
    "BACKUP": ("#56B4E9", ""),
    "FAULT": ("#D55E00", "///"),
    "STOPPED": ("#999999", "xxx"),
    "unknown": ("#FFFFFF", "..."),
}
NODE_COLOURS = ["#CC79A7", "#F0E442", "#009E73", "#56B4E9", "#E69F00", "#0072B2"]


def normalize_state(state: object) -> str:
    """keepalived's names (MASTER, BACKUP, FAULT, STOP/STOPPED) upper-cased; anything else is 'unknown'."""
    s = str(state or "").strip().upper()
    if s in ("STOP", "STOPPED", "DOWN", "DEAD"):
        return "STOPPED"
    return s if s in STATES else "unknown"


def step_segments(samples: Iterable[Sequence], end: float) -> dict[Hashable, list[tuple[float, float, object]]]:
    """Samples (t, *key, value) -> {key: [(t0, t1, value), ...]}: each value holds until the lane's next
    sample (the last until `end`); equal neighbours are merged. key is a tuple of the middle fields."""
    lanes: dict[Hashable, list[tuple[float, object]]] = {}
    for sample in sorted(samples, key=lambda s: s[0]):
        t, *key, value = sample
        lanes.setdefault(tuple(key), []).append((float(t), value))
    out: dict[Hashable, list[tuple[float, float, object]]] = {}
    for key, points in lanes.items():
        segs: list[tuple[float, float, object]] = []
        for (t0, value), nxt in zip(points, [*points[1:], (max(end, points[-1][0]), None)], strict=True):
            if segs and segs[-1][2] == value:
                segs[-1] = (segs[-1][0], nxt[0], value)
            else:
                segs.append((t0, nxt[0], value))
        out[key] = segs
    return out


def _lane_label(ax, x0: float, x1: float, y: float, text: str, xlim: tuple[float, float], dark: bool,
                boxed: bool) -> None:
    lo, hi = max(x0, xlim[0]), min(x1, xlim[1])
    if (hi - lo) / (xlim[1] - xlim[0]) > 0.06:  # only where the text fits
        box = {"facecolor": "white", "edgecolor": "none", "pad": 1} if boxed else None
        ax.text((lo + hi) / 2, y, text, ha="center", va="center", fontsize=7, color="white" if dark else "black",
                bbox=box)


def _draw_lanes(ax, segments: dict, order: list, colour_of, label_of, xlim, empty_text: str, ylabels: list[str]):
    if not order:
        ax.text(0.5, 0.5, empty_text, transform=ax.transAxes, ha="center", va="center", color="#555555")
        ax.set_yticks([])
        return
    for row, key in enumerate(order):
        first = segments[key][0][0]
        if first > xlim[0]:  # before the first sample: unknown
            colour, hatch = STATES["unknown"]
            ax.broken_barh([(xlim[0], first - xlim[0])], (row - 0.4, 0.8), facecolors=colour, hatch=hatch,
                           edgecolor="#BBBBBB", linewidth=0.3)
        for t0, t1, value in segments[key]:
            colour, hatch, dark = colour_of(value)
            ax.broken_barh([(t0, t1 - t0)], (row - 0.4, 0.8), facecolors=colour, hatch=hatch,
                           edgecolor="#555555" if hatch else colour, linewidth=0.3)
            _lane_label(ax, t0, t1, row, label_of(value), xlim, dark, bool(hatch))
    ax.set_yticks(range(len(order)), ylabels, fontsize=8)
    ax.set_ylim(len(order) - 0.5, -0.5)


def timeline(
    path: str | Path,
    records: Sequence,
    event_t: float,
    *,
    event: str,
    profile: str = "",
    vrrp: Iterable[Sequence] = (),
    holders: Iterable[Sequence] = (),
    targets: Sequence[str] | None = None,
    target_labels: dict[str, str] | None = None,
    window: tuple[float, float] | None = None,
    good_latency: float = stats.GOOD_LATENCY,
    settle: float = stats.SETTLE,
    note: str = "",
) -> Path:
    """Write the timeline PNG of one event (one repetition) to `path`; returns the path.

    records: probe.Record-like (.target .start .end .ok .error); event_t: the event's time.monotonic();
    targets: row order (default: sorted target names); target_labels: nicer row names (e.g. "VIP-1 .101");
    window: (seconds before, seconds after) the event to show (default: everything recorded).
    """
    path = Path(path)
    records = list(records)
    vrrp = [(t, node, inst, normalize_state(state)) for t, node, inst, state in vrrp]
    holders = [(t, vip, node or None) for t, vip, node in holders]
    names = list(targets) if targets is not None else sorted({r.target for r in records})
    labels = dict(target_labels or {})
    for name, label in list(labels.items()):  # "198.18.0.101:80" labels the holder lane "198.18.0.101" too
        labels.setdefault(name.rsplit(":", 1)[0], label)
    ev = stats.event_stats(records, event_t, names, good_latency=good_latency, settle=settle)

    times = [r.start - event_t for r in records] + [r.end - event_t for r in records]
    times += [s[0] - event_t for s in vrrp] + [s[0] - event_t for s in holders]
    if window is not None:
        xlim = (-abs(window[0]), abs(window[1]))
    elif times:
        xlim = (min(times) - 0.05, max(times) + 0.05)
    else:
        xlim = (-1.0, 1.0)
    if xlim[1] - xlim[0] < 0.5:
        xlim = (xlim[0] - 0.25, xlim[1] + 0.25)

    vrrp_seg = step_segments([(t - event_t, node, inst, state) for t, node, inst, state in vrrp], xlim[1])
    vrrp_order = sorted(vrrp_seg, key=lambda k: (k[1], k[0]))  # by instance, then node
    hold_seg = step_segments([(t - event_t, vip, node) for t, vip, node in holders], xlim[1])
    hold_order = sorted(hold_seg)
    nodes = sorted({n for segs in hold_seg.values() for _, _, n in segs if n})
    node_colour = {n: NODE_COLOURS[i % len(NODE_COLOURS)] for i, n in enumerate(nodes)}

    heights = [0.6 * max(len(names), 1) + 0.6, 1.8, 0.28 * max(len(vrrp_order), 2) + 0.5,
               0.3 * max(len(hold_order), 1) + 0.5]
    fig = Figure(figsize=(13, sum(heights) + 1.6), dpi=100, layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    ax_probe, ax_lat, ax_vrrp, ax_hold = axes

    # 1. probes per target
    for row, name in enumerate(names):
        rs = [r for r in records if r.target == name]
        groups = (
            ("ok", OK, "|", [r for r in rs if stats.is_good(r, good_latency)], 6),
            ("slow", SLOW, "^", [r for r in rs if r.ok and not stats.is_good(r, good_latency)], 20),
            ("failed", FAILED, "x", [r for r in rs if not r.ok], 20),
        )
        for _label, colour, marker, group, size in groups:
            if group:
                ax_probe.scatter([r.start - event_t for r in group], [row] * len(group), s=size, c=colour,
                                 marker=marker, linewidths=0.8, zorder=3)
        span = stats.outage_span(records, name, event_t, good_latency=good_latency, settle=settle)
        if span is not None:
            b, e = span[0] - event_t, span[1] - event_t
            ax_probe.broken_barh([(b, max(e - b, 0.01))], (row - 0.35, 0.7), facecolors=OUTAGE_SHADE, alpha=0.18,
                                 zorder=1)
            more = "" if span[2] else " (not recovered)"
            ax_probe.text(min(e, xlim[1]), row - 0.38, f" outage {e - b:.2f} s{more}", fontsize=8, va="bottom",
                          color="#8B2E00")
    ax_probe.set_yticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=8)
    ax_probe.set_ylim(max(len(names), 1) - 0.5, -0.7)
    if not names:
        ax_probe.text(0.5, 0.5, "no probes", transform=ax_probe.transAxes, ha="center", va="center")
    ax_probe.set_title("probes (one new connection + GET each)", fontsize=9, loc="left")
    ax_probe.legend(
        handles=[
            ax_probe.scatter([], [], c=OK, marker="|", label=f"ok (<= {good_latency:g} s)"),
            ax_probe.scatter([], [], c=SLOW, marker="^", label=f"slow (ok, > {good_latency:g} s)"),
            ax_probe.scatter([], [], c=FAILED, marker="x", label="failed"),
            Patch(facecolor=OUTAGE_SHADE, alpha=0.18, label="outage"),
        ],
        loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
    )

    # 2. latency
    for colour, marker, group in (
        (OK, ".", [r for r in records if stats.is_good(r, good_latency)]),
        (SLOW, "^", [r for r in records if r.ok and not stats.is_good(r, good_latency)]),
        (FAILED, "x", [r for r in records if not r.ok]),
    ):
        if group:
            ax_lat.scatter([r.start - event_t for r in group], [max(r.end - r.start, 1e-4) for r in group], s=6,
                           c=colour, marker=marker, linewidths=0.6)
    ax_lat.set_yscale("log")
    top = max([3.0] + [r.end - r.start for r in records]) * 1.5
    ax_lat.set_ylim(1e-4, top)
    ticks = [t for t in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0) if t <= top]
    ax_lat.set_yticks(ticks, [f"{t * 1000:g} ms" if t < 1 else f"{t:g} s" for t in ticks], fontsize=8)
    ax_lat.minorticks_off()
    ax_lat.axhline(good_latency, color="#555555", linestyle=":", linewidth=0.8)
    ax_lat.text(xlim[0], good_latency, f" good <= {good_latency:g} s", fontsize=7, va="bottom", color="#555555")
    ax_lat.set_ylabel("latency (s)", fontsize=8)
    ax_lat.set_title("probe latency (to answer or to error)", fontsize=9, loc="left")

    # 3. VRRP state
    def state_style(state):
        colour, hatch = STATES[state]
        return colour, hatch, state in ("MASTER",)

    _draw_lanes(ax_vrrp, vrrp_seg, vrrp_order, state_style, lambda s: s, xlim, "no VRRP state samples",
                [f"{node} {inst}" for node, inst in vrrp_order])
    ax_vrrp.set_title("VRRP state per node and instance", fontsize=9, loc="left")
    ax_vrrp.legend(
        handles=[Patch(facecolor=c, hatch=h, edgecolor="#555555", label=s) for s, (c, h) in STATES.items()],
        loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
    )

    # 4. VIP holders
    def holder_style(node):
        return (node_colour[node], "", False) if node else ("#FFFFFF", "///", False)

    _draw_lanes(ax_hold, hold_seg, hold_order, holder_style, lambda n: n or "nobody", xlim, "no VIP holder samples",
                [labels.get(k[0], str(k[0])) for k in hold_order])
    ax_hold.set_title("VIP holder", fontsize=9, loc="left")
    if nodes:
        ax_hold.legend(
            handles=[Patch(facecolor=node_colour[n], label=n) for n in nodes]
            + [Patch(facecolor="#FFFFFF", hatch="///", edgecolor="#555555", label="nobody")],
            loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
        )

    for ax in axes:
        ax.axvline(0, color="black", linestyle="--", linewidth=1, zorder=5)
        ax.grid(axis="x", color="#DDDDDD", linewidth=0.5)
        ax.set_xlim(*xlim)
    ax_probe.text(0, -0.7, " event", fontsize=8, va="bottom")
    ax_hold.set_xlabel("seconds since the event", fontsize=9)

    worst = ev["worst_target"]
    headline = f"outage {ev['outage']:.2f} s" + (f" (worst {labels.get(worst, worst)})" if ev["outage"] else "")
    if not ev["recovered"]:
        headline += ", NOT recovered by the end of the probe"
    fig.suptitle(
        f"{event}" + (f" - {profile}" if profile else "") + f"\n{headline}; {ev['failed']} failed, {ev['slow']} slow "
        f"of {ev['probes']} probes after the event" + (f"; {note}" if note else ""),
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
