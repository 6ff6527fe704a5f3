"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit's file format.

The format is the one every Go exporter reads (exporter-toolkit's docs/web-configuration.md):

    tls_server_config:
      cert_file: /etc/proxytier-exporter/tls.crt
      key_file: /etc/proxytier-exporter/tls.key
      client_auth_type: RequireAndVerifyClientCert    # optional, with client_ca_file
      client_ca_file: /etc/proxytier-exporter/prometheus-ca.crt
      min_version: TLS12                               # the default
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2y$10$...                           # bcrypt hash

Keys of the format that Python's ssl module cannot honour (inline `cert`/`key`, `cipher_suites`,
`curve_preferences`, the non-verifying client auth types) and `rate_limit` are refused with a message
naming them, as is any key the format does not have: a setting is never silently ignored.

YAML comes from PyYAML (Debian: python3-yaml) and bcrypt from the `bcrypt` module (Debian:
python3-bcrypt); both are imported only when the file asks for them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("proxytier_exporter")


class WebConfigError(Exception):
    """The web config file (or a file it names) is missing, unreadable or invalid. The message names the
    file and the key."""


_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites",
             "prefer_server_cipher_suites", "curve_preferences"}
_HTTP_KEYS = {"http2", "headers"}
# Keys of the format this implementation cannot honour: refused rather than ignored.
_UNSUPPORTED = {
    "rate_limit": "not implemented here (at most --web.max-requests requests are handled at once)",
    "tls_server_config.cert": "inline PEM is not supported: use cert_file",
    "tls_server_config.key": "inline PEM is not supported: use key_file",
    "tls_server_config.cipher_suites": "Go cipher suite names are not supported (OpenSSL's defaults apply)",
    "tls_server_config.curve_preferences": "not supported (OpenSSL's defaults apply)",
}
# exporter-toolkit's list: header -> allowed values (None: any).
_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
# Checked when the user name is unknown, so that a wrong name costs as much time as a wrong password.
_DUMMY_HASH = "$2b$10$" + "." * 53


@dataclass
class WebConfig:
    """One loaded version of the file.

    `tls`: server context, or None for plain HTTP. `users`: user -> bcrypt hash (empty: no auth).
    `headers`: extra response headers. `allowed_sans`: client certificate SANs accepted (empty: any).
    `stamp`: the state of the file and of every file it names, to notice changes (see `_stamp`).
    """

    path: str
    tls: ssl.SSLContext | None = None
    users: dict[str, str] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    allowed_sans: frozenset[str] = frozenset()
    stamp: Stamp = ()


Stamp = tuple[tuple[str, object], ...]


def _stamp(paths: list[str]) -> Stamp:
    """What tells a change: the content digest of the config file itself (first path; a quick edit can keep
    its size and timestamp), (mtime, size, inode) of the files it names (read by OpenSSL)."""
    out: list[tuple[str, object]] = []
    for n, path in enumerate(paths):
        try:
            if n == 0:
                out.append((path, hashlib.sha256(Path(path).read_bytes()).digest()))
            else:
                st = os.stat(path)
                out.append((path, (st.st_mtime_ns, st.st_size, st.st_ino)))
        except OSError:
            out.append((path, None))
    return tuple(out)


