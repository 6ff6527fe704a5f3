"""proxytier_model.tls_pem (what the state proxytier.tls_file writes, through proxytier.tls_pem): for every TLS file of
a model, the same bytes as the model built with secrets, without building the model; no file for a path
no site writes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import ROOT, ProxytierError, build_model, example_pillar, os_params
from proxytier_model import tls_pem

from lab.tlsgen import make_cert

VHOSTS = ROOT / "tests" / "pillar" / "vhosts.sls"


def _pillars() -> dict[str, dict[str, Any]]:
    cert, key = make_cert(["app.example"], "ec")
    single = example_pillar()
    single["sites"][0]["tls"] = {"certificate": cert, "key": key}
    return {"vhosts": yaml.safe_load(VHOSTS.read_text())["proxytier"], "one-site": single}


@pytest.mark.parametrize("case", ["vhosts", "one-site"])
def test_each_pem_is_the_models(case: str, tmp_path: Path) -> None:
    pillar = _pillars()[case]
    params = os_params(tls_dir=str(tmp_path))
    files = build_model(pillar, "proxy1", params=params, with_secrets=True)["tls_files"]
    assert files, "the case has TLS files"
    for f in files:
        assert tls_pem(pillar, f["path"], params=params) == f["contents"]


def test_a_path_no_site_writes_is_refused(tmp_path: Path) -> None:
    pillar = _pillars()["vhosts"]
    params = os_params(tls_dir=str(tmp_path))
    for path in (f"{tmp_path}/nobody.pem", "/etc/haproxy/proxytier-tls/www.pem", f"{tmp_path}/port443.crt-list"):
        with pytest.raises(ProxytierError, match="no TLS file"):
            tls_pem(pillar, path, params=params)


def test_a_site_without_pem_text_writes_no_file(tmp_path: Path) -> None:
    pillar = copy.deepcopy(_pillars()["one-site"])
    crt = tmp_path / "app.pem"
    crt.write_text("x")
    pillar["sites"][0]["tls"] = {"certificate_file": str(crt), "key_file": str(crt)}
    with pytest.raises(ProxytierError, match="no TLS file"):
        tls_pem(pillar, f"{tmp_path}/app.pem", params=os_params(tls_dir=str(tmp_path)))


def test_the_site_is_validated(tmp_path: Path) -> None:
    pillar = copy.deepcopy(_pillars()["vhosts"])
    pillar["sites"][2]["routes"][0]["upstream"] = "nowhere"
    with pytest.raises(ProxytierError, match=r"sites:2:routes:0:upstream"):
        tls_pem(pillar, f"{tmp_path}/api.pem", params=os_params(tls_dir=str(tmp_path)))
