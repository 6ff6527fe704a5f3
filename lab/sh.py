"""Running commands and printing progress. The only place that shells out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class LabError(RuntimeError):
    """Something the lab could not do; the message says what and where to look."""


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


@contextmanager
def step(what: str, about: str = "") -> Iterator[dict[str, float]]:
    """Print a progress line before and a timing after a long step; yields a dict receiving 'seconds'."""
    log(f"{what} ..." + (f" (about {about})" if about else ""))
    t0 = time.monotonic()
    timing: dict[str, float] = {}
    try:
        yield timing
    except BaseException:
        log(f"{what}: FAILED after {time.monotonic() - t0:.1f} s")
        raise
    timing["seconds"] = round(time.monotonic() - t0, 2)
    log(f"{what}: done in {timing['seconds']:.1f} s")


def run(
    cmd: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    timeout: float = 300,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (no shell), in `cwd` if given. On failure raise LabError with its output tail."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            capture_output=capture,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(args)}") from e
    if check and proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or "")).strip()[-3000:]
        raise LabError(f"exit {proc.returncode}: {' '.join(args)}\n{out}")
    return proc


def seconds_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float | None:
    """Seconds (rounded to ms) until predicate() is true, polled every `interval` s; None after `timeout`
    (for figures where a timeout is a result, not an error: wait_for raises instead)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return round(time.monotonic() - t0, 3)
        time.sleep(interval)
    return None


def wait_for(what: str, predicate: object, timeout: float, interval: float = 0.5) -> float:
    """Poll predicate() until truthy; return seconds waited; raise LabError after timeout."""
    assert callable(predicate)
    t0 = time.monotonic()
    last_exc: Exception | None = None
    while True:
        try:
            if predicate():
                return time.monotonic() - t0
        except Exception as e:
            last_exc = e
        if time.monotonic() - t0 > timeout:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:  # reap it if it is our own exited child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def find_pids(*markers: str) -> list[int]:
    """Pids whose command line contains every marker (how `up` finds what a killed run left)."""
    me = os.getpid()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        args = " ".join(cmdline(pid))
        if pid != me and args and all(m in args for m in markers):
            found.append(pid)
    return sorted(found)


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pid(pid: int, *, marker: str, grace: float = 20, group: bool = False) -> None:
    """Stop a process the lab started (checked by `marker` in its command line): TERM, wait, KILL."""
    stop_pids([pid], marker=marker, grace=grace, group=group)


def stop_pids(pids: list[int], *, marker: str, grace: float = 20, group: bool = False) -> None:
    """Stop processes the lab started, all at once: TERM to each (its group when group=True, as the lab
    starts daemons in their own session), wait up to `grace` seconds, then KILL what is left."""
    ours = [p for p in pids if pid_alive(p) and marker in " ".join(cmdline(p))]
    for pid in ours:
        _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in ours):
        time.sleep(0.2)
    for pid in ours:
        if pid_alive(pid):
            log(f"pid {pid} did not stop in {grace:.0f} s; killing it")
            _signal(pid, signal.SIGKILL, group)
        if group:  # children left in the same group (e.g. salt-master workers)
            _signal(pid, signal.SIGKILL, True)


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(cmd: Sequence[str | Path], log_path: Path, pid_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start a daemon in its own session (so it survives us and can be stopped by group), in `cwd` if
    given, record its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid
