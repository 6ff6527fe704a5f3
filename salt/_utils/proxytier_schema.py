"""The pillar's grammar: the error type, the merge of defaults with the given keys, and one
validator per kind of value (ports, counts, durations, addresses, names, raw `extra` lines).

Every model part (members, VRRP, HAProxy, nginx, sites, TLS, exporter, monitoring) validates its
keys with these, in one style: a validator takes the value and its key path (a tuple such as
``("sites", 0, "port")``) and returns the value as the daemon will read it, or raises
`ProxytierError` whose message names the key path, the value and the fix, e.g.
``proxytier:vips:1:vrid = 300: VRRP router ids are 1..255``. Pure Python (standard library only),
so the model can be built and tested without Salt.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from typing import Any

try:  # inside Salt, errors surface as a clean CommandExecutionError (no traceback)
    from salt.exceptions import CommandExecutionError

    _BASES: tuple[type, ...] = (CommandExecutionError, ValueError)
except ImportError:  # plain Python: tests, tools
    _BASES = (ValueError,)


class ProxytierError(*_BASES):  # type: ignore[misc]
    """A pillar value the tier cannot be built from; the message says where and how to fix it."""


Path = tuple[Any, ...]
ROOT = "proxytier"

# Character classes are spelled out (never \d, \w or \s, which match non-ASCII digits, letters and
# spaces) and every pattern is used with fullmatch (a `$` would let a trailing newline through).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
HAPROXY_DURATION_RE = re.compile(r"([0-9]{1,12})(us|ms|s|m|h|d)?")
NGINX_MSEC_RE = re.compile(r"([0-9]{1,12})(ms|s|m|h|d)?")
NGINX_SEC_RE = re.compile(r"([0-9]{1,12})(s|m|h|d)?")
#: HAProxy refuses a timer above 2147483647 ms ("timer overflow", ~24.8 days); nginx's are in range too
MAX_TIMER_MS = 2**31 - 1
_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: an absolute path every consumer reads as one word: HAProxy and nginx (no space, '#', ';', quote,
#: '{}'), keepalived (no '!', '$'), systemd unit lines (no '%' specifier, '$' variable, '\\' escape),
#: nginx's `syslog:server=unix:PATH,nohostname` (no ',') and the shell of Salt's cmd states
PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.@+-]+")
GLOB_COMPONENT_RE = re.compile(r"[A-Za-z0-9_.@+*-]+")
#: Debian's adduser SYS_NAME_REGEX ^[a-z_][-a-z0-9_]*\$?$ without the trailing '$' (special to the
#: shell and systemd), at most 32 characters (useradd's limit)
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: a systemd unit name before its suffix (systemd.unit(5): ASCII letters, digits, ':-_.\\' and '@'),
#: without ':' and '\\'
UNIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}")
#: a package name (Debian policy 5.6.7: [a-z0-9][a-z0-9+.-]+; RPM adds upper case and '_')
PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]{0,127}")
#: a DNS label (RFC 1123): letters, digits and inner hyphens, up to 63
DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: an HTTP origin-form request-target (RFC 9112 3.2.1, RFC 3986 path and query characters: unreserved,
#: %HH, sub-delims, ':' '@' '/' '?'), without ' and ';' (a quote and a separator in the
#: configs' grammars): one word of printable ASCII, which is how `http-check send uri` reads it
REQUEST_TARGET_RE = re.compile(r"/([A-Za-z0-9\-._~!$&()*+,=:@/?]|%[0-9A-Fa-f]{2})*")
#: one segment of a route's path prefix as nginx compares it with the (decoded, normalised) request
#: path: RFC 3986 pchar without '%' (nginx decodes %HH before matching, so a location never matches
#: an encoded character), without ' and ';' (a quote and a separator in nginx's grammar)
ROUTE_SEGMENT_RE = re.compile(r"[A-Za-z0-9\-._~!$&()*+,=:@]+")


#: other top-level pillar keys the formula validates with these validators: a path that starts with
#: one of them is written from there (``proxytier_monitoring:port``), not under ``proxytier:``
TOP_LEVEL_KEYS = ("proxytier_monitoring",)


def key(path: Path, root: str = ROOT) -> str:
    """The pillar key path as an operator writes it: ``proxytier:sites:0:port``."""
    if path and path[0] in TOP_LEVEL_KEYS:
        return ":".join(str(x) for x in path)
    return ":".join([root, *[str(x) for x in path]])


def fail(path: Path, value: Any, fix: str) -> ProxytierError:
    """The error for `value` at `path`: ``<key> = <value!r>: <fix>`` (to be raised by the caller)."""
    return ProxytierError(f"{key(path)} = {value!r}: {fix}")


def merge(defaults: dict[str, Any], given: Any, path: Path) -> dict[str, Any]:
    """`defaults` overlaid with the mapping `given` (None: all defaults), recursing into nested
    sections; an unknown key is refused with a did-you-mean. Lists and scalars replace."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise fail(path, given, "expected a mapping of keys to values")
    out = copy.deepcopy(defaults)
    for k, value in given.items():
        if k not in defaults:
            close = difflib.get_close_matches(str(k), [str(d) for d in defaults], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(sorted(defaults))
            raise ProxytierError(f"{key((*path, k))}: unknown key; {hint}")
        sub = defaults[k]
        if isinstance(sub, dict) and sub:  # a nested section: None means "all defaults"
            out[k] = merge(sub, value, (*path, k))
        else:
            out[k] = value
    return out


def integer(value: Any, path: Path, lo: int, hi: int, what: str) -> int:
    """A whole number lo..hi (booleans refused: YAML's `yes` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(path, value, f"{what} must be a whole number {lo}..{hi}")
    return value


def port(value: Any, path: Path) -> int:
    """A TCP port 1..65535."""
    return integer(value, path, 1, 65535, "a TCP port")


def boolean(value: Any, path: Path) -> bool:
    """true or false, nothing that merely looks like one."""
    if not isinstance(value, bool):
        raise fail(path, value, "expected true or false")
    return value


def _duration(value: Any, path: Path, pattern: re.Pattern[str], fix: str) -> tuple[str, float]:
    """(text, milliseconds) of a whole number (or a string of ASCII digits) with one of `pattern`'s units."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise fail(path, value, fix)
    text = str(value)
    m = pattern.fullmatch(text)
    if not m:
        raise fail(path, value, fix)
    return text, int(m.group(1)) * _MS[m.group(2) or "ms"]


def duration(value: Any, path: Path, min_ms: float = 0) -> str:
    """A duration as HAProxy reads it: ASCII digits and an optional unit (us, ms, s, m, h, d; none
    means ms), one unit only, at most 2147483647 ms (HAProxy refuses more: "timer overflow")."""
    fix = "expected a HAProxy duration like 500ms, 2s or 1m (units us, ms, s, m, h, d; one number, one unit)"
    text, ms = _duration(value, path, HAPROXY_DURATION_RE, fix)
    if ms > MAX_TIMER_MS:
        raise fail(path, value, "HAProxy timers are at most 2147483647 ms (~24.8 days)")
    if ms < min_ms:
        raise fail(path, value, f"must be at least {min_ms:g} ms (HAProxy refuses 0 here)")
    return text


def nginx_duration(value: Any, path: Path) -> str:
    """A duration as nginx reads it in a timeout directive (ngx_parse_time, milliseconds): ASCII
    digits and an optional unit (ms, s, m, h, d; none means seconds), at most 2147483647 ms. nginx
    has no microseconds."""
    fix = "expected an nginx duration like 500ms, 30s or 1m (units ms, s, m, h, d; nginx has no us)"
    text, ms = _duration(value, path, NGINX_MSEC_RE, fix)
    if not (text[-1:].isalpha()):
        ms *= 1000  # a bare number is seconds in nginx
    if ms > MAX_TIMER_MS:
        raise fail(path, value, "at most 2147483647 ms (~24.8 days)")
    return text


def nginx_seconds(value: Any, path: Path) -> str:
    """A duration nginx reads in whole seconds (fail_timeout=, ngx_parse_time with is_sec): ASCII
    digits and an optional unit (s, m, h, d; no ms), at most 2147483 s."""
    fix = "expected an nginx duration in seconds like 10s or 1m (units s, m, h, d; nginx refuses ms here)"
    text, ms = _duration(value, path, NGINX_SEC_RE, fix)
    if not (text[-1:].isalpha()):
        ms *= 1000
    if ms > MAX_TIMER_MS:
        raise fail(path, value, "at most 2147483 s (~24.8 days)")
    return text


def choice(value: Any, path: Path, choices: tuple[str, ...], fix: str) -> str:
    """One of `choices`; `fix` says what each means."""
    if value not in choices:
        raise fail(path, value, fix)
    return value


def name(value: Any, path: Path, what: str) -> str:
    """A name used in config identifiers (site, backend): letters, digits, '.', '_', '-', up to 63."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise fail(path, value, f"{what} needs a name of letters, digits, '.', '_' or '-'")
    return value


def member_id(value: Any, path: Path) -> str:
    """A member (minion) id as HAProxy reads a server name (letters, digits, '.', '_', '-', ':') and
    keepalived a router_id (one word): the safe name grammar of `name`, up to 63 characters."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise fail(
            path, value, "a member id is the minion id: a letter or digit, then letters, digits, '.', '_' "
            "or '-' (up to 63; it becomes an HAProxy server name and keepalived's router_id)",
        )
    return value


