"""The exporter's part of the model (proxytier:exporter): its command line, listen address and
the runtime paths it shares with the daemons (keepalived's notify FIFO, nginx's access-log
socket). One source of truth for what the exporter scrapes and where it listens; the unit,
socket and tmpfiles templates only read it.
"""

from __future__ import annotations

import re
from typing import Any

from proxytier_schema import boolean, fail, integer, join_hostport, lines, port

#: one word of the exporter's systemd ExecStart= line, read as written: systemd splits the line at
#: whitespace, honours quotes and C escapes ('\\'), expands %-specifiers and $VAR / ${VAR}, and takes
#: a lone ';' as the start of another command (systemd.service(5) "Command lines", systemd.unit(5)
#: "Specifiers"): a --flag or --flag=value of plain characters is none of those
EXTRA_ARG_RE = re.compile(r"--[a-z0-9][a-z0-9.-]*(=[A-Za-z0-9_.,:/@+=\[\]-]*)?")

EXPORTER_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "port": 8408,
    "keepalived_source": "fifo",
    "max_upstreams": 64,
    "extra_args": [],
}


def exporter(
    raw: dict[str, Any], address: str, vips: list[str], status_port: int, params: dict[str, Any]
) -> dict[str, Any]:
    """proxytier:exporter (merged with its defaults) -> {"enabled", "port", "listen", "args",
    "fifo", "access_log_socket", "run_dir"}; `address` is the node's own address."""
    path: tuple[Any, ...] = ("exporter",)
    enabled = boolean(raw["enabled"], (*path, "enabled"))
    listen_port = port(raw["port"], (*path, "port"))
    source = raw["keepalived_source"]
    if source not in ("fifo", "json", "none"):
        raise fail((*path, "keepalived_source"), source, "'fifo' (no root), 'json' (needs root) or 'none'")
    max_up = integer(raw["max_upstreams"], (*path, "max_upstreams"), 1, 10000, "max_upstreams")
    run_dir = params.get("exporter_run_dir", "/run/proxytier-exporter")
    listen = join_hostport(address, listen_port)
    args = [
        f"--web.listen-address={listen}",
        f"--haproxy.stats-socket={params.get('haproxy_stats_socket', '/run/haproxy/stats.sock')}",
        f"--nginx.stub-status-url=http://127.0.0.1:{status_port}/stub_status",
        f"--nginx.access-log-socket={run_dir}/nginx-access.sock",
        f"--nginx.max-upstreams={max_up}",
        f"--keepalived.source={source}",
        f"--keepalived.notify-fifo={run_dir}/keepalived.fifo",
        *[f"--vip={v}" for v in vips],
        *_extra_args(raw["extra_args"], (*path, "extra_args")),
    ]
    return {
        "enabled": enabled,
        "port": listen_port,
        "listen": listen,
        "args": args,
        "fifo": f"{run_dir}/keepalived.fifo",
        "access_log_socket": f"{run_dir}/nginx-access.sock",
        "run_dir": run_dir,
    }


def _extra_args(given: Any, path: tuple[Any, ...]) -> list[str]:
    items = [given] if isinstance(given, str) else given
    for i, arg in enumerate(items if isinstance(items, list) else []):
        if isinstance(arg, str):
            _extra_arg(arg, (*path, i))
    return lines(given, path)


def _extra_arg(arg: str, path: tuple[Any, ...]) -> str:
    if not EXTRA_ARG_RE.fullmatch(arg):
        raise fail(
            path, arg, "one proxytier-exporter flag per item, --name or --name=value of letters, digits and "
            "_.,:/@+=[]- (it becomes one word of systemd's ExecStart=: no spaces, quotes, '\\', '%', '$' or ';')",
        )
    return arg
