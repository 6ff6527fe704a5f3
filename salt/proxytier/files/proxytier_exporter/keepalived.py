"""keepalived: per VRRP instance state, priorities, transitions and adverts.

Two sources, chosen with --keepalived.source:

* `fifo` (default, no root): keepalived writes ordered lines such as `INSTANCE "VI_1" MASTER 130` to
  `vrrp_notify_fifo`. A reader thread applies them as they come; labels `vrid`/`interface` and the base
  priority come from keepalived.conf. Events are tied to the keepalived process that was running when they
  were read (pid + start time), so a restarted keepalived never inherits its predecessor's states, and the
  state is saved to a file so that an exporter restart does not forget it. Advert counters are not in the
  FIFO and are only exported by the `json` source.
* `json` (root, or CAP_KILL + read access to the dump): on each scrape the exporter sends keepalived its
  JSON signal and reads `$TMPDIR/keepalived.json`. keepalived 2.2.7 writes that file in place (not
  atomically) and leaves it behind when it stops, so only a file modified after the signal and parsing as a
  whole JSON document is accepted.

Either way a keepalived that is not running (pid file missing or stale) fails the collector: a stopped
daemon's last states are never published.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import select
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from proxytier_exporter.core import SourceError, describe_names, state_set
from proxytier_exporter.keepalived_conf import InstanceConfig, KeepalivedConfig
from proxytier_exporter.streams import StreamReader

log = logging.getLogger("proxytier_exporter")

STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOP", "UNKNOWN")
JSON_STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT", 98: "STOP"}
JSON_DELETED = 97
ADVERT_ERRORS = (
    "packet_len_err", "advert_interval_err", "ip_ttl_err", "invalid_type_rcvd", "addr_list_err",
    "invalid_authtype", "authtype_mismatch", "auth_failure",
)
DEFAULT_JSON_SIGNAL = 36  # `keepalived --signum=JSON` on Debian 12's 2.2.7
_FIFO_LINE = re.compile(r'^INSTANCE "(?P<name>[^"]+)" (?P<event>[A-Z_]+) (?P<priority>-?\d{1,9})$')
# The notify FIFO's other line forms (sync groups, checkers, BFD): well-formed, not about instances.
_OTHER_FIFO_LINE = re.compile(r'^(GROUP|VS|RS|BFD) "[^"]*" [A-Z_]+( .*)?$')
_NAMED_INSTANCE = re.compile(r'^INSTANCE "(?P<name>[^"]+)"')
_LABELS = ["vrrp_instance", "vrid", "interface"]
# Event words of INSTANCE lines (keepalived 2.2.7 vrrp_notify_fifo): states, priority changes
# (vrrp_notify_priority_changes), a lower-priority advert seen as MASTER, DELETED (notify_deleted).
FIFO_EVENTS = frozenset({*STATES, "MASTER_PRIORITY", "BACKUP_PRIORITY", "MASTER_RX_LOWER_PRI", "DELETED"})


@dataclass(frozen=True)
class FifoEvent:
    instance: str
    event: str
    priority: int


class MalformedFifoLine(ValueError):
    """A notify FIFO line that is none of keepalived's forms; `instance` is the name it carries, if any."""

    def __init__(self, message: str, instance: str | None):
        super().__init__(message)
        self.instance = instance


def parse_fifo_line(line: str) -> FifoEvent | None:
    """An instance event, or None for anything else (GROUP lines, blank or garbled lines)."""
    match = _FIFO_LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    return FifoEvent(match["name"], match["event"], int(match["priority"]))


def check_fifo_line(line: str) -> FifoEvent | None:
    """One whole notify FIFO line (without its newline) as keepalived 2.2.7 writes it.

    `INSTANCE "NAME" EVENT PRIORITY` (vrrp_notify_fifo; EVENT is a state word, MASTER_PRIORITY /
    BACKUP_PRIORITY with vrrp_notify_priority_changes, DELETED with notify_deleted) gives a FifoEvent;
    keepalived's other forms (`GROUP "NAME" STATE`, `VS`/`RS`/`BFD` lines) give None. Anything else
    raises MalformedFifoLine: something other than keepalived writes to the FIFO, or a line was cut.
    """
    event = parse_fifo_line(line)
    if event is not None or _OTHER_FIFO_LINE.match(line):
        return event
    named = _NAMED_INSTANCE.match(line)
    raise MalformedFifoLine(f"not a keepalived notify line: {line[:120]!r}", named["name"] if named else None)


