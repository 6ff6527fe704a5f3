"""Figures of a scale run: medians per case and how time grows with the number of sites."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from typing import Any

#: a step whose time grows more than this factor above its size ratio counts as worse than linear
#: (fixed per-node costs make small steps look better than linear; noise is a few percent)
WORSE_THAN_LINEAR = 1.25


def case_summary(per_node: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-node medians (formula_cost.measure_node results, by node) -> the case's figures: the median over
    its nodes of the model, each file group's render and the total (seconds), the slowest node's total,
    and the sizes (bytes, the median node's)."""
    nodes = list(per_node.values())
    if not nodes:
        raise ValueError("a case needs at least one node")
    groups = list(nodes[0]["render_s"])
    return {
        "model_s": statistics.median(n["model_s"] for n in nodes),
        "render_s": {g: statistics.median(n["render_s"][g] for n in nodes) for g in groups},
        "total_s": statistics.median(n["total_s"] for n in nodes),
        "worst_node_total_s": max(n["total_s"] for n in nodes),
        "bytes": {g: int(statistics.median(n["bytes"][g] for n in nodes)) for g in groups},
        "files": nodes[0]["files"],
    }


def growth(cases: Iterable[dict[str, Any]], figure: str = "total_s") -> list[dict[str, Any]]:
    """How `figure` (a key of a case's "summary", or "model_s", ...) grows with the sites, per
    (backends, nodes): one row per step between consecutive site counts,
    {"backends", "nodes", "from_sites", "to_sites", "size_ratio", "time_ratio", "excess": time_ratio /
    size_ratio, "per_site_ms": [from, to], "worse_than_linear": excess > WORSE_THAN_LINEAR}.
    Cases: {"sites", "backends", "nodes", "summary": case_summary()}."""
    by_shape: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for c in cases:
        by_shape.setdefault((c["backends"], c["nodes"]), []).append(c)
    out = []
    for (backends, nodes), group in sorted(by_shape.items()):
        group = sorted(group, key=lambda c: c["sites"])
        for a, b in itertools.pairwise(group):
            ta, tb = a["summary"][figure], b["summary"][figure]
            size = b["sites"] / a["sites"]
            ratio = tb / ta if ta > 0 else float("inf")
            out.append({
                "backends": backends, "nodes": nodes, "from_sites": a["sites"], "to_sites": b["sites"],
                "size_ratio": size, "time_ratio": ratio, "excess": ratio / size,
                "per_site_ms": [ta / a["sites"] * 1000, tb / b["sites"] * 1000],
                "worse_than_linear": ratio / size > WORSE_THAN_LINEAR,
            })
    return out


def speedup(before_s: float, after_s: float) -> float | None:
    """before / after (None when after is 0)."""
    return before_s / after_s if after_s > 0 else None
