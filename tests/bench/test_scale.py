"""bench/scale's pure parts: the pillar generator (its shape, and a valid tier through the model), the
growth figures, the section's markdown from a fixed run, the lab part's parsers, the check copies."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from bench.scale import checks, formula_cost, lab, pillar, stats
from bench.scale import report as scale_report

BENCH_NET = ipaddress.ip_network("198.18.0.0/15")


@pytest.fixture(scope="module")
def tls() -> tuple[str, str]:
    return pillar.make_tls()


def test_the_pillar_has_n_host_routed_sites_of_b_backends(tls: tuple[str, str]) -> None:
    data = pillar.scale_pillar(7, 3, tls)
    pt = data["proxytier"]
    assert "mine_functions" in data and pt["members_from_mine"] and pt["vip_pool"]  # the lab's shape
    assert [s["name"] for s in pt["sites"]] == [f"s{i}" for i in range(7)]
    assert {(s["port"], s["nginx_port"], s["tls"]["port"]) for s in pt["sites"]} == {(80, 8080, 443)}
    hosts = [h for s in pt["sites"] for h in s["hosts"]]
    assert len(hosts) == len(set(hosts)) == 7
    addresses = [b["address"] for s in pt["sites"] for b in s["backends"]]
    assert all(len(s["backends"]) == 3 for s in pt["sites"])
    assert len(set(addresses)) == 21
    assert all(ipaddress.ip_address(a.rsplit(":", 1)[0]) in BENCH_NET for a in addresses)
    assert "tls" not in pillar.scale_pillar(2, 1, None)["proxytier"]["sites"][0]


def test_backend_addresses_stay_in_the_benchmarking_range() -> None:
    assert pillar.backend_address(0) == "198.19.0.1:8080"
    assert pillar.backend_address(250) == "198.19.1.1:8080"
    assert ipaddress.ip_address(pillar.backend_address(250 * 256 - 1).split(":")[0]) in BENCH_NET
    with pytest.raises(ValueError):
        pillar.backend_address(250 * 256)
    with pytest.raises(ValueError):
        pillar.scale_pillar(0, 5, None)
    with pytest.raises(ValueError):
        pillar.lab_mine(6)


@pytest.mark.parametrize("nodes", [3, 5])
def test_the_pillar_is_a_valid_tier_for_the_model(tls: tuple[str, str], nodes: int) -> None:
    pt = pillar.scale_pillar(12, 4, tls)["proxytier"]
    mine = pillar.lab_mine(nodes)
    params = formula_cost.default_params()
    for node in mine:
        model = formula_cost.build_model(pt, node, mine=mine, params=params)
        assert [m["id"] for m in model["members"]] == list(mine)
        assert len(model["vrrp"]["instances"]) == nodes
        assert [s["name"] for s in model["nginx"]["sites"]] == [f"s{i}" for i in range(12)]
        assert all(len(s["servers"]) == 4 for s in model["nginx"]["sites"])
        assert [f["name"] for f in model["haproxy"]["frontends"]] == ["fe_port443"]  # one shared frontend
        assert len(model["haproxy"]["backends"][0]["servers"]) == nodes
        assert len(model["tls_files"]) == 12
        assert len(model["crt_lists"][0]["lines"]) == 13  # the default certificate, then one line per site


def test_the_tls_pem_files_are_the_same_either_way(tls: tuple[str, str]) -> None:
    pt = pillar.scale_pillar(4, 2, tls)["proxytier"]
    mine = pillar.lab_mine(3)
    params = formula_cost.default_params()
    model = formula_cost.build_model(pt, "proxy2", mine=mine, params=params)
    old = formula_cost.pem_from_whole_model(pt, "proxy2", mine, params)
    new = formula_cost.pem_from_site(pt, params)
    texts = formula_cost.render_group(model, "tls.pem", new)
    assert len(texts) == 4 and all("BEGIN CERTIFICATE" in t and "PRIVATE KEY" in t for t in texts)
    assert texts == formula_cost.render_group(model, "tls.pem", old)
    with pytest.raises(ValueError, match="unknown file group"):
        formula_cost.render_group(model, "nginx", new)


def test_measure_node_reports_every_file_group(tls: tuple[str, str]) -> None:
    pt = pillar.scale_pillar(3, 2, tls)["proxytier"]
    got = formula_cost.measure_node(pt, "proxy1", pillar.lab_mine(3), formula_cost.default_params(), reps=1)
    assert set(got["render_s"]) == set(formula_cost.FILES) == set(got["bytes"])
    assert got["files"]["tls.pem"] == 3 and got["files"]["crt-list"] == 1
    assert got["total_s"] == pytest.approx(got["model_s"] + sum(got["render_s"].values()))
    assert got["bytes"]["nginx.conf"] > got["bytes"]["filter.nft"] > 0


def _node(total: float, model: float = 0.1) -> dict[str, Any]:
    return {"model_s": model, "render_s": {"nginx.conf": total - model}, "total_s": total,
            "bytes": {"nginx.conf": 1000}, "files": {"nginx.conf": 1}}


def _case(sites: int, total: float, backends: int = 10, nodes: int = 3) -> dict[str, Any]:
    per_node = {f"proxy{i}": _node(total) for i in range(1, nodes + 1)}
    return {"sites": sites, "backends": backends, "nodes": nodes, "per_node": per_node,
            "summary": stats.case_summary(per_node)}


def test_case_summary_takes_medians_over_nodes_and_the_worst() -> None:
    s = stats.case_summary({"a": _node(1.0), "b": _node(3.0), "c": _node(2.0, model=0.5)})
    assert s["total_s"] == 2.0 and s["worst_node_total_s"] == 3.0 and s["model_s"] == 0.1
    assert s["render_s"]["nginx.conf"] == pytest.approx(1.5)
    with pytest.raises(ValueError):
        stats.case_summary({})


def test_growth_flags_only_worse_than_linear_steps() -> None:
    cases = [_case(200, 8.0), _case(10, 0.1), _case(50, 0.5), _case(50, 1.0, backends=5)]
    rows = stats.growth(cases)
    assert [(r["backends"], r["from_sites"], r["to_sites"]) for r in rows] == [(10, 10, 50), (10, 50, 200)]
    first, second = rows
    assert first["size_ratio"] == 5 and first["time_ratio"] == pytest.approx(5) and not first["worse_than_linear"]
    assert second["time_ratio"] == pytest.approx(16) and second["excess"] == pytest.approx(4)
    assert second["worse_than_linear"]
    assert second["per_site_ms"] == pytest.approx([10.0, 40.0])
    assert stats.speedup(2.0, 0.5) == 4 and stats.speedup(1.0, 0) is None


def _run() -> dict[str, Any]:
    cases = [_case(50, 0.5), _case(200, 8.0)]
    for c in cases:
        for n in c["per_node"].values():
            n["render_s"] = dict.fromkeys(scale_report.SHOWN, 0.01)
            n["bytes"] = dict.fromkeys(scale_report.SHOWN, 2048)
            n["files"] = {**dict.fromkeys(scale_report.SHOWN, 1), "tls.pem": c["sites"]}
        c["summary"] = stats.case_summary(c["per_node"])
    return {
        "bench": "scale", "schema": 1, "date": "2026-12-01T00:00:00Z", "git_commit": "abc1234",
        "machine": {"cpu_model": "Test CPU", "cpus": 2}, "settings": {"reps": 5, "tls": True},
        "model_builds_per_apply": 11, "cases": cases, "growth": stats.growth(cases),
        "pem_before_after": [{"sites": 200, "backends": 10, "nodes": 5, "node": "proxy1", "files": 200,
                              "before_s": 60.0, "after_s": 0.4, "identical": True}],
        "checks": {"case": "200x10x3", "nodes": {"proxy1": {"nginx -t": {"ok": True, "output": ""},
                                                            "haproxy -c": {"ok": False, "output": "bad"}}}},
        "notes": ["a note"],
    }


def test_the_section_shows_cases_growth_before_after_and_checks() -> None:
    text = scale_report.render(_run())
    assert text.startswith("## The formula's cost as the configuration grows (`bench/scale`)")
    assert "### Run 2026-12-01T00:00:00Z (commit `abc1234`)" in text and "Test CPU x 2" in text
    # 50 sites: model 100 ms, 7 groups of 10 ms, total 500 ms; per apply 11 x 0.1 + 0.07 s
    assert "| 50 | 10 | 3 | 100.0 | " + " | ".join(["10.0"] * 7) + " | 500.0 | 500.0 | 1.17 | 2.0 | 2.0 | 2.0 | 50 |" \
        in text
    assert "| 10 | 3 | 50 -> 200 | 4.0 | 16.00 | 4.00 | 10.00 -> 40.00 | **yes** |" in text
    assert "| 200 | 10 | 5 | 200 | 60.000 | 0.400 | 150x | yes |" in text
    assert "| node | nginx -t | haproxy -c |" in text and "| proxy1 | accepted | **refused** |" in text
    assert "- a note" in text


def test_one_model_per_apply_since_map_jinja_caches_it() -> None:
    # map.jinja asks proxytier.model with cache=True: one model per state run, not one per SLS file
    assert formula_cost.model_builds_per_apply() == 1
    text = scale_report.render({**_run(), "model_builds_per_apply": 1})
    assert "builds the model once (map.jinja's proxytier.model caches it for the state run)" in text
    # 50 sites: per apply 1 x 0.1 + 7 x 0.01 s
    assert " | 500.0 | 500.0 | 0.17 | " in text


def test_a_lab_run_has_its_own_heading_and_table() -> None:
    run = {**_run(), "cases": [], "growth": [], "pem_before_after": []}
    del run["checks"]
    run["lab"] = {"nodes": 3, "node_names": ["proxy1", "proxy2", "proxy3"], "skipped": [[200, 10]], "cases": [
        {"sites": 50, "backends": 10, "apply_first_s": 41.2, "apply_noop_s": 9.0, "apply_change_s": 12.5,
         "reload_s": {"nginx": 0.05, "haproxy": 0.31, "keepalived": 0.01},
         "memory": {d: {"rss_kib": 10240, "pss_kib": 5120, "processes": 2} for d in lab.DAEMONS},
         "scrape_s": 0.012, "scrape_bytes": 40960}]}
    text = scale_report.render(run)
    assert "in the lab (`bench/scale --lab`)" in text and "| sites | backends | model" not in text
    assert "| 50 | 10 | 41.2 | 9.0 | 12.5 | 0.05 / 0.31 / 0.01 | 10.0 / 10.0 / 10.0 | 5.0 / 5.0 / 5.0 | 12 | 40.0 |" \
        in text
    assert "Not run (time budget): 200 x 10." in text
    with pytest.raises(ValueError):
        scale_report.render({"bench": "failover"})


def test_memory_is_summed_per_daemon_from_smaps_rollup(tmp_path: Path) -> None:
    rollup = "00400000-7ffd [rollup]\nRss:                5120 kB\nPss:                2048 kB\nShared_Clean: 1 kB\n"
    assert lab.smaps_rollup(rollup) == {"rss_kib": 5120, "pss_kib": 2048}
    assert lab.smaps_rollup("") == {"rss_kib": 0, "pss_kib": 0}
    for pid in (10, 11, 20):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "smaps_rollup").write_text(rollup)
    procs = {("nginx", 10, 1), ("nginx", 11, 1), ("haproxy", 20, 1), ("haproxy", 99, 1)}  # 99: gone
    mem = lab.daemon_memory(procs, proc=tmp_path)
    assert mem == {"haproxy": {"rss_kib": 5120, "pss_kib": 2048, "processes": 1},
                   "nginx": {"rss_kib": 10240, "pss_kib": 4096, "processes": 2}}
    med = lab.median_memory([mem, {"nginx": {"rss_kib": 0, "pss_kib": 0, "processes": 1}}, mem])
    assert med["nginx"]["rss_kib"] == 10240 and med["haproxy"]["processes"] == 1


def test_reload_time_is_read_from_nanoseconds() -> None:
    assert lab.reload_seconds("1500000000\n") == 1.5
    with pytest.raises(ValueError):
        lab.reload_seconds("Job for nginx.service failed")


def test_the_check_copies_change_only_the_node_specific_names() -> None:
    conf = ("    listen 198.18.0.11:8080;\n    listen 198.18.0.111:8080;\n    set_real_ip_from 198.18.0.11;\n"
            "    listen 127.0.0.1:8407;\n")
    assert checks.on_loopback(conf, "198.18.0.11") == (
        "    listen 127.18.0.11:8080;\n    listen 198.18.0.111:8080;\n    set_real_ip_from 198.18.0.11;\n"
        "    listen 127.0.0.1:8407;\n")
    ka = "    interface host0\n        198.18.0.101/24 dev host0\n    # host01 stays\n"
    assert checks.on_interface(ka, "host0", "eth9") == (
        "    interface eth9\n        198.18.0.101/24 dev eth9\n    # host01 stays\n")
