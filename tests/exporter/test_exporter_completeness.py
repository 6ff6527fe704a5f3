"""Every source cut short, at every byte of what the real daemons sent: the collector fails as a whole
(success 0, none of its series), or the cut left a document that is complete by itself and the output is
exactly the full one.

The captures in fixtures/ end with what the daemons send last (checked below), so a cut anywhere, the
last byte included, is a realistic partial answer: a daemon stopping or a socket closing mid-answer.
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from proxytier_exporter import haproxy, keepalived, nginx
from proxytier_exporter.accesslog import AccessLogStats, parse_datagram
from proxytier_exporter.core import ScrapeCollector, SourceError, run_collector
from proxytier_exporter.exposition import render_text
from proxytier_exporter.haproxy import HAProxyCollector, parse_show_stat
from proxytier_exporter.keepalived import (
    FifoReader,
    FifoState,
    KeepalivedCollector,
    parse_fifo_line,
    parse_json_dump,
    process_identity,
)
from proxytier_exporter.nginx import NginxCollector, parse_stub_status
from proxytier_exporter.vip import VipCollector


def scrape(collector) -> tuple[bool, str, list[Metric]]:
    families, ok = run_collector(collector)
    return ok, render_text(families).decode(), families


def cuts(collector, answers: dict[str, str], key: str) -> list[int]:
    """Serve `answers[key]` cut at every offset; return the offsets where the collector succeeded
    (asserting the output is then the full one) and assert it published nothing everywhere else."""
    whole = answers[key]
    ok, full, _ = scrape(collector)
    assert ok and full
    succeeded = []
    for cut in range(len(whole)):
        answers[key] = whole[:cut]
        ok, text, families = scrape(collector)
        if ok:
            assert text == full, f"cut at {cut} of {len(whole)} gave a partial exposition"
            succeeded.append(cut)
        else:
            assert families == [], f"cut at {cut}: a failed collector published series"
    answers[key] = whole
    return succeeded


@pytest.fixture(autouse=True)
def quiet(caplog) -> None:
    caplog.set_level(logging.CRITICAL, logger="proxytier_exporter")  # thousands of expected warnings


def test_captured_answers_end_as_the_daemons_send_them(fixtures: Path) -> None:
    # HAProxy 2.6's runtime API ends every complete answer with an empty line.
    assert (fixtures / "haproxy_show_stat.csv").read_text().endswith(",\n\n")
    assert (fixtures / "haproxy_show_info.txt").read_text().endswith("Tainted: 0\n\n")
    # ngx_http_stub_status_module ends its page with " \n".
    assert (fixtures / "nginx_stub_status.txt").read_text().endswith("Waiting: 4 \n")
    # keepalived ends each notify line with a newline; the capture kept every line whole.
    fifo = (fixtures / "keepalived_notify_fifo.txt").read_text()
    assert fifo.endswith("\n") and all(parse_fifo_line(line) for line in fifo.splitlines())
    # The capture copied the dump unchanged; one datagram per line (nginx sends none with a newline).
    assert (fixtures / "keepalived.json").read_text().endswith("}}]\n")


# --- HAProxy ------------------------------------------------------------------------------------------

@pytest.fixture
def haproxy_answers(fixtures: Path, monkeypatch) -> dict[str, str]:
    answers = {
        "show stat": (fixtures / "haproxy_show_stat.csv").read_text(),
        "show info": (fixtures / "haproxy_show_info.txt").read_text(),
    }
    monkeypatch.setattr(haproxy, "unix_command", lambda path, command, timeout: answers[command])
    return answers


@pytest.mark.parametrize("command", ["show stat", "show info"])
def test_haproxy_answer_cut_at_any_byte_fails_the_collector(haproxy_answers, command) -> None:
    # No cut is complete: the closing empty line is the answer's last two bytes.
    assert cuts(HAProxyCollector("unused"), haproxy_answers, command) == []


def test_show_stat_cut_between_rows_or_mid_row_is_reported_not_published(haproxy_answers, render, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="proxytier_exporter")
    whole = haproxy_answers["show stat"]
    after_rows = whole[: whole.index("be_nolb,BACKEND")]  # the be_nolb backend row never came
    mid_row = whole[: whole.index("be_tcp,goingup1") + 30]
    for partial in (after_rows, mid_row):
        haproxy_answers["show stat"] = partial
        text = render(ScrapeCollector([HAProxyCollector("unused")]).collect)
        assert 'proxytier_collector_success{collector="haproxy"} 0.0' in text
        assert "haproxy_server_status" not in text and "haproxy_process" not in text
    assert caplog.messages[-1].startswith("collector haproxy: show stat: answer cut short")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("be_tcp,goingup1,", "be_tcp,goingup1,0,", 1), "line 13 has 130 columns, the header 129"),
    (lambda t: t + ",\n\n", "empty line 18 before the end"),
    (lambda t: t.replace("be_nolb,nolb2,", "be_nolb,nolb1,", 1), "repeats type/pxname/svname ('2', 'be_nolb',"),
    (lambda t: t.replace("be_nolb,nolb2,", ",nolb2,", 1), "has no pxname"),
    (lambda t: t.replace(",hrsp_5xx,", ",hrsp_5xy,", 1), "CSV header lacks hrsp_5xx"),
    (lambda t: t.replace("\n", "\n\n", 1), "empty line 2 before the end"),
])
def test_show_stat_malformed_answers_name_the_fault(fixtures: Path, edit, message) -> None:
    with pytest.raises(SourceError, match=re.escape(message)):
        parse_show_stat(edit((fixtures / "haproxy_show_stat.csv").read_text()))


def test_a_real_socket_closing_mid_answer_fails_the_collector(tmp_path: Path, fixtures: Path) -> None:
    """The runtime API socket closes after part of `show stat` (HAProxy stopping mid-answer)."""
    stat = (fixtures / "haproxy_show_stat.csv").read_text()
    answers = {"show info": (fixtures / "haproxy_show_info.txt").read_text(), "show stat": stat[: len(stat) // 2]}
    path = str(tmp_path / "stats.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(4)

        def serve() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(answers[conn.recv(1024).decode().strip()].encode())

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ok, _, families = scrape(HAProxyCollector(path))
        thread.join(timeout=5)
    assert not ok and families == []


# --- nginx stub_status ---------------------------------------------------------------------------------

def test_stub_status_cut_at_any_byte_fails_the_collector(fixtures: Path, monkeypatch) -> None:
    answers = {"page": (fixtures / "nginx_stub_status.txt").read_text()}
    monkeypatch.setattr(nginx, "fetch", lambda url, timeout: answers["page"])
    # None is complete: the page ends with " \n", and "Waiting: 4" would be a number even if it was 45.
    assert cuts(NginxCollector("unused"), answers, "page") == []


@pytest.fixture
def short_body_server(fixtures: Path) -> Iterator[str]:
    """Announces the whole page's Content-Length, sends half of it and closes."""
    page = (fixtures / "nginx_stub_status.txt").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page[: len(page) // 2])
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stub_status"
    server.shutdown()
    server.server_close()


def test_stub_status_body_shorter_than_its_content_length_fails(short_body_server: str) -> None:
    with pytest.raises(SourceError, match="cut short"):
        nginx.fetch(short_body_server, 2)


def test_stub_status_page_with_extra_text_fails(fixtures: Path) -> None:
    page = (fixtures / "nginx_stub_status.txt").read_text()
    with pytest.raises(SourceError, match="not a whole stub_status page"):
        parse_stub_status("<html>" + page)


# --- keepalived JSON dump ------------------------------------------------------------------------------

@pytest.fixture
def own_pid_file(tmp_path: Path) -> str:
    path = tmp_path / "keepalived.pid"
    path.write_text(f"{os.getpid()}\n")
    return str(path)


def test_keepalived_json_dump_cut_at_any_byte_fails_the_collector(fixtures, own_pid_file, monkeypatch) -> None:
    answers = {"dump": (fixtures / "keepalived.json").read_text()}
    monkeypatch.setattr(keepalived, "read_fresh_dump", lambda pid, path, signum, timeout: answers["dump"])
    collector = KeepalivedCollector(own_pid_file, "", json_dump="unused")
    # Only the cut of the trailing newline leaves a whole JSON document, the same one.
    assert cuts(collector, answers, "dump") == [len(answers["dump"]) - 1]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d[0]["data"].pop("ifp_ifname"), "instance VI_1 lacks data.ifp_ifname"),
    (lambda d: d[1]["data"].pop("vrid"), "instance VI_2 lacks data.vrid"),
    (lambda d: d[2].pop("stats"), "instance VI_3 without stats"),
    (lambda d: d[2]["stats"].pop("advert_rcvd"), "instance VI_3 lacks stats.advert_rcvd"),
    (lambda d: d[2]["data"].update(iname="VI_1"), "instance VI_1 appears twice"),
    (lambda d: d[0]["data"].update(iname=""), "instance 0 without data.iname"),
])
def test_keepalived_json_dump_without_a_required_field_names_it(fixtures, edit, message) -> None:
    import json

    document = json.loads((fixtures / "keepalived.json").read_text())
    edit(document)
    with pytest.raises(SourceError, match=re.escape(message)):
        parse_json_dump(json.dumps(document))


