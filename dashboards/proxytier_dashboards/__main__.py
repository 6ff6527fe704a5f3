"""python -m proxytier_dashboards generate | check | probe URL   (run from dashboards/)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from proxytier_dashboards import generated, lint, probe, promql, render, schema


def _all_queries() -> list[lint.PanelQuery]:
    return [q for text in render.rendered().values() for q in lint.queries(json.loads(text))]


def check() -> list[str]:
    """Problems of the committed files: stale generated files (dashboards, rules, runbook page, README alert
    table, the formula's copies), the dashboards' schema, PromQL syntax and lint (metric names are checked
    against the exporter's exposition by tests/dashboards)."""
    problems = [f"{name} is not what the generator produces: run `python -m proxytier_dashboards generate`"
                for name in generated.stale()]
    for name, text in render.rendered().items():
        data = json.loads(text)
        problems += [f"{name}: schema: {p}" for p in schema.schema_errors(data)]
        problems += lint.dashboard_problems(data)
    expressions = {f"{q.dashboard}/{q.panel}/{q.ref_id}": lint.substitute(q.expr) for q in _all_queries()}
    problems += [f"{name}: {error}" for name, error in promql.parse_errors(expressions).items()]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxytier_dashboards", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write the dashboards, the rules, the runbook page, the README's alert table "
                   "and the formula's copies of them")
    sub.add_parser("check", help="the generated files are current; the dashboards valid, linted, their PromQL parses")
    p = sub.add_parser("probe", help="evaluate every panel query against a Prometheus and report empty ones")
    p.add_argument("url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--job", default=".+", help="regex substituted for $job (default .+)")
    p.add_argument("--rate-interval", default="1m", help="substituted for $__rate_interval (default 1m)")
    p.add_argument("--allow-empty", action="append", default=[], metavar="PANEL",
                   help="panel title allowed to return no data (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generated.write():
            print(path.relative_to(generated.REPO))
        return 0
    if args.command == "check":
        try:
            problems = check()
        except promql.PromtoolMissing as error:
            print(error, file=sys.stderr)
            return 2
        print("\n".join(problems) or "dashboards OK")
        return 1 if problems else 0
    try:
        probe.evaluate(args.url, "vector(1)")
    except probe.ProbeError as error:
        print(f"cannot query Prometheus: {error}", file=sys.stderr)
        return 2
    results = probe.probe(args.url, _all_queries(), job=args.job, rate_interval=args.rate_interval)
    failed = 0
    for result in results:
        empty = result.series == 0 and result.query.panel not in args.allow_empty
        failed += bool(result.error or empty)
        status = f"ERROR {result.error}" if result.error else f"{result.series} series"
        print(f"{'FAIL' if result.error or empty else 'ok  '} {result.name}: {status}")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
