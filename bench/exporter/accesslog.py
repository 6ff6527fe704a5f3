"""CPU per access-log line: the file read in batches (LogFollower.poll) against the datagram path
(AccessLogStats.observe_datagram, one call per request).

    .venv/bin/python -m bench.exporter.accesslog [--lines 200000] [--runs 5]

Lines: the requests of tests/exporter/fixtures (captured from nginx 1.22 in both formats by
capture_nginx_tsv.py) repeated to --lines, each with its own $request_time (exponential, mean 20 ms),
$upstream_response_time and a time one second per 3,000 lines, in both formats alike. Timed with
process CPU time (time.process_time, this process only), no I/O wait: the file is in the page cache.
Three figures, medians of --runs:
  datagram   observe_datagram per datagram (without the recvmsg each one also costs the reader thread)
  file       LogFollower.poll over the whole file (1 MiB reads)
  file/1s    LogFollower.poll after every 3,000 appended lines (a 1 s batch at 3,000 requests/s);
             the append is not timed
Prints us per line and lines per second of one core.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "exporter"))  # the exporter's package, as `make test` and its unit file run it

from proxytier_exporter.accesslog import TSV_FIELDS, AccessLogStats  # noqa: E402
from proxytier_exporter.logfile import LogFollower  # noqa: E402

FIXTURES = REPO / "tests" / "exporter" / "fixtures"
BATCH = 3000


def requests(count: int, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """`count` requests as (datagrams, proxytier_tsv lines), made from the captured pair."""
    rng = random.Random(seed)
    captured = [json.loads(d[d.index(b"{"):]) for d in (FIXTURES / "nginx_access_tsv_syslog.txt").read_bytes()
                .split(b"\n") if d]
    datagrams, lines = [], []
    for i in range(count):
        fields = dict(captured[i % len(captured)])
        fields["request_time"] = f"{rng.expovariate(50):.3f}"
        if fields["upstream"]:
            fields["upstream_response_time"] = fields["request_time"]
        fields["time"] = f"2026-12-01T10:{i // BATCH // 60 % 60:02d}:{i // BATCH % 60:02d}+00:00"
        datagrams.append(b"<190>Dec  1 10:00:00 nginx: "
                         + json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
        lines.append("\t".join(json.dumps(fields[f], ensure_ascii=False)[1:-1] for f in TSV_FIELDS).encode() + b"\n")
    return datagrams, lines


def cpu(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def datagram_path(datagrams: list[bytes]) -> float:
    stats = AccessLogStats()
    observe = stats.observe_datagram
    spent = cpu(lambda: [observe(d) for d in datagrams] and None)
    counted = {s.name: s.value for fam in stats.families() for s in fam.samples}
    assert counted["proxytier_nginx_access_log_malformed_total"] == 0, counted
    return spent


def file_path(lines: list[bytes], tmp: Path, batch: int | None) -> float:
    log = tmp / "nginx-access.log"
    log.write_bytes(b"")
    follower = LogFollower(str(log), AccessLogStats(source="file"), str(tmp / "state.json"))
    follower.start()
    spent = 0.0
    try:
        if batch is None:
            log.write_bytes(b"".join(lines))
            spent = cpu(follower.poll)
        else:
            with log.open("ab", buffering=0) as f:
                for start in range(0, len(lines), batch):
                    f.write(b"".join(lines[start:start + batch]))
                    spent += cpu(follower.poll)
        counted = {s.name: s.value for fam in follower.stats.families() for s in fam.samples}
        assert counted["proxytier_nginx_access_log_lines_total"] == len(lines), counted
        assert counted["proxytier_nginx_access_log_malformed_total"] == 0, counted
    finally:
        follower.close()
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.exporter.accesslog", description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=200_000, help="requests per run (default %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="runs of each path; medians are printed (default %(default)s)")
    args = p.parse_args(argv)
    datagrams, lines = requests(args.lines)
    results: dict[str, list[float]] = {"datagram": [], "file": [], "file/1s": []}
    with tempfile.TemporaryDirectory(prefix="proxytier-bench-") as tmp:
        for _ in range(args.runs):  # alternated, so that a busy moment of the host hits every path
            results["datagram"].append(datagram_path(datagrams))
            results["file"].append(file_path(lines, Path(tmp), None))
            results["file/1s"].append(file_path(lines, Path(tmp), BATCH))
    print(f"{args.lines} lines ({sum(map(len, lines)) / len(lines):.0f} bytes per proxytier_tsv line, "
          f"{sum(map(len, datagrams)) / len(datagrams):.0f} per datagram), medians of {args.runs} runs, CPU time:")
    for name, seconds in results.items():
        median = statistics.median(seconds)
        print(f"  {name:9} {median / args.lines * 1e6:6.2f} us/line  {args.lines / median:>10,.0f} lines/s"
              f"  (runs: {', '.join(f'{s:.3f}' for s in seconds)} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
