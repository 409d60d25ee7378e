"""Terminal colours in log lines: kept as HTML spans, or stripped. Pure.

Safety first: a log line is text, never markup. Text between escape sequences is HTML-escaped;
only SGR sequences (``ESC[...m``: colours and styles) become ``<span>``s, whose classes and
colours are built from integers, never copied from the input; every other escape sequence
(cursor moves, OSC titles and hyperlinks, ...) and every other control character is dropped.
The colour state carries over from one line to the next, as it does in a terminal, and every
line's HTML is closed, so lines can be shown (or dropped) one at a time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

# CSI (ESC [ params intermediates final), OSC (ESC ] ... BEL or ESC \), other two-byte escapes,
# and C0/C1 controls except tab.
_ESCAPE = re.compile(
    r"\x1b\[(?P<params>[0-9;:?<=>]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
_STRIP = _ESCAPE


@dataclass(frozen=True, slots=True)
class Style:
    """The SGR state: colours are ``None``, a palette index (0-255) or an ``(r, g, b)``."""

    fg: int | tuple[int, int, int] | None = None
    bg: int | tuple[int, int, int] | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    inverse: bool = False
    strike: bool = False

    @property
    def plain(self) -> bool:
        return self == _PLAIN


_PLAIN = Style()


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences or control characters (tabs kept)."""
    return _STRIP.sub("", text)


class AnsiToHtml:
    """Converts lines one at a time, carrying the colour state from line to line.

    Spans carry classes (``ansi-fg-1``, ``ansi-bold``: the dashboard's stylesheet colours them)
    or, with ``inline``, only ``style`` attributes, for a page that has no stylesheet of ours
    (the original viewer, which shows ansi2html's output as it comes).
    """

    def __init__(self, *, inline: bool = False) -> None:
        self.style = _PLAIN
        self._span = _inline_span if inline else _span

    def convert(self, line: str) -> str:
        parts: list[str] = []
        span_open = False
        position = 0
        for match in _ESCAPE.finditer(line):
            span_open = self._text(parts, line[position : match.start()], span_open)
            position = match.end()
            if match.group("final") != "m":
                continue  # not a colour: dropped
            style = apply_sgr(self.style, match.group("params") or "0")
            if style != self.style:
                if span_open:
                    parts.append("</span>")
                    span_open = False
                self.style = style
        span_open = self._text(parts, line[position:], span_open)
        if span_open:
            parts.append("</span>")
        return "".join(parts)

    def _text(self, parts: list[str], text: str, span_open: bool) -> bool:
        """Append escaped ``text``, opening a span for the current style first if needed."""
        if not text:
            return span_open
        if not span_open and not self.style.plain:
            parts.append(self._span(self.style))
            span_open = True
        parts.append(html.escape(text, quote=False))
        return span_open


def apply_sgr(style: Style, params: str) -> Style:
    """The style after one SGR sequence with ``params`` (``"1;31"``, ``"38;5;208"``, ...)."""
    codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in (38, 48):
            colour, used = _extended_colour(codes[i + 1 :])
            if colour is not None:
                style = replace(style, fg=colour) if code == 38 else replace(style, bg=colour)
            i += 1 + used
            continue
        style = _simple_sgr(style, code)
        i += 1
    return style


_SIMPLE: dict[int, Callable[[Style], Style]] = {
    0: lambda s: _PLAIN,
    1: lambda s: replace(s, bold=True),
    2: lambda s: replace(s, dim=True),
    3: lambda s: replace(s, italic=True),
    4: lambda s: replace(s, underline=True),
    7: lambda s: replace(s, inverse=True),
    9: lambda s: replace(s, strike=True),
    22: lambda s: replace(s, bold=False, dim=False),
    23: lambda s: replace(s, italic=False),
    24: lambda s: replace(s, underline=False),
    27: lambda s: replace(s, inverse=False),
    29: lambda s: replace(s, strike=False),
    39: lambda s: replace(s, fg=None),
    49: lambda s: replace(s, bg=None),
}


def _simple_sgr(style: Style, code: int) -> Style:
    if code in _SIMPLE:
        return _SIMPLE[code](style)
    if 30 <= code <= 37:
        return replace(style, fg=code - 30)
    if 40 <= code <= 47:
        return replace(style, bg=code - 40)
    if 90 <= code <= 97:
        return replace(style, fg=code - 90 + 8)
    if 100 <= code <= 107:
        return replace(style, bg=code - 100 + 8)
    return style  # blink, fonts, ...: ignored


def _extended_colour(rest: list[int]) -> tuple[int | tuple[int, int, int] | None, int]:
    """``5;n`` (palette) or ``2;r;g;b`` (true colour); returns the colour and codes used."""
    if len(rest) >= 2 and rest[0] == 5:
        return (rest[1] if 0 <= rest[1] <= 255 else None), 2
    if len(rest) >= 4 and rest[0] == 2:
        r, g, b = (min(255, max(0, v)) for v in rest[1:4])
        return (r, g, b), 4
    return None, len(rest)


def _span(style: Style) -> str:
    classes: list[str] = []
    css: list[str] = []
    fg, bg = (style.bg, style.fg) if style.inverse else (style.fg, style.bg)
    for kind, colour in (("fg", fg), ("bg", bg)):
        if isinstance(colour, int) and colour < 16:
            classes.append(f"ansi-{kind}-{colour}")
        elif colour is not None:
            prop = "color" if kind == "fg" else "background-color"
            css.append(f"{prop}:{_rgb(colour)}")
    for flag in ("bold", "dim", "italic", "underline", "strike"):
        if getattr(style, flag):
            classes.append(f"ansi-{flag}")
    if style.inverse and fg is None:
        classes.append("ansi-inverse")
    attributes = f' class="{" ".join(classes)}"' if classes else ""
    if css:
        attributes += f' style="{";".join(css)}"'
    return f"<span{attributes}>"


# xterm's first 16 colours, as ansi2html and most terminals show them.
_BASIC = (
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
)  # fmt: skip
_INLINE_FLAGS = (
    ("bold", "font-weight:bold"),
    ("dim", "opacity:0.6"),
    ("italic", "font-style:italic"),
)


def _inline_span(style: Style) -> str:
    """The style as CSS alone: every value built from integers and this table."""
    fg, bg = (style.bg, style.fg) if style.inverse else (style.fg, style.bg)
    if style.inverse:  # inverse of the default colours: a page's usual black on white
        fg = 15 if fg is None else fg
        bg = 0 if bg is None else bg
    css = [f"color:{_rgb(fg)}"] if fg is not None else []
    if bg is not None:
        css.append(f"background-color:{_rgb(bg)}")
    css.extend(rule for flag, rule in _INLINE_FLAGS if getattr(style, flag))
    decoration = [
        name for name, on in (("underline", style.underline), ("line-through", style.strike)) if on
    ]
    if decoration:
        css.append("text-decoration:" + " ".join(decoration))
    return f'<span style="{";".join(css)}">'


def _rgb(colour: int | tuple[int, int, int]) -> str:
    if isinstance(colour, tuple):
        return "#{:02x}{:02x}{:02x}".format(*colour)
    if colour < 16:
        return _BASIC[colour]
    if colour < 232:  # the 6x6x6 cube
        index = colour - 16
        levels = [0, 95, 135, 175, 215, 255]
        r, g, b = levels[index // 36], levels[index // 6 % 6], levels[index % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    grey = 8 + (colour - 232) * 10  # the grey ramp
    return f"#{grey:02x}{grey:02x}{grey:02x}"
