"""The assemblies: each wires the core, the drivers (``daemon/``) and the HTTP side (``web/``)
into one running role. ``daemon.py``: ``heartwatch run``."""
