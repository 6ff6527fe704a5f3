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
from lab.sh import LabError, find_pids, log, read_pidfile, run, spawn, step, stop_pids, wait_for

BIN = Path(sys.executable).parent  # this venv's Salt (requirements-dev.txt: the default SALT_VERSION)
CONF_DIR = config.SALT_CONFIG.parent
WRAPPER_DIR = config.STATE / "bin"  # `salt`, `salt-key`, ... bound to the lab master (PATH from lab/env)
WRAPPED = ("salt", "salt-key", "salt-run", "salt-cp")
PIDFILE = config.SALT_DIR / "salt-master.lab.pid"
MARKER = str(CONF_DIR)


FORMULA_GIT = config.STATE / "formula.git"  # gitfs: a bare clone of this checkout
GITFS_BRANCH = "proxytier-lab"  # in the bare clone: this checkout's HEAD (also when HEAD is detached)


def fileserver_conf() -> dict[str, Any]:
    """Where the master serves salt/ from: file_roots on this checkout, or gitfs (pygit2) from a bare
    clone of it with gitfs_root salt (the formula, its _modules, _states and _utils, top.sls), as an operator
    serves a formula from its repository."""
    if config.FORMULA_SOURCE == "gitfs":
        return {
            "fileserver_backend": ["gitfs"],
            "gitfs_provider": "pygit2",
            "gitfs_remotes": [f"file://{FORMULA_GIT}"],
            "gitfs_root": "salt",
            "gitfs_base": GITFS_BRANCH,
        }
    return {"file_roots": {"base": [str(config.REPO / "salt")]}}


def master_conf() -> str:
    doc: dict[str, Any] = {
        "root_dir": str(config.SALT_DIR),
        "interface": config.HOST_ADDR,
        "user": "root",
        **fileserver_conf(),
        "pillar_roots": {"base": [str(config.PILLAR_OVERRIDE), str(config.REPO / "pillar")]},
        "worker_threads": 3,
        "timeout": 20,
        "gather_job_timeout": 10,
        "log_level_logfile": "info",
        "open_mode": False,
        "auto_accept": False,
    }
    return "# written by the proxytier lab (python -m lab up); do not edit\n" + yaml.safe_dump(doc, sort_keys=False)


def salt_bin() -> Path:
    """The bin directory of the lab master's Salt, config.SALT_VERSION (the minions' version): this
    venv's when it is that version, else a venv of that version made once under CACHE by the host's
    pip (with pygit2, for gitfs). LabError if pip cannot install it."""
    from salt.version import __version__ as ours

    if ours == config.SALT_VERSION:
        return BIN
    venv = config.CACHE / f"master-salt-{config.SALT_VERSION}"
    done = venv / ".complete"
    if not done.exists():
        shutil.rmtree(venv, ignore_errors=True)
        with step(f"a venv with salt {config.SALT_VERSION} for the lab master (host pip)", "1 min"):
            run([sys.executable, "-m", "venv", venv])
            # Salt's gitfs (3006.29, 3008.3) calls Config.add_file on the repository's config, which
            # pygit2 1.21 refuses ("does not support adding files"; the master exits); 1.15.1 allows it
            run([venv / "bin" / "pip", "install", "-q", f"salt=={config.SALT_VERSION}", "pygit2==1.15.1"],
                timeout=1200)
        done.touch()
    return venv / "bin"


def env() -> dict[str, str]:
    """Environment for the salt CLI against the lab master (what `. lab/env` gives a shell)."""
    return {**os.environ, "PATH": f"{WRAPPER_DIR}:{os.environ.get('PATH', '')}"}


def start() -> None:
    stop()
    shutil.rmtree(config.SALT_DIR, ignore_errors=True)
    CONF_DIR.mkdir(parents=True)
    config.PILLAR_OVERRIDE.mkdir(parents=True, exist_ok=True)
    config.SALT_CONFIG.write_text(master_conf())
    bin_dir = salt_bin()
    WRAPPER_DIR.mkdir(parents=True, exist_ok=True)
    for name in WRAPPED:
        wrapper = WRAPPER_DIR / name
        wrapper.write_text(
            f'#!/bin/sh\n# proxytier lab: {name} against the lab master\nexec {bin_dir / name} -c {CONF_DIR} "$@"\n'
        )
        wrapper.chmod(0o755)
    if config.FORMULA_SOURCE == "gitfs":
        shutil.rmtree(FORMULA_GIT, ignore_errors=True)
        run(["git", "clone", "--quiet", "--bare", str(config.REPO), str(FORMULA_GIT)])
        head = run(["git", "-C", str(config.REPO), "rev-parse", "HEAD"]).stdout.strip()
        run(["git", "--git-dir", str(FORMULA_GIT), "branch", "--force", GITFS_BRANCH, head])
    spawn([bin_dir / "salt-master", "-c", CONF_DIR, "-l", "warning"], config.SALT_DIR / "master.out", PIDFILE)
    wait_for("salt-master to listen on 4506", _listening, timeout=60, interval=0.3)
    if config.FORMULA_SOURCE == "gitfs":
        # the master's own first fetch holds gitfs' update lock for a moment (an update then skips)
        wait_for(f"gitfs to serve proxytier/init.sls from {FORMULA_GIT}", _gitfs_serves, timeout=120, interval=2)


def _gitfs_serves() -> bool:
    salt(["salt-run", "fileserver.update", "backend=gitfs"], timeout=300, check=True)
    listed = salt(["salt-run", "fileserver.file_list", "saltenv=base", "backend=gitfs", "--out=json"],
                  timeout=120, check=True).stdout
    return "proxytier/init.sls" in listed


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
    cmd = [str(salt_bin() / args[0]), "-c", str(CONF_DIR), *args[1:]]
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


def sync(target: list[str], timeout: float = 120) -> None:
    """The formula's modules synced to the minions `target` (salt CLI target arguments, e.g. ["proxy*"] or
    ["-L", "proxy1,proxy2"]) and their in-memory pillar refreshed, waiting for the refresh: sync_all's own
    refresh only signals the minion, so a call right after it could run on the old pillar and modules (as
    the orchestrations' first steps do). LabError if a minion fails."""
    salt(["salt", *target, "saltutil.sync_all", "refresh=False"], timeout=timeout, check=True)
    salt(["salt", *target, "saltutil.refresh_pillar", "wait=True", "timeout=60"], timeout=timeout, check=True)


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
