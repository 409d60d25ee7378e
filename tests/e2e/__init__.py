"""End-to-end tests: a real daemon, real processes, real time (scaled)."""
