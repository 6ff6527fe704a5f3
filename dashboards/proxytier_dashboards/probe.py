"""Evaluate every dashboard query against a Prometheus HTTP API and tell which return data.

Used against the lab's real Prometheus: `python -m proxytier_dashboards probe http://198.18.0.1:9090`.
Variables are substituted like Grafana would with "All" selected ($job/$instance regexes, a fixed
$__rate_interval).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import requests

from proxytier_dashboards.lint import PanelQuery, substitute


class ProbeError(RuntimeError):
    pass


@dataclass(frozen=True)
class ProbeResult:
    query: PanelQuery
    series: int
    error: str = ""

    @property
    def name(self) -> str:
        return f"{self.query.dashboard} / {self.query.panel} / {self.query.ref_id}"


def evaluate(base_url: str, expr: str, timeout: float = 10.0) -> int:
    """Number of series (or 1 for a scalar) the instant query returns now. Raises ProbeError."""
    try:
        response = requests.get(f"{base_url.rstrip('/')}/api/v1/query", params={"query": expr}, timeout=timeout)
    except requests.RequestException as error:
        raise ProbeError(f"{base_url}: {error}") from error
    try:
        body = response.json()
    except ValueError as error:
        raise ProbeError(f"{base_url}: HTTP {response.status_code}, not a Prometheus API answer") from error
    if body.get("status") != "success":
        raise ProbeError(f"{body.get('errorType', 'error')}: {body.get('error', response.text[:200])}")
    data = body["data"]
    if data["resultType"] in ("scalar", "string"):
        return 1
    return len(data["result"])


def probe(base_url: str, panel_queries: Iterable[PanelQuery], job: str = ".+", instance: str = ".+",
          rate_interval: str = "1m") -> list[ProbeResult]:
    values = {"$__rate_interval": rate_interval, "$job": job, "$instance": instance}
    results = []
    for query in panel_queries:
        try:
            results.append(ProbeResult(query, evaluate(base_url, substitute(query.expr, values))))
        except ProbeError as error:
            results.append(ProbeResult(query, 0, str(error)))
    return results
