"""The fleet's wire format: what an agent publishes, what a hub consumes. Pure.

Every message an agent sends is one JSON object, an *envelope*::

    {"v": 1, "type": "entry", "host": "farm-07", "boot": "9f2c…", "seq": 42,
     "at": 1764590000.25, "body": {...}}

- ``type``: what the body is (``MessageType``). *Events* (``entry``, ``counts``, ``reply``)
  are numbered: ``seq`` counts 1, 2, 3… within one ``boot`` of one host without a gap, they
  wait in the agent's outbox while the broker is away, and the hub stores each once, keyed on
  ``(host, boot, seq)``. *Reports* (``snapshot``, ``heartbeat``) are never buffered (a stale
  one says nothing true); their ``seq`` is the last event number the agent had handed out when
  it made them, so the hub knows whether it has seen every event a snapshot already includes.
- ``boot``: the agent daemon's run, a random id drawn at each start (32 hex digits).
- ``at``: the agent's wall clock, Unix seconds; kept and shown, never used for deadlines (the
  hub times hosts by when it received them).

*Batches*: a message may instead be a JSON array of at most ``MAX_BATCH`` envelopes, all
events of one host (an agent replaying its outbox, or a burst), routed ``<host>.-.batch``.
Reading one AMQP message costs a consumer far more than decoding one more envelope, so a hub
takes many events per message this way. Each element is checked alone (``decode_batch``): a
bad one is refused and counted, the good ones beside it are kept.

Routing keys are ``<host>.<service>.<kind>`` (``farm-07.collector@2.transition``,
``farm-07.-.heartbeat`` for the daemon itself) so that a consumer can bind to one host, one
service or one kind. Host and service names may hold dots, which AMQP's topic matching reads
as separators: they are escaped (``.`` → ``%2E``, ``%`` → ``%25``) inside a word.

Decoding never trusts its input: anything malformed raises ``FleetWireError`` with a code for
counting and words for the log (a hub counts and skips it; nothing is lost but that message).
Nor does it trust the sender's word for who it is: with a broker user per host, the broker's
topic permissions bind the routing key's host word to that user, so ``decode_batch`` refuses
(``host_mismatch``) any envelope that names another host than its message's routing key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

PROTOCOL: Final = 1
DEFAULT_EXCHANGE: Final = "heartwatch.fleet"
MAX_MESSAGE_BYTES: Final = 1024 * 1024  # a snapshot of a few hundred services fits easily
MAX_BATCH: Final = 500  # envelopes in one batch message
BATCH_BYTES: Final = 256 * 1024  # an agent's batch stays below this (one event may exceed it)
BATCH_KIND: Final = "batch"  # a batch's routing key: <host>.-.batch

MessageType = Literal["entry", "counts", "reply", "snapshot", "heartbeat"]
MESSAGE_TYPES: Final = frozenset(get_args(MessageType))
EVENT_TYPES: Final = frozenset({"entry", "counts", "reply"})  # numbered, buffered, stored once

# The routing key's service word for what is about the host (daemon entries, counts, reports).
HOST_WORD: Final = "-"

# Host names: what a hostname may be (FQDNs included), and what reads safely in a URL path and
# a command line (``heartwatch tail farm-07/collector``): no slash, no space, no markup.
HOST_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BOOT = re.compile(r"[0-9a-f]{32}")
_MAX_SEQ = 2**63 - 1  # a PostgreSQL bigint


class FleetWireError(ValueError):
    """A message that cannot be used; ``code`` names the fault (for counting), ``detail`` says."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True, slots=True)
class Envelope:
    type: MessageType
    host: str
    boot: str
    seq: int
    at: float
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_event(self) -> bool:
        return self.type in EVENT_TYPES

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL,
            "type": self.type,
            "host": self.host,
            "boot": self.boot,
            "seq": self.seq,
            "at": self.at,
            "body": dict(self.body),
        }