def abs_path(value: Any, path: Path, glob: bool = False) -> str:
    """An absolute path of safe characters (letters, digits, '_', '.', '@', '+', '-'; '*' too when
    `glob`), no '.' or '..' component, no empty component: one word in every config, unit file and
    shell command it reaches, naming the file it says."""
    comp = GLOB_COMPONENT_RE if glob else PATH_COMPONENT_RE
    ok = isinstance(value, str) and value.startswith("/") and len(value) <= 4096
    parts = value[1:].split("/") if ok else []
    if not ok or not all(comp.fullmatch(p) and p not in (".", "..") for p in parts):
        allowed = "letters, digits, '_', '.', '@', '+', '-'" + (", '*'" if glob else "")
        raise fail(path, value, f"expected an absolute path like /etc/x/y of {allowed} (no '..', no spaces)")
    return value


def user_name(value: Any, path: Path) -> str:
    """A user or group name as Debian creates them (adduser's SYS_NAME_REGEX without a trailing
    '$'): a lower-case letter or '_', then lower-case letters, digits, '_', '-', up to 32."""
    if not isinstance(value, str) or not USER_RE.fullmatch(value):
        raise fail(path, value, "expected a user/group name like www-data: [a-z_][a-z0-9_-]*, up to 32")
    return value


