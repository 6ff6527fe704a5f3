"""Validation against the Grafana 11.6 dashboard schema as generated into grafana-foundation-sdk
1769699379!11.6.0 (pinned in dashboards/requirements.txt).

Grafana publishes its dashboard schema as CUE inside its own repository; no JSON Schema of it ships in a PyPI or
npm package (@grafana/schema 11.6.0 holds TypeScript types only). grafana-foundation-sdk is generated from those
CUE schemas (models for the dashboard, every panel plugin's options and field config, every data query), so a
dashboard is valid here when decoding it into those models and encoding it again gives back the same JSON: a
key the schema does not know, or a value of another shape, does not survive the round trip.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

PINNED_SDK = "1769699379!11.6.0"


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    register_default_plugins()
    decoded: dict[str, Any] = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    return decoded


def differences(expected: Any, got: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ, as readable paths ("$.panels[3].options.legend: ...")."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(got)):
            if key not in got:
                out.append(f"{path}.{key}: not in the schema (dropped by the model)")
            elif key not in expected:
                out.append(f"{path}.{key}: added by the model (missing required field?)")
            else:
                out.extend(differences(expected[key], got[key], f"{path}.{key}"))
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        pairs = enumerate(zip(expected, got, strict=True))
        return [d for i, (e, g) in pairs for d in differences(e, g, f"{path}[{i}]")]
    if expected != got or type(expected) is not type(got):
        return [f"{path}: {json.dumps(expected)[:80]} became {json.dumps(got)[:80]}"]
    return []


def schema_errors(data: dict[str, Any]) -> list[str]:
    """Empty if the dashboard JSON is exactly what the pinned schema models represent."""
    return differences(data, round_trip(data))
