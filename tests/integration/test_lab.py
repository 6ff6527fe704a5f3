"""The tier proven end to end on the real lab.

They run in this order (pytest keeps definition order): converge, idempotence, spread, pillar edit
under load, bad pillar, then the destructive ones (HAProxy killed, node stopped), each restoring the
lab before it ends. Every wait is bounded. The lab is brought up once for the module and torn down at
the end (PROXYTIER_LAB_KEEP=1 leaves it running; then `make lab-down`). Measurements are printed at
the end and merged into the results file (lab.config.RESULTS).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lab import (
    bgp,
    chaos,
    cluster,
    config,
    dualstack,
    master,
    net,
    nodecheck,
    nodes,
    prometheus,
    router,
    spoof,
    tier,
    vhosts,
)
from lab.load import BackgroundLoad, run_load, table
from lab.sh import LabError, run, wait_for
from lab.tlsgen import make_cert

MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the lab integration tests need root (namespaces, bridge, systemd-nspawn)")
    missing = [t for t in ("systemd-nspawn", "debootstrap", "ip", "nsenter") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing host tools {missing}: run `sh lab/host-deps.sh` (make test does)")
    capture: Any = request.config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # show the lab's progress lines live
            MEASURED.update(cluster.up())
        yield
    finally:
        tier.clear_pillar_override()
        with capture.global_and_fixture_disabled():
            if MEASURED:
                cluster.record(MEASURED)
                print("\n[lab] measurements (seconds):")
                for key in sorted(MEASURED):
                    print(f"[lab]   {key:<32} {MEASURED[key]}")
                print(f"[lab]   (also in {config.RESULTS})")
            if os.environ.get("PROXYTIER_LAB_KEEP") != "1":
                cluster.down()


@pytest.fixture
def measure() -> Callable[[str, float], None]:
    """measure(name, seconds): record a measurement for the report."""

    def _record(name: str, value: float) -> None:
        MEASURED[name] = round(value, 2)
        print(f"[measured] {name} = {value:.2f} s")

    return _record


@pytest.fixture
def clean_pillar(lab: None) -> Iterator[None]:
    """Tests that edit the pillar leave it as the checkout has it."""
    tier.clear_pillar_override()
    yield
    tier.clear_pillar_override()




def node_names() -> set[str]:
    """The lab's nodes now (joins and leaves change them)."""
    return {n.name for n in config.NODES}

BACKEND_NAMES = {b.name for b in config.BACKENDS}

pytestmark = [pytest.mark.usefixtures("lab"), pytest.mark.timeout(900)]


def apply_ok(target: str = "proxy*") -> tier.ApplyResult:
    res = tier.apply(target)
    print(res.describe())
    bad = {n: m for n, m in res.minions.items() if not m.ok}
    assert not bad, res.describe()
    return res


def assert_serving(requests: int = 150) -> None:
    """Every VIP answers, with 0 failures, spreading over every nginx node and backend."""
    result = run_load(config.VIPS, requests=requests, seconds=60, concurrency=3)
    print(table(result))
    assert result.failed == 0, result.summary()
    assert set(result.by_node) == node_names(), table(result)
    assert BACKEND_NAMES <= set(result.by_backend), table(result)


@pytest.mark.core
def test_1_apply_converges_all_nodes_with_real_packages(measure) -> None:
    """0 failed states on every node; nginx/haproxy/keepalived installed by apt and active."""
    res = apply_ok()
    measure("first_apply", res.seconds)
    versions = nodes.exec_(config.NODES[0], ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *tier.DAEMONS])
    minion = nodes.exec_(config.NODES[0], ["/opt/salt/bin/salt-minion", "--version"]).stdout.strip()
    print(f"platform {config.PLATFORM}: {minion}; {', '.join(versions.stdout.split(chr(10))).strip(', ')}")
    for node in config.NODES:
        assert res.minions[node.name].total > 0
        assert tier.apt_installed_by_apt(node) == dict.fromkeys(tier.DAEMONS, True), node.name
        assert tier.services_active(node) == dict.fromkeys(tier.DAEMONS, "active"), node.name
    tier.wait_vips_settled()
    holders = nodes.vip_holders()
    print(f"VIP holders after first apply: {holders}")
    assert {h[0] for h in holders.values()} == node_names(), f"each node should hold one VIP: {holders}"


@pytest.mark.core
def test_2_second_apply_changes_nothing(measure) -> None:
    """a second apply reports 0 changes."""
    res = apply_ok()
    measure("noop_apply", res.seconds)
    changed = {n: m.changed for n, m in res.minions.items() if m.changed}
    assert not changed, f"second apply changed states: {changed}"


@pytest.mark.core
def test_3_every_vip_reaches_every_nginx_and_backend() -> None:
    """multi-master; through each VIP, requests reach nginx on all 3 nodes and every backend."""
    assert_every_vip_reaches_every_nginx_and_backend(240)


def assert_every_vip_reaches_every_nginx_and_backend(requests: int) -> None:
    """Through each VIP alone: 0 failed, every nginx node and every backend get a share of at least
    0.45/N of the requests (round robin gives each 1/N)."""
    for vip in config.VIPS:
        result = run_load([vip], requests=requests, seconds=60, concurrency=4)
        print(f"VIP {vip}: {table(result)}")
        assert result.failed == 0, result.summary()
        assert set(result.by_node) == node_names(), f"{vip}: {dict(result.by_node)}"
        assert set(result.by_backend) == BACKEND_NAMES, f"{vip}: {dict(result.by_backend)}"
        for counts in (result.by_node, result.by_backend):
            for name, count in counts.items():
                assert count >= result.ok * 0.45 / len(counts), f"{vip}: {name} got only {count} of {result.ok}"
        assert config.HOST_ADDR in result.clients, f"client address lost: {dict(result.clients)}"


def scrape(node: config.Node) -> list[Any]:
    """One scrape of the node's exporter (the formula's default port): its samples."""
    url = f"http://{config.check_lab_address(node.address)}:{config.EXPORTER_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def vrrp_states(samples: list[Any]) -> dict[str, str]:
    """{vrrp_instance: the state whose state-set series is 1}."""
    return {
        s.labels["vrrp_instance"]: s.labels["state"]
        for s in samples
        if s.name == "proxytier_keepalived_vrrp_state" and s.value == 1
    }


def collectors(samples: list[Any]) -> dict[str, float]:
    return {s.labels["collector"]: s.value for s in samples if s.name == "proxytier_collector_success"}


def instance_of(vip: str) -> str:
    """The VRRP instance that carries a VIP, as the formula names it (VI_<vrid>, VI6_<vrid>), in the
    pillar the nodes have now."""
    return tier.vrrp_instances(tier.current_pillar())[vip]


def assert_exporters_agree_with_the_kernel(vips: list[str]) -> None:
    """Every node's exporter, scraped: its VIP ownership of `vips` and the state of their VRRP instances
    agree with which node really holds each VIP (ip address on the node); every collector succeeds."""
    holders = nodes.vip_holders(vips)
    for node in config.NODES:
        samples = scrape(node)
        owned = {s.labels["vip"]: s.value == 1 for s in samples if s.name == "proxytier_vip_owned"}
        expected = {vip: node.name in held for vip, held in holders.items()}
        assert owned == expected, f"{node.name}: exporter says {owned}, kernel says {expected}"
        states = vrrp_states(samples)
        want = {instance_of(vip): "MASTER" if node.name in held else "BACKUP" for vip, held in holders.items()}
        assert states == want, f"{node.name}: exporter VRRP states {states}, kernel VIPs imply {want}"
        assert collectors(samples) == dict.fromkeys(
            ("haproxy", "keepalived", "nginx", "nginx_access_log", "vip"), 1.0
        ), f"{node.name}: {collectors(samples)}"


def test_3b_exporter_on_every_node_agrees_with_the_kernel_on_vip_ownership() -> None:
    """every node's exporter is scraped; its VIP ownership and VRRP states agree with
    which node really holds each VIP; every collector succeeds."""
    assert_exporters_agree_with_the_kernel(config.VIPS)


def test_3d_node_checks_shared_with_kitchen_pass_on_every_node() -> None:
    """the testinfra node checks kitchen's verifier runs (tests/node) pass on every lab node,
    through testinfra's salt backend."""
    rc, output = nodecheck.run_node_checks("proxy*")
    print(output[-2000:])
    assert rc == 0, output[-4000:]
    summary = re.search(r"(\d+) passed(?:, (\d+) skipped)? in ", output)
    assert summary, f"no pytest summary:\n{output[-2000:]}"
    passed, skipped = int(summary.group(1)), int(summary.group(2) or 0)
    # the only skip allowed: the one check for a node without peers (--node-alone), once per node
    n = len(config.NODES)
    skips = re.findall(r"SKIPPED \[(\d+)\] [^:]+:\d+: (.*)", output)
    assert skips == [(str(n), "the node has VRRP peers (no --node-alone)")], skips
    # every check ran on every node: as many as pytest collects for one host, times the nodes
    assert (passed, skipped) == (n * nodecheck.checks_per_node() - n, n), output[-2000:]


