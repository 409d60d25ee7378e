"""Credentials out of what heartwatch prints: every URL's password and token become ``***``.

``redact`` takes any text (a URL, a log message, a repr, an exception's message) and rewrites the
URLs in it: the user-info of the authority (``amqp://guest:***@host``; a lone user name is
replaced whole, since services such as Sentry put the key there: ``https://***@host``) and the
values of query or fragment parameters whose names say secret (``?password=***``,
``&access_token=***``). Everything else is kept, so the line still says which broker or host.

URLs are found by their ``scheme://`` and parsed as RFC 3986 does (the authority ends at the
first ``/``, ``?`` or ``#``; the user-info at its last ``@``), as pika and urllib parse them: a
credential that would reach the broker is a credential this finds. A password a careless
operator wrote with a raw ``/``, ``?`` or ``#`` in it (``guest:Pa#ss@host``) is masked too, up
to the URL's last ``@``. A URL ends at whitespace.
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
    if (at or ":" in authority) and "@" in tail:
        # A password holding a raw "/", "?" or "#" (``guest:Pa#ss@host``): the authority seems
        # to end inside it. Mask up to the last "@" (at worst a port or a host, in a URL with
        # "@" in its path too: masking too much beats printing a password).
        user, colon, _ = authority.partition(":")
        masked = f"{user}:{MASK}" if colon and "@" not in user else MASK
        return f"{scheme}://{masked}@{_redact_url_tail(rest.rpartition('@')[2])}"
    if at:
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    return f"{scheme}://{authority}{_redact_tail(tail)}"


def _redact_tail(tail: str) -> str:
    """The path, query and fragment with secret parameters masked."""
    return _PARAMETER.sub(_redact_parameter, tail) if "=" in tail else tail


def _redact_url_tail(host_and_tail: str) -> str:
    end = min((i for i in map(host_and_tail.find, "/?#") if i != -1), default=len(host_and_tail))
    return host_and_tail[:end] + _redact_tail(host_and_tail[end:])


def _redact_parameter(match: re.Match[str]) -> str:
    name = match.group("name").lower()
    secret = any(part in name for part in _SECRET_PARTS) or not _SECRET_WORDS.isdisjoint(
        _WORD_SEPARATOR.split(name)
    )
    return match.group("head") + MASK if secret else match.group(0)
