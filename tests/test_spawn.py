"""A command that cannot start says why in one plain line (real ``Popen``, real files)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from heartwatch.daemon.output import RotatingOutput
from heartwatch.daemon.processes import ProcessRunner, SpawnError


def spawn_error(
    command: str | list[str], cwd: Path, output: Path, env: dict[str, str] | None = None
) -> str:
    """The message of the ``SpawnError`` a spawn raises."""

    async def attempt() -> str:
        runner = ProcessRunner(lambda service, returncode: None)
        sink = RotatingOutput(output, 1 << 20, 1)
        try:
            runner.spawn(
                "collector", command, cwd=cwd, env=env or {"PATH": "/usr/bin:/bin"}, output=sink
            )
        except SpawnError as error:
            return str(error)
        finally:
            sink.close()
        raise AssertionError("it started")

    return asyncio.run(attempt())


def test_a_missing_executable_is_named_with_the_command(tmp_path: Path) -> None:
    """``no such executable 'nonexist' (command "nonexist --x")``, in the log and the output."""
    output = tmp_path / "collector.log"
    message = spawn_error("nonexist --x", tmp_path, output)
    assert message == "no such executable 'nonexist' (command \"nonexist --x\")"
    assert f"[heartwatch] cannot start: {message}\n" in output.read_text()


def test_a_missing_cwd_is_named_without_a_python_repr(tmp_path: Path) -> None:
    """Popen's own text would be ``[Errno 2] No such file or directory: PosixPath('/…')``."""
    message = spawn_error(["sh", "-c", "true"], Path("/nonexistent"), tmp_path / "out.log")
    assert message == "cwd /nonexistent does not exist"
    (tmp_path / "file").write_text("")
    message = spawn_error(["sh", "-c", "true"], tmp_path / "file", tmp_path / "out.log")
    assert message == f"cwd {tmp_path / 'file'} is not a folder"


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        ("#!/bin/sh\n", 0o644, "'./job' is not executable (permission denied)"),
        ("#!/nonexistent/interpreter\n", 0o755, "'./job' exists, but its #! interpreter does not"),
        ("\x7fELF broken", 0o755, "'./job' is not a program this system can run"),
    ],
)
def test_a_file_that_cannot_be_executed_says_why(
    tmp_path: Path, content: str, mode: int, expected: str
) -> None:
    """Permission, interpreter, format: each its own words, and the command."""
    job = tmp_path / "job"
    job.write_text(content)
    job.chmod(mode)
    message = spawn_error(["./job", "--go"], tmp_path, tmp_path / "out.log")
    assert message == f'{expected} (command "./job --go")'
    assert "PosixPath" not in message and "Errno" not in message
