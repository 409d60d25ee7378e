"""Who may do what over HTTP and websockets: one gate in front of every endpoint.

Rules / theory of operation
---------------------------

1. A *scope* is what a request needs: ``public`` (the dashboard's shell: it holds no data),
   ``ingest`` (pings), ``read`` (status, history, logs, metrics, the API document, every
   websocket) or ``control`` (anything that changes something: every other method than GET
   and HEAD).
2. With no token configured (the daemon then listens on loopback only: ``config.py`` refuses
   anything else), everything is allowed, but only through a loopback ``Host`` header, so that
   a web page whose name resolves to 127.0.0.1 (DNS rebinding) cannot reach the API.
3. With a token, ``token`` grants control, ``read_token`` reading; a token comes in
   ``Authorization: Bearer …`` or, for clients that cannot set headers (a browser's
   websocket), the ``token`` query parameter. There are no cookies, so a cross-site form has
   nothing to ride on.
4. Pings from loopback, to a loopback ``Host``, need nothing; otherwise the token or
   ``ingest_token``.
5. Whatever the token, a request that changes something (control, pings: a ping can fail a
   service), and every websocket upgrade, is refused when a browser says it comes from
   another site: an ``Origin`` of another host, or ``Sec-Fetch-Site: cross-site`` (an
   ``<img>`` pointed at a ping carries no Origin, but every current browser sends this).
6. Token and origin are checked before anything else, so a stranger learns nothing about which
   services or files exist: every refusal looks the same.

A refused HTTP request gets a JSON error with a stable code; a refused websocket is accepted
and closed with 4401 or 4403 and the reason, so a client learns why.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from heartwatch.config import ServerConfig
from heartwatch.core.addresses import is_loopback

Need = Literal["public", "ingest", "read", "control"]
Grant = Literal["none", "read", "control"]

# Websocket close codes: 4400-4499 are refusals (the HTTP status + 4000), that a client does
# not retry until something changes; 4401 asks for a token.
REFUSAL_CLOSES = range(4400, 4500)
UNAUTHORISED_CLOSE = 4401
FORBIDDEN_CLOSE = 4403
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC_PATHS = frozenset({"/", "/history", "/favicon.ico"})  # pages that hold no data
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str

    @property
    def close_code(self) -> int:
        return UNAUTHORISED_CLOSE if self.status == 401 else FORBIDDEN_CLOSE


UNAUTHORISED = Refusal(401, "unauthorized", "a valid token is required")
READ_ONLY = Refusal(403, "forbidden", "this token only allows reading")
CROSS_ORIGIN = Refusal(403, "cross_origin", "cross-origin request refused")
CROSS_ORIGIN_WEBSOCKET = Refusal(403, "cross_origin", "cross-origin websocket refused")
BAD_HOST = Refusal(
    403, "bad_host", "without a token, only loopback host names are served (127.0.0.1, localhost)"
)


class AccessPolicy:
    """The tokens of ``[server]``, and what a presented token grants."""

    def __init__(self, server: ServerConfig) -> None:
        self.token = server.token
        self.read_token = server.read_token
        self.ingest_token = server.ingest_token

    @property
    def token_required(self) -> bool:
        return self.token is not None

    def grant(self, presented: str | None) -> Grant:
        if self.token is None:
            return "control"
        if presented is None:
            return "none"
        if _same(presented, self.token):
            return "control"
        if self.read_token is not None and _same(presented, self.read_token):
            return "read"
        return "none"

    def may_ingest(self, presented: str | None, peer: str | None) -> bool:
        """Heartbeats (TCP, UDP) from loopback need nothing; from elsewhere, a token."""
        if peer is not None and is_loopback(peer):
            return True
        return self._valid_ingest_token(presented)

    def _valid_ingest_token(self, presented: str | None) -> bool:
        if presented is None:
            return False
        return any(
            secret is not None and _same(presented, secret)
            for secret in (self.token, self.ingest_token)
        )

    def check(
        self,
        need: Need,
        *,
        presented: str | None,
        host: str | None,
        origin: str | None,
        peer: str | None,
        websocket: bool,
        fetch_site: str | None = None,
    ) -> Refusal | None:
        """Why this request is refused, or ``None``. The order of the checks is deliberate."""
        if not self.token_required and not _loopback_host(host):
            return BAD_HOST
        if websocket or need in ("control", "ingest"):
            foreign = bool(origin) and urlsplit(origin or "").netloc != host
            if foreign or fetch_site in _FOREIGN_SITES:
                return CROSS_ORIGIN_WEBSOCKET if websocket else CROSS_ORIGIN
        if need == "public":
            return None
        if need == "ingest":
            if self._valid_ingest_token(presented):
                return None
            local = peer is not None and is_loopback(peer) and _loopback_host(host)
            return None if local else UNAUTHORISED
        grant = self.grant(presented)
        if grant == "none":
            return UNAUTHORISED
        if need == "control" and grant != "control":
            return READ_ONLY
        return None


def need_of(method: str, path: str) -> Need:
    """What a request needs, from its method and path alone."""
    if path in _PUBLIC_PATHS or path.startswith("/static/"):
        return "public"
    if path == "/ping" or path.startswith("/ping/"):
        return "ingest"
    return "read" if method in _SAFE_METHODS else "control"


def presented_token(headers: dict[str, str], query: str) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    tokens = parse_qs(query).get("token")
    return tokens[0] if tokens else None


class AccessMiddleware:
    """ASGI middleware applying ``AccessPolicy`` to every HTTP request and websocket."""

    def __init__(
        self, app: ASGIApp, policy: AccessPolicy, need: Callable[[str, str], Need] | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.need = need or need_of  # the hub's pages are other paths (hub/api.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        query = scope.get("query_string", b"").decode("latin-1")
        websocket = scope["type"] == "websocket"
        client = scope.get("client")
        refusal = self.policy.check(
            "read" if websocket else self.need(scope["method"], scope["path"]),
            presented=presented_token(headers, query),
            host=headers.get("host"),
            origin=headers.get("origin"),
            peer=client[0] if client else None,
            websocket=websocket,
            fetch_site=headers.get("sec-fetch-site"),
        )
        if refusal is None:
            await self.app(scope, receive, send)
        elif websocket:
            await _close_websocket(receive, send, refusal)
        else:
            await _json_error(send, refusal)


def _same(presented: str, secret: str) -> bool:
    return hmac.compare_digest(presented.encode(), secret.encode())


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name.strip("[]"))


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


async def _json_error(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="heartwatch"'))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _close_websocket(receive: Receive, send: Send, refusal: Refusal) -> None:
    """Accept, then close with the code and reason, so the client learns why."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": refusal.close_code, "reason": refusal.message})
