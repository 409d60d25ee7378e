"""Settings shared by the whole suite."""

from hypothesis import HealthCheck, settings

# The real RabbitMQ and PostgreSQL fixtures (rabbitmq, broker_outage, postgres, ...).
pytest_plugins = ["fleet_services"]

# Machines here are shared and noisy: judge properties, never the speed of a run.
settings.register_profile("heartwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("heartwatch")
