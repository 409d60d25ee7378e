"""One ranking of states for the history's pictures: the page's strip (``pictures.js``
PAINT_ORDER, mildest to worst) paints over each other the states in the order in which
``heartwatch history`` lets one win a column (``cli/history.py`` SEVERITY, worst first)."""

from __future__ import annotations

from heartwatch.cli.history import SEVERITY
from nodejs import needs_node, node_json

CALM = ("running", "stopped")  # never widened on the page: drawn at their true width


@needs_node
def test_the_page_and_the_terminal_rank_states_alike() -> None:
    worst_first = [state for state in SEVERITY if state not in CALM]
    assert node_json("pictures.js", "{ PAINT_ORDER }", "PAINT_ORDER") == list(reversed(worst_first))
