"""proxytier-exporter: VRRP state, VIP ownership, HAProxy health and nginx requests from one node."""

__version__ = "0.1.0"
