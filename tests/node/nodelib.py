"""Helpers of the node checks (tests/node): commands on the node under test, whatever testinfra backend
reaches it, and the small parsers the checks need. Only python3, iproute2 and Salt are assumed on the node."""

from __future__ import annotations

import json
import re
from typing import Any

# map.jinja's `pt`, rendered on the node as the formula's states see it. `sls` gives the template the
# `tpldir` map.jinja is written for (any SLS name under proxytier/ does).
PT_TEMPLATE = '{% from "proxytier/map.jinja" import pt with context %}{{ pt | json }}'
PT_RENDER = {"string": PT_TEMPLATE, "default_renderer": "jinja", "sls": "proxytier.nodecheck"}

# An HTTP GET run on the node with its own python3 (curl is not on every node); proxies from the
# environment are ignored, TLS certificates are not verified (the tier's may be self-signed).
HTTP_GET = r"""
import ssl, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener.add_handler(NoRedirect())
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write("%d\n%s" % (status, body.decode("utf-8", "replace")))
"""

# The same for an nginx server that expects the PROXY protocol: a v2 header with the LOCAL command (what
# HAProxy's health checks send), then a plain HTTP/1.0 request.
HTTP_GET_PROXY_V2 = r"""
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])
with socket.create_connection((host.strip("[]"), int(port)), timeout=float(sys.argv[3])) as s:
    s.sendall(header + b"GET " + sys.argv[2].encode() + b" HTTP/1.0\r\nHost: proxytier-check\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
head, _, body = out.partition(b"\r\n\r\n")
sys.stdout.write("%s\n%s" % (head.split(b" ")[1].decode(), body.decode("utf-8", "replace")))
"""

# HAProxy's runtime API on a unix socket (socat is not on every node either).
HAPROXY_CMD = r"""
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(sys.argv[2].encode() + b"\n")
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
sys.stdout.write(out.decode("utf-8", "replace"))
"""


class NodeError(AssertionError):
    """A command on the node failed; the message carries its output."""


class Node:
    """Commands on the node under test, whatever testinfra backend reaches it."""

    def __init__(self, host: Any, salt_call: str, alone: bool) -> None:
        self.host = host
        self.salt_call = salt_call
        self.alone = alone
        # the salt backend knows the minion id it targets; a container does not say
        self.minion_id: str | None = host.backend.host if host.backend.NAME == "salt" else None

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def check(self, command: str, *args: str) -> str:
        res = self.run(command, *args)
        if res.rc != 0:
            raise NodeError(f"on the node: {res.command!r} exited {res.rc}\n{res.stdout}{res.stderr}")
        return res.stdout

    def salt(self, function: str, **kwargs: Any) -> Any:
        """A Salt execution function on the node: through the master (salt backend) or salt-call."""
        if getattr(self.host.backend, "HAS_RUN_SALT", False):
            return self.host.backend.run_salt(function, [{"__kwarg__": True, **kwargs}] if kwargs else [])
        args = [f"{k}={v}" for k, v in kwargs.items()]
        out = self.check(self.salt_call.replace("%", "%%") + " --out=json " + function + " %s" * len(args), *args)
        try:
            return json.loads(out)["local"]
        except (ValueError, KeyError) as e:
            raise NodeError(f"salt-call {function} printed no JSON result:\n{out[-3000:]}") from e

    def python(self, code: str, *args: str) -> Any:
        return self.run("python3 -c %s" + " %s" * len(args), code, *args)

    def http_get(self, url: str, timeout: float = 5) -> tuple[int | None, str]:
        """(status, body) of a GET from the node itself; status None when no HTTP answer came."""
        res = self.python(HTTP_GET, url, str(timeout))
        if res.rc != 0:
            return None, (res.stderr.strip().splitlines() or ["no output"])[-1]
        status, _, body = res.stdout.partition("\n")
        return int(status), body

    def http_get_proxy_v2(self, address: str, path: str, timeout: float = 5) -> tuple[int | None, str]:
        """(status, body) of a GET preceded by a PROXY v2 header, to an nginx `listen ... proxy_protocol`."""
        res = self.python(HTTP_GET_PROXY_V2, address, path, str(timeout))
        if res.rc != 0:
            return None, (res.stderr.strip().splitlines() or ["no output"])[-1]
        status, _, body = res.stdout.partition("\n")
        return int(status), body

    def haproxy(self, socket_path: str, command: str) -> str:
        res = self.python(HAPROXY_CMD, socket_path, command)
        if res.rc != 0:
            raise NodeError(f"HAProxy runtime API {socket_path} ({command}): {res.stderr.strip()}")
        return res.stdout

    def addresses(self, interface: str | None = None) -> set[str]:
        """IPv4 and IPv6 addresses on the node (or on one interface), without prefix, as `ip addr` shows."""
        out = self.check("ip -o addr show" + (" dev %s" if interface else ""), *([interface] if interface else []))
        return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}

    def listeners(self) -> dict[str, set[str]]:
        """Listening TCP sockets: 'addr:port' -> names of the processes holding them (`ss -ltnp`)."""
        out = self.check("ss -Hltnp")
        found: dict[str, set[str]] = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            local = re.sub(r"%[^:\]]+", "", fields[3])  # 127.0.0.53%lo:53 -> 127.0.0.53:53
            found.setdefault(local, set()).update(re.findall(r'\("([^"]+)",pid=', line))
        return found


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition -> (name, labels, value) samples (enough for the exporter's own output)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples
