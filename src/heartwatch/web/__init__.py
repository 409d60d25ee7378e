"""The daemon's HTTP surface: the control API (and, later, the dashboard)."""
