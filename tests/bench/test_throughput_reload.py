"""bench/throughput's pure parts (wrk's figures, merging, CPU groups, stock configs, the report) and
bench/reload's report, without the lab (a local server on loopback where a real wrk runs)."""

from __future__ import annotations

import pytest

from bench.reload import run as reload_run
from bench.throughput import run as tput
from lab.load import Sample

WRK_LINE = ('{"requests": %d, "duration_us": 2000000, "p50_us": %d, "p99_us": %d, "errors": '
            '{"connect": 0, "read": %d, "write": 0, "status": %d, "timeout": 0}}')


def test_wrk_script_prints_what_parse_wrk_reads_from_a_real_wrk(local_server) -> None:
    """The Lua done() against a real wrk, when the host has it (the lab's host packages install it)."""
    import shutil
    import subprocess
    import tempfile

    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (lab/host-deps.sh installs it)")
    server = local_server("127.0.0.21")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(tput.WRK_SCRIPT)
        script.flush()
        out = subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", script.name, f"http://{server.address}:{server.port}/"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    got = tput.parse_wrk(out)
    assert got["requests"] > 50 and 0 < got["p50_us"] <= got["p99_us"]
    assert tput.failures(got, "keep-alive") == 0


def test_parse_wrk_takes_the_figures_line_and_names_a_missing_one() -> None:
    out = "Running 2s test @ http://198.18.0.21:8081/lab\n  1 threads\n" + WRK_LINE % (100, 50, 90, 0, 0) + "\n"
    assert tput.parse_wrk(out)["p99_us"] == 90
    with pytest.raises(ValueError, match="no figures"):
        tput.parse_wrk("unable to connect to 198.18.0.21:8081 Connection refused\n")


def test_connections_split_evenly_over_targets() -> None:
    assert tput.split_connections(8, 3) == [3, 3, 2]
    assert tput.split_connections(1, 3) == [1]
    assert tput.split_connections(256, 1) == [256]
    assert sum(tput.split_connections(64, 3)) == 64


def test_merge_sums_rates_weights_percentiles_and_counts_failures_by_mode() -> None:
    import json

    a = json.loads(WRK_LINE % (3000, 100, 400, 0, 0))
    b = json.loads(WRK_LINE % (1000, 200, 800, 1000, 2))
    ka = tput.merge([a, b], "keep-alive")
    assert ka["requests"] == 4000 and ka["rps"] == 2000.0
    assert ka["p50"] == pytest.approx(125e-6) and ka["p99"] == pytest.approx(500e-6)
    assert ka["failed"] == 1002  # kept alive, a read error is a failure
    assert ka["errors"] == {"connect": 0, "read": 1000, "write": 0, "status": 2, "timeout": 0}
    assert tput.summarize([ka, ka])["errors"] == {"connect": 0, "read": 2000, "status": 4, "timeout": 0,
                                                  "write": 0}
    assert tput.merge([a, b], "new connection")["failed"] == 2  # there, each close reads as one (wrk)


def test_processes_are_grouped_by_daemon_and_stock_apart() -> None:
    g = tput.process_group
    assert g("haproxy", "/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg", False) == "haproxy"
    assert g("haproxy", f"haproxy -W -db -f {tput.STOCK_DIR}/haproxy.cfg", True) == "haproxy (stock)"
    assert g("nginx", "nginx: worker process", True) == "nginx (stock)"
    assert g("python3", "/usr/bin/python3 -m proxytier_exporter --web.listen-address=x", False) == "exporter"
    assert g("systemd-journal", "/lib/systemd/systemd-journald", False) == "journald"
    assert g("socat", "socat TCP-LISTEN:9901", False) == "relay"
    assert g("salt-minion", "/opt/salt/bin/python3 /opt/salt/bin/salt-minion", False) == "salt-minion"


