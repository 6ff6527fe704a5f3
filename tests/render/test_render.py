"""Templates rendered for every node of the example pillars are accepted by the
real daemons of Debian 12 (nginx -t, haproxy -c, keepalived -t), and a broken
`extra` line is rejected by them with their own message.

nginx -t binds the listen addresses and keepalived -t needs the interface, so
both run in a throwaway network namespace that has the node's address on
`host0`, as the node itself would."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from formula import FORMULA, HOST_CHECK_USER, build_model, example_pillar, os_params, render

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("nginx", "haproxy", "keepalived", "unshare", "openssl")),
    reason="needs nginx, haproxy, keepalived, unshare and openssl (make test installs them)",
)

FILES = FORMULA / "files"


def in_node_netns(
    address: str, cmd: list[str], address6: str | None = None, hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run cmd in a new network namespace whose host0 carries the node's address (and its IPv6
    `address6` beside it); IPv6 addresses are added without duplicate address detection, as a
    node's settle long before nginx binds them. `hosts`: a hosts file seen as /etc/hosts (a mount
    namespace of its own), for backends named by host name, which nginx resolves when it loads."""
    addrs = "".join(
        f" && ip addr add {a}/{64 if ':' in a else 24} dev host0{' nodad' if ':' in a else ''}"
        for a in (address, address6) if a
    )
    setup = (
        f"ip link add host0 type veth peer name host0p && ip link set host0 up && ip link set host0p up{addrs}"
        + (f" && mount --bind {hosts} /etc/hosts" if hosts else "") + " && ip link set lo up && exec \"$@\""
    )
    return subprocess.run(
        ["unshare", "--net", *(["--mount"] if hosts else []), "sh", "-c", setup, "sh", *cmd],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="session")
def tls_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=app.example",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    return (d / "cert.pem").read_text(), (d / "key.pem").read_text()


def seed_pillar(cert: str, key: str, members: int = 2) -> dict[str, Any]:
    """Seed mode: two nodes (or `members`), one VIP, TLS terminated by HAProxy."""
    p = example_pillar()
    p["members"] = p["members"][:members]
    p["vips"] = p["vips"][:1]
    p["sites"][0]["tls"] = {"certificate": cert, "key": key, "redirect_http": True}
    return p


def active_active_pillar(cert: str, key: str) -> dict[str, Any]:
    """Active-active: three nodes, three VIPs, TLS on, PROXY v2 on a second site."""
    p = example_pillar()
    p["sites"][0]["tls"] = {"certificate": cert, "key": key}
    p["sites"].append(
        {"name": "api", "port": 8000, "nginx_port": 8081, "client_address": "proxy_v2",
         "backends": [{"address": "198.18.0.21:9000", "weight": 3}, {"address": "198.18.0.22:9000", "backup": True}]}
    )
    return p


