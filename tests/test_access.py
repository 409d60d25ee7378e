"""The access rules, as a table: what each request needs, and what each credential gets."""

from __future__ import annotations

import pytest

from heartwatch.config import ServerConfig
from heartwatch.web.access import (
    BAD_HOST,
    CROSS_ORIGIN,
    CROSS_ORIGIN_WEBSOCKET,
    READ_ONLY,
    UNAUTHORISED,
    AccessPolicy,
    Refusal,
    need_of,
    presented_token,
)

CONTROL, READ, INGEST = "control-token", "read-only-token", "ingest-token"
TOKENS = AccessPolicy(ServerConfig(token=CONTROL, read_token=READ, ingest_token=INGEST))
OPEN = AccessPolicy(ServerConfig())
HOST = "127.0.0.1:8765"


@pytest.mark.parametrize(
    ("method", "path", "need"),
    [
        ("GET", "/", "public"),
        ("GET", "/history", "public"),  # the history page's shell: its data needs a token
        ("GET", "/api/v1/history/x", "read"),
        ("GET", "/static/app.js", "public"),
        ("GET", "/ping/backup", "ingest"),
        ("POST", "/ping/backup/fail", "ingest"),
        ("GET", "/api/v1/services", "read"),
        ("HEAD", "/metrics", "read"),
        ("GET", "/openapi.json", "read"),
        ("POST", "/api/v1/services/c/restart", "control"),
        ("DELETE", "/api/v1/services", "control"),
        ("GET", "/staticfile", "read"),  # only the folder is public
    ],
)
def test_need_of_a_request(method: str, path: str, need: str) -> None:
    """What a request needs follows from its method and path alone."""
    assert need_of(method, path) == need


@pytest.mark.parametrize(
    ("policy", "need", "token", "host", "origin", "peer", "websocket", "refusal"),
    [
        (TOKENS, "read", None, HOST, None, "127.0.0.1", False, UNAUTHORISED),
        (TOKENS, "read", "nope", HOST, None, "127.0.0.1", False, UNAUTHORISED),
        (TOKENS, "read", READ, HOST, None, "127.0.0.1", False, None),
        (TOKENS, "control", READ, HOST, None, "127.0.0.1", False, READ_ONLY),
        (TOKENS, "control", CONTROL, HOST, None, "127.0.0.1", False, None),
        (TOKENS, "control", INGEST, HOST, None, "127.0.0.1", False, UNAUTHORISED),
        (TOKENS, "public", None, "anything.example", None, "10.0.0.9", False, None),
        (TOKENS, "ingest", None, HOST, None, "127.0.0.1", False, None),
        (TOKENS, "ingest", None, HOST, None, "10.0.0.9", False, UNAUTHORISED),
        (TOKENS, "ingest", INGEST, HOST, None, "10.0.0.9", False, None),
        (TOKENS, "ingest", CONTROL, HOST, None, "10.0.0.9", False, None),
        (TOKENS, "ingest", READ, HOST, None, "10.0.0.9", False, UNAUTHORISED),
        (TOKENS, "control", CONTROL, HOST, "http://evil.example", None, False, CROSS_ORIGIN),
        (TOKENS, "read", CONTROL, HOST, "http://evil.example", None, False, None),
        (TOKENS, "read", CONTROL, HOST, "http://evil.example", None, True, CROSS_ORIGIN_WEBSOCKET),
        (TOKENS, "read", CONTROL, HOST, f"http://{HOST}", None, True, None),
        (OPEN, "control", None, HOST, None, "127.0.0.1", False, None),
        (OPEN, "read", None, "localhost:8765", None, "127.0.0.1", False, None),
        (OPEN, "read", None, "[::1]:8765", None, "::1", False, None),
        (OPEN, "read", None, "evil.example:8765", None, "127.0.0.1", False, BAD_HOST),
        (OPEN, "public", None, "evil.example", None, "127.0.0.1", False, BAD_HOST),
        (OPEN, "read", None, None, None, "127.0.0.1", False, BAD_HOST),
        (OPEN, "control", None, HOST, "http://evil.example", None, False, CROSS_ORIGIN),
    ],
)
def test_access_rules(
    policy: AccessPolicy,
    need: str,
    token: str | None,
    host: str | None,
    origin: str | None,
    peer: str | None,
    websocket: bool,
    refusal: Refusal | None,
) -> None:
    """Each row: a request, and the refusal it gets (or None)."""
    got = policy.check(
        need,  # type: ignore[arg-type]
        presented=token,
        host=host,
        origin=origin,
        peer=peer,
        websocket=websocket,
    )
    assert got == refusal


def test_token_from_header_or_query() -> None:
    """A bearer header wins; a browser's websocket uses the query."""
    assert presented_token({"authorization": "Bearer abc"}, "token=xyz") == "abc"
    assert presented_token({"authorization": "bearer  abc "}, "") == "abc"
    assert presented_token({"authorization": "Basic abc"}, "token=xyz") == "xyz"
    assert presented_token({}, "a=1&token=x%2By") == "x+y"
    assert presented_token({}, "") is None


def test_grant_says_what_a_token_allows() -> None:
    """``/api/v1/auth`` answers from this: none, read or control."""
    assert TOKENS.grant(None) == "none"
    assert TOKENS.grant(READ) == "read"
    assert TOKENS.grant(CONTROL) == "control"
    assert OPEN.grant(None) == "control"


@pytest.mark.parametrize(
    ("policy", "need", "token", "host", "fetch_site", "refusal"),
    [
        (OPEN, "ingest", None, HOST, "cross-site", CROSS_ORIGIN),  # <img src=.../ping/x/fail>
        (OPEN, "ingest", None, HOST, "same-site", CROSS_ORIGIN),
        (OPEN, "ingest", None, HOST, "none", None),  # typed in the address bar
        (OPEN, "ingest", None, HOST, None, None),  # curl
        (TOKENS, "ingest", None, HOST, "cross-site", CROSS_ORIGIN),
        (TOKENS, "ingest", None, "rebound.example:8765", None, UNAUTHORISED),  # DNS rebinding
        (TOKENS, "ingest", INGEST, "rebound.example:8765", None, None),
        (TOKENS, "control", CONTROL, HOST, "cross-site", CROSS_ORIGIN),
        (TOKENS, "read", CONTROL, HOST, "cross-site", None),  # no cookies: nothing to ride on
        (TOKENS, "read", CONTROL, HOST, "same-origin", None),
    ],
)
def test_browsers_on_other_sites_cannot_ping_or_control(
    policy: AccessPolicy,
    need: str,
    token: str | None,
    host: str,
    fetch_site: str | None,
    refusal: Refusal | None,
) -> None:
    """A page elsewhere cannot fail or fake a service through a ping from the user's browser."""
    got = policy.check(
        need,  # type: ignore[arg-type]
        presented=token,
        host=host,
        origin=None,
        peer="127.0.0.1",
        websocket=False,
        fetch_site=fetch_site,
    )
    assert got == refusal
