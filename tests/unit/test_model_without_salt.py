"""The model is pure Python: it imports and builds a tier with only the standard library and
PyYAML, in a Python where Salt cannot be imported, and its error is still a ValueError."""

from __future__ import annotations

import subprocess
import sys

from formula import ROOT, STATIC_PILLAR

SCRIPT = """
import sys
sys.modules["salt"] = None  # any `import salt...` now raises ImportError
sys.path.insert(0, sys.argv[1])
import yaml
from proxytier_model import build_model
from proxytier_schema import ProxytierError
pillar = yaml.safe_load(open(sys.argv[2]))["proxytier"]
model = build_model(pillar, "proxy2")
assert model["node"] == {"id": "proxy2", "address": "198.18.0.12"}, model["node"]
assert issubclass(ProxytierError, ValueError)
try:
    build_model({**pillar, "vips": [{"address": "198.18.0.101/24", "vrid": 300}]}, "proxy2")
except ProxytierError as exc:
    print("error:", exc)
"""


def test_model_builds_without_salt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "salt" / "_utils"), str(STATIC_PILLAR)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    expected = "error: proxytier:vips:0:vrid = 300: VRRP router ids are 1..255; pick an unused one in that range"
    assert proc.stdout.strip() == expected
