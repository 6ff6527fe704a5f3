"""The lab's own tools, without the lab: address guard, apt source parsing, load generator accounting.

They use loopback only and need no root.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import config, image
from lab.load import LoadResult, Sample, run_load

SERVER = Path(config.REPO / "lab" / "backend_server.py")


def test_addresses_outside_the_lab_range_are_refused() -> None:
    for ok in ("198.18.0.101", "198.19.255.1", "127.0.0.1", "2001:2::101", "2001:2:0:ffff::1", "::1"):
        assert config.check_lab_address(ok) == ok
    for bad in ("192.0.2.1", "198.51.100.1", "203.0.113.1", "198.17.255.255", "198.20.0.1",
                "2001:3::1", "2001:1:ffff::1", "2001:db8::1", "fe80::1", "::ffff:192.0.2.1", "::"):
        with pytest.raises(ValueError, match=r"outside 198\.18\.0\.0/15 and 2001:2::/48"):
            config.check_lab_address(bad)
    with pytest.raises(ValueError):
        run_load(["192.0.2.3"], requests=1)


def test_every_lab_address_is_in_the_benchmark_range() -> None:
    addrs = [config.HOST_ADDR, config.HOST_ADDR6, *config.VIPS, *config.VIPS6,
             *(a for n in config.ALL_NODES for a in (n.address, n.address6)),
             *(a for b in config.BACKENDS for a in (b.address, b.address6))]
    for a in addrs:
        config.check_lab_address(a)
    assert len(set(addrs)) == len(addrs)


def test_host_sources_deb822_and_one_line(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# nothing\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
    )
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.example/x\nSuites: nodistro\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    got = image.host_debian_sources(apt)
    assert ("http://mirror.example/debian", "bookworm", "main contrib") in got
    assert ("http://mirror.example/debian", "bookworm-updates", "main") in got
    assert all("other.example" not in u for u, _, _ in got)
    assert image.mirror(apt) == "http://mirror.example/debian"


def test_max_gap_is_the_longest_time_without_a_successful_response() -> None:
    r = LoadResult()
    r.samples = [
        Sample(0.0, 0.1, True, "a"),
        Sample(0.1, 0.2, True, "a"),
        Sample(0.2, 1.2, False, "a"),
        Sample(1.2, 2.2, False, "a"),
        Sample(2.2, 2.5, True, "a"),
        Sample(0.0, 3.0, True, "b"),
    ]
    assert r.max_gap("a") == pytest.approx(2.3)
    assert r.max_gap("b") == pytest.approx(3.0)


def test_the_json_of_a_load_says_when_each_failed_request_started() -> None:
    r = LoadResult(ok=2, failed=2)
    r.samples = [
        Sample(100.0, 100.1, True, "a"),
        Sample(100.1, 102.1, False, "a", "TimeoutError"),
        Sample(100.2, 100.3, False, "a", "OSError"),
        Sample(102.1, 102.2, True, "a"),
    ]
    d = r.as_dict()
    assert d["failed_at"] == [[100.1, "TimeoutError"], [100.2, "OSError"]]
    assert d["max_gap"] == pytest.approx(2.1)
    assert d["ok"] == 2 and d["failed"] == 2


@pytest.fixture
def local_backend() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, SERVER, "--name", "bex", "--bind", "127.0.0.1", "--bind", "::1",
                             "--port", str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("new_connection", [True, False])
def test_load_is_bounded_and_counts_the_backend_identity(local_backend: int, new_connection: bool) -> None:
    result = run_load(
        ["127.0.0.1"], requests=50, seconds=20, concurrency=3, port=local_backend, new_connection=new_connection
    )
    assert (result.ok, result.failed) == (50, 0)
    assert result.by_backend == {"bex": 50}
    assert result.by_node == {"127.0.0.1": 50}  # the peer the backend saw
    assert len(result.samples) == 50


def test_load_at_a_rate_spaces_its_requests_over_all_workers(local_backend: int) -> None:
    # 40 requests at 20/s over 4 workers: request i starts at i / 20 s, so the last one at 1.95 s, and no
    # 1 s window holds more than 20 starts (+1 for the edges); unpaced, this backend answers 50 in well under 1 s
    result = run_load(["127.0.0.1"], requests=40, seconds=20, concurrency=4, port=local_backend, rate=20.0)
    assert (result.ok, result.failed) == (40, 0)
    starts = sorted(s.start for s in result.samples)
    assert 1.9 <= starts[-1] - starts[0] <= 3.0, starts[-1] - starts[0]
    assert max(sum(1 for t in starts if a <= t < a + 1.0) for a in starts) <= 21
    quick = run_load(["127.0.0.1"], requests=40, seconds=20, concurrency=4, port=local_backend)
    assert quick.seconds < 1.5, quick.seconds  # the spacing above is the rate's, not the backend's


def test_the_backend_answers_on_each_address_family_it_binds(local_backend: int) -> None:
    result = run_load(["::1", "127.0.0.1"], requests=20, seconds=20, concurrency=2, port=local_backend)
    assert (result.ok, result.failed) == (20, 0)
    assert result.by_node == {"::1": 10, "127.0.0.1": 10}  # the peer the backend saw, by family


def test_load_stops_at_its_time_bound_and_counts_failures() -> None:
    with socket.socket() as s:  # a port with nothing listening: every request is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = run_load(["127.0.0.1"], requests=1_000_000, seconds=1.0, concurrency=2, port=port)
    assert time.monotonic() - t0 < 5
    assert result.ok == 0 and result.failed > 0
    assert "ConnectionRefusedError" in result.errors


def test_spoofed_vrrp_advert_is_a_valid_vrrpv3_packet() -> None:
    """The stranger's advert is one keepalived would accept but for its source: version 3, type 1,
    the VRID and priority asked for, one address, and a checksum that verifies (RFC 5798 5.2.8)."""
    import ipaddress
    import struct

    from lab import spoof

    pkt = spoof.advert("198.18.0.1", "224.0.0.18", 51, 255, "198.18.0.101")
    assert pkt[:4] == bytes([0x31, 51, 255, 1])
    assert pkt[8:] == ipaddress.IPv4Address("198.18.0.101").packed
    pseudo = ipaddress.IPv4Address("198.18.0.1").packed + ipaddress.IPv4Address("224.0.0.18").packed
    pseudo += struct.pack("!BBH", 0, 112, len(pkt))
    assert spoof._checksum(pseudo + pkt) == 0


def test_a_trixie_image_reads_the_hosts_bookworm_mirror_with_the_suite_renamed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    monkeypatch.setattr(image, "SUITE", "trixie")
    assert image.host_debian_sources(apt) == [
        ("http://mirror.example/debian", "trixie", "main"),
        ("http://mirror.example/debian", "trixie-updates", "main"),
        ("http://mirror.example/debian-security", "trixie-security", "main"),
    ]
    assert image.mirror(apt) == "http://mirror.example/debian"


def test_the_lab_platform_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    config.check_platform()  # the default
    for key, bad, words in (("RELEASE", "sid", "bookworm, trixie"), ("SALT_VERSION", "3005.1", "3006.29"),
                            ("FORMULA_SOURCE", "svn", "roots or gitfs")):
        with monkeypatch.context() as m:
            m.setattr(config, key, bad)
            with pytest.raises(ValueError, match=words):
                config.check_platform()


def test_the_bgp_lab_addresses_are_in_the_benchmark_range_and_free() -> None:
    """The router, the client network and the service address: lab addresses no node, backend, VIP or
    the host uses; the client network is not the bridge's."""
    new = [config.ROUTER_ADDR, config.ROUTER_CLIENT_ADDR, config.CLIENT_ADDR, config.BGP_SERVICE]
    for a in new:
        config.check_lab_address(a)
    used = {config.HOST_ADDR, *config.VIPS, *(config.home_vip(i) for i in range(1, config.MAX_NODES + 1)),
            *(n.address for n in config.ALL_NODES), *(config.backend(i).address for i in range(1, 10))}
    assert not used & set(new)
    assert not config.CLIENT_NET.overlaps(config.LAB_NET)
    assert config.check_lab_address(str(config.CLIENT_NET.network_address))


