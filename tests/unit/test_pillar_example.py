"""pillar.example documents every key the model knows, with the model's own defaults."""

from __future__ import annotations

import re
from typing import Any

import proxytier_bgp
import proxytier_members
import proxytier_model
import proxytier_sites
import proxytier_tls
import proxytier_vrrp
import yaml
from formula import ROOT, build_model

TEXT = (ROOT / "pillar.example").read_text()
EXAMPLE = yaml.safe_load(TEXT)["proxytier"]


def keys(d: dict[str, Any]) -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(k)
        if isinstance(v, dict):
            out |= keys(v)
    return out


def test_every_schema_key_is_documented() -> None:
    schema = set()
    for defaults in (proxytier_model.DEFAULTS, proxytier_sites.SITE_DEFAULTS, proxytier_tls.TLS_DEFAULTS,
                     proxytier_sites.BACKEND_DEFAULTS, proxytier_vrrp.VIP_DEFAULTS, proxytier_members.MEMBER_DEFAULTS,
                     proxytier_members.MINE_DEFAULTS, proxytier_sites.UPSTREAM_DEFAULTS,
                     proxytier_sites.ROUTE_DEFAULTS, proxytier_bgp.PEER_DEFAULTS):
        schema |= keys(defaults)
    missing = sorted(k for k in schema if not re.search(rf"^\s*(#\s*)?(- )?{re.escape(k)}:", TEXT, re.M))
    assert not missing, f"pillar.example does not document: {missing}"


def test_documented_defaults_are_the_real_defaults() -> None:
    for section in ("vrrp", "haproxy", "nginx", "exporter", "interface", "lookup"):
        assert EXAMPLE[section] == proxytier_model.DEFAULTS[section], section
    site = EXAMPLE["sites"][0]
    for key, default in proxytier_sites.SITE_DEFAULTS.items():
        if key not in ("name", "backends"):
            assert site[key] == default, key
    first_backend = {k: v for k, v in site["backends"][0].items() if k != "address"}
    assert first_backend == {k: v for k, v in proxytier_sites.BACKEND_DEFAULTS.items() if k != "address"}
    assert {k: v for k, v in EXAMPLE["vips"][0].items() if k not in ("address", "vrid")} == {
        k: v for k, v in proxytier_vrrp.VIP_DEFAULTS.items() if k not in ("address", "vrid")
    }


def test_example_is_a_working_tier() -> None:
    m = build_model(EXAMPLE, "proxy3")
    assert m["mode"] == "active-active" and m["peers"] == ["198.18.0.11", "198.18.0.12"]
