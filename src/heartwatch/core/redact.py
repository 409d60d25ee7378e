"""Credentials out of what heartwatch prints: every URL's password and token become ``***``.

``redact`` takes any text (a URL, a log message, a repr, an exception's message) and rewrites the
URLs in it: the user-info of the authority (``amqp://guest:***@host``; a lone user name is
replaced whole, since services such as Sentry put the key there: ``https://***@host``) and the
values of query or fragment parameters whose names say secret (``?password=***``,
``&access_token=***``). Everything else is kept, so the line still says which broker or host.

URLs are found by their ``scheme://`` and parsed as RFC 3986 does (the authority ends at the
first ``/``, ``?`` or ``#``; the user-info at its last ``@``), as pika and urllib parse them: a
credential that would reach the broker is a credential this finds. A URL ends at whitespace.
"""

from __future__ import annotations

import re

MASK = "***"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
# A parameter in the query or fragment: its separator, its name, its value.
_PARAMETER = re.compile(r"(?P<head>[?&;#](?P<name>[^=&;#?\s]+)=)(?P<value>[^&;#\s]*)")
# A parameter is secret if one of the words of its name is one of these, or its name contains
# one of the longer ones (``X-Amz-Credential``, ``client_secret``, ``sessionid``).
_SECRET_WORDS = frozenset(
    {"pass", "password", "passwd", "pwd", "secret", "token", "key", "apikey", "sig", "signature"}
    | {"credential", "credentials", "auth", "authorization", "sas", "session", "private"}
)
_SECRET_PARTS = ("password", "passwd", "secret", "token", "apikey", "credential", "session")
_WORD_SEPARATOR = re.compile(r"[-_.]")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "://" not in text:  # the common case: a log line with no URL at all
        return text
    return _URL.sub(_redact_url, text)


def _redact_url(match: re.Match[str]) -> str:
    url = match.group(0)
    scheme, _, rest = url.partition("://")
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    if "=" in tail:
        tail = _PARAMETER.sub(_redact_parameter, tail)
    return f"{scheme}://{authority}{tail}"


def _redact_parameter(match: re.Match[str]) -> str:
    name = match.group("name").lower()
    secret = any(part in name for part in _SECRET_PARTS) or not _SECRET_WORDS.isdisjoint(
        _WORD_SEPARATOR.split(name)
    )
    return match.group("head") + MASK if secret else match.group(0)
