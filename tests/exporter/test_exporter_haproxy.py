"""HAProxy collector on `show stat`/`show info` captured from Debian 12's HAProxy 2.6."""

from __future__ import annotations

import random
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxytier_exporter.core import SourceError
from proxytier_exporter.haproxy import HAProxyCollector, parse_show_stat, server_states, stat_families

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            found[(match["name"], labels)] = float(match["value"])
    return found


@pytest.fixture
def runtime_api(tmp_path: Path, fixtures: Path) -> Iterator[str]:
    """A unix socket answering like HAProxy's runtime API, from the captured answers."""
    answers = {
        "show stat": (fixtures / "haproxy_show_stat.csv").read_text(),
        "show info": (fixtures / "haproxy_show_info.txt").read_text(),
    }
    path = str(tmp_path / "stats.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                command = conn.recv(1024).decode().strip()
                conn.sendall(answers.get(command, "Unknown command.\n").encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_exposition_matches_golden_file(runtime_api, render, golden) -> None:
    golden("haproxy.prom", render(HAProxyCollector(runtime_api).collect))


def test_server_and_backend_status_equal_haproxys_builtin_exporter(runtime_api, render, fixtures) -> None:
    ours = samples(render(HAProxyCollector(runtime_api).collect))
    builtin = samples((fixtures / "haproxy_builtin_metrics.txt").read_text())
    for metric in ("haproxy_server_status", "haproxy_backend_status"):
        expected = {key: value for key, value in builtin.items() if key[0] == metric}
        got = {key: value for key, value in ours.items() if key[0] == metric}
        assert expected, metric
        assert got == expected, metric


def test_every_haproxy_metric_name_exists_in_the_builtin_exporter(runtime_api, render, fixtures) -> None:
    builtin_names = {name for name, _ in samples((fixtures / "haproxy_builtin_metrics.txt").read_text())}
    ours = {name for name, _ in samples(render(HAProxyCollector(runtime_api).collect))}
    haproxy_names = {name for name in ours if name.startswith("haproxy_")}
    assert len(haproxy_names) > 40
    assert haproxy_names - builtin_names == set()


def test_active_and_backup_servers_count_only_servers_taking_traffic(runtime_api, render) -> None:
    ours = samples(render(HAProxyCollector(runtime_api).collect))
    be_nginx = frozenset({("proxy", "be_nginx")})
    # up1 and nocheck1 take traffic; down1, drain1, maint1 and via1 do not; backup1 is the backup
    assert ours[("haproxy_backend_active_servers", be_nginx)] == 2
    assert ours[("haproxy_backend_backup_servers", be_nginx)] == 1


@pytest.mark.parametrize(("status", "expected"), [
    ("UP", ("UP", "passing")),
    ("UP 1/3", ("UP", "going_down")),
    ("DOWN", ("DOWN", "failing")),
    ("DOWN 1/2", ("DOWN", "going_up")),
    ("DOWN (agent)", ("DOWN", "failing")),
    ("NOLB", ("NOLB", "passing")),
    ("NOLB 2/3", ("NOLB", "going_down")),
    ("DRAIN", ("DRAIN", "passing")),
    ("DRAIN (agent)", ("DRAIN", "passing")),
    ("MAINT", ("MAINT", "unknown")),
    ("MAINT (via be/srv)", ("MAINT", "unknown")),
    ("MAINT (resolution)", ("MAINT", "unknown")),
    ("no check", ("UP", "no_check")),
    ("SOMETHING NEW", (None, "unknown")),
])
def test_every_server_status_string_is_mapped(status, expected) -> None:
    assert server_states(status) == expected


def test_columns_are_read_by_name_not_position(fixtures: Path, render) -> None:
    text = (fixtures / "haproxy_show_stat.csv").read_text()
    lines = text.splitlines()
    header = lines[0][2:].split(",")
    order = list(range(len(header)))
    random.Random(4).shuffle(order)

    def shuffled(line: str) -> str:
        values = line.split(",")
        return ",".join(values[i] for i in order)

    rows = "\n".join(shuffled(line) for line in lines[1:] if line)
    reordered = "# " + shuffled(lines[0][2:]) + "\n" + rows + "\n\n"
    assert render(lambda: stat_families(parse_show_stat(reordered))) == render(
        lambda: stat_families(parse_show_stat(text))
    )


def test_an_error_answer_is_a_source_error_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="show stat: expected a CSV header"):
        parse_show_stat("Permission denied\n")


def test_an_oversized_field_is_a_source_error(fixtures: Path) -> None:
    header, first, rest = (fixtures / "haproxy_show_stat.csv").read_text().split("\n", 2)
    oversized = '"' + "x" * 200_000 + '"' + first[first.index(","):]
    with pytest.raises(SourceError, match="malformed CSV"):
        parse_show_stat(f"{header}\n{oversized}\n{rest}")


def test_a_missing_socket_is_a_source_error_naming_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.sock")
    with pytest.raises(SourceError, match=re.escape(missing)):
        list(HAProxyCollector(missing).collect())


def test_a_socket_that_never_answers_fails_within_the_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen(1)
        with pytest.raises(SourceError, match=r"within 0\.2s"):
            list(HAProxyCollector(path, timeout=0.2).collect())


def _edited(fixtures: Path, edit) -> str:
    """The captured show stat with `edit(row)` applied to every row (a dict by column name)."""
    header, *lines = (fixtures / "haproxy_show_stat.csv").read_text().rstrip("\n").split("\n")
    columns = header[2:].split(",")
    out = [header]
    for line in lines:
        row = dict(zip(columns, line.split(","), strict=True))
        edit(row)
        out.append(",".join(row[column] for column in columns))
    return "\n".join(out) + "\n\n"


def test_tcp_proxies_have_no_http_metrics_as_in_haproxys_exporter(fixtures: Path, render) -> None:
    def tcp(row: dict[str, str]) -> None:
        if row["pxname"] in ("be_tcp", "fe_http"):
            row["mode"] = "tcp"

    ours = samples(render(lambda: stat_families(parse_show_stat(_edited(fixtures, tcp)))))
    for name, labels in ours:
        proxy = dict(labels).get("proxy")
        if proxy in ("be_tcp", "fe_http"):
            assert "_http_" not in name, name
    assert ours[("haproxy_backend_http_requests_total", frozenset({("proxy", "be_nginx")}))] >= 0
    assert ("haproxy_backend_bytes_in_total", frozenset({("proxy", "be_tcp")})) in ours


def test_frontend_stop_is_down_and_a_running_check_keeps_its_status(fixtures: Path, render) -> None:
    def edit(row: dict[str, str]) -> None:
        if row["pxname"] == "fe_http":
            row["status"] = "STOP"
        if row["svname"] == "up1":
            row["check_status"] = "* L7OK"

    ours = samples(render(lambda: stat_families(parse_show_stat(_edited(fixtures, edit)))))
    assert ours[("haproxy_frontend_status", frozenset({("proxy", "fe_http"), ("state", "DOWN")}))] == 1
    assert ours[("haproxy_frontend_status", frozenset({("proxy", "fe_prometheus"), ("state", "UP")}))] == 1
    up1 = {("proxy", "be_nginx"), ("server", "up1")}
    assert ours[("haproxy_server_check_status", frozenset({*up1, ("state", "L7OK")}))] == 1
    assert ours[("haproxy_backend_agg_check_status", frozenset({("proxy", "be_nginx"), ("state", "L7OK")}))] == 3


def test_servers_are_counted_per_state_in_their_backend(runtime_api, render) -> None:
    ours = samples(render(HAProxyCollector(runtime_api).collect))
    counts = {state: ours[("haproxy_backend_agg_server_status", frozenset({("proxy", "be_nginx"), ("state", state)}))]
              for state in ("DOWN", "UP", "MAINT", "DRAIN", "NOLB")}
    # up1, nocheck1, backup1 UP; down1 DOWN; drain1 DRAIN; maint1 and via1 MAINT
    assert counts == {"DOWN": 1, "UP": 3, "MAINT": 2, "DRAIN": 1, "NOLB": 0}
    assert not any(name == "haproxy_backend_agg_server_status" and ("proxy", "fe_http") in labels
                   for name, labels in ours)
