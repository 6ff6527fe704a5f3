"""Timeline PNGs: written, valid, showing the failures they are about; lanes from state samples."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.failover import plot
from bench.failover.probe import Record

VIPS = ["198.18.0.101:80", "198.18.0.102:80", "198.18.0.103:80"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records(fail_from: float | None, fail_to: float | None) -> list[Record]:
    out = []
    for i in range(400):
        t = -1.0 + i * 0.01
        for vip in VIPS:
            bad = vip == VIPS[0] and fail_from is not None and fail_from <= t < fail_to
            out.append(Record(vip, t, t + (0.001 if bad else 0.004), not bad, "refused" if bad else ""))
    return out


VRRP = [(-1.0, f"proxy{n}", f"VI_{i}", "MASTER" if n == i else "BACKUP") for n in (1, 2, 3) for i in (1, 2, 3)] + [
    (0.02, "proxy1", "VI_1", "FAULT"),
    (1.0, "proxy2", "VI_1", "MASTER"),
]
HOLDERS = [(-1.0, "198.18.0.101", "proxy1"), (0.02, "198.18.0.101", None), (1.0, "198.18.0.101", "proxy2")]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def vermilion_pixels(path: Path) -> int:
    """Pixels of the 'failed' colour (#D55E00) or near it."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((abs(r - 0xD5) < 20) & (abs(g - 0x5E) < 20) & (b < 30)).sum())


def test_timeline_png_is_written_and_valid(tmp_path):
    path = plot.timeline(tmp_path / "plots" / "haproxy-sigkill.png", records(0.0, 1.0), 0.0,
                         event="haproxy-sigkill", profile="proxytier-defaults", vrrp=VRRP, holders=HOLDERS,
                         targets=VIPS, target_labels={VIPS[0]: "VIP-1"})
    assert path.is_file()
    assert 20_000 < path.stat().st_size < 2_000_000
    width, height = png_size(path)
    assert 1000 <= width <= 2000 and 600 <= height <= 2000
    Image.open(path).verify()


def test_failures_are_what_the_picture_shows(tmp_path):
    calm = plot.timeline(tmp_path / "calm.png", records(None, None), 0.0, event="calm",
                         vrrp=VRRP[:9], holders=HOLDERS[:1])
    bad = plot.timeline(tmp_path / "bad.png", records(0.0, 1.0), 0.0, event="bad", vrrp=VRRP, holders=HOLDERS)
    # the legend carries a few vermilion pixels; 100 failed probes and a FAULT lane carry many more
    assert vermilion_pixels(bad) > 5 * max(vermilion_pixels(calm), 50)


def test_an_event_without_samples_or_probes_still_plots(tmp_path):
    for name, recs in (("no-state", records(0.0, 0.5)), ("nothing", [])):
        path = plot.timeline(tmp_path / f"{name}.png", recs, 0.0, event=name, vrrp=[], holders=[])
        assert png_size(path)[0] > 0
        Image.open(path).verify()


def test_state_samples_from_json_lists_and_odd_names(tmp_path):
    vrrp = [[-0.5, "proxy1", "VI_1", "master"], [0.1, "proxy1", "VI_1", "STOP"], [0.2, "proxy1", "VI_1", "INIT"]]
    path = plot.timeline(tmp_path / "lists.png", records(None, None), 0.0, event="lists", vrrp=vrrp,
                         holders=[[-0.5, "198.18.0.101", ""]], window=(0.5, 1.0))
    assert png_size(path)[0] > 0


def test_step_segments_hold_until_the_next_sample_and_merge_repeats():
    samples = [(0.0, "proxy1", "VI_1", "MASTER"), (1.0, "proxy1", "VI_1", "MASTER"), (2.0, "proxy1", "VI_1", "FAULT"),
               (0.5, "proxy2", "VI_1", "BACKUP"), (3.0, "proxy2", "VI_1", "MASTER")]
    segs = plot.step_segments(samples, end=5.0)
    assert segs[("proxy1", "VI_1")] == [(0.0, 2.0, "MASTER"), (2.0, 5.0, "FAULT")]
    assert segs[("proxy2", "VI_1")] == [(0.5, 3.0, "BACKUP"), (3.0, 5.0, "MASTER")]
    assert plot.step_segments([], end=1.0) == {}
    # a sample later than `end` still gets a (zero-length) segment instead of a negative one
    assert plot.step_segments([(2.0, "v", "proxy1")], end=1.0) == {("v",): [(2.0, 2.0, "proxy1")]}


@pytest.mark.parametrize(("raw", "state"), [("MASTER", "MASTER"), ("backup", "BACKUP"), ("Fault", "FAULT"),
                                            ("STOP", "STOPPED"), ("INIT", "unknown"), (None, "unknown")])
def test_state_names(raw, state):
    assert plot.normalize_state(raw) == state
