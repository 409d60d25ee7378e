"""The daemon: asyncio drivers around the pure core (processes, ingest, state directory)."""
