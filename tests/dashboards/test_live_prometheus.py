"""A real Prometheus (Debian's package) on loopback scrapes a real exporter on loopback with the project's
rules: the rules load, the tier's job is selected, and the dashboard probe tells the panels with data
(exporter self-metrics, failing collectors) from those without (no keepalived, HAProxy or nginx here)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
import yaml
from proxytier_dashboards import lint, probe, render

from .dashboards_common import RULES_FILE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (requests.RequestException, probe.ProbeError):
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds}s waiting for {what}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's prometheus package (sh lab/host-deps.sh)")
    tmp = tmp_path_factory.mktemp("live")
    exporter_port, prometheus_port = _free_port(), _free_port()
    (tmp / "access.log").write_bytes(b"")  # the log nginx would write for the exporter, empty
    exporter = subprocess.Popen(
        [sys.executable, "-m", "proxytier_exporter", f"--web.listen-address=127.0.0.1:{exporter_port}",
         f"--haproxy.stats-socket={tmp}/missing-haproxy.sock", "--nginx.stub-status-url=http://127.0.0.1:1/",
         f"--nginx.access-log-file={tmp}/access.log", f"--nginx.access-log-state-file={tmp}/access-log.json",
         "--keepalived.source=none", "--keepalived.config=",
         "--log.level=error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{"job_name": "proxytier", "static_configs": [{
            "targets": [f"127.0.0.1:{exporter_port}"], "labels": {"instance": "proxy1"}}]}],
    }))
    server = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        # rate() needs two samples in its window: wait for three scrapes
        _wait(lambda: probe.evaluate(url, 'count_over_time(up{job="proxytier"}[1m]) >= 3') == 1,
              "Prometheus to scrape the exporter three times")
        yield url
    finally:
        _stop(server)
        _stop(exporter)


def test_rules_load_in_prometheus(prometheus_url: str) -> None:
    groups = requests.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 31
    assert all(rule["health"] != "err" for rule in rules), [r for r in rules if r["health"] == "err"]


def test_failing_collectors_raise_the_alert(prometheus_url: str) -> None:
    query = 'ALERTS{alertname="ProxytierCollectorFailing", alertstate="pending", collector="haproxy"}'
    _wait(lambda: probe.evaluate(prometheus_url, query) == 1, "ProxytierCollectorFailing to be pending")


def test_probe_tells_panels_with_data_from_empty_ones(prometheus_url: str) -> None:
    queries = [q for text in render.rendered().values() for q in lint.queries(yaml.safe_load(text))]
    results = {(r.query.dashboard, r.query.panel, r.query.ref_id): r for r in
               probe.probe(prometheus_url, queries, job="proxytier", rate_interval="30s")}
    assert not [r.name for r in results.values() if r.error]
    assert results[("proxytier-overview", "Nodes reporting", "A")].series == 1
    assert results[("proxytier-overview", "Collector success", "A")].series >= 3
    assert results[("proxytier-node", "Access-log lines", "A")].series == 1
    assert results[("proxytier-overview", "Servers the nodes disagree about", "A")].series == 1  # or vector(0)
    assert results[("proxytier-overview", "MASTERs per VRRP instance", "A")].series == 0  # keepalived disabled
    assert results[("proxytier-overview", "Requests per node", "A")].series == 0  # no HAProxy


def test_probe_reports_an_unreachable_prometheus() -> None:
    with pytest.raises(probe.ProbeError, match=r"127\.0\.0\.1"):
        probe.evaluate(f"http://127.0.0.1:{_free_port()}", "up", timeout=2)