def test_cpu_per_request_counts_differences_and_new_processes() -> None:
    before = {1: ("haproxy", 100), 2: ("nginx", 50), 3: ("nginx", 10)}
    after = {1: ("haproxy", 110), 2: ("nginx", 55), 3: ("nginx", 12), 4: ("relay", 3)}  # 4 started meanwhile
    cpu = tput.cpu_per_request(before, after, 100.0, 1000)  # 100 ticks/s: a tick is 10 ms
    assert cpu == pytest.approx({"haproxy": 100.0, "nginx": 70.0, "relay": 30.0})
    assert tput.path_total("tier", {**cpu, "exporter": 5.0, "backend": 40.0, "client": 9.0}) == pytest.approx(175.0)
    assert tput.path_total("direct", cpu) == 0


DEBIAN_NGINX = """user www-data;
worker_processes auto;
pid /run/nginx.pid;
events {
\tworker_connections 768;
}
http {
\taccess_log /var/log/nginx/access.log;
\tinclude /etc/nginx/conf.d/*.conf;
\tinclude /etc/nginx/sites-enabled/*;
}
"""


def test_stock_configs_are_debians_plus_a_tutorials_proxy_and_fail_loudly_if_debian_changes() -> None:
    from lab import config

    conf = tput.stock_nginx_conf(DEBIAN_NGINX, config.NODES[0].address, tput.FAST_PORT)
    assert f"pid {tput.STOCK_DIR}/nginx.pid;" in conf and "worker_processes auto;" in conf
    assert "sites-enabled" not in conf and "conf.d" not in conf
    assert f"listen {config.NODES[0].address}:{tput.STOCK_NGINX_PORT};" in conf
    assert all(f"server {be.address}:{tput.FAST_PORT};" in conf for be in config.BACKENDS)
    assert "keepalive" not in conf  # a tutorial's upstream: a new connection per request
    with pytest.raises(RuntimeError, match=r"pid /run/nginx\.pid"):
        tput.stock_nginx_conf(DEBIAN_NGINX.replace("pid /run/nginx.pid;", ""), config.NODES[0].address, 8080)
    debian_haproxy = "global\n\tstats socket /run/haproxy/admin.sock mode 660 level admin\ndefaults\n\toption httplog\n"
    cfg = tput.stock_haproxy_cfg(debian_haproxy, config.NODES[0].address, 8080)
    assert f"stats socket {tput.STOCK_DIR}/haproxy.sock" in cfg and "option httplog" in cfg
    assert cfg.count("balance roundrobin") == 2
    assert all(f"server {n.name} {n.address}:{tput.STOCK_NGINX_PORT} check" in cfg for n in config.NODES)


def test_stock_daemons_are_sized_as_the_tier_pillar_sizes_proxytier() -> None:
    from lab import config

    assert tput.sizing({"proxytier": {}}) == {"worker_processes": "auto", "nbthread": "auto"}
    sized = tput.sizing({"proxytier": {"nginx": {"worker_processes": 1}, "haproxy": {"nbthread": 1}}})
    assert sized == {"worker_processes": "1", "nbthread": "1"}
    conf = tput.stock_nginx_conf(DEBIAN_NGINX, config.NODES[0].address, 8080, sized["worker_processes"])
    assert "worker_processes 1;" in conf and "auto" not in conf
    debian = "global\n\tlog /dev/log local0\n\tstats socket /run/haproxy/admin.sock mode 660\ndefaults\n\tlog\tglobal\n"
    cfg = tput.stock_haproxy_cfg(debian, config.NODES[0].address, 8080, sized["nbthread"])
    assert cfg.startswith("global\n\tnbthread 1\n\tlog /dev/log") and cfg.count("nbthread") == 1


def test_tier_pillar_moves_the_servers_and_merges_the_override() -> None:
    base = {"proxytier": {"sites": [{"name": "app", "backends": [{"address": "198.18.0.21:8080"}]}],
                          "nginx": {"worker_processes": "auto"}}}
    got = tput.tier_pillar(base, tput.FAST_PORT, {"nginx": {"access_log": "off"}})
    assert got["proxytier"]["sites"][0]["backends"] == [{"address": f"198.18.0.21:{tput.FAST_PORT}"}]
    assert got["proxytier"]["nginx"] == {"worker_processes": "auto", "access_log": "off"}
    assert base["proxytier"]["sites"][0]["backends"][0]["address"].endswith(":8080")  # base untouched


