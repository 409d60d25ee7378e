"""``[fleet]``: what a fleet agent's section must hold, its errors at their key paths, its
secrets kept out of what is printed, and what a reload does with it."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from heartwatch.config import ConfigError, parse_config
from heartwatch.core.fleetcommands import public_key_text
from heartwatch.core.reconfigure import settings_needing_restart
from heartwatch.daemon.reload import APPLIED_LIVE, daemon_settings

BROKER = "amqp://farm-07:s3cret-pw@mq.example:5672/%2F"


def problems(fleet: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"fleet": fleet})
    return [str(p) for p in caught.value.problems]


def key() -> str:
    return public_key_text(Ed25519PrivateKey.generate().public_key())


def test_fleet_is_absent_by_default() -> None:
    assert parse_config({}).fleet is None


def test_fleet_defaults() -> None:
    fleet = parse_config({"fleet": {"broker": BROKER}}).fleet
    assert fleet is not None
    assert fleet.host == socket.gethostname()
    assert fleet.exchange == "heartwatch.fleet"
    assert fleet.heartbeat_interval == 5.0 and fleet.snapshot_interval == 300.0
    assert fleet.outbox_max == 100_000
    assert fleet.hub_keys == [] and fleet.public_keys() == []


def test_fleet_reads_every_key() -> None:
    trusted = key()
    fleet = parse_config(
        {
            "fleet": {
                "broker": BROKER,
                "host": "farm-07.example",
                "labels": {"site": "sz", "rack": "r3"},
                "exchange": "hw.fleet",
                "heartbeat_interval": "2s",
                "snapshot_interval": "1m",
                "outbox_max": 500,
                "hub_keys": [trusted],
            }
        }
    ).fleet
    assert fleet is not None
    assert (fleet.host, fleet.exchange, fleet.outbox_max) == ("farm-07.example", "hw.fleet", 500)
    assert fleet.labels == {"site": "sz", "rack": "r3"}
    assert (fleet.heartbeat_interval, fleet.snapshot_interval) == (2.0, 60.0)
    assert [public_key_text(k) for k in fleet.public_keys()] == [trusted]


@pytest.mark.parametrize(
    ("fleet", "expected"),
    [
        ({}, "fleet.broker: required, and missing"),
        (
            {"broker": "http://x:pw@mq/"},
            "fleet.broker: a broker URL starts with amqp:// or amqps://",
        ),
        (
            {"broker": "amqp://mq:99999/"},
            "fleet.broker: the port of the broker URL is not a number",
        ),
        ({"broker": "amqp:///%2F"}, "fleet.broker: the broker URL names no host"),
        ({"broker": "amqp://u:pa#ss@mq/"}, "fleet.broker: the broker URL's user-info holds a raw"),
        ({"broker": BROKER, "host": "farm 07"}, "fleet.host: 'farm 07' is not a fleet host name"),
        ({"broker": BROKER, "host": "farm/07"}, "fleet.host: 'farm/07' is not a fleet host name"),
        (
            {"broker": BROKER, "hub_keys": [key(), "not base64!"]},
            "fleet.hub_keys[1]: not a hub's public key: not base64",
        ),
        (
            {"broker": BROKER, "hub_keys": [base64.b64encode(b"x" * 16).decode()]},
            "fleet.hub_keys[0]: not a hub's public key: an Ed25519 public key is 32 bytes, "
            "this is 16",
        ),
        (
            {"broker": BROKER, "outbox_max": 0},
            "fleet.outbox_max: Input should be greater than or equal to 10",
        ),
        ({"broker": BROKER, "heartbeat_interval": "0s"}, "fleet.heartbeat_interval:"),
        ({"broker": BROKER, "exchange": "a b"}, "fleet.exchange: an exchange name is"),
        ({"broker": BROKER, "labels": {"": "x"}}, "fleet.labels: label name ''"),
        (
            {"broker": BROKER, "brokr": "x"},
            "fleet.brokr: unknown key `brokr`; did you mean `broker`?",
        ),
        ("amqp://mq/", "fleet: expected a table"),
    ],
)
def test_fleet_problems_name_the_key(fleet: Any, expected: str) -> None:
    found = problems(fleet)
    assert any(p.startswith(expected) for p in found), found


def test_fleet_host_defaults_to_a_hostname_that_must_be_a_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine whose hostname is no fleet host name is told to set fleet.host."""
    monkeypatch.setattr(socket, "gethostname", lambda: "bad host")
    found = problems({"broker": BROKER})
    assert found and found[0].startswith("fleet.host: 'bad host' is not a fleet host name")
    assert "set fleet.host" in found[0]


def test_fleet_broker_password_is_never_printed() -> None:
    """Not in a problem, nor in repr or str of the section (tracebacks, debug prints)."""
    fleet = parse_config({"fleet": {"broker": BROKER}}).fleet
    assert "s3cret-pw" not in repr(fleet) and "s3cret-pw" not in str(fleet)
    assert "farm-07:***@mq.example" in repr(fleet)
    for bad in ({"broker": "http://farm:s3cret-pw@mq/"}, {"broker": BROKER, "host": "x y"}):
        assert not any("s3cret-pw" in p for p in problems(bad))


def test_fleet_changes_need_a_daemon_restart() -> None:
    """A reload reports every [fleet] change (added, changed, removed) as needing a restart,
    by key only (never the broker URL's value)."""
    without = parse_config({})
    with_fleet = parse_config({"fleet": {"broker": BROKER}})
    other_host = parse_config({"fleet": {"broker": BROKER, "host": "farm-08"}})

    def needs(old: Any, new: Any) -> list[str]:
        return settings_needing_restart(daemon_settings(old), daemon_settings(new), APPLIED_LIVE)

    assert needs(without, without) == []
    assert needs(with_fleet, with_fleet) == []
    added = needs(without, with_fleet)
    assert "fleet" in added and "fleet.broker" in added
    assert needs(with_fleet, other_host) == ["fleet.host"]
    assert "fleet.broker" in needs(with_fleet, without)


def test_no_broker_library_is_imported_without_fleet() -> None:
    """A daemon without [fleet] never imports aio-pika (nor the agent)."""
    script = (
        "import sys\n"
        "import heartwatch.assembly.daemon, heartwatch.cli.app\n"
        "from heartwatch.config import parse_config\n"
        "parse_config({'service': [{'name': 'a', 'command': 'true'}]})\n"
        "loaded = [m for m in ('aio_pika', 'aiormq', 'heartwatch.daemon.fleet_agent') "
        "if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
