"""hub.toml: valid files load; every problem is reported at its key path; no secret shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from heartwatch.config import ConfigError
from heartwatch.hub.config import KEY_ENVIRONMENT, load_hub_config, parse_hub_config

MINIMAL = {"broker": "amqp://hub:s3cret-pw@mq:5672/%2F", "database": "postgresql://pg:dbpw@db/x"}


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_hub_config(data, environ=environ or {})
    return [str(problem) for problem in caught.value.problems]


def test_hub_config_defaults_and_durations() -> None:
    """A minimal file: the brief's defaults; durations as people write them."""
    config = parse_hub_config(
        {"hub": {**MINIMAL, "stale_after": "10s", "name": "hub-1"}}, environ={}
    )
    assert config.name == "hub-1"
    assert config.hub.exchange == "heartwatch.fleet"
    assert config.hub.http == ("127.0.0.1", 9300)
    assert (config.hub.stale_after, config.hub.unreachable_after) == (10.0, 45.0)
    assert config.host_rules.start_grace == 60.0
    assert config.alerts.rate_limit == 10  # the agent's [alerts] defaults


def test_hub_config_problems_name_their_key_paths_all_at_once() -> None:
    """Every problem in one round, each at the path a person types; unknown keys by name."""
    found = problems(
        {
            "hub": {
                "broker": "http://mq",
                "stale_afte": "5s",
                "unreachable_after": "nope",
                "http": "127.0.0.1:99999",
            },
            "alerts": {"urls": [3], "rate_limit": 0},
            "agents": {},
        }
    )
    assert "hub.broker: a broker URL starts with amqp:// or amqps://" in found
    assert "hub.database: required, and missing" in found
    assert "hub.stale_afte: unknown key `stale_afte`; did you mean `stale_after`?" in found
    assert any(p.startswith("hub.unreachable_after: ") for p in found)
    assert any(p.startswith("hub.http: ") for p in found)
    assert any(p.startswith("alerts.urls[0]: ") for p in found)
    assert any(p.startswith("alerts.rate_limit: ") for p in found)
    assert "agents: unknown key `agents`" in found


def test_hub_config_a_missing_hub_section_is_said() -> None:
    """No [hub]: required."""
    assert problems({}) == ["hub: required, and missing"]


def test_hub_config_cross_key_rules() -> None:
    """unreachable after stale; an exposed HTTP side needs a token; read_token needs token."""
    found = problems(
        {
            "hub": {
                **MINIMAL,
                "stale_after": "60s",
                "unreachable_after": "30s",
                "http": "0.0.0.0:9300",
                "read_token": "read-only-1",
            }
        }
    )
    assert "hub.unreachable_after: must be longer than hub.stale_after" in found
    assert any(p.startswith("hub.token: required when hub.http listens on 0.0.0.0") for p in found)
    assert any(p.startswith("hub.read_token: needs hub.token") for p in found)


def test_hub_config_the_token_may_come_from_the_environment() -> None:
    """HEARTWATCH_TOKEN stands in for [hub] token (and satisfies the exposure rule)."""
    config = parse_hub_config(
        {"hub": {**MINIMAL, "http": "0.0.0.0:9300"}}, environ={"HEARTWATCH_TOKEN": "from-the-env-1"}
    )
    assert config.hub.token == "from-the-env-1"


def test_hub_config_secrets_are_not_in_its_repr() -> None:
    """Passwords of URLs and tokens stay out of repr (tracebacks, debug prints)."""
    config = parse_hub_config({"hub": {**MINIMAL, "token": "control-token-1"}}, environ={})
    text = repr(config)
    assert "s3cret-pw" not in text and "dbpw" not in text and "control-token-1" not in text
    assert "amqp://hub:***@mq:5672/%2F" in text


def test_hub_config_problems_do_not_quote_the_broker_password() -> None:
    """A broker URL that is wrong is said without repeating it."""
    found = problems({"hub": {**MINIMAL, "broker": "amqp://hub:pa#ss@mq/"}})
    assert found and not any("pa#ss" in p for p in found)


def test_hub_config_load_names_the_file_and_resolves_relative_paths(tmp_path: Path) -> None:
    """Paths in the file are relative to it; the signing key is read from there or the env."""
    (tmp_path / "hub.key").write_text("c2VjcmV0\n")
    path = tmp_path / "hub.toml"
    path.write_text(
        '[hub]\nbroker = "amqp://guest:guest@127.0.0.1/"\n'
        'database = "postgresql://postgres@127.0.0.1/hw"\n'
        'state_dir = "state"\nsigning_key = "hub.key"\n'
    )
    config = load_hub_config(path)
    assert config.state_dir == tmp_path / "state"
    assert config.signing_key_text(environ={}) == "c2VjcmV0"
    assert config.signing_key_text(environ={KEY_ENVIRONMENT: "ZW52"}) == "ZW52"
    path.write_text("[hub\n")
    with pytest.raises(ConfigError, match=r"hub\.toml: not valid TOML"):
        load_hub_config(path)


def test_hub_config_retention_and_forget_after() -> None:
    """retention: 30 days unless said; forget_after: off unless said; both as durations,
    too short a value refused at its key path."""
    default = parse_hub_config({"hub": MINIMAL}, environ={})
    assert (default.hub.retention, default.hub.forget_after) == (30 * 86400.0, None)
    config = parse_hub_config(
        {"hub": {**MINIMAL, "retention": "7d", "forget_after": "90d"}}, environ={}
    )
    assert (config.hub.retention, config.hub.forget_after) == (7 * 86400.0, 90 * 86400.0)
    found = problems({"hub": {**MINIMAL, "retention": "5s", "forget_after": "soon"}})
    assert any(problem.startswith("hub.retention") for problem in found)
    assert any(problem.startswith("hub.forget_after") for problem in found)
