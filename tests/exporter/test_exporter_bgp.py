"""vip_mode bgp: the bgp collector on replies captured from Debian 12's BIRD 2.0.12 and the gate's state files
captured at the same moments (fixtures/capture_bird.py: sessions up, the node held, the router gone), and its
BIRD client against a socket that replays them."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from proxytier_exporter import birdctl
from proxytier_exporter.bgp import (
    BgpCollector,
    parse_bfd_sessions,
    parse_gate_state,
    parse_protocols,
)
from proxytier_exporter.birdctl import SourceError, parse_reply, query
from proxytier_exporter.cli import build, parser
from proxytier_exporter.core import ScrapeCollector

CASES = ("established", "held", "router_down")


def replies(fixtures: Path, case: str) -> dict[str, birdctl.Reply]:
    return {
        "show protocols all": parse_reply((fixtures / f"bird_{case}_show_protocols_all.txt").read_text()),
        "show bfd sessions": parse_reply((fixtures / f"bird_{case}_show_bfd_sessions.txt").read_text()),
    }


def collector(fixtures: Path, case: str, state_file: Path | None = None) -> BgpCollector:
    def fake_query(path: str, commands: tuple[str, ...], timeout: float) -> dict[str, birdctl.Reply]:
        assert path == "/run/bird/bird.ctl" and commands == ("show protocols all", "show bfd sessions")
        return replies(fixtures, case)

    return BgpCollector(state_file=str(state_file or fixtures / f"bgp_gate_state_{case}.json"), query=fake_query)


def samples(families: Iterator[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.mark.parametrize("case", CASES)
def test_exposition_matches_golden_file(case, fixtures, render, golden) -> None:
    golden(f"bgp_{case}.prom", render(collector(fixtures, case).collect))


def test_sessions_up_routes_exported_and_bfd_per_peer(fixtures) -> None:
    found = samples(collector(fixtures, "established").collect())
    peer1 = {"peer": "peer1", "peer_address": "198.18.200.1", "peer_asn": "64496"}
    peer2 = {"peer": "peer2", "peer_address": "198.18.200.9", "peer_asn": "64497"}
    peer3 = {"peer": "peer3", "peer_address": "2001:2:0:200::1", "peer_asn": "64496"}
    assert value(found, "proxytier_bgp_session_state", **peer1, state="Established") == 1
    assert value(found, "proxytier_bgp_session_state", **peer3, state="Established") == 1
    # nobody answers at 198.18.200.9: BIRD keeps trying
    assert value(found, "proxytier_bgp_session_state", **peer2, state="Connect") == 1
    assert value(found, "proxytier_bgp_session_state", **peer2, state="Established") == 0
    assert value(found, "proxytier_bgp_routes_exported", **peer1, channel="ipv4") == 1
    assert value(found, "proxytier_bgp_routes_exported", **peer3, channel="ipv6") == 1
    assert value(found, "proxytier_bgp_routes_exported", **peer2, channel="ipv4") == 0
    assert value(found, "proxytier_bgp_bfd_session_state", **peer1, interface="host0", state="Up") == 1
    assert value(found, "proxytier_bgp_bfd_session_state", **peer2, interface="host0", state="Down") == 1
    # peer3 has bfd: false in pillar: no BFD series at all
    assert not any(name == "proxytier_bgp_bfd_session_state" and ("peer", "peer3") in labels
                   for name, labels in found)
    assert value(found, "proxytier_bgp_gate_announced") == 1 and value(found, "proxytier_bgp_gate_held") == 0
    assert value(found, "proxytier_bgp_gate_healthy") == 1
    since = json.loads((fixtures / "bgp_gate_state_established.json").read_text())["since"]
    assert value(found, "proxytier_bgp_gate_last_change_timestamp_seconds") == since
    # only BGP protocols: not the device, kernel or BFD protocols of the same reply
    assert {dict(labels)["peer"] for name, labels in found if name == "proxytier_bgp_session_state"} == {
        "peer1", "peer2", "peer3"}


def test_a_held_node_exports_nothing_with_its_sessions_up(fixtures) -> None:
    found = samples(collector(fixtures, "held").collect())
    assert value(found, "proxytier_bgp_gate_held") == 1 and value(found, "proxytier_bgp_gate_announced") == 0
    exported = [v for (name, _), v in found.items() if name == "proxytier_bgp_routes_exported"]
    assert exported == [0, 0, 0]
    assert value(found, "proxytier_bgp_session_state", peer="peer1", peer_address="198.18.200.1",
                 peer_asn="64496", state="Established") == 1


def test_the_router_gone_takes_the_sessions_and_bfd_down(fixtures) -> None:
    found = samples(collector(fixtures, "router_down").collect())
    peer1 = {"peer": "peer1", "peer_address": "198.18.200.1", "peer_asn": "64496"}
    assert value(found, "proxytier_bgp_session_state", **peer1, state="Active") == 1
    assert value(found, "proxytier_bgp_session_state", **peer1, state="Established") == 0
    assert value(found, "proxytier_bgp_bfd_session_state", **peer1, interface="host0", state="Down") == 1
    assert value(found, "proxytier_bgp_routes_exported", **peer1, channel="ipv4") == 0
    # the gate announces (HAProxy serves): the addresses are in its table, with no session to carry them
    assert value(found, "proxytier_bgp_gate_announced") == 1


def test_the_parsers_read_the_captured_replies(fixtures) -> None:
    peers = parse_protocols(replies(fixtures, "established")["show protocols all"])
    assert [(p.name, p.state, p.address, p.asn, p.exported) for p in peers] == [
        ("peer1", "Established", "198.18.200.1", "64496", {"ipv4": 1}),
        ("peer2", "Connect", "198.18.200.9", "64497", {"ipv4": 0}),
        ("peer3", "Established", "2001:2:0:200::1", "64496", {"ipv6": 1}),
    ]
    sessions = parse_bfd_sessions(replies(fixtures, "established")["show bfd sessions"])
    assert sorted((s.address, s.interface, s.state) for s in sessions) == [
        ("198.18.200.1", "host0", "Up"), ("198.18.200.9", "host0", "Down")]
    assert parse_bfd_sessions([(0, "")]) == []


def test_the_captured_socket_is_birds_group_0660(fixtures) -> None:
    """What the formula relies on to let the exporter read it: a supplementary group `bird`."""
    assert (fixtures / "bird_socket_stat.txt").read_text().split() == ["bird", "bird", "0o660"]


def test_a_state_the_collector_does_not_know_is_no_state() -> None:
    reply = parse_reply("2002-Name Proto Table State Since Info\n1002-peer1 BGP --- up 00:00:00.000 New\n"
                        "1006-  BGP state:          Dreaming\n0000 \n")
    (peer,) = parse_protocols(reply)
    from proxytier_exporter.bgp import bird_families

    families = list(bird_families([peer], []))
    assert all(s.value == 0 for s in families[0].samples) and len(families[0].samples) == 9


@pytest.mark.parametrize(("text", "message"), [
    ("", "not JSON"),
    ("[]", "not a JSON object"),
    ('{"announced": 1, "healthy": true, "held": false, "since": 1}', "'announced' is 1, not true or false"),
    ('{"announced": true, "healthy": true, "since": 1}', "'held' is None"),
    ('{"announced": true, "healthy": true, "held": false, "since": "x"}', "'since' is 'x', not a Unix time"),
    ('{"announced": true, "healthy": true, "held": false, "since": NaN}', "'since' is nan"),
    ('{"announced": true, "healthy": true, "held": true, "since": 1, "graceful": "yes"}',
     "'graceful' is 'yes', not true or false"),
])
def test_a_malformed_state_file_is_a_source_error(text, message) -> None:
    with pytest.raises(SourceError, match=message) as error:
        parse_gate_state(text, "/run/proxytier-bgp-gate/state.json")
    assert "/run/proxytier-bgp-gate/state.json" in str(error.value)


def test_graceful_is_read_and_an_older_gates_file_without_it_is_not_graceful() -> None:
    """The field a gate writes since graceful shutdowns (RFC 8326) came; a file of a gate before that lacks it."""
    state = parse_gate_state('{"announced": true, "healthy": true, "held": true, "since": 5, "graceful": true}', "s")
    assert (state.announced, state.held, state.graceful) == (True, True, True)
    assert parse_gate_state('{"announced": true, "healthy": true, "held": false, "since": 5}', "s").graceful is False
    from proxytier_exporter.bgp import gate_families

    values = {f.name: f.samples[0].value for f in gate_families(state)}
    assert values["proxytier_bgp_gate_graceful"] == 1 and values["proxytier_bgp_gate_announced"] == 1


def test_a_missing_state_file_fails_the_bgp_collector_only(fixtures, tmp_path, render) -> None:
    class Other:
        name = "other"

        def collect(self):
            from prometheus_client.core import GaugeMetricFamily

            yield GaugeMetricFamily("other_metric", "x", value=1)

        def describe(self):
            return []

    bgp = collector(fixtures, "established", state_file=tmp_path / "state.json")
    with pytest.raises(SourceError, match=r"state.json does not exist \(is proxytier-bgp-gate running\?\)"):
        list(bgp.collect())
    text = render(ScrapeCollector([bgp, Other()]).collect)
    assert 'proxytier_collector_success{collector="bgp"} 0.0' in text
    assert 'proxytier_collector_success{collector="other"} 1.0' in text and "other_metric 1.0" in text
    assert "proxytier_bgp_" not in text


@pytest.mark.parametrize(("text", "message"), [
    ("1002-peer1 BGP\n", "ended without its final line"),
    ("garbage\n0000 \n", "line 1 is not a reply line"),
    ("0000 \n0000 \n", "after the end of the reply"),
])
def test_a_malformed_reply_is_a_source_error(text, message) -> None:
    with pytest.raises(SourceError, match=message):
        parse_reply(text)


@pytest.mark.parametrize(("text", "message"), [
    ("0000 \n", "did not start with its table heading"),
    ("2002-Name Proto\n1002-peer1 BGP --- up 00:00:00.000 Established\n0000 \n", "has no `BGP state:` line"),
    ("2002-Name Proto\n1002-peer1\n0000 \n", "fewer than 4 columns"),
])
def test_an_unexpected_protocols_reply_is_a_source_error(text, message) -> None:
    with pytest.raises(SourceError, match=message):
        parse_protocols(parse_reply(text))


def bird_socket(tmp_path: Path, answers: dict[bytes, bytes], greeting: bytes) -> tuple[str, list[bytes]]:
    """A unix socket that greets like BIRD and answers each command line with the captured bytes."""
    path = str(tmp_path / "bird.ctl")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    heard: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.sendall(greeting)
            buffer = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    heard.append(line)
                    conn.sendall(answers.get(line, b"9001 syntax error\n"))

    threading.Thread(target=serve, daemon=True).start()
    return path, heard


def test_the_client_restricts_the_session_and_reads_both_replies(fixtures, tmp_path) -> None:
    greeting, restrict = (fixtures / "bird_greeting_restrict.txt").read_bytes().splitlines(keepends=True)
    path, heard = bird_socket(tmp_path, {
        b"restrict": restrict,
        b"show protocols all": (fixtures / "bird_established_show_protocols_all.txt").read_bytes(),
        b"show bfd sessions": (fixtures / "bird_established_show_bfd_sessions.txt").read_bytes(),
    }, greeting)
    got = query(path, ("show protocols all", "show bfd sessions"), 5)
    assert heard == [b"restrict", b"show protocols all", b"show bfd sessions"]
    assert got == replies(fixtures, "established")


def test_a_refused_command_is_a_source_error_with_birds_message(fixtures, tmp_path) -> None:
    greeting, restrict = (fixtures / "bird_greeting_restrict.txt").read_bytes().splitlines(keepends=True)
    path, _ = bird_socket(tmp_path, {b"restrict": restrict,
                                     b"configure": (fixtures / "bird_restricted_configure.txt").read_bytes()},
                          greeting)
    with pytest.raises(SourceError, match="BIRD refused 'configure': 8007 Access denied"):
        query(path, ("configure",), 5)


def test_a_missing_or_silent_socket_is_a_source_error(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"bird.ctl does not exist \(is bird running\?\)"):
        query(str(tmp_path / "bird.ctl"), ("show protocols all",), 1)
    path, _ = bird_socket(tmp_path, {}, b"")
    with pytest.raises(SourceError, match=r"no whole answer within 0\.2 s"):
        query(path, ("show protocols all",), 0.2)


def test_the_flags_enable_the_collector_only_in_bgp_mode(tmp_path) -> None:
    off = ["--keepalived.source=none", "--keepalived.config=", "--haproxy.stats-socket=", "--nginx.stub-status-url=",
           "--nginx.access-log-file="]
    collectors, _ = build(parser().parse_args(off))
    assert [c.name for c in collectors] == []
    collectors, _ = build(parser().parse_args([*off, "--bgp.source=birdc", f"--bgp.bird-socket={tmp_path}/b.ctl",
                                               f"--bgp.gate-state-file={tmp_path}/s.json"]))
    (bgp,) = collectors
    assert isinstance(bgp, BgpCollector) and bgp.bird_socket == f"{tmp_path}/b.ctl"
    assert bgp.state_file == f"{tmp_path}/s.json"
    defaults = parser().parse_args([])
    assert (defaults.bgp_source, defaults.bird_socket, defaults.bgp_state_file) == (
        "none", "/run/bird/bird.ctl", "/run/proxytier-bgp-gate/state.json")
