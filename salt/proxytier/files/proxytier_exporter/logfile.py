"""nginx's access log for the exporter, read from a file in batches (`log_format proxytier_tsv`).

nginx writes the exporter's log with `access_log PATH proxytier_tsv buffer=64k flush=1s;`: each worker
appends whole lines, one write(2) per 64 KiB or per second (ngx_http_log_module: "the data will be
written to the file if the next log line does not fit into the buffer; if the buffered data is older
than specified by the flush parameter; when a worker process is re-opening log files or is shutting
down"). The reader wakes once a second (`AccessLogFileReader`), reads what is new in large chunks,
keeps a trailing partial line for the next read, and counts the whole lines as one batch
(`AccessLogStats.observe_lines`). nginx pays one write per buffer instead of one datagram per request,
and a slow exporter delays nothing and loses nothing: the file waits for it.

No line is lost or counted twice across:
- rotation (logrotate renames the file, then nginx reopens its path on USR1, flushing each worker's
  buffer into the old file first: ngx_reopen_files in src/core/ngx_cycle.c). When the path names a new
  file, the old one stays open and is read on until it has not grown for DRAIN_GRACE seconds (and at
  least that long after the rotation was seen): lines nginx flushed into it late, and every line of a
  worker that failed to reopen, are still counted. A rotation without the reopen is safe too: the old
  file keeps growing, so it is never closed.
- truncation (`copytruncate`): a file shorter than what was read from it is read again from its start.
  Lines appended between the last read and the truncation are lost (copytruncate's own race); the
  truncations counter shows it.
- nginx reloads (HUP): new workers append to the same file; old workers flush their buffers as they exit.
- exporter restarts: the position of the published counters (device, inode, byte offset and the last
  bytes before it, per open file) is saved atomically to the state file at each scrape, after the
  families were taken under the same lock as the batches. A restarted exporter (whose counters start
  from zero, which Prometheus reads as a counter reset) resumes there, in the rotated file too if the
  saved inode is now a sibling name (`access.log.1`, found by inode, not by name): every line is
  published exactly once, unless a scrape's answer never reaches Prometheus. A saved file that is gone
  (compressed or deleted while the exporter was down) is counted in the files-lost counter.
  Without a saved position (first start, or no state file configured) reading starts at the end of the
  file: lines written before the first start are not counted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxytier_exporter.accesslog import AccessLogStats, MalformedLine
from proxytier_exporter.core import SourceError
from proxytier_exporter.streams import StreamReader

log = logging.getLogger("proxytier_exporter")

DRAIN_GRACE = 5.0  # seconds a rotated file is read on after it stopped growing (nginx flushes within 1 s)
CHUNK = 1 << 20  # bytes per read
POLL_BUDGET = 64 << 20  # bytes read per wake-up before the stop flag is checked again
MAX_LINE = 1 << 16  # a partial line longer than this is malformed (proxytier_tsv lines are < 1 KiB)
TAIL = 64  # bytes before a saved offset kept to recognise the file (an inode number can be reused)
STATE_VERSION = 1
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")

FILE_METRIC_NAMES = (
    "proxytier_nginx_access_log_read_bytes_total",
    "proxytier_nginx_access_log_unread_bytes",
    "proxytier_nginx_access_log_rotations_total",
    "proxytier_nginx_access_log_truncations_total",
    "proxytier_nginx_access_log_files_lost_total",
)


@dataclass
class _OpenFile:
    """One file being read: `offset` bytes read from it, of which `partial` (the end) is not a whole
    line yet; `tail`: the TAIL bytes before offset - len(partial)."""

    fd: int
    dev: int
    ino: int
    offset: int = 0
    partial: bytes = b""
    tail: bytes = b""
    rotated_at: float | None = None  # monotonic time the path was seen naming another file
    grew_at: float = 0.0
    discarding: bool = False  # inside a line over MAX_LINE: skipping to its newline

    @property
    def consumed(self) -> int:
        return self.offset - len(self.partial)

    def position(self) -> dict[str, object]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.consumed, "tail": self.tail.hex()}


class LogFollower:
    """Follows the log file at `path` into `stats` (an AccessLogStats made with source="file").

    `state_path` ("" or None: none) is where the position of the published counters is kept across
    restarts. Not a thread: `poll()` reads, `families()` publishes; both may run in different threads.
    OSError from `start()` (the state file cannot be written) means the reader cannot keep its promise;
    problems while following (the path missing or unreadable) are kept in `problem`, and reading goes on.
    """

    def __init__(self, path: str, stats: AccessLogStats, state_path: str | None = None,
                 clock: Callable[[], float] = time.monotonic, drain_grace: float = DRAIN_GRACE):
        self.path = path
        self.stats = stats
        self.state_path = state_path or None
        self.drain_grace = drain_grace
        self.problem: str | None = None
        self._clock = clock
        self._lock = threading.Lock()  # batches against families(): counters and positions move together
        self._current: _OpenFile | None = None
        self._draining: list[_OpenFile] = []
        self._saved: dict[str, object] | None = None
        self._state_error_logged = float("-inf")
        self.read_bytes = 0
        self.rotations = 0
        self.truncations = 0
        self.files_lost = 0

    # --- start and resume ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the file where the saved position says (or at its end), and save that position."""
        saved = self._load_state()
        if saved is None:
            self._open_path(at_end=True)
            if self.state_path:
                log.info("nginx access log: no saved position in %s: reading %s from its end", self.state_path,
                         self.path)
        else:
            self._resume(saved)
        self._save_state(self._positions())

    def _load_state(self) -> list[dict[str, object]] | None:
        if not self.state_path:
            return None
        try:
            with open(self.state_path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("nginx access log: ignoring the state file %s (%s): reading from the end",
                        self.state_path, error)
            return None
        files = state.get("files") if isinstance(state, dict) else None
        if state.get("version") != STATE_VERSION or state.get("path") != self.path or not isinstance(files, list):
            log.warning("nginx access log: the state file %s is not a position in %s: reading from the end",
                        self.state_path, self.path)
            return None
        return [f for f in files if isinstance(f, dict)]

    def _siblings(self) -> dict[tuple[int, int], str]:
        """{(dev, inode): name} of the path and its rotated names (the path's name with a suffix:
        `.1` from logrotate, `-20261201` with dateext), compressed ones left out."""
        directory, base = os.path.split(self.path)
        found: dict[tuple[int, int], str] = {}
        try:
            names = os.listdir(directory or ".")
        except OSError:
            return found
        for name in names:
            if not name.startswith(base) or name.endswith(COMPRESSED):
                continue
            full = os.path.join(directory, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            found[(st.st_dev, st.st_ino)] = full
        return found

    def _resume(self, saved: list[dict[str, object]]) -> None:
        siblings = self._siblings()
        now = self._clock()
        for entry in saved:
            try:
                dev, ino, offset = int(entry["dev"]), int(entry["ino"]), int(entry["offset"])  # type: ignore[call-overload]
                tail = bytes.fromhex(str(entry.get("tail", "")))
            except (KeyError, TypeError, ValueError):
                continue
            name = siblings.get((dev, ino))
            opened = self._open_at(name, dev, ino, offset, tail) if name else None
            if opened is None:
                self.files_lost += 1
                log.warning("nginx access log: the file read up to byte %d before the restart (inode %d) is "
                            "gone or changed: the lines after that position are not counted", offset, ino)
                continue
            if name == self.path:
                self._current = opened
            else:
                opened.rotated_at = now
                self._draining.append(opened)
            log.info("nginx access log: resuming %s at byte %d", name, offset)
        if self._current is None:  # the path names a file made since the saved position: all of it is new
            self._open_path(at_end=False)

    def _open_at(self, name: str, dev: int, ino: int, offset: int, tail: bytes) -> _OpenFile | None:
        """`name` opened at `offset` if it is still the file (dev, ino) whose bytes before offset are
        `tail`, else None."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if ((st.st_dev, st.st_ino) != (dev, ino) or st.st_size < offset
                or os.pread(fd, len(tail), offset - len(tail)) != tail):
            os.close(fd)
            return None
        return _OpenFile(fd, dev, ino, offset=offset, tail=tail, grew_at=self._clock())

    def _open_path(self, at_end: bool) -> None:
        """Open the path as the current file, at its last whole line if `at_end`, else at its start."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.problem = f"{self.path}: no such file (is nginx writing its proxytier_tsv log there?)"
            return
        except OSError as error:
            self.problem = f"{self.path}: cannot open: {error.strerror}"
            return
        st = os.fstat(fd)
        opened = _OpenFile(fd, st.st_dev, st.st_ino, grew_at=self._clock())
        if at_end and st.st_size:
            start = max(0, st.st_size - MAX_LINE)
            end = os.pread(fd, st.st_size - start, start)
            newline = end.rfind(b"\n")
            opened.offset = start + newline + 1 if newline >= 0 else st.st_size
            opened.tail = end[max(0, newline + 1 - TAIL):newline + 1] if newline >= 0 else b""
        if self._current is not None:
            self._current.rotated_at = self._clock()
            self._draining.append(self._current)
            self.rotations += 1
        self._current = opened
        self.problem = None

    # --- following -----------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Read what is new in every open file, after opening the file the path names now if it is
        another one; close rotated files that are done. -> True if it stopped at POLL_BUDGET with more
        to read."""
        self._check_path()
        budget = POLL_BUDGET
        for opened in [*self._draining, *([self._current] if self._current else [])]:
            budget -= self._read(opened, budget)
            if budget <= 0:
                return True
        now = self._clock()
        for opened in list(self._draining):
            assert opened.rotated_at is not None
            if now - opened.rotated_at >= self.drain_grace and now - opened.grew_at >= self.drain_grace:
                with self._lock:
                    self._draining.remove(opened)
                    if opened.partial and not opened.discarding:
                        self.stats.malformed(1, MalformedLine("a rotated file ends inside a line"), opened.partial)
                os.close(opened.fd)
        return False

    def _check_path(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:  # between logrotate's rename and nginx's reopen: read on the old file
            if self._current is None:
                self.problem = f"{self.path}: no such file (is nginx writing its proxytier_tsv log there?)"
            return
        except OSError as error:
            self.problem = f"{self.path}: cannot stat: {error.strerror}"
            return
        current = self._current
        if current is not None and (st.st_dev, st.st_ino) == (current.dev, current.ino):
            return
        with self._lock:
            self._open_path(at_end=False)

    def _read(self, opened: _OpenFile, budget: int) -> int:
        """Read up to `budget` new bytes of one file into the counters -> bytes read."""
        size = os.fstat(opened.fd).st_size
        if size < opened.offset:  # truncated (copytruncate): its new lines start at 0
            with self._lock:
                opened.offset, opened.partial, opened.tail, opened.discarding = 0, b"", b"", False
                self.truncations += 1
            log.warning("nginx access log: %s was truncated; reading it again from its start", self.path)
        total = 0
        while total < budget:
            data = os.pread(opened.fd, CHUNK, opened.offset)
            if not data:
                break
            total += len(data)
            self._take(opened, data)
        if total:
            opened.grew_at = self._clock()
        return total

    def _take(self, opened: _OpenFile, data: bytes) -> None:
        """Count the whole lines of `opened.partial + data`; keep the rest as the new partial line."""
        buf = opened.partial + data
        discarding = opened.discarding
        if discarding:  # the rest of a line over MAX_LINE, already counted as malformed
            newline = buf.find(b"\n")
            buf, discarding = (b"", True) if newline < 0 else (buf[newline + 1:], False)
        end = buf.rfind(b"\n") + 1
        whole, rest = buf[:end], buf[end:]
        with self._lock:
            if whole:
                self.stats.observe_lines(whole)
                opened.tail = (opened.tail + whole)[-TAIL:]
            opened.discarding = discarding
            if len(rest) > MAX_LINE:
                self.stats.malformed(1, MalformedLine(f"a line over {MAX_LINE} bytes"), rest)
                rest, opened.discarding = b"", True
            opened.partial = rest
            opened.offset += len(data)
            self.read_bytes += len(data)

    # --- publishing ----------------------------------------------------------------------------------

    def _positions(self) -> list[dict[str, object]]:
        return [f.position() for f in [*self._draining, *([self._current] if self._current else [])]]

    def families(self) -> Iterator[Metric]:
        """The access-log families, taken with the position they correspond to, which is then saved."""
        with self._lock:
            families = list(self.stats.families())
            positions = self._positions()
            read_bytes, rotations, truncations = self.read_bytes, self.rotations, self.truncations
            unread = 0
            for opened in [*self._draining, *([self._current] if self._current else [])]:
                try:
                    unread += max(0, os.fstat(opened.fd).st_size - opened.offset)
                except OSError:
                    pass
            self._save_state(positions)
        yield from families
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_read_bytes_total",
            "Bytes read from nginx's proxytier_tsv log file (its rotated names included).", value=read_bytes)
        yield GaugeMetricFamily(
            "proxytier_nginx_access_log_unread_bytes",
            "Bytes nginx has written to the log files being read that the exporter has not read yet "
            "(file size minus read offset).", value=unread)
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_rotations_total",
            "Times the log file's path was found naming a new file (logrotate, then nginx's reopen).",
            value=rotations)
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_truncations_total",
            "Times a log file was found shorter than what had been read from it (copytruncate); lines "
            "written just before it are not counted.", value=truncations)
        yield CounterMetricFamily(
            "proxytier_nginx_access_log_files_lost_total",
            "Files the saved position pointed into that were gone or changed when the exporter started "
            "(rotated away, compressed or deleted while it was down); their unread lines are not counted.",
            value=self.files_lost)

    def _save_state(self, positions: list[dict[str, object]]) -> None:
        """Write the position atomically (a temp file in the same directory, fsync, rename), if it
        changed. The first save raises OSError (start() fails); later failures are logged."""
        if not self.state_path:
            return
        state = {"version": STATE_VERSION, "path": self.path, "files": positions}
        if state == self._saved:
            return
        tmp = f"{self.state_path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except OSError as error:
            if self._saved is None:
                raise OSError(error.errno, f"cannot save the position to {self.state_path} "
                              f"({error.strerror}; --nginx.access-log-state-file)") from error
            now = self._clock()
            if now - self._state_error_logged >= 60:
                self._state_error_logged = now
                log.warning("nginx access log: cannot save the position to %s: %s", self.state_path, error)
            return
        self._saved = state

    def close(self) -> None:
        for opened in [*self._draining, *([self._current] if self._current else [])]:
            os.close(opened.fd)
        self._draining, self._current = [], None


class AccessLogFileReader(StreamReader):
    """Background thread: `LogFollower.poll()` every `interval` seconds (at once again while a backlog
    is being read)."""

    thread_name = "nginx-access-log"
    source = "the access log file"

    def __init__(self, path: str, stats: AccessLogStats, state_path: str | None = None, interval: float = 1.0):
        super().__init__(path)
        self.stats = stats
        self.interval = interval
        self.follower = LogFollower(path, stats, state_path)
        self.metric_names = (*AccessLogStats.METRIC_NAMES, *FILE_METRIC_NAMES)

    def _open(self) -> None:
        self.follower.start()

    def _read_once(self) -> None:
        if not self.follower.poll():
            self._stop.wait(self.interval)

    def _close(self) -> None:
        self.follower.close()

    def families(self) -> Iterator[Metric]:
        """Raise SourceError while no file is being read (the path missing or unreadable)."""
        if self.follower.problem is not None:
            raise SourceError(self.follower.problem)
        yield from self.follower.families()
