"""Things a reload removes leave the exposition with it: VRRP instances and their VIPs, HAProxy proxies
and servers, nginx upstreams. Nothing is reported for what the live configuration no longer has.

The keepalived case is the one seen in the field: remove a VIP from the pillar, the formula rewrites
keepalived.conf and reloads keepalived, and keepalived writes `INSTANCE "NAME" FAULT prio` to the notify
FIFO for the instance it just deleted (acassen/keepalived #1526).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxytier_exporter import haproxy
from proxytier_exporter.accesslog import AccessLogEntry, AccessLogStats
from proxytier_exporter.core import run_collector
from proxytier_exporter.exposition import render_text
from proxytier_exporter.haproxy import HAProxyCollector
from proxytier_exporter.keepalived import (
    FifoReader,
    FifoState,
    KeepalivedCollector,
    parse_fifo_line,
    parse_json_dump,
    process_identity,
)
from proxytier_exporter.vip import VipCollector

REMOVED = """
vrrp_instance VI_54 {
  state BACKUP
  interface ka0
  virtual_router_id 54
  priority 100
  advert_int 1
  virtual_ipaddress {
    198.18.0.104/32
  }
}
"""


def exposition(collector) -> str:
    families, ok = run_collector(collector)
    assert ok, f"collector {collector.name} failed"
    return render_text(families).decode()


def replace_file(path: Path, text: str) -> None:
    """As Salt's file.managed does: write a temporary file, rename it over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture
def own_pid_file(tmp_path: Path) -> str:
    path = tmp_path / "keepalived.pid"
    path.write_text(f"{os.getpid()}\n")
    return str(path)


@pytest.fixture
def node(tmp_path: Path, fixtures: Path, own_pid_file: str) -> Iterator[dict]:
    """keepalived.conf with a fourth instance VI_54, a FIFO reader saving its states, and the two
    collectors reading that configuration."""
    conf = tmp_path / "keepalived.conf"
    conf.write_text((fixtures / "keepalived.conf").read_text() + REMOVED)
    state_file = tmp_path / "state.json"
    reader = FifoReader(str(tmp_path / "keepalived.fifo"),
                        FifoState(save_path=str(state_file), clock=lambda: 1795493000.0), own_pid_file)
    keepalived = KeepalivedCollector(own_pid_file, str(conf), fifo=reader)
    reader.start()
    yield {"conf": conf, "reader": reader, "state_file": state_file, "keepalived": keepalived,
           "vip": VipCollector([], str(conf), read_addresses=lambda: (fixtures / "netlink_addr_dump.bin").read_bytes())}
    reader.stop()


def keepalived_writes(node: dict, lines: list[str]) -> None:
    """Write lines to the FIFO as keepalived does; return once the reader has handled the last one (it
    saves its states after every line it applies or drops)."""
    before = node["state_file"].read_text() if node["state_file"].exists() else None
    with open(node["reader"].path, "w") as fifo:
        fifo.writelines(f"{line}\n" for line in lines)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if node["state_file"].exists() and node["state_file"].read_text() != before:
            time.sleep(0.1)  # the rest of the same read
            return
        time.sleep(0.01)
    raise AssertionError("the FIFO reader did not handle the lines")


def running(fixtures: Path) -> list[str]:
    return [line for line in (fixtures / "keepalived_notify_fifo.txt").read_text().splitlines() if " STOP " not in line]