def test_the_bgp_lab_pillar_is_a_valid_bgp_tier_for_every_node() -> None:
    """lab.bgp's pillar, built by the formula's model with the lab's mine: every node announces the one
    service address to the router, in the router's AS view (eBGP), keepalived holds nothing."""
    from formula import build_model, os_params

    from lab import bgp

    mine = {f"proxy{i}": [f"198.18.0.{10 + i}"] for i in (1, 2, 3)}
    for node in mine:
        model = build_model(bgp.pillar()["proxytier"], node, mine=mine, params=os_params())
        assert model["vip_mode"] == "bgp" and model["vips"] == [config.BGP_SERVICE]
        assert model["vrrp"]["instances"] == []
        [peer] = model["bgp"]["peers"]
        assert (peer["address"], peer["asn"], peer["ibgp"], peer["bfd"]) == (config.ROUTER_ADDR, config.ROUTER_ASN,
                                                                           False, True)
        assert model["bgp"]["asn"] == config.TIER_ASN and model["bgp"]["router_id"] == mine[node][0]


def test_the_router_config_peers_with_every_lab_node_and_bird_accepts_it(tmp_path: Path) -> None:
    from lab import router

    text = router.bird_conf(config.ALL_NODES)
    assert "merge paths on" in text and f"kernel table {router.BIRD_TABLE}" in text
    for n in config.ALL_NODES:
        assert (f"protocol bgp {n.name} {{ description \"{n.name} at {n.address}\"; local {config.ROUTER_ADDR} as "
                f"{config.ROUTER_ASN}; neighbor {n.address} as {config.TIER_ASN}; direct;") in text
    if shutil.which("bird") is None:
        pytest.skip("needs bird (Debian's bird2) to parse the config")
    (tmp_path / "bird.conf").write_text(text)
    res = subprocess.run(["bird", "-p", "-c", str(tmp_path / "bird.conf")], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_router_reads_its_sessions_and_next_hops_back() -> None:
    from lab import router

    protocols = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     21:00:23.321
bfd1       BFD        ---        up     21:00:23.321
ecmp4      Kernel     master4    up     21:00:23.321
proxy1     BGP        ---        up     21:00:25.100  Established
proxy2     BGP        ---        start  21:00:23.321  Active        Socket: Connection refused
proxy4     BGP        ---        start  21:00:23.321  Connect
"""
    assert router.parse_sessions(protocols) == {"proxy1": "Established", "proxy2": "Active        Socket: "
                                                "Connection refused", "proxy4": "Connect"}
    multipath = [{"dst": "198.18.0.200", "protocol": "bird", "metric": 32, "flags": [], "nexthops": [
        {"gateway": "198.18.0.13", "dev": "eth0", "weight": 1, "flags": []},
        {"gateway": "198.18.0.11", "dev": "eth0", "weight": 1, "flags": []}]}]
    assert router.parse_route_next_hops(multipath) == ["198.18.0.11", "198.18.0.13"]
    one = [{"dst": "198.18.0.200", "gateway": "198.18.0.12", "dev": "eth0", "protocol": "bird", "flags": []}]
    assert router.parse_route_next_hops(one) == ["198.18.0.12"]
    assert router.parse_route_next_hops([]) == []
    nexthops = [{"id": 101, "gateway": "198.18.0.11", "dev": "eth0", "scope": "link", "flags": []},
                {"id": 103, "gateway": "198.18.0.13", "dev": "eth0", "scope": "link", "flags": []},
                {"id": 100, "group": [{"id": 103, "weight": 64}, {"id": 101, "weight": 64}], "type": "resilient",
                 "resilient_args": {"buckets": 512}, "flags": []}]
    assert router.parse_group_next_hops(nexthops, 100) == ["198.18.0.11", "198.18.0.13"]
    assert router.parse_group_next_hops(nexthops[:2], 100) == []


def test_flows_gives_up_on_a_silent_client_instead_of_hanging() -> None:
    import subprocess
    import sys

    from lab.bgp import Flows

    flows = Flows.__new__(Flows)  # the reading side only: a client that prints a line, then nothing
    flows.proc = subprocess.Popen([sys.executable, "-c", "import time; print('READY {}', flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
    flows.stdout = flows.proc.stdout
    try:
        assert flows._line(10.0) == "READY {}\n"
        t0 = time.monotonic()
        assert flows._line(0.5) == ""
        assert time.monotonic() - t0 < 5
        assert flows.proc.wait(timeout=5) != 0  # killed
    finally:
        flows.proc.kill()
        flows.proc.wait()


def test_flows_count_says_per_node_what_broke_and_what_the_client_saw() -> None:
    """lab.bgp.Flows.count over a flows client's per-connection results: broken ones per node, with when,
    and the errors the client saw (a failure message must say whether an HTTP 502 or a reset broke them)."""
    from lab import bgp

    conns = [
        {"node": "proxy1", "state": "ok", "at": None, "life": 5.0, "error": "", "reopened": 0},
        {"node": "proxy1", "state": "error", "at": 10.1, "life": 5.0, "error": "RuntimeError HTTP 502", "reopened": 0},
        {"node": "proxy2", "state": "error", "at": 10.2, "life": 5.0, "error": "RuntimeError HTTP 502", "reopened": 1},
        {"node": "proxy2", "state": "reset", "at": 29.7, "life": 5.0, "error": "ConnectionResetError [Errno 104]",
         "reopened": 0},
        {"node": None, "state": "ok", "at": None, "life": 5.0, "error": "", "reopened": 0},
    ]
    counted = bgp.Flows.count(conns, leaver="proxy2")
    assert counted["errors"] == {"RuntimeError HTTP 502": 2, "ConnectionResetError [Errno 104]": 1}
    assert counted["broken_at"] == [(10.1, "error", "proxy1"), (10.2, "error", "proxy2"), (29.7, "reset", "proxy2")]
    assert counted["leaver"] == {"conns": 2, "broken": 2} and counted["others"]["broken"] == 1
    assert counted["unplaced"] == 1 and counted["reopened"] == 1
