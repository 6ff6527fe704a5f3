"""Local HTTP servers on 127.0.0.x for the failover bench's tests (loopback only, ephemeral ports)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.failover.probe import Target
from lab.backend_server import make_handler


def odd_handler(status: int, delay: float) -> type[BaseHTTPRequestHandler]:
    """Answers every GET with `status` after `delay` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            body = b"odd\n"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the probe gave up (timeout): expected

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


class LocalServer:
    """A threaded HTTP server (the lab's backend handler unless told otherwise) that can go away and come back
    on the same address and port."""

    def __init__(self, address: str, handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        self.address, self.port = address, 0
        self.handler = handler or make_handler("test-backend")
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        server_class = type("Server", (ThreadingHTTPServer,),
                            {"address_family": socket.AF_INET6 if ":" in self.address else socket.AF_INET})
        server = server_class((self.address, self.port), self.handler)  # SO_REUSEADDR: same port again
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()  # the listening socket is gone: connections are refused
            self.server = None

    @property
    def target(self) -> Target:
        return Target(self.address, self.port, "/probe")


@pytest.fixture
def local_server() -> Iterator[type[LocalServer]]:
    """Factory: local_server("127.0.0.2") -> a running LocalServer; all are stopped at the end."""
    made: list[LocalServer] = []

    def make(address: str, handler: type[BaseHTTPRequestHandler] | None = None) -> LocalServer:
        made.append(LocalServer(address, handler))
        return made[-1]

    yield make  # type: ignore[misc]
    for s in made:
        s.stop()
