"""Many sites on one port: three sites routed by host name share VIP ports 80 (redirected to
HTTPS) and 443 (one wildcard site, one with two names), two named upstream pools and an /api route.
Every node's configs are accepted by the real daemons (nginx -t, haproxy -c with the crt-list,
keepalived -t), with fresh certificates made here (RSA and ECDSA, SAN and wildcard)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from formula import FORMULA, ROOT, render
from proxytier_exporter.accesslog import TSV_FIELDS, TSV_VARIABLES

from lab.tlsgen import make_cert

from .test_render import check, render_node

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("nginx", "haproxy", "keepalived", "unshare")),
    reason="needs nginx, haproxy, keepalived and unshare (make test installs them)",
)

VHOSTS = ROOT / "tests" / "pillar" / "vhosts.sls"
CERTS = {"www": (["www.example.com", "example.com"], "rsa"), "shop": (["*.shop.example.com"], "ec"),
         "api": (["api.example.com"], "ec")}


@pytest.fixture(scope="module")
def pillar() -> dict[str, Any]:
    """The vhosts pillar with certificates made now (the fixture's are the golden model's)."""
    p = yaml.safe_load(VHOSTS.read_text())["proxytier"]
    for site in p["sites"]:
        names, kind = CERTS[site["name"]]
        site["tls"]["certificate"], site["tls"]["key"] = make_cert(names, kind)
    return p


def write_crt_lists(model: dict[str, Any]) -> list[Path]:
    """Each crt-list as tls.sls writes it (the template, with the model's entry as context), 0600."""
    out = []
    for c in model["crt_lists"]:
        path = Path(c["path"])
        path.write_text(render("crt-list.jinja", model, crt_list=c))
        path.chmod(0o600)
        out.append(path)
    return out


@pytest.mark.parametrize("default", [None, "www"])
def test_daemons_accept_shared_ports_on_every_node(pillar: dict[str, Any], default: str | None,
                                                   tmp_path: Path) -> None:
    p = copy.deepcopy(pillar)
    for site in p["sites"]:
        site["default"] = site["name"] == default
    for node in ("proxy1", "proxy2", "proxy3"):
        model, paths = render_node(p, node, tmp_path)
        lists = write_crt_lists(model)
        assert [c.name for c in lists] == ["port443.crt-list"]
        for name, path in paths.items():
            res = check(name, path, model["node"]["address"])
            assert res.returncode == 0, f"{name} rejected {node}'s config:\n{res.stdout}{res.stderr}"
        res = subprocess.run([str(FORMULA / "files" / "check-haproxy-crt"), "--list", str(lists[0])],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        haproxy = paths["haproxy"].read_text()
        nginx = paths["nginx"].read_text()
        assert f"ssl crt-list {lists[0]} alpn h2,http/1.1" in haproxy
        assert "frontend fe_port443" in haproxy and "backend be_port443" in haproxy
        assert "http-request redirect scheme https code 301 unless { ssl_fc }" in haproxy
        assert 'http-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }' in haproxy
        assert "ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:" in haproxy
        first = lists[0].read_text().splitlines()[4]  # after the 4 comment lines: the default certificate
        assert first == f"{tmp_path}/{default or 'www'}.pem [alpn h2,http/1.1] !*"
        assert "server_name *.shop.example.com;" in nginx and "server_name www.example.com example.com;" in nginx
        assert "location = /api {" in nginx and "location /api/ {" in nginx
        assert ("return 421;" in nginx) is (default is None)
        # per-site metrics: the map the exporter's site label comes from, and the log field it reads
        assert 'map "$server_port $server_name" $proxytier_site {' in nginx
        assert all(f'"8080 {host}" {site};' in nginx for host, site in (
            ("www.example.com", "www"), ("*.shop.example.com", "shop"), ("api.example.com", "api")))
        assert tsv_format(nginx) == "\\t".join(TSV_VARIABLES[field] for field in TSV_FIELDS)


def tsv_format(config: str) -> str:
    """The format string of `log_format proxytier_tsv` in an nginx config (its quoted parts joined)."""
    match = re.search(r"log_format proxytier_tsv escape=json((?:\s*'[^']*')+);", config)
    assert match, "no log_format proxytier_tsv escape=json"
    return "".join(re.findall(r"'([^']*)'", match.group(1)))


def test_the_site_capture_uses_the_formulas_map_and_log_format() -> None:
    """The exporter's site fixtures come from nginx running the same map and log format as the template."""
    fixtures = ROOT / "tests" / "exporter" / "fixtures"
    template = (FORMULA / "templates" / "nginx.conf.jinja").read_text()
    assert 'map "$server_port $server_name" $proxytier_site' in template
    for name in ("capture_nginx_sites.py", "capture_nginx_tsv.py"):
        assert 'map "$server_port $server_name" $proxytier_site' in (fixtures / name).read_text(), name
    capture = (fixtures / "capture_nginx_tsv.py").read_text().replace("\\\\t", "\\t")
    assert tsv_format(capture) == tsv_format(template)


def test_crt_list_check_refuses_a_missing_certificate(tmp_path: Path) -> None:
    """The crt-list's check_cmd lets HAProxy load it: a line naming no file is refused."""
    crt_list = tmp_path / "port443.crt-list"
    crt_list.write_text(f"{tmp_path}/missing.pem [alpn h2,http/1.1] www.example.com\n")
    res = subprocess.run([str(FORMULA / "files" / "check-haproxy-crt"), "--list", str(crt_list)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "missing.pem" in res.stderr
