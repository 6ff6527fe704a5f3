"""The model of `proxytier.monitoring`, for a minion that runs Prometheus (not a proxy node). It owns the pillar
key `proxytier_monitoring`: its defaults (salt/proxytier/templates/monitoring/defaults.yaml, the one place they
are written), the validation of every key with proxytier_schema's validators and error type (messages name
``proxytier_monitoring:<key>``, the value and the fix), the choice between explicit nodes and the Salt mine,
and what the states write: the file_sd targets (one per proxy node, ``host:port`` with IPv6 in brackets,
`instance` = the minion id), the scrape job, each alert's runbook base and Prometheus' paths. monitoring.sls
is a list of states over `build()`'s result. Pure Python (no Salt), unit-tested in tests/unit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import yaml
from proxytier_schema import (
    ProxytierError,
    abs_path,
    boolean,
    fail,
    join_hostport,
    merge,
    natural_key,
    package_name,
    port,
    unit_name,
)

ROOT = "proxytier_monitoring"
RULES_FILE = "proxytier.rules.yml"
RUNBOOK_PAGE = "proxytier-runbook.html"
# what Salt's mine.get accepts as tgt_type
TGT_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre", "compound", "nodegroup",
             "ipcidr")
JOB_RE = re.compile(r"proxytier[A-Za-z0-9_.:-]*")
PROM_DURATION_RE = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
MINION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
Path = tuple[Any, ...]


def _path(value: Any, path: Path) -> Any:
    """An absolute path to the grammar of proxytier_schema.abs_path; a directory may end in '/'."""
    abs_path((value.rstrip("/") or value) if isinstance(value, str) else value, path)
    return value


def _at(path: Path) -> Path:
    """A key path under this module's top-level pillar key (proxytier_schema.TOP_LEVEL_KEYS)."""
    return (ROOT, *path)


def load_defaults(text: str) -> dict[str, Any]:
    """The defaults from the text of defaults.yaml."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("prometheus"), dict):
        raise ProxytierError("proxytier.monitoring defaults.yaml: expected a mapping with a prometheus section")
    return data


def _string(value: Any, path: Path, pattern: re.Pattern[str], fix: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise fail(_at(path), value, fix)
    return value


def runbook_url(value: Any, path: Path = ("runbook_url",)) -> str:
    """The base of every alert's runbook_url (the alert's anchor is appended): an http(s) URL or one that starts
    with Prometheus' `{{ $externalURL }}`; no spaces (except inside that template action), quotes or '#'."""
    fix = ("expected the URL where RUNBOOK.md is published, without '#', quotes or spaces, e.g. "
           "'{{ $externalURL }}/consoles/proxytier-runbook.html' (the default) or "
           "'https://wiki.example.com/proxytier/RUNBOOK.html'")
    if not isinstance(value, str):
        raise fail(_at(path), value, fix)
    external = value.startswith("{{ $externalURL }}")
    rest = value[len("{{ $externalURL }}"):] if external else value
    if (not external and not re.match(r"https?://[^/\s]", value)) or re.search(r"[\s'\"#{}]", rest):
        raise fail(_at(path), value, fix)
    return value


def _nodes(value: Any, path: Path) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(_at(path), value, "expected a list of {id: proxy1, address: 198.18.0.11}")
    nodes, seen = [], set()
    for index, node in enumerate(value):
        where = (*path, index)
        if not isinstance(node, dict) or set(node) != {"id", "address"}:
            raise fail(_at(where), node, "expected {id: <minion id>, address: <IP address>} and nothing else")
        ident = _string(node["id"], (*where, "id"), MINION_ID_RE, "expected the node's minion id, e.g. proxy1")
        if ident in seen:
            raise fail(_at((*where, "id")), ident, "each node once")
        seen.add(ident)
        nodes.append({"id": ident, "address": _address(node["address"], (*where, "address"))})
    return nodes


def _address(value: Any, path: Path) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise fail(_at(path), value, "expected an IP address like 198.18.0.11 or 2001:2::11") from None


