"""Failover benchmark building blocks: an open-loop prober, outage statistics, timeline plots, the report.

`probe` (BackgroundProbe, Target), `stats` (outage, event_stats, summarize, ratio), `plot` (timeline);
the report is bench.report (new_run, add_event, save_run, write_report). See bench/failover/README.md.
"""
