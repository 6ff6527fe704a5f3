"""Exporter scrape benchmark (run.py) and its BENCHMARKS.md section (report.py)."""
