"""The dashboard takes what it shares with the server from the server, not from copies."""

from __future__ import annotations

import json
import re
from pathlib import Path

from heartwatch.logview.logpaths import BAD_PATH
from heartwatch.web.access import UNAUTHORISED_CLOSE
from heartwatch.web.dashboard import STATIC, render_page, server_constants
from heartwatch.web.history import SNAPSHOT_EVENTS

BLOCK = re.compile(r'<script type="application/json" id="server-constants">(.*?)</script>', re.S)


def test_the_page_carries_the_servers_constants() -> None:
    (block,) = BLOCK.findall(render_page())
    assert json.loads(block) == server_constants()
    assert server_constants()["snapshot_events"] == SNAPSHOT_EVENTS
    close = server_constants()["close"]
    assert (close["unauthorised"], close["bad_request"]) == (UNAUTHORISED_CLOSE, BAD_PATH)


def test_the_page_runs_no_inline_script() -> None:
    """The policy is ``script-src 'self'``: every script is a file, the block is only data."""
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", render_page(), re.S)
    for attributes, body in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes
        assert "src=" not in attributes or not body.strip()


def test_no_module_copies_a_close_code_or_the_snapshot_size() -> None:
    for module in sorted(Path(STATIC).glob("*.js")):
        code = "\n".join(
            line.split("//")[0] for line in module.read_text().splitlines()
        )  # comments may name them
        assert not re.search(r"\b44\d\d\b", code), module.name
        assert "SNAPSHOT_EVENTS" not in code, module.name
