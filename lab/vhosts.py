"""Many sites on the lab's VIPs: a pillar of host-routed sites sharing 80 and 443, and the client side
that checks what each host name gets through each VIP.

The sites (certificates from a throwaway lab CA, lab.tlsgen; the chain is served with each):
- ``www``: www.example.com and example.com (ECDSA certificate), every path to the pool ``web``;
- ``shop``: ``*.shop.example.com`` (wildcard, RSA certificate), its own backends;
- ``api``: api.example.com (ECDSA), ``/api`` to the pool ``api``, the rest to ``web``.
Plain HTTP on 80 gets 301 to https; HTTPS answers carry HSTS; a Host no site claims gets 421 from nginx.

    python -m lab vhosts            # apply them to the running lab and print one line per host name
    python -m lab vhosts --off      # back to the checkout's pillar (one site)

The client checks use Python's ssl (handshake: SNI, the certificate chain verified against the lab CA,
the host name checked by OpenSSL, ALPN) and curl for a real HTTP/2 request (nghttp2 in Debian's curl).
"""

from __future__ import annotations

import copy
import http.client
import json
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from lab import config, net, tier
from lab.load import SNIConnection, insecure_context
from lab.tlsgen import CA, make_ca, make_cert

#: host name -> (site, pool of backends that must answer a plain GET /lab)
HOSTS = {
    "www.example.com": ("www", "web"),
    "example.com": ("www", "web"),
    "a.shop.example.com": ("shop", "shop"),
    "b.shop.example.com": ("shop", "shop"),
    "api.example.com": ("api", "web"),
}
API_HOST = "api.example.com"
UNCLAIMED_HOST = "nobody.example.org"
HSTS = "max-age=31536000"
#: pool -> lab backends (be<i>): web be1+be2, shop's own be3, api be4 (tests start be4)
POOLS = {"web": ["be1", "be2"], "shop": ["be3"], "api": ["be4"]}
EXTRA_BACKENDS = (4,)


def backend_address(name: str) -> str:
    be = config.backend(int(name.removeprefix("be")))
    return f"{be.address}:{be.port}"


@dataclass
class Certs:
    """The lab CA and each site's (certificate chain PEM, key PEM)."""

    ca: CA
    sites: dict[str, tuple[str, str]]

    def serial(self, site: str) -> int:
        return x509.load_pem_x509_certificate(self.sites[site][0].encode()).serial_number


def make_certs(ca: CA | None = None) -> Certs:
    ca = ca or make_ca()
    return Certs(ca, {
        "www": make_cert(["www.example.com", "example.com"], "ec", issuer=ca),
        "shop": make_cert(["*.shop.example.com"], "rsa", issuer=ca),
        "api": make_cert(["api.example.com"], "ec", issuer=ca),
    })


def _site(name: str, hosts: list[str], pem: tuple[str, str], **more: Any) -> dict[str, Any]:
    return {
        "name": name, "port": 80, "nginx_port": 8080, "hosts": hosts,
        "tls": {"port": 443, "redirect_http": True, "hsts": {"max_age": 31536000},
                "certificate": pem[0], "key": pem[1]},
        **more,
    }


