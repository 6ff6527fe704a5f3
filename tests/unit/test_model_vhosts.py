"""Many sites on one port: what the model accepts (host names, shared ports, routes to named pools,
the default site, certificates by SNI) and every rejection, each naming the exact key path."""

from __future__ import annotations

import copy
import datetime
import re
from typing import Any

import pytest
from formula import ProxytierError, build_model, example_pillar
from proxytier_tls import covers

from lab.tlsgen import make_cert, make_key

BACKEND = ["198.18.0.21:8080"]


def tier(*sites: dict[str, Any], upstreams: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    p = example_pillar()
    p["sites"] = [{"backends": BACKEND, **s} for s in sites]
    if upstreams is not None:
        p["upstreams"] = upstreams
    return p


def rejects(pillar: dict[str, Any], key: str, *words: str, **kwargs: Any) -> str:
    with pytest.raises(ProxytierError) as err:
        build_model(pillar, "proxy1", **kwargs)
    msg = str(err.value)
    assert msg.startswith(key + " ") or msg.startswith(key + ":"), msg
    for w in words:
        assert w in msg, msg
    return msg


WWW = {"name": "www", "hosts": ["www.example.com"]}
SHOP = {"name": "shop", "hosts": ["*.shop.example.com"]}


# ---- host names -------------------------------------------------------------------------------


def test_host_names_are_lower_cased_and_share_a_port() -> None:
    m = build_model(tier({**WWW, "hosts": ["WWW.Example.com", "example.com"]}, SHOP), "proxy1")
    sites = m["nginx"]["sites"]
    assert sites[0]["server_names"] == ["www.example.com", "example.com"]
    assert sites[1]["server_names"] == ["*.shop.example.com"]
    assert [fe["name"] for fe in m["haproxy"]["frontends"]] == ["fe_port80"]
    assert [be["name"] for be in m["haproxy"]["backends"]] == ["be_port80"]
    assert [s["address"] for s in m["haproxy"]["backends"][0]["servers"]] == [
        "198.18.0.11:8080", "198.18.0.12:8080", "198.18.0.13:8080"]
    assert m["nginx"]["misdirected"] == [{"listen": "198.18.0.11:8080", "listen_also": [], "proxy_protocol": False}]


def test_one_host_routed_site_keeps_its_site_names_and_gets_421_for_other_hosts() -> None:
    m = build_model(tier(WWW), "proxy1")
    assert [fe["name"] for fe in m["haproxy"]["frontends"]] == ["fe_www"]
    assert len(m["nginx"]["misdirected"]) == 1


@pytest.mark.parametrize("bad", [
    "bad_host.example.com", "*.*.example.com", "a.*.example.com", "*example.com", "example.com.", "198.18.0.1",
    "-a.example.com", "a-.example.com", "a" * 64 + ".example.com", ".".join(["abcdefghi"] * 26), "", 42,
    "www.example.com:443", "*",
])
def test_bad_host_names_are_refused(bad: Any) -> None:
    rejects(tier({"name": "other", "port": 8000, "nginx_port": 8081}, {**WWW, "hosts": ["ok.example.com", bad]}),
            "proxytier:sites:1:hosts:1", "host name")


def test_a_host_twice_in_one_site_is_refused() -> None:
    rejects(tier({**WWW, "hosts": ["www.example.com", "WWW.example.com"]}), "proxytier:sites:0:hosts:1",
            "proxytier:sites:0:hosts:0")


def test_a_host_claimed_by_two_sites_of_a_port_is_refused() -> None:
    rejects(tier(WWW, {"name": "b", "hosts": ["a.example.com", "www.example.com"]}), "proxytier:sites:1:hosts:1",
            "proxytier:sites:0:hosts:0")


def test_the_same_host_on_another_port_is_fine() -> None:
    build_model(tier(WWW, {**WWW, "name": "b", "port": 8000, "nginx_port": 8081}), "proxy1")


# ---- shared ports ------------------------------------------------------------------------------


def test_a_site_without_hosts_cannot_share_a_port() -> None:
    rejects(tier(WWW, {"name": "plain"}), "proxytier:sites:1:port", "proxytier:sites:0:hosts")
    rejects(tier({"name": "plain"}, WWW), "proxytier:sites:0:port", "proxytier:sites:1:hosts")


def test_two_sites_without_hosts_still_clash() -> None:
    rejects(tier({"name": "a"}, {"name": "b", "nginx_port": 8081}), "proxytier:sites:1:port", "port clash",
            "proxytier:sites:0:port")


@pytest.mark.parametrize(("change", "key"), [
    ({"nginx_port": 8081}, "nginx_port"),
    ({"client_address": "proxy_v2"}, "client_address"),
    ({"health_check": {"expect_status": 204}}, "health_check:expect_status"),
])
def test_sites_of_a_port_share_what_haproxy_and_nginx_share(change: dict[str, Any], key: str) -> None:
    rejects(tier(WWW, {**SHOP, **change}), f"proxytier:sites:1:{key}", f"proxytier:sites:0:{key}")


def test_a_host_routed_site_has_no_health_check_path() -> None:
    rejects(tier({**WWW, "health_check": {"path": "/healthz"}}), "proxytier:sites:0:health_check:path",
            "nginx.health_path")


@pytest.fixture(scope="module")
def certs() -> dict[str, tuple[str, str]]:
    return {"www": make_cert(["www.example.com", "example.com"], "ec"), "shop": make_cert(["*.shop.example.com"], "ec"),
            "api": make_cert(["api.example.com"], "rsa")}


def with_tls(site: dict[str, Any], pem: tuple[str, str], **tls: Any) -> dict[str, Any]:
    return {**site, "tls": {"certificate": pem[0], "key": pem[1], **tls}}


def test_tls_on_and_off_and_tls_ports_must_agree(certs: dict[str, tuple[str, str]]) -> None:
    rejects(tier(with_tls(WWW, certs["www"]), SHOP), "proxytier:sites:1:tls", "proxytier:sites:0:tls")
    rejects(tier(with_tls(WWW, certs["www"]), with_tls(SHOP, certs["shop"], port=8443)),
            "proxytier:sites:1:tls:port", "proxytier:sites:0:tls:port")
    rejects(tier(with_tls(WWW, certs["www"]), with_tls(SHOP, certs["shop"], redirect_http=True)),
            "proxytier:sites:1:tls:redirect_http", "proxytier:sites:0:tls:redirect_http")
    rejects(tier(with_tls(WWW, certs["www"]), with_tls(SHOP, certs["shop"], http2=False)),
            "proxytier:sites:1:tls:http2", "proxytier:sites:0:tls:http2")
    rejects(tier(with_tls(WWW, certs["www"]), with_tls(SHOP, certs["shop"], hsts=True)),
            "proxytier:sites:1:tls:hsts", "proxytier:sites:0:tls:hsts")


def test_http2_is_offered_by_alpn_unless_turned_off(certs: dict[str, tuple[str, str]]) -> None:
    on = build_model(tier(with_tls(WWW, certs["www"]), with_tls(SHOP, certs["shop"])), "proxy1")
    off = build_model(tier(with_tls(WWW, certs["www"], http2=False), with_tls(SHOP, certs["shop"], http2=False)),
                      "proxy1")
    for m, protocols in ((on, "h2,http/1.1"), (off, "http/1.1")):
        assert {b["alpn"] for b in m["haproxy"]["frontends"][0]["binds"] if b["tls"]} == {protocols}
        assert all(f"[alpn {protocols}]" in line for line in m["crt_lists"][0]["lines"])
    alone = build_model(tier({"name": "app", "tls": {"certificate": certs["www"][0], "key": certs["www"][1],
                                                      "http2": False}}), "proxy1")
    assert [b["alpn"] for b in alone["haproxy"]["frontends"][0]["binds"] if b["tls"]] == ["http/1.1"] * 3


@pytest.mark.parametrize(("hsts", "header"), [
    (None, None), (False, None), (True, "max-age=31536000"), ({"max_age": 0}, "max-age=0"),
    ({"max_age": 600, "include_subdomains": True}, "max-age=600; includeSubDomains"),
])
def test_hsts_is_one_header_value_on_the_ports_frontend(
        certs: dict[str, tuple[str, str]], hsts: Any, header: str | None) -> None:
    m = build_model(tier(with_tls(WWW, certs["www"], hsts=hsts), with_tls(SHOP, certs["shop"], hsts=hsts)), "proxy1")
    assert m["haproxy"]["frontends"][0]["hsts"] == header


@pytest.mark.parametrize(("hsts", "key", "words"), [
    ({"max_age": -1}, "hsts:max_age", "0..63072000"),
    ({"max_age": 31536000000}, "hsts:max_age", "0..63072000"),
    ({"max_age": "1y"}, "hsts:max_age", "whole number"),
    ({"include_subdomains": "yes"}, "hsts:include_subdomains", "true or false"),
    ({"preload": True}, "hsts:preload", "unknown key"),
    ("max-age=1", "hsts", "mapping"),
])
def test_bad_hsts_is_refused(certs: dict[str, tuple[str, str]], hsts: Any, key: str, words: str) -> None:
    rejects(tier(with_tls(WWW, certs["www"], hsts=hsts)), f"proxytier:sites:0:tls:{key}", words)


def test_a_site_named_like_a_shared_port_is_refused() -> None:
    rejects(tier(WWW, SHOP, {"name": "port80", "port": 8000, "nginx_port": 8081}), "proxytier:sites:2:name",
            "fe_port80")


# ---- the default site ---------------------------------------------------------------------------


def test_a_default_site_takes_unclaimed_hosts_instead_of_421() -> None:
    m = build_model(tier(WWW, {**SHOP, "default": True}), "proxy1")
    assert "misdirected" not in m["nginx"]
    assert [s["default_server"] for s in m["nginx"]["sites"]] == [False, True]


def test_at_most_one_default_per_port() -> None:
    rejects(tier({**WWW, "default": True}, {**SHOP, "default": True}), "proxytier:sites:1:default",
            "proxytier:sites:0:default")


def test_default_needs_hosts() -> None:
    rejects(tier({"name": "plain", "default": True}), "proxytier:sites:0:default", "hosts")


# ---- routes and upstream pools --------------------------------------------------------------------

POOLS = [{"name": "api", "backends": ["198.18.0.31:9000"], "timeouts": {"read": "5s"}},
         {"name": "web", "backends": ["198.18.0.32:9000", "198.18.0.33:9000"]}]


def test_routes_render_as_exact_and_prefix_locations_to_named_pools() -> None:
    site = {**WWW, "routes": [{"path": "/api", "upstream": "api"}, {"path": "/api/v2/x", "upstream": "web"}]}
    m = build_model(tier(site, upstreams=POOLS), "proxy1")
    s = m["nginx"]["sites"][0]
    assert s["upstream"] == "up_www"
    assert [(r["exact"], r["prefix"], r["upstream"], r["timeouts"]["read"]) for r in s["routes"]] == [
        ("/api", "/api/", "pool_api", "5s"), ("/api/v2/x", "/api/v2/x/", "pool_web", "30s")]
    assert [u["name"] for u in m["nginx"]["upstreams"]] == ["pool_api", "pool_web"]


def test_a_route_for_slash_replaces_the_sites_own_backends() -> None:
    site = {"name": "www", "hosts": ["www.example.com"], "routes": [{"path": "/", "upstream": "web"}]}
    p = tier(upstreams=POOLS)
    p["sites"] = [site]
    s = build_model(p, "proxy1")["nginx"]["sites"][0]
    assert s["upstream"] is None and s["servers"] == []
    assert s["routes"][0]["exact"] is None and s["routes"][0]["prefix"] == "/"


def test_backends_and_a_route_for_slash_is_refused() -> None:
    rejects(tier({**WWW, "routes": [{"path": "/api", "upstream": "api"}, {"path": "/", "upstream": "web"}]},
                 upstreams=POOLS), "proxytier:sites:0:routes:1:path", "proxytier:sites:0:backends")


def test_neither_backends_nor_a_route_for_slash_is_refused() -> None:
    p = tier(upstreams=POOLS)
    p["sites"] = [{**WWW, "routes": [{"path": "/api", "upstream": "api"}]}]
    rejects(p, "proxytier:sites:0:backends", "route for '/'")


def test_a_route_to_an_unknown_pool_names_the_known_ones() -> None:
    rejects(tier({**WWW, "routes": [{"path": "/api", "upstream": "apii"}]}, upstreams=POOLS),
            "proxytier:sites:0:routes:0:upstream", "known: api, web")
    rejects(tier({**WWW, "routes": [{"path": "/api", "upstream": "api"}]}), "proxytier:sites:0:routes:0:upstream",
            "proxytier:upstreams is empty")


@pytest.mark.parametrize("bad", ["api", "/api/", "/a//b", "/a/../b", "/a/./b", "/a%2Fb", "/a?b=1", "/a b", "/a;b",
                                 "/a{b}", "/a'b", "", None, "/a#b"])
def test_bad_route_paths_are_refused(bad: Any) -> None:
    rejects(tier({**WWW, "routes": [{"path": "/ok", "upstream": "api"}, {"path": bad, "upstream": "api"}]},
                 upstreams=POOLS), "proxytier:sites:0:routes:1:path", "path prefix")


def test_a_route_path_twice_is_refused() -> None:
    rejects(tier({**WWW, "routes": [{"path": "/api", "upstream": "api"}, {"path": "/api", "upstream": "web"}]},
                 upstreams=POOLS), "proxytier:sites:0:routes:1:path", "proxytier:sites:0:routes:0:path")


def test_pools_are_validated_as_site_backends_are() -> None:
    bad = copy.deepcopy(POOLS)
    bad[1]["backends"][1] = "198.18.0.300:9000"
    rejects(tier(WWW, upstreams=bad), "proxytier:upstreams:1:backends:1:address", "IPv4")
    bad = copy.deepcopy(POOLS)
    bad[0]["timeouts"]["read"] = "5us"
    rejects(tier(WWW, upstreams=bad), "proxytier:upstreams:0:timeouts:read", "nginx duration")
    rejects(tier(WWW, upstreams=[{"name": "api", "backends": []}]), "proxytier:upstreams:0:backends", "a pool")
    rejects(tier(WWW, upstreams=[POOLS[0], {**POOLS[1], "name": "api"}]), "proxytier:upstreams:1:name",
            "proxytier:upstreams:0")
    rejects(tier(WWW, upstreams=[{**POOLS[0], "extra": {}}]), "proxytier:upstreams:0:extra", "unknown key")


# ---- TLS by SNI --------------------------------------------------------------------------------------


def test_a_shared_tls_port_binds_a_crt_list_with_the_default_certificate_first(
        certs: dict[str, tuple[str, str]]) -> None:
    p = tier(with_tls({**WWW, "hosts": ["www.example.com", "example.com"]}, certs["www"]),
             with_tls({**SHOP, "default": True}, certs["shop"]))
    m = build_model(p, "proxy1")
    tls_dir = "/etc/haproxy/proxytier-tls"
    assert m["crt_lists"] == [{"group": "port443", "path": f"{tls_dir}/port443.crt-list", "lines": [
        f"{tls_dir}/shop.pem [alpn h2,http/1.1] !*",
        f"{tls_dir}/www.pem [alpn h2,http/1.1] www.example.com example.com",
        f"{tls_dir}/shop.pem [alpn h2,http/1.1] *.shop.example.com",
    ]}]
    binds = m["haproxy"]["frontends"][0]["binds"]
    assert [b.get("crt_list") for b in binds if b["tls"]] == [f"{tls_dir}/port443.crt-list"] * 3
    assert "BEGIN" not in str(m["crt_lists"]) and all("contents" not in f for f in m["tls_files"])


def test_a_certificate_must_cover_every_host(certs: dict[str, tuple[str, str]]) -> None:
    p = tier(with_tls({**WWW, "hosts": ["www.example.com", "example.com", "shop.example.com"]}, certs["www"]))
    rejects(p, "proxytier:sites:0:tls:certificate", "proxytier:sites:0:hosts:2", "shop.example.com")


def test_a_wildcard_certificate_covers_one_label_only() -> None:
    pem = make_cert(["*.example.com"], "ec")
    build_model(tier(with_tls({**WWW, "hosts": ["a.example.com", "www.example.com"]}, pem)), "proxy1")
    for host in ("example.com", "a.b.example.com", "*.b.example.com"):
        rejects(tier(with_tls({**WWW, "hosts": ["a.example.com", host]}, pem)), "proxytier:sites:0:tls:certificate",
                "proxytier:sites:0:hosts:1")


@pytest.mark.parametrize(("pattern", "host", "covered"), [
    ("*.example.com", "a.example.com", True), ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False), ("*.example.com", "*.example.com", True),
    ("WWW.example.com", "www.example.com", True), ("a*.example.com", "ab.example.com", False),
])
def test_rfc6125_wildcard_matching(pattern: str, host: str, covered: bool) -> None:
    assert covers(pattern, host) is covered


