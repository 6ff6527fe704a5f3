"""The formula's cost on one node without a Salt master: the model built from pillar (+ mine) and every file
the formula renders from it, timed as the tests build and render them (tests/formula.py: the model module,
the templates as plain Jinja with the model as `pt`).

Per node, files and what they are rendered from (the states that write them):
- nginx.conf, haproxy.cfg, keepalived.conf, filter.nft (proxytier.check: the model as `pt`);
- crt-list: one per TLS port shared by several sites (proxytier.tls: `crt_list`);
- tls.pem: one per TLS site (proxytier.tls: the state function proxytier.tls_file writes ``proxytier.tls_pem(path)``);
- units: filter.service, the systemd drop-ins (restart.conf per daemon), the exporter's units.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from proxytier_model import tls_pem

import bench.scale  # noqa: F401 - salt/_utils on sys.path
from tests.formula import FORMULA, build_model, os_params, render

#: the groups of rendered files, in report order
FILES = ("nginx.conf", "haproxy.cfg", "keepalived.conf", "filter.nft", "crt-list", "tls.pem", "units")
EXPORTER_TEMPLATES = ("exporter/exporter.service.jinja", "exporter/logrotate.jinja",
                      "exporter/tmpfiles.conf.jinja")

PemSource = Callable[[str], str]


def model_builds_per_apply() -> int:
    """How many times one `state.apply proxytier` builds the model: once when map.jinja asks
    ``proxytier.model`` with cache=True (one model per state run, salt/_modules/proxytier.py: _run_cache);
    otherwise once per SLS file that imports map.jinja (each SLS is rendered on its own; its
    `import ... with context` runs ``proxytier.model``)."""
    if "cache=True)" in (FORMULA / "map.jinja").read_text():
        return 1
    return sum("/map.jinja\" import pt" in p.read_text() for p in FORMULA.rglob("*.sls"))


def pem_from_whole_model(pillar: dict[str, Any], node: str, mine: dict[str, Any] | None,
                         params: dict[str, Any]) -> PemSource:
    """The previous ``proxytier.tls_pem``, kept to time against the current one: the whole model built
    with secrets for each file, the file's PEM picked from its tls_files."""
    def pem(path: str) -> str:
        built = build_model(pillar, node, mine=mine, params=params, with_secrets=True)
        return next(f["contents"] for f in built["tls_files"] if f["path"] == path)
    return pem


def pem_from_site(pillar: dict[str, Any], params: dict[str, Any]) -> PemSource:
    """The current ``proxytier.tls_pem``: proxytier_model.tls_pem (the one site that writes the file)."""
    return lambda path: tls_pem(pillar, path, params=params)


TEMPLATES = {"nginx.conf": "nginx.conf.jinja", "haproxy.cfg": "haproxy.cfg.jinja",
             "keepalived.conf": "keepalived.conf.jinja", "filter.nft": "filter.nft.jinja"}


def render_group(model: dict[str, Any], group: str, pem: PemSource) -> list[str]:
    """The rendered texts of one group of FILES for one node's model; `pem` stands for
    ``proxytier.tls_pem(path)``, what the state proxytier.tls_file writes."""
    if group in TEMPLATES:
        return [render(TEMPLATES[group], model)]
    if group == "crt-list":
        return [render("crt-list.jinja", model, crt_list=c) for c in model.get("crt_lists", [])]
    if group == "tls.pem":
        return [pem(f["path"]) for f in model["tls_files"]]
    if group == "units":
        units = [render("filter.service.jinja", model)]
        units += [render("restart.conf.jinja", model, dropin=d) for d in model["systemd_dropins"]]
        if model["exporter"]["enabled"]:
            units += [render(t, model) for t in EXPORTER_TEMPLATES]
        return units
    raise ValueError(f"unknown file group {group!r}; one of {', '.join(FILES)}")


def render_files(model: dict[str, Any], pem: PemSource) -> dict[str, list[str]]:
    """{file group: [rendered text, ...]} for every group of FILES."""
    return {g: render_group(model, g, pem) for g in FILES}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def time_pems(model: dict[str, Any], pem: PemSource) -> float:
    """Seconds to build every tls.pem of `model` with `pem`."""
    return _timed(lambda: render_group(model, "tls.pem", pem))[0]


def measure_node(pillar: dict[str, Any], node: str, mine: dict[str, Any] | None, params: dict[str, Any],
                 reps: int) -> dict[str, Any]:
    """One node, `reps` repetitions (after one untimed warm-up that compiles the templates) -> medians:
    {"model_s": build_model seconds, "render_s": {file group: seconds for all its files},
     "files": {group: count}, "bytes": {group: total size in bytes}, "total_s": model + every render}."""
    pem = pem_from_site(pillar, params)
    model = build_model(pillar, node, mine=mine, params=params)
    texts = render_files(model, pem)  # warm-up: templates compiled once, as a minion's renderer caches them
    model_times: list[float] = []
    render_times: dict[str, list[float]] = {g: [] for g in FILES}
    for _ in range(reps):
        seconds, model = _timed(lambda: build_model(pillar, node, mine=mine, params=params))
        model_times.append(seconds)
        for group in FILES:
            seconds, _ = _timed(lambda group=group, model=model: render_group(model, group, pem))
            render_times[group].append(seconds)
    render_s = {g: statistics.median(v) for g, v in render_times.items()}
    model_s = statistics.median(model_times)
    return {
        "model_s": model_s, "render_s": render_s, "total_s": model_s + sum(render_s.values()),
        "files": {g: len(t) for g, t in texts.items()},
        "bytes": {g: sum(len(x.encode()) for x in t) for g, t in texts.items()},
    }


def default_params(**overrides: Any) -> dict[str, Any]:
    """The formula's parameters for a Debian 12 node (tests/formula.os_params)."""
    return os_params(**overrides)