# --- keepalived.conf and the notify FIFO ---------------------------------------------------------------

@pytest.fixture
def fifo_reader(tmp_path: Path, own_pid_file: str) -> Iterator[FifoReader]:
    reader = FifoReader(str(tmp_path / "keepalived.fifo"), FifoState(clock=lambda: 1795493000.0), own_pid_file)
    reader.start()
    yield reader
    reader.stop()


def fifo_lines(fixtures: Path) -> list[str]:
    return [line for line in (fixtures / "keepalived_notify_fifo.txt").read_text().splitlines() if " STOP " not in line]


def test_keepalived_conf_cut_at_any_byte_fails_or_keeps_whole_instances(
    tmp_path, fixtures, fifo_reader, own_pid_file
) -> None:
    """keepalived.conf is the one source where a cut can leave a complete document: a cut between two
    top-level blocks is a well-formed configuration with fewer instances (the formula replaces the file
    by rename, so this takes a hand edit). Then every instance left must be exactly as in the whole
    file; any other cut fails both collectors that read the file."""
    whole = (fixtures / "keepalived.conf").read_text()
    ends = {m["name"]: whole.index("\n}\n", m.end()) + 2 for m in re.finditer(r"vrrp_instance (?P<name>\S+)", whole)}
    conf = tmp_path / "keepalived.conf"
    identity = process_identity(own_pid_file) or ""

    def collectors() -> tuple[KeepalivedCollector, VipCollector]:
        state = FifoState(clock=lambda: 1795493000.0)
        for line in fifo_lines(fixtures):
            state.apply(parse_fifo_line(line), identity)
        fifo_reader.state = state
        return KeepalivedCollector(own_pid_file, str(conf), fifo=fifo_reader), VipCollector([], str(conf))

    conf.write_text(whole)
    full = [scrape(c)[1].splitlines() for c in collectors()]
    assert all(full)
    complete = 0
    for cut in range(len(whole) + 1):
        conf.write_text(whole[:cut])
        closed = {name for name, end in ends.items() if end <= cut}
        for collector, lines in zip(collectors(), full, strict=True):
            ok, text, families = scrape(collector)
            if not ok:
                assert families == [] and cut < len(whole) - 1, f"cut at {cut}: {collector.name}"
                continue
            vips = {"VI_1": "198.18.0.101", "VI_2": "198.18.0.102", "VI_3": "198.18.0.103"}
            kept = [line for line in lines if line.startswith("#") or any(
                f'vrrp_instance="{name}"' in line or f'vip="{vips[name]}"' in line for name in closed)]
            assert closed and text.splitlines() == kept, f"cut at {cut}: {collector.name}"
            complete += collector.name == "keepalived"
    assert complete > 0


