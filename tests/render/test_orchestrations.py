"""The join and leave orchestrations (salt/proxytier/orch/) rendered by Salt's own Jinja renderer
(salt.utils.templates.render_jinja_tmpl, as the master renders them), with the two master-side
functions they call answered here: pillar.get (the orchestration's pillar) and saltutil.runner
(manage.up: the minions that are up). What is checked is the order the steps run in (their
requisites), which minions each step targets, and the refusals; the lab runs them for real."""

from __future__ import annotations

from typing import Any

import pytest
import salt.config
import salt.utils.templates
import yaml
from formula import FORMULA

ORCH = FORMULA / "orch"


def render(name: str, pillar: dict[str, Any], up: list[str]) -> dict[str, Any]:
    """The orchestration's highstate data: {state id: {"fun": "salt.state", "args": {...}}}."""
    opts = salt.config.minion_config(None)
    calls: list[dict[str, Any]] = []

    def runner(fun: str, **kwargs: Any) -> list[str]:
        assert fun == "manage.up", fun
        calls.append(kwargs)
        return list(up)

    funcs = {"pillar.get": lambda key, default=None: pillar.get(key, default), "saltutil.runner": runner}
    text = salt.utils.templates.render_jinja_tmpl(
        (ORCH / f"{name}.sls").read_text(),
        {"salt": funcs, "pillar": pillar, "grains": {}, "opts": opts, "saltenv": "base",
         "sls": f"proxytier.orch.{name}", "tpldir": "proxytier/orch"},
    )
    assert calls == [{"tgt": pillar.get("target", "proxy*"), "tgt_type": pillar.get("tgt_type", "glob")}]
    out = {}
    for sid, body in (yaml.safe_load(text) or {}).items():
        [(fun, items)] = body.items()
        args: dict[str, Any] = {}
        for item in items:
            args.update(item)
        out[sid] = {"fun": fun, "args": args}
    return out


def run_order(states: dict[str, Any]) -> list[str]:
    """The state ids in the order their `require`s force, checking that each step requires exactly the
    one before it (a chain: the first failure stops everything after it)."""
    order, previous = [], None
    todo = dict(states)
    while todo:
        ready = [sid for sid, st in todo.items()
                 if [r["salt"] for r in st["args"].get("require", [])] == ([previous] if previous else [])]
        assert len(ready) == 1, f"after {previous}: {ready} (not one chain)"
        previous = ready[0]
        order.append(previous)
        del todo[previous]
    return order


def short(order: list[str], prefix: str) -> list[str]:
    return [sid.removeprefix(prefix) for sid in order]


def test_join_serves_first_then_its_peers_then_its_vrrp() -> None:
    states = render("join", {"node": "proxy4"}, ["proxy3", "proxy1", "proxy4", "proxy2"])
    assert short(run_order(states), "proxytier-join-") == [
        "sync", "pillar", "mine", "hold-vrrp", "serve", "serving", "peers", "vrrp", "verify"]
    assert states["proxytier-join-sync"]["args"]["tgt"] == "proxy*"
    assert states["proxytier-join-mine"]["args"] == {**states["proxytier-join-mine"]["args"],
                                                     "name": "mine.update", "tgt": "proxy4"}
    assert states["proxytier-join-hold-vrrp"]["args"]["name"] == "proxytier.stop_vrrp"
    serve = states["proxytier-join-serve"]
    assert serve["fun"] == "salt.state"
    assert (serve["args"]["tgt"], serve["args"]["exclude"]) == ("proxy4", [{"sls": "proxytier.keepalived"}])
    assert states["proxytier-join-serving"]["args"]["kwarg"] == {"vrrp": False}
    peers = states["proxytier-join-peers"]["args"]
    assert (peers["tgt"], peers["tgt_type"], peers["sls"]) == ("proxy1,proxy2,proxy3", "list", "proxytier")
    vrrp = states["proxytier-join-vrrp"]["args"]
    assert (vrrp["tgt"], "exclude" in vrrp) == ("proxy4", False)
    assert "kwarg" not in states["proxytier-join-verify"]["args"]  # VIPs and keepalived checked too


def test_join_with_monitoring_re_reads_the_mine_last() -> None:
    pillar = {"node": "proxy4", "monitoring_tgt": "G@role:prometheus", "monitoring_tgt_type": "compound"}
    states = render("join", pillar, ["proxy1", "proxy4"])
    assert run_order(states)[-1] == "proxytier-join-monitoring"
    args = states["proxytier-join-monitoring"]["args"]
    assert (args["tgt"], args["tgt_type"], args["sls"]) == ("G@role:prometheus", "compound", "proxytier.monitoring")


def test_the_first_node_joins_without_peers() -> None:
    states = render("join", {"node": "proxy1"}, ["proxy1"])
    assert short(run_order(states), "proxytier-join-") == [
        "sync", "pillar", "mine", "hold-vrrp", "serve", "serving", "vrrp", "verify"]


@pytest.mark.parametrize("pillar", [{}, {"node": "proxy9"}, {"node": "proxy1; rm -rf /"}])
def test_join_of_a_minion_that_is_not_up_fails_naming_it(pillar: dict[str, Any]) -> None:
    states = render("join", pillar, ["proxy1", "proxy2"])
    assert list(states) == ["proxytier-join-no-node"]
    assert states["proxytier-join-no-node"]["fun"] == "test.fail_without_changes"
    assert f"node={pillar.get('node', '')!r}".replace("'", '"') in states["proxytier-join-no-node"]["args"]["name"]


