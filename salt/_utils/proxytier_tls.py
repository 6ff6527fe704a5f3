"""TLS of a site (proxytier:sites:N:tls): the certificate and key HAProxy terminates with, either
PEM text from pillar (written by the formula to ``<tls_dir>/<site>.pem``, certificate then key) or
files already on the node.

HAProxy reads the key from the certificate file or from ``<crt>.key`` beside it (HAProxy 2.6
``ssl-load-extra-files``' default), so a separate key file must be there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from proxytier_schema import ProxytierError, boolean, fail, key, merge, port

TLS_DEFAULTS: dict[str, Any] = {
    "port": 443,
    "certificate": None,
    "key": None,
    "certificate_file": None,
    "key_file": None,
    "redirect_http": False,
}

PRIVATE_KEY_RE = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def tls(raw: Any, path: tuple[Any, ...], site: str, tls_dir: str, file_exists: Callable[[str], bool]) -> Any:
    """The site's TLS settings -> None (no TLS) or {"port", "redirect_http", "crt": path HAProxy
    loads, "file": {"path", "contents"} for PEM text the formula writes, else None}."""
    if raw is None or raw is False:
        return None
    t = merge(TLS_DEFAULTS, raw, path)
    inline = t["certificate"] is not None or t["key"] is not None
    files = t["certificate_file"] is not None or t["key_file"] is not None
    if inline and files:
        raise ProxytierError(f"{key(path)}: give certificate+key (PEM text) or certificate_file+key_file, not both")
    if not inline and not files:
        raise ProxytierError(
            f"{key(path)}: TLS is on but no certificate is given; set certificate and key (PEM text from pillar) "
            "or certificate_file and key_file (paths on the node)"
        )
    tls_port = port(t["port"], (*path, "port"))
    redirect = boolean(t["redirect_http"], (*path, "redirect_http"))
    if inline:
        cert, private = t["certificate"], t["key"]
        if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
            raise fail((*path, "certificate"), str(cert)[:40], "expected a PEM certificate (BEGIN CERTIFICATE)")
        if not isinstance(private, str) or not PRIVATE_KEY_RE.search(private):
            raise fail((*path, "key"), "<hidden>", "expected a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        pem = f"{cert.strip()}\n{private.strip()}\n"
        crt_path = f"{tls_dir}/{site}.pem"
        written = {"path": crt_path, "contents": pem}
        return {"port": tls_port, "redirect_http": redirect, "crt": crt_path, "file": written}
    for k in ("certificate_file", "key_file"):
        value = t[k]
        if not isinstance(value, str) or not value.startswith("/"):
            raise fail((*path, k), value, "expected an absolute path on the node")
        if not file_exists(value):
            raise fail((*path, k), value, "no such file on this node; deploy it first or give the PEM text instead")
    crt = t["certificate_file"]
    if t["key_file"] != crt + ".key" and t["key_file"] != crt:
        raise fail(
            (*path, "key_file"),
            t["key_file"],
            f"HAProxy looks for the key in the certificate file or at {crt}.key; put it there or use PEM text",
        )
    return {"port": tls_port, "redirect_http": redirect, "crt": crt, "file": None}