def test_trims_report_gives_each_variant_against_the_first() -> None:
    res = {"keep-alive": {"8": {"defaults": _cell(500, 13500, {"haproxy": 43.0, "nginx": 51.0, "exporter": 2.0}),
                                "haproxy nbthread 1": _cell(450, 15600, {"haproxy": 31.0, "nginx": 47.0,
                                                                         "exporter": 2.0})}}}
    run = {"date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
           "settings": {"rounds": 5, "seconds": 3, "pillar": {}}, "variants": {"defaults": {},
                                                                                    "haproxy nbthread 1": {}},
           "results": res}
    text = tput.render_variants(run)
    assert "| defaults | 500 | 1500 | 13500 | 1.00 | 43.0 | 51.0 | 2.0 | 96.0 | 1.00 |" in text
    assert "| haproxy nbthread 1 | 450 | 1350 | 15600 | 1.16 | 31.0 | 47.0 | 2.0 | 80.0 | 0.83 |" in text


def _cell(p50: float, rps: float, cpu: dict | None = None) -> dict:
    return {"p50": p50 * 1e-6, "p99": 3 * p50 * 1e-6, "rps": rps, "requests": int(rps), "failed": 0,
            "cpu": cpu or {}}


def test_report_gives_ratios_and_says_which_targets_are_met() -> None:
    res = {
        "keep-alive": {
            "1": {"direct": _cell(40, 25000), "relay x2": _cell(110, 9000), "stock tier": _cell(230, 4000),
                  "tier": _cell(140, 5000)},
            "8": {"direct": _cell(80, 80000), "relay x2": _cell(340, 20000), "stock tier": _cell(1000, 7000),
                  "tier": _cell(500, 16000, {"haproxy": 40.0, "nginx": 50.0, "exporter": 2.0, "backend": 20.0})},
        },
        "new connection": {"1": {"direct": _cell(30, 12000), "stock tier": _cell(300, 2500),
                                 "tier": _cell(320, 3000)}},
    }
    run = {"date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
           "settings": {"rounds": 3, "seconds": 3, "concurrency": [1, 8], "cpu_concurrency": 8, "pillar": {},
                        "sizing": {"worker_processes": "auto", "nbthread": "auto"}},
           "paths": {"direct": [("198.18.0.21", 8081)], "tier": [("198.18.0.101", 80)]}, "results": res}
    text = tput.render(run)
    assert "| 1 | tier | 140 | 420 | +100 | 1.43 | 5000 | 0.20 | 0.56 | 1.25 | 0 |" in text
    assert "| 8 | tier | 500 | 1500 | +420 | 1.62 | 16000 | 0.20 | 0.80 | 2.29 | 0 |" in text
    assert "| tier | 40.0 | 50.0 | 2.0 | - |" in text and "| 92.0 |" in text
    assert "2.0 of 92.0 us (2.2%): met" in text
    assert "+100 us vs +70 us (1.43x): met" in text
    assert "16000 vs 20000 (0.80x): met" in text
    run["per_round"] = {"keep-alive": {"8": {"tier": [{"rps": 18000}, {"rps": 12000}],
                                             "relay x2": [{"rps": 20000}, {"rps": 20000}]}}}
    assert "16000 vs 20000 (0.80x); per round 0.90x, 0.60x: met" in tput.render(run)
    assert "new connection 1: p50 320 vs 300 us: **not met**" in text  # slower than stock there