def states(text: str) -> dict[str, str]:
    return {
        line.split('vrrp_instance="')[1].split('"')[0]: line.split('state="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("proxytier_keepalived_vrrp_state{") and line.endswith(" 1.0")
    }


def test_an_instance_removed_by_a_reload_is_gone_with_its_vip(node, fixtures) -> None:
    keepalived_writes(node, [*running(fixtures), 'INSTANCE "VI_54" BACKUP 100'])
    before = exposition(node["keepalived"])
    assert states(before) == {"VI_1": "MASTER", "VI_2": "BACKUP", "VI_3": "FAULT", "VI_54": "BACKUP"}
    assert 'vip="198.18.0.104"' in before and 'vip="198.18.0.104"' in exposition(node["vip"])

    replace_file(node["conf"], (fixtures / "keepalived.conf").read_text())  # the formula, then the reload:
    keepalived_writes(node, ['INSTANCE "VI_54" FAULT 100'])

    after = exposition(node["keepalived"])
    assert states(after) == {"VI_1": "MASTER", "VI_2": "BACKUP", "VI_3": "FAULT"}
    assert "VI_54" not in after and "198.18.0.104" not in after
    assert "198.18.0.104" not in exposition(node["vip"])
    # The instance present before and after the reload keep everything, counters included.
    assert [line for line in before.splitlines() if "VI_54" not in line and "198.18.0.104" not in line] == [
        line for line in after.splitlines()]
    assert "VI_54" not in json.loads(node["state_file"].read_text())["instances"]


def test_an_instance_added_back_starts_unknown_not_with_its_old_state(node, fixtures) -> None:
    keepalived_writes(node, [*running(fixtures), 'INSTANCE "VI_54" MASTER 100'])
    replace_file(node["conf"], (fixtures / "keepalived.conf").read_text())
    keepalived_writes(node, ['INSTANCE "VI_54" FAULT 100'])
    exposition(node["keepalived"])
    replace_file(node["conf"], (fixtures / "keepalived.conf").read_text() + REMOVED)
    assert states(exposition(node["keepalived"]))["VI_54"] == "UNKNOWN"


def test_states_saved_for_an_instance_since_removed_are_not_restored(tmp_path, fixtures, own_pid_file) -> None:
    identity = process_identity(own_pid_file) or ""
    saved = FifoState(save_path=str(tmp_path / "state.json"))
    for line in [*running(fixtures), 'INSTANCE "VI_54" FAULT 100']:
        saved.apply(parse_fifo_line(line), identity)
    restored = FifoState(save_path=str(tmp_path / "state.json"))
    restored.load()  # an exporter restart while keepalived.conf lost VI_54
    reader = FifoReader(str(tmp_path / "keepalived.fifo"), restored, own_pid_file)
    reader.start()
    try:
        text = exposition(KeepalivedCollector(own_pid_file, str(fixtures / "keepalived.conf"), fifo=reader))
    finally:
        reader.stop()
    assert states(text) == {"VI_1": "MASTER", "VI_2": "BACKUP", "VI_3": "FAULT"}


def test_notify_deleted_drops_the_instance(fixtures, own_pid_file) -> None:
    """With `notify_deleted`, keepalived writes DELETED instead of FAULT for a removed instance."""
    identity = process_identity(own_pid_file) or ""
    state = FifoState()
    for line in [*running(fixtures), 'INSTANCE "VI_3" DELETED 90']:
        state.apply(parse_fifo_line(line), identity)
    assert set(state.snapshot(identity)) == {"VI_1", "VI_2"}


def test_json_dump_leaves_out_deleted_instances(fixtures) -> None:
    document = json.loads((fixtures / "keepalived.json").read_text())
    document[2]["data"]["state"] = 97  # DELETED, as a dump taken during the reload shows it
    assert [view.name for view in parse_json_dump(json.dumps(document))] == ["VI_1", "VI_2"]


def test_haproxy_proxies_and_servers_removed_by_a_reload_are_gone(fixtures, monkeypatch) -> None:
    stat = (fixtures / "haproxy_show_stat.csv").read_text()
    answers = {"show info": (fixtures / "haproxy_show_info.txt").read_text(), "show stat": stat}
    monkeypatch.setattr(haproxy, "unix_command", lambda path, command, timeout: answers[command])
    collector = HAProxyCollector("unused")
    before = exposition(collector)
    assert 'proxy="be_nolb"' in before and 'server="backup1"' in before
    answers["show stat"] = "".join(  # the new worker's config has neither be_nolb nor be_nginx/backup1
        line for line in stat.splitlines(keepends=True)
        if not line.startswith(("be_nolb,", "be_nginx,backup1,"))
    )
    after = exposition(collector)
    assert 'proxy="be_nolb"' not in after and 'server="backup1"' not in after
    assert 'haproxy_server_status{proxy="be_nginx",server="up1",state="UP"} 1.0' in after


def test_nginx_upstreams_that_stop_logging_are_dropped_after_the_idle_expiry() -> None:
    now = [0.0]
    stats = AccessLogStats(max_upstreams=2, idle_expiry=3600, clock=lambda: now[0])
    stats.observe(AccessLogEntry("old", "2xx", 0.01, 1))  # an upstream a reload then removed
    stats.observe(AccessLogEntry("app", "2xx", 0.01, 2))
    now[0] = 3000.0
    stats.observe(AccessLogEntry("app", "5xx", 0.02, 1))
    now[0] = 3700.0

    def upstreams() -> set[str]:
        return {sample.labels["upstream"] for family in stats.families() for sample in family.samples
                if "upstream" in sample.labels}

    assert upstreams() == {"app"}
    stats.observe(AccessLogEntry("new", "2xx", 0.01, 1))  # the freed slot, not __other__
    assert upstreams() == {"app", "new"}
    lines = next(f for f in stats.families() if f.name == "proxytier_nginx_access_log_lines")
    assert lines.samples[0].value == 4  # the totals over every line stay cumulative
