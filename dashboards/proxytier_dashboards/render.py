"""Build every dashboard and serialise it as Grafana JSON (what `dashboards/grafana/*.json` holds)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from proxytier_dashboards import node, overview

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "grafana"
# file name -> builder; the uid is part of the builder (stable across regenerations)
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "proxytier-overview.json": overview.build,
    "proxytier-node.json": node.build,
}


def to_json(builder: dashboard.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana JSON, panel ids numbered in layout order (the SDK leaves them 0)."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data


def text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """{file name: JSON text} of every dashboard."""
    return {name: text(to_json(build())) for name, build in DASHBOARDS.items()}


def write(directory: Path = OUTPUT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in rendered().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths


def stale(directory: Path = OUTPUT_DIR) -> list[str]:
    """Files in `directory` that differ from what the generator produces now (or are missing)."""
    return [name for name, content in rendered().items()
            if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != content]
