"""The quick ways in: the CLI's fast path agrees with typer's definition, and a worker's
heartbeat client needs nothing outside the standard library (nor does ``heartwatch beat``)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from heartwatch.cli.app import app
from heartwatch.cli.fast import FAST_COMMANDS, parse_fast
from heartwatch.cli.text import problem_lines, say
from heartwatch.cli.top import Sample, choose_columns, rates

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("name", sorted(FAST_COMMANDS))
def test_fast_path_knows_exactly_the_options_typer_declares(name: str) -> None:
    """Each fast command's flags, environment variables and positional count are the typer
    command's: the interface has one definition (a new option in app.py fails here)."""
    declared = typer.main.get_command(app).commands[name].params
    options = {
        (p.name, tuple(p.opts), p.envvar, bool(getattr(p, "is_flag", False)))
        for p in declared
        if p.param_type_name == "option"
    }
    fast = FAST_COMMANDS[name]
    assert options == {(f.name, f.flags, f.envvar, f.switch) for f in fast.flags}
    arguments = [p for p in declared if p.param_type_name == "argument"]
    assert len(arguments) <= 1
    low, high = fast.positional
    if not arguments:
        assert (low, high) == (0, 0)
    elif arguments[0].nargs == -1:
        assert (low, high) == (1 if arguments[0].required else 0, None)
    else:
        assert (low, high) == (arguments[0].nargs, arguments[0].nargs)


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--help"],
        ["status", "--nope"],
        ["status", "--url"],  # a missing value
        ["status", "--json", "--json"],
        ["status", "--json=yes"],
        ["status", "--", "a"],
        ["beat"],
        ["beat", "a", "b"],
        ["beat", "job", "--data", "-1"],  # a value that looks like an option: typer decides
        ["restart", "all"],
        [],
    ],
)
def test_fast_path_leaves_to_typer_what_it_does_not_fully_understand(argv: list[str]) -> None:
    """Help, typos, missing values and other commands go to typer, with its own errors."""
    assert parse_fast(argv) is None


