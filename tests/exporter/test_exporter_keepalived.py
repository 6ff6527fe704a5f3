"""keepalived collector on the JSON dump and notify-FIFO lines captured from Debian 12's keepalived 2.2.7."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxytier_exporter.core import SourceError
from proxytier_exporter.keepalived import (
    FifoReader,
    FifoState,
    KeepalivedCollector,
    fifo_views,
    instance_families,
    parse_fifo_line,
    parse_json_dump,
    process_identity,
)
from proxytier_exporter.keepalived_conf import parse_keepalived_conf

TRANSITION_TIME = 1795493000.0


def fifo_lines(fixtures: Path) -> list[str]:
    return (fixtures / "keepalived_notify_fifo.txt").read_text().splitlines(keepends=True)


def running_lines(fixtures: Path) -> list[str]:
    """The lines keepalived wrote while running (the capture ends with its STOP lines)."""
    return [line for line in fifo_lines(fixtures) if " STOP " not in line]


@pytest.fixture
def own_pid_file(tmp_path: Path) -> str:
    """A pid file naming a live process: the test itself stands in for keepalived."""
    path = tmp_path / "keepalived.pid"
    path.write_text(f"{os.getpid()}\n")
    return str(path)


@pytest.fixture
def fifo_reader(tmp_path: Path, own_pid_file: str) -> Iterator[FifoReader]:
    reader = FifoReader(str(tmp_path / "keepalived.fifo"), FifoState(clock=lambda: TRANSITION_TIME), own_pid_file)
    reader.start()
    yield reader
    reader.stop()


def write_fifo(reader: FifoReader, lines: list[str]) -> None:
    with open(reader.path, "w") as fifo:
        fifo.writelines(lines)
    expected = {event.instance: event.event for event in map(parse_fifo_line, lines) if event}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        identity = process_identity(reader.pid_file) or ""
        seen = reader.state.snapshot(identity)
        if all(name in seen and seen[name].effective_priority is not None for name in expected) and all(
            seen[name].state == state for name, state in expected.items() if state in ("MASTER", "STOP")
        ):
            return
        time.sleep(0.02)
    raise AssertionError("the FIFO reader did not apply the lines")


def state_of(views, name: str) -> tuple[str, float | None]:
    view = next(view for view in views if view.name == name)
    return view.state, view.effective_priority


def test_json_dump_exposition_matches_golden_file(fixtures, render, golden) -> None:
    views = parse_json_dump((fixtures / "keepalived.json").read_text())
    golden("keepalived_json.prom", render(lambda: instance_families(views)))


def test_fifo_exposition_matches_golden_file(fixtures, fifo_reader, own_pid_file, render, golden) -> None:
    write_fifo(fifo_reader, running_lines(fixtures))
    collector = KeepalivedCollector(own_pid_file, str(fixtures / "keepalived.conf"), fifo=fifo_reader)
    golden("keepalived_fifo.prom", render(collector.collect))


def test_fifo_and_json_dump_agree_on_states_and_priorities(fixtures, fifo_reader, own_pid_file) -> None:
    write_fifo(fifo_reader, running_lines(fixtures))
    config = parse_keepalived_conf((fixtures / "keepalived.conf").read_text())
    from_fifo = fifo_views(config, fifo_reader.state.snapshot(process_identity(own_pid_file) or ""))
    from_json = parse_json_dump((fixtures / "keepalived.json").read_text())
    for name in ("VI_1", "VI_2", "VI_3"):
        assert state_of(from_fifo, name) == state_of(from_json, name)
    assert [(v.name, v.vrid, v.interface, v.base_priority) for v in from_fifo] == [
        (v.name, v.vrid, v.interface, v.base_priority) for v in from_json
    ]


def test_stop_lines_put_every_instance_in_stop(fixtures, fifo_reader, own_pid_file) -> None:
    write_fifo(fifo_reader, fifo_lines(fixtures))
    states = fifo_reader.state.snapshot(process_identity(own_pid_file) or "")
    assert {name: s.state for name, s in states.items()} == {"VI_1": "STOP", "VI_2": "STOP", "VI_3": "STOP"}
    assert states["VI_1"].become_master == 1 and states["VI_1"].release_master == 1


def test_a_restarted_keepalived_does_not_inherit_its_predecessors_states(fixtures) -> None:
    state = FifoState()
    for line in running_lines(fixtures):
        state.apply(parse_fifo_line(line), "100:5000")
    assert state.snapshot("100:5000")["VI_1"].state == "MASTER"
    assert state.snapshot("200:9000") == {}
    views = fifo_views(parse_keepalived_conf((fixtures / "keepalived.conf").read_text()), {})
    assert {view.state for view in views} == {"UNKNOWN"}


def test_states_survive_an_exporter_restart_only_for_the_same_keepalived(tmp_path, fixtures) -> None:
    saved = str(tmp_path / "state.json")
    before = FifoState(save_path=saved)
    for line in running_lines(fixtures):
        before.apply(parse_fifo_line(line), "100:5000")
    after = FifoState(save_path=saved)
    after.load()
    assert after.snapshot("100:5000")["VI_1"].state == "MASTER"
    assert after.snapshot("100:5001") == {}


def test_a_stopped_keepalived_fails_the_collector_even_with_states_recorded(tmp_path, fixtures) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid_file = tmp_path / "keepalived.pid"
    pid_file.write_text(dead.stdout)
    collector = KeepalivedCollector(str(pid_file), str(fixtures / "keepalived.conf"),
                                    json_dump=str(fixtures / "keepalived.json"))
    with pytest.raises(SourceError, match="keepalived is not running"):
        list(collector.collect())


FAKE_KEEPALIVED = textwrap.dedent("""
    import signal, sys, time
    source, dump, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(source).read()

    def on_json(signum, frame):
        if mode == "ignore":
            return
        with open(dump, "w") as out:  # like keepalived 2.2.7: in place, in pieces
            out.write(text[: len(text) // 2])
            out.flush()
            time.sleep(0.2)
            out.write(text[len(text) // 2 :])

    signal.signal(36, on_json)
    print("ready", flush=True)
    for _ in range(600):
        time.sleep(0.1)
""")


@pytest.fixture
def fake_keepalived(tmp_path: Path, fixtures: Path):
    started: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[str, str]:
        dump = tmp_path / "keepalived.json"
        process = subprocess.Popen(
            [sys.executable, "-c", FAKE_KEEPALIVED, str(fixtures / "keepalived.json"), str(dump), mode],
            stdout=subprocess.PIPE, text=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        pid_file = tmp_path / "keepalived.pid"
        pid_file.write_text(f"{process.pid}\n")
        return str(pid_file), str(dump)

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_json_source_waits_for_a_complete_dump_written_after_the_signal(fake_keepalived, render, fixtures) -> None:
    pid_file, dump = fake_keepalived("write")
    collector = KeepalivedCollector(pid_file, "", json_dump=dump, json_timeout=3)
    text = render(collector.collect)
    assert 'proxytier_keepalived_vrrp_state{interface="ka0",state="MASTER",vrid="51",vrrp_instance="VI_1"} 1.0' in text
    assert 'proxytier_keepalived_vrrp_adverts_sent_total{interface="ka0",vrid="51",vrrp_instance="VI_1"}' in text


def test_json_source_rejects_a_dump_left_from_before_the_signal(fake_keepalived, fixtures) -> None:
    pid_file, dump = fake_keepalived("ignore")
    Path(dump).write_text((fixtures / "keepalived.json").read_text())
    old = time.time() - 60
    os.utime(dump, (old, old))
    collector = KeepalivedCollector(pid_file, "", json_dump=dump, json_timeout=0.3)
    with pytest.raises(SourceError, match="no complete dump newer than the signal"):
        list(collector.collect())


def test_config_parser_reads_instances_in_compact_and_commented_forms() -> None:
    config = parse_keepalived_conf(textwrap.dedent("""
        ! Configuration File for keepalived
        global_defs { router_id a }
        vrrp_instance VI_A{
          interface eth0   # the tier's interface
          virtual_router_id 7
          priority 200
          virtual_ipaddress {
            198.18.1.1/32 dev eth0 label eth0:vip
            198.18.1.2
          }
          track_script { chk }
        }
        vrrp_instance VI_B { interface eth1
          virtual_router_id 8 }
    """))
    assert [(c.name, c.vrid, c.interface, c.priority, c.vips) for c in config.values()] == [
        ("VI_A", "7", "eth0", 200, ["198.18.1.1/32", "198.18.1.2"]),
        ("VI_B", "8", "eth1", None, []),
    ]


def test_vip_info_ties_each_instance_to_its_addresses_and_skips_garbage(fixtures) -> None:
    conf = parse_keepalived_conf(
        "vrrp_instance VI_9 {\n  interface host0\n  virtual_router_id 9\n  priority 100\n"
        "  virtual_ipaddress {\n    198.18.0.109/24 dev host0\n    not-an-address\n  }\n}\n"
    )
    views = fifo_views(conf, {})
    assert views[0].vips == ["198.18.0.109"]
    captured = json.loads((fixtures / "keepalived.json").read_text())[:1]
    captured[0]["data"]["vips"] = ["198.18.0.109 dev host0 scope global", 7, ""]
    json_views = parse_json_dump(json.dumps(captured))
    assert json_views[0].vips == ["198.18.0.109"]
    samples = [s for f in instance_families(views) for s in f.samples if s.name == "proxytier_keepalived_vrrp_vip_info"]
    assert [(s.labels["vrrp_instance"], s.labels["vip"], s.value) for s in samples] == [("VI_9", "198.18.0.109", 1)]


def test_a_vip_written_twice_in_an_instance_is_one_series() -> None:
    conf = parse_keepalived_conf(
        "vrrp_instance VI_9 {\n  interface host0\n  virtual_router_id 9\n"
        "  virtual_ipaddress {\n    198.18.0.109/32\n    198.18.0.109/24 dev host0\n  }\n}\n"
    )
    samples = [s for f in instance_families(fifo_views(conf, {})) for s in f.samples
               if s.name == "proxytier_keepalived_vrrp_vip_info"]
    assert [s.labels["vip"] for s in samples] == ["198.18.0.109"]
