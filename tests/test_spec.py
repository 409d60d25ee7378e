"""The core's frozen specs, built from the configuration: every setting the watchdog uses."""

from __future__ import annotations

import dataclasses

import pytest

from heartwatch.config import parse_config
from heartwatch.core.liveness import LivenessRules
from heartwatch.core.spec import QueueSpec, RestartRules, ServiceSpec


def test_a_spec_carries_what_the_watchdog_decides_on() -> None:
    config = parse_config(
        {
            "service": [
                {"name": "phone", "on_down": "adb reboot", "heartbeat_timeout": "30s"},
                {
                    "name": "c",
                    "command": "c --x",
                    "requires": ["phone"],
                    "ready": "notify",
                    "startup_grace": "2m",
                    "data_timeout": {"poiid": "10m"},
                    "restart": "group",
                    "autorestart": "on-failure",
                    "backoff_initial": 2,
                    "backoff_max": 30,
                    "backoff_factor": 3,
                    "backoff_jitter": 0.2,
                    "healthy_after": 45,
                    "max_restarts": 7,
                    "restart_window": "10m",
                    "queue": {"name": "items", "stalled_after": "90s"},
                },
            ]
        }
    )
    phone, c = (service.spec() for service in config.service)
    assert phone == ServiceSpec(
        name="phone",
        liveness=LivenessRules(True, 0.0, 60.0, 30.0, {}, False),
        watch_only=True,
        has_on_down=True,
        revision=config.service[0].revision(),
    )
    assert c == ServiceSpec(
        name="c",
        liveness=LivenessRules(False, 0.0, 120.0, None, {"poiid": 600.0}, True, startsecs=1.0),
        requires=("phone",),
        restart="group",
        autorestart="on-failure",
        restart_rules=RestartRules(2.0, 30.0, 3.0, 0.2, 45.0, 7, 600.0),
        queue=QueueSpec("items", 90.0),
        revision=config.service[1].revision(),
    )
    assert phone.revision != c.revision


def test_the_spec_defaults_are_the_configuration_defaults() -> None:
    """A spec built from an empty service equals the spec's own defaults: one set of numbers."""
    spec = parse_config({"service": [{"name": "x", "command": "x"}]}).service[0].spec()
    assert spec.restart_rules == RestartRules()
    assert (spec.restart, spec.autorestart, spec.queue) == ("service", "always", None)


def test_a_spec_is_frozen() -> None:
    spec = parse_config({"service": [{"name": "x", "command": "x"}]}).service[0].spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "y"  # type: ignore[misc]