def test_leave_drains_hands_over_drops_it_then_retires_it() -> None:
    states = render("leave", {"node": "proxy2"}, ["proxy1", "proxy2", "proxy3"])
    assert short(run_order(states), "proxytier-leave-") == [
        "sync", "pillar", "drain", "release", "stop-vrrp", "mine", "peers", "retire", "key"]
    for step, name, arg in (("drain", "proxytier.member_state", ["proxy2", "drain"]),
                            ("release", "proxytier.handover", ["proxy2", "release"])):
        args = states[f"proxytier-leave-{step}"]["args"]
        assert (args["name"], args["tgt"], args["arg"]) == (name, "proxy*", arg)  # every HAProxy / keepalived
    # its keepalived stops before its peers drop it: unheard, it would take every VIP
    assert states["proxytier-leave-stop-vrrp"]["args"]["name"] == "proxytier.stop_vrrp"
    assert states["proxytier-leave-stop-vrrp"]["args"]["tgt"] == "proxy2"
    assert states["proxytier-leave-mine"]["args"]["name"] == "mine.flush"
    assert states["proxytier-leave-mine"]["args"]["tgt"] == "proxy2"
    assert states["proxytier-leave-peers"]["args"]["tgt"] == "proxy1,proxy3"
    assert states["proxytier-leave-retire"]["args"] == {**states["proxytier-leave-retire"]["args"],
                                                        "name": "proxytier.retire", "tgt": "proxy2"}
    key = states["proxytier-leave-key"]
    assert (key["fun"], key["args"]["name"], key["args"]["match"]) == ("salt.wheel", "key.delete", "proxy2")


def test_leave_stops_scraping_before_it_retires_and_may_keep_the_key() -> None:
    states = render("leave", {"node": "proxy2", "monitoring_tgt": "mon1", "delete_key": False},
                    ["proxy1", "proxy2"])
    assert short(run_order(states), "proxytier-leave-") == [
        "sync", "pillar", "drain", "release", "stop-vrrp", "mine", "peers", "monitoring", "retire"]


@pytest.mark.parametrize(("pillar", "up", "says"), [
    ({"node": "proxy1"}, ["proxy1"], "the last node of the tier cannot leave it"),
    ({"node": "proxy7"}, ["proxy1", "proxy2"], "no minion of that id matching proxy* is up"),
    ({}, ["proxy1", "proxy2"], "no minion of that id"),
])
def test_leave_refuses_the_last_node_and_unknown_ones(pillar: dict[str, Any], up: list[str], says: str) -> None:
    states = render("leave", pillar, up)
    assert list(states) == ["proxytier-leave-no-node"]
    assert says in states["proxytier-leave-no-node"]["args"]["name"]


@pytest.mark.parametrize("name", ["leave", "rolling"])
def test_a_drain_in_pillar_reaches_the_release_and_only_it(name: str) -> None:
    """pillar drain: the seconds proxytier.handover's release waits for the node's connections (BGP mode's
    graceful shutdown needs tens of seconds); without it the release gets no drain and the handover picks its
    default (2 s in VRRP mode, bgp:drain in BGP mode)."""
    up = ["proxy1", "proxy2", "proxy3"]
    with_drain = render(name, {"node": "proxy2", "drain": 40}, up)
    without = render(name, {"node": "proxy2"}, up)
    releases = [sid for sid, st in with_drain.items() if st["args"].get("arg", [None, None])[1:] == ["release"]]
    assert releases and all(with_drain[sid]["args"]["kwarg"] == {"drain": 40} for sid in releases), releases
    assert all("kwarg" not in without[sid]["args"] for sid in releases)
    others = [sid for sid, st in with_drain.items() if sid not in releases and st["args"].get("name") in (
        "proxytier.handover", "proxytier.member_state")]
    assert others and all("drain" not in with_drain[sid]["args"].get("kwarg", {}) for sid in others)


@pytest.mark.parametrize("name", ["join", "leave", "rolling"])
def test_every_orchestration_waits_for_the_new_pillar_before_its_first_step(name: str) -> None:
    """saltutil.sync_all's refresh only signals the minions (it calls refresh_pillar without wait), so the
    step after it could run on a minion's old in-memory pillar and modules: a rolling change in CI once
    drained a node on a minion whose pillar still had a site from an earlier test (HAProxy: "No such
    backend"). Each orchestration syncs without that refresh, then refreshes and waits for it, and every
    other step comes after."""
    up = ["proxy1", "proxy2", "proxy3", "proxy4"]
    states = render(name, {"node": "proxy4"} if name != "rolling" else {}, up)
    order = short(run_order(states), f"proxytier-{name}-")
    assert order[:2] == ["sync", "pillar"], order
    sync, pillar = states[f"proxytier-{name}-sync"]["args"], states[f"proxytier-{name}-pillar"]["args"]
    assert (sync["name"], sync["kwarg"]) == ("saltutil.sync_all", {"refresh": False})
    assert (pillar["name"], pillar["kwarg"]["wait"], pillar["tgt"]) == ("saltutil.refresh_pillar", True, sync["tgt"])
