"""The lab's Prometheus (Debian's package) on the host side of the bridge: scrapes every node's
exporter with the project's alert and recording rules, so dashboards and alerts are checked against
the real tier. Everything it writes lives under STATE/prometheus."""

from __future__ import annotations

import shutil
import socket

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


def prometheus_conf() -> str:
    doc = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {"targets": [f"{n.address}:{config.EXPORTER_PORT}"], "labels": {"instance": n.name}}
                    for n in config.NODES
                ],
            }
        ],
    }
    return "# written by the proxytier lab (python -m lab up); do not edit\n" + yaml.safe_dump(doc, sort_keys=False)


def start() -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        raise LabError("prometheus is not installed: run `sh lab/host-deps.sh`")
    stop()
    shutil.rmtree(DIR, ignore_errors=True)
    DIR.mkdir(parents=True)
    CONFIG.write_text(prometheus_conf())
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
