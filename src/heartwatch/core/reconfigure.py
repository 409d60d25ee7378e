"""What a new configuration changes: services added, removed, changed, left as they are, and
daemon settings that only a restart of the daemon can apply.

Pure: the watchdog (``Watchdog.reconfigure``) and the reload driver (``daemon/reload.py``)
decide from these. A service is *changed* when anything it is run with differs (its spec
carries a digest of its whole concrete configuration, ``ServiceSpec.revision``), so a new
``command`` or ``env`` counts as much as a new ``requires``; what only one service's change
touches is left to the watchdog's own recovery rules (dependents go along, as with
``restart``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from heartwatch.core.spec import ServiceSpec

__all__ = ["ServiceChanges", "diff_services", "settings_needing_restart"]


@dataclass(frozen=True, slots=True)
class ServiceChanges:
    """The names of services by what a new configuration does to them."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()  # not touched at all
    # Unchanged themselves, but restarted with a changed service they require (its
    # dependents go along, as with ``restart``): not in ``unchanged``.
    restarted: tuple[str, ...] = ()

    def describe(self) -> str:
        """``added a; changed b, c; restarted with them d; removed e`` (``nothing changed``
        if so), for people."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("added", self.added),
                ("changed", self.changed),
                ("restarted with them", self.restarted),
                ("removed", self.removed),
            )
            if names
        ]
        return "; ".join(parts) if parts else "nothing changed"


def diff_services(old: Mapping[str, ServiceSpec], new: Mapping[str, ServiceSpec]) -> ServiceChanges:
    """Sort the services of ``old`` and ``new`` (each keyed by name, in their own order)."""
    return ServiceChanges(
        added=tuple(name for name in new if name not in old),
        removed=tuple(name for name in old if name not in new),
        changed=tuple(name for name, spec in new.items() if name in old and old[name] != spec),
        unchanged=tuple(name for name, spec in new.items() if old.get(name) == spec),
    )


def settings_needing_restart(
    old: Mapping[str, object], new: Mapping[str, object], applied_live: Collection[str]
) -> list[str]:
    """The keys (``server.http``) whose values differ between two flat settings mappings,
    other than those a running daemon applies (``applied_live``), in key order."""
    keys = sorted(set(old) | set(new))
    return [
        key
        for key in keys
        if key not in applied_live and (key not in old or key not in new or old[key] != new[key])
    ]