@dataclass
class InstanceView:
    """One VRRP instance as exported; None means "this source does not know"."""

    name: str
    vrid: str = ""
    interface: str = ""
    state: str = "UNKNOWN"
    base_priority: float | None = None
    effective_priority: float | None = None
    last_transition: float | None = None
    become_master: float | None = None
    release_master: float | None = None
    adverts_received: float | None = None
    adverts_sent: float | None = None
    advert_errors: dict[str, float] = field(default_factory=dict)
    vips: list[str] = field(default_factory=list)


def _vip_address(text: str) -> str | None:
    """'198.18.0.101/24 dev host0 ...' (keepalived.conf) or '198.18.0.101 dev ka0 ...' (JSON) -> the address."""
    words = text.split()
    try:
        return str(ipaddress.ip_interface(words[0]).ip) if words else None
    except ValueError:
        return None


# --- the FIFO source ---------------------------------------------------------------------------------

@dataclass
class FifoInstance:
    state: str = "UNKNOWN"
    effective_priority: int | None = None
    last_transition: float | None = None
    become_master: int = 0
    release_master: int = 0


class FifoState:
    """Instance states built from FIFO events, for one keepalived process (its identity)."""

    def __init__(self, save_path: str | None = None, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._identity: str | None = None
        self._instances: dict[str, FifoInstance] = {}
        self._save_path = save_path
        self._clock = clock
        self._error: str | None = None

    def apply(self, event: FifoEvent, identity: str | None) -> None:
        with self._lock:
            if identity != self._identity:
                self._identity, self._instances = identity, {}
            instance = self._instances.setdefault(event.instance, FifoInstance())
            if event.event in STATES:
                if event.event != instance.state:
                    if event.event == "MASTER":
                        instance.become_master += 1
                    elif instance.state == "MASTER":
                        instance.release_master += 1
                    instance.last_transition = self._clock()
                instance.state = event.event
                instance.effective_priority = event.priority
            elif event.event in ("MASTER_PRIORITY", "BACKUP_PRIORITY"):
                instance.effective_priority = event.priority
            elif event.event == "DELETED":  # notify_deleted: the instance left the configuration
                del self._instances[event.instance]
            if self._save_path:
                self._save()

    def forget(self, names: set[str]) -> None:
        """Drop the states of these instances (no longer in keepalived.conf, or deleted)."""
        with self._lock:
            gone = names & self._instances.keys()
            for name in gone:
                del self._instances[name]
            if gone and self._save_path:
                self._save()

    def retain(self, names: set[str]) -> None:
        """Keep only the states of these instances (those of the keepalived.conf read now)."""
        with self._lock:
            gone = self._instances.keys() - names
        if gone:
            self.forget(gone)

    def lost_event(self, instance: str | None, reason: str) -> None:
        """An event could not be read: the state of `instance` (of every instance when None) is
        UNKNOWN until its next event, and the next scrape fails with `reason`."""
        with self._lock:
            for name, known in self._instances.items():
                if instance is None or name == instance:
                    known.state = "UNKNOWN"
            self._error = reason
            if self._save_path:
                self._save()

    def take_error(self) -> str | None:
        """The reason of the last lost event since the previous call, if any (then cleared)."""
        with self._lock:
            error, self._error = self._error, None
            return error

    def snapshot(self, identity: str) -> dict[str, FifoInstance]:
        """States recorded for this keepalived process; empty if they belong to another one."""
        with self._lock:
            if identity != self._identity:
                return {}
            return {name: FifoInstance(**asdict(value)) for name, value in self._instances.items()}

    def _save(self) -> None:
        assert self._save_path is not None
        document = {"identity": self._identity,
                    "instances": {name: asdict(value) for name, value in self._instances.items()}}
        temporary = f"{self._save_path}.tmp"
        try:
            Path(temporary).write_text(json.dumps(document))
            os.replace(temporary, self._save_path)
        except OSError as error:
            log.warning("cannot save keepalived states to %s: %s", self._save_path, error)

    def load(self) -> None:
        """Restore what a previous exporter process saved (used only if keepalived is the same process)."""
        if not self._save_path:
            return
        try:
            document = json.loads(Path(self._save_path).read_text())
            instances = {str(name): FifoInstance(**value) for name, value in document["instances"].items()}
            identity = document["identity"]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return
        with self._lock:
            self._identity = identity if isinstance(identity, str) else None
            self._instances = instances


def process_identity(pid_file: str) -> str | None:
    """`pid:start time` of the process named in the pid file, or None if it is not running."""
    try:
        pid = int(Path(pid_file).read_text().split()[0])
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    fields = stat_line.rsplit(")", 1)[-1].split()
    return f"{pid}:{fields[19]}" if len(fields) > 19 else None


class FifoReader(StreamReader):
    """Background thread applying keepalived's notify FIFO lines to a FifoState.

    The FIFO is created (mode 0600, owned by the exporter) if missing, and opened read-write so the
    reader never sees end-of-file between keepalived runs; while nobody reads, the kernel keeps up to
    64 KiB of events in the pipe.
    """

    thread_name = "keepalived-fifo"
    source = "the notify FIFO"

    MAX_LINE = 65536

    def __init__(self, path: str, state: FifoState, pid_file: str, config: KeepalivedConfig | None = None):
        super().__init__(path)
        self.state = state
        self.pid_file = pid_file
        # Which instances exist now; set by KeepalivedCollector when not given. Events for an instance
        # that is not in it (keepalived reports a deleted instance as FAULT, acassen/keepalived #1526)
        # are ignored and that instance's state is dropped.
        self.config = config
        self._fd: int | None = None
        self._pending = b""

    def _open(self) -> None:
        if not os.path.exists(self.path):
            os.mkfifo(self.path, 0o600)
        if not stat.S_ISFIFO(os.stat(self.path).st_mode):
            raise OSError(f"{self.path} exists and is not a FIFO")
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def _read_once(self) -> None:
        assert self._fd is not None
        ready, _, _ = select.select([self._fd], [], [], 0.5)
        if not ready:
            return
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        """Apply the whole lines of `chunk` (bytes read from the FIFO); a line without its newline yet
        waits for the rest. keepalived writes each line with one write(2) shorter than PIPE_BUF, so
        lines are never interleaved; a malformed line is logged, names the FIFO, and is a lost event
        (`FifoState.lost_event`)."""
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        if len(self._pending) > self.MAX_LINE:
            self._malformed(MalformedFifoLine(f"no newline in {self.MAX_LINE} bytes", None))
            self._pending = b""
        if not lines:
            return
        configured = self._configured()
        for line in lines:
            try:
                event = check_fifo_line(line.decode("utf-8", errors="replace"))
            except MalformedFifoLine as error:
                self._malformed(error)
                continue
            if event is None:
                continue
            if event.event not in FIFO_EVENTS:
                log.warning("%s: event %s of instance %s is not one keepalived 2.2.7 writes: ignored",
                            self.path, event.event[:40], event.instance)
                continue
            if configured is not None and event.instance not in configured:
                log.info("%s: %s %s for instance %s, which keepalived.conf no longer has: ignored",
                         self.path, event.event, event.priority, event.instance)
                self.state.forget({event.instance})
                continue
            self.state.apply(event, process_identity(self.pid_file))

    def _configured(self) -> set[str] | None:
        if self.config is None:
            return None
        try:
            return set(self.config.instances())
        except SourceError as error:  # the collector reports it; stale names are dropped at its scrape
            log.debug("FIFO reader: %s", error)
            return None

    def _malformed(self, error: MalformedFifoLine) -> None:
        reason = f"{self.path}: {error}"
        log.warning("%s; state of %s is UNKNOWN until its next event", reason,
                    error.instance or "every instance")
        self.state.lost_event(error.instance, reason)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def fifo_views(config: dict[str, InstanceConfig], states: dict[str, FifoInstance]) -> list[InstanceView]:
    """One view per instance of keepalived.conf (file order), with its FIFO state when one was read.
    States of instances the configuration no longer has are left out: they are ghosts of a reload."""
    views = []
    for name, conf in config.items():
        known = states.get(name)
        view = InstanceView(name, conf.vrid, conf.interface, base_priority=conf.priority,
                            vips=[a for a in map(_vip_address, conf.vips) if a])
        if known is not None:
            view.state = known.state
            view.effective_priority = known.effective_priority
            view.last_transition = known.last_transition
            view.become_master = known.become_master
            view.release_master = known.release_master
        views.append(view)
    return views


# --- the JSON dump source ----------------------------------------------------------------------------

def _num(mapping: dict[str, object], key: str) -> float | None:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


JSON_DATA_NUMBERS = ("vrid", "state", "base_priority", "effective_priority", "last_transition")
JSON_STATS_NUMBERS = ("advert_rcvd", "advert_sent", "become_master", "release_master", *ADVERT_ERRORS)


def parse_json_dump(text: str) -> list[InstanceView]:
    """Instances of a whole `keepalived --signum=JSON` dump (keepalived 2.2.7), deleted ones left out.

    The dump is a JSON list with one `{"data": {...}, "stats": {...}}` object per instance. Raises
    SourceError, saying what is wrong, unless it is complete JSON (a cut dump is not) and every instance
    has: a non-empty string data.iname seen once; a non-empty string data.ifp_ifname; numbers
    data.vrid (1..255), data.state, data.base_priority, data.effective_priority, data.last_transition
    (Unix seconds) and stats.advert_rcvd, advert_sent, become_master, release_master and the advert
    error counters (`ADVERT_ERRORS`); data.vips a list. Only a cut of the trailing newline leaves the
    same document.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise SourceError(f"keepalived JSON dump is not complete JSON: {error}") from error
    if not isinstance(document, list):
        raise SourceError("keepalived JSON dump: expected a list of instances")
    views = []
    seen: set[str] = set()
    for position, item in enumerate(document):
        data = item.get("data") if isinstance(item, dict) else None
        stats = item.get("stats") if isinstance(item, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("iname"), str) or not data["iname"]:
            raise SourceError(f"keepalived JSON dump: instance {position} without data.iname")
        name = data["iname"]
        if name in seen:
            raise SourceError(f"keepalived JSON dump: instance {name} appears twice")
        seen.add(name)
        if not isinstance(stats, dict):
            raise SourceError(f"keepalived JSON dump: instance {name} without stats")
        missing = [f"data.{key}" for key in JSON_DATA_NUMBERS if _num(data, key) is None]
        missing += [f"stats.{key}" for key in JSON_STATS_NUMBERS if _num(stats, key) is None]
        if not isinstance(data.get("ifp_ifname"), str) or not data["ifp_ifname"]:
            missing.append("data.ifp_ifname")
        if not isinstance(data.get("vips"), list):
            missing.append("data.vips")
        if missing:
            raise SourceError(f"keepalived JSON dump: instance {name} lacks {', '.join(missing)}")
        vrid = int(data["vrid"])
        if not 1 <= vrid <= 255:
            raise SourceError(f"keepalived JSON dump: instance {name} has vrid {vrid}")
        code = data["state"]
        if code == JSON_DELETED:
            continue
        views.append(InstanceView(
            name=name,
            vrid=str(vrid),
            interface=data["ifp_ifname"],
            state=JSON_STATES.get(code, "UNKNOWN"),
            base_priority=_num(data, "base_priority"),
            effective_priority=_num(data, "effective_priority"),
            vips=[a for a in map(_vip_address, [v for v in data["vips"] if isinstance(v, str)]) if a],
            last_transition=_num(data, "last_transition"),
            become_master=_num(stats, "become_master"),
            release_master=_num(stats, "release_master"),
            adverts_received=_num(stats, "advert_rcvd"),
            adverts_sent=_num(stats, "advert_sent"),
            advert_errors={key: value for key in ADVERT_ERRORS if (value := _num(stats, key)) is not None},
        ))
    return views


def json_signal() -> int:
    """The signal number keepalived uses for its JSON dump, asked from keepalived itself."""
    try:
        answer = subprocess.run(["keepalived", "--signum=JSON"], capture_output=True, text=True, timeout=5)
        return int(answer.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return DEFAULT_JSON_SIGNAL


def read_fresh_dump(pid: int, dump_path: str, signum: int, timeout: float) -> str:
    """Ask keepalived for a dump and return it once it is complete and newer than the request."""
    requested = time.time()
    try:
        os.kill(pid, signum)
    except OSError as error:
        raise SourceError(f"cannot signal keepalived (pid {pid}): {error.strerror}") from error
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(dump_path).st_mtime >= requested - 0.01:
                text = Path(dump_path).read_text()
                json.loads(text)
                return text
        except FileNotFoundError:
            pass
        except PermissionError as error:
            raise SourceError(f"{dump_path}: permission denied (the json source needs root)") from error
        except (OSError, ValueError, RecursionError):
            pass  # half-written: keepalived writes the file in place
        time.sleep(0.01)
    raise SourceError(f"{dump_path}: no complete dump newer than the signal within {timeout}s")


# --- the collector -----------------------------------------------------------------------------------

def instance_families(views: Sequence[InstanceView]) -> Iterator[Metric]:
    state, add_state = state_set(
        "proxytier_keepalived_vrrp_state",
        "VRRP instance state, one series per state (FIFO event word or JSON data.state); UNKNOWN until "
        "the first event after the exporter started.",
        _LABELS, STATES,
    )
    gauges = {
        "base_priority": "Configured priority (keepalived.conf priority or JSON data.base_priority).",
        "effective_priority": "Priority after tracking adjustments (FIFO event priority or JSON "
                              "data.effective_priority).",
        "last_transition_timestamp_seconds": "Unix time of the last state change (time the FIFO event was "
                                             "read, or JSON data.last_transition).",
    }
    counters = {
        "become_master_total": "Transitions to MASTER (counted FIFO events or JSON stats.become_master).",
        "release_master_total": "Transitions out of MASTER (counted FIFO events or JSON "
                                "stats.release_master).",
        "adverts_received_total": "VRRP adverts received (JSON stats.advert_rcvd).",
        "adverts_sent_total": "VRRP adverts sent (JSON stats.advert_sent).",
    }
    attributes = {
        "base_priority": "base_priority", "effective_priority": "effective_priority",
        "last_transition_timestamp_seconds": "last_transition", "become_master_total": "become_master",
        "release_master_total": "release_master", "adverts_received_total": "adverts_received",
        "adverts_sent_total": "adverts_sent",
    }
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        key: GaugeMetricFamily(f"proxytier_keepalived_vrrp_{key}", doc, labels=_LABELS)
        for key, doc in gauges.items()
    }
    families.update({
        key: CounterMetricFamily(f"proxytier_keepalived_vrrp_{key}", doc, labels=_LABELS)
        for key, doc in counters.items()
    })
    vip_info = GaugeMetricFamily(
        "proxytier_keepalived_vrrp_vip_info",
        "1 for each VIP the instance carries (keepalived.conf virtual_ipaddress or JSON data.vips): joins "
        "proxytier_vip_owned{vip} to its instance.",
        labels=[*_LABELS, "vip"],
    )
    errors = CounterMetricFamily(
        "proxytier_keepalived_vrrp_advert_errors_total",
        "Invalid adverts received, by JSON stats field (packet_len_err, auth_failure, ...).",
        labels=[*_LABELS, "error"],
    )
    for view in views:
        labels = [view.name, view.vrid, view.interface]
        add_state(labels, view.state)
        for vip in dict.fromkeys(view.vips):  # a VIP written twice is one series
            vip_info.add_metric([*labels, vip], 1)
        for key, attribute in attributes.items():
            value = getattr(view, attribute)
            if value is not None:
                families[key].add_metric(labels, value)
        for error, value in view.advert_errors.items():
            errors.add_metric([*labels, error], value)
    yield state
    yield from families.values()
    yield vip_info
    yield errors


class KeepalivedCollector:
    """VRRP instances from the notify FIFO (+ keepalived.conf) or the JSON dump, at scrape time.

    With the FIFO source, keepalived.conf decides which instances exist: it is read again whenever it
    changes, and the FIFO states of instances it no longer has are dropped (a reload that removes an
    instance makes keepalived report it FAULT; it must not linger as FAULT)."""

    name = "keepalived"

    def __init__(
        self,
        pid_file: str,
        config_path: str,
        fifo: FifoReader | None = None,
        json_dump: str | None = None,
        json_timeout: float = 1.0,
    ):
        self.pid_file = pid_file
        self.config_path = config_path
        self.fifo = fifo
        self.json_dump = json_dump
        self.json_timeout = json_timeout
        self.config = KeepalivedConfig(config_path)
        if fifo is not None and fifo.config is None:
            fifo.config = self.config
        self._signum = json_signal() if json_dump else DEFAULT_JSON_SIGNAL

    def collect(self) -> Iterator[Metric]:
        identity = process_identity(self.pid_file)
        if identity is None:
            raise SourceError(f"keepalived is not running (no live process in {self.pid_file})")
        if self.json_dump:
            pid = int(identity.split(":", 1)[0])
            views = parse_json_dump(read_fresh_dump(pid, self.json_dump, self._signum, self.json_timeout))
        elif self.fifo is not None:
            self.fifo.ensure_running()
            config = self.config.instances()
            self.fifo.state.retain(set(config))
            error = self.fifo.state.take_error()
            if error:
                raise SourceError(error)
            views = fifo_views(config, self.fifo.state.snapshot(identity))
        else:
            raise SourceError("no keepalived source configured")
        yield from instance_families(views)

    def describe(self) -> list[Metric]:
        keys = ("state", "base_priority", "effective_priority", "last_transition_timestamp_seconds",
                "become_master_total", "release_master_total", "adverts_received_total",
                "adverts_sent_total", "vip_info", "advert_errors_total")
        return describe_names(*(f"proxytier_keepalived_vrrp_{key}" for key in keys))
