"""The HTTP(S) server: bounded in threads, connections and time, whatever clients do.

One thread (the caller of `serve_forever`) accepts connections and reads request heads without blocking,
for every connection at once, with `selectors`; TLS handshakes happen there too. A connection whose head
is not complete `read_timeout` seconds after it was accepted is closed. Only a complete request head is
handed to one of `max_requests` worker threads, which authenticate it, run the WSGI app and write the
answer (within `write_timeout`), then close the connection (`Connection: close`, as wsgiref did).

So a slow or half-open client costs one file descriptor and at most 16 KiB of buffer until its timeout,
and never a thread. At most `max_connections` connections are open: when a new one arrives at the limit,
the oldest connection still sending its head is closed to make room (a scraper sends its whole request
at once, so it is not the one closed); when every open connection holds a complete request, new ones
wait in the kernel's listen backlog.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import queue
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from proxytier_exporter.webconfig import BasicAuth, WebConfigError, WebConfigSource

log = logging.getLogger("proxytier_exporter")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MAX_HEAD = 16384  # bytes of request line + headers
_REASONS = {400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 505: "HTTP Version Not Supported"}


class _Conn:
    __slots__ = ("address", "buffer", "deadline", "handshaken", "sock")

    def __init__(self, sock: socket.socket, address: Any, deadline: float, handshaken: bool):
        self.sock = sock
        self.address = address
        self.deadline = deadline
        self.buffer = bytearray()
        self.handshaken = handshaken


class _Request:
    __slots__ = ("address", "head", "sock")

    def __init__(self, sock: socket.socket, address: Any, head: bytes):
        self.sock = sock
        self.address = address
        self.head = head


class HTTPServer:
    """Serves a WSGI app on (host, port); see the module docstring for the limits.

    `web_config`: TLS and basic auth (None: plain HTTP, no auth). Binding errors raise OSError from the
    constructor; `serve_forever()` runs until `shutdown()` (callable from another thread or a signal
    handler's thread); `server_close()` then frees the socket, connections and threads.
    """

    def __init__(self, app: WSGIApp, host: str, port: int, *, web_config: WebConfigSource | None = None,
                 read_timeout: float = 5.0, write_timeout: float = 10.0, max_requests: int = 8,
                 max_connections: int = 128, backlog: int = 128):
        if max_requests < 1 or max_connections < max_requests or read_timeout <= 0 or write_timeout <= 0:
            raise ValueError("need max_requests >= 1, max_connections >= max_requests and timeouts > 0")
        self.app = app
        self.web_config = web_config
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.max_requests = max_requests
        self.max_connections = max_connections
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host or "0.0.0.0", port))
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._auth = BasicAuth()
        self._pending: collections.OrderedDict[int, _Conn] = collections.OrderedDict()  # by accept time
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._busy = 0  # connections handed to workers, queued or being answered
        self._busy_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._workers = [threading.Thread(target=self._work, name=f"http-worker-{n}", daemon=True)
                         for n in range(max_requests)]
        for worker in self._workers:
            worker.start()

    # -- the event loop (one thread) ---------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept and read request heads until `shutdown()`."""
        selector = self._selector
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        selector.register(self.socket, selectors.EVENT_READ, "listen")
        listening = True
        try:
            while not self._stop.is_set():
                self._expire()
                timeout = 1.0
                if self._pending:
                    first = next(iter(self._pending.values()))
                    timeout = min(timeout, max(0.0, first.deadline - time.monotonic()))
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif key.data == "listen":
                        self._accept()
                    else:
                        self._readable(key.data)
                full = len(self._pending) + self._busy_count() >= self.max_connections
                if full and not self._pending and listening:
                    selector.unregister(self.socket)  # every slot holds a request: let the backlog wait
                    listening = False
                elif not listening and not full:
                    selector.register(self.socket, selectors.EVENT_READ, "listen")
                    listening = True
        finally:
            self._stopped.set()

    def _busy_count(self) -> int:
        with self._busy_lock:
            return self._busy

    def _accept(self) -> None:
        for _ in range(64):  # then let the loop look at the other sockets
            if len(self._pending) + self._busy_count() >= self.max_connections:
                if not self._pending:
                    return
                self._close(next(iter(self._pending.values())), "evicted: connection limit reached")
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE and the like: retry on the next loop
                log.warning("accept failed: %s", error)
                return
            sock.setblocking(False)
            tls = self.web_config is not None and self.web_config.tls
            if tls:
                assert self.web_config is not None
                context = self.web_config.tls_context()
                assert context is not None
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = _Conn(sock, address, time.monotonic() + self.read_timeout, handshaken=not tls)
            self._pending[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._pending:
            conn = next(iter(self._pending.values()))
            if conn.deadline > now:
                return
            self._close(conn, "read timeout")

    def _close(self, conn: _Conn, why: str) -> None:
        log.debug("%s: closing: %s", _peer(conn.address), why)
        self._pending.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _readable(self, conn: _Conn) -> None:
        sock = conn.sock
        if not conn.handshaken:
            assert isinstance(sock, ssl.SSLSocket)
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:
                self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
                return
            except (ssl.SSLError, OSError) as error:
                self._close(conn, f"TLS handshake failed: {error}")
                return
            self._selector.modify(sock, selectors.EVENT_READ, conn)
            conn.handshaken = True
            if not self._client_allowed(sock):
                self._close(conn, "client certificate has none of client_allowed_sans")
                return
        while True:
            try:
                data = sock.recv(8192)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (ssl.SSLError, OSError) as error:
                self._close(conn, f"read failed: {error}")
                return
            if not data:
                self._close(conn, "closed by the client")
                return
            conn.buffer += data
            if len(conn.buffer) > MAX_HEAD or b"\r\n\r\n" in conn.buffer or b"\n\n" in conn.buffer:
                break
        end = _head_end(conn.buffer)
        if end > MAX_HEAD:
            end = -1
        if end < 0 and len(conn.buffer) <= MAX_HEAD:
            return
        self._pending.pop(sock.fileno(), None)
        self._selector.unregister(sock)
        with self._busy_lock:
            self._busy += 1
        self._requests.put(_Request(sock, conn.address, bytes(conn.buffer[:end]) if end >= 0 else b""))

    def _client_allowed(self, sock: ssl.SSLSocket) -> bool:
        assert self.web_config is not None
        try:
            allowed = self.web_config.current().allowed_sans
        except WebConfigError:
            return True  # the request on it gets 500 (fail-closed) and says why
        if not allowed:
            return True
        names = {value for _, value in (sock.getpeercert() or {}).get("subjectAltName", ())}
        return bool(names & allowed)

    # -- the workers ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                self._answer(request)
            except Exception:  # one bad request must not take a worker down
                log.exception("%s: request failed", _peer(request.address))
            finally:
                request.sock.close()
                with self._busy_lock:
                    self._busy -= 1
                try:
                    self._wake_w.send(b"x")
                except OSError:
                    pass

    def _answer(self, request: _Request) -> None:
        if not request.head:
            self._send(request.sock, 431, [], b"request head too large\n", "GET")
            return
        parsed = _parse_head(request.head)
        if isinstance(parsed, int):
            self._send(request.sock, parsed, [], f"{_REASONS[parsed].lower()}\n".encode(), "GET")
            return
        method, target, version, headers = parsed
        extra: list[tuple[str, str]] = []
        if self.web_config is not None:
            try:
                config = self.web_config.current()
            except WebConfigError:
                self._send(request.sock, 500, [], b"invalid web config, see the exporter's log\n", method)
                return
            extra = list(config.headers)
            if config.users and not self._authorized(config.users, headers.get("authorization", "")):
                log.info("%s: basic auth failed", _peer(request.address))
                self._send(request.sock, 401, [*extra, ("WWW-Authenticate", "Basic")], b"Unauthorized\n", method)
                return
        if method not in ("GET", "HEAD"):
            self._send(request.sock, 405, [*extra, ("Allow", "GET, HEAD")], b"method not allowed\n", method)
            return
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": unquote(path, "latin-1"), "QUERY_STRING": query,
            "SCRIPT_NAME": "", "SERVER_PROTOCOL": version, "SERVER_NAME": str(self.server_address[0]),
            "SERVER_PORT": str(self.server_address[1]), "REMOTE_ADDR": _peer(request.address),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https" if isinstance(request.sock, ssl.SSLSocket)
            else "http", "wsgi.input": None, "wsgi.errors": sys.stderr, "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        for name, value in headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        answer: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer[:] = [status, response_headers]

        body = b"".join(self.app(environ, start_response))
        status, response_headers = answer
        self._send(request.sock, int(status.split()[0]), [*extra, *response_headers], body, method,
                   reason=status.partition(" ")[2])

    def _authorized(self, users: dict[str, str], header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and self._auth.check(users, user, password)

    def _send(self, sock: socket.socket, code: int, headers: list[tuple[str, str]], body: bytes, method: str,
              reason: str = "") -> None:
        """Write the whole answer within write_timeout (a total, not per send), or raise TimeoutError."""
        deadline = time.monotonic() + self.write_timeout
        names = {name.lower() for name, _ in headers}
        if "content-type" not in names:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        if "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        lines = [f"HTTP/1.1 {code} {reason or _REASONS.get(code, '')}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else body)
        sock.setblocking(True)
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("write timeout")
            sock.settimeout(remaining)
            sent = sock.send(view[:65536])
            view = view[sent:]

    # -- stopping ---------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Make `serve_forever()` return (waits up to 5 s for it)."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait(5)

    def server_close(self) -> None:
        """Close the listening socket and every open connection; stop the workers (each finishes the
        answer it is writing, bounded by the write timeout)."""
        for conn in list(self._pending.values()):
            self._close(conn, "server stopping")
        for _ in self._workers:
            self._requests.put(None)
        deadline = time.monotonic() + self.write_timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._selector.close()
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()


def _peer(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _head_end(buffer: bytearray) -> int:
    """Index just past the blank line ending the head, or -1."""
    for marker in (b"\r\n\r\n", b"\n\n"):
        index = buffer.find(marker)
        if index >= 0:
            return index + len(marker)
    return -1


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | int:
    """(method, target, version, lower-cased header -> value), or an HTTP error code."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[1].startswith("/"):
        return 400
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return 505 if version.startswith("HTTP/") else 400
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return 400
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return method, target, version, headers
