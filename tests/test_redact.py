"""Credentials never printed: ``redact`` on URLs and texts holding them, and the reprs of
configurations whose URLs carry a password."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.config import QueueConfig
from heartwatch.core.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:secretpw@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/%2F"),
        ("amqps://svc:pw@broker.example:5671", "amqps://svc:***@broker.example:5671"),
        ("https://user:pw@example.com/path?q=1", "https://user:***@example.com/path?q=1"),
        ("postgresql://app:p%40ss@db:5432/items", "postgresql://app:***@db:5432/items"),
        ("amqp://u:p@ss@host/", "amqp://u:***@host/"),  # an unescaped @ in the password
        ("amqp://u:a:b@host/", "amqp://u:***@host/"),  # a colon in the password
        ("https://abc123key@o1.ingest.sentry.io/5", "https://***@o1.ingest.sentry.io/5"),
        ("http://h/x?password=pw&user=u", "http://h/x?password=***&user=u"),
        ("http://h/?token=t;page=2", "http://h/?token=***;page=2"),
        (
            "http://h/?X-Amz-Credential=c&X-Amz-Signature=s",
            "http://h/?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("http://h/?api_key=k&client_secret=s", "http://h/?api_key=***&client_secret=***"),
        ("http://h/cb#access_token=t&state=x", "http://h/cb#access_token=***&state=x"),
        ("amqp://127.0.0.1:5672/%2F", "amqp://127.0.0.1:5672/%2F"),  # nothing to hide
        ("https://medium.com/@someone/post", "https://medium.com/@someone/post"),  # @ in a path
        # A raw "#", "/" or "?" in a password (the review's case: logged in clear before).
        ("amqp://guest:Pa#ss-SEKRIT@127.0.0.1:1/", "amqp://guest:***@127.0.0.1:1/"),
        ("amqp://guest:Pa/ss-SEKRIT@127.0.0.1:1/v", "amqp://guest:***@127.0.0.1:1/v"),
        ("amqp://guest:a?b@h/?password=x", "amqp://guest:***@h/?password=***"),
        ("http://host:8080/a@b", "http://host:***@b"),  # masking too much, never too little
        ("no URL in this line", "no URL in this line"),
        ("user:pw@host without a scheme", "user:pw@host without a scheme"),
    ],
)
def test_redacts_credentials_and_keeps_the_rest(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redacts_every_url_inside_a_longer_text() -> None:
    text = (
        "QueueConfig(url='amqp://guest:one@a/', name='q') and "
        '{"url": "amqps://x:two@b:5671/v"} (see http://c/?token=three)'
    )
    redacted = redact(text)
    for secret in ("one", "two", "three"):
        assert secret not in redacted
    assert "name='q'" in redacted
    assert "amqps://x:***@b:5671/v" in redacted


_PASSWORD = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%@/?#", min_size=1, max_size=30
)


@given(user=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8), password=_PASSWORD)
def test_no_password_survives(user: str, password: str) -> None:
    """Whatever the password's characters, even those that end an authority, it is gone."""
    marked = f"PW{password}PW"
    url = f"amqp://{user}:{marked}@broker.example:5672/vhost"
    redacted = redact(f"connecting to {url} now")
    assert marked not in redacted
    assert redacted == f"connecting to amqp://{user}:***@broker.example:5672/vhost now"


def test_queue_config_repr_hides_the_password() -> None:
    queue = QueueConfig(url="amqp://guest:secretpw@127.0.0.1:5672/%2F", name="items")
    for text in (repr(queue), str(queue), f"{queue!r}"):
        assert "secretpw" not in text
        assert "amqp://guest:***@127.0.0.1:5672/%2F" in text
        assert "items" in text
    assert queue.url == "amqp://guest:secretpw@127.0.0.1:5672/%2F"  # the real one is still used
