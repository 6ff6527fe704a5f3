"""One scrape over every collector: failures stay in their collector; the process serves and stops cleanly."""

from __future__ import annotations

import contextlib
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from proxytier_exporter import __version__
from proxytier_exporter.cli import listen_address
from proxytier_exporter.core import ScrapeCollector, SourceError


class Fake:
    def __init__(self, name: str, outcome: str):
        self.name = name
        self.outcome = outcome
        self.collected = 0

    def collect(self) -> Iterator[Metric]:
        self.collected += 1
        yield GaugeMetricFamily(f"fake_{self.name}_partial", "published before the failure", value=1)
        if self.outcome == "source error":
            raise SourceError("socket missing")
        if self.outcome == "bug":
            raise KeyError("a bug")

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(f"fake_{self.name}_partial", "")]


def success(text: str, collector: str) -> str:
    prefix = f'proxytier_collector_success{{collector="{collector}"}} '
    return next(line[len(prefix):] for line in text.splitlines() if line.startswith(prefix))


def test_a_failing_collector_costs_only_its_own_series(render) -> None:
    collectors = [Fake("haproxy", "source error"), Fake("nginx", "ok"), Fake("vip", "bug")]
    text = render(ScrapeCollector(collectors).collect)
    assert (success(text, "haproxy"), success(text, "nginx"), success(text, "vip")) == ("0.0", "1.0", "0.0")
    assert "fake_nginx_partial 1.0" in text
    assert "fake_haproxy_partial" not in text and "fake_vip_partial" not in text
    assert 'proxytier_collector_duration_seconds{collector="haproxy"}' in text
    assert f'proxytier_build_info{{pythonversion="{sys.version.split()[0]}",version="{__version__}"}} 1.0' in text


def test_registering_does_not_scrape() -> None:
    fake = Fake("haproxy", "ok")
    CollectorRegistry().register(ScrapeCollector([fake]))
    assert fake.collected == 0


@pytest.mark.parametrize(("text", "expected"), [
    (":8408", ("", 8408)), ("127.0.0.1:9000", ("127.0.0.1", 9000)), ("[::1]:8408", ("::1", 8408)),
])
def test_listen_addresses(text, expected) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize("text", ["8408", "host:", ":0", ":70000", "host:http"])
def test_bad_listen_addresses_are_refused(text) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        listen_address(text)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture
def stub_status(fixtures: Path) -> Iterator[str]:
    page = (fixtures / "nginx_stub_status.txt").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stub_status"
    server.shutdown()
    server.server_close()


def test_the_exporter_process_serves_metrics_with_haproxy_missing(tmp_path, fixtures, stub_status) -> None:
    port = free_port()
    (tmp_path / "access.log").write_bytes(b"")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{port}",
         "--web.telemetry-path=/probe", f"--haproxy.stats-socket={tmp_path}/missing.sock",
         f"--nginx.stub-status-url={stub_status}", f"--nginx.access-log-file={tmp_path}/access.log",
         f"--nginx.access-log-state-file={tmp_path}/access-log.json", "--keepalived.source=none",
         f"--keepalived.config={fixtures}/keepalived.conf"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                status, text = get(f"http://127.0.0.1:{port}/probe")
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the exporter did not start listening")
        assert status == 200
        assert (success(text, "haproxy"), success(text, "nginx")) == ("0.0", "1.0")
        assert (success(text, "nginx_access_log"), success(text, "vip")) == ("1.0", "1.0")
        assert "nginx_connections_active 5.0" in text
        assert 'proxytier_vip_owned{vip="198.18.0.101"} 0.0' in text
        assert "process_resident_memory_bytes" in text
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 404
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert "missing.sock: socket does not exist" in process.stderr.read()


def test_version_flag() -> None:
    answer = subprocess.run([sys.executable, "-m", "proxytier_exporter", "--version"],
                            capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == f"proxytier-exporter {__version__}"


def test_the_access_log_socket_can_come_from_systemd(tmp_path) -> None:
    """With a .socket unit (FileDescriptorName=nginx-access) the exporter reads the socket it is given."""
    path = str(tmp_path / "given.sock")
    given = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    given.bind(path)
    port = free_port()
    exporter = [sys.executable, "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{port}",
                "--haproxy.stats-socket=", "--nginx.stub-status-url=", "--keepalived.source=none",
                "--keepalived.config=", f"--nginx.access-log-socket={tmp_path}/unused.sock",
                "--nginx.access-log-file="]
    as_systemd_does = (  # fd 3, LISTEN_PID = the exporter's own pid (exec keeps it)
        f"import os, sys; os.dup2({given.fileno()}, 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='nginx-access'); "
        f"os.execv(sys.executable, {exporter!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", as_systemd_does], pass_fds=(given.fileno(),))
    line = (b'<190>Nov 24 04:08:42 nginx: {"time":"2026-11-24T04:08:42+00:00","status":"200",'
            b'"request_time":"0.001","upstream":"app","upstream_addr":"127.0.0.1:28481",'
            b'"upstream_status":"200","upstream_response_time":"0.000"}')
    try:
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline and "upstream=\"app\"" not in text:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nginx:
                nginx.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    nginx.sendto(line, path)
            try:
                text = get(f"http://127.0.0.1:{port}/metrics")[1]
            except OSError:
                time.sleep(0.05)
        assert 'proxytier_nginx_upstream_requests_total{status_class="2xx",upstream="app"}' in text
        assert not (tmp_path / "unused.sock").exists()
    finally:
        process.terminate()
        process.wait(timeout=5)
        given.close()
