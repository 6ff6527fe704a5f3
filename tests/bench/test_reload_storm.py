"""bench/reload_storm's pure parts: the advert gaps around each reload, the master-down interval and the
storm pillar."""

from __future__ import annotations

import pytest

from bench.reload_storm import run
from lab import config

A, B = "198.18.0.11", "198.18.0.12"


def adverts(src: str, vrid: int, times: list[float], receiver: str = "proxy2") -> list[list]:
    return [[t, src, vrid, 150, receiver] for t in times]


def test_a_reload_s_gap_is_the_longest_silence_of_one_instance_around_it():
    # VRID 51 from A every 0.1 s, silent from 1.0 to 1.25 (the reload at 1.02); VRID 60 from A silent 1.0 to 1.4
    rows = adverts(A, 51, [0.8, 0.9, 1.0, 1.25, 1.35]) + adverts(A, 60, [0.9, 1.0, 1.4, 1.5])
    rows += adverts(B, 52, [0.5, 2.5])  # another node's silence does not count against A's reload
    assert run.reload_gaps(rows, [(1.02, A)]) == [pytest.approx(0.4)]


def test_gaps_outside_the_window_and_other_receivers_streams_are_apart():
    rows = adverts(A, 51, [0.0, 0.1, 0.2, 3.0])  # a silence from 0.2 to 3.0: ends after t=1, starts before 2.5
    rows += adverts(A, 51, [1.0, 1.1, 1.2], receiver="proxy3")
    assert run.reload_gaps(rows, [(1.0, A)]) == [pytest.approx(2.8)]
    assert run.reload_gaps(adverts(A, 51, [0.0, 0.1, 0.2]), [(1.0, A)], window=1.5) == [1.5]  # silent all along


def test_master_down_interval_rfc5798():
    assert run.master_down(100) == pytest.approx(0.3 + 156 * 0.1 / 256)
    assert run.master_down(255, advert=1.0) == pytest.approx(3.0 + 1 / 256)


def test_the_storm_pillar_adds_one_vip_per_extra_instance_and_refuses_too_many():
    config.set_nodes([1, 2, 3])
    data = run.storm_pillar(20)
    vips = data["proxytier"]["vips"]
    assert len(vips) == 17 and vips[0] == {"address": "198.18.0.110/24", "vrid": 60}
    assert vips[-1] == {"address": "198.18.0.126/24", "vrid": 76}
    assert run.storm_pillar(3)["proxytier"]["vips"] == []
    for bad in (2, 101):
        with pytest.raises(ValueError, match=r"instances must be 3\.\.100"):
            run.storm_pillar(bad)
