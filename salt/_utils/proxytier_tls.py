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

from proxytier_schema import ProxytierError, abs_path, boolean, fail, key, merge, port

TLS_DEFAULTS: dict[str, Any] = {
    "port": 443,
    "certificate": None,
    "key": None,
    "certificate_file": None,
    "key_file": None,
    "redirect_http": False,
}

#: one PEM block (RFC 7468): BEGIN and END with the same label, optional RFC 1421 headers
#: (``Proc-Type: 4,ENCRYPTED`` of a legacy encrypted key), then base64 lines
PEM_BLOCK_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\n((?:[A-Za-z-]+: [^\n]*\n)*)\n?((?:[A-Za-z0-9+/]*={0,2}\n)+)-----END \1-----"
)
PRIVATE_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY")
#: `openssl ecparam -genkey` writes the curve before the key; HAProxy reads the pair as written
KEY_FILE_LABELS = (*PRIVATE_KEY_LABELS, "EC PARAMETERS")
DECRYPT = "HAProxy needs an unencrypted key (it has no passphrase to ask for): decrypt it with " \
    "`openssl pkey -in key.pem -out key-plain.pem` and give that"


def pem_blocks(text: Any, path: tuple[Any, ...], labels: tuple[str, ...], what: str, secret: bool) -> list[str]:
    """The PEM blocks of `text`, each exactly as OpenSSL reads it, with every label one of `labels`.
    Text outside the blocks (``Bag Attributes`` from ``openssl pkcs12``, comments) is what OpenSSL
    skips: it is left out. A block that does not end, has a broken body or an encrypted key is refused."""
    shown = "<hidden>" if secret else (str(text)[:40] if text is not None else None)
    if not isinstance(text, str):
        raise fail(path, shown, f"expected PEM text ({what})")
    text = text.replace("\r\n", "\n")
    blocks = list(PEM_BLOCK_RE.finditer(text))
    begins = text.count("-----BEGIN ")
    if begins != len(blocks) or text.count("-----END ") != len(blocks):
        raise fail(path, shown, f"a PEM block is malformed (BEGIN/END labels differ, no END, or a line of its "
                   f"body is not base64): expected {what}")
    out = []
    for b in blocks:
        label, headers = b.group(1), b.group(2)
        if label == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in headers:
            raise fail(path, shown, DECRYPT)
        if label not in labels:
            raise fail(path, shown, f"holds a {label} block; expected {what}")
        out.append(b.group(0))
    return out


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
        cert_what = "PEM certificates (-----BEGIN CERTIFICATE-----), the site's first, then its chain"
        certs = pem_blocks(t["certificate"], (*path, "certificate"), ("CERTIFICATE",), cert_what, False)
        if not certs:
            raise fail((*path, "certificate"), str(t["certificate"])[:40], f"expected {cert_what}")
        key_what = "one PEM private key (-----BEGIN PRIVATE KEY-----, or RSA/EC PRIVATE KEY)"
        keys = pem_blocks(t["key"], (*path, "key"), KEY_FILE_LABELS, key_what, True)
        if sum(1 for k in keys if not k.startswith("-----BEGIN EC PARAMETERS")) != 1:
            raise fail((*path, "key"), "<hidden>", f"expected {key_what}")
        pem = "\n".join(certs + keys) + "\n"
        crt_path = f"{tls_dir}/{site}.pem"
        written = {"path": crt_path, "contents": pem}
        return {"port": tls_port, "redirect_http": redirect, "crt": crt_path, "file": written}
    for k in ("certificate_file", "key_file"):
        value = abs_path(t[k], (*path, k))
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
