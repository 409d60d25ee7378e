"""Commands from a hub to one host's agent: their form, their signature, the agent's verdict.

A hub signs each command with its Ed25519 private key; an agent holds only the public keys it
trusts (``[fleet] hub_keys``), so no agent, nor anyone who can publish on the broker, can make
another agent act. The signed bytes are the command's canonical JSON (sorted keys, no spaces),
so what is verified is exactly what is decoded. On the wire::

    {"command": {"id": "…", "host": "farm-07", "service": "collector@2", "verb": "restart",
                 "args": {}, "issued_at": 1764590000.0, "expires_at": 1764590060.0,
                 "issued_by": "hub-1"},
     "signature": "<base64 of 64 bytes>"}

``judge`` is the agent's whole decision, pure: a command runs only if it is well formed,
signed by a trusted key, meant for this host, not expired, not from the future beyond the
allowed clock skew, and its id was never run before (the agent keeps the ids it ran, across
its restarts). Everything else is refused with the reason, which the agent logs and replies.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from heartwatch.core.fleetwire import is_host_name

Verb = Literal["restart", "stop", "start", "reload", "signal", "tail"]
VERBS: Final = frozenset(get_args(Verb))
# Verbs that name a service (reload is the host's whole configuration).
SERVICE_VERBS: Final = frozenset({"restart", "stop", "start", "signal", "tail"})
MAX_COMMAND_BYTES: Final = 16 * 1024
MAX_LIFETIME: Final = 24 * 3600.0  # a command valid longer than a day is refused as malformed
CLOCK_SKEW: Final = 60.0  # a command issued this far in the agent's future is still taken
_ID = re.compile(r"[0-9a-f]{32}")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@*?\[\]!-]{0,127}")  # a name or a selection

# What a reply says of a command (the agent publishes one or two: accepted, then done/failed).
ReplyStatus = Literal["accepted", "done", "failed", "refused", "expired"]
REPLY_STATUSES: Final = frozenset(get_args(ReplyStatus))


class CommandRefused(ValueError):
    """A command the agent will not run; ``code`` for counting, the message says why."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Command:
    id: str  # 32 hex digits, drawn by the hub
    host: str
    service: str | None  # None for reload
    verb: Verb
    issued_at: float
    expires_at: float
    args: Mapping[str, Any] = field(default_factory=dict)  # signal: {"signal": "SIGUSR1"}
    issued_by: str = ""  # the hub's name, for the record

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "service": self.service,
            "verb": self.verb,
            "args": dict(self.args),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "issued_by": self.issued_by,
        }


def canonical(command: Command) -> bytes:
    """The bytes a signature covers."""
    return json.dumps(command.to_json(), sort_keys=True, separators=(",", ":")).encode()


def sign(command: Command, key: Ed25519PrivateKey) -> bytes:
    """The command as it travels: its canonical form and the hub's signature over it."""
    signature = base64.b64encode(key.sign(canonical(command))).decode()
    return json.dumps(
        {"command": command.to_json(), "signature": signature}, separators=(",", ":")
    ).encode()


def parse(data: bytes) -> tuple[Command, bytes]:
    """The command in a signed message, and the signature, unverified (``judge`` verifies)."""
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandRefused("malformed", f"a command of {len(data)} bytes is too large")
    try:
        outer = json.loads(data)
    except ValueError:
        raise CommandRefused("malformed", "not a JSON command") from None
    if type(outer) is not dict or type(outer.get("command")) is not dict:
        raise CommandRefused("malformed", "no command in the message")
    try:
        signature = base64.b64decode(str(outer.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise CommandRefused("unsigned", "the signature is not base64") from None
    body: dict[str, Any] = outer["command"]
    command_id, host, service, verb = (body.get(k) for k in ("id", "host", "service", "verb"))
    if type(command_id) is not str or not _ID.fullmatch(command_id):
        raise CommandRefused("malformed", "the command id is not 32 hex digits")
    if not is_host_name(host):
        raise CommandRefused("malformed", "the command's host is not a host name")
    if verb not in VERBS:
        raise CommandRefused("malformed", f"unknown verb {str(verb)[:40]!r}")
    if verb in SERVICE_VERBS:
        if type(service) is not str or not _SERVICE.fullmatch(service):
            raise CommandRefused("malformed", f"{verb} needs a service name")
    elif service is not None:
        raise CommandRefused("malformed", f"{verb} takes no service")
    issued, expires = body.get("issued_at"), body.get("expires_at")
    if type(issued) not in (int, float) or type(expires) not in (int, float):
        raise CommandRefused("malformed", "issued_at and expires_at must be Unix times")
    issued_at, expires_at = float(cast(float, issued)), float(cast(float, expires))
    if not (0 < issued_at <= expires_at <= issued_at + MAX_LIFETIME):
        raise CommandRefused("malformed", "the command's lifetime is not between 0 s and a day")
    args = body.get("args", {})
    if type(args) is not dict:
        raise CommandRefused("malformed", "args must be an object")
    issued_by = body.get("issued_by", "")
    command = Command(
        command_id,
        cast(str, host),
        service,
        cast(Verb, verb),
        issued_at,
        expires_at,
        args,
        issued_by if type(issued_by) is str else "",
    )
    return command, signature


def judge(
    data: bytes,
    *,
    host: str,
    now: float,
    trusted: Iterable[Ed25519PublicKey],
    already_ran: Callable[[str], bool],
) -> Command:
    """The command in ``data`` if this agent may run it now; else ``CommandRefused`` says why.

    Checked in this order, so that the reason given is the first that applies: form, signature
    (a forged command learns nothing else), host, expiry, clock, replay.
    """
    command, signature = parse(data)
    message = canonical(command)
    for key in trusted:
        try:
            key.verify(signature, message)
            break
        except InvalidSignature:
            continue
    else:
        raise CommandRefused("forged", "the signature is not one of a trusted hub's keys")
    if command.host != host:
        raise CommandRefused("wrong_host", f"meant for host {command.host!r}, this is {host!r}")
    if now > command.expires_at:
        raise CommandRefused("expired", f"expired {now - command.expires_at:.1f} s ago, never ran")
    if command.issued_at > now + CLOCK_SKEW:
        raise CommandRefused(
            "future", f"issued {command.issued_at - now:.0f} s in this host's future"
        )
    if already_ran(command.id):
        raise CommandRefused("replayed", f"command {command.id} already ran here: not again")
    return command


# --- keys -----------------------------------------------------------------------------------


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as one line of text (base64 of its 32 raw bytes), as configs hold it."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Raises ``ValueError`` saying what is wrong with ``text``."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_text(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return base64.b64encode(
        key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    ).decode()


def parse_private_key(text: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 private key is 32 bytes, this is {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def reply_body(
    command: Mapping[str, Any] | Command, status: ReplyStatus, reason: str
) -> dict[str, Any]:
    """The body of a ``reply`` event (``fleetwire``): which command, what became of it, why."""
    verb: str
    if isinstance(command, Command):
        command_id, service, verb = command.id, command.service, command.verb
    else:
        command_id = str(command.get("id", ""))
        service = command.get("service") if type(command.get("service")) is str else None
        verb = str(command.get("verb", ""))
    return {
        "command": command_id,
        "service": service,
        "verb": verb,
        "status": status,
        "reason": reason,
    }
