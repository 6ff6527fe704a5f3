"""proxytier_runtime.serving_checks: which checks `proxytier.verify` waits for. A joining node (its
keepalived held down until its peers know it: orch/join.sls) is checked without keepalived and VIPs;
any other node with both."""

from __future__ import annotations

import socket
import threading

import yaml
from formula import ROOT, build_model, example_pillar, os_params
from proxytier_runtime import proxied_ok, proxy_v1_header, serving_checks

DUAL = yaml.safe_load((ROOT / "tests" / "pillar" / "dual-stack.sls").read_text())["proxytier"]


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


def test_a_dual_stack_node_checks_nginx_on_both_its_addresses() -> None:
    model = build_model(DUAL, "proxy2", params=os_params())
    checks = serving_checks(model, lambda _cmd: "", keepalived_running=None, held_addresses=set)
    assert {"nginx app on 198.18.0.12:8080", "nginx app on [2001:2::12]:8080",
            "nginx api on 198.18.0.12:8081", "nginx api on [2001:2::12]:8081"} <= set(checks)


def test_the_proxy_header_is_of_the_listeners_family() -> None:
    assert proxy_v1_header("198.18.0.12:8081") == b"PROXY TCP4 127.0.0.1 198.18.0.12 1 8081\r\n"
    assert proxy_v1_header("[2001:2::12]:8081") == b"PROXY TCP6 ::1 2001:2::12 1 8081\r\n"


def test_proxied_ok_speaks_proxy_tcp6_to_an_ipv6_listener() -> None:
    """A PROXY protocol listener on ::1 (loopback) gets a TCP6 header, then the request."""
    got: list[bytes] = []
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(4096))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        assert proxied_ok(f"[::1]:{port}", "/proxytier-health")
        thread.join(5)
    assert got[0].startswith(f"PROXY TCP6 ::1 ::1 1 {port}\r\nGET /proxytier-health HTTP/1.0\r\n".encode())