def test_notify_fifo_cut_at_any_byte_applies_only_whole_lines(fixtures, own_pid_file) -> None:
    stream = (fixtures / "keepalived_notify_fifo.txt").read_bytes()
    identity = process_identity(own_pid_file) or ""
    for cut in range(len(stream) + 1):
        reader = FifoReader("unused", FifoState(clock=lambda: 1.0), own_pid_file)
        reader.feed(stream[:cut])
        expected = FifoState(clock=lambda: 1.0)
        for line in stream[:cut].decode().splitlines(keepends=True):
            if line.endswith("\n"):
                expected.apply(parse_fifo_line(line), identity)
        assert reader.state.snapshot(identity) == expected.snapshot(identity), f"cut at {cut}"


def test_a_malformed_fifo_line_makes_its_instance_unknown_and_fails_one_scrape(
    fixtures, fifo_reader, own_pid_file, render, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="proxytier_exporter")
    fifo_reader.feed("".join(f"{line}\n" for line in fifo_lines(fixtures)).encode())
    fifo_reader.feed(b'INSTANCE "VI_1" MAS\n')  # a line cut by its writer
    collector = KeepalivedCollector(own_pid_file, str(fixtures / "keepalived.conf"), fifo=fifo_reader)
    first = render(ScrapeCollector([collector]).collect)
    assert 'proxytier_collector_success{collector="keepalived"} 0.0' in first
    assert "proxytier_keepalived_vrrp_state" not in first
    assert any(fifo_reader.path in message and "MAS" in message for message in caplog.messages)
    second = render(ScrapeCollector([collector]).collect)
    assert 'proxytier_collector_success{collector="keepalived"} 1.0' in second
    assert 'state="UNKNOWN",vrid="51",vrrp_instance="VI_1"} 1.0' in second
    assert 'state="BACKUP",vrid="52",vrrp_instance="VI_2"} 1.0' in second  # the others keep theirs


# --- nginx access-log datagrams ------------------------------------------------------------------------

def test_access_log_datagram_cut_at_any_byte_is_counted_malformed(fixtures: Path) -> None:
    datagrams = [line for line in (fixtures / "nginx_access_syslog.txt").read_bytes().split(b"\n") if line]
    stats = AccessLogStats()
    for data in datagrams:
        parse_datagram(data)
        for cut in range(len(data)):  # the closing brace is the last byte: no cut is whole
            stats.observe_datagram(data[:cut])
    families = {family.name: family for family in stats.families()}
    total = sum(len(data) for data in datagrams)
    assert families["proxytier_nginx_access_log_malformed"].samples[0].value == total
    assert families["proxytier_nginx_upstream_requests"].samples == []


def test_a_datagram_without_the_fields_the_exporter_reads_is_malformed() -> None:
    stats = AccessLogStats()
    stats.observe_datagram(b'<190>nginx: {"status":"200","upstream":"app","request_time":"0.001"}')
    stats.observe_datagram(b'{"status":"200","request_time":"0.1","upstream":"app","upstream_status":"200"}')
    stats.observe_datagram(b"<190>x" * 20000, truncated=True)
    families = {family.name: family for family in stats.families()}
    assert families["proxytier_nginx_access_log_malformed"].samples[0].value == 3
    assert families["proxytier_nginx_upstream_requests"].samples == []