def promql(expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query on the lab's Prometheus, now or at Unix time `at` (seconds)."""
    query = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    url = f"{prometheus.URL}/api/v1/query?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def alert_key(alert: dict[str, Any]) -> tuple[str, str]:
    """(alertname, vrrp_instance or "") of one ALERTS series from promql()."""
    return alert["metric"]["alertname"], alert["metric"].get("vrrp_instance", "")


def alert_active(name: str, state: str = "") -> bool:
    """The alert is pending or firing (or exactly `state`) on the lab's Prometheus."""
    only = f', alertstate="{state}"' if state else ""
    return bool(promql(f'ALERTS{{alertname="{name}"{only}}}'))


def wait_scraped(timeout: float = 90) -> None:
    """Every node's exporter scraped several times (rate() needs two samples in its window)."""
    expr = f'count(count_over_time(up{{job="{prometheus.JOB}"}}[1m]) >= 5 and up{{job="{prometheus.JOB}"}} == 1)'
    wait_for("Prometheus to scrape every exporter", lambda: promql(expr) and promql(expr)[0]["value"][1] == "3",
             timeout=timeout, interval=1)


# Panels that are empty in a healthy tier by design (nothing to show until something goes wrong).
EMPTY_WHEN_HEALTHY = {("proxytier-overview", "Upstream 5xx ratio"),  # no 5xx: no series
                      ("proxytier-overview", "Site 5xx ratio")}


def panel_queries() -> list[Any]:
    """Every Prometheus query of every panel of the generated dashboards (proxytier_dashboards.lint)."""
    sys.path.insert(0, str(config.REPO / "dashboards"))
    from proxytier_dashboards import lint, render

    return [q for text in render.rendered().values() for q in lint.queries(yaml.safe_load(text))]


def bgp_panel_queries() -> list[Any]:
    """The panel queries on the exporter's BGP metrics (proxytier_bgp_*): empty in VRRP mode, where those
    metrics do not exist (test 3c leaves them out); each must have data in BGP mode (test 8a)."""
    return [q for q in panel_queries() if "proxytier_bgp_" in q.expr]


def test_3c_dashboards_and_rules_on_the_lab_prometheus() -> None:
    """a real Prometheus scrapes every exporter with the project's rules; every rule
    evaluates; every dashboard panel query (variables substituted) returns data in the healthy tier;
    no critical alert is pending or firing."""
    queries = panel_queries()
    from proxytier_dashboards import probe

    wait_scraped()
    with BackgroundLoad(config.VIPS, seconds=120, concurrency=3, timeout=5):
        time.sleep(35)  # a 30 s rate window full of traffic
        results = probe.probe(prometheus.URL, queries, job=prometheus.JOB, rate_interval="30s")
    errors = [f"{r.name}: {r.error}" for r in results if r.error]
    assert not errors, errors
    bgp_only = set(bgp_panel_queries())
    assert bgp_only, "no dashboard panel on the BGP metrics"
    empty = sorted(r.name for r in results if r.series == 0 and (r.query.dashboard, r.query.panel)
                   not in EMPTY_WHEN_HEALTHY and r.query not in bgp_only)
    print(f"{len(results)} panel queries, {len(results) - len(empty)} with data")
    assert not empty, f"panels without data in a healthy tier: {empty}"
    with urllib.request.urlopen(f"{prometheus.URL}/api/v1/rules", timeout=10) as resp:
        rules = [r for g in json.loads(resp.read())["data"]["groups"] for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules), [r["name"] for r in rules if r["health"] != "ok"]
    critical = promql('ALERTS{severity="critical"}')
    assert not critical, [a["metric"] for a in critical]


# Names the dashboards operators use query that have no series in the lab's healthy tier -> why.
# (HAProxy's own exporter writes NaN for each of them there: fields `show info`/`show stat` leave empty.)
NO_SERIES_IN_THE_LAB: dict[str, str] = {
    "haproxy_process_current_zlib_memory": "show info's ZlibMemUsage is empty in Debian 12's HAProxy 2.6",
    "haproxy_process_max_zlib_memory": "show info's MaxZlibMemUsage is empty in Debian 12's HAProxy 2.6",
    "haproxy_server_current_throttle": "throttle is empty: the formula sets no slowstart",
    "haproxy_server_idle_connections_limit": "src_ilim (the idle connection limit) is empty for these servers",
    "haproxy_server_limit_sessions": "slim is empty: no server maxconn (set by `extra.server` lines only)",
    "haproxy_server_queue_limit": "qlimit is empty: no server maxqueue",
}


def test_3e_the_dashboards_operators_already_use_have_data_in_the_lab() -> None:
    """Every metric NGINX's dashboard for nginx-prometheus-exporter (12708), the HAProxy 2 community
    dashboard (12693) and the haproxy-mixin query has series on the lab's Prometheus, except those
    HAProxy 2.6's own exporter does not publish and those listed in NO_SERIES_IN_THE_LAB (with why)."""
    from tests.exporter.compat_names import DASHBOARD_12693, DASHBOARD_12708, HAPROXY_MIXIN, NOT_IN_HAPROXY_26

    wait_scraped()
    wanted = (set(DASHBOARD_12693) | set(DASHBOARD_12708) | set(HAPROXY_MIXIN)) - set(NOT_IN_HAPROXY_26)
    found = {r["metric"]["__name__"] for r in promql(
        f'count by (__name__) ({{job="{prometheus.JOB}", __name__=~"{"|".join(sorted(wanted))}"}})')}
    missing = sorted(wanted - found - set(NO_SERIES_IN_THE_LAB))
    print(f"{len(found)} of {len(wanted)} names have series; none: {sorted(wanted - found)}")
    assert not missing, f"names the dashboards query with no series in the lab: {missing}"
    assert not set(NO_SERIES_IN_THE_LAB) & found, "listed as without series, but has some"


def test_4_pillar_edit_adds_and_removes_a_backend_without_failed_requests(clean_pillar, measure) -> None:
    """add be4 by pillar -> apply -> it gets traffic; remove -> it gets none; 0 failed under load."""
    be4 = config.backend(4)
    net.backend_up(be4)
    try:
        with BackgroundLoad(config.VIPS, seconds=300, concurrency=3, timeout=5) as bg:
            time.sleep(1)
            t_edit = time.monotonic()
            tier.write_pillar(tier.pillar_with_backend(be4))
            apply_ok()

            def be4_serves() -> bool:
                return "be4" in run_load(config.VIPS, requests=30, seconds=10, concurrency=3).by_backend

            wait_for("be4 to receive traffic", be4_serves, timeout=60, interval=0.2)
            measure("pillar_edit_to_traffic", time.monotonic() - t_edit)

            tier.clear_pillar_override()
            apply_ok()
            after = run_load(config.VIPS, requests=150, seconds=30, concurrency=3)
            assert "be4" not in after.by_backend, f"be4 still gets traffic after removal: {table(after)}"
            assert after.failed == 0, after.summary()
            time.sleep(1)
        result = bg.result
        assert result is not None
        print(f"load during both applies: {table(result)}")
        assert result.total > 100, result.summary()
        assert result.failed == 0, result.summary()
        assert "be4" in result.by_backend
    finally:
        net.backend_down(be4)


def change_touching_every_daemon(tag: str) -> dict[str, Any]:
    return tier.pillar_with_comment(f"# rolling-change {tag}")


def rolling(timeout: float = 600, **pillar: Any) -> subprocess.CompletedProcess[str]:
    return tier.orchestrate("rolling", timeout=timeout, **pillar)


def test_4b_rolling_change_under_load_versus_all_at_once(clean_pillar, measure) -> None:
    """a change touching every daemon (a pillar change plus a reinstall of nginx, HAProxy
    and keepalived, whose maintainer scripts restart them) rolled one node at a time (drain, hand
    the VIPs over, reinstall, apply, verify, take the VIPs back, restore) under load loses nothing;
    the same change applied to all nodes at once under the same load is counted beside it. A
    reload-only change rolled with the VIPs kept in place loses nothing either."""
    failed = {}
    for how in ("rolling", "all_at_once", "rolling_keep_vips"):
        tier.write_pillar(change_touching_every_daemon(how))
        reinstall = how != "rolling_keep_vips"
        # a client with a 2 s timeout: a SYN lost to a moving VIP is retransmitted after 1 s, in time
        with BackgroundLoad(config.VIPS, seconds=400, concurrency=3, timeout=2) as bg:
            time.sleep(1)
            t0 = time.monotonic()
            if how.startswith("rolling"):
                proc = rolling(handover_vips=how == "rolling", reinstall=reinstall)
                assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
            else:
                master.salt(["salt", "proxy*", "proxytier.reinstall", "--out=json"], timeout=300, check=True)
                apply_ok()
            measure(f"change_{how}_seconds", time.monotonic() - t0)
            time.sleep(1)
        result = bg.result
        assert result is not None and result.total > 100, result
        print(f"{how}: {table(result)}")
        failed[how] = result.failed
        MEASURED[f"change_{how}_failed_requests"] = result.failed
        MEASURED[f"change_{how}_requests"] = result.total
        MEASURED[f"change_{how}_slowest_request_seconds"] = round(max(x.end - x.start for x in result.samples), 3)
        MEASURED[f"change_{how}_requests_over_0.5s"] = sum(x.ok and x.end - x.start > 0.5 for x in result.samples)
        for node in config.NODES:  # the change really reached every daemon's config
            for path in ("/etc/nginx/nginx.conf", "/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"):
                text = nodes.exec_(node, ["cat", path]).stdout
                assert f"# rolling-change {how}" in text, f"{node.name}:{path} lacks the {how} change"
            hold = nodes.exec_(node, ["cat", "/run/proxytier-vrrp-hold"]).stdout.strip()
            assert hold == "0", f"{node.name} is still held down after the {how} change: {hold!r}"
        tier.wait_vips_settled()
    print(f"failed requests: {failed}")
    assert failed["rolling"] == 0, failed
    assert failed["rolling_keep_vips"] == 0, failed
    tier.clear_pillar_override()
    apply_ok()


def test_4c_rolling_stops_at_a_failing_node_and_the_tier_keeps_serving(clean_pillar) -> None:
    """a node whose apply/verification fails stops the rollout with a clear message; the nodes
    after it are untouched and the tier keeps serving."""
    proxy2 = config.NODES[1]
    nodes.exec_(proxy2, ["systemctl", "mask", "--runtime", "nginx"])  # nginx cannot come back on proxy2
    nodes.exec_(proxy2, ["systemctl", "stop", "nginx"])
    try:
        tier.write_pillar(change_touching_every_daemon("stops"))
        proc = rolling()
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out[-3000:]
        assert "proxytier-rolling-proxy2-apply" in out and "nginx" in out, out[-3000:]
        # proxy1 was done, proxy3 was never touched
        assert "# rolling-change stops" in nodes.exec_(config.NODES[0], ["cat", "/etc/nginx/nginx.conf"]).stdout
        assert "# rolling-change stops" not in nodes.exec_(config.NODES[2], ["cat", "/etc/nginx/nginx.conf"]).stdout
        result = run_load(config.VIPS, requests=300, seconds=60, concurrency=3)
        print(table(result))
        assert result.failed == 0, result.summary()
    finally:
        nodes.exec_(proxy2, ["systemctl", "unmask", "--runtime", "nginx"], check=False)
        nodes.exec_(proxy2, ["systemctl", "start", "nginx"], check=False)
        master.salt(["salt", "proxy*", "proxytier.handover", "proxy2", "reclaim"], timeout=120)
        master.salt(["salt", "proxy*", "proxytier.member_state", "proxy2", "ready"], timeout=120)
        tier.clear_pillar_override()
        apply_ok()
        tier.wait_vips_settled()
    assert_serving()


@pytest.mark.core
def test_5_bad_pillar_fails_clearly_and_touches_nothing(clean_pillar) -> None:
    """VRIDs from 300 -> apply fails on every node with the clear error; configs and daemons untouched."""
    before = {n.name: (tier.config_hashes(n), tier.daemon_processes(n)) for n in config.NODES}
    for name, (files, procs) in before.items():
        assert files and {p[0] for p in procs} == set(tier.DAEMONS), f"{name}: nothing to compare"
    tier.write_pillar(tier.pillar_with_vrid_base(300))
    res = tier.apply()
    print(res.describe())
    for node in config.NODES:
        m = res.minions[node.name]
        assert not m.ok, f"{node.name} accepted VRIDs from 300"
        assert "proxytier:vip_pool:vrid_base = 300" in res.text(node.name), \
            f"{node.name}: unclear error: {res.text(node.name)}"
    tier.clear_pillar_override()
    for node in config.NODES:
        files, procs = before[node.name]
        assert tier.config_hashes(node) == files, f"{node.name}: config files changed"
        assert tier.daemon_processes(node) == procs, f"{node.name}: a daemon was reloaded or restarted"


def test_5a_change_refused_by_one_daemon_changes_no_daemon(clean_pillar) -> None:
    """All or nothing: a new VIP changes nginx.conf (trusted sources) and haproxy.cfg (binds), which
    their daemons accept, and keepalived.conf, which keepalived refuses (a raw `extra` line it does
    not know; the model itself now refuses an IPv6 VIP among IPv4 members): the apply fails on
    every node, and no config file changes and no daemon reloads, nginx and HAProxy included."""
    before = {n.name: (tier.config_hashes(n), tier.daemon_processes(n)) for n in config.NODES}
    tier.write_pillar(tier.pillar_with_vip("198.18.0.160/24", 60, instance_extra=["no_such_keyword 1"]))
    res = tier.apply()
    print(res.describe())
    for node in config.NODES:
        assert not res.minions[node.name].ok, f"{node.name} accepted a keepalived.conf keepalived refuses"
        text = res.text(node.name)
        assert "proxytier-check-keepalived" in text and "keepalived -t" in text, f"{node.name}: {text[-3000:]}"
    tier.clear_pillar_override()
    for node in config.NODES:
        files, procs = before[node.name]
        assert tier.config_hashes(node) == files, f"{node.name}: config files changed"
        assert tier.daemon_processes(node) == procs, f"{node.name}: a daemon was reloaded or restarted"


def test_5d_nginx_port_change_under_load_serves_the_new_port(clean_pillar) -> None:
    """Live equals config, and no request lost: moving a site's nginx port under load fails no
    request (nginx keeps the old port open until the next apply, while the HAProxies switch node
    by node); afterwards every HAProxy's live servers are at the new port (HAProxy's saved server
    state must not bring the old port back), and the next apply closes the old port and keeps the
    new one."""
    ask = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
        "s.sendall(sys.argv[1].encode() + b'\\n'); print(s.makefile().read())"
    )

    def live_ports() -> dict[str, set[str]]:
        """{node: ports of its HAProxy's be_app servers}, from `show servers state` (srv_port)."""
        out = {}
        for node in config.NODES:
            text = nodes.exec_(node, ["python3", "-c", ask, "show servers state be_app"]).stdout
            header = text.splitlines()[1][2:].split()
            rows = [dict(zip(header, ln.split(), strict=True)) for ln in text.splitlines()[2:] if ln.strip()]
            out[node.name] = {r["srv_port"] for r in rows}
        return out

    try:
        with BackgroundLoad(config.VIPS, seconds=300, concurrency=3, timeout=5) as bg:
            time.sleep(1)
            tier.write_pillar(tier.pillar_with_site_change(nginx_port=8081))
            apply_ok()
            assert live_ports() == {n.name: {"8081"} for n in config.NODES}
            assert_serving()
            again = tier.pillar_with_site_change(nginx_port=8081)
            again["proxytier"]["haproxy"] = {"extra": {"defaults": ["# a second reload, the same ports"]}}
            tier.write_pillar(again)
            apply_ok()
            assert live_ports() == {n.name: {"8081"} for n in config.NODES}
            for node in config.NODES:
                listening = nodes.exec_(node, ["ss", "-Hltn"]).stdout
                assert f"{node.address}:8081 " in listening and f"{node.address}:8080 " not in listening, listening
            time.sleep(1)
        result = bg.result
        assert result is not None
        print(f"load while the nginx port moved: {table(result)}")
        assert result.total > 100, result.summary()
        assert result.failed == 0, result.summary()
    finally:
        tier.clear_pillar_override()
        apply_ok()
    assert live_ports() == {n.name: {"8080"} for n in config.NODES}


