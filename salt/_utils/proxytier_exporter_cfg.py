"""The exporter's part of the model (proxytier:exporter): its command line, listen address and
the paths it shares with the daemons (keepalived's notify FIFO, the access-log file nginx writes
for it, and its own state directory). One source of truth for what the exporter scrapes and where
it listens; the unit, tmpfiles, logrotate and nginx templates only read it.
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
    raw: dict[str, Any], address: str, vips: list[str], status_port: int, params: dict[str, Any],
    bgp: dict[str, str] | None = None,
) -> dict[str, Any]:
    """proxytier:exporter (merged with its defaults) -> {"enabled", "port", "listen", "args", "fifo",
    "access_log" (the proxytier_tsv file nginx writes), "access_log_dir", "state_dir", "state_directory"
    (relative to /var/lib, for StateDirectory=), "state_file", "run_dir", "supplementary_groups" (besides
    HAProxy's group), "inaccessible_paths"}; `address` is the node's own address.

    `bgp` (vip_mode bgp: proxytier_bgp.exporter_sources) turns on the bgp collector (`--bgp.source=birdc`,
    BIRD's socket, the gate's state file), gives the unit BIRD's group for the socket and hides BIRD's
    configuration directory from it, and turns off the VRRP view: no keepalived (its source is none), no
    keepalived.conf and no `--vip` (every node holds every service address on its loopback in this mode, so
    proxytier_vip_owned would be 1 everywhere and the VRRP alerts on VIP holders would fire).
    Raises ProxytierError naming the key for a lookup exporter_log_dir inside nginx_log_dir's rotation or
    an exporter_state_dir outside /var/lib."""
    path: tuple[Any, ...] = ("exporter",)
    enabled = boolean(raw["enabled"], (*path, "enabled"))
    listen_port = port(raw["port"], (*path, "port"))
    source = raw["keepalived_source"]
    if source not in ("fifo", "json", "none"):
        raise fail((*path, "keepalived_source"), source, "'fifo' (no root), 'json' (needs root) or 'none'")
    max_up = integer(raw["max_upstreams"], (*path, "max_upstreams"), 1, 10000, "max_upstreams")
    run_dir = params.get("exporter_run_dir", "/run/proxytier-exporter")
    log_dir = _log_dir(params)
    state_dir = params.get("exporter_state_dir", "/var/lib/proxytier-exporter")
    state_directory = _state_directory(state_dir)
    access_log = f"{log_dir}/nginx-access.log"
    state_file = f"{state_dir}/nginx-access-log.json"
    listen = join_hostport(address, listen_port)
    args = [
        f"--web.listen-address={listen}",
        f"--haproxy.stats-socket={params.get('haproxy_stats_socket', '/run/haproxy/stats.sock')}",
        f"--nginx.stub-status-url=http://127.0.0.1:{status_port}/stub_status",
        f"--nginx.access-log-file={access_log}",
        f"--nginx.access-log-state-file={state_file}",
        f"--nginx.max-upstreams={max_up}",
        f"--keepalived.source={source}",
        *([f"--keepalived.notify-fifo={run_dir}/keepalived.fifo", *[f"--vip={v}" for v in vips]] if bgp is None
          else ["--keepalived.config=", "--bgp.source=birdc", f"--bgp.bird-socket={bgp['bird_socket']}",
                f"--bgp.gate-state-file={bgp['state_file']}"]),
        *_extra_args(raw["extra_args"], (*path, "extra_args")),
    ]
    return {
        "enabled": enabled,
        "port": listen_port,
        "listen": listen,
        "args": args,
        "fifo": f"{run_dir}/keepalived.fifo",
        "access_log": access_log,
        "access_log_dir": log_dir,
        "state_dir": state_dir,
        "state_directory": state_directory,
        "state_file": state_file,
        "run_dir": run_dir,
        "supplementary_groups": [] if bgp is None else [bgp["bird_group"]],
        "inaccessible_paths": [] if bgp is None else [bgp["bird_config_dir"]],
    }


def _log_dir(params: dict[str, Any]) -> str:
    """The directory of the access log nginx writes for the exporter (lookup exporter_log_dir): one of its
    own, rotated by the formula's logrotate file. Debian's /etc/logrotate.d/nginx rotates
    `<nginx_log_dir>/*.log` (14 days, compressed), and logrotate refuses a file named by two stanzas."""
    log_dir = params.get("exporter_log_dir", "/var/log/proxytier-exporter")
    nginx_log_dir = params.get("nginx_log_dir", "/var/log/nginx")
    if log_dir.rstrip("/") == nginx_log_dir.rstrip("/"):
        raise fail(("lookup", "exporter_log_dir"), log_dir,
                   f"a directory of its own, not nginx_log_dir ({nginx_log_dir}): Debian's logrotate already "
                   "rotates every *.log there, and the formula rotates the exporter's log itself")
    return log_dir


def _state_directory(state_dir: str) -> str:
    """lookup exporter_state_dir (absolute, checked by check_params) -> systemd's StateDirectory= value,
    which is relative to /var/lib (systemd.exec(5))."""
    if not state_dir.startswith("/var/lib/") or state_dir.rstrip("/") == "/var/lib":
        raise fail(("lookup", "exporter_state_dir"), state_dir,
                   "a directory under /var/lib, like /var/lib/proxytier-exporter (systemd's StateDirectory= "
                   "makes it, owned by the exporter's user)")
    return state_dir[len("/var/lib/"):].rstrip("/")


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