def encode(envelope: Envelope) -> bytes:
    """The envelope as UTF-8 JSON (compact; non-ASCII kept as it is)."""
    return json.dumps(envelope.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def encode_batch(encoded: Sequence[bytes]) -> bytes:
    """A batch message of envelopes already ``encode``d (an agent keeps them so)."""
    return b"[" + b",".join(encoded) + b"]"


def decode(data: bytes) -> Envelope:
    """One message from the broker, checked; raises ``FleetWireError`` saying what is wrong."""
    obj = _parse(data)
    if type(obj) is not dict:
        raise FleetWireError("shape", f"a JSON object expected, not {type(obj).__name__}")
    return envelope_of(obj)


def decode_batch(data: bytes, routing_host: str) -> tuple[list[Envelope], list[FleetWireError]]:
    """A message of one envelope or of a batch, from the host its routing key names
    (``parse_routing_key``): the good envelopes, in order, and what was wrong with each bad
    element. A message that is neither an object nor an array of at most ``MAX_BATCH``
    envelopes is refused whole (raises ``FleetWireError``). In a batch, only events count:
    a report (never buffered) there is refused, as is an element that is not an object."""
    obj = _parse(data)
    if type(obj) is dict:
        envelope = envelope_of(obj)
        _check_host(envelope, routing_host)
        return [envelope], []
    if type(obj) is not list:
        raise FleetWireError("shape", f"a JSON object or array expected, not {type(obj).__name__}")
    if not obj:
        raise FleetWireError("batch", "an empty batch")
    if len(obj) > MAX_BATCH:
        raise FleetWireError("batch", f"{len(obj)} envelopes in a batch, more than {MAX_BATCH}")
    good: list[Envelope] = []
    bad: list[FleetWireError] = []
    for element in obj:
        try:
            if type(element) is not dict:
                raise FleetWireError(
                    "shape", f"a batch holds JSON objects, not {type(element).__name__}"
                )
            envelope = envelope_of(element)
            if not envelope.is_event:
                raise FleetWireError("type", f"a {envelope.type} in a batch (only events are)")
            _check_host(envelope, routing_host)
        except FleetWireError as error:
            bad.append(error)
            continue
        good.append(envelope)
    return good, bad


def _check_host(envelope: Envelope, routing_host: str) -> None:
    if envelope.host != routing_host:
        raise FleetWireError(
            "host_mismatch",
            f"host {_short(envelope.host)} in a message routed as from {_short(routing_host)}",
        )


def _parse(data: bytes) -> object:
    if len(data) > MAX_MESSAGE_BYTES:
        raise FleetWireError("size", f"{len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise FleetWireError("encoding", "not UTF-8") from None
    try:
        # NaN and Infinity are not JSON: PostgreSQL's jsonb would refuse the hub's whole batch.
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise FleetWireError(
            "json", f"not JSON ({error.args[0] if error.args else error})"
        ) from None
    except RecursionError:
        # `[[[[…` a few thousand deep: the parser's own limit, not a crash of the consumer.
        raise FleetWireError("json", "nested too deeply") from None


def envelope_of(obj: Mapping[str, Any]) -> Envelope:
    """A decoded JSON object checked as an envelope; raises ``FleetWireError``."""
    if obj.get("v") != PROTOCOL:
        raise FleetWireError("version", f"protocol {obj.get('v')!r}, this hub speaks {PROTOCOL}")
    kind = obj.get("type")
    if type(kind) is not str or kind not in MESSAGE_TYPES:
        raise FleetWireError("type", f"unknown message type {_short(kind)}")
    host = obj.get("host")
    if not is_host_name(host):
        raise FleetWireError("host", f"not a host name: {_short(host)}")
    boot = obj.get("boot")
    if type(boot) is not str or not _BOOT.fullmatch(boot):
        raise FleetWireError("boot", f"not a boot id (32 hex digits): {_short(boot)}")
    seq = obj.get("seq")
    if type(seq) is not int or not (0 <= seq <= _MAX_SEQ) or (kind in EVENT_TYPES and seq == 0):
        raise FleetWireError("seq", f"not a sequence number: {_short(seq)}")
    at = obj.get("at")
    if type(at) not in (int, float) or not (0 <= cast(float, at) < 1e11):
        raise FleetWireError("at", f"not a Unix time: {_short(at)}")
    body = obj.get("body", {})
    if type(body) is not dict:
        raise FleetWireError("body", "body must be a JSON object")
    return Envelope(
        cast(MessageType, kind), cast(str, host), boot, seq, float(cast(float, at)), body
    )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_host_name(name: object) -> bool:
    return type(name) is str and HOST_NAME.fullmatch(name) is not None


# --- routing keys ---------------------------------------------------------------------------


def escape_word(word: str) -> str:
    """``word`` as one word of a topic routing key (no dot left in it, never ``HOST_WORD``)."""
    if word == HOST_WORD:
        return "%2D"
    return word.replace("%", "%25").replace(".", "%2E")


def unescape_word(word: str) -> str:
    if word == "%2D":
        return HOST_WORD
    return word.replace("%2E", ".").replace("%25", "%")


def routing_key(host: str, service: str | None, kind: str) -> str:
    """``<host>.<service>.<kind>``; ``service`` None is the host itself (``-``)."""
    return ".".join(
        (escape_word(host), HOST_WORD if service is None else escape_word(service), kind)
    )


def parse_routing_key(key: str) -> tuple[str, str | None, str]:
    """The inverse of ``routing_key``; raises ``FleetWireError`` for another shape."""
    words = key.split(".")
    if len(words) != 3:
        raise FleetWireError("routing", f"not <host>.<service>.<kind>: {_short(key)}")
    host, service, kind = words
    return unescape_word(host), None if service == HOST_WORD else unescape_word(service), kind


def batch_routing_key(host: str) -> str:
    """Where an agent publishes a batch of its events: ``<host>.-.batch``."""
    return routing_key(host, None, BATCH_KIND)


def event_routing_key(envelope: Envelope) -> str:
    """Where an agent publishes ``envelope``: entries under their service and entry kind."""
    body = envelope.body
    if envelope.type == "entry":
        service = body.get("service")
        return routing_key(
            envelope.host, service if type(service) is str else None, str(body.get("kind", "entry"))
        )
    if envelope.type == "reply":
        service = body.get("service")
        return routing_key(envelope.host, service if type(service) is str else None, "reply")
    return routing_key(envelope.host, None, envelope.type)


# --- names the agent and the hub must agree on ----------------------------------------------


def command_queue(exchange: str, host: str) -> str:
    """The durable queue of one host's commands (declared by the hub and the agent alike)."""
    return f"{exchange}.commands.{host}"


def expired_exchange(exchange: str) -> str:
    """Where the broker dead-letters a command that expired in its queue, never delivered."""
    return f"{exchange}.expired"


def command_queue_arguments(exchange: str) -> dict[str, Any]:
    """The command queue's arguments: both sides declare it, so both must pass the same."""
    return {"x-dead-letter-exchange": expired_exchange(exchange)}


def events_queue(exchange: str) -> str:
    """The hubs' shared queue (single active consumer: one hub ingests, the others stand by)."""
    return f"{exchange}.hub"


EVENTS_QUEUE_ARGUMENTS: Final[Mapping[str, Any]] = {"x-single-active-consumer": True}
# The events queue's binding: every <host>.<service>.<kind>, and no log stream (four words).
EVENTS_BINDING: Final = "*.*.*"


def log_routing_key(host: str, service: str, stream: str) -> str:
    """Where an agent publishes the lines of a ``tail``: ``<host>.<service>.log.<stream>``
    (``stream``: the hub's token in the command's args). Four words: no events binding
    (``EVENTS_BINDING``) takes it, only the queue of the hub that asked."""
    return ".".join((escape_word(host), escape_word(service), "log", escape_word(stream)))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
