"""A lab application backend: answers every request with its identity as JSON (stdlib only).

Run inside the backend's network namespace:
    backend_server.py --name be1 --bind 198.18.0.21 --bind 2001:2::21 --port 8080
(one listener per --bind address, IPv4 or IPv6, all serving the same answers).
The JSON says which backend answered, which address connected to it (= which nginx node),
the client-address headers it got, and the path. GET /healthz -> 200 {"ok": true}.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so nginx upstream keepalive works
        # one buffered write per response (flushed after each request): headers and body in one
        # segment, so Nagle never waits on the client's delayed ACK (40 ms) on a kept-alive connection
        wbufsize = 1 << 16
        server_version = "proxytier-lab-backend"

        def _answer(self, with_body: bool) -> None:
            if self.path == "/healthz":
                doc: dict[str, object] = {"ok": True, "backend": name}
            else:
                doc = {
                    "backend": name,
                    "peer": self.client_address[0],
                    "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                    "x_real_ip": self.headers.get("X-Real-IP"),
                    "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                    "host": self.headers.get("Host"),
                    "method": self.command,
                    "path": self.path,
                }
            body = (json.dumps(doc) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Backend", name)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._answer(True)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", required=True, action="append", help="an address to listen on (repeatable)")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    handler = make_handler(args.name)
    servers = []
    for address in args.bind:
        server_class = type("Server", (ThreadingHTTPServer,),
                            {"address_family": socket.AF_INET6 if ":" in address else socket.AF_INET})
        server = server_class((address, args.port), handler)
        server.daemon_threads = True
        servers.append(server)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers[1:]]
    for thread in threads:
        thread.start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
