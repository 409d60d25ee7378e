"""``cli/remote.py``: the quick reading of a config file finds the daemon where the full one
(pydantic) does, and leaves what it cannot vouch for to the full reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from heartwatch.cli.remote import Refused, read_place, read_place_fully, refusal

SERVICE = '[[service]]\nname = "job"\ncommand = "sleep 1"\n'


@pytest.mark.parametrize(
    "head",
    [
        "",
        '[daemon]\nstate_dir = "var/hw"\n',
        '[server]\nhttp = "127.0.0.1:9999"\ntcp = "[::1]:6000"\ntoken = "a-token-123"\n',
        '[server]\nhttp = "8800"\n[daemon]\nstate_dir = "/tmp/elsewhere"\n',
    ],
)
@pytest.mark.parametrize("running", [False, True])
def test_quick_reading_agrees_with_the_schema(tmp_path: Path, head: str, running: bool) -> None:
    """Defaults, relative and absolute state dirs, addresses, the token, and daemon.json's
    actual ports when the daemon wrote them: the same place either way."""
    config = tmp_path / "heartwatch.toml"
    config.write_text(head + SERVICE)
    if running:
        full = read_place_fully(config)
        full.state_dir.mkdir(parents=True, exist_ok=True)
        info = {"pid": 1, "tcp": "127.0.0.1:40001", "http": "127.0.0.1:40002"}
        (full.state_dir / "daemon.json").write_text(json.dumps(info))
    quick, full = read_place(config), read_place_fully(config)
    assert quick is not None
    assert (quick.http_url, quick.tcp, quick.token, quick.state_dir.resolve()) == (
        full.http_url,
        full.tcp,
        full.token,
        full.state_dir.resolve(),
    )
    if running:
        assert quick.http_url == "http://127.0.0.1:40002" and quick.tcp == ("127.0.0.1", 40001)


@pytest.mark.parametrize(
    "text",
    [
        "not toml [",
        "[daemon]\nstate_dir = 5\n",
        '[server]\nhttp = "nope"\n',
        "server = 1\n",
        "[server]\ntoken = 12345678\n",
    ],
)
def test_quick_reading_leaves_the_unusual_to_the_schema(tmp_path: Path, text: str) -> None:
    """Anything it cannot vouch for: ``None``, and the full reading names the problem (exit 2)."""
    config = tmp_path / "heartwatch.toml"
    config.write_text(text + SERVICE)
    assert read_place(config) is None
    with pytest.raises(Refused) as refused:
        read_place_fully(config)
    assert refused.value.exit_code == 2
    assert "problem(s)" in refused.value.message


def test_refusals_for_want_of_a_token_name_both_remedies() -> None:
    """401 and a read-only token's 403 say --token and HEARTWATCH_TOKEN; 422 is a usage error."""
    unauthorized = refusal(
        401, {"code": "unauthorized", "message": "a valid token is required"}, ""
    )
    assert "pass --token or set HEARTWATCH_TOKEN" in unauthorized.message
    assert unauthorized.exit_code == 1
    read_only = refusal(403, {"code": "forbidden", "message": "this token only allows reading"}, "")
    assert "control token" in read_only.message and "HEARTWATCH_TOKEN" in read_only.message
    assert refusal(422, {"code": "invalid_request", "message": "x"}, "").exit_code == 2
    assert refusal(404, None, "Not Found").message == "Not Found"
