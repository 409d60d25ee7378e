"""Settings shared by the whole suite."""

import pytest
from hypothesis import HealthCheck, settings

# The real RabbitMQ and PostgreSQL fixtures (rabbitmq, broker_outage, postgres, ...).
pytest_plugins = ["fleet_services"]

# Machines here are shared and noisy: judge properties, never the speed of a run.
settings.register_profile("heartwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("heartwatch")


# The order tests are handed to xdist's workers in (``dev.py test`` runs ``--dist worksteal``:
# each worker starts on a contiguous share of this list, and a worker that runs out takes half
# of what is still waiting at the end of the busiest one's). The tests that stop the broker
# (``broker_outage``: exclusive) come first, so they run on one worker, one after another, at
# the start; next the tests of the real broker and database, then the other end-to-end tests
# (long: processes and real time), the quick unit tests last. Workers that run out early take
# from the end of that list, the tests that need no broker, so none sits waiting for the broker
# to come back.
_OUTAGE, _SERVICES, _SLOW, _QUICK = range(4)
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
    items.sort(key=_rank)  # stable: within a rank, the collection's own order
