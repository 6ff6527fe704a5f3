"""The default runbook_url works in a real Prometheus (Debian's package) on loopback: the generated runbook page
is served under /consoles/ from the console templates directory, and `{{ $externalURL }}` in runbook_url
expands to the Prometheus' external URL in the alerts it reports (ProxytierNoTargets is pending at once: no
scrape target here)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
import yaml

from .dashboards_common import DASHBOARDS, REPO, RULES_FILE

PAGE = DASHBOARDS / "consoles" / "proxytier-runbook.html"
EXTERNAL = "http://prometheus.example.org:9090/prom"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (with the route prefix) of a Prometheus loaded with the project's rules and its console page."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's prometheus package (sh lab/host-deps.sh)")
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "consoles").mkdir()
    shutil.copy(PAGE, tmp / "consoles" / PAGE.name)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(
        {"global": {"evaluation_interval": "1s"}, "rule_files": [str(RULES_FILE)]}))
    port = _free_port()
    server = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--web.console.templates={tmp / 'consoles'}",
         f"--web.external-url={EXTERNAL}/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}/prom"
    finally:
        server.terminate()
        server.wait(timeout=20)


def _alerts(url: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            alerts = requests.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            if alerts:
                return list(alerts)
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail("no alert reported by Prometheus in 30 s")


def test_runbook_url_expands_to_the_console_page(prometheus: str) -> None:
    alerts = {a["labels"]["alertname"]: a for a in _alerts(prometheus)}  # type: ignore[index]
    url = alerts["ProxytierNoTargets"]["annotations"]["runbook_url"]  # type: ignore[index]
    assert url == f"{EXTERNAL}/consoles/proxytier-runbook.html#proxytiernotargets"
    page = requests.get(url.replace(EXTERNAL, prometheus).partition("#")[0], timeout=5)
    assert page.status_code == 200
    # html/template drops HTML comments; the rest is served as written (the page holds no template action)
    assert page.text == re.sub(r"<!--.*?-->", "", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert '<h2 id="proxytiernotargets">ProxytierNoTargets</h2>' in page.text


def test_the_console_directory_is_debians_default() -> None:
    """The formula installs the page in consoles_dir; its default is where Debian's prometheus reads console
    templates from when /etc/default/prometheus passes no flag."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found"
    result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    help_text = result.stdout + result.stderr
    default = re.search(r'--web\.console\.templates="([^"]+)"', help_text)
    assert default, help_text
    defaults = yaml.safe_load((REPO / "salt/proxytier/templates/monitoring/defaults.yaml").read_text())
    assert defaults["prometheus"]["consoles_dir"] == default.group(1) == "/etc/prometheus/consoles"
