"""Command line: flags, wiring of the collectors and of the HTTP server (httpserver.py, webconfig.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from proxytier_exporter import __version__
from proxytier_exporter.accesslog import AccessLogCollector, AccessLogReceiver, AccessLogSource, AccessLogStats
from proxytier_exporter.bgp import DEFAULT_STATE_FILE, BgpCollector
from proxytier_exporter.birdctl import DEFAULT_SOCKET as BIRD_SOCKET
from proxytier_exporter.core import DaemonCollector, ScrapeCollector
from proxytier_exporter.exposition import metrics_app
from proxytier_exporter.haproxy import HAProxyCollector
from proxytier_exporter.httpserver import HTTPServer
from proxytier_exporter.keepalived import FifoReader, FifoState, KeepalivedCollector
from proxytier_exporter.logfile import AccessLogFileReader
from proxytier_exporter.nginx import NginxCollector
from proxytier_exporter.vip import VipCollector
from proxytier_exporter.webconfig import WebConfigError, WebConfigSource

log = logging.getLogger("proxytier_exporter")

DEFAULT_PORT = 8408
RUN_DIR = "/run/proxytier-exporter"
ACCESS_LOG = "/var/log/proxytier-exporter/nginx-access.log"
ACCESS_LOG_STATE = "/var/lib/proxytier-exporter/nginx-access-log.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="proxytier-exporter",
        description="Prometheus exporter for a keepalived (or BIRD) + HAProxy + nginx node. "
        "An empty path or URL disables that source.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                   help="address:port to serve metrics on (default %(default)s: every address)")
    p.add_argument("--web.telemetry-path", dest="path", default="/metrics",
                   help="path of the metrics page (default %(default)s)")
    p.add_argument("--web.config.file", dest="web_config", default="",
                   help="TLS and basic auth, in the Prometheus exporter-toolkit's web config format "
                   "(default: none, plain HTTP without auth)")
    p.add_argument("--web.read-timeout", dest="read_timeout", type=_positive(float), default=5.0,
                   help="seconds a client has, from connecting, to send its request head (TLS handshake "
                   "included); then it is disconnected (default %(default)s)")
    p.add_argument("--web.write-timeout", dest="write_timeout", type=_positive(float), default=10.0,
                   help="seconds to write one answer, in total (default %(default)s)")
    p.add_argument("--web.max-requests", dest="max_requests", type=_positive(int), default=8,
                   help="requests answered at once (worker threads); more wait (default %(default)s)")
    p.add_argument("--web.max-connections", dest="max_connections", type=_positive(int), default=128,
                   help="open client connections; at the limit the oldest one still sending its request "
                   "is closed for a new one (default %(default)s)")
    p.add_argument("--haproxy.stats-socket", dest="haproxy_socket", default="/run/haproxy/stats.sock",
                   help="HAProxy runtime API socket, level user is enough (default %(default)s)")
    p.add_argument("--haproxy.timeout", dest="haproxy_timeout", type=float, default=2.0,
                   help="seconds for one runtime API command (default %(default)s)")
    p.add_argument("--nginx.stub-status-url", dest="stub_status",
                   default="http://127.0.0.1:8407/stub_status", help="nginx stub_status URL (default %(default)s)")
    p.add_argument("--nginx.timeout", dest="nginx_timeout", type=float, default=2.0,
                   help="seconds for the stub_status request (default %(default)s)")
    p.add_argument("--nginx.access-log-file", dest="access_log_file", default=ACCESS_LOG,
                   help="the log file nginx writes for the exporter (log_format proxytier_tsv), read in "
                   "batches; its rotated names (.1) too (default %(default)s)")
    p.add_argument("--nginx.access-log-state-file", dest="access_log_state", default=ACCESS_LOG_STATE,
                   help="where the position of the published counters in the log file is saved at each "
                   "scrape, to resume there after a restart; empty: start at the end of the file "
                   "(default %(default)s)")
    p.add_argument("--nginx.access-log-interval", dest="access_log_interval", type=_positive(float), default=1.0,
                   help="seconds between two reads of the log file (default %(default)s)")
    p.add_argument("--nginx.access-log-socket", dest="access_log_socket", default="",
                   help="instead of the file: a unix datagram socket nginx sends its JSON access log to "
                   "(log_format proxytier_json, one datagram per request); a socket passed by systemd with "
                   "FileDescriptorName=nginx-access takes precedence (default: none)")
    p.add_argument("--nginx.access-log-socket-mode", dest="access_log_mode", type=lambda v: int(v, 8),
                   default=0o660, help="octal mode of the socket when the exporter binds it (default 660)")
    p.add_argument("--nginx.max-upstreams", dest="max_upstreams", type=int, default=64,
                   help="distinct upstream label values before the rest count as __other__ (default %(default)s)")
    p.add_argument("--keepalived.source", dest="keepalived_source", choices=("fifo", "json", "none"),
                   default="fifo", help="fifo (no root) or json (needs root) (default %(default)s)")
    p.add_argument("--keepalived.pid-file", dest="keepalived_pid", default="/run/keepalived.pid",
                   help="keepalived's main pid file, to know it runs (default %(default)s)")
    p.add_argument("--keepalived.config", dest="keepalived_config", default="/etc/keepalived/keepalived.conf",
                   help="keepalived.conf, for vrid/interface labels, base priority and VIPs (default %(default)s)")
    p.add_argument("--keepalived.notify-fifo", dest="keepalived_fifo", default=f"{RUN_DIR}/keepalived.fifo",
                   help="vrrp_notify_fifo path, created by the exporter if missing (default %(default)s)")
    p.add_argument("--keepalived.state-file", dest="keepalived_state", default=f"{RUN_DIR}/keepalived-state.json",
                   help="where FIFO-derived states survive an exporter restart (default %(default)s)")
    p.add_argument("--keepalived.json-file", dest="keepalived_json", default="/tmp/keepalived.json",
                   help="keepalived's JSON dump, for --keepalived.source=json (default %(default)s)")
    p.add_argument("--bgp.source", dest="bgp_source", choices=("birdc", "none"), default="none",
                   help="vip_mode bgp: birdc reads BIRD's control socket (what birdc speaks; no process is run) "
                   "and the BGP gate's state file; none: no bgp collector (default %(default)s)")
    p.add_argument("--bgp.bird-socket", dest="bird_socket", default=BIRD_SOCKET,
                   help="BIRD's control socket; the exporter's user needs BIRD's group (default %(default)s)")
    p.add_argument("--bgp.gate-state-file", dest="bgp_state_file", default=DEFAULT_STATE_FILE,
                   help="the state file proxytier-bgp-gate writes (default %(default)s)")
    p.add_argument("--bgp.timeout", dest="bgp_timeout", type=_positive(float), default=2.0,
                   help="seconds for the whole exchange with BIRD (default %(default)s)")
    p.add_argument("--vip", dest="vips", action="append", default=[],
                   help="a VIP to report ownership of; repeat it; default: the VIPs in --keepalived.config")
    p.add_argument("--log.level", dest="log_level", default="info",
                   choices=("debug", "info", "warning", "error"), help="(default %(default)s)")
    return p


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its error message
    return convert


def listen_address(text: str) -> tuple[str, int]:
    """Split "host:port", ":port" or "[v6]:port"."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address {text!r}: expected host:port, :port or [v6]:port")
    return host.strip("[]"), int(port)


