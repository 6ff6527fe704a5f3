"""Property: any mutation of a valid pillar is either still valid or rejected
with a ProxytierError naming a proxytier: key path, never another exception."""

from __future__ import annotations

import copy
from typing import Any

from formula import ProxytierError, build_model, example_pillar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxytier_model import DEFAULTS
from proxytier_sites import SITE_DEFAULTS

BASE = example_pillar()
BASE["sites"][0]["tls"] = {"certificate_file": "/etc/ssl/app.pem", "key_file": "/etc/ssl/app.pem.key"}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["198.18.0.11", "198.18.0.101/24", "::1", "host:80", "0.1", "1s", "auto"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3), max_leaves=6)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


# the keys the pillar uses, plus every key the schema knows (sections left to their defaults)
SITE_PATHS = {("sites", 0, *q) for q in paths(SITE_DEFAULTS)}
ALL_PATHS = sorted(set(paths(BASE)) | set(paths(DEFAULTS)) | SITE_PATHS, key=str)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    p = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        node: Any = p
        try:
            for k in path[:-1]:
                node = node.setdefault(k, {}) if isinstance(node, dict) else node[k]
            action = draw(st.sampled_from(["set", "delete", "unknown"]))
            if action == "set":
                node[path[-1]] = draw(values)
            elif action == "delete" and isinstance(node, dict):
                del node[path[-1]]
            elif isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=8))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return p


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=mutated(), node=st.sampled_from(["proxy1", "proxy2", "proxy3", "proxy9"]))
def test_mutated_pillar_is_valid_or_clearly_rejected(p: dict[str, Any], node: str) -> None:
    try:
        model = build_model(p, node, file_exists=lambda _: True)
    except ProxytierError as exc:
        assert str(exc).startswith("proxytier:"), str(exc)
        return
    assert model["node"]["id"] == node
    assert model["vrrp"]["instances"] and model["haproxy"]["backends"]