def unit_name(value: Any, path: Path) -> str:
    """A systemd unit name without its suffix (letters, digits, '_', '.', '@', '-')."""
    if not isinstance(value, str) or not UNIT_RE.fullmatch(value):
        raise fail(path, value, "expected a service name like nginx: letters, digits, '_', '.', '@', '-'")
    return value


def package_name(value: Any, path: Path) -> str:
    """A package name (Debian policy: [a-z0-9][a-z0-9+.-]+; RPM adds upper case and '_')."""
    if not isinstance(value, str) or not PACKAGE_RE.fullmatch(value):
        raise fail(path, value, "expected a package name like nginx-full")
    return value


def request_target(value: Any, path: Path) -> str:
    """An HTTP request-target in origin form (/path?query) as HAProxy's `http-check send uri` reads
    it: one word of printable ASCII (RFC 3986 path and query characters, '%' only as %HH), without
    whitespace, control characters, '#', quotes, '\\' or ';'."""
    if not isinstance(value, str) or not REQUEST_TARGET_RE.fullmatch(value):
        raise fail(
            path, value, "expected a URL path like /healthz (optionally ?query): printable ASCII letters, digits "
            "and -._~!$&()*+,=:@/?, %HH for anything else; no space, '#', quote, '\\' or ';'",
        )
    return value


def host_name(value: Any, path: Path) -> str:
    """A name a site answers to, as nginx's ``server_name`` and an HAProxy crt-list SNI filter both
    read it: an exact name (``www.example.com``) or a wildcard of one leading label
    (``*.example.com``), of RFC 1123 labels (letters, digits, inner '-', 1..63 each, 253 in all),
    no trailing dot, the last label not all digits (an address is not a host name). Returned in
    lower case (Host and SNI compare case-insensitively)."""
    text = value.lower() if isinstance(value, str) else None
    name_part = text[2:] if text is not None and text.startswith("*.") else text
    labels = name_part.split(".") if name_part is not None else []
    if (
        text is None or len(text) > 253 or not labels
        or not all(DNS_LABEL_RE.fullmatch(label) for label in labels)
        or re.fullmatch(r"[0-9]+", labels[-1])
    ):
        raise fail(
            path, value, "expected a host name like www.example.com or a wildcard like *.example.com (one "
            "leading '*.' only): labels of letters, digits and inner '-' (1..63 each, 253 in all), no "
            "trailing dot, not an IP address",
        )
    return text


