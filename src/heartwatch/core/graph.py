"""Which services need which: start order, stop order and the sets a recovery touches.

An edge ``collector -> emulator`` means the collector *requires* the emulator: the emulator
starts first and stops last, and restarting the emulator restarts the collector too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property


class DependencyCycleError(ValueError):
    """``requires`` loops back on itself; ``cycle`` lists it, first name repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("requires forms a cycle: " + " -> ".join(cycle))


class DependencyGraph:
    """An immutable ``requires`` graph over named services."""

    def __init__(self, requires: Mapping[str, Iterable[str]]) -> None:
        self._requires = {name: tuple(needs) for name, needs in requires.items()}
        self._required_by: dict[str, list[str]] = {name: [] for name in self._requires}
        for name, needs in self._requires.items():
            for need in needs:
                self._required_by.setdefault(need, []).append(name)

    def requires(self, name: str) -> tuple[str, ...]:
        """Direct requirements of ``name``."""
        return self._requires.get(name, ())

    def required_by(self, name: str) -> tuple[str, ...]:
        """Direct dependents of ``name``."""
        return tuple(self._required_by.get(name, ()))

    def requirements(self, name: str) -> set[str]:
        """Everything ``name`` needs, transitively (not ``name`` itself)."""
        return self._closure(name, self._requires)

    def dependents(self, name: str) -> set[str]:
        """Everything that needs ``name``, transitively (not ``name`` itself)."""
        return self._closure(name, self._required_by)

    def recovery_set(self, name: str, mode: str) -> set[str]:
        """The services a recovery of ``name`` restarts.

        ``"service"``: the service and its dependents. ``"group"``: also everything it
        requires, and so, in turn, the dependents of those.
        """
        roots = {name} | (self.requirements(name) if mode == "group" else set())
        members = set(roots)
        for root in roots:
            members |= self.dependents(root)
        return members

    def start_order(self) -> list[str]:
        """Every service, requirements before dependents, ties in declaration order."""
        return list(self._order)

    def sort(self, names: Iterable[str]) -> list[str]:
        """``names`` in start order."""
        wanted = set(names)
        return [name for name in self._order if name in wanted]

    @cached_property
    def _order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the current path, 2 = placed
        for root in self._requires:
            self._visit(root, state, order, [])
        return order

    def _visit(self, name: str, state: dict[str, int], order: list[str], path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise DependencyCycleError([*path[path.index(name) :], name])
        state[name] = 1
        path.append(name)
        for need in self._requires.get(name, ()):
            self._visit(need, state, order, path)
        path.pop()
        state[name] = 2
        order.append(name)

    @staticmethod
    def _closure(name: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(edges.get(name, ()))
        while stack:
            current = stack.pop()
            if current not in seen and current != name:
                seen.add(current)
                stack.extend(edges.get(current, ()))
        return seen
