"""The HTTP side under slow and half-open clients: bounded threads and connections, scrapes still answered."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The exporter of this checkout, not whichever copy an editable install in a shared venv points at.
EXPORTER_DIR = str(Path(__file__).resolve().parents[2] / "exporter")
NO_COLLECTORS = ["--haproxy.stats-socket=", "--nginx.stub-status-url=", "--keepalived.source=none",
                 "--keepalived.config=", "--nginx.access-log-socket="]


@dataclass
class Exporter:
    process: subprocess.Popen[str]
    port: int

    def threads(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))

    def sockets(self) -> int:
        count = 0
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{self.process.pid}/fd/{fd}").startswith("socket:")
        return count


def exporter_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": EXPORTER_DIR + (os.pathsep + path if path else "")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def exporter(*flags: str) -> Iterator[Exporter]:
    """The exporter process on a free loopback port, listening when this yields; killed at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{port}", *NO_COLLECTORS,
         *flags], stderr=subprocess.PIPE, text=True, env=exporter_env())
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the exporter did not start listening") from None
                time.sleep(0.05)
        yield Exporter(process, port)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stderr is not None
        process.stderr.close()


def scrape(port: int) -> tuple[int, float]:
    """Status of one GET /metrics and the seconds it took."""
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read()
        assert b"proxytier_build_info" in body
        return response.status, time.monotonic() - start


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_500_half_open_connections_cost_no_thread_and_do_not_delay_a_scrape() -> None:
    max_requests, max_connections = 8, 128
    with exporter(f"--web.max-requests={max_requests}", f"--web.max-connections={max_connections}",
                  "--web.read-timeout=30") as node:
        assert scrape(node.port)[0] == 200
        idle_threads, idle_sockets = node.threads(), node.sockets()
        assert idle_threads <= max_requests + 2  # main thread + workers (+ nothing per connection)
        clients: list[socket.socket] = []
        try:
            for n in range(500):
                client = socket.create_connection(("127.0.0.1", node.port), timeout=2)
                clients.append(client)
                if n % 2:  # half send the start of a request line, half send nothing
                    client.sendall(b"GET /metrics HTT")
            status, seconds = scrape(node.port)
            assert status == 200
            assert seconds < 1.0, f"a scrape took {seconds:.3f} s behind 500 half-open connections"
            assert node.threads() <= max_requests + 2
            assert node.sockets() <= idle_sockets + max_connections
        finally:
            for client in clients:
                client.close()
        # The exporter closes its side once the clients are gone (or were already evicted).
        assert wait_until(lambda: node.sockets() <= idle_sockets, 5), (node.sockets(), idle_sockets)
        assert node.threads() == idle_threads
        assert scrape(node.port)[0] == 200


def test_a_client_that_sends_nothing_is_disconnected_after_the_read_timeout() -> None:
    with exporter("--web.read-timeout=1") as node:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as silent, \
                socket.create_connection(("127.0.0.1", node.port), timeout=5) as partial:
            partial.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            assert silent.recv(1) == b""
            assert partial.recv(1) == b""
            assert 0.8 < time.monotonic() - start < 3


def test_a_request_head_over_16_kib_is_refused() -> None:
    with exporter() as node, socket.create_connection(("127.0.0.1", node.port), timeout=5) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n")
        assert client.recv(64).startswith(b"HTTP/1.1 431 ")


def test_malformed_requests_and_methods() -> None:
    with exporter() as node:
        for request, expected in [(b"GARBAGE\r\n\r\n", b"400"), (b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
                                  (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
                                  (b"HEAD /metrics HTTP/1.0\r\n\r\n", b"200")]:
            with socket.create_connection(("127.0.0.1", node.port), timeout=5) as client:
                client.sendall(request)
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk
                assert answer.split(b" ", 2)[1] == expected, (request, answer[:80])
                if expected == b"200":  # HEAD: headers only
                    assert answer.endswith(b"\r\n\r\n") and b"Content-Length: " in answer


@pytest.mark.parametrize("flag", ["--web.max-requests=0", "--web.read-timeout=-1", "--web.max-connections=x"])
def test_bad_limits_are_refused(flag: str) -> None:
    answer = subprocess.run([sys.executable, "-m", "proxytier_exporter", flag], capture_output=True, text=True,
                            timeout=10, env=exporter_env())
    assert answer.returncode == 2
    assert flag.split("=")[0] in answer.stderr