def test_fast_path_reads_options_as_click_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-c x``, ``--config=x``, interspersed positionals, the environment as a default."""
    monkeypatch.setenv("HEARTWATCH_TOKEN", "from-the-environment")
    parsed = parse_fast(["status", "a", "-c", "x.toml", "b*", "--json", "--url=http://h:1"])
    assert parsed is not None
    _, arguments, values = parsed
    assert arguments == ["a", "b*"]
    assert values == {
        "config": "x.toml",
        "url": "http://h:1",
        "token": "from-the-environment",
        "json": True,
    }
    beat = parse_fast(["beat", "job", "--kind", "poiid", "--data={}"])
    assert beat is not None
    assert beat[1] == ["job"]
    assert beat[2]["kind"] == "poiid" and beat[2]["data"] == "{}"
    monkeypatch.setenv("_HEARTWATCH_COMPLETE", "complete_bash")
    assert parse_fast(["status"]) is None  # shell completion is typer's


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "-c=cur.toml"],  # click: -cVALUE, so the file "=cur.toml"
        ["status", "-ccur.toml", "a"],
        ["status", "a", "-c", "x.toml", "b*", "--json", "--url=http://h:1"],
        ["status", "--config=x.toml", "--token", "t"],
        ["status", "--config==x.toml"],
        ["beat", "job", "-c=x", "--kind=poiid", "--data={}"],
        ["beat", "-cx", "job", "--addr", "127.0.0.1:1"],
        ["run", "-cx.toml"],
        ["run", "-c", "x.toml"],
        ["run", "--config", "x.toml"],
    ],
)
def test_fast_path_reads_each_argv_as_click_does(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path takes these, and what it reads is what typer's command reads: the same
    file (``-c=x`` is ``=x`` to click), the same values, the same positional arguments."""
    for variable in ("HEARTWATCH_CONFIG", "HEARTWATCH_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    parsed = parse_fast(argv)
    assert parsed is not None
    _, arguments, values = parsed
    name, *args = argv
    command = typer.main.get_command(app).commands[name]
    clicked = command.make_context(name, args, resilient_parsing=True).params
    positional = [p.name for p in command.params if p.param_type_name == "argument"]
    assert arguments == [a for p in positional for a in _as_list(clicked[p])]
    for key, value in values.items():
        if value is not None and value is not False:  # defaults: the commands apply theirs
            assert str(clicked[key]) == str(value), key


def _as_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def test_say_breaks_lines_where_the_text_does_and_escapes_within_them() -> None:
    """A message of several lines (a file's problems, joined) is printed on several lines,
    not with a literal ``\\x0a``; control characters inside a line are still escaped."""
    stream = io.StringIO()
    lines = problem_lines("missing.toml", ["cannot read: \x1b]0;title\x07No such file"])
    say("\n".join(lines), "red", stream=stream)
    assert stream.getvalue() == (
        "missing.toml: 1 problem(s)\n  cannot read: \\x1b]0;title\\x07No such file\n"
    )


def test_top_rates_and_columns() -> None:
    """Rates are per second between two samples; narrow terminals keep the first columns."""
    service = {"name": "c", "messages": 10, "data": {"poiid": {"count": 4}}}
    later = {"name": "c", "messages": 30, "data": {"poiid": {"count": 8}, "new": {"count": 1}}}
    found = rates(Sample(1.0, [service]), Sample(3.0, [later, {"name": "d"}]))
    assert found == {"c": (10.0, {"poiid": 2.0, "new": 0.5})}
    assert rates(None, Sample(3.0, [later])) == {}
    assert choose_columns(20) == ["SERVICE", "STATE"]
    assert len(choose_columns(300)) > len(choose_columns(80)) > 2


def _run_without_site_packages(code: str) -> subprocess.CompletedProcess[str]:
    """Python with no site-packages at all (``-S``): only the standard library and ``src``."""
    prelude = f"import sys\nsys.path.insert(0, {str(SRC)!r})\n"
    return subprocess.run(
        [sys.executable, "-S", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_heartbeat_client_imports_only_the_standard_library() -> None:
    """``from heartwatch import Heartbeat`` then a beat, with no site-packages: it arrives,
    and every module loaded is the standard library's or heartwatch's client (not even
    asyncio: ``AsyncHeartbeat`` was not asked for)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = listener.getsockname()[1]
        code = (
            "import json\n"
            "from heartwatch import Heartbeat\n"
            f"hb = Heartbeat('worker', address='127.0.0.1:{port}')\n"
            "hb.beat()\n"
            "assert hb.flush(timeout=20.0)\n"
            "outside = {m.partition('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
            "ours = [m for m in sys.modules if m.startswith('heartwatch')]\n"
            "print(json.dumps([sorted(outside), sorted(ours), 'asyncio' in sys.modules]))\n"
            "hb.close()\n"
        )
        result = _run_without_site_packages(code)
        assert result.returncode == 0, result.stderr
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(30)
            line = connection.makefile("rb").readline()
    assert json.loads(line)["type"] == "heartbeat"
    outside, ours, asyncio_loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert outside == ["__main__", "heartwatch"], outside
    assert all(m.startswith(("heartwatch.client", "heartwatch.core")) for m in ours[1:]), ours
    assert not asyncio_loaded


def test_beat_and_the_client_work_without_the_daemons_dependencies() -> None:
    """``pip install heartwatch`` without ``[daemon]``: ``heartwatch beat`` delivers (the fast
    path), and a command that needs the daemon's packages says which extra to install."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        port = listener.getsockname()[1]
        sent = _run_without_site_packages(
            f"sys.argv = ['heartwatch', 'beat', 'job', '--addr', '127.0.0.1:{port}']\n"
            "from heartwatch.cli import main\n"
            "main()\n"
        )
        assert sent.returncode == 0, sent.stderr
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(30)
            line = connection.makefile("rb").readline()
    assert json.loads(line) == {"type": "heartbeat", "service": "job"}
    refused = _run_without_site_packages(
        "sys.argv = ['heartwatch', 'run']\nfrom heartwatch.cli import main\nmain()\n"
    )
    assert refused.returncode == 1
    assert "pip install 'heartwatch[daemon]'" in refused.stderr, refused.stderr