def test_a_key_that_is_not_the_certificates_is_refused(certs: dict[str, tuple[str, str]]) -> None:
    pem = (certs["www"][0], certs["shop"][1])
    msg = rejects(tier(with_tls(WWW, pem)), "proxytier:sites:0:tls:key", "not the certificate's")
    assert "PRIVATE" not in msg


def test_expired_and_not_yet_valid_certificates_are_refused() -> None:
    now = datetime.datetime.now(datetime.UTC)
    key = make_key("ec")
    old = make_cert(["www.example.com"], key=key, not_before=now - datetime.timedelta(days=30),
                    not_after=now - datetime.timedelta(days=1))
    rejects(tier(with_tls(WWW, old)), "proxytier:sites:0:tls:certificate", "expired", "renew")
    future = make_cert(["www.example.com"], key=key, not_before=now + datetime.timedelta(days=1))
    rejects(tier(with_tls(WWW, future)), "proxytier:sites:0:tls:certificate", "valid only from")


def test_certificate_files_on_the_node_are_left_to_haproxys_check() -> None:
    """The model does not read files on the node: a certificate_file is not checked for hosts here."""
    tls = {"certificate_file": "/etc/ssl/www.pem", "key_file": "/etc/ssl/www.pem.key"}
    m = build_model(tier({**WWW, "hosts": ["not-covered.example.org"], "tls": tls}), "proxy1",
                    file_exists=lambda path: True)
    assert m["haproxy"]["frontends"][0]["binds"][-1]["crt"] == "/etc/ssl/www.pem"


def test_error_messages_name_the_key_path_style() -> None:
    msg = rejects(tier(WWW, {**SHOP, "nginx_port": 8081}), "proxytier:sites:1:nginx_port")
    assert re.match(r"proxytier:sites:1:nginx_port = 8081: .*proxytier:sites:0:nginx_port is 8080", msg), msg


def test_the_readme_example_is_a_working_tier() -> None:
    """README's "Many sites on one port" pillar (with real certificates for its "...") builds."""
    import yaml
    from formula import ROOT

    text = (ROOT / "README.md").read_text().split("### Many sites on one port", 1)[1]
    example = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])["proxytier"]
    names = {"www": ["www.example.com", "example.com"], "shop": ["*.shop.example.com"], "api": ["api.example.com"]}
    for site in example["sites"]:
        site["tls"]["certificate"], site["tls"]["key"] = make_cert(names[site["name"]], "ec")
    m = build_model({**example_pillar(), **example}, "proxy1")
    assert [fe["name"] for fe in m["haproxy"]["frontends"]] == ["fe_port443"]
    assert [r["upstream"] for r in m["nginx"]["sites"][2]["routes"]] == ["pool_api", "pool_web"]
    assert m["nginx"]["misdirected"]
