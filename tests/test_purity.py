"""The pure packages stay pure, and the layers point one way.

``heartwatch.core`` and ``heartwatch.logview`` hold decisions, state and formats: they may
import the standard library's pure parts and each other (logview may use the core, never the
reverse), nothing that does I/O or reads a clock (no ``asyncio``, ``os``, ``socket``,
``time``, ``threading``...), and no framework (pydantic, loguru, FastAPI). Their inputs, time
included, arrive as arguments: that is what makes them testable with a clock in the test's
hand. Above them, the drivers (``daemon``, ``web``) never import the assembly.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "heartwatch"

# The standard library's pure parts: computation on values, no system calls, no clock.
PURE_STDLIB = frozenset(
    {
        "__future__",
        "ast",  # a template's arithmetic parsed into a tree that is walked, never compiled or run
        "base64",
        "binascii",  # base64's error type
        "bisect",
        "codecs",
        "collections",
        "collections.abc",
        "dataclasses",
        "difflib",
        "enum",
        "errno",  # constants: which error is which
        "fnmatch",  # fnmatchcase: shell globs on names (its os import is for normcase only)
        "functools",
        "heapq",
        "html",
        "http",  # HTTPStatus, an enum (not http.client or http.server)
        "ipaddress",  # parsing and classifying addresses, no lookups
        "itertools",
        "json",
        "math",
        "operator",
        "random",  # a default for an injected source of jitter; tests pass their own
        "re",
        "signal",  # the Signals enum, for names; the core installs no handler
        "string",
        "typing",
    }
)
# Pure third-party libraries a core module may use, each for one job.
PURE_LIBRARIES = {
    "core/wire.py": {"orjson"},  # a JSON parser: bytes in, values out
    "core/fleetcommands.py": {"cryptography"},  # Ed25519 signatures: bytes in, a verdict out
    "logview/linefilter.py": {"regex"},  # regular expressions with a time limit per match
}
PACKAGES = {"core": ("heartwatch.core",), "logview": ("heartwatch.core", "heartwatch.logview")}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (not only at the top)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            found.add(node.module)
    return found


# Known impurities being removed; strict: the mark must go when the import does.
KNOWN: dict[str, str] = {}


def pure_modules() -> list[object]:
    return [
        pytest.param(
            package,
            path,
            id=f"{package}/{path.name}",
            marks=[pytest.mark.xfail(reason=KNOWN[key], strict=True)] if key in KNOWN else [],
        )
        for package in PACKAGES
        for path in sorted((SRC / package).glob("*.py"))
        if (key := f"{package}/{path.name}")
    ]


@pytest.mark.parametrize(("package", "path"), pure_modules())
def test_pure_modules_import_only_pure_things(package: str, path: Path) -> None:
    relative = f"{package}/{path.name}"
    allowed_own = PACKAGES[package]
    impure = sorted(
        name
        for name in imports_of(path)
        if name not in PURE_STDLIB
        and not any(
            name == library or name.startswith(library + ".")
            for library in PURE_LIBRARIES.get(relative, set())
        )
        and not any(name == own or name.startswith(own + ".") for own in allowed_own)
    )
    assert impure == [], f"{relative} imports {impure}: not pure (see this test's docstring)"


def test_the_check_catches_an_impure_import(tmp_path: Path) -> None:
    """The rule itself, on a module that reads the clock and uses the config."""
    module = tmp_path / "bad.py"
    module.write_text("import time\nfrom heartwatch.config import Config\n")
    assert imports_of(module) == {"time", "heartwatch.config"}


def test_the_heartbeat_clients_outbox_is_sans_io() -> None:
    """``client/outbox.py`` decides what a client sends; its drivers hand it the clock."""
    impure = imports_of(SRC / "client" / "outbox.py") - PURE_STDLIB - {"orjson"}
    assert impure == set(), f"client/outbox.py imports {sorted(impure)}"


# Who may not import whom: the layers point one way (core <- drivers <- assembly), the
# daemon's drivers do not reach into the HTTP side (web uses them, not the reverse), and
# nothing of the daemon depends on the hub.
_HUB = "heartwatch.hub"
UPWARD = {
    "core": ("heartwatch.daemon", "heartwatch.web", "heartwatch.assembly", "heartwatch.cli", _HUB),
    "logview": (
        "heartwatch.daemon",
        "heartwatch.web",
        "heartwatch.assembly",
        "heartwatch.cli",
        _HUB,
    ),
    "daemon": ("heartwatch.web", "heartwatch.assembly", "heartwatch.cli", _HUB),
    "web": ("heartwatch.assembly", "heartwatch.cli", _HUB),
    "store": ("heartwatch.daemon", "heartwatch.web", "heartwatch.assembly", "heartwatch.cli", _HUB),
    "client": (
        "heartwatch.daemon",
        "heartwatch.web",
        "heartwatch.assembly",
        "heartwatch.cli",
        _HUB,
    ),
    # The hub is a role of its own (its assembly is hub/assembly.py): it uses the core and the
    # daemon's and web's drivers, never the daemon's assembly or the command line.
    "hub": ("heartwatch.assembly", "heartwatch.cli"),
}


@pytest.mark.parametrize("package", sorted(UPWARD))
def test_layers_point_one_way(package: str) -> None:
    for path in sorted((SRC / package).glob("*.py")):
        upward = [
            name
            for name in imports_of(path)
            if any(name == other or name.startswith(other + ".") for other in UPWARD[package])
        ]
        assert upward == [], f"{package}/{path.name} imports {upward}"


def test_a_heartbeat_from_the_shell_loads_nothing_the_daemon_needs() -> None:
    """``heartwatch beat`` runs in cron jobs and scripts: no psutil, loguru, rich or web stack
    (the daemon's address comes from ``daemon_info``, not the state directory's driver)."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel's backlog takes the beat
    port = listener.getsockname()[1]
    code = (
        "import sys\n"
        f"sys.argv = ['heartwatch', 'beat', 'job', '--addr', '127.0.0.1:{port}']\n"
        "import heartwatch.cli\n"
        "try:\n"
        "    heartwatch.cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('psutil', 'loguru', 'rich', 'fastapi', 'uvicorn', 'asyncinotify')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    with listener:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
    assert result.stderr == ""
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
