"""Addresses: one parser and one loopback rule for the daemon, the configuration and clients."""

from __future__ import annotations

import pytest

from heartwatch.client.address import resolve_target, token_for
from heartwatch.core.addresses import DEFAULT_HEARTBEAT_ADDRESS, is_loopback, parse_address


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:5005", ("127.0.0.1", 5005)),
        ("[::1]:8765", ("::1", 8765)),
        ("::1:8765", ("::1", 8765)),
        (":9", ("127.0.0.1", 9)),
        ("9", ("127.0.0.1", 9)),
        (9, ("127.0.0.1", 9)),
        ("host.example:0", ("host.example", 0)),
        (("10.0.0.2", 65535), ("10.0.0.2", 65535)),
    ],
)
def test_parse_address_takes_the_written_forms(value: object, address: tuple[str, int]) -> None:
    assert parse_address(value) == address


@pytest.mark.parametrize(
    "value", ["127.0.0.1:65536", "h:-1", "h:x", "h:", None, True, ("h", 70000), ("h", "1")]
)
def test_parse_address_refuses_ports_beyond_the_range(value: object) -> None:
    with pytest.raises(ValueError, match=r"port from 0 to 65535|expected an address"):
        parse_address(value)


def test_a_client_refuses_a_port_beyond_the_range() -> None:
    """It used to pass 70000 to the resolver, which sent to port 4464 (70000 - 65536)."""
    for address in ("127.0.0.1:70000", ("127.0.0.1", 70000)):
        _service, target, problem = resolve_target("s", address)
        assert target is None and problem is not None and "65535" in problem


def test_a_client_defaults_to_the_daemons_default_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HEARTWATCH_ADDR", raising=False)
    assert resolve_target("s", None)[1] == DEFAULT_HEARTBEAT_ADDRESS


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost"])
def test_a_client_sends_no_token_to_loopback(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon takes heartbeats from these without a token, so the client keeps it: the
    IPv4-mapped loopback used to get the token (the client had a loopback rule of its own)."""
    monkeypatch.setenv("HEARTWATCH_TOKEN", "a-long-token")
    assert is_loopback(host)
    assert token_for((host, 5005), None) is None


def test_a_client_sends_the_token_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTWATCH_TOKEN", "a-long-token")
    monkeypatch.delenv("HEARTWATCH_INGEST_TOKEN", raising=False)
    assert token_for(("10.0.0.2", 5005), None) == "a-long-token"
    assert token_for(("::ffff:10.0.0.2", 5005), "given") == "given"
