"""Prometheus text format 0.0.4, rendered faster than prometheus_client's generate_latest.

The output is byte-for-byte what generate_latest writes for the same families (a test checks it on every
captured source, with whichever prometheus_client is installed). It is faster because a label set shared
by several samples (the HAProxy collector reuses one dict per proxy/server row for all its metrics) is
escaped and sorted once per scrape instead of once per sample.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
          "unknown": "untyped", "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
_SUFFIXES = {"counter": "_total", "info": "_info"}
_ZERO, _NEGATIVE_ZERO = floatToGoString(0.0), floatToGoString(-0.0)


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def render_text(families: Iterable[Metric]) -> bytes:
    """The families as generate_latest renders them. (The OpenMetrics-only samples `_created`, `_gsum`
    and `_gcount`, which generate_latest moves to families of their own, are never produced here.)"""
    label_sets: dict[int, tuple[dict[str, str], str]] = {}
    escaped: dict[str, str] = {}
    numbers: dict[float, str] = {}
    out: list[str] = []
    for family in families:
        name = family.name + _SUFFIXES.get(family.type, "")
        out.append(f"# HELP {name} {_escape_help(family.documentation)}\n")
        out.append(f"# TYPE {name} {_TYPES.get(family.type, family.type)}\n")
        for sample in family.samples:
            labels = sample.labels
            cached = label_sets.get(id(labels))
            if cached is not None and cached[0] is labels:
                text = cached[1]
            elif labels:
                pairs = []
                for key, value in sorted(labels.items()):
                    escaped_value = escaped.get(value)
                    if escaped_value is None:
                        escaped_value = escaped[value] = _escape_value(value)
                    pairs.append(f'{key}="{escaped_value}"')
                text = "{" + ",".join(pairs) + "}"
                label_sets[id(labels)] = (labels, text)  # holding the dict keeps its id from being reused
            else:
                text = ""
            value = sample.value
            if value == 0:  # most values; 0.0 and -0.0 are equal keys but render differently
                number = _NEGATIVE_ZERO if math.copysign(1.0, value) < 0 else _ZERO
            else:
                number = numbers.get(value)
                if number is None:
                    number = floatToGoString(value)
                    if value == value:  # NaN is never found again
                        numbers[value] = number
            line = f"{sample.name}{text} {number}"
            if sample.timestamp is not None:
                line += f" {int(float(sample.timestamp) * 1000):d}"
            out.append(line + "\n")
    return "".join(out).encode()


def metrics_app(
    collect: Callable[[], Iterable[Metric]],
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """WSGI app serving the families in text format, gzip-compressed when the scraper accepts it."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = render_text(collect())
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return app
