"""The state function proxytier.tls_file (salt/_states/proxytier.py) run by a real masterless salt-call, with
this checkout's salt/ as file root and the TLS directory in a temporary directory: it writes the PEM the model
builds (0600), runs its check on the staged file only when the file changes (not once more by Salt itself, as
a state argument named check_cmd would be), keeps the live file when the check refuses, fails clearly for a
path no site writes, and returns no key material."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import ROOT, build_model, os_params

SALT_CALL = Path(sys.executable).parent / "salt-call"
VHOSTS = ROOT / "tests" / "pillar" / "vhosts.sls"

pytestmark = pytest.mark.skipif(not SALT_CALL.exists(), reason="salt-call not in the venv (make venv)")


class Minion:
    """A masterless minion proxy1 with the vhosts pillar (three TLS sites) and its TLS directory under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.tls_dir = root / "tls"
        self.tls_dir.mkdir(mode=0o700)
        for d in ("pillar", "etc"):
            (root / d).mkdir()
        (root / "etc" / "minion").write_text(yaml.safe_dump({
            "id": "proxy1", "file_client": "local", "file_roots": {"base": [str(ROOT / "salt")]},
            "pillar_roots": {"base": [str(root / "pillar")]}, "cachedir": str(root / "cache"),
            "pki_dir": str(root / "pki"), "sock_dir": str(root / "sock"), "log_file": str(root / "minion.log"),
        }))
        data = yaml.safe_load(VHOSTS.read_text())
        data["proxytier"]["lookup"] = {"tls_dir": str(self.tls_dir)}
        self.pillar = data["proxytier"]
        (root / "pillar" / "proxytier.sls").write_text(yaml.safe_dump(data))
        (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - proxytier\n")
        self.call("saltutil.sync_all")

    def call(self, *args: str) -> Any:
        res = subprocess.run([str(SALT_CALL), "-c", str(self.root / "etc"), "--local", "--out=json", *args],
                             capture_output=True, text=True, timeout=180)
        try:
            return json.loads(res.stdout)["local"]
        except ValueError as error:
            raise AssertionError(f"salt-call {' '.join(args)}: {res.stdout}{res.stderr}") from error

    def tls_file(self, path: Path, check: Path) -> dict[str, Any]:
        """`state.single proxytier.tls_file` -> its one state return."""
        ret = self.call("state.single", "proxytier.tls_file", f"name={path}", f"check={check}")
        assert isinstance(ret, dict) and len(ret) == 1, ret
        return next(iter(ret.values()))


def check_script(path: Path, log: Path, exit_code: int) -> Path:
    """A check command that logs the file it was given and exits `exit_code`."""
    path.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexit {exit_code}\n')
    path.chmod(0o755)
    return path


def test_tls_file_under_real_salt(tmp_path: Path) -> None:
    minion = Minion(tmp_path)
    log = tmp_path / "checks.log"
    ok, refuse = check_script(tmp_path / "ok.sh", log, 0), check_script(tmp_path / "refuse.sh", log, 1)
    model = build_model(minion.pillar, "proxy1", params=os_params(tls_dir=str(minion.tls_dir)), with_secrets=True)
    contents = {f["path"]: f["contents"] for f in model["tls_files"]}
    path = minion.tls_dir / "www.pem"
    assert str(path) in contents

    first = minion.tls_file(path, ok)
    assert first["result"] is True and first["changes"], first
    assert path.read_text() == contents[str(path)]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    checked = log.read_text().splitlines()
    assert len(checked) == 1 and checked[0] != str(path), checked  # the staged copy, before it became live

    again = minion.tls_file(path, ok)
    assert again["result"] is True and not again["changes"], again
    assert log.read_text().splitlines() == checked, "a check ran for a file that did not change"

    path.write_text("an older certificate\n")
    refused = minion.tls_file(path, refuse)
    assert refused["result"] is False, refused
    assert path.read_text() == "an older certificate\n", "a refused file replaced the live one"

    nobody = minion.tls_file(minion.tls_dir / "nobody.pem", ok)
    assert nobody["result"] is False and "no TLS file of this node's model is written there" in nobody["comment"]
    assert not (minion.tls_dir / "nobody.pem").exists()
    for ret in (first, again, refused, nobody):
        assert "PRIVATE KEY" not in json.dumps(ret)
