"""What every collector shares: the error type, metric helpers and the scrape wrapper.

Each daemon collector builds fresh metric families on every call of `collect()` and raises `SourceError`
when its source is missing, stopped or malformed. `ScrapeCollector` runs them one after the other, so a
failing or slow daemon only sets its own `proxytier_collector_success` to 0.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from proxytier_exporter import __version__

log = logging.getLogger("proxytier_exporter")


class SourceError(Exception):
    """A daemon's interface could not be read or understood. The message says what to check."""


class DaemonCollector(Protocol):
    """One collector per daemon. `name` is the value of the `collector` label.

    A collector may also have `up_metric = (name, help)`: a gauge that ScrapeCollector publishes, without
    labels, beside `proxytier_collector_success` with the same 0/1 value, for exporters whose well-known
    success metric users' dashboards query (nginx-prometheus-exporter's `nginx_up`).
    """

    name: str

    def collect(self) -> Iterable[Metric]: ...

    def describe(self) -> Iterable[Metric]: ...


def state_set(
    name: str, documentation: str, labels: Sequence[str], states: Sequence[str]
) -> tuple[GaugeMetricFamily, Callable[[Sequence[str], str | None], None]]:
    """A state-set as a gauge with a `state` label: one 0/1 series per state, exactly one of them 1.

    (prometheus_client's StateSetMetricFamily names the state label after the metric, which does not
    match HAProxy's `state` label, so the family is built by hand.)
    Returns the family and a function adding one object's series; `current` None means "none of these".
    """
    family = GaugeMetricFamily(name, documentation, labels=[*labels, "state"])
    append = family.samples.append

    def add(values: Sequence[str], current: str | None) -> None:
        base = dict(zip(labels, values, strict=True))
        for state in states:
            append(Sample(name, {**base, "state": state}, 1.0 if state == current else 0.0))

    return family, add


def describe_names(*names: str) -> list[Metric]:
    """Empty families carrying only names, for `describe()` (lets the registry check for duplicates
    without running a scrape)."""
    return [GaugeMetricFamily(name, "") for name in names]


class ScrapeCollector:
    """The one collector registered with the registry: runs every daemon collector, isolates failures,
    and adds `proxytier_collector_success`, `proxytier_collector_duration_seconds`, each collector's
    `up_metric` if it has one, and build info."""

    def __init__(self, collectors: Sequence[DaemonCollector], clock: Callable[[], float] = time.perf_counter):
        self._collectors = list(collectors)
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.describe()
            up = getattr(collector, "up_metric", None)
            if up is not None:
                yield from describe_names(up[0])
        yield from describe_names(
            "proxytier_collector_success", "proxytier_collector_duration_seconds", "proxytier_build_info"
        )

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "proxytier_collector_success",
            "1 if the collector read its daemon's interface completely during this scrape, else 0.",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "proxytier_collector_duration_seconds",
            "Time the collector took during this scrape, in seconds.",
            labels=["collector"],
        )
        for collector in self._collectors:
            start = self._clock()
            families, ok = run_collector(collector)
            duration.add_metric([collector.name], self._clock() - start)
            success.add_metric([collector.name], 1.0 if ok else 0.0)
            yield from families
            up = getattr(collector, "up_metric", None)
            if up is not None:
                yield GaugeMetricFamily(up[0], up[1], value=1.0 if ok else 0.0)
        yield success
        yield duration
        yield build_info()


def run_collector(collector: DaemonCollector) -> tuple[list[Metric], bool]:
    """Collect everything or nothing: a failure half-way must not publish half a daemon.
    Families without samples (e.g. advert counters the FIFO source cannot know) are left out."""
    try:
        return [family for family in collector.collect() if family.samples], True
    except SourceError as error:
        log.warning("collector %s: %s", collector.name, error)
    except Exception:  # a bug must cost one collector one scrape, never the process
        log.exception("collector %s failed unexpectedly", collector.name)
    return [], False


def build_info() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "proxytier_build_info",
        "Always 1; labels carry the exporter version and the Python version running it.",
        labels=["version", "pythonversion"],
    )
    family.add_metric([__version__, platform.python_version()], 1.0)
    return family