def test_the_two_hops_bound_adds_each_hop_s_time_per_request_over_direct() -> None:
    """1/rps(bound) = 1/rps(haproxy alone) + 1/rps(nginx) - 1/rps(direct): 1/20000 + 1/25000 - 1/100000
    = 80 us -> 12500/s; the tier at 11250 is 0.90x of it, and the bound 0.62x of the relays' 20000."""
    res = {"keep-alive": {"8": {"direct": _cell(80, 100000), "haproxy alone": _cell(300, 20000),
                                "nginx": _cell(280, 25000), "relay x2": _cell(340, 20000),
                                "tier": _cell(600, 11250)}}}
    assert tput.two_hops(res) == [
        "keep-alive, 8 connections: HAProxy alone + nginx alone allow 12500 requests/s through the two hops; "
        "the tier reached 11250 (0.90x of that); that bound is 0.62x the two relays' 20000"]
    assert tput.two_hops(res, conc=64) == []  # not measured there
    del res["keep-alive"]["8"]["haproxy alone"]
    assert tput.two_hops(res) == []
    run = {"date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
           "settings": {"rounds": 3, "seconds": 3, "concurrency": [8], "cpu_concurrency": 8, "pillar": {},
                        "sizing": {}},
           "paths": {"tier": [("198.18.0.101", 80)]}, "results": res}
    assert "What the two HTTP hops allow" not in tput.render(run)
    res["keep-alive"]["8"]["haproxy alone"] = _cell(300, 20000)
    assert "- keep-alive, 8 connections: HAProxy alone + nginx alone allow 12500 requests/s" in tput.render(run)
    res["keep-alive"]["8"][tput.ONE_NGINX] = _cell(550, 12000)
    assert tput.two_hops(res)[0].endswith(
        "(0.90x of that), with every HAProxy sending to one node's nginx 12000 (0.96x); "
        "that bound is 0.62x the two relays' 20000")


def test_reload_change_touches_all_three_configs_and_report_counts() -> None:
    pt = reload_run.change(7)["proxytier"]
    assert pt["nginx"]["extra"]["http"] == pt["haproxy"]["extra"]["defaults"] == ["# bench reload 7"]
    assert pt["vrrp"]["extra"]["global_defs"] == ["# bench reload 7"]
    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"concurrency": 3, "timeout": 2.0},
        "results": {"changes": 100, "full_applies": 100, "requests": 50000, "failed": 0, "errors": {},
                    "slowest": 0.2, "apply_median": 8.0},
    }
    text = reload_run.render(run)
    assert "| 100 | 100 | 50000 | 0 | 0.200 | 8.0 |" in text and "No errors." in text


def test_reload_change_with_on_error_sets_only_that_key_and_failures_name_their_change() -> None:
    plain, marked = reload_run.change(3)["proxytier"], reload_run.change(3, "mark-down")["proxytier"]
    assert marked["haproxy"]["check"] == {"on_error": "mark-down"}
    marked["haproxy"].pop("check")
    assert marked == plain
    samples = [Sample(1.0, 1.1, True, "a"), Sample(5.25, 7.25, False, "b", "TimeoutError"),
               Sample(12.0, 12.5, False, "c", "ConnectionResetError"), Sample(20.0, 20.1, False, "a", "X")]
    got = reload_run.failures(samples, [(5.0, 9.0), (10.0, 14.0)])
    assert got == [
        {"change": 0, "into_apply": 0.25, "target": "b", "error": "TimeoutError", "seconds": 2.0},
        {"change": 1, "into_apply": 2.0, "target": "c", "error": "ConnectionResetError", "seconds": 0.5},
        {"change": None, "into_apply": None, "target": "a", "error": "X", "seconds": 0.1},
    ]
    run = {
        "date": "2026-01-01T00:00:00Z", "git_commit": "abc", "machine": {"cpu_model": "x", "cpus": 2},
        "settings": {"concurrency": 3, "timeout": 2.0, "on_error": "mark-down"},
        "results": {"changes": 2, "full_applies": 2, "requests": 900, "failed": 3, "errors": {"TimeoutError": 3},
                    "failures": got, "slowest": 2.0, "apply_median": 8.0},
    }
    text = reload_run.render(run)
    assert "`proxytier:haproxy:check:on_error` mark-down" in text
    assert "Failed requests by time into their change's apply (s): 0.2, 2.0, between applies." in text
