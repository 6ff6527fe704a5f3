"""The lab salt-master on the host side of the bridge, serving this checkout's salt/ and pillar/.

Everything it writes lives under STATE/salt (its root_dir); the CLI finds it through
SALT_MASTER_CONFIG (see lab/env) or `-c STATE/salt/etc/salt`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lab import config
from lab.sh import LabError, find_pids, log, read_pidfile, spawn, stop_pids, wait_for

BIN = Path(sys.executable).parent
CONF_DIR = config.SALT_CONFIG.parent
WRAPPER_DIR = config.STATE / "bin"  # `salt`, `salt-key`, ... bound to the lab master (PATH from lab/env)
WRAPPED = ("salt", "salt-key", "salt-run", "salt-cp")
PIDFILE = config.SALT_DIR / "salt-master.lab.pid"
MARKER = str(CONF_DIR)


def master_conf() -> str:
    doc: dict[str, Any] = {
        "root_dir": str(config.SALT_DIR),
        "interface": config.HOST_ADDR,
        "user": "root",
        "file_roots": {"base": [str(config.REPO / "salt")]},
        "pillar_roots": {"base": [str(config.PILLAR_OVERRIDE), str(config.REPO / "pillar")]},
        "worker_threads": 3,
        "timeout": 20,
        "gather_job_timeout": 10,
        "log_level_logfile": "info",
        "open_mode": False,
        "auto_accept": False,
    }
    return "# written by the proxytier lab (python -m lab up); do not edit\n" + yaml.safe_dump(doc, sort_keys=False)


def env() -> dict[str, str]:
    """Environment for the salt CLI against the lab master (what `. lab/env` gives a shell)."""
    return {**os.environ, "PATH": f"{WRAPPER_DIR}:{os.environ.get('PATH', '')}"}


def start() -> None:
    stop()
    shutil.rmtree(config.SALT_DIR, ignore_errors=True)
    CONF_DIR.mkdir(parents=True)
    config.PILLAR_OVERRIDE.mkdir(parents=True, exist_ok=True)
    config.SALT_CONFIG.write_text(master_conf())
    WRAPPER_DIR.mkdir(parents=True, exist_ok=True)
    for name in WRAPPED:
        wrapper = WRAPPER_DIR / name
        wrapper.write_text(
            f'#!/bin/sh\n# proxytier lab: {name} against the lab master\nexec {BIN / name} -c {CONF_DIR} "$@"\n'
        )
        wrapper.chmod(0o755)
    spawn([BIN / "salt-master", "-c", CONF_DIR, "-l", "warning"], config.SALT_DIR / "master.out", PIDFILE)
    wait_for("salt-master to listen on 4506", _listening, timeout=60, interval=0.3)


def _listening() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((config.HOST_ADDR, 4506)) == 0


def stop() -> None:
    """Stop the lab master (by pid file, or by its command line if a killed run lost the pid file)."""
    pids = set(find_pids("salt-master", MARKER))
    pid = read_pidfile(PIDFILE)
    if pid:
        pids.add(pid)
    stop_pids(sorted(pids), marker=MARKER, grace=20, group=True)
    PIDFILE.unlink(missing_ok=True)


def salt(args: list[str], timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the salt CLI against the lab master; returns the completed process."""
    cmd = [str(BIN / args[0]), "-c", str(CONF_DIR), *args[1:]]
    try:
        proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from e
    if check and proc.returncode != 0:
        raise LabError(f"exit {proc.returncode}: {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def salt_json(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """salt ... --out=json --static; returns {minion: return} (minions that did not answer are absent)."""
    proc = salt([*args, "--out=json", "--static"], timeout=timeout)
    text = proc.stdout.strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LabError(f"salt printed non-JSON output:\n{text[-2000:]}\n{proc.stderr[-1000:]}") from e


def accept_keys(names: list[str], timeout: float = 120) -> float:
    """Wait for every node's key and accept exactly those (no auto_accept)."""

    def all_seen() -> bool:
        keys = json.loads(salt(["salt-key", "-L", "--out=json"], timeout=30, check=True).stdout)
        pending = set(keys.get("minions_pre", []))
        accepted = set(keys.get("minions", []))
        for name in sorted(pending & set(names)):
            salt(["salt-key", "-y", "-a", name], timeout=30, check=True)
            accepted.add(name)
        return set(names) <= accepted

    return wait_for("node keys to reach the master", all_seen, timeout=timeout, interval=1)


def wait_ping(names: list[str], timeout: float = 120) -> float:
    def all_answer() -> bool:
        got = salt_json(["salt", "-L", ",".join(names), "test.ping", "-t", "3"], timeout=60)
        return all(got.get(n) is True for n in names)

    waited = wait_for(f"{', '.join(names)} to answer test.ping", all_answer, timeout=timeout, interval=1)
    log(f"test.ping: {', '.join(names)} answer")
    return waited
