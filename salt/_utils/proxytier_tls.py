"""TLS of a site (proxytier:sites:N:tls): the certificate and key HAProxy terminates with, either
PEM text from pillar (written by the formula to ``<tls_dir>/<site>.pem``, certificate then key) or
files already on the node.

HAProxy reads the key from the certificate file or from ``<crt>.key`` beside it (HAProxy 2.6
``ssl-load-extra-files``' default), so a separate key file must be there.

Sites routed by host name (`hosts`) that share a TLS port are served from one HAProxy bind with a
crt-list (crt_list()), and their PEM text is checked here before anything is written
(check_certificate(): covers every host, key matches, valid now).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import Any

from proxytier_schema import ProxytierError, abs_path, boolean, fail, integer, key, merge, port

TLS_DEFAULTS: dict[str, Any] = {
    "port": 443,
    "certificate": None,
    "key": None,
    "certificate_file": None,
    "key_file": None,
    "redirect_http": False,
    "http2": True,
    "hsts": None,
}
HSTS_DEFAULTS: dict[str, Any] = {"max_age": 31536000, "include_subdomains": False}
#: RFC 6797 6.1.1: max-age is delta-seconds; 0 tells browsers to forget the policy. Two years is the
#: largest value the preload list asks for; more is refused as a likely typo (milliseconds)
HSTS_MAX_AGE = 63072000

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


def tls(
    raw: Any, path: tuple[Any, ...], site: str, tls_dir: str, file_exists: Callable[[str], bool],
    hosts: Sequence[str] = (),
) -> Any:
    """The site's TLS settings -> None (no TLS) or {"port", "redirect_http", "crt": path HAProxy
    loads, "file": {"path", "contents"} for PEM text the formula writes, else None}.

    With `hosts` (a site routed by host name), PEM text from pillar is checked with
    check_certificate(); certificate_file/key_file are files on the node, which the model does not
    read: for them only HAProxy's own check (haproxy -c on the staged configuration) runs."""
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
    common = {
        "port": tls_port,
        "redirect_http": boolean(t["redirect_http"], (*path, "redirect_http")),
        "http2": boolean(t["http2"], (*path, "http2")),
        "hsts": hsts(t["hsts"], (*path, "hsts")),
    }
    if inline:
        cert_what = "PEM certificates (-----BEGIN CERTIFICATE-----), the site's first, then its chain"
        certs = pem_blocks(t["certificate"], (*path, "certificate"), ("CERTIFICATE",), cert_what, False)
        if not certs:
            raise fail((*path, "certificate"), str(t["certificate"])[:40], f"expected {cert_what}")
        key_what = "one PEM private key (-----BEGIN PRIVATE KEY-----, or RSA/EC PRIVATE KEY)"
        keys = pem_blocks(t["key"], (*path, "key"), KEY_FILE_LABELS, key_what, True)
        if sum(1 for k in keys if not k.startswith("-----BEGIN EC PARAMETERS")) != 1:
            raise fail((*path, "key"), "<hidden>", f"expected {key_what}")
        if hosts:
            check_certificate(certs[0], next(k for k in keys if "EC PARAMETERS" not in k), hosts, path)
        pem = "\n".join(certs + keys) + "\n"
        crt_path = f"{tls_dir}/{site}.pem"
        written = {"path": crt_path, "contents": pem}
        return {**common, "crt": crt_path, "file": written}
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
    return {**common, "crt": crt, "file": None}


def hsts(raw: Any, path: tuple[Any, ...]) -> str | None:
    """tls.hsts -> the Strict-Transport-Security header value HAProxy adds to HTTPS responses, or None
    (off, the default). `raw`: None/False, True (the defaults: max_age one year), or {"max_age":
    seconds 0..HSTS_MAX_AGE, "include_subdomains": bool}. RFC 6797 6.1: ``max-age=N`` and, when asked,
    ``includeSubDomains``; sent on HTTPS only (a UA ignores it over plain HTTP, 8.1)."""
    if raw is None or raw is False:
        return None
    h = merge(HSTS_DEFAULTS, {} if raw is True else raw, path)
    max_age = integer(h["max_age"], (*path, "max_age"), 0, HSTS_MAX_AGE, "max_age (seconds)")
    value = f"max-age={max_age}"
    if boolean(h["include_subdomains"], (*path, "include_subdomains")):
        value += "; includeSubDomains"
    return value