def web_app(registry: CollectorRegistry, telemetry_path: str) -> Callable[..., Iterable[bytes]]:
    """WSGI app: the metrics at `telemetry_path`, a landing page at `/`, 404 elsewhere."""
    metrics = metrics_app(registry.collect)
    landing = (f'<html><head><title>proxytier-exporter</title></head><body><h1>proxytier-exporter '
               f'{__version__}</h1><p><a href="{telemetry_path}">Metrics</a></p></body></html>').encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == telemetry_path:
            return metrics(environ, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def build(args: argparse.Namespace) -> tuple[list[DaemonCollector], list[Callable[[], None]]]:
    """The collectors the flags ask for, and what to call at exit. Starts the reader threads."""
    collectors: list[DaemonCollector] = []
    stops: list[Callable[[], None]] = []
    if args.keepalived_source != "none":
        fifo = None
        if args.keepalived_source == "fifo":
            state = FifoState(save_path=args.keepalived_state or None)
            state.load()
            fifo = FifoReader(args.keepalived_fifo, state, args.keepalived_pid)
            fifo.start()
            stops.append(fifo.stop)
        json_dump = args.keepalived_json if args.keepalived_source == "json" else None
        collectors.append(KeepalivedCollector(args.keepalived_pid, args.keepalived_config, fifo, json_dump))
    if args.vips or args.keepalived_config:
        collectors.append(VipCollector(args.vips, args.keepalived_config or None))
    if args.bgp_source == "birdc":
        collectors.append(BgpCollector(args.bird_socket, args.bgp_state_file, args.bgp_timeout))
    if args.haproxy_socket:
        collectors.append(HAProxyCollector(args.haproxy_socket, args.haproxy_timeout))
    if args.stub_status:
        collectors.append(NginxCollector(args.stub_status, args.nginx_timeout))
    if args.access_log_socket:
        receiver: AccessLogSource = AccessLogReceiver(
            args.access_log_socket, AccessLogStats(args.max_upstreams), args.access_log_mode)
    elif args.access_log_file:
        receiver = AccessLogFileReader(args.access_log_file, AccessLogStats(args.max_upstreams, source="file"),
                                       args.access_log_state or None, args.access_log_interval)
    if args.access_log_socket or args.access_log_file:
        receiver.start()
        stops.append(receiver.stop)
        collectors.append(AccessLogCollector(receiver))
    return collectors, stops


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        host, port = listen_address(args.listen)
    except ValueError as error:
        print(f"proxytier-exporter: {error}", file=sys.stderr)
        return 2
    if args.access_log_socket and args.access_log_file:
        print("proxytier-exporter: --nginx.access-log-socket and --nginx.access-log-file are two sources of "
              "the same lines: give one (--nginx.access-log-file= turns the file off)", file=sys.stderr)
        return 2
    if args.max_connections < args.max_requests:
        print("proxytier-exporter: --web.max-connections is below --web.max-requests", file=sys.stderr)
        return 2
    web_config = None
    if args.web_config:
        try:
            web_config = WebConfigSource(args.web_config)
        except WebConfigError as error:
            print(f"proxytier-exporter: --web.config.file {error}", file=sys.stderr)
            return 1
    collectors, stops = build(args)
    registry = CollectorRegistry()
    registry.register(ScrapeCollector(collectors))
    ProcessCollector(registry=registry)
    try:
        server = HTTPServer(web_app(registry, args.path), host, port, web_config=web_config,
                            read_timeout=args.read_timeout, write_timeout=args.write_timeout,
                            max_requests=args.max_requests, max_connections=args.max_connections)
    except OSError as error:
        print(f"proxytier-exporter: cannot listen on {args.listen}: {error.strerror}", file=sys.stderr)
        for stop in stops:
            stop()
        return 1

    def shutdown(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info("proxytier-exporter %s listening on %s%s (%s%s) with collectors: %s", __version__, args.listen,
             args.path, "TLS" if web_config is not None and web_config.tls else "plain HTTP",
             ", basic auth" if web_config is not None and web_config.current().users else "",
             ", ".join(c.name for c in collectors) or "none")
    server.serve_forever()
    server.server_close()
    for stop in stops:
        stop()
    return 0
