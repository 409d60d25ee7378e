"""Parsing and formatting of the human units used in configuration: durations and sizes.

Durations accept a bare number of seconds (``90``, ``1.5``, ``"90"``) or a sequence of
number-unit pairs (``"500ms"``, ``"90s"``, ``"2m30s"``, ``"1h"``, ``"1d"``). Sizes accept a bare
number of bytes or a number with a unit (``"10MB"``, ``"512 KiB"``); K/M/G are powers of 1024,
because that is what people mean when they size a log file.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION_TEXT = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: object) -> float:
    """Return ``value`` as seconds, or raise ``ValueError`` saying what a duration looks like."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as 90, "90s", "2m30s" or "1h"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError('expected a duration such as 90, "90s", "2m30s" or "1h"')
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be a finite number of seconds >= 0, not {value!r}")
    return seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if not _DURATION_TEXT.fullmatch(text):
        raise ValueError(
            f'{text!r} is not a duration: use seconds (90) or units ms/s/m/h/d ("2m30s")'
        )
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds as people read them, everywhere: reasons, alerts, ``heartwatch status``, and the
    dashboard's ``formatDuration`` (a test holds it to the same output). Tenths below 100 s
    (``4.2 s``, ``61.2 s``: a heartbeat timeout reads as configured), then whole units, two
    at most and no zero (``3 min 5 s``, ``10 min``, ``2 h 4 min``, ``3 d 1 h``)."""
    value = max(0.0, seconds)
    if round(value, 1) < 100:
        return f"{value:.1f} s"
    minutes, secs = divmod(math.floor(value), 60)
    if minutes < 60:
        return _two_units(minutes, "min", secs, "s")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return _two_units(hours, "h", minutes, "min")
    days, hours = divmod(hours, 24)
    return _two_units(days, "d", hours, "h")


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


def parse_size(value: object) -> int:
    """Return ``value`` as a number of bytes, or raise ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError('expected a size such as 10485760 or "10MB"')
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f'{value!r} is not a size: use bytes or a unit ("512KB", "10MB")')
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    else:
        raise ValueError('expected a size such as 10485760 or "10MB"')
    if size < 0:
        raise ValueError(f"a size must be >= 0, not {value!r}")
    return size


_SIZE_NAMES = ("KB", "MB", "GB", "TB")


def format_size(size: int) -> str:
    """Bytes as people read them, everywhere (limits' reasons, status): powers of 1024 as
    ``parse_size`` reads them, so ``"2GB"`` reads back as ``2 GB``; one decimal below 100
    and no ``.0`` (``512 B``, ``1.5 KB``, ``2.1 GB``, ``640 MB``)."""
    value, name = _scaled(size)
    if not name:
        return f"{int(value)} B"
    if round(value, 1) >= 100:
        return f"{value:.0f} {name}"
    return f"{_decimals(value, 1)} {name}"


def format_size_over(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` as ``format_size`` writes them, with more decimals where one
    would make a size just over its limit read the same as the limit (``2.04 GB`` over
    ``2 GB``, never ``2 GB over 2 GB``)."""
    size_text, limit_text = format_size(size), format_size(limit)
    value, name = _scaled(size)
    decimals = 2
    while size_text == limit_text and size != limit and name and decimals <= 6:
        size_text = f"{_decimals(value, decimals)} {name}"
        decimals += 1
    if size_text == limit_text and size != limit:
        return f"{size} B", f"{limit} B"
    return size_text, limit_text


def _scaled(size: int) -> tuple[float, str]:
    """``size`` in the largest unit it fills at least once ("" for bytes)."""
    value, name = float(max(0, size)), ""
    for unit in _SIZE_NAMES:
        if value < 1024:
            break
        value, name = value / 1024, unit
    return value, name


def _decimals(value: float, decimals: int) -> str:
    """``value`` with at most ``decimals`` decimals, trailing zeros dropped."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
