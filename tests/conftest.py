"""Settings shared by the whole suite."""

import os

import pytest
from hypothesis import HealthCheck, settings

# The real RabbitMQ and PostgreSQL fixtures (rabbitmq, broker_outage, postgres, ...).
pytest_plugins = ["fleet_services"]

# Machines here are shared and noisy: judge properties, never the speed of a run.
settings.register_profile("heartwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("heartwatch")


# The order tests are handed to xdist's workers in. Its load scheduler deals the first quarter
# of the list out one by one, worker after worker, so a test at position i starts on worker
# i % n. The tests that stop the broker (``broker_outage``: exclusive) are put at positions 0,
# n, 2n…: one worker runs them one after another while the others run tests that need no
# broker (the daemon's end-to-end tests, long and many), so no worker sits waiting for the
# broker to come back. The tests of the real broker and database come next (long, and they
# may share the broker), the quick unit tests last, to even out the end of the run.
_OUTAGE, _SLOW, _SERVICES, _QUICK = range(4)
_SERVICE_FIXTURES = frozenset({"rabbitmq", "unique_exchange", "postgres", "fresh_database"})


def _rank(item: pytest.Item) -> int:
    names = set(getattr(item, "fixturenames", ()))
    if "broker_outage" in names:
        return _OUTAGE
    if names & _SERVICE_FIXTURES:
        return _SERVICES
    if item.get_closest_marker("e2e") or item.get_closest_marker("browser"):
        return _SLOW
    return _QUICK


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ranked: dict[int, list[pytest.Item]] = {rank: [] for rank in range(4)}
    for item in items:  # stable: within a rank, the collection's own order
        ranked[_rank(item)].append(item)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    rest = ranked[_SLOW] + ranked[_SERVICES] + ranked[_QUICK]
    ordered: list[pytest.Item] = []
    for outage in ranked[_OUTAGE]:
        ordered.append(outage)
        ordered.extend(rest[: workers - 1])
        del rest[: workers - 1]
    items[:] = ordered + rest