def pillar(certs: Certs, extra_sites: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The lab pillar (membership, VIPs) with its one site replaced by the three host-routed sites."""
    data = copy.deepcopy(tier.default_pillar())
    pt = data["proxytier"]
    pt["upstreams"] = [
        {"name": "web", "backends": [backend_address(b) for b in POOLS["web"]]},
        {"name": "api", "backends": [backend_address(b) for b in POOLS["api"]]},
    ]
    pt["sites"] = [
        _site("www", ["www.example.com", "example.com"], certs.sites["www"], routes=[{"path": "/", "upstream": "web"}]),
        _site("shop", ["*.shop.example.com"], certs.sites["shop"],
              backends=[backend_address(b) for b in POOLS["shop"]]),
        _site("api", [API_HOST], certs.sites["api"],
              routes=[{"path": "/", "upstream": "web"}, {"path": "/api", "upstream": "api"}]),
        *(extra_sites or []),
    ]
    return data


def new_site(certs: Certs, name: str, host: str) -> tuple[dict[str, Any], tuple[str, str]]:
    """A further site for `host` (its certificate from the same CA), routed to the pool web."""
    pem = make_cert([host], "ec", issuer=certs.ca)
    return _site(name, [host], pem, routes=[{"path": "/", "upstream": "web"}]), pem


@dataclass
class Handshake:
    """What a TLS client saw: the leaf certificate's SAN DNS names and serial, the chain's length,
    the negotiated ALPN protocol and TLS version."""

    names: list[str]
    serial: int
    chain: int
    alpn: str | None
    version: str | None


def handshake(vip: str, sni: str | None, cafile: str | None, alpn: tuple[str, ...] = ("h2", "http/1.1"),
              timeout: float = 5) -> Handshake:
    """A TLS handshake with `vip`:443 sending `sni`; with `cafile` the chain and the host name are
    verified by OpenSSL (ssl.SSLCertVerificationError if not). Nothing is sent after it."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    ctx.set_alpn_protocols(list(alpn))
    with socket.create_connection((config.check_lab_address(vip), 443), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        leaf = x509.load_der_x509_certificate(der)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        chain = s.get_verified_chain() if cafile and hasattr(s, "get_verified_chain") else []
        return Handshake(san.get_values_for_type(x509.DNSName), leaf.serial_number, len(chain),
                         s.selected_alpn_protocol(), s.version())


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    doc: dict[str, Any] = field(default_factory=dict)  # the backend's identity (empty if not JSON)


def _read(conn: http.client.HTTPConnection, host: str, path: str) -> Answer:
    conn.request("GET", path, headers={"Host": host, "User-Agent": "proxytier-lab-vhosts"})
    resp = conn.getresponse()
    body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    try:
        doc = json.loads(body) if headers.get("content-type") == "application/json" else {}
    except ValueError:
        doc = {}
    return Answer(resp.status, headers, doc)


def https_get(vip: str, host: str, path: str = "/lab", cafile: str | None = None, sni: str | None = None,
              timeout: float = 5) -> Answer:
    """GET https://host/path through `vip` over HTTP/1.1 (ALPN http/1.1), SNI `sni` (default: host)."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["http/1.1"])
    else:
        ctx = insecure_context()
    conn = SNIConnection(vip, sni or host, ctx, timeout)
    try:
        return _read(conn, host, path)
    finally:
        conn.close()


def http_get(vip: str, host: str, path: str = "/lab", timeout: float = 5) -> Answer:
    """GET http://host/path through `vip`:80."""
    conn = http.client.HTTPConnection(config.check_lab_address(vip), 80, timeout=timeout)
    try:
        return _read(conn, host, path)
    finally:
        conn.close()


def h2_get(vip: str, host: str, cafile: str, path: str = "/lab", timeout: float = 10) -> tuple[str, int, dict]:
    """A real HTTP/2 request with curl (--http2: ALPN h2, falls back to 1.1 if not offered) ->
    (HTTP version curl used, status, the backend's identity)."""
    config.check_lab_address(vip)
    proc = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", cafile, "--max-time", str(timeout), "--resolve", f"{host}:443:{vip}",
         "-w", "\n%{http_version} %{http_code}", f"https://{host}{path}"],
        capture_output=True, text=True, timeout=timeout + 5, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"curl {host} via {vip}: exit {proc.returncode}: {proc.stderr.strip()}")
    body, _, tail = proc.stdout.rpartition("\n")
    version, status = tail.split()
    return version, int(status), json.loads(body) if body.startswith("{") else {}


def write_cafile(certs: Certs, directory: Path | None = None) -> str:
    """The lab CA's certificate in a file (a client's cafile / curl --cacert) -> its path."""
    path = Path(directory or tempfile.mkdtemp(prefix="proxytier-lab-ca-")) / "ca.pem"
    path.write_text(certs.ca.pem)
    return str(path)


def enable() -> tuple[Certs, str]:
    """Start the pools' extra backends, write the sites' pillar as the lab's override and apply it
    (LabError if a minion fails) -> (the certificates, the CA file kept in the lab's state)."""
    for i in EXTRA_BACKENDS:
        be = config.backend(i)
        if not net.backend_health_ok(be):
            net.backend_up(be)
    certs = make_certs()
    tier.write_pillar(pillar(certs))
    tier.apply_ok("the sites")
    config.STATE.mkdir(parents=True, exist_ok=True)
    return certs, write_cafile(certs, config.STATE)


def disable() -> None:
    """Back to the checkout's pillar (apply), then stop the extra backends."""
    tier.back_to_checkout_pillar()
    for i in EXTRA_BACKENDS:
        net.backend_down(config.backend(i))


def routing_table(cafile: str, requests: int = 12) -> list[str]:
    """One line per host name: the site, the pool, the backends and nginx nodes that answered
    `requests` GETs of https://host/lab spread over every VIP (and /api for the api host), each
    certificate verified against `cafile` (the lab CA)."""
    lines = [f"{'host name':<22} {'site':<6} {'pool':<5} {'backends':<10} nginx nodes"]
    probes = [(h, "/lab", site, pool) for h, (site, pool) in HOSTS.items()] + [(API_HOST, "/api/v1", "api", "api")]
    for host, path, site, pool in probes:
        backends, nodes_ = set(), set()
        for i in range(requests):
            vip = config.VIPS[i % len(config.VIPS)]
            a = https_get(vip, host, path, cafile=cafile)
            backends.add(a.doc.get("backend", f"HTTP {a.status}"))
            nodes_.add(config.NODE_BY_ADDRESS.get(a.doc.get("peer", ""), "?"))
        label = host + (path if path != "/lab" else "")
        lines.append(f"{label:<22} {site:<6} {pool:<5} {','.join(sorted(backends)):<10} {','.join(sorted(nodes_))}")
    unclaimed = https_get(config.VIPS[0], UNCLAIMED_HOST, cafile=None)
    lines.append(f"{UNCLAIMED_HOST:<22} {'-':<6} {'-':<5} HTTP {unclaimed.status} (no site claims it)")
    return lines
