"""Which services a person means by the names they typed: ``all``, a name, a group, a glob.

``heartwatch restart collector emulator@2 'worker@*'`` is one request; the daemon expands
its names here, once, before anything is done, so a typo refuses the whole request instead of
restarting half of it (supervisorctl's habit: ``ERROR (no such process)``, non-zero exit).

Rules, for each name typed:

1. ``all``: every service.
2. A concrete service's name (``collector``, ``collector@3``): that service.
3. The name of a ``[[service]]`` with ``instances``: all of its instances.
4. A glob (``*``, ``?``, ``[...]``, ``[!...]`` or ``[^...]`` for "none of", matched
   case-sensitively on the whole name, as bash does): every concrete service it matches; a
   glob that matches nothing is unknown.

The result is in the order of the services given (the daemon's start order), each once.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping

ALL = "all"
_GLOB_CHARACTERS = frozenset("*?[")


class UnknownNames(Exception):
    """Names that select no service, each with the known names it may have meant."""

    def __init__(self, names: tuple[str, ...], suggestions: Mapping[str, tuple[str, ...]]):
        super().__init__(names, suggestions)
        self.names = names
        self.suggestions = suggestions

    def __str__(self) -> str:
        parts = []
        for name in self.names:
            close = self.suggestions.get(name, ())
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            parts.append(f"no service {name!r}{hint}")
        return "; ".join(parts)


def is_glob(name: str) -> bool:
    return not _GLOB_CHARACTERS.isdisjoint(name)


def select_services(names: Iterable[str], groups: Mapping[str, str | None]) -> list[str]:
    """The services ``names`` mean; ``groups`` maps each service (in order) to its
    ``[[service]]`` name when it is an instance (``instance_of``), else ``None``.

    Raises ``UnknownNames`` naming every name that selects nothing (none is partly done)."""
    members: dict[str, list[str]] = {}
    for service, group in groups.items():
        if group is not None:
            members.setdefault(group, []).append(service)
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        if name == ALL:
            found = list(groups)
        elif name in groups:
            found = [name]
        elif name in members:
            found = members[name]
        elif is_glob(name):
            pattern = _as_fnmatch(name)
            found = [s for s in groups if fnmatch.fnmatchcase(s, pattern)]
        else:
            found = []
        if not found:
            unknown.append(name)
        chosen.update(found)
    if unknown:
        known = [*groups, *members]
        raise UnknownNames(
            tuple(unknown),
            {name: tuple(difflib.get_close_matches(name, known, n=3)) for name in unknown},
        )
    return [service for service in groups if service in chosen]


def _as_fnmatch(glob: str) -> str:
    """``glob`` as fnmatch reads it: bash's ``[^...]`` (none of) written ``[!...]``, since
    fnmatch takes ``^`` there as a character; brackets found as fnmatch finds them (a ``]``
    first is a member, an unclosed ``[`` is a character)."""
    out: list[str] = []
    index = 0
    while index < len(glob):
        if glob[index] != "[":
            out.append(glob[index])
            index += 1
            continue
        start = index + 1
        if start < len(glob) and glob[start] in "!^":
            start += 1
        if start < len(glob) and glob[start] == "]":
            start += 1
        end = glob.find("]", start)
        if end < 0:
            out.append(glob[index:])  # no bracket: the rest is as written
            break
        members = glob[index + 1 : end]
        out.append("[" + ("!" + members[1:] if members.startswith("^") else members) + "]")
        index = end + 1
    return "".join(out)
