"""proxytier Grafana dashboards: generated from Python with grafana-foundation-sdk (Grafana 11.6 models),
validated, and their PromQL checked. `python -m proxytier_dashboards --help` (run from dashboards/)."""
