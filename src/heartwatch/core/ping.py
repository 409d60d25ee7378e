"""What an HTTP ping's path says, in the style of the Healthchecks ping API. Pure.

``/ping/<service>`` and ``/ping/<service>/<what>``: nothing (alive), ``start`` (a run began),
``fail`` (the run failed; the body's first line is the reason), an exit code ``0``-``255``
(0 is success, anything else a failure), or a data kind (the body is the payload). The HTTP
side (reading the body, answering) is ``web/ping.py``.
"""

from __future__ import annotations

from heartwatch.core.wire import FAIL, HEARTBEAT, KIND_CHARACTERS, START, Message, is_data_kind

# What may follow the service, as documented: start, fail, an exit code 0-255, or a data kind
# (one that does not start with a digit; ``parse_ping`` takes those too, but the document
# keeps the description simple enough for generators).
WHAT_PATTERN = (
    r"^(?:start|fail|25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]"
    f"|[{KIND_CHARACTERS.replace('0-9', '')}][{KIND_CHARACTERS}]{{0,63}})$"
)
_REASON_CHARS = 200


def parse_ping(what: str | None, body: str | None) -> Message | str:
    """The message a ping path stands for, or the text of a 400 answer."""
    if what is None or what == HEARTBEAT:
        return Message(HEARTBEAT)
    if what == START:
        return Message(START)
    if what == FAIL:
        return Message(FAIL, reason=_first_line(body) or "fail ping")
    if what.isdigit():
        code = int(what)
        if code > 255:
            return "exit code must be 0-255"
        return Message(HEARTBEAT) if code == 0 else Message(FAIL, reason=f"exit code {code}")
    if not is_data_kind(what):
        return "not a data kind"
    return Message(what, data=body)


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:_REASON_CHARS] if text and text.strip() else None
