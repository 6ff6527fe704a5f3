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

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DURATION_RE = re.compile(r"\d+(us|ms|s|m|h|d)?")


def key(path: Path, root: str = ROOT) -> str:
    """The pillar key path as an operator writes it: ``proxytier:sites:0:port``."""
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


def duration(value: Any, path: Path) -> str:
    """A duration as HAProxy and nginx both read it: digits and an optional unit (us, ms, s, m, h, d)."""
    text = str(value)
    if isinstance(value, bool) or not DURATION_RE.fullmatch(text):
        raise fail(path, value, "expected a duration like 500ms, 2s or 1m")
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
    """An IPv4 or IPv6 address."""
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise fail(path, value, "expected an IP address like 198.18.0.11") from None


def vip(value: Any, path: Path) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """A VIP with optional prefix (/32 or /128 if none): a unicast host address of its prefix."""
    text = str(value).strip()
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
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    text = str(value).strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)", text) or re.fullmatch(r"([A-Za-z0-9.-]+):(\d+)", text)
    if not m:
        raise fail(path, value, "expected host:port like 198.18.0.21:8080 (IPv6 as [addr]:port)")
    host, number = m.group(1), int(m.group(2))
    if not 1 <= number <= 65535:
        raise fail(path, value, "the port must be 1..65535")
    if ":" in host:
        ip(host, path)
    return host, number


def join_hostport(host: str, number: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets (``[2001:2::1]:80``), as every daemon reads it."""
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def natural_key(text: str) -> list[Any]:
    """Sort key that orders proxy2 before proxy10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