def render_node(pillar: dict[str, Any], node: str, tmp: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    # nginx -t opens the exporter's access log: in the test's directory, not the host's /var/log
    params = os_params(libexec_dir=str(FILES), tls_dir=str(tmp), exporter_log_dir=str(tmp), **HOST_CHECK_USER)
    model = build_model(pillar, node, params=params, with_secrets=True)
    for f in model["tls_files"]:
        Path(f["path"]).write_text(f["contents"])
        Path(f["path"]).chmod(0o600)
    paths = {}
    for name, template in (("nginx", "nginx.conf.jinja"), ("haproxy", "haproxy.cfg.jinja"),
                           ("keepalived", "keepalived.conf.jinja")):
        paths[name] = tmp / f"{node}-{name}.conf"
        paths[name].write_text(render(template, model))
    return model, paths


def check(
    name: str, path: Path, address: str, address6: str | None = None, hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = {
        "nginx": ["nginx", "-t", "-q", "-c", str(path)],
        "haproxy": ["haproxy", "-c", "-f", str(path)],
        "keepalived": [str(FILES / "check-keepalived"), str(path)],
    }[name]
    return in_node_netns(address, cmd, address6, hosts)


@pytest.mark.parametrize(
    ("layout", "nodes"),
    [("seed", ["proxy1"]), ("seed", ["proxy1", "proxy2"]), ("active-active", ["proxy1", "proxy2", "proxy3"])],
)
def test_daemons_accept_every_node(layout: str, nodes: list[str], tls_pem: tuple[str, str], tmp_path: Path) -> None:
    # one node alone (no peer: no unicast_peer block, which keepalived would refuse empty), two, three
    pillar = seed_pillar(*tls_pem, members=len(nodes)) if layout == "seed" else active_active_pillar(*tls_pem)
    for node in nodes:
        model, paths = render_node(pillar, node, tmp_path)
        assert model["mode"] == layout
        for name, path in paths.items():
            res = check(name, path, model["node"]["address"])
            assert res.returncode == 0, f"{name} rejected {node}'s config:\n{res.stdout}{res.stderr}"
        assert "ssl crt" in paths["haproxy"].read_text()


@pytest.mark.parametrize("on_error", ["mark-down", "sudden-death", "none"])
def test_haproxy_observes_live_traffic_unless_told_not_to(on_error: str, tmp_path: Path) -> None:
    pillar = example_pillar()
    pillar.setdefault("haproxy", {})["check"] = {"on_error": on_error, "error_limit": 2}
    model, paths = render_node(pillar, "proxy1", tmp_path)
    servers = [line for line in paths["haproxy"].read_text().splitlines() if "default-server" in line]
    assert servers
    for line in servers:
        if on_error == "none":
            assert "observe" not in line and "on-error" not in line, line
        else:
            assert f"observe layer4 error-limit 2 on-error {on_error}" in line, line
    res = check("haproxy", paths["haproxy"], model["node"]["address"])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("log_requests", "rendered"), [(None, True), ("abnormal", True), ("all", False)])
def test_haproxy_logs_only_abnormal_requests_by_default(log_requests: str | None, rendered: bool,
                                                         tmp_path: Path) -> None:
    pillar = example_pillar()
    if log_requests:
        pillar.setdefault("haproxy", {})["log_requests"] = log_requests
    model, paths = render_node(pillar, "proxy1", tmp_path)
    assert ("option dontlog-normal" in paths["haproxy"].read_text()) is rendered
    assert "option httplog" in paths["haproxy"].read_text()
    res = check("haproxy", paths["haproxy"], model["node"]["address"])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("access_log", "exporter", "lines"), [
    ("combined", True, ["access.log combined buffer=64k", "nginx-access.log proxytier_tsv"]),
    ("off", True, ["nginx-access.log proxytier_tsv"]),  # an `access_log off` here would cancel it too
    ("off", False, ["access_log off;"]),  # no line at all would be nginx's default access.log
])
def test_nginx_access_log_switch_keeps_the_exporters_log(access_log: str, exporter: bool, lines: list[str],
                                                         tmp_path: Path) -> None:
    pillar = example_pillar()
    pillar.setdefault("nginx", {})["access_log"] = access_log
    pillar.setdefault("haproxy", {})["nbthread"] = 1
    pillar.setdefault("exporter", {})["enabled"] = exporter
    model, paths = render_node(pillar, "proxy1", tmp_path)
    http = paths["nginx"].read_text().split("http {", 1)[1].split("server {", 1)[0]
    got = [ln.strip() for ln in http.splitlines() if ln.strip().startswith("access_log")]
    assert len(got) == len(lines) and all(want in line for want, line in zip(lines, got, strict=True)), got
    assert "\n    nbthread 1\n" in paths["haproxy"].read_text()
    for daemon in ("nginx", "haproxy"):
        res = check(daemon, paths[daemon], model["node"]["address"])
        assert res.returncode == 0, res.stdout + res.stderr


BROKEN_EXTRA = {
    "nginx": (("nginx", "extra", "http"), "no_such_directive on;", "no_such_directive"),
    "haproxy": (("haproxy", "extra", "defaults"), "no-such-keyword 1", "no-such-keyword"),
    "keepalived": (("vrrp", "extra", "instance"), "no_such_keyword 1", "no_such_keyword"),
}


@pytest.mark.parametrize("daemon", sorted(BROKEN_EXTRA))
def test_daemon_rejects_broken_extra(daemon: str, tls_pem: tuple[str, str], tmp_path: Path) -> None:
    keys, line, word = BROKEN_EXTRA[daemon]
    pillar = copy.deepcopy(active_active_pillar(*tls_pem))
    node = pillar
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = [line]
    model, paths = render_node(pillar, "proxy1", tmp_path)
    assert line in paths[daemon].read_text()
    res = check(daemon, paths[daemon], model["node"]["address"])
    assert res.returncode != 0
    assert word in res.stdout + res.stderr, res.stdout + res.stderr
    # the other two daemons still accept their (unchanged) files
    for other in set(paths) - {daemon}:
        assert check(other, paths[other], model["node"]["address"]).returncode == 0


def test_nginx_check_catches_address_not_on_node(tmp_path: Path) -> None:
    """A member address that is not on the node is caught by nginx -t on that node."""
    _model, paths = render_node(example_pillar(), "proxy1", tmp_path)
    res = check("nginx", paths["nginx"], "198.18.0.99")
    assert res.returncode != 0 and "198.18.0.11:8080" in res.stderr


def test_tls_file_check_refuses_a_mismatched_key(tls_pem: tuple[str, str], tmp_path: Path) -> None:
    """The TLS PEM's check_cmd lets HAProxy load the staged file: a key that is not the certificate's is refused."""
    cert, key = tls_pem
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other_key)], check=True, timeout=60)
    good, bad = tmp_path / "good.pem", tmp_path / "bad.pem"
    good.write_text(cert + key)
    bad.write_text(cert + other_key.read_text())
    ok = subprocess.run([str(FILES / "check-haproxy-crt"), str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([str(FILES / "check-haproxy-crt"), str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "inconsistencies between private key and certificate" in res.stderr
