"""The history page's export: journal entries as CSV a spreadsheet shows and never runs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime

from heartwatch.core.journal import JournalEntry

CSV_COLUMNS = ("id", "at", "time", "kind", "service", "state", "previous", "reason", "detail")
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it, never runs it: a leading ' before = + - @."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def events_csv(entries: Iterable[JournalEntry]) -> str:
    """Entries as CSV (the csv module's quoting); every text cell formula-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        detail = "" if e.detail is None else json.dumps(dict(e.detail), default=str)
        writer.writerow(
            [
                e.id,
                repr(float(e.at)),
                datetime.fromtimestamp(e.at, UTC).isoformat(timespec="milliseconds"),
                e.kind,
                formula_safe(e.service or ""),
                e.state or "",
                e.previous or "",
                formula_safe(e.reason),
                formula_safe(detail),
            ]
        )
    return out.getvalue()
