"""A reload must not fail a keep-alive client: the real HAProxy of this distribution, soft-stopped by a new
process (`-sf`, what a reload does), with an idle client connection open. By default the old process closes
idle connections at once, so the client's next request on it fails; with `option idle-close-on-response`
(the formula's defaults section) the old process answers that request and only then closes."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from formula import build_model, example_pillar, os_params, render

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (make test installs it)")


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def config(port: int, backend_port: int, idle_close: bool) -> str:
    return f"""
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 5s
    timeout http-keep-alive 10s
{"    option idle-close-on-response" if idle_close else ""}
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server s1 127.0.0.1:{backend_port}
"""


def start(cfg: Path, pidfile: Path, old: int | None = None) -> int:
    extra = ["-sf", str(old)] if old else []
    res = subprocess.run(["haproxy", "-D", "-p", str(pidfile), "-f", str(cfg), *extra], capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 0, res.stderr
    return int(pidfile.read_text().split()[0])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("idle_close", [False, True])
def test_a_reload_answers_the_idle_connections_next_request_only_with_the_option(tmp_path, backend,
                                                                                  idle_close) -> None:
    port = free_port()
    cfg = tmp_path / "h.cfg"
    cfg.write_text(config(port, backend, idle_close))
    pids = [start(cfg, tmp_path / "old.pid")]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        first = conn.getresponse()
        assert first.status == 200 and first.read() == b"ok\n" and not first.will_close
        pids.append(start(cfg, tmp_path / "new.pid", old=pids[0]))  # the reload: the old process soft-stops
        time.sleep(0.5)
        try:
            conn.request("GET", "/")
            second = conn.getresponse()
            answered = (second.status, second.read(), second.will_close)
        except (ConnectionError, http.client.HTTPException) as e:
            answered = (type(e).__name__,)
        conn.close()
        if idle_close:
            assert answered == (200, b"ok\n", True), answered  # answered by the old process, then closed
        else:
            assert answered[0] in ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError"), answered
        # a new connection reaches the new process either way
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        fresh.request("GET", "/")
        assert fresh.getresponse().status == 200
        fresh.close()
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_the_formulas_haproxy_config_has_the_option_in_its_defaults() -> None:
    text = render("haproxy.cfg.jinja", build_model(example_pillar(), "proxy1", params=os_params()))
    defaults = text.split("\ndefaults\n", 1)[1].split("\n\n", 1)[0]
    assert "    option idle-close-on-response" in defaults.splitlines(), defaults