def route_path(value: Any, path: Path) -> str:
    """A route's path prefix as nginx matches it: '/' alone, or '/' then segments of RFC 3986 path
    characters (letters, digits, -._~!$&()*+,=:@), no '%' (nginx matches the decoded path), no
    query, no empty, '.' or '..' segment and no trailing '/' (``/api`` covers ``/api`` and
    ``/api/...``)."""
    segments = value[1:].split("/") if isinstance(value, str) and value.startswith("/") else None
    if value == "/":
        return value
    if segments is None or not all(ROUTE_SEGMENT_RE.fullmatch(s) and s not in (".", "..") for s in segments):
        raise fail(
            path, value, "expected a path prefix like /api: '/' then segments of letters, digits and "
            "-._~!$&()*+,=:@ (no '%', '?', '//', '.' or '..' segments, no trailing '/'; /api matches /api "
            "and /api/... but not /apiary)",
        )
    return value


def lines(value: Any, path: Path) -> list[str]:
    """An `extra` escape hatch: a list of raw config lines, rendered in the given order."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(path, value, "expected a list of raw configuration lines (strings)")
    for line in value:
        if "\n" in line:
            raise fail(path, line, "one configuration line per list item (no newlines)")
    return list(value)


def extra(section: dict[str, Any], path: Path) -> dict[str, list[str]]:
    """Every `extra` list of a section, validated as raw lines."""
    return {k: lines(v, (*path, k)) for k, v in section.items()}


def ip(value: Any, path: Path) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address (surrounding whitespace is not part of it); no IPv6 zone ('%eth0'):
    Python accepts any text after '%', the daemons do not, and the tier's addresses are global."""
    text = str(value).strip()
    if "%" in text:
        raise fail(path, value, "an address with a zone (%...) is not accepted; use the node's global address")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise fail(path, value, "expected an IP address like 198.18.0.11") from None


def vip(value: Any, path: Path) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """A VIP with optional prefix (/32 or /128 if none): a unicast host address of its prefix."""
    text = str(value).strip()
    if "%" in text:
        raise fail(path, value, "an address with a zone (%...) is not accepted as a VIP")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise fail(path, value, "expected an address with optional prefix like 198.18.0.101/24") from None
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        raise fail(path, value, "a VIP must be a unicast address clients can reach")
    if "/" in text and iface.network.prefixlen < iface.network.max_prefixlen and iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise fail(path, value, "this is the network or broadcast address of its prefix; pick a host address")
    return iface


def vip_address(value: Any) -> str | None:
    """The address of a VIP pillar value, or None when it is not one (for lenient readers such as
    the mine function, which leave the reporting of bad VIPs to the model)."""
    try:
        return str(ipaddress.ip_interface(str(value).strip()).ip)
    except ValueError:
        return None


def hostport(value: Any, path: Path) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port). The host is an IPv4 address, an IPv6
    address in brackets, or a DNS name of RFC 1123 labels (letters, digits, inner '-', 1..63 each,
    253 in all) whose last label is not all digits (``198.18.0.300`` is no name and no address)."""
    text = str(value).strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})", text) or re.fullmatch(
        r"([A-Za-z0-9.-]+):([0-9]{1,5})", text
    )
    if not m:
        raise fail(path, value, "expected host:port like 198.18.0.21:8080 (IPv6 as [addr]:port)")
    host, number = m.group(1), int(m.group(2))
    if not 1 <= number <= 65535:
        raise fail(path, value, "the port must be 1..65535")
    if ":" in host:
        ip(host, path)
    elif re.fullmatch(r"[0-9.]+", host.rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise fail(path, value, "not an IPv4 address (four numbers 0..255, no leading zeros) "
                       "and not a host name (its last label is all digits)") from None
    elif len(host) > 253 or not all(DNS_LABEL_RE.fullmatch(label) for label in host.split(".")):
        raise fail(path, value, "a host name is dot-separated labels of letters, digits and inner '-' "
                   "(1..63 each, 253 in all)")
    return host, number


def join_hostport(host: str, number: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets (``[2001:2::1]:80``), as every daemon reads it."""
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def natural_key(text: str) -> list[Any]:
    """Sort key that orders proxy2 before proxy10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
