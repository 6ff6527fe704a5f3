"""proxytier_runtime.serving_checks: which checks `proxytier.verify` waits for. A joining node (its
keepalived held down until its peers know it: orch/join.sls) is checked without keepalived and VIPs;
any other node with both."""

from __future__ import annotations

from formula import build_model, example_pillar, os_params
from proxytier_runtime import serving_checks


def names(**kwargs: object) -> list[str]:
    model = build_model(example_pillar(), "proxy1", params=os_params())

    def no_socket(_cmd: str) -> str:
        raise OSError("no HAProxy here")

    checks = serving_checks(model, no_socket, held_addresses=lambda: {"198.18.0.101"}, **kwargs)  # type: ignore[arg-type]
    assert checks["haproxy sees proxy1's nginx up"]() is False  # a check that cannot reach HAProxy fails
    return list(checks)


def test_a_member_is_checked_for_keepalived_and_the_vips_it_owns() -> None:
    got = names(keepalived_running=lambda: True)
    assert "keepalived running" in got and "holds its VIPs 198.18.0.101" in got


def test_vips_false_checks_keepalived_but_no_vip() -> None:
    got = names(keepalived_running=lambda: True, vips=False)
    assert "keepalived running" in got and not [n for n in got if n.startswith("holds its VIPs")]


def test_a_joining_node_is_checked_without_keepalived_and_vips() -> None:
    got = names(keepalived_running=None, vips=False)
    assert not [n for n in got if "keepalived" in n or n.startswith("holds its VIPs")], got
    assert {"haproxy monitor", "haproxy sees proxy1's nginx up",
            "haproxy's servers are the configured ones (address, port)"} <= set(got), got
    assert [n for n in got if n.startswith("nginx app on ")], got
