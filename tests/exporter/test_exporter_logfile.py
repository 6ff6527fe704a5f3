"""nginx's access log read from a file in batches (log_format proxytier_tsv): the same metrics as the
datagram path for the same requests, and no line lost or counted twice across rotation, truncation,
exporter restarts and nginx reloads (with the host's real nginx on 127.0.0.1)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from proxytier_exporter.accesslog import (
    TSV_FIELDS,
    AccessLogCollector,
    AccessLogStats,
    MalformedLine,
    parse_datagram,
    parse_tsv_line,
)
from proxytier_exporter.core import SourceError
from proxytier_exporter.logfile import AccessLogFileReader, LogFollower

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ESCAPED_SITE = 'tab\there "quote" back\\slash \x01 caf\xe9'  # the header capture_nginx_tsv.py sent


def samples(families: Iterator[Metric] | list[Metric]) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def assert_same(left: Samples, right: Samples) -> None:
    """Equal series and values; `_sum`s to the last bits only (the datagram path adds floats one request
    at a time, the file path adds each group's exact decimal)."""
    assert left.keys() == right.keys()
    for key, value in left.items():
        if key[0].endswith("_sum"):
            assert value == pytest.approx(right[key], rel=1e-12, abs=1e-12), key
        else:
            assert value == right[key], key


def datagram_stats(lines: list[bytes]) -> AccessLogStats:
    stats = AccessLogStats()
    for line in lines:
        stats.observe_datagram(line)
    return stats


def tsv_line(datagram: bytes) -> bytes:
    """The proxytier_tsv line nginx writes for a request whose proxytier_json datagram is `datagram`
    (its values hold nothing nginx would escape)."""
    fields = json.loads(datagram[datagram.index(b"{"):])
    values = [fields.get(name, "") for name in TSV_FIELDS]
    assert not any(set(v) & set('\t\n"\\') for v in values), values
    return "\t".join(values).encode() + b"\n"


@pytest.fixture
def captured(fixtures: Path) -> tuple[list[bytes], bytes]:
    """The same requests as nginx logged them in both formats (capture_nginx_tsv.py)."""
    datagrams = [d for d in (fixtures / "nginx_access_tsv_syslog.txt").read_bytes().split(b"\n") if d]
    return datagrams, (fixtures / "nginx_access_tsv.log").read_bytes()


# --- the format and its parser -----------------------------------------------------------------------------


def test_each_captured_line_reads_as_its_datagram(captured) -> None:
    datagrams, log = captured
    from_file = Counter(parse_tsv_line(line) for line in log.splitlines(keepends=True))
    from_datagrams = Counter(parse_datagram(d) for d in datagrams)
    assert from_file == from_datagrams  # two workers: the file's order is not the socket's
    sites = {entry.site for entry in from_file}
    assert ESCAPED_SITE in sites  # tab, quote, backslash, \x01, UTF-8 unescaped
    assert {"www", "shop", ""} <= sites


def test_nginx_writes_no_tab_or_newline_inside_a_value(captured) -> None:
    _, log = captured
    escaped = next(line for line in log.splitlines() if line.endswith(b"caf\xc3\xa9"))
    assert escaped.split(b"\t")[-1] == b'tab\\there \\"quote\\" back\\\\slash \\u0001 caf\xc3\xa9'
    assert all(line.count(b"\t") == len(TSV_FIELDS) - 1 for line in log.splitlines())


@pytest.mark.parametrize("line", [
    b"200\t0.001\tapp\t200\n",  # too few fields
    b"t\ta\tr\t200\t0.001\tapp\t200\tsite\textra\n",  # too many
    b"t\ta\tr\t200\t0.001\tap\xff\t200\tsite\n",  # not UTF-8
    b"t\ta\tr\t200\t0.001\tapp\t200\tbad \\x escape\n",
    b"",
])
def test_a_line_that_is_not_proxytier_tsv_is_malformed(line: bytes) -> None:
    with pytest.raises(MalformedLine):
        parse_tsv_line(line)
    stats = AccessLogStats(source="file")
    stats.observe_lines(line if line.endswith(b"\n") else line + b"\n")
    got = samples(stats.families())
    assert got[("proxytier_nginx_access_log_malformed_total", ())] == 1
    assert got[("proxytier_nginx_access_log_lines_total", ())] == 1


def test_the_file_path_publishes_what_the_datagram_path_publishes(captured) -> None:
    """The same requests (both logs of one nginx), whole or a line at a time."""
    datagrams, log = captured
    expected = samples(datagram_stats(datagrams).families())
    whole = AccessLogStats(source="file")
    whole.observe_lines(log)
    assert_same(samples(whole.families()), expected)
    one_by_one = AccessLogStats(source="file")
    for line in log.splitlines(keepends=True):
        one_by_one.observe_lines(line)
    assert_same(samples(one_by_one.families()), expected)


def test_the_golden_requests_as_tsv_lines_give_the_golden_samples(fixtures: Path, golden_samples: Samples) -> None:
    """tests/exporter/golden/nginx_access_log.prom's 122 requests, written as proxytier_tsv lines. Those
    datagrams predate the `site` field, which every proxytier_tsv line has: the site series are extra."""
    datagrams = [d for d in (fixtures / "nginx_access_syslog.txt").read_bytes().split(b"\n") if d]
    stats = AccessLogStats(source="file")
    stats.observe_lines(b"".join(tsv_line(d) for d in datagrams))
    got = samples(stats.families())
    assert not [key for key in golden_samples if key[0].startswith("proxytier_nginx_site_")]
    assert_same({k: v for k, v in got.items() if not k[0].startswith("proxytier_nginx_site_")}, golden_samples)
    site_requests = {k: v for k, v in got.items() if k[0] == "proxytier_nginx_site_requests_total"}
    assert sum(site_requests.values()) == len(datagrams)  # an empty site field: __unclaimed__
    assert {dict(k[1])["site"] for k in site_requests} == {"__unclaimed__"}


@pytest.fixture
def golden_samples() -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    text = (Path(__file__).parent / "golden" / "nginx_access_log.prom").read_text()
    return samples(list(text_string_to_metric_families(text)))


def test_help_names_the_source() -> None:
    file_help = {f.name: f.documentation for f in AccessLogStats(source="file").families()}
    assert "log file" in file_help["proxytier_nginx_access_log_lines"]
    with pytest.raises(ValueError, match="source 'journal'"):
        AccessLogStats(source="journal")


# --- following a file (no nginx: the test writes it) -----------------------------------------------------


def lines_total(follower: LogFollower) -> float:
    return samples(follower.families())[("proxytier_nginx_access_log_lines_total", ())]


def counter(follower: LogFollower, name: str) -> float:
    return samples(follower.families())[(f"proxytier_nginx_access_log_{name}", ())]


@pytest.fixture
def lines(captured) -> list[bytes]:
    return captured[1].splitlines(keepends=True)


def test_a_line_cut_by_a_read_is_counted_once_whole(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = LogFollower(str(log), AccessLogStats(source="file"))
    follower.start()
    data = b"".join(lines)
    with log.open("ab", buffering=0) as f:
        for cut in range(0, len(data), 37):  # every read ends inside a line
            f.write(data[cut:cut + 37])
            follower.poll()
    assert lines_total(follower) == len(lines)
    assert counter(follower, "malformed_total") == 0
    assert counter(follower, "read_bytes_total") == len(data)


def test_first_start_without_state_begins_at_the_end(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(lines[:10]) + lines[10][:5])  # a line being written
    follower = LogFollower(str(log), AccessLogStats(source="file"), str(tmp_path / "state.json"))
    follower.start()
    with log.open("ab") as f:
        f.write(lines[10][5:] + b"".join(lines[11:20]))
    follower.poll()
    assert lines_total(follower) == 10  # from the line after the last whole one, none cut in two


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    now = [0.0]
    follower = LogFollower(str(log), AccessLogStats(source="file"), clock=lambda: now[0], drain_grace=5)
    follower.start()
    log.write_bytes(b"".join(lines[:10]))
    follower.poll()
    log.rename(tmp_path / "access.log.1")
    with (tmp_path / "access.log.1").open("ab") as old:
        old.write(b"".join(lines[10:20]))  # a worker that has not reopened yet
    log.write_bytes(b"".join(lines[20:25]))
    follower.poll()
    assert lines_total(follower) == 25 and counter(follower, "rotations_total") == 1
    now[0] = 3.0
    with (tmp_path / "access.log.1").open("ab") as old:
        old.write(lines[25])  # flushed late (the flush=1s window)
    follower.poll()
    now[0] = 10.0
    follower.poll()  # idle for the grace: closed
    with (tmp_path / "access.log.1").open("ab") as old:
        old.write(lines[26])  # never read: the file is closed
    follower.poll()
    assert lines_total(follower) == 26
    assert len(follower._positions()) == 1


def test_truncation_is_read_from_the_start_without_counting_twice(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = LogFollower(str(log), AccessLogStats(source="file"))
    follower.start()
    log.write_bytes(b"".join(lines[:20]))
    follower.poll()
    with log.open("r+b") as f:  # copytruncate: same inode, size 0, then nginx appends
        f.truncate(0)
    with log.open("ab") as f:
        f.write(b"".join(lines[20:25]))
    follower.poll()
    assert lines_total(follower) == 25
    assert counter(follower, "truncations_total") == 1


def test_a_restart_resumes_in_the_rotated_file_and_the_new_one(tmp_path: Path, lines: list[bytes]) -> None:
    log, state = tmp_path / "access.log", str(tmp_path / "state.json")
    log.write_bytes(b"")
    first = LogFollower(str(log), AccessLogStats(source="file"), state)
    first.start()
    log.write_bytes(b"".join(lines[:10]))
    first.poll()
    published = lines_total(first)  # the scrape saves the position
    with log.open("ab") as f:
        f.write(b"".join(lines[10:15]))
    first.poll()  # read but never published: the restart reads these again
    first.close()
    log.rename(tmp_path / "access.log.1")
    with (tmp_path / "access.log.1").open("ab") as f:
        f.write(b"".join(lines[15:20]))
    log.write_bytes(b"".join(lines[20:30]))
    second = LogFollower(str(log), AccessLogStats(source="file"), state)
    second.start()
    second.poll()
    assert published + lines_total(second) == 30
    assert json.loads(Path(state).read_text())["files"][-1]["offset"] == len(b"".join(lines[20:30]))


def test_a_saved_file_that_is_gone_is_counted_lost(tmp_path: Path, lines: list[bytes]) -> None:
    log, state = tmp_path / "access.log", str(tmp_path / "state.json")
    log.write_bytes(b"".join(lines[:5]))
    first = LogFollower(str(log), AccessLogStats(source="file"), state)
    first.start()
    first.close()
    log.unlink()  # rotated twice and compressed while the exporter was down
    log.write_bytes(b"".join(lines[5:8]))
    second = LogFollower(str(log), AccessLogStats(source="file"), state)
    second.start()
    second.poll()
    assert counter(second, "files_lost_total") == 1
    assert lines_total(second) == 3


def test_a_saved_position_in_another_file_with_the_same_inode_is_not_trusted(tmp_path: Path, lines) -> None:
    log, state = tmp_path / "access.log", str(tmp_path / "state.json")
    log.write_bytes(b"".join(lines[:5]))
    first = LogFollower(str(log), AccessLogStats(source="file"), state)
    first.start()
    first.close()
    with log.open("r+b") as f:  # rewritten in place: same inode, other bytes before the saved offset
        f.write(b"".join(lines[30:36]))
    second = LogFollower(str(log), AccessLogStats(source="file"), state)
    second.start()
    second.poll()
    assert lines_total(second) == 6


def test_an_unwritable_state_file_stops_the_reader_with_the_reason(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    reader = AccessLogFileReader(str(log), AccessLogStats(source="file"), str(tmp_path / "no-dir" / "state.json"))
    reader.start()
    with pytest.raises(SourceError, match=r"cannot save the position to .*/no-dir/state\.json"):
        list(AccessLogCollector(reader).collect())


def test_a_missing_file_fails_the_collector_until_nginx_writes_it(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "access.log"
    reader = AccessLogFileReader(str(log), AccessLogStats(source="file"), str(tmp_path / "state.json"), 0.05)
    reader.start()
    try:
        with pytest.raises(SourceError, match="no such file"):
            list(AccessLogCollector(reader).collect())
        log.write_bytes(b"".join(lines[:4]))  # made after the start: all of it is new
        assert wait_until(lambda: lines_total(reader.follower) == 4)
        assert reader.follower.problem is None
    finally:
        reader.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- with the real nginx ---------------------------------------------------------------------------------

NGINX_CONF = """
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  map "$server_port $server_name" $proxytier_site {{ default ""; "{port} _" app; }}
  log_format proxytier_tsv escape=json
    '$time_iso8601\\t$upstream_addr\\t$upstream_response_time\\t'
    '$status\\t$request_time\\t$proxy_host\\t$upstream_status\\t$proxytier_site';
  access_log {tmp}/log/nginx-access.log proxytier_tsv buffer=64k flush=1s;
  upstream app {{ server 127.0.0.1:{app}; keepalive 4; }}
  server {{ listen 127.0.0.1:{port}; server_name _; location / {{ proxy_pass http://app;
    proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
  server {{ listen 127.0.0.1:{app}; access_log off; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Nginx:
    """The host's nginx on two 127.0.0.1 ports, logging proxytier_tsv to `log`, run and stopped by PID."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port, self.app = free_port(), free_port()
        (tmp / "log").mkdir(mode=0o755)
        self.log = tmp / "log" / "nginx-access.log"
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=self.port, app=self.app))
        self.process = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
        if not wait_until(self._answers):
            self.stop()
            raise AssertionError(f"nginx did not answer: {(tmp / 'error.log').read_text()}")

    def _answers(self) -> bool:
        try:
            # the application's port: no access log, so no line before the test's requests
            with urllib.request.urlopen(f"http://127.0.0.1:{self.app}/ready", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    if shutil.which("nginx") is None or os.geteuid() != 0:
        pytest.skip("needs the nginx package and root (nginx's workers run as nobody)")
    # not pytest's tmp_path: its parents are 0700, and workers (nobody) reopen the log themselves on USR1
    tmp = Path(tempfile.mkdtemp(prefix="proxytier-logfile-"))
    tmp.chmod(0o755)
    server = Nginx(tmp)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def send(port: int, count: int, during: Callable[[], None], at: int) -> None:
    """`count` GETs on a keep-alive connection, a few thousand a second; `during()` starts in a thread
    after the `at`-th, and requests go on meanwhile."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    action = threading.Thread(target=during)
    try:
        for i in range(count):
            if i == at:
                action.start()
            try:
                conn.request("GET", f"/r{i}")
                answer = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a reload's old worker closed this idle keep-alive connection before reading the
                # request: nginx never saw it (so logged nothing); send it again on a new connection
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", f"/r{i}")
                answer = conn.getresponse()
            answer.read()
            assert answer.status == 200, answer.status
            if answer.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if i % 50 == 0:
                time.sleep(0.02)
    finally:
        conn.close()
        if action.is_alive():
            action.join()


def upstream_requests(families: Iterator[Metric] | list[Metric]) -> float:
    got = samples(families)
    return got.get(("proxytier_nginx_upstream_requests_total", (("status_class", "2xx"), ("upstream", "app"))), 0.0)


COUNT = 3000


def test_nginx_log_rotation_loses_and_doubles_nothing(nginx: Nginx) -> None:
    reader = AccessLogFileReader(str(nginx.log), AccessLogStats(source="file"), str(nginx.tmp / "state.json"), 0.1)
    reader.start()

    def rotate() -> None:  # Debian's logrotate: rename, create, then `invoke-rc.d nginx rotate` (USR1)
        nginx.log.rename(nginx.log.with_name("nginx-access.log.1"))
        nginx.log.touch()
        time.sleep(0.3)  # lines keep going to the old file until the reopen
        nginx.signal(signal.SIGUSR1)

    try:
        send(nginx.port, COUNT, rotate, COUNT // 2)
        assert wait_until(lambda: upstream_requests(reader.families()) >= COUNT)
        time.sleep(1.5)  # one more flush interval: nothing more may come
        got = samples(reader.families())
        assert upstream_requests(reader.families()) == COUNT
        assert got[("proxytier_nginx_access_log_malformed_total", ())] == 0
        assert got[("proxytier_nginx_access_log_rotations_total", ())] == 1
        old = nginx.log.with_name("nginx-access.log.1").read_bytes().count(b"\n")
        assert 0 < old < COUNT + 1, "the rotation did not split the requests between the two files"
    finally:
        reader.stop()


def test_nginx_reload_loses_and_doubles_nothing(nginx: Nginx) -> None:
    reader = AccessLogFileReader(str(nginx.log), AccessLogStats(source="file"), str(nginx.tmp / "state.json"), 0.1)
    reader.start()
    try:
        send(nginx.port, COUNT, lambda: nginx.signal(signal.SIGHUP), COUNT // 2)
        assert wait_until(lambda: upstream_requests(reader.families()) >= COUNT)
        time.sleep(1.5)
        assert upstream_requests(reader.families()) == COUNT
    finally:
        reader.stop()


class Exporter:
    """The exporter process reading only the access log, scraped over HTTP."""

    def __init__(self, log: Path, state: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{self.port}",
             "--haproxy.stats-socket=", "--nginx.stub-status-url=", "--keepalived.source=none",
             "--keepalived.config=", f"--nginx.access-log-file={log}", f"--nginx.access-log-state-file={state}",
             "--nginx.access-log-interval=0.1"])
        assert wait_until(lambda: self.scrape() is not None)

    def scrape(self) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
                return upstream_requests(list(text_string_to_metric_families(answer.read().decode())))
        except OSError:
            return None

    def stop(self, signum: int) -> None:
        self.process.send_signal(signum)
        self.process.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_exporter_restart_loses_and_doubles_nothing(nginx: Nginx, signum: int) -> None:
    """What Prometheus sums: the last scrape of the first process plus the scrapes of the second."""
    state = nginx.tmp / "state.json"
    exporters = [Exporter(nginx.log, state)]
    last: list[float] = [0.0]
    scraping = threading.Event()
    scraping.set()

    def scrape_loop() -> None:
        while scraping.is_set():
            value = exporters[-1].scrape()
            if value is not None:
                last[-1] = value
            time.sleep(0.05)

    def restart() -> None:
        scraping.clear()
        scraper.join()
        time.sleep(0.3)  # lines read after the last scrape: the next process reads them again
        exporters[-1].stop(signum)
        last.append(0.0)
        exporters.append(Exporter(nginx.log, state))
        scraping.set()
        threading.Thread(target=scrape_loop, daemon=True).start()

    scraper = threading.Thread(target=scrape_loop, daemon=True)
    scraper.start()
    try:
        send(nginx.port, COUNT, restart, COUNT // 2)
        assert wait_until(lambda: last[0] + (exporters[-1].scrape() or 0) >= COUNT)
        time.sleep(1.5)
        scraping.clear()
        assert last[0] > 0
        assert last[0] + (exporters[-1].scrape() or 0) == COUNT
    finally:
        scraping.clear()
        for exporter in exporters:
            if exporter.process.poll() is None:
                exporter.stop(signal.SIGTERM)
