"""The hub: many agents' events into PostgreSQL, their hosts' states, the fleet's alerts, and
the fleet's HTTP surface (``heartwatch hub -c hub.toml``; docs/fleet.md).

``config`` is the file, ``schema`` and ``migrations/`` the database, ``store`` the writes,
``ingest`` the broker's side, ``hosts`` the host-state sweep, ``alerts`` the fleet's alerts,
``assembly`` the running hub; the HTTP side is ``api``, ``queries``, ``feed``, ``commands``,
``logs`` and ``metrics``.
"""