def filter_drops(node: config.Node, comment: str = "VRRP from a non-member") -> int:
    """Packets the node's filter dropped under the rules with this comment (nft counters)."""
    listing = json.loads(nodes.exec_(node, ["nft", "-j", "list", "chain", "inet", "proxytier_filter", "input"]).stdout)
    total = 0
    for item in listing["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("comment") == comment:
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total


def test_5e_spoofed_vrrp_from_a_non_member_moves_no_vip() -> None:
    """A host on the tier's LAN that is not a member (the lab host) sends priority-255 VRRPv3
    adverts for the first VIP's VRID, to every node and to the VRRP group: every node's packet
    filter drops them (its counter says so) and no VIP changes holder."""
    tier.wait_vips_settled()
    before_holders = nodes.vip_holders()
    before_drops = {n.name: filter_drops(n) for n in config.NODES}
    vip = config.VIPS[0]
    vrid = int(tier.vrrp_instances()[vip].removeprefix("VI_"))
    sent = spoof.send_adverts(vrid, vip, priority=255, count=30, interval=0.1)
    time.sleep(1)
    assert nodes.vip_holders() == before_holders
    dropped = {n.name: filter_drops(n) - before_drops[n.name] for n in config.NODES}
    print(f"sent {sent} spoofed adverts; dropped per node: {dropped}")
    assert all(d >= 30 for d in dropped.values()), dropped
    assert_serving()


def test_5h_nginx_listeners_take_only_the_tier_s_haproxies() -> None:
    """A LAN client that is not a member (the lab host) cannot reach a node's nginx directly (and so
    cannot hand it its own X-Forwarded-For or X-Forwarded-Proto): its SYNs are dropped and counted,
    while the tier keeps serving through every VIP."""
    for node in config.NODES:
        before = filter_drops(node, "nginx from a non-member")
        with pytest.raises(TimeoutError):
            socket.create_connection((node.address, 8080), timeout=1.0).close()
        assert filter_drops(node, "nginx from a non-member") > before, node.name
    assert_serving()


def test_5f_an_apply_returns_and_caches_no_key_material(clean_pillar, tmp_path) -> None:
    """A TLS site from pillar PEM text: the file reaches every node (0600, HAProxy serves it), and
    neither the apply's return data, `proxytier.model`, nor the master's job cache contain the key."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=app.example",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    key = (tmp_path / "key.pem").read_text()
    secret = key.splitlines()[5]  # one line (64 characters) from the middle of the key's base64
    try:
        data = tier.default_pillar()
        data["proxytier"]["sites"][0]["tls"] = {"certificate": (tmp_path / "cert.pem").read_text(), "key": key}
        tier.write_pillar(data)
        res = apply_ok()
        assert secret not in json.dumps(res.raw), "key material in the apply's return data"
        master.salt(["salt", "proxy1", "saltutil.refresh_pillar", "wait=True"], timeout=120, check=True)
        model = master.salt(["salt", "proxy1", "proxytier.model", "--out=json"], timeout=120)
        assert "app.pem" in model.stdout, model.stdout[-2000:]
        assert secret not in model.stdout, "key material in proxytier.model"
        jobs = config.SALT_DIR / "cache" / "jobs"
        leaked = [p for p in jobs.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert not leaked, f"key material in the master's job cache: {leaked[:3]}"
        for node in config.NODES:
            mode = nodes.exec_(node, ["stat", "-c", "%a %U", "/etc/haproxy/proxytier-tls/app.pem"]).stdout.split()
            assert mode == ["600", "root"], f"{node.name}: {mode}"
            got = nodes.exec_(node, ["python3", "-c", (
                "import socket, ssl; c = ssl.create_default_context(); c.check_hostname = False; "
                "c.verify_mode = ssl.CERT_NONE; s = c.wrap_socket(socket.create_connection(('"
                + config.VIPS[0] + "', 443), timeout=5)); print(s.version())")]).stdout.strip()
            assert got.startswith("TLSv1."), f"{node.name}: no TLS on {config.VIPS[0]}:443: {got}"
    finally:
        tier.clear_pillar_override()
        apply_ok()


ROGUE_CONF = f"""id: proxy-rogue
master: {config.HOST_ADDR}
pki_dir: /etc/salt-rogue/pki
cachedir: /var/cache/salt-rogue
sock_dir: /run/salt-rogue
pidfile: /run/salt-rogue.pid
log_file: /var/log/salt-rogue.log
acceptance_wait_time: 1
"""


def test_5g_a_minion_outside_the_allow_list_becomes_no_member(clean_pillar) -> None:
    """Membership from the mine is authorised, not self-declared: with the lab pillar's
    members_from_mine (target 'proxy*', allow-list ids proxy[0-9]* in the lab network), a fourth
    minion "proxy-rogue" (a second salt-minion inside proxy3) that matches the target and publishes
    mine data like the others is listed under members_ignored and is a member of nothing: no HAProxy
    server, no unicast peer."""
    victim = config.NODES[2]
    nodes.exec_(victim, ["sh", "-c", "mkdir -p /etc/salt-rogue && cat > /etc/salt-rogue/minion"], input_text=ROGUE_CONF)
    nodes.exec_(victim, ["systemd-run", "--unit=proxytier-rogue-minion", "/opt/salt/bin/salt-minion",
                         "-c", "/etc/salt-rogue"])
    try:
        master.accept_keys(["proxy-rogue"])
        master.wait_ping([*[n.name for n in config.NODES], "proxy-rogue"])
        master.sync(["proxy-rogue"])
        master.salt(["salt", "proxy*", "mine.update"], timeout=120, check=True)
        mine = master.salt_json(["salt", "proxy1", "mine.get", "proxy*", "proxytier_address"])["proxy1"]
        assert "proxy-rogue" in mine, f"the rogue minion published no mine data: {mine}"
        apply_ok(",".join(n.name for n in config.NODES))
        model = master.salt_json(["salt", "proxy1", "proxytier.model"])["proxy1"]
        assert [m["id"] for m in model["members"]] == [n.name for n in config.NODES]
        assert model["members_source"] == "mine"
        assert [i["id"] for i in model["members_ignored"]] == ["proxy-rogue"], model["members_ignored"]
        for node in config.NODES:
            haproxy_cfg = nodes.exec_(node, ["cat", "/etc/haproxy/haproxy.cfg"]).stdout
            assert "proxy-rogue" not in haproxy_cfg
        assert_serving()
    finally:
        nodes.exec_(victim, ["systemctl", "stop", "proxytier-rogue-minion"], check=False)
        master.salt(["salt-key", "-y", "-d", "proxy-rogue"], timeout=30)
        apply_ok()


class TestManySitesOnTheVips:
    """Three sites routed by host name share every VIP's 80 and 443 (lab.vhosts): certificates by SNI
    (a chain from the lab CA, verified with the host name), pools by Host and path, the redirect,
    HSTS, HTTP/2 by ALPN, 421 for a Host no site claims; then a renewal and a new site under load."""

    @pytest.fixture(scope="class")
    def sites(self, lab: None) -> Iterator[tuple[vhosts.Certs, str]]:
        tier.clear_pillar_override()
        try:
            yield vhosts.enable()
        finally:
            vhosts.disable()

    def test_5i_each_host_name_gets_its_certificate_and_its_pool_through_every_vip(self, sites) -> None:
        certs, cafile = sites
        answered_by: set[str] = set()
        for vip in config.VIPS:
            for host, (site, pool) in vhosts.HOSTS.items():
                where = f"{host} via {vip}"
                hs = vhosts.handshake(vip, host, cafile)  # OpenSSL verifies the chain and the host name
                assert hs.serial == certs.serial(site), f"{where}: not {site}'s certificate ({hs.names})"
                assert hs.alpn == "h2" and hs.version in ("TLSv1.2", "TLSv1.3"), f"{where}: {hs}"
                for _ in range(len(config.NODES)):
                    a = vhosts.https_get(vip, host, "/lab", cafile)
                    assert a.status == 200 and a.doc.get("host") == host, f"{where}: {a}"
                    assert a.doc.get("x_forwarded_proto") == "https", f"{where}: {a.doc}"
                    assert a.doc.get("x_real_ip") == config.HOST_ADDR, f"{where}: client address {a.doc}"
                    assert a.doc["backend"] in vhosts.POOLS[pool], f"{where}: {a.doc['backend']} is not in {pool}"
                    assert a.headers.get("strict-transport-security") == vhosts.HSTS, f"{where}: {a.headers}"
                    answered_by.add(config.NODE_BY_ADDRESS.get(a.doc["peer"], a.doc["peer"]))
                version, status, doc = vhosts.h2_get(vip, host, cafile)
                assert (version, status) == ("2", 200) and doc["backend"] in vhosts.POOLS[pool], f"{where}: h2"
                plain = vhosts.http_get(vip, host, "/lab?x=1")
                assert (plain.status, plain.headers.get("location")) == (301, f"https://{host}/lab?x=1"), where
            api = [vhosts.https_get(vip, vhosts.API_HOST, path, cafile) for path in ("/api", "/api/v1/items")]
            assert {a.doc["backend"] for a in api} <= set(vhosts.POOLS["api"]), [a.doc for a in api]
            not_api = vhosts.https_get(vip, vhosts.API_HOST, "/apiary", cafile)
            assert not_api.doc["backend"] in vhosts.POOLS["web"], not_api.doc
            unclaimed = vhosts.https_get(vip, vhosts.UNCLAIMED_HOST)
            assert unclaimed.status == 421 and not unclaimed.doc, f"{vip}: {unclaimed}"
            # no SNI at all: the default certificate (the first site's, as no site is `default`)
            assert vhosts.handshake(vip, None, None).serial == certs.serial("www")
        assert answered_by == node_names(), f"nginx nodes that answered: {answered_by}"
        # per-site metrics on every node: the pillar's site names (never a client's Host name), and the
        # Host no site claims (one 421 per VIP above) under one label
        def by_site(node: config.Node) -> dict[tuple[str, str], float]:
            return {(s.labels["site"], s.labels["status_class"]): s.value for s in scrape(node)
                    if s.name == "proxytier_nginx_site_requests_total"}

        def counted() -> bool:  # nginx writes the exporter's log once a second, which reads it once a second
            seen = [by_site(node) for node in config.NODES]
            return (all(got.get((site, "2xx"), 0) > 0 for got in seen for site in ("www", "shop", "api"))
                    and sum(got.get(("__unclaimed__", "4xx"), 0) for got in seen) >= len(config.VIPS))

        wait_for("every node's exporter to count the requests above", counted, timeout=10)
        unclaimed = 0.0
        for node in config.NODES:
            sites = by_site(node)
            assert not [site for site, _ in sites if "." in site], f"{node.name}: a Host as a label: {sites}"
            assert all(sites.get((site, "2xx"), 0) > 0 for site in ("www", "shop", "api")), sites
            unclaimed += sites.get(("__unclaimed__", "4xx"), 0)
        assert unclaimed >= len(config.VIPS), f"{unclaimed} requests counted as __unclaimed__"

    def test_5j_a_certificate_renewal_and_a_new_site_under_load_fail_nothing(self, sites, measure) -> None:
        certs, cafile = sites
        renewed = vhosts.Certs(certs.ca, {**certs.sites, "www": make_cert(["www.example.com", "example.com"], "ec",
                                                                           issuer=certs.ca)})
        blog, _ = vhosts.new_site(certs, "blog", "blog.example.com")
        with BackgroundLoad(config.VIPS, seconds=300, concurrency=3, timeout=5, port=443, tls=True,
                            hosts=list(vhosts.HOSTS)) as bg:
            time.sleep(1)
            t0 = time.monotonic()
            tier.write_pillar(vhosts.pillar(renewed, [blog]))
            apply_ok()
            measure("vhosts_renewal_and_new_site_apply", time.monotonic() - t0)
            for vip in config.VIPS:
                hs = vhosts.handshake(vip, "www.example.com", cafile)
                assert hs.serial == renewed.serial("www"), f"{vip} still serves the old www certificate"
                assert vhosts.handshake(vip, "blog.example.com", cafile).names == ["blog.example.com"]
                new = vhosts.https_get(vip, "blog.example.com", "/lab", cafile)
                assert new.status == 200 and new.doc["backend"] in vhosts.POOLS["web"], f"{vip}: {new}"
            time.sleep(1)
        result = bg.result
        assert result is not None
        print(f"HTTPS load over {len(vhosts.HOSTS)} host names during the apply: {table(result)}")
        assert result.total > 100, result.summary()
        assert result.failed == 0, result.summary()
        assert set(result.by_backend) == {b for p in ("web", "shop") for b in vhosts.POOLS[p]}, table(result)


@pytest.fixture(scope="class")
def dual(lab: None) -> Iterator[list[str]]:
    """The lab in dual stack for a class's tests (lab.dualstack) -> every VIP of both families; then
    back to the checkout's pillar, the IPv6 VIPs gone."""
    tier.clear_pillar_override()
    try:
        dualstack.enable()
        vips = config.VIPS + config.VIPS6
        tier.wait_vips_settled(vips=vips)
        yield vips
    finally:
        dualstack.disable()
        wait_for("the IPv6 VIPs to be gone", lambda: not any(nodes.vip_holders(config.VIPS6).values()),
                 timeout=30)


def leave_if_left_behind(name: str) -> None:
    """A test that added a node and failed before it left: the node leaves (the formula's leave, else it is
    powered off and its key deleted), so that the tests after it find the lab's three nodes."""
    if config.node(name) not in config.NODES:
        return
    try:
        cluster.leave_node(name)
    except Exception as e:  # the test's own failure is the one to report
        print(f"{name} left behind by a failed test, and its leave failed too ({e}): powering it off")
    if config.node(name) in config.NODES:
        cluster.remove_node(name)


class TestDualStack:
    """The tier in dual stack (lab.dualstack): each node the preferred holder of an IPv4 VIP and of its
    IPv6 twin (VRRPv3), members' IPv6 addresses from the mine, backends reached by either family."""

    def test_5k_every_vip_of_both_families_reaches_every_nginx_and_backend(self, dual) -> None:
        """Twins at home on the same node, each node home to one of each family; through every VIP, on
        the site passing the client address in X-Forwarded-For and on the one passing it in PROXY v2:
        0 failed, every nginx and every backend (be2 by IPv6), the client's address of the VIP's family;
        the exporters agree with the kernel on both families' VIPs and instances."""
        holders = nodes.vip_holders(dual)
        for v4, v6 in zip(config.VIPS, config.VIPS6, strict=True):
            assert holders[v4] == holders[v6], f"twins {v4} and {v6} on different nodes: {holders}"
        assert {h[0] for h in holders.values()} == node_names(), holders
        for vip, port in itertools.product(dual, (80, dualstack.PROXY_V2_PORT)):
            where = config.hostport(vip, port)
            result = run_load([vip], requests=120, seconds=60, concurrency=3, port=port)
            print(f"{where}: {table(result)}")
            assert result.failed == 0, f"{where}: {result.summary()}"
            assert set(result.by_node) == node_names(), f"{where}: {dict(result.by_node)}"
            assert set(result.by_backend) == BACKEND_NAMES, f"{where}: {dict(result.by_backend)}"
            # the client's own address, of the VIP's family, reaches every backend (X-Real-IP set by
            # nginx from HAProxy's X-Forwarded-For on 80, from HAProxy's PROXY v2 header on 8000)
            client = config.HOST_ADDR6 if ":" in vip else config.HOST_ADDR
            assert dict(result.clients) == {client: result.ok}, f"{where}: {dict(result.clients)}"
        assert_exporters_agree_with_the_kernel(dual)

    def test_5l_a_rolling_change_with_vip_handover_fails_nothing_on_either_family(self, dual, measure) -> None:
        """A change reloading every daemon, rolled with proxytier.orch.rolling (each node's VIPs of both
        families handed over and back) under load through every VIP of both families: 0 failed."""
        tier.write_pillar(tier.pillar_with_comment("# rolling-change dual stack", dualstack.pillar()))
        try:
            with BackgroundLoad(dual, seconds=400, concurrency=4, timeout=2) as bg:
                time.sleep(1)
                t0 = time.monotonic()
                proc = rolling(handover_vips=True)
                assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
                measure("dualstack_rolling_change_seconds", time.monotonic() - t0)
                time.sleep(1)
        finally:
            tier.write_pillar(dualstack.pillar())
        result = bg.result
        assert result is not None
        print(f"rolling change under load on both families: {table(result)}")
        MEASURED["dualstack_rolling_requests"] = result.total
        MEASURED["dualstack_rolling_failed_requests"] = result.failed
        assert all(result.by_target[vip] > 20 for vip in dual), dict(result.by_target)
        failed = [(round(x.start - t0, 2), x.target) for x in result.samples if not x.ok]
        MEASURED["dualstack_rolling_failed_requests_ipv6"] = sum(":" in target for _, target in failed)
        print(f"failed requests (seconds after the rollout began, VIP): {failed}")
        assert result.failed == 0, result.summary()
        tier.wait_vips_settled(vips=dual)
        assert_exporters_agree_with_the_kernel(dual)

    def test_5m_haproxy_killed_moves_both_of_its_vips_and_no_other_vip_notices(self, dual, measure) -> None:
        """HAProxy SIGKILLed (kept down) on the holder of the first IPv6 VIP: its IPv4 and IPv6 VIPs both
        move to survivors, the exporters show FAULT and the new MASTER of the IPv6 instance, the VIPs of
        both families on the other nodes fail nothing; HAProxy back, every VIP returns home."""
        initial = nodes.vip_holders(dual)
        vip6 = config.VIPS6[0]
        vip4 = config.VIPS[0]
        victim = config.node(initial[vip6][0])
        others = [v for v in dual if v not in (vip4, vip6)]
        try:
            with (
                BackgroundLoad([vip6], seconds=180, concurrency=2, timeout=CHAOS_TIMEOUT) as on_vip,
                BackgroundLoad(others, seconds=180, concurrency=2, timeout=5) as on_others,
            ):
                time.sleep(1)
                t_kill = kill_haproxy_for_good(victim)
                wait_for(f"{vip6} and {vip4} to leave {victim.name}", lambda: all(
                    (h := nodes.vip_holders([v])[v]) != [] and victim.name not in h for v in (vip6, vip4)),
                    timeout=30, interval=0.1)
                measure("dualstack_haproxy_kill_to_both_vips_moved", time.monotonic() - t_kill)
                time.sleep(2)
                # each on one survivor; not necessarily the same one: a VIP's backup order is the
                # rendezvous order of its own address, so a lost node's VIPs spread over the survivors
                moved = nodes.vip_holders([vip4, vip6])
                assert all(len(h) == 1 and h != [victim.name] for h in moved.values()), moved
                assert_exporter_sees_fault_and_new_master(victim, config.node(moved[vip6][0]), vip6)
                heal_haproxy(victim)
                wait_for("the VIPs to return to their preferred nodes", lambda: nodes.vip_holders(dual) == initial,
                         timeout=60)
                time.sleep(2)
        finally:
            heal_haproxy(victim)
        # the restarted HAProxy (after the rolling change above) sends to every nginx, its own node's too:
        # it starts from the server states set last, not from a drain saved during the rollout
        for vip in (vip4, vip6):
            spread = run_load([vip], requests=60, seconds=20, concurrency=2)
            assert spread.failed == 0 and set(spread.by_node) == node_names(), f"{vip}: {table(spread)}"
        vip_result, other_result = on_vip.result, on_others.result
        assert vip_result is not None and other_result is not None
        print(f"on {vip6}: {table(vip_result)}\nothers of both families: {table(other_result)}")
        measure("dualstack_haproxy_kill_client_outage_ipv6", vip_result.max_gap(vip6))
        assert vip_result.ok > 0
        assert other_result.failed == 0, f"other VIPs must not notice: {other_result.summary()}"
        assert_moved_vip_bounds("dualstack_haproxy_kill", vip_result, [vip6], clients=2, moves=2)


def kill_haproxy_for_good(victim: config.Node) -> float:
    """SIGKILL every HAProxy process of the node, masked first so that systemd's Restart=always cannot
    bring it straight back: it stays dead until heal_haproxy(). -> time.monotonic() of the kill."""
    nodes.exec_(victim, ["systemctl", "mask", "--runtime", "haproxy"])
    t_kill = time.monotonic()
    for _, pid, _ in tier.daemon_processes(victim, "haproxy"):
        with contextlib.suppress(ProcessLookupError):  # a worker of a past reload may exit first
            os.kill(pid, signal.SIGKILL)
    wait_for("HAProxy to be gone", lambda: not tier.daemon_processes(victim, "haproxy"), timeout=10)
    return t_kill


def heal_haproxy(victim: config.Node) -> None:
    """Undo kill_haproxy_for_good(): unmask, clear the failure, start HAProxy."""
    nodes.exec_(victim, ["systemctl", "unmask", "--runtime", "haproxy"], check=False)
    nodes.exec_(victim, ["systemctl", "reset-failed", "haproxy"], check=False)
    nodes.exec_(victim, ["systemctl", "start", "haproxy"])


def assert_exporter_sees_fault_and_new_master(victim: config.Node, holder: config.Node, vip: str) -> None:
    """The victim's exporter: haproxy collector down, the others up, the VIP's instance in FAULT; the new
    holder's: MASTER of that instance and owner of the VIP."""
    victim_samples, holder_samples = scrape(victim), scrape(holder)
    up = collectors(victim_samples)
    assert up["haproxy"] == 0 and up["keepalived"] == up["nginx"] == up["vip"] == 1, up
    assert vrrp_states(victim_samples)[instance_of(vip)] == "FAULT", vrrp_states(victim_samples)
    assert vrrp_states(holder_samples)[instance_of(vip)] == "MASTER", vrrp_states(holder_samples)
    assert any(s.name == "proxytier_vip_owned" and s.labels["vip"] == vip and s.value == 1 for s in holder_samples)


def isolate_nodes(on: bool, check: bool = True) -> None:
    """Block (on) or allow VRRP and everything else between the nodes: their bridge ports isolated from
    each other; the host, Prometheus and the backends still reach every node."""
    for n in config.NODES:
        run(["bridge", "link", "set", "dev", f"vb-{n.name}", "isolated", "on" if on else "off"], check=check)


def wait_split_brain() -> None:
    wait_for("every node to hold every VIP", lambda: all(len(h) == len(config.NODES)
                                                          for h in nodes.vip_holders().values()), timeout=30)


def test_5b_vrrp_blocked_between_nodes_is_split_brain_then_heals(measure) -> None:
    """VRRP blocked between the nodes (bridge ports isolated from each other; the host,
    Prometheus and backends still reach them) -> every node becomes MASTER: the split-brain alerts fire;
    unblocked -> one MASTER per VIP again, the alerts clear, every VIP serves (time measured)."""
    tier.wait_vips_settled()
    try:
        isolate_nodes(True)
        wait_split_brain()
        for alert in ("ProxytierVRRPSplitBrain", "ProxytierVIPOnSeveralNodes"):  # `for: 30s`
            wait_for(f"{alert} to fire", lambda a=alert: alert_active(a, "firing"), timeout=90, interval=1)
    finally:
        isolate_nodes(False, check=False)
    t_heal = time.monotonic()
    tier.wait_vips_settled()

    def serves_cleanly() -> bool:
        return run_load(config.VIPS, requests=60, seconds=10, concurrency=3, timeout=1).failed == 0

    wait_for("every VIP to serve cleanly again", serves_cleanly, timeout=60, interval=0.5)
    measure("split_brain_heal_to_serving", time.monotonic() - t_heal)
    wait_for("the split-brain alerts to clear", lambda: not alert_active("ProxytierVRRPSplitBrain")
             and not alert_active("ProxytierVIPOnSeveralNodes"), timeout=60, interval=1)
    assert_serving()


SPLIT_BRAIN_HEALS = 10
HEAL_BOUND = 1.0  # seconds from the heal until every VIP answers well


def test_5b2_a_healed_split_brain_serves_every_vip_within_a_second_every_time(measure) -> None:
    """VRRP blocked between the nodes (each becomes MASTER of every VIP), then unblocked, SPLIT_BRAIN_HEALS
    times, under an open-loop probe (a new connection every 10 ms per VIP, bench/failover's): after every
    heal each VIP answers well (HTTP 200 within 0.3 s, and from then on) within HEAL_BOUND s. The host's
    ARP entry may point at a node that yields the VIP: the yielding MASTER sends one more advert at its own
    priority (vrrp_higher_prio_send_advert), so the winner hears a lower priority and re-announces the
    VIP (vrrp_garp_lower_prio_repeat) at once, instead of the client waiting for its entry to go stale."""
    from bench.failover import stats
    from bench.failover.probe import BackgroundProbe, Target

    tier.wait_vips_settled()
    heals: list[dict[str, float]] = []
    try:
        for _ in range(SPLIT_BRAIN_HEALS):
            isolate_nodes(True)
            wait_split_brain()
            time.sleep(1.5)  # every node past its MASTER transition's gratuitous ARP rounds
            probe = BackgroundProbe([Target(v) for v in config.VIPS], interval=0.01, timeout=2.0,
                                    max_seconds=20).start()
            time.sleep(0.5)
            t_heal = time.monotonic()
            isolate_nodes(False)
            tier.wait_vips_settled()
            time.sleep(3)
            records = probe.stop().records
            heal = {}
            for v in config.VIPS:
                span = stats.outage_span(records, Target(v).name, t_heal)
                if span is None:
                    heal[v] = 0.0
                else:  # not recovered before the probe stopped: never
                    heal[v] = round(span[1] - t_heal, 3) if span[2] else float("inf")
            heals.append(heal)
            print(f"split brain healed: seconds until each VIP answers well: {heal}")
    finally:
        isolate_nodes(False, check=False)
    worst = [max(h.values()) for h in heals]
    measure("split_brain_heal_worst_vip_median", sorted(worst)[len(worst) // 2])
    measure("split_brain_heal_worst_vip_max", max(worst))
    assert all(w <= HEAL_BOUND for w in worst), f"heals slower than {HEAL_BOUND} s: {heals}"
    tier.wait_vips_settled()
    chaos.wait_settled()


def test_5c_backend_stopped_raises_the_backend_alert() -> None:
    """an application backend stopped under load -> nginx retries elsewhere (no failed
    request) and the upstream alert fires; the backend back -> it serves again."""
    be1 = config.BACKENDS[0]
    try:
        with BackgroundLoad(config.VIPS, seconds=300, concurrency=3, timeout=5) as bg:
            time.sleep(1)
            net.backend_down(be1)
            wait_for("ProxytierUpstreamDegraded to fire (`for: 1m`)",
                     lambda: alert_active("ProxytierUpstreamDegraded", "firing"), timeout=240, interval=1)
        result = bg.result
        assert result is not None
        print(table(result))
        assert result.failed == 0, result.summary()
    finally:
        net.backend_up(be1)
    wait_for("be1 to serve again", lambda: "be1" in run_load(config.VIPS, requests=60, seconds=20,
                                                             concurrency=3).by_backend, timeout=60)


@pytest.mark.core
def test_6_haproxy_killed_on_vip_master_moves_vip_and_heals(measure) -> None:
    """HAProxy killed (and kept down) on the master of a VIP -> VIP moves, traffic continues;
    HAProxy back -> the tier heals (the VIP returns to its preferred node)."""
    tier.wait_vips_settled()
    initial = nodes.vip_holders()
    vip = config.VIPS[0]
    victim = config.node(initial[vip][0])
    others = [v for v in config.VIPS if v != vip]

    try:
        with (
            BackgroundLoad([vip], seconds=180, concurrency=2, timeout=CHAOS_TIMEOUT) as on_vip,
            BackgroundLoad(others, seconds=180, concurrency=2, timeout=5) as on_others,
        ):
            time.sleep(1)
            t_kill = kill_haproxy_for_good(victim)
            wait_for(
                f"{vip} to leave {victim.name}",
                lambda: (h := nodes.vip_holders()[vip]) != [] and victim.name not in h,
                timeout=30,
                interval=0.1,
            )
            measure("haproxy_kill_to_vip_moved", time.monotonic() - t_kill)
            # the next scrape shows it. The victim: haproxy collector down, the others up, its
            # instance in FAULT; the new holder: MASTER of that instance and owner of the VIP.
            new_holder = config.node(nodes.vip_holders()[vip][0])
            assert_exporter_sees_fault_and_new_master(victim, new_holder, vip)
            # Prometheus sees this failover: the new holder's state for the instance just turned
            # MASTER, and the failover alert names it.
            sel = f'instance="{new_holder.name}", vrrp_instance="{instance_of(vip)}"'
            seen = (f'proxytier_keepalived_vrrp_state{{{sel}, state="MASTER"}} == 1 and '
                    f'changes(proxytier_keepalived_vrrp_state{{{sel}, state="MASTER"}}[30s]) > 0')
            wait_for("Prometheus to see the new MASTER", lambda: bool(promql(seen)), timeout=30, interval=1)
            # the rule is evaluated every evaluation_interval after the scrape that saw it (2 s in the lab)
            wait_for("the ProxytierVRRPFailover alert", lambda: bool(promql(
                f'ALERTS{{alertname="ProxytierVRRPFailover", {sel}}}')), timeout=15, interval=0.5)
            time.sleep(3)
            after_move = run_load([vip], requests=100, seconds=20, concurrency=2)
            assert after_move.failed == 0, f"traffic on {vip} after the move: {after_move.summary()}"
            heal_haproxy(victim)
            wait_for("the VIPs to return to their preferred nodes", lambda: nodes.vip_holders() == initial, timeout=60)
            time.sleep(2)
    finally:
        heal_haproxy(victim)
    vip_result, other_result = on_vip.result, on_others.result
    assert vip_result is not None and other_result is not None
    print(f"on {vip}: {table(vip_result)}\nothers: {table(other_result)}")
    measure("haproxy_kill_client_outage", vip_result.max_gap(vip))
    assert vip_result.ok > 0
    assert other_result.failed == 0, f"other VIPs must not notice: {other_result.summary()}"
    assert_moved_vip_bounds("haproxy_kill", vip_result, [vip], clients=2, moves=2)
    assert_serving()


def test_7_node_stopped_vip_moves_to_survivor_and_node_returns(measure) -> None:
    """a node container stops -> its VIP moves to a survivor, the tier keeps serving; it returns."""
    tier.wait_vips_settled()
    initial = nodes.vip_holders()
    vip = config.VIPS[1]
    victim = config.node(initial[vip][0])
    survivors = [n for n in config.NODES if n != victim]
    try:
        with BackgroundLoad([vip], seconds=240, concurrency=2, timeout=CHAOS_TIMEOUT) as on_vip:
            time.sleep(1)
            t0 = time.monotonic()
            nodes.stop(victim, wait=False)  # SIGTERM: the node shuts down cleanly
            wait_for(
                f"{vip} on a survivor",
                lambda: nodes.vip_holders()[vip] not in ([], [victim.name]),
                timeout=30,
                interval=0.1,
            )
            measure("node_stop_to_vip_moved", time.monotonic() - t0)
            wait_for(f"{victim.name} to stop", lambda: not nodes.running(victim), timeout=90)
            measure("node_shutdown", time.monotonic() - t0)
            time.sleep(2)
            during = run_load(config.VIPS, requests=150, seconds=30, concurrency=3)
            print(f"with {victim.name} down: {table(during)}")
            MEASURED["node_stopped_steady_failed_requests"] = during.failed
            MEASURED["node_stopped_steady_errors"] = dict(during.errors)
            # A connection reset was seen here once in seven runs, long ago; it never recurred (0 of 24,000
            # requests over 7 node stops in a scratch loop of this load, and every full run since): none may
            # fail, and the summary names the error class if one does.
            assert during.failed == 0, during.summary()
            assert set(during.by_node) == {n.name for n in survivors}, table(during)
        vip_result = on_vip.result
        assert vip_result is not None
        print(f"on {vip} across the stop: {table(vip_result)}")
        measure("node_stop_client_outage", vip_result.max_gap(vip))
        assert_moved_vip_bounds("node_stop", vip_result, [vip], clients=2, moves=1)
    finally:
        # bring it back: same overlay, so it boots with the formula applied; its minion reconnects
        nodes.stop(victim)
        ready_before = nodes.minion_ready_count(victim)
        t_back = time.monotonic()
        nodes.start(victim)
        nodes.wait_booted(victim)
    wait_for("its salt-minion", lambda: nodes.minion_ready_count(victim) > ready_before, timeout=120)
    master.wait_ping([victim.name])
    wait_for("the VIPs to return to their preferred nodes", lambda: nodes.vip_holders() == initial, timeout=90)
    measure("node_start_to_vip_back", time.monotonic() - t_back)
    assert tier.services_active(victim) == dict.fromkeys(tier.DAEMONS, "active")
    assert_serving()


REPAIR_AFTER = 3.0  # seconds a fault that needs an operator (node off, link down, backend dead) lasts
MOVE_WINDOW = 3.0  # failures are allowed only this long after a fault or its repair, and only if a VIP moves
CHAOS_CONCURRENCY = 3  # the chaos load's clients: each has at most one request in flight when a VIP moves
CHAOS_TIMEOUT = 2.0  # the chaos load's request timeout (s)
# The longest a moved VIP may go without an answer: a request in flight when its holder vanished times out
# (CHAOS_TIMEOUT; the three clients may all be waiting at once), plus three times the slowest VIP move
# bench/failover measures by median (0.3 s: HAProxy SIGKILL, keepalived SIGKILL; BENCHMARKS.md). Measured
# 1.0 to 2.1 s. With failover 10x slower (master-down ~3.4 s) the VIP is silent longer than this.
CHAOS_MAX_GAP = CHAOS_TIMEOUT + 3 * 0.3


def assert_moved_vip_bounds(event: str, result: Any, vips: list[str], clients: int, moves: int) -> None:
    """Load `result` through `vips`, whose holder failed (and maybe came back: `moves` VIP moves, with
    `clients` load clients): no new connection refused (while no HAProxy listens on a VIP its SYNs wait for
    the next holder: proxytier_firewall), at most one failed request per client and move (the one in
    flight), and no VIP silent longer than CHAOS_MAX_GAP s. Records EVENT_max_gap_s."""
    failed = [s for s in result.samples if not s.ok]
    gaps = {v: round(result.max_gap(v), 2) for v in vips}
    MEASURED[f"{event}_max_gap_s"] = max(gaps.values(), default=0.0)
    detail = f"{[(s.target, s.error) for s in failed]}: {result.summary()}"
    assert not [s for s in failed if s.error.startswith("ConnectionRefused")], f"{event}: refused: {detail}"
    assert len(failed) <= moves * clients, f"{event}: more than one failed request per client and move: {detail}"
    assert max(gaps.values(), default=0.0) <= CHAOS_MAX_GAP, f"{event}: a VIP answered nothing for {gaps} s"


@pytest.mark.usefixtures("dual")
class TestChaosMatrixInDualStack:
    """The chaos matrix, with the tier in dual stack: the load runs through every VIP of both families,
    so each fault is judged on the IPv6 VIPs with the same acceptance as on the IPv4 ones."""

    @pytest.mark.parametrize("event", sorted(chaos.EVENTS))
    def test_8_chaos_the_tier_recovers_unaided_and_loses_nothing_beyond_the_vip_move(self, event: str,
                                                                                    measure) -> None:
        chaos_case(event, measure)


def chaos_case(event: str, measure: Callable[[str, float], None]) -> None:
    """each fault on the node holding the first VIP (daemons killed, node lost, link down, a backend
    killed), under load through every VIP the tier serves. The tier recovers unaided (after the
    repair an operator would make, for faults that need one): every VIP back on its preferred node,
    alone, every daemon active. Bounds, per fault:
    - faults that move no VIP fail no request;
    - the others fail requests only on the victim's VIPs (unless chaos.Event.other_vips_fail), only
      within MOVE_WINDOW s of the fault or of its repair, and at most one per client for each of the
      VIP's two moves (away and back: the request it had in flight then);
    - no new connection is refused (while no HAProxy listens on a VIP its SYNs wait for the next
      holder: proxytier_firewall), and no victim VIP goes without an answer longer than CHAOS_MAX_GAP s.
    Recorded: failed (all, IPv6), slow (> 0.5 s) and the longest gap per fault."""
    ev = chaos.EVENTS[event]
    chaos.wait_settled()  # start from the preferred placement, not from the previous test's recovery
    placement = chaos.home()
    victim = config.node(placement[config.VIPS[0]][0])
    vips = tier.served_vips()
    victim_vips = [v for v in vips if placement[v] == [victim.name]]
    with BackgroundLoad(vips, seconds=300, concurrency=CHAOS_CONCURRENCY, timeout=CHAOS_TIMEOUT) as bg:
        time.sleep(1)
        t_fault = time.monotonic()
        repair = ev.inject(victim)
        t_repair = t_repaired = None
        if repair:
            time.sleep(REPAIR_AFTER)
            t_repair = time.monotonic()
            repair()  # a node boots during its repair: its VIPs may come back before repair() returns
            t_repaired = time.monotonic()
        if event == "keepalived_sigkill":  # SIGKILL leaves the addresses: they must not linger
            wait_for("the VIP to be on one node only", lambda: tier.vips_settled(vips), timeout=10, interval=0.05)
        chaos.wait_settled()
        # a backend back from the dead is retried by nginx after fail_timeout (10 s)
        wait_for("every backend to serve through the tier again", lambda: BACKEND_NAMES <= set(
            run_load(vips, requests=60, seconds=5, concurrency=3).by_backend), timeout=60, interval=0.5)
        measure(f"chaos_{event}_to_settled", time.monotonic() - (t_repaired or t_fault))
        time.sleep(1)
    result = bg.result
    assert result is not None and result.ok > 100, result
    print(f"{event} on {victim.name}, through {len(vips)} VIPs: {table(result)}")
    failed = [s for s in result.samples if not s.ok]
    MEASURED[f"chaos_{event}_failed_requests"] = len(failed)
    MEASURED[f"chaos_{event}_failed_requests_ipv6"] = sum(":" in s.target for s in failed)
    MEASURED[f"chaos_{event}_slow_requests"] = sum(1 for s in result.samples if s.ok and s.end - s.start > 0.5)
    if not ev.moves_vip:
        assert not failed, f"{event} moves no VIP, yet: {result.summary()}"
    windows = [(t_fault, t_fault + MOVE_WINDOW)]
    if t_repair and t_repaired:
        windows.append((t_repair, t_repaired + MOVE_WINDOW))
    detail = f"{[(s.target, round(s.start - t_fault, 2), s.error) for s in failed]}: {result.summary()}"
    outside = [round(s.start - t_fault, 2) for s in failed if not any(a - 0.1 <= s.start <= b for a, b in windows)]
    assert not outside, f"{event}: requests failed outside the VIP-move windows, at +{outside} s: {result.summary()}"
    moves = 2  # the victim's VIPs move away and back: each client may lose the request it had in flight
    if ev.other_vips_fail:
        moves += 1  # and the request it had sent through another VIP to the victim's nginx
    else:
        assert {s.target for s in failed} <= set(victim_vips), f"{event}: a VIP that did not move failed: {detail}"
    assert_moved_vip_bounds(f"chaos_{event}", result, victim_vips, CHAOS_CONCURRENCY, moves)
    assert_serving()


# --- the elastic tier: nodes join and leave a serving tier (last: they change the lab's size) ---------


def tier_config_mentions(node: config.Node, address: str) -> dict[str, bool]:
    """{config file: whether it mentions `address`} for haproxy.cfg and keepalived.conf on `node`."""
    return {path: bool(re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", nodes.exec_(node, ["cat", path]).stdout))
            for path in ("/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf")}


def scraped_instances() -> set[str]:
    """The instances the lab's Prometheus scrapes now (its file_sd targets, from the mine)."""
    url = f"{prometheus.URL}/api/v1/targets?state=active"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    return {t["labels"]["instance"] for t in body["data"]["activeTargets"] if t["labels"].get("job") == prometheus.JOB}


def assert_lost_nothing(event: str, result: Any, min_ok: int, watch: tier.VipWatch, vips: list[str]) -> None:
    """After a join or leave under load: more than `min_ok` requests answered, 0 failed (recorded as
    EVENT_failed_requests), and none of `vips` changed holder in any sample of `watch`."""
    assert result is not None and result.ok > min_ok, result
    print(f"{event} under load: {table(result)}; {len(watch.samples)} VIP samples")
    MEASURED[f"{event}_failed_requests"] = result.failed
    assert result.failed == 0, result.summary()
    assert not watch.moves(vips), f"{event}: a VIP of a node that stays moved: {watch.moves(vips)[:10]}"


@pytest.fixture(scope="class")
def bgp_mode(lab: None) -> Iterator[None]:
    """The lab in BGP mode for a class's tests (lab.bgp: the router and the client up, the BGP-mode pillar
    applied, the router forwarding to every node); back to VRRP at the end if a test left it there (the
    class's last test makes that switch and checks it)."""
    tier.clear_pillar_override()
    try:
        t0 = time.monotonic()
        MEASURED["bgp_first_apply"] = bgp.enable("plain")
        MEASURED["bgp_enable_to_three_next_hops"] = round(time.monotonic() - t0, 2)
        yield
    finally:
        if router.running() or tier.current_pillar() != tier.default_pillar():
            bgp.disable()


def assert_exporter_sees_bgp(node: config.Node, announced: int) -> None:
    """The node's exporter in BGP mode: its bgp collector up; the gate announcing (`announced` 1) or not (0),
    HAProxy healthy, not held; its one session (to the lab's router) Established with BFD Up, exporting one
    route while announced; and no VRRP view (no VIP or keepalived series: every node holds the address)."""
    samples = scrape(node)
    up = collectors(samples)
    assert up.get("bgp") == 1 and "keepalived" not in up, f"{node.name}: {up}"

    def values(name: str, **labels: str) -> list[float]:
        return [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    gate = {k: values(f"proxytier_bgp_gate_{k}") for k in ("announced", "healthy", "held")}
    assert gate == {"announced": [announced], "healthy": [1], "held": [0]}, f"{node.name}: {gate}"
    assert values("proxytier_bgp_session_state", state="Established", peer_address=config.ROUTER_ADDR) == [1]
    assert values("proxytier_bgp_bfd_session_state", state="Up", peer_address=config.ROUTER_ADDR) == [1]
    assert sum(values("proxytier_bgp_routes_exported")) == announced, f"{node.name}: routes exported"
    assert not values("proxytier_vip_owned"), f"{node.name}: VIP ownership reported in BGP mode"


def wait_next_hop_gone(address: str, since: float, timeout: float = 10) -> float:
    """Seconds from `since` (time.monotonic()) until the router no longer forwards the service address to
    `address` (polled as fast as `ip` answers, a few ms); AssertionError after `timeout`."""
    while time.monotonic() - since < timeout:
        if address not in router.next_hops():
            return time.monotonic() - since
        time.sleep(0.005)
    raise AssertionError(f"the router still forwards {config.BGP_SERVICE} to {address}: {router.next_hops()}")


#: A draining router (the lab's resilient profile) keeps a graceful leaver's last hash bucket (weight 1 beside
#: 256 per other node: 1 of 512 buckets) until no packet hit it for idle_timer (2 s), and new connections keep
#: hashing into it: at R new connections/s it gets about R/512 a second, and the wait for a 2 s gap grows as
#: e^(2R/512) (measured: 48 s at ~900/s; a 40 s drain timed out once in CI at ~650/s). At 300/s it came here
#: about 1 s after the established connections' end, yet once in CI it ran past LEAVE_DRAIN (not explained):
#: 8f records whether the drain ended, and asserts the broken counts.
LEAVE_NEW_RATE = 300.0
LEAVE_DRAIN = 60.0


@pytest.mark.bgp
@pytest.mark.usefixtures("bgp_mode")
class TestBgpMode:
    """vip_mode bgp in the lab (lab.bgp, lab.router): every node announces 198.18.0.200 to a router running
    BIRD with ECMP, a client behind the router reaches the tier through that one address; a dead HAProxy
    takes its node out of the router's route; the lab goes back to VRRP mode and nothing of BGP mode stays."""

    def test_8a_bgp_mode_converges_and_the_router_has_one_next_hop_per_node(self, measure) -> None:
        """The BGP-mode apply converged (the fixture); BIRD and the gate active on every node, bird2 installed by
        apt, keepalived stopped; every session Established; the router's route has every node as a next hop;
        a second apply changes nothing."""
        addresses = sorted(n.address for n in config.NODES)
        for node in config.NODES:
            active = nodes.exec_(node, ["systemctl", "is-active", "bird", "proxytier-bgp-gate", "haproxy", "nginx",
                                        "keepalived"], check=False).stdout.split()
            assert active == ["active"] * 4 + ["inactive"], f"{node.name}: {active}"
            history = nodes.exec_(node, ["cat", "/var/log/apt/history.log"]).stdout
            assert " bird2:" in history, f"{node.name}: bird2 not installed by apt"
        assert router.sessions() == dict.fromkeys(node_names(), "Established"), router.sessions()
        assert router.bird_next_hops() == addresses and router.next_hops() == addresses
        for node in config.NODES:
            assert_exporter_sees_bgp(node, announced=1)
        queries = bgp_panel_queries()  # puts dashboards/ on sys.path (panel_queries)
        from proxytier_dashboards import probe

        def without_data() -> list[str]:
            results = probe.probe(prometheus.URL, queries, job=prometheus.JOB, rate_interval="30s")
            return [f"{r.name}{': ' + r.error if r.error else ''}" for r in results if r.error or r.series == 0]

        with contextlib.suppress(LabError):
            wait_for("every BGP panel of the dashboards to have data", lambda: not without_data(), timeout=60,
                     interval=2)
        assert not without_data(), f"BGP panels without data in BGP mode: {without_data()}"
        print(f"{len(queries)} BGP panel queries with data in the lab's Prometheus")
        route = router.ns_run(config.ROUTER_NETNS, "ip", "route", "show", router.service_prefix(), "table",
                              str(router.BIRD_TABLE))
        print(f"router: {route.strip()}")
        assert route.count("nexthop via") == len(config.NODES), route
        res = apply_ok()
        measure("bgp_noop_apply", res.seconds)
        changed = {n: m.changed for n, m in res.minions.items() if m.changed}
        assert not changed, f"second apply in BGP mode changed states: {changed}"

    @pytest.mark.parametrize("profile", router.PROFILES)
    def test_8b_bgp_new_connections_reach_every_haproxy_and_every_nginx(self, profile: str) -> None:
        """From the client namespace, through the router, to the one service address, a new connection per
        request: 0 failed; every node's HAProxy accepted a share of at least 0.45/N of the connections (its own
        counter, from its exporter), every nginx and every backend answered, the client's address reached the
        backends."""
        bgp.set_profile(profile)
        before = bgp.haproxy_connections()
        result = router.client_load(requests=300, seconds=60, concurrency=4)
        after = bgp.haproxy_connections()
        per_haproxy = {n: after[n] - before.get(n, 0) for n in after}
        print(f"{profile}: {result['ok']} ok, {result['failed']} failed; connections per HAProxy {per_haproxy}; "
              f"requests per nginx {result['by_node']}; per backend {result['by_backend']}")
        assert result["failed"] == 0, result
        assert sum(per_haproxy.values()) >= result["ok"], per_haproxy
        for name, count in per_haproxy.items():
            assert count >= result["ok"] * 0.45 / len(per_haproxy), f"{profile}: HAProxy of {name}: {per_haproxy}"
        assert set(result["by_node"]) == node_names(), result["by_node"]
        assert set(result["by_backend"]) == BACKEND_NAMES, result["by_backend"]
        assert result["clients"] == {config.CLIENT_ADDR: result["ok"]}, result["clients"]

    @pytest.mark.parametrize("profile", router.PROFILES)
    def test_8c_bgp_haproxy_killed_withdraws_its_node_from_the_router_within_a_second(self, profile: str,
                                                                                    measure) -> None:
        """HAProxy SIGKILLed (kept down) on one node under new-connection load from the client: the router stops
        forwarding to that node within a second (the gate's 0.2 s x 2 checks, then BGP), its BGP session stays
        up (a withdraw, not a lost peer), the other nodes keep serving; HAProxy back, the node is a next hop
        again. Requests that fail: at most one per load client (the one in flight on the killed HAProxy)."""
        bgp.set_profile(profile)
        victim = config.NODES[router.PROFILES.index(profile) % len(config.NODES)]
        others = sorted(n.address for n in config.NODES if n != victim)
        load: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: load.update(router.client_load(requests=100000, seconds=8,
                                                                                  concurrency=2)))
        thread.start()
        try:
            time.sleep(1.5)
            t_kill = kill_haproxy_for_good(victim)
            withdrawn = wait_next_hop_gone(victim.address, t_kill)
            measure(f"bgp_{profile}_haproxy_kill_to_route_withdrawn", withdrawn)
            assert router.next_hops() == others
            assert router.sessions()[victim.name] == "Established", router.sessions()
            thread.join(timeout=30)
            t_heal = time.monotonic()
            heal_haproxy(victim)
            router.wait_next_hops(sorted(n.address for n in config.NODES), timeout=30)
            measure(f"bgp_{profile}_haproxy_back_to_route_announced", time.monotonic() - t_heal)
        finally:
            heal_haproxy(victim)
            thread.join(timeout=30)
        print(f"{profile}: HAProxy of {victim.name} killed: withdrawn in {withdrawn:.3f} s; client load "
              f"{load.get('ok')} ok, {load.get('failed')} failed {load.get('errors')}, nginx {load.get('by_node')}")
        MEASURED[f"bgp_{profile}_haproxy_kill_failed_requests"] = load["failed"]
        assert withdrawn <= 1.0, f"route withdrawn {withdrawn:.2f} s after the kill"
        assert load["ok"] > 0 and load["failed"] <= 2, load

    @pytest.mark.parametrize("event", sorted(chaos.BGP_EVENTS))
    def test_8d_bgp_chaos_the_tier_recovers_unaided_and_fails_only_around_the_fault(self, event: str,
                                                                                   measure) -> None:
        """The chaos matrix in BGP mode (chaos.BGP_EVENTS: the VRRP matrix's faults but keepalived's, plus BIRD
        and the health gate SIGKILLed), each on one node under new-connection load from the client through the
        router (plain ECMP). The tier recovers unaided (after the repair an operator would make, for faults that
        need one): every daemon active, every session Established, every node a next hop. Bounds:
        - faults that take no node out of the route fail no request;
        - the others fail requests only within MOVE_WINDOW s of the fault or of its repair, at most one per
          client for each time the victim leaves and rejoins the route (the request it had in flight there),
          plus one more per client after a silent fault (link down: other nodes' HAProxies still send it
          requests until their health checks mark its nginx down);
        - link down (a node lost without a goodbye): the router drops the victim within a second (BFD 100 ms
          x 3). (Requests that other nodes' HAProxies sent to its nginx may still time out after that.)"""
        ev = chaos.BGP_EVENTS[event]
        if router.profile() != "plain":
            bgp.set_profile("plain")
        chaos.wait_bgp_settled()
        victim = config.NODES[sorted(chaos.BGP_EVENTS).index(event) % len(config.NODES)]
        # the load covers the fault, the repair and a node's boot (node_lost), then stops by itself
        seconds = {"node_lost": 90.0, "link_down": 25.0}.get(event, 15.0)
        load: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: load.update(router.client_load(
            requests=1_000_000, seconds=seconds, concurrency=CHAOS_CONCURRENCY, timeout=CHAOS_TIMEOUT)))
        thread.start()
        t_repair = t_repaired = None
        try:
            time.sleep(1.5)
            t_fault = time.monotonic()
            repair = ev.inject(victim)
            if event == "link_down":
                withdrawn = wait_next_hop_gone(victim.address, t_fault)
                measure("bgp_chaos_link_down_to_route_withdrawn", withdrawn)
            if repair:
                time.sleep(REPAIR_AFTER)
                t_repair = time.monotonic()
                repair()
                if event == "node_lost":
                    bgp.node_routes(True)  # a booted node has lost the lab's route back to the client network
                t_repaired = time.monotonic()
            settled = chaos.wait_bgp_settled()
            measure(f"bgp_chaos_{event}_to_settled", time.monotonic() - (t_repaired or t_fault))
        finally:
            thread.join(timeout=seconds + 90)
        assert load.get("ok", 0) > 100, load
        failed = [(round(start - t_fault, 2), error) for start, error in load["failed_at"]]
        print(f"BGP {event} on {victim.name}: {load['ok']} ok, {load['failed']} failed {failed}; nginx "
              f"{load['by_node']}; settled {settled:.1f} s after")
        MEASURED[f"bgp_chaos_{event}_failed_requests"] = load["failed"]
        MEASURED[f"bgp_chaos_{event}_max_gap_s"] = load["max_gap"]
        if not ev.moves_vip:
            assert not failed, f"BGP {event} takes no node out of the route, yet: {failed}"
        windows = [(0.0, MOVE_WINDOW)]
        if t_repair and t_repaired:
            windows.append((t_repair - t_fault, t_repaired - t_fault + MOVE_WINDOW))
        outside = [f for f in failed if not any(a - 0.1 <= f[0] <= b for a, b in windows)]
        assert not outside, f"BGP {event}: requests failed outside the windows of the fault and its repair: {failed}"
        moves = 2 + (1 if ev.other_vips_fail else 0)
        assert len(failed) <= moves * CHAOS_CONCURRENCY, f"BGP {event}: more than one failure per client and move"
        if event == "link_down":
            assert withdrawn <= 1.0, f"the router forwarded to a node with its link down for {withdrawn:.2f} s"

    def test_8e_bgp_rolling_change_under_load_takes_each_node_out_of_the_route_and_fails_nothing(
            self, measure) -> None:
        """proxytier.orch.rolling in BGP mode under new-connection load from the client through the router
        (plain ECMP): each node in turn is drained at every HAProxy, withdrawn by its gate's hold file
        (proxytier.handover release), applied, verified and announced again (reclaim). The router saw every
        node leave its route once, alone, and come back; no hold file is left. Plain ECMP rehashes flows
        when its next hops change (a leave and a return each), so a request in flight at that moment may be
        reset: a failed request must have been in flight at a change of the route (it started at most
        CHAOS_TIMEOUT s before the watcher saw the change, or within its 0.2 s of polling after it), at most
        one per client and change. Measured: 0 of 115,495, 2 of 132,490 and 5 of 161,274 in three runs."""
        if router.profile() != "plain":
            bgp.set_profile("plain")
        chaos.wait_bgp_settled()
        seen: list[tuple[float, list[str]]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.append((time.monotonic(), router.next_hops()))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        t0 = time.monotonic()
        try:
            # the load runs from before the rolling change until a second after it (in 10 s runs of lab load)
            with bgp.NewConnections(concurrency=CHAOS_CONCURRENCY) as loader:
                time.sleep(1)
                # drain 5 s: behind plain ECMP a node's connections move (and break) at the graceful mark, so
                # waiting longer for them helps nothing; the sockets left of them would hold a release up to
                # bgp:drain (30 s) each
                rolling = tier.orchestrate_ok("rolling", drain=5)
                measure("bgp_rolling_seconds", rolling)
                time.sleep(1)
        finally:
            done.set()
            watcher.join(timeout=10)
        load = loader.result
        print(f"BGP rolling under load: {rolling:.1f} s; {load.get('ok')} ok, {load.get('failed')} failed "
              f"{load.get('errors')}; nginx {load.get('by_node')}")
        MEASURED["bgp_rolling_failed_requests"] = load["failed"]
        assert load["chunks"] >= rolling // 10, load
        assert load["ok"] > 1000, load
        changes = [t for (_, before), (t, after) in itertools.pairwise(seen) if before != after]
        stray = [(round(start - t0, 2), error) for start, error in load["failed_at"]
                 if not any(start - 0.2 <= c <= start + CHAOS_TIMEOUT + 0.2 for c in changes)]
        assert not stray, f"requests failed away from any change of the route: {stray}; changes {changes}"
        assert load["failed"] <= CHAOS_CONCURRENCY * len(changes), load
        everyone = sorted(n.address for n in config.NODES)
        hop_sets = [hops for _, hops in seen]
        for node in config.NODES:
            out = [hops for hops in hop_sets if node.address not in hops]
            assert out and all(sorted([*hops, node.address]) == everyone for hops in out), (
                f"{node.name} never left the route alone: {sorted({tuple(h) for h in hop_sets})}")
        assert len(changes) >= 2 * len(config.NODES), f"route changes: {changes}"
        for node in config.NODES:
            assert nodes.exec_(node, ["test", "-e", "/run/proxytier-bgp-hold"], check=False).returncode == 1
        assert chaos.bgp_settled()

    @pytest.mark.parametrize("profile", ["resilient", "plain"])
    def test_8f_bgp_graceful_leave_breaks_no_established_connection_on_a_draining_router(
            self, profile: str, measure) -> None:
        """A node leaves the router's routes as the orchestrations take it out (proxytier.handover release:
        GRACEFUL_SHUTDOWN first, RFC 8326, while its connections finish; then the withdraw) under 300
        established keep-alive connections (a request every 0.5 s each, ending by themselves 15 to 27 s after
        the release starts, most after the router sees the mark) and a new-connection load; then reclaim.
        - resilient (the router drains: the leaver keeps the hash buckets of its live flows at weight 1 until
          they idle; a withdraw removes at once): no established connection breaks, on the nodes that stay
          or on the leaver, and no new connection fails (whether the drain ended in time: recorded).
        - plain ECMP (the router gives the GRACEFUL_SHUTDOWN path local preference 0, so its multipath route
          drops the leaver at once): every established connection of the leaver still open then breaks (its
          flows hash to nodes that reset them), and some of the nodes that stay (their hash ranges move);
          figures printed.
          New connections fail only if in flight at a route change (at most one per client and change)."""
        bgp.set_profile(profile)
        chaos.wait_bgp_settled()
        victim = config.NODES[0]
        # Behind plain ECMP the leaver's sockets of moved flows linger until HAProxy's timeouts: 40 s is enough.
        res = bgp.graceful_leave(victim, connections=300, drain=LEAVE_DRAIN if profile == "resilient" else 40.0,
                                 rate=LEAVE_NEW_RATE)
        new = res["new"]
        print(f"BGP graceful leave of {victim.name}, {profile}: per node {res['per_node']}; leaver {res['leaver']}, "
              f"others {res['others']}; broken at {res['broken_at'][:20]}; new connections {new.get('ok')} ok, "
              f"{new.get('failed')} failed {new.get('errors')}; release {res['release_s']} s: "
              f"{ {k: res['release'].get(k) for k in ('graceful', 'drained', 'left_busy', 'seconds')} }; the router "
              f"saw the mark {res['graceful_at']} s after the connections' start")
        for key in ("others", "leaver"):
            MEASURED[f"bgp_leave_{profile}_{key}_broken"] = res[key]["broken"]
            MEASURED[f"bgp_leave_{profile}_{key}_conns"] = res[key]["conns"]
        MEASURED[f"bgp_leave_{profile}_new_failed"] = new.get("failed")
        measure(f"bgp_leave_{profile}_release_seconds", res["release_s"])
        assert res["ready_failed"] == 0 and res["unplaced"] == 0, res
        assert res["release"]["graceful"] == [config.BGP_SERVICE], res["release"]
        assert res["graceful_at"] is not None, "the router never saw the leaver's path with GRACEFUL_SHUTDOWN"
        # the leave came while the leaver's connections were open: most of them outlived the mark by a second
        live = [life for life, _broken in res["leaver_lives"] if life > res["graceful_at"] + 1.0]
        assert len(live) >= 50 and res["others"]["conns"] >= 100, (res["graceful_at"], res["per_node"])
        assert new.get("ok", 0) > 100, new
        if profile == "resilient":
            assert res["others"]["broken"] == 0, f"connections of the nodes that stay broke: {res['broken_at']}"
            assert res["leaver"]["broken"] == 0, f"the leaver's connections broke: {res['broken_at']}"
            assert new["failed"] == 0, new
            # whether the router let the drain end before its limit is the router's timing (its last bucket
            # needs a 2 s gap in new flows; CI once ran past 60 s even at 300/s): measured, not asserted. The
            # leaver's connections still open at a timeout would break, which the assertion above catches.
            MEASURED["bgp_leave_resilient_drained"] = res["release"].get("drained")
            MEASURED["bgp_leave_resilient_left_busy"] = res["release"].get("left_busy")
        else:
            # the leaver's connections break when its path leaves the multipath route: every one still open a
            # second (two of its requests) after the router saw the mark, none that had ended before it
            mark = res["graceful_at"]
            assert all(broken == (life > mark + 1.0) for life, broken in res["leaver_lives"]
                       if not mark - 0.5 < life <= mark + 1.0), (mark, res["leaver_lives"])
            assert new["failed"] <= 3 * 2, new  # the leave, the reclaim, and at most one more change
        chaos.wait_bgp_settled()

    def test_8g_bgp_join_and_leave_orchestrations_break_no_established_connection(self, measure, request) -> None:
        """proxytier.orch.join and proxytier.orch.leave in BGP mode, behind the resilient router (idle_timer 2 s:
        a bucket moves to a joiner only when no packet hit it for 2 s, so established flows stay where they
        are; a GRACEFUL_SHUTDOWN node keeps its busy buckets):
        - a fourth node boots and joins (its gate announces only at the join's last step) under 300 established
          keep-alive connections (a request every 0.5 s each) and a new-connection load: none of the
          connections breaks and no new connection fails; the joiner takes new connections. (The others'
          HAProxy reloads to add the joiner's nginx: a reloading HAProxy answers an idle keep-alive
          connection's next request with "Connection: close", option idle-close-on-response, and the
          client opens a new one; counted as reopened, not broken.)
        - it leaves again (orch.leave: drain, graceful release with a LEAVE_DRAIN s drain, the others
          converge, retire: its gate, addresses and BIRD go) under 300 new established connections (a quarter
          of them on it, ending by themselves 15 to 27 s in) and LEAVE_NEW_RATE new connections/s: none
          breaks, none fails; its BGP session is down at the router and the three nodes serve."""
        bgp.set_profile("resilient")
        chaos.wait_bgp_settled()
        assert len(config.NODES) == 3
        with bgp.NewConnections() as joining, bgp.Flows(300, life=(500.0, 500.0)) as flows:
            flows.go()
            node = cluster.add_node()
            request.addfinalizer(lambda: leave_if_left_behind(node.name))
            bgp.node_routes(True)
            measure("bgp_join_seconds", tier.join(node.name))
            prometheus.sync_targets()
            router.wait_next_hops(bgp.addresses(), timeout=30)
            at_join = bgp.haproxy_connections()[node.name]
            time.sleep(4)  # the connections' requests cross the new group, new connections reach the joiner
            joined = bgp.Flows.count(flows.result(stop=True))
            reached = bgp.haproxy_connections()[node.name] - at_join
        print(f"BGP join of {node.name} (resilient): established {joined['per_node']}, broken {joined['broken_at']}; "
              f"new connections {joining.result['ok']} ok, {joining.result['failed']} failed "
              f"{joining.result['errors']}; {reached:.0f} reached its HAProxy in the last 4 s; "
              f"{joined['reopened']} reopened after a reloading HAProxy's last answer")
        MEASURED["bgp_join_resilient_broken"] = joined["others"]["broken"]
        MEASURED["bgp_join_resilient_new_failed"] = joining.result["failed"]
        assert joined["unplaced"] == 0 and joined["others"]["conns"] == 300, joined
        assert joined["others"]["broken"] == 0, (f"the join broke established connections ({joined['errors']}): "
                                                 f"{joined['broken_at']}")
        assert joining.result["failed"] == 0 and joining.result["ok"] > 100, joining.result
        assert reached > 0, f"no new connection reached {node.name}'s HAProxy"
        with bgp.NewConnections(rate=LEAVE_NEW_RATE) as leaving, bgp.Flows(300, life=(15.0, 27.0)) as flows:
            on_leaver = sum(1 for name in flows.holder.values() if name == node.name)
            flows.go()
            measure("bgp_leave_seconds", tier.orchestrate_ok("leave", node=node.name, drain=LEAVE_DRAIN))
            left = bgp.Flows.count(flows.result(), node.name)
        prometheus.sync_targets()
        cluster.remove_node(node.name)
        print(f"BGP leave of {node.name} (resilient): established {left['per_node']}, broken {left['broken_at']}; "
              f"new connections {leaving.result['ok']} ok, {leaving.result['failed']} failed "
              f"{leaving.result['errors']}")
        MEASURED["bgp_orch_leave_resilient_broken"] = left["others"]["broken"] + left["leaver"]["broken"]
        MEASURED["bgp_orch_leave_resilient_new_failed"] = leaving.result["failed"]
        assert on_leaver >= 40 and left["unplaced"] == 0, (on_leaver, left)
        assert left["leaver"]["broken"] == 0 and left["others"]["broken"] == 0, left["broken_at"]
        assert leaving.result["failed"] == 0 and leaving.result["ok"] > 100, leaving.result
        assert [n.name for n in config.NODES] == ["proxy1", "proxy2", "proxy3"]
        assert router.parse_sessions(router.birdc("show", "protocols")).get("proxy4") != "Established"
        chaos.wait_bgp_settled()

    def test_8z_bgp_back_to_vrrp_mode_converges_and_leaves_nothing_of_bgp_mode(self, measure) -> None:
        """The checkout's pillar (VRRP) applied: 0 failed states; keepalived back and every node home to its
        VIP; BIRD stopped and disabled, the gate and its unit gone, the service address off every node; the
        router and client removed; every VIP reaches every nginx and backend; a second apply changes nothing."""
        measure("bgp_back_to_vrrp_apply", bgp.disable())
        assert not router.running() and config.ROUTER_NETNS not in net.netns_list()
        assert config.CLIENT_NETNS not in net.netns_list()
        for node in config.NODES:
            assert tier.services_active(node) == dict.fromkeys(tier.DAEMONS, "active"), node.name
            left = bgp.leftovers(node)
            assert left == {"bird": "inactive", "gate": "inactive", "bird_enabled": "disabled", "gate_unit": False,
                            "service_address": False}, f"{node.name}: {left}"
        tier.wait_vips_settled()
        holders = nodes.vip_holders()
        assert {h[0] for h in holders.values()} == node_names(), holders
        assert_serving()
        res = apply_ok()
        changed = {n: m.changed for n, m in res.minions.items() if m.changed}
        assert not changed, f"second apply after BGP mode changed states: {changed}"


def join_under_load(measure: Callable[[str, float], None]) -> config.Node:
    """Boot the next node, accept its key and run the formula's join while bounded load runs through every
    VIP of the tier; asserts 0 failed requests and that no VIP of the tier moved, even for a moment."""
    chaos.wait_settled()
    old_vips = list(config.VIPS)
    with tier.VipWatch() as watch, BackgroundLoad(old_vips, seconds=600, concurrency=3, timeout=5) as bg:
        time.sleep(1)
        t0 = time.monotonic()
        # the machine booted, its key accepted, its address in the mine; proxytier.orch.join; Prometheus
        node, seconds = cluster.join_node()
        measure(f"join_{node.name}_key_to_serving", seconds)
        measure(f"join_{node.name}_boot_key_and_join", time.monotonic() - t0)
        wait_for(f"{node.name}'s own VIP", lambda: nodes.vip_holders().get(config.VIPS[-1]) == [node.name],
                 timeout=30)
        time.sleep(2)
    assert_lost_nothing(f"join_{node.name}", bg.result, 300, watch, old_vips)
    assert len(watch.samples) > 20, f"too few VIP samples to tell: {len(watch.samples)}"
    return node


def test_9a_a_node_joins_a_serving_tier_under_load(measure) -> None:
    """a fourth node joins a serving 3-node tier (boot, key accepted, proxytier.orch.join) under load
    through every VIP: 0 failed requests and no VIP changes holder; afterwards it is in every HAProxy
    backend and every node's unicast peers, holds its own VIP from the pool, its nginx gets traffic
    through every VIP, and Prometheus scrapes its exporter."""
    assert len(config.NODES) == 3
    node = join_under_load(measure)
    assert node.name == "proxy4" and config.VIPS[-1] == config.home_vip(4)
    assert nodes.vip_holders() == chaos.home(), nodes.vip_holders()
    for other in config.NODES:
        haproxy_cfg = nodes.exec_(other, ["cat", "/etc/haproxy/haproxy.cfg"]).stdout
        assert re.search(rf"^\s*server \S+ {re.escape(node.address)}:8080\b", haproxy_cfg, re.M), \
            f"{other.name}: no server {node.address}:8080 in haproxy.cfg"
        if other != node:  # a node is not its own VRRP peer
            keepalived_conf = nodes.exec_(other, ["cat", "/etc/keepalived/keepalived.conf"]).stdout
            peers = re.findall(r"unicast_peer \{([^}]*)\}", keepalived_conf)
            assert peers and all(node.address in block.split() for block in peers), f"{other.name}: {peers}"
    assert_serving(requests=400)  # through every VIP, the 4th nginx included
    wait_for("Prometheus to scrape proxy4", lambda: promql('up{job="proxytier", instance="proxy4"} == 1'),
             timeout=60, interval=1)
    assert scraped_instances() == node_names()


def test_9b_five_nodes_five_vips_each_node_masters_one(measure) -> None:
    """a fifth node joins the same way; with 5 nodes and 5 VIPs each node is the preferred MASTER of
    exactly one VIP (and holds it), and through every VIP requests reach every nginx and backend."""
    node = join_under_load(measure)
    assert node.name == "proxy5" and len(config.NODES) == len(config.VIPS) == 5
    assert nodes.vip_holders() == chaos.home(), nodes.vip_holders()
    owned = {}
    for n in config.NODES:
        model = master.salt_json(["salt", n.name, "proxytier.model"])[n.name]
        owned[n.name] = [i["address"] for i in model["vrrp"]["instances"] if i["is_owner"]]
    assert owned == {n.name: [vip] for n, vip in zip(config.NODES, config.VIPS, strict=True)}, owned
    assert_every_vip_reaches_every_nginx_and_backend(400)


def leave_under_load(name: str, measure: Callable[[str, float], None]) -> None:
    """The formula's leave of `name` (proxytier.orch.leave), then its machine powered off, under bounded load
    through every VIP but the leaver's own (its DNS record is withdrawn first): 0 failed requests, no other
    VIP moves even for a moment, the leaver's VIP is gone, and nothing points at the leaver."""
    chaos.wait_settled()
    leaver = config.node(name)
    own = config.home_vip(config.node_index(name))
    staying = [v for v in config.VIPS if v != own]
    paging = f'ALERTS{{instance="{name}", alertstate="firing", severity=~"warning|critical"}}'
    firing_before = {alert_key(a) for a in promql(paging)}
    t_start = time.time()
    with tier.VipWatch() as watch, BackgroundLoad(staying, seconds=600, concurrency=3, timeout=5) as bg:
        time.sleep(1)
        measure(f"leave_{name}", cluster.leave_node(name))
        time.sleep(2)
    assert_lost_nothing(f"leave_{name}", bg.result, 100, watch, staying)
    assert own not in nodes.vip_holders() and all(
        own not in nodes.addresses(n) for n in config.NODES), f"{own} is still held"
    for other in config.NODES:
        assert tier_config_mentions(other, leaver.address) == {"/etc/haproxy/haproxy.cfg": False,
                                                               "/etc/keepalived/keepalived.conf": False}
    keys = json.loads(master.salt(["salt-key", "-L", "--out=json"], timeout=30, check=True).stdout)
    assert name not in keys["minions"], keys
    wait_for(f"Prometheus to stop scraping {name}", lambda: scraped_instances() == node_names(), timeout=30)
    # a planned leave raises nothing to act on: no target-down alert, and no warning or critical alert that
    # was not firing before (the info ProxytierVRRPFailover may still fire from the node's own join)
    assert not promql(f'ALERTS{{instance="{name}", alertname=~"ProxytierExporterDown|ProxytierNoTargets"}}')
    raised = {alert_key(a) for a in promql(paging)} - firing_before
    for key in [k for k in raised if k[0] == "ProxytierVRRPFlapping"]:
        # earlier faults (the chaos matrix) may leave an instance one transition short of the alert; the leave
        # releases each instance of the leaver once, which may tip it: allowed only if it was that close
        flaps = promql(f'sum by (vrrp_instance) (increase(proxytier_keepalived_vrrp_become_master_total'
                       f'{{instance="{name}", vrrp_instance="{key[1]}"}}[15m]) + increase('
                       f'proxytier_keepalived_vrrp_release_master_total{{instance="{name}", '
                       f'vrrp_instance="{key[1]}"}}[15m])) > 3', at=t_start)
        if flaps:
            raised.discard(key)
    assert not raised, f"the leave of {name} raised {sorted(raised)}: {promql(paging)}"
    assert_serving()


def test_9c_a_node_leaves_a_serving_tier_under_load(measure) -> None:
    """proxy5 leaves the 5-node tier under load: 0 failed requests, only its own VIP moves (and is gone),
    the tier is 4 nodes with nothing left pointing at it: no HAProxy server, no unicast peer, no key, no
    Prometheus target, no alert."""
    leave_under_load("proxy5", measure)
    assert [n.name for n in config.NODES] == ["proxy1", "proxy2", "proxy3", "proxy4"]


def test_9d_the_seed_two_nodes_one_vip_serves_and_fails_over(clean_pillar, measure) -> None:
    """shrunk to the seed's size by two more leaves (proxy4, proxy3), then the seed's pillar (one VIP,
    no pool: master/backup): it converges, serves through the VIP with both nginx receiving traffic,
    and the VIP moves to the backup when the master's node stops."""
    for name in ("proxy4", "proxy3"):
        leave_under_load(name, measure)
    data = tier.default_pillar()
    data["proxytier"].pop("vip_pool")
    data["proxytier"]["vips"] = [{"address": f"{config.home_vip(1)}/24", "vrid": 51}]
    tier.write_pillar(data)
    apply_ok()
    config.VIPS[:] = [config.home_vip(1)]  # the seed's one VIP (proxy2's pool VIP is gone)
    wait_for("the seed's VIP on proxy1 only", lambda: nodes.vip_holders() == {config.home_vip(1): ["proxy1"]},
             timeout=30)
    assert config.home_vip(2) not in nodes.addresses(config.node("proxy2"))
    assert_serving(requests=200)  # both nginx get traffic through the one VIP
    with BackgroundLoad(list(config.VIPS), seconds=120, concurrency=3, timeout=2) as bg:
        time.sleep(1)
        t0 = time.monotonic()
        nodes.stop(config.node("proxy1"), wait=False)
        wait_for("the VIP on proxy2", lambda: nodes.vip_holders().get(config.home_vip(1)) == ["proxy2"],
                 timeout=30, interval=0.1)
        measure("seed_master_lost_vip_moved", time.monotonic() - t0)
        time.sleep(3)
        tail = run_load(list(config.VIPS), requests=100, seconds=20, concurrency=3, timeout=2)
    result = bg.result
    assert result is not None
    print(f"seed failover: {table(result)}; after: {table(tail)}")
    MEASURED["seed_master_lost_failed_requests"] = result.failed
    assert tail.failed == 0 and set(tail.by_node) == {"proxy2"}, table(tail)