def alpn(t: dict[str, Any]) -> str:
    """The ALPN protocols HAProxy offers on a TLS bind (RFC 7301): HTTP/2 first unless tls.http2 is off."""
    return "h2,http/1.1" if t["http2"] else "http/1.1"


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate's DNS name `pattern` covers the site host `host` (RFC 6125 6.4.3, as
    browsers apply it): equal names (case-insensitive), or a wildcard ``*.example.com`` covering
    exactly one more label (``a.example.com``; not ``example.com``, not ``a.b.example.com``). A site
    host that is itself a wildcard is covered only by the same wildcard."""
    pattern, host = pattern.lower().rstrip("."), host.lower()
    if pattern == host:
        return True
    if not pattern.startswith("*.") or host.startswith("*."):
        return False
    first, _, rest = host.partition(".")
    return bool(first) and rest == pattern[2:]


def check_certificate(
    cert_pem: str, key_pem: str, hosts: Sequence[str], path: tuple[Any, ...],
    now: datetime.datetime | None = None,
) -> None:
    """Before anything is written: the site's certificate covers each of its `hosts` (subjectAltName
    DNS names, covers()), the key is the certificate's, and the certificate is valid `now` (default:
    the current time). Raises ProxytierError naming ``<path>:certificate`` or ``<path>:key``.

    Uses the `cryptography` package, which Salt itself depends on (so every minion has it); it is
    imported here only, so a model without host-routed TLS sites needs nothing beyond the standard
    library and PyYAML."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = (*path, "certificate"), (*path, "key")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise fail(cert_path, cert_pem[:40], f"the first certificate cannot be read ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise fail(key_path, "<hidden>", f"the key cannot be read ({exc})") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise fail(key_path, "<hidden>", "this key is not the certificate's (their public keys differ); give the "
                   "key the certificate was issued for")
    now = now or datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (Salt 3006's Python 3.10)
    start, end = _validity(cert)
    subject = cert.subject.rfc4514_string()
    if not start <= now <= end:
        when = f"expired on {end:%Y-%m-%d %H:%M} UTC" if now > end else f"is valid only from {start:%Y-%m-%d %H:%M} UTC"
        raise fail(cert_path, subject, f"the certificate {when}; renew it (or fix the node's clock)")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        names = []
    for j, host in enumerate(hosts):
        if not any(covers(n, host) for n in names):
            raise fail(
                cert_path, subject, f"does not cover {key((*path[:-1], 'hosts', j))} = {host!r} (its DNS names: "
                f"{', '.join(names) or 'none'}); get a certificate whose subjectAltName lists it, or a wildcard "
                "one label above it",
            )


def _validity(cert: Any) -> tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter as aware UTC datetimes (cryptography >= 42 has *_utc; older ones, as
    on an older Salt, give naive UTC)."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = datetime.timezone.utc  # noqa: UP017
    return cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)


def crt_list(group: dict[str, Any], tls_dir: str) -> dict[str, Any]:
    """The crt-list HAProxy binds a shared TLS port with (``bind ... ssl crt-list <path>``) ->
    {"path": <tls_dir>/<group name>.crt-list, "lines": [...]}: paths and host names only, no key.

    Syntax (HAProxy 2.6 configuration manual, 5.1 "crt-list"; /usr/share/doc/haproxy/configuration.txt
    on Debian 12): one certificate per line, ``<crtfile> [<sslbindconf> ...] [[!]<snifilter> ...]``,
    wildcards allowed in SNI filters. "The first declared certificate of a bind line is used as the
    default certificate", which HAProxy also presents when the SNI matches its CN or SAN "even if a
    matching SNI filter is found on any crt-list"; "the SNI filter !* can be used after the first
    declared certificate to not include its CN and SAN in the SNI tree". So the first line is the
    default site's certificate (the `default: true` site's, else the first site's) with ``!*``: clients
    without SNI (or with a name no site claims) get it, and its names never take a host of another
    site. Then one line per site, its hosts as SNI filters, so HAProxy presents the certificate of
    the site nginx will route the request to."""
    members = [s for s in group["sites"] if s["tls"]]
    default = group["default"] or members[0]
    # ALPN on every line: a line's [sslbindconf] overrides the bind line's settings
    options = f"[alpn {alpn(default['tls'])}]"
    lines = [f"{default['tls']['crt']} {options} !*"]
    lines += [f"{s['tls']['crt']} {options} {' '.join(s['hosts'])}" for s in members]
    return {"path": f"{tls_dir}/{group['name']}.crt-list", "lines": lines}
