"""A site's nginx port changed: nginx keeps the port the last apply configured open as well, until
the next apply (the HAProxies of the tier switch one node at a time); never a port another
listener of the new configuration claims."""

from __future__ import annotations

import copy

from formula import build_model, example_pillar, os_params, render


def moved(port: int) -> dict:
    p = copy.deepcopy(example_pillar())
    p["sites"][0]["nginx_port"] = port
    return p


def test_changed_port_keeps_the_previous_one_until_the_next_apply() -> None:
    m = build_model(moved(8081), "proxy2", params=os_params(), nginx_previous={"app": [8080]})
    site = m["nginx"]["sites"][0]
    assert site["listen"] == "198.18.0.12:8081"
    assert site["listen_also"] == ["198.18.0.12:8080"]
    assert m["nginx"]["ports_record"] == {"app": [8081]}
    conf = render("nginx.conf.jinja", m)
    assert "listen 198.18.0.12:8081;" in conf and "listen 198.18.0.12:8080;" in conf
    # the next apply reads the record this one wrote: the old port is gone
    again = build_model(moved(8081), "proxy2", nginx_previous=m["nginx"]["ports_record"])
    assert again["nginx"]["sites"][0]["listen_also"] == []


def test_previous_port_now_claimed_by_another_listener_is_not_kept() -> None:
    p = moved(8081)
    p["sites"].append({"name": "api", "port": 8000, "nginx_port": 8080, "backends": ["198.18.0.21:9000"]})
    m = build_model(p, "proxy1", nginx_previous={"app": [8080], "gone": [9999]})
    assert [s["listen_also"] for s in m["nginx"]["sites"]] == [[], []]


def test_no_record_or_a_garbled_one_keeps_nothing() -> None:
    for record in (None, {}, {"app": "8080"}, {"app": [True, "x", 70000]}):
        m = build_model(moved(8081), "proxy1", nginx_previous=record)
        assert m["nginx"]["sites"][0]["listen_also"] == []
