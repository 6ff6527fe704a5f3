"""The lab's Prometheus (Debian's package) on the host side of the bridge: scrapes every node's
exporter with the project's alert and recording rules, so dashboards and alerts are checked against
the real tier. Its targets are a file_sd file written from the Salt mine by the formula's own
proxytier_monitoring code (what proxytier.monitoring writes on a Prometheus minion), so they follow
membership: `sync_targets()` after a node joins or leaves. Everything it writes lives under
STATE/prometheus."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys

import yaml

from lab import config
from lab.sh import LabError, find_pids, read_pidfile, spawn, stop_pids, wait_for

DIR = config.STATE / "prometheus"
CONFIG = DIR / "prometheus.yml"
PIDFILE = DIR / "prometheus.lab.pid"
PORT = 9090
URL = f"http://{config.HOST_ADDR}:{PORT}"
RULES = config.REPO / "dashboards" / "rules" / "proxytier.rules.yml"
JOB = "proxytier"
MARKER = str(CONFIG)
TARGETS = DIR / "file_sd" / "proxytier.json"
MINE_TARGET, MINE_FUNCTION = "proxy*", "proxytier_address"  # as pillar/proxytier.sls and monitoring defaults


def prometheus_conf() -> str:
    doc = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "file_sd_configs": [{"files": [str(TARGETS)], "refresh_interval": "5s"}],
            }
        ],
    }
    return "# written by the proxytier lab (python -m lab up); do not edit\n" + yaml.safe_dump(doc, sort_keys=False)


def mine_targets() -> list[dict[str, object]]:
    """The file_sd targets of the nodes in the mine (`salt-run mine.get proxy* proxytier_address`), as the
    formula's proxytier_monitoring builds them: `ADDRESS:8408`, labels job and instance (the minion id)."""
    from lab import master

    utils = str(config.REPO / "salt" / "_utils")
    if utils not in sys.path:
        sys.path.insert(0, utils)
    import proxytier_monitoring  # the formula's code, no Salt needed

    proc = master.salt(["salt-run", "--out=json", "mine.get", MINE_TARGET, MINE_FUNCTION], timeout=60, check=True)
    mine = json.loads(proc.stdout or "{}")
    found = proxytier_monitoring.mine_nodes(mine, MINE_FUNCTION)
    return proxytier_monitoring.targets(found, JOB, config.EXPORTER_PORT)


def sync_targets() -> list[str]:
    """Rewrite the file_sd file from the mine (atomically; Prometheus re-reads it by itself); returns the
    instances now scraped."""
    found = mine_targets()
    TARGETS.parent.mkdir(parents=True, exist_ok=True)
    tmp = TARGETS.with_suffix(".tmp")
    tmp.write_text(json.dumps(found, indent=1) + "\n")
    os.replace(tmp, TARGETS)
    return [str(t["labels"]["instance"]) for t in found]  # type: ignore[index]


def start() -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        raise LabError("prometheus is not installed: run `sh lab/host-deps.sh`")
    stop()
    shutil.rmtree(DIR, ignore_errors=True)
    DIR.mkdir(parents=True)
    CONFIG.write_text(prometheus_conf())
    TARGETS.parent.mkdir(parents=True)
    TARGETS.write_text("[]\n")  # no node until they publish their addresses (sync_targets)
    spawn(
        [binary, f"--config.file={CONFIG}", f"--storage.tsdb.path={DIR / 'data'}",
         f"--web.listen-address={config.HOST_ADDR}:{PORT}", "--storage.tsdb.retention.time=1d"],
        DIR / "prometheus.out",
        PIDFILE,
    )
    wait_for(f"Prometheus to listen on {URL}", _listening, timeout=60, interval=0.3)


def _listening() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((config.HOST_ADDR, PORT)) == 0


def stop() -> None:
    """Stop the lab Prometheus (by pid file, or by its command line if a killed run lost the pid file)."""
    pids = set(find_pids("prometheus", MARKER))
    pid = read_pidfile(PIDFILE)
    if pid:
        pids.add(pid)
    stop_pids(sorted(pids), marker=MARKER, grace=20)
    PIDFILE.unlink(missing_ok=True)
