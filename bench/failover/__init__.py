"""Failover benchmark building blocks: an open-loop prober, outage statistics, timeline plots, the report.

`probe` (BackgroundProbe, Target), `stats` (outage, event_stats, summarize, ratio), `plot` (timeline),
`report` (new_run, add_event, save_run, write_section). See bench/failover/README.md.
"""
