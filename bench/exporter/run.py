#!/usr/bin/env python3
"""Exporter benchmark: proxytier-exporter vs Debian's two Go exporters vs HAProxy's built-in exporter.

Run as root on Debian 12 with haproxy, nginx, keepalived, prometheus-nginx-exporter and
prometheus-haproxy-exporter installed (none needs to be running; without the two Go exporters the Go pair
is left out and the ratio columns say n/a), from the repository root:

    sudo python3 bench/exporter/run.py [--rounds 5] [--scrapes 100]

Everything runs inside an anonymous network namespace (`unshare --net`, gone when the script exits): its own
loopback, and a veth pair carrying three keepalived VRRP instances with VIPs 198.18.0.101-103. One node:
nginx (stub_status, JSON access log), HAProxy with 150 servers (3 backends x 50, checks every 2 s),
keepalived (3 VIPs), and the four exporters. The script stops exactly the processes it started, by PID.

Measured per exporter, in interleaved rounds (medians over rounds are reported):
  * scrape latency p50 / p99 (sequential scrapes, new connection each, as Prometheus does per target);
    for the Go pair one "scrape" is one scrape of each of the two;
  * CPU per scrape: CPU time of the exporter processes plus what the scrape costs haproxy and nginx, minus
    their idle rate (health checks) measured beforehand;
  * RSS of the exporter processes after the rounds (the built-in exporter lives inside haproxy).
Results: printed as a table and written to bench/out/exporter-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: bench.report for the run's date, commit and machine

from bench import report  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SERVERS_PER_BACKEND = 50
BACKENDS = 3
PROXYTIER_PORT, HAPROXY_GO_PORT, NGINX_GO_PORT, BUILTIN_PORT = 8408, 9101, 9113, 8405
STUB_STATUS = "http://127.0.0.1:8407/stub_status"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  log_format proxytier_json escape=json '{{"time":"$time_iso8601","status":"$status",'
    '"request_time":"$request_time","upstream":"$proxy_host","upstream_addr":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time"}}';
  log_format proxytier_tsv escape=json '$time_iso8601\\t$upstream_addr\\t$upstream_response_time\\t'
    '$status\\t$request_time\\t$proxy_host\\t$upstream_status\\t';
  upstream app {{ server 127.0.0.1:28481; keepalive 8; }}
  server {{
    listen 127.0.0.1:8407;
    location = /stub_status {{ stub_status; }}
  }}
  server {{
    listen 127.0.0.1:28480;
    {access_log}
    location = /healthz {{ access_log off; return 200; }}
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  server {{
    listen 127.0.0.1:28481;
    access_log off;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""

KEEPALIVED_INSTANCE = """
vrrp_instance VI_{n} {{
  state BACKUP
  interface ka0
  virtual_router_id {vrid}
  priority 100
  advert_int 1
  virtual_ipaddress {{
    198.18.0.{host}/32
  }}
}}
"""


def haproxy_cfg(tmp: Path) -> str:
    lines = [
        "global", f"  stats socket {tmp}/stats.sock mode 666 level user", "  maxconn 4000",
        "defaults", "  mode http", "  timeout connect 1s", "  timeout client 5s", "  timeout server 5s",
        "frontend fe_prometheus", f"  bind 127.0.0.1:{BUILTIN_PORT}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
    ]
    for b in range(1, BACKENDS + 1):
        lines += [f"frontend fe_vip{b}", f"  bind 127.0.0.1:{8000 + b}", f"  default_backend be_{b}",
                  f"backend be_{b}", "  option httpchk GET /healthz", "  default-server check inter 2s"]
        lines += [f"  server s{b}_{i} 127.0.0.1:28480" for i in range(1, SERVERS_PER_BACKEND + 1)]
    return "\n".join(lines) + "\n"


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def wait_until(predicate, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def ready(exposition: bytes) -> bool:
    lines = exposition.decode().splitlines()
    collectors = ("keepalived", "vip", "haproxy", "nginx", "nginx_access_log")
    vips = [line for line in lines if line.startswith("proxytier_vip_owned")]
    return (all(f'proxytier_collector_success{{collector="{c}"}} 1.0' in lines for c in collectors)
            and len(vips) == 3 and all(line.endswith(" 1.0") for line in vips))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench(rounds: int, scrapes: int, checkout: Path) -> dict:
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "ka0", "type", "veth", "peer", "name", "ka0p")
    sh("ip", "addr", "add", "198.18.0.2/24", "dev", "ka0")
    sh("ip", "link", "set", "ka0p", "up")
    sh("ip", "link", "set", "ka0", "up")
    tmp = Path(tempfile.mkdtemp(prefix="proxytier-bench-"))
    tmp.chmod(0o755)
    # an exporter that reads the access log from a file gets the formula's file (older ones, measured with
    # --checkout, the datagram socket they know)
    from_file = "--nginx.access-log-file" in (checkout / "exporter" / "proxytier_exporter" / "cli.py").read_text()
    access_log = (f"access_log {tmp}/nginx-access.log proxytier_tsv buffer=64k flush=1s;" if from_file
                  else f"access_log syslog:server=unix:{tmp}/nginx-access.sock,nohostname proxytier_json;")
    access_args = ([f"--nginx.access-log-file={tmp}/nginx-access.log",
                    f"--nginx.access-log-state-file={tmp}/nginx-access-log.json"] if from_file
                   else [f"--nginx.access-log-socket={tmp}/nginx-access.sock"])
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, access_log=access_log))
    (tmp / "haproxy.cfg").write_text(haproxy_cfg(tmp))
    instances = "".join(KEEPALIVED_INSTANCE.format(n=n, vrid=50 + n, host=100 + n) for n in (1, 2, 3))
    (tmp / "keepalived.conf").write_text(
        f"global_defs {{\n  vrrp_notify_fifo {tmp}/keepalived.fifo\n  vrrp_notify_priority_changes\n}}\n"
        + instances)
    os.mkfifo(tmp / "keepalived.fifo", 0o600)
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], **kwargs) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        started.append(process)
        return process

    try:
        ours = start(
            ["/usr/bin/python3", "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{PROXYTIER_PORT}",
             f"--haproxy.stats-socket={tmp}/stats.sock", f"--nginx.stub-status-url={STUB_STATUS}",
             *access_args, f"--keepalived.pid-file={tmp}/keepalived.pid",
             f"--keepalived.config={tmp}/keepalived.conf", f"--keepalived.notify-fifo={tmp}/keepalived.fifo",
             f"--keepalived.state-file={tmp}/keepalived-state.json"],
            env=dict(os.environ, PYTHONPATH=str(checkout / "exporter")),
        )
        nginx = start(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
        haproxy = start(["haproxy", "-f", str(tmp / "haproxy.cfg"), "-db"])
        start(["keepalived", "--dont-fork", "--vrrp", "-f", str(tmp / "keepalived.conf"),
               "-p", str(tmp / "keepalived.pid"), "-r", str(tmp / "vrrp.pid")], env=dict(os.environ, TMPDIR=str(tmp)))
        go_exporters = ("prometheus-haproxy-exporter", "prometheus-nginx-exporter")
        with_go = all(shutil.which(name) for name in go_exporters)
        if with_go:
            haproxy_go = start(["prometheus-haproxy-exporter", f"--web.listen-address=127.0.0.1:{HAPROXY_GO_PORT}",
                                f"--haproxy.scrape-uri=unix:{tmp}/stats.sock"])
            nginx_go = start(["prometheus-nginx-exporter", f"-web.listen-address=127.0.0.1:{NGINX_GO_PORT}",
                              f"-nginx.scrape-uri={STUB_STATUS}"])
        else:
            print(f"{' and '.join(go_exporters)} not both installed: measuring without the Go pair", file=sys.stderr)
        ours_url = f"http://127.0.0.1:{PROXYTIER_PORT}/metrics"
        wait_until(lambda: ready(scrape(ours_url)), "every collector up and the 3 VIPs held")
        for b in range(1, BACKENDS + 1):
            for _ in range(100):
                scrape(f"http://127.0.0.1:{8000 + b}/")
        daemons = [haproxy.pid, nginx.pid, *children(nginx.pid)]
        variants = {"proxytier": ([ours_url], [ours.pid])}
        if with_go:
            variants["go_pair"] = (
                [f"http://127.0.0.1:{HAPROXY_GO_PORT}/metrics", f"http://127.0.0.1:{NGINX_GO_PORT}/metrics"],
                [haproxy_go.pid, nginx_go.pid])
        variants["haproxy_builtin"] = ([f"http://127.0.0.1:{BUILTIN_PORT}/metrics"], [])
        for urls, _ in variants.values():
            for url in urls:
                wait_until(lambda url=url: scrape(url), url)
        quiet = 5.0
        before, start_time = cpu_seconds(daemons), time.monotonic()
        time.sleep(quiet)
        idle_rate = (cpu_seconds(daemons) - before) / (time.monotonic() - start_time)
        results: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p99": [], "cpu": []} for name in variants}
        sizes = {name: sum(len(scrape(url)) for url in urls) for name, (urls, _) in variants.items()}
        for _ in range(rounds):
            for name, (urls, pids) in variants.items():
                latencies = []
                cpu_before, daemons_before, t0 = cpu_seconds(pids), cpu_seconds(daemons), time.monotonic()
                for _ in range(scrapes):
                    begin = time.perf_counter()
                    for url in urls:
                        scrape(url)
                    latencies.append(time.perf_counter() - begin)
                elapsed = time.monotonic() - t0
                spent = cpu_seconds(pids) - cpu_before + cpu_seconds(daemons) - daemons_before - idle_rate * elapsed
                results[name]["p50"].append(percentile(latencies, 0.5))
                results[name]["p99"].append(percentile(latencies, 0.99))
                results[name]["cpu"].append(max(spent, 0.0) / scrapes)
        summary = {}
        for name, (_, pids) in variants.items():
            summary[name] = {
                "p50_ms": statistics.median(results[name]["p50"]) * 1000,
                "p99_ms": statistics.median(results[name]["p99"]) * 1000,
                "cpu_ms_per_scrape": statistics.median(results[name]["cpu"]) * 1000,
                "rss_mib": rss_mib(pids) if pids else None,
                "exposition_bytes": sizes[name],
            }
        durations = {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1]) * 1000
            for line in scrape(ours_url).decode().splitlines()
            if line.startswith("proxytier_collector_duration_seconds{")
        }
        return {"bench": "exporter", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "git_commit": report.git_commit(checkout), "machine": report.machine_facts(),
                "rounds": rounds, "scrapes_per_round": scrapes, "haproxy_servers": BACKENDS * SERVERS_PER_BACKEND,
                "vips": 3, "idle_cpu_daemons_percent": idle_rate * 100, "summary": summary,
                "proxytier_collector_ms": durations}
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def table(result: dict) -> str:
    """The summary as a Markdown table; the ratio columns are "n/a" when the Go pair was not measured."""
    s = result["summary"]
    go = s.get("go_pair")
    rows = ["| exporter | p50 ms | p99 ms | CPU ms/scrape | RSS MiB | bytes | CPU vs Go pair | p50 vs Go pair |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in s.items():
        rss = f"{r['rss_mib']:.1f}" if r["rss_mib"] is not None else "in haproxy"
        cpu_ratio = p50_ratio = "n/a"
        if go is not None:
            cpu_ratio = f"{r['cpu_ms_per_scrape'] / go['cpu_ms_per_scrape']:.2f}" if go["cpu_ms_per_scrape"] else "nan"
            p50_ratio = f"{r['p50_ms'] / go['p50_ms']:.2f}"
        rows.append(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_ms_per_scrape']:.2f} | {rss} | "
                    f"{r['exposition_bytes']} | {cpu_ratio} | {p50_ratio} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--checkout", type=Path, default=REPO,
                        help="the checkout whose exporter/ is measured (default: this one); its commit is recorded, "
                             "so two runs compare two commits (python -m bench.exporter.report)")
    args = parser.parse_args(argv)
    if os.environ.get("PROXYTIER_BENCH_IN_NETNS") != "1":
        os.environ["PROXYTIER_BENCH_IN_NETNS"] = "1"
        os.execvp("unshare", ["unshare", "--net", "--", sys.executable, __file__, *sys.argv[1:]])
    result = bench(args.rounds, args.scrapes, args.checkout.resolve())
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"exporter-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(table(result))
    print("proxytier collectors, ms in one scrape: "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in result["proxytier_collector_ms"].items()))
    print(f"\n{result['haproxy_servers']} HAProxy servers, {result['vips']} VIPs; daemons' idle CPU "
          f"{result['idle_cpu_daemons_percent']:.1f}%; medians of {result['rounds']} rounds x "
          f"{result['scrapes_per_round']} scrapes; commit {result['git_commit']}; written to {path}")


if __name__ == "__main__":
    main()
