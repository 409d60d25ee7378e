"""``core/selection.py``: the names people type for start, stop, restart, status, signal."""

from __future__ import annotations

import pytest

from heartwatch.core.selection import UnknownNames, select_services

# In start order, as the daemon gives them: two plain services and a group of three instances.
GROUPS: dict[str, str | None] = {
    "emulator": None,
    "collector@0": "collector",
    "collector@1": "collector",
    "collector@2": "collector",
    "uploader": None,
}


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["uploader"], ["uploader"]),
        (["all"], list(GROUPS)),
        (["collector"], ["collector@0", "collector@1", "collector@2"]),
        (["collector@*"], ["collector@0", "collector@1", "collector@2"]),
        (["collector@[02]"], ["collector@0", "collector@2"]),
        (["collector@1"], ["collector@1"]),
        # Negation as bash and zsh write it, and as POSIX sh does.
        (["collector@[^1]"], ["collector@0", "collector@2"]),
        (["collector@[!1]"], ["collector@0", "collector@2"]),
        (["collector@[^01]"], ["collector@2"]),
        (["collector@[]^1]"], ["collector@1"]),  # a ] first is literal; ^ after it too
        (["*r"], ["emulator", "uploader"]),
        # Start order, each once, whatever the order and overlap of the names typed.
        (["uploader", "emulator", "collector@1", "collector"], list(GROUPS)),
        (["all", "uploader"], list(GROUPS)),
        ([], []),
    ],
)
def test_select_services_expands_names_groups_and_globs(
    names: list[str], expected: list[str]
) -> None:
    """Each form selects what the module's rules say, in the order the services were given."""
    assert select_services(names, GROUPS) == expected


def test_select_services_refuses_every_unknown_name_with_suggestions() -> None:
    """A typo and a glob matching nothing are both named, each with what it may have meant."""
    with pytest.raises(UnknownNames) as raised:
        select_services(["uploader", "colector", "nope@*", "emulatr"], GROUPS)
    assert raised.value.names == ("colector", "nope@*", "emulatr")
    assert raised.value.suggestions["colector"][0] == "collector"
    assert raised.value.suggestions["emulatr"] == ("emulator",)
    assert raised.value.suggestions["nope@*"] == ()
    assert str(raised.value).startswith("no service 'colector' (did you mean 'collector'")


def test_select_services_globs_are_case_sensitive_and_whole_name() -> None:
    """``Collector*`` is not ``collector@0``, and ``collector`` as a glob body needs a ``*``."""
    with pytest.raises(UnknownNames):
        select_services(["Collector*"], GROUPS)
    with pytest.raises(UnknownNames):
        select_services(["collect?"], GROUPS)
