#!/usr/bin/env python3
"""Set up and run heartwatch with nothing but Python: ``python3 dev.py demo`` or ``test``.

Creates ``.venv`` on first use and (re)installs the project into it whenever pyproject.toml
changes, then runs the demo pipeline, or the checks and the test suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_venv() -> None:
    """Create .venv and install the project with its dev extras, once per pyproject change."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"heartwatch needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".heartwatch-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("installing heartwatch and its dependencies into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(wanted)


def ensure_browser() -> None:
    """The browser tests drive Debian's Chromium; install it when missing and we may.

    Playwright's own browser download does not work on these machines, so the tests point it
    at the system's Chromium. Without one (and no root or apt-get to install it), the browser
    tests skip and say why.
    """
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("no chromium here (and no apt-get as root to install it): browser tests skip")
        return
    print("installing chromium for the browser tests (apt-get install -y chromium)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> int:
        return subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, env=env).returncode

    if apt("install", "-y", "chromium") and (apt("update") or apt("install", "-y", "chromium")):
        print("could not install chromium: browser tests skip")


def run(*argv: str) -> None:
    print("+", " ".join(argv), flush=True)
    code = subprocess.run(argv, cwd=ROOT).returncode
    if code:
        sys.exit(code)


def demo() -> None:
    config = ROOT / "examples" / "demo" / "heartwatch.toml"
    print(
        "\nheartwatch demo: a stand-in emulator and a collector that now and then hangs or\n"
        "crashes. Watch the hang get detected and the pair recovered, below. In another\n"
        f"terminal:  {BIN / 'heartwatch'} status -c {config.relative_to(ROOT)}\n"
        "Ctrl-C stops the daemon and every service it started.\n",
        flush=True,
    )
    # As an activated venv would: the demo's "python3" commands find heartwatch installed.
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    os.execv(str(BIN / "heartwatch"), ["heartwatch", "run", "-c", str(config)])


def fleet() -> None:
    """A hub and two agents on this machine's RabbitMQ and PostgreSQL (examples/fleet)."""
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    os.execv(str(PYTHON), [str(PYTHON), str(ROOT / "examples" / "fleet" / "run.py")])


def javascript_tests() -> None:
    """The dashboard's ES modules under node's own test runner (no npm packages), when node is
    here; tests/js/fakedom.js stands in for the browser's DOM. Module syntax detection lets node
    load the static .js files as the browser does, without a package.json."""
    node = shutil.which("node")
    if node is None:
        print("node not found: JavaScript tests skipped", flush=True)
        return
    run(node, "--test", "--test-reporter=spec", "--experimental-detect-module", "tests/js/")


def test(extra: list[str]) -> None:
    ensure_browser()
    run(str(BIN / "ruff"), "check", "src", "tests", "bench", "examples", "dev.py")
    run(str(BIN / "ruff"), "format", "--check", "src", "tests", "bench", "examples", "dev.py")
    run(str(BIN / "mypy"))
    javascript_tests()
    # Two workers per core: the suite's e2e tests wait on real processes and time far more
    # than they compute (on 2 cores: 2 min 49 s with 4 workers, 4 min 3 s with 2, 1146 tests).
    # "-n 0" (or any -n) overrides.
    # worksteal: a worker that runs out takes from the busiest one's queue, so the run does
    # not end with one worker going through a long tail of end-to-end tests alone.
    workers = (
        []
        if any(arg.startswith(("-n", "--numprocesses")) for arg in extra)
        else ["-n", str(2 * (os.cpu_count() or 1)), "--dist", "worksteal"]
    )
    run(str(PYTHON), "-m", "pytest", *workers, *extra)


def coverage(extra: list[str]) -> None:
    """The suite under coverage, the daemon subprocesses included (``patch = subprocess``)."""
    data = ROOT / ".coverage"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    code = subprocess.run(
        [str(PYTHON), "-m", "coverage", "run", "-m", "pytest", "-n", "auto", *extra], cwd=ROOT
    ).returncode
    run(str(PYTHON), "-m", "coverage", "combine", "-q")
    run(str(PYTHON), "-m", "coverage", "report")
    if code:
        sys.exit(code)


def main() -> None:
    command, extra = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in ("demo", "fleet", "test", "coverage", "setup"):
        sys.exit(
            "usage: python3 dev.py demo | fleet | test [pytest args] | coverage [pytest args]"
            " | setup"
        )
    ensure_venv()
    if command == "demo":
        demo()
    elif command == "fleet":
        fleet()
    elif command == "test":
        test(extra)
    elif command == "coverage":
        coverage(extra)


if __name__ == "__main__":
    main()
