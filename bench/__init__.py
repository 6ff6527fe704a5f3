"""Benchmarks of proxytier; each bench in its own folder (see BENCHMARKS.md, written by them)."""
