"""Key material never leaves the pillar through the model: what `proxytier.model` prints, what the
states get as context and what the job cache keeps carry each TLS file's path and digest only."""

from __future__ import annotations

import hashlib
import json

from formula import build_model, example_pillar

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCqRsTuVwXyZ"
KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"


def tls_pillar() -> dict:
    p = example_pillar()
    p["sites"][0]["tls"] = {"certificate": CERT, "key": KEY}
    return p


def test_model_carries_no_key_material() -> None:
    m = build_model(tls_pillar(), "proxy1", params={"tls_dir": "/etc/haproxy/proxytier-tls"})
    text = json.dumps(m)
    assert KEY_BODY not in text and "PRIVATE KEY" not in text
    assert m["tls_files"] == [{
        "path": "/etc/haproxy/proxytier-tls/app.pem",
        "sha256": hashlib.sha256((CERT + KEY).encode()).hexdigest(),
    }]


def test_a_renewed_key_changes_the_model() -> None:
    before = build_model(tls_pillar(), "proxy1")
    p = tls_pillar()
    p["sites"][0]["tls"]["key"] = KEY.replace("XyZ", "AbC")
    assert build_model(p, "proxy1")["tls_files"] != before["tls_files"]


def test_only_the_writer_gets_the_pem() -> None:
    m = build_model(tls_pillar(), "proxy1", with_secrets=True)
    assert m["tls_files"][0]["contents"] == CERT + KEY