def settings(given: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """pillar `proxytier_monitoring` (None: all defaults) merged over `defaults`, every key validated."""
    cfg = merge(defaults, given, (ROOT,))
    prom = cfg["prometheus"]
    out: dict[str, Any] = {
        "job": _string(cfg["job"], ("job",), JOB_RE, "the rules select job=~\"proxytier.*\": a job name that "
                       "starts with proxytier (letters, digits, '_', '.', ':', '-'), e.g. proxytier-eu"),
        "port": port(cfg["port"], (ROOT, "port")),
        "target": _string(cfg["target"], ("target",), re.compile(r"[^\n]+"),
                          "expected a Salt target of the proxy nodes, e.g. 'proxy*'"),
        "tgt_type": _string(cfg["tgt_type"], ("tgt_type",), re.compile("|".join(TGT_TYPES)),
                            "expected one of " + ", ".join(TGT_TYPES)),
        "mine_function": _string(cfg["mine_function"], ("mine_function",), MINION_ID_RE,
                                 "expected the mine alias of the proxy nodes' addresses, e.g. proxytier_address"),
        "nodes": _nodes(cfg["nodes"], ("nodes",)),
        "runbook_url": runbook_url(cfg["runbook_url"]),
    }
    where = ("prometheus",)
    paths = {k: _path(prom[k], _at((*where, k))) for k in ("promtool", "config", "rules_dir", "consoles_dir",
                                                           "targets_file")}
    out["prometheus"] = {
        "package": package_name(prom["package"], _at((*where, "package"))),
        "service": unit_name(prom["service"], _at((*where, "service"))),
        **paths,
        "manage_config": boolean(prom["manage_config"], _at((*where, "manage_config"))),
        **{k: _string(str(prom[k]), (*where, k), PROM_DURATION_RE, "expected a Prometheus duration like 15s or 1m")
           for k in ("scrape_interval", "evaluation_interval")},
    }
    return out


def mine_nodes(mine: dict[str, Any], mine_function: str) -> list[dict[str, str]]:
    """Nodes from mine.get's answer {minion id: its addresses, primary first (or one address)}: the first
    address of each, in natural order of the ids; minions with no address are left out."""
    nodes = []
    for ident in sorted(mine, key=natural_key):
        addresses = mine[ident]
        addresses = [addresses] if isinstance(addresses, str) else addresses
        if not addresses:
            continue
        if not isinstance(addresses, list):
            raise ProxytierError(f"mine {mine_function} of {ident} = {addresses!r}: expected a list of addresses "
                                 "(mine_function: proxytier.address on the proxy nodes)")
        try:
            address = str(ipaddress.ip_address(str(addresses[0]).strip()))
        except ValueError:
            raise ProxytierError(f"mine {mine_function} of {ident} = {addresses[0]!r}: expected an IP address "
                                 "(the node's mine function is proxytier.address)") from None
        nodes.append({"id": ident, "address": address})
    return nodes


def targets(nodes: list[dict[str, str]], job: str, port_number: int) -> list[dict[str, Any]]:
    """The file_sd target list: one target per node, labelled with the job and the node's id as `instance`."""
    return [{"targets": [join_hostport(node["address"], port_number)], "labels": {"job": job, "instance": node["id"]}}
            for node in nodes]


def build(given: Any, defaults_text: str, mine_get: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The monitoring model: `settings()` plus the nodes (explicit `nodes`, else `mine_get(target,
    mine_function, tgt_type=...)`, called only then), their file_sd `targets`, and the files the states write
    (`rules_file`, `console_page`)."""
    cfg = settings(given, load_defaults(defaults_text))
    nodes = cfg["nodes"] or mine_nodes(mine_get(cfg["target"], cfg["mine_function"], tgt_type=cfg["tgt_type"])
                                       or {}, cfg["mine_function"])
    prom = cfg["prometheus"]
    return {**cfg, "nodes": nodes, "targets": targets(nodes, cfg["job"], cfg["port"]),
            "rules_file": f"{prom['rules_dir'].rstrip('/')}/{RULES_FILE}",
            "console_page": f"{prom['consoles_dir'].rstrip('/')}/{RUNBOOK_PAGE}"}