def _mapping(value: Any, where: str, allowed: set[str], path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{path}: {where} must be a mapping")
    for key in value:
        name = f"{where}.{key}" if where else str(key)
        if key not in allowed:
            raise WebConfigError(f"{path}: unknown key {name!r}")
        if name in _UNSUPPORTED and value[key] not in (None, "", [], {}):
            raise WebConfigError(f"{path}: {name}: {_UNSUPPORTED[name]}")
    return value


def _string(value: Any, where: str, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{path}: {where} must be a string")
    return value


def _tls_context(section: Mapping[str, Any], base: Path, path: str) -> tuple[ssl.SSLContext | None,
                                                                             list[str], frozenset[str]]:
    """The server SSLContext a tls_server_config asks for, the files it read, and the allowed SANs."""
    if not section:
        return None, [], frozenset()

    def file(key: str) -> str:
        value = _string(section.get(key), f"tls_server_config.{key}", path)
        return str(base / value) if value else ""

    cert, key, client_ca = file("cert_file"), file("key_file"), file("client_ca_file")
    client_ca_text = _string(section.get("client_ca"), "tls_server_config.client_ca", path)
    auth_type = _string(section.get("client_auth_type"), "tls_server_config.client_auth_type", path)
    if not cert:
        raise WebConfigError(f"{path}: tls_server_config needs cert_file")
    if not key:
        raise WebConfigError(f"{path}: tls_server_config needs key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        text = _string(section.get(name), f"tls_server_config.{name}", path) or default
        if text not in _VERSIONS:
            raise WebConfigError(f"{path}: tls_server_config.{name} {text!r}: expected one of "
                                 f"{', '.join(_VERSIONS)}")
        versions.append(_VERSIONS[text])
    if versions[0] > versions[1]:
        raise WebConfigError(f"{path}: tls_server_config.min_version is above max_version")
    context.minimum_version, context.maximum_version = versions
    for name, value in (("cert_file", cert), ("key_file", key), ("client_ca_file", client_ca)):
        if value and not os.path.exists(value):
            raise WebConfigError(f"{path}: tls_server_config.{name} {value}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise WebConfigError(f"{path}: tls_server_config: cannot load the certificate {cert} with the key "
                             f"{key}: {error}") from None
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{path}: tls_server_config.prefer_server_cipher_suites must be true or false")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if auth_type and auth_type not in _CLIENT_AUTH:
        hint = (" (Python's ssl module always verifies a client certificate it asks for: use "
                "VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                if auth_type in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert") else "")
        raise WebConfigError(f"{path}: tls_server_config.client_auth_type {auth_type!r}: expected one of "
                             f"{', '.join(_CLIENT_AUTH)}{hint}")
    context.verify_mode = _CLIENT_AUTH[auth_type or "NoClientCert"]
    if (client_ca or client_ca_text) and context.verify_mode == ssl.CERT_NONE:
        raise WebConfigError(f"{path}: a client CA is configured but client_auth_type is NoClientCert")
    if context.verify_mode != ssl.CERT_NONE and not (client_ca or client_ca_text):
        raise WebConfigError(f"{path}: client_auth_type {auth_type} needs client_ca_file")
    try:
        if client_ca:
            context.load_verify_locations(cafile=client_ca)
        elif client_ca_text:
            context.load_verify_locations(cadata=client_ca_text)
    except (OSError, ssl.SSLError) as error:
        raise WebConfigError(f"{path}: tls_server_config: cannot load the client CA: {error}") from None
    sans = section.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise WebConfigError(f"{path}: tls_server_config.client_allowed_sans must be a list of strings")
    if sans and context.verify_mode != ssl.CERT_REQUIRED:
        raise WebConfigError(f"{path}: client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    return context, [p for p in (cert, key, client_ca) if p], frozenset(sans)


def load_web_config(path: str) -> WebConfig:
    """Read and check the web config file at `path`: every file it names is read (certificate and key
    loaded, hashes checked for bcrypt syntax). Relative paths in it are relative to its directory, as
    in exporter-toolkit. Raises WebConfigError naming the file and the offending key."""
    try:
        import yaml
    except ImportError:
        raise WebConfigError("--web.config.file needs PyYAML (Debian: apt-get install python3-yaml)") from None
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise WebConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise WebConfigError(f"{path}: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WebConfigError(f"{path}: not valid YAML: {error}") from None
    top = _mapping(document, "", _TOP_KEYS, path)
    tls_section = _mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS, path)
    http_section = _mapping(top.get("http_server_config"), "http_server_config", _HTTP_KEYS, path)
    if not isinstance(http_section.get("http2", True), bool):
        raise WebConfigError(f"{path}: http_server_config.http2 must be true or false")
    headers = []
    raw_headers = http_section.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise WebConfigError(f"{path}: http_server_config.headers must be a mapping")
    for name, value in raw_headers.items():
        if name not in _HEADERS:
            raise WebConfigError(f"{path}: unknown key 'http_server_config.headers.{name}': expected one of "
                                 f"{', '.join(_HEADERS)}")
        value = _string(value, f"http_server_config.headers.{name}", path)
        allowed = _HEADERS[name]
        if allowed is not None and value and value not in allowed:
            raise WebConfigError(f"{path}: http_server_config.headers.{name} {value!r}: expected one of "
                                 f"{', '.join(allowed)}")
        if value:
            headers.append((name, value))
    users_section = top.get("basic_auth_users") or {}
    if not isinstance(users_section, Mapping):
        raise WebConfigError(f"{path}: basic_auth_users must be a mapping of user: bcrypt hash")
    users = {}
    for user, hashed in users_section.items():
        if not isinstance(user, str) or not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise WebConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash ($2y$10$... as "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints)")
        users[user] = hashed
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise WebConfigError(f"{path}: basic_auth_users needs the bcrypt module "
                                 "(Debian: apt-get install python3-bcrypt)") from None
    base = Path(path).resolve().parent
    tls, files, sans = _tls_context(tls_section, base, path)
    return WebConfig(path=path, tls=tls, users=users, headers=headers, allowed_sans=sans,
                     stamp=_stamp([path, *files]))


class WebConfigSource:
    """The current web config: re-read when the file, or a certificate, key or CA file it names, changes
    (checked with stat() on every request and every new TLS connection, so a renewed certificate or a
    changed password is used from the next connection on without a restart).

    A change that does not load is fail-closed: `current()` raises WebConfigError (requests get 500 and
    TLS handshakes are refused) until the file is fixed. Switching TLS on or off needs a restart, since
    the listening socket speaks one or the other.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._config = load_web_config(path)
        self._error: str | None = None
        self._failed_stamp: Stamp = ()

    def tls_context(self) -> ssl.SSLContext | None:
        """The context for a new connection's handshake: the current one, or while the file is invalid the
        last valid one (the request on that connection then gets 500, which tells more than a reset)."""
        try:
            return self.current().tls
        except WebConfigError:
            return self._config.tls

    @property
    def tls(self) -> bool:
        """Whether the listener speaks TLS (fixed at startup)."""
        return self._config.tls is not None

    def current(self) -> WebConfig:
        """The config to use for this request or connection. Raises WebConfigError while the file on disk
        is invalid."""
        with self._lock:
            paths = [entry[0] for entry in self._config.stamp]
            stamp = _stamp(paths)
            if stamp == self._config.stamp:
                return self._config
            if stamp == self._failed_stamp and self._error is not None:
                raise WebConfigError(self._error)
            try:
                config = load_web_config(self.path)
                if (config.tls is None) != (self._config.tls is None):
                    raise WebConfigError(f"{self.path}: switching TLS on or off needs a restart")
            except WebConfigError as error:
                self._error, self._failed_stamp = str(error), stamp
                log.error("web config not reloaded, refusing requests until it is fixed: %s", error)
                raise
            if self._error is not None:
                log.info("web config %s valid again", self.path)
            self._config, self._error, self._failed_stamp = config, None, ()
            log.info("web config %s reloaded", self.path)
            return config


class BasicAuth:
    """Checks user/password pairs against bcrypt hashes.

    bcrypt's checkpw compares in constant time; an unknown user is checked against a dummy hash so it
    costs as long as a known one. Outcomes are cached (keyed by a keyed hash of user, stored hash and
    password, never the password itself), as exporter-toolkit does, so a scrape every 15 s pays the
    bcrypt cost (about 50 ms at cost 10) once; only one bcrypt check runs at a time.
    """

    MAX_CACHED = 256

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, bool] = {}
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def check(self, users: Mapping[str, str], user: str, password: str) -> bool:
        """True if `user` is in `users` and `password` matches its hash."""
        import bcrypt

        hashed = users.get(user)
        known = hashed is not None
        hashed = hashed if known else _DUMMY_HASH
        digest = hmac.new(self._key, b"\0".join(s.encode("utf-8", "surrogateescape")
                                                for s in (user, hashed, password)), hashlib.sha256).digest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None:
            return cached and known
        with self._bcrypt_lock:
            try:
                ok = bcrypt.checkpw(password.encode("utf-8", "surrogateescape"), hashed.encode())
            except ValueError:  # a malformed hash, or (bcrypt >= 5) a password over 72 bytes
                ok = False
        with self._lock:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = ok
        return ok and known
