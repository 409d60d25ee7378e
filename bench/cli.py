"""The command's wall time beside ``supervisorctl``, and the daemon's idle memory.

Goals (issue 11, item 6): ``heartwatch status`` <= ``supervisorctl status`` in the same run;
``heartwatch beat`` <= 60 ms; the daemon's idle RSS with 10 services <= 50 MB.

Method. The bench builds a wheel of this tree and makes its own temporary venv holding
supervisor (``pip install supervisor``) and that wheel installed with ``--no-deps``: the
light install (``pip install heartwatch``, the client alone), where ``status`` and ``beat``
must work without any of the daemon's dependencies. A supervisord and a heartwatch daemon (from
the project's ``.venv``, the ``[daemon]`` install) each run 10 services (``sleep``). Each
command runs ``--runs`` times (20; ``--quick``: 7), alternating between the commands so that
the machine's load falls on all of them alike; the table gives the median and the spread of
wall time (fork and exec to exit), beside ``python -c pass`` of the same interpreter (the floor
any Python command pays), and beside the same commands of the tree before issue 11
(``--before``, default 5ebefa9: typer and rich at import, the whole schema to find the daemon),
run from a ``git archive`` of it with the project's ``.venv``. Then, both daemons settled,
their resident memory (RSS and USS), and where the daemon's goes (RSS after importing each
layer in a fresh interpreter).

Also checked on the way: ``from heartwatch import Heartbeat`` in the light venv imports only
the standard library.

Bytecode. pip compiles a package's modules when it installs it; a tree run from source
compiles each module whose ``.pyc`` is missing or stale at every start when
``PYTHONDONTWRITEBYTECODE`` is set (as on these machines), which costs a command tens of
milliseconds and a daemon a few MB of compiler memory. So the bench compiles ``src`` and the
earlier tree first (``compileall``), and every figure is of compiled code, as installed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import psutil

from _common import (
    PYTHON,
    ROOT,
    Daemon,
    Workdir,
    banner,
    median,
    parse_args,
    percentile,
    print_table,
    snapshot_src,
    verdict,
    wait_until,
)

SERVICES = 10
GOAL_BEAT_MS = 60.0
GOAL_RSS_MB = 50.0
BEFORE = "5ebefa9"  # the last commit before issue 11's command work

SUPERVISORD_CONF = """\
[unix_http_server]
file = {folder}/supervisor.sock

[supervisord]
logfile = {folder}/supervisord.log
pidfile = {folder}/supervisord.pid
nodaemon = true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{folder}/supervisor.sock
"""
PROGRAM = "\n[program:s{index}]\ncommand = sleep 100000\nstartsecs = 0\n"


def pip(env: Path, *args: str) -> None:
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check", *args],
        check=True,
    )


def make_venv(folder: Path) -> tuple[Path, Path]:
    """The bench's venv: supervisor, and heartwatch's wheel without its dependencies."""
    wheels = folder / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
    )
    wheel = next(wheels.glob("heartwatch-*.whl"))
    env = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    pip(env, "install", "supervisor")
    pip(env, "install", "--no-deps", str(wheel))
    return env, wheel


def compile_ahead(*trees: Path) -> None:
    """Bytecode for every module of ``trees``, as pip writes it at install (see above)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", *map(str, trees)], check=True)


def timed(argv: list[str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = (time.perf_counter() - started) * 1000
    if result.returncode not in (0, 3):  # status: 3 = not all running, still an answer
        raise SystemExit(f"{argv} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed, result.returncode


def light_imports(env: Path) -> list[str]:
    """What ``from heartwatch import Heartbeat`` loads beyond the standard library and what
    the venv's Python loads for nothing at all (a ``.pth`` hook such as setuptools')."""
    listing = (
        "import sys, json\n{}\n"
        "print(json.dumps(sorted({{m.partition('.')[0] for m in sys.modules}}"
        " - set(sys.stdlib_module_names) - {{'heartwatch', '__main__'}})))"
    )

    def outside(statement: str) -> set[str]:
        out = subprocess.run(
            [str(env / "bin" / "python"), "-c", listing.format(statement)],
            capture_output=True,
            text=True,
            check=True,
        )
        return set(json.loads(out.stdout))

    return sorted(outside("from heartwatch import Heartbeat") - outside("pass"))


# Where the daemon's memory goes: RSS after importing each layer, in a fresh interpreter.
LAYERS = (
    ("the interpreter", "import sys"),
    ("asyncio (with ssl)", "import asyncio"),
    ("pydantic", "import pydantic"),
    ("heartwatch.config (the schema, the core)", "import heartwatch.config"),
    ("fastapi, starlette, uvicorn", "import fastapi, starlette.routing, uvicorn"),
    ("heartwatch.web.api (the app's routes)", "import heartwatch.web.api"),
    ("heartwatch.assembly.daemon (the rest)", "import heartwatch.assembly.daemon"),
)
STAIRCASE = """
import json
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
steps = []
for name, statement in LAYERS:
    exec(statement)
    steps.append((name, rss()))
print(json.dumps(steps))
"""


def staircase() -> list[tuple[str, float]]:
    code = f"LAYERS = {LAYERS!r}\n{STAIRCASE}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [(name, float(mb)) for name, mb in json.loads(out.stdout)]


def memory_mb(pid: int) -> tuple[float, float]:
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--runs", type=int, default=0, help="runs of each command")
        parser.add_argument("--before", default=BEFORE, help="the revision to compare with")

    args = parse_args(__doc__.splitlines()[0], options)
    runs = args.runs or (7 if args.quick else 20)
    banner("the command's wall time, and idle memory", args.quick)
    with Workdir("cli", args.keep) as work:
        print("   building the wheel and the bench's venv (supervisor, heartwatch --no-deps)")
        env, wheel = make_venv(work.path)
        old_src = snapshot_src(work.path / "before", args.before, ())
        compile_ahead(ROOT / "src", old_src)

        def before(*argv: str) -> list[str]:
            code = f"import sys; sys.path.insert(0, {str(old_src)!r}); "
            code += "from heartwatch.cli import main; main()"
            return [PYTHON, "-c", code, *argv]

        outside = light_imports(env)
        print(f"   {wheel.name}; Heartbeat's imports outside the standard library: {outside}")
        sv = work.path / "supervisor"
        sv.mkdir()
        conf = sv / "supervisord.conf"
        conf.write_text(
            SUPERVISORD_CONF.format(folder=sv)
            + "".join(PROGRAM.format(index=i) for i in range(SERVICES))
        )
        supervisord = subprocess.Popen(
            [str(env / "bin" / "supervisord"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        services = [{"name": f"s{i}", "command": "sleep 100000"} for i in range(SERVICES)]
        try:
            with Daemon(work.path / "heartwatch", services) as daemon:
                ctl = [str(env / "bin" / "supervisorctl"), "-c", str(conf)]
                up = wait_until(
                    lambda: subprocess.run([*ctl, "status"], capture_output=True).returncode == 0,
                    20.0,
                    0.2,
                )
                running = wait_until(
                    lambda: all(s["state"] == "running" for s in daemon.services()), 20.0, 0.2
                )
                if not (up and running):
                    raise SystemExit("supervisord or heartwatch did not get its services up")
                config = str(daemon.config_path)
                light = str(env / "bin" / "heartwatch")
                full = str(ROOT / ".venv" / "bin" / "heartwatch")
                addr = "{}:{}".format(*daemon.tcp)
                commands = {
                    "python -c pass": [str(env / "bin" / "python"), "-c", "pass"],
                    "supervisorctl status": [*ctl, "status"],
                    "heartwatch status (light install)": [light, "status", "-c", config],
                    "heartwatch status ([daemon] install)": [full, "status", "-c", config],
                    "heartwatch beat (light install)": [light, "beat", "s0", "-c", config],
                    "heartwatch beat --addr ([daemon])": [full, "beat", "s0", "--addr", addr],
                    f"heartwatch status (before, {args.before})": before("status", "-c", config),
                    f"heartwatch beat (before, {args.before})": before("beat", "s0", "-c", config),
                    "heartwatch --help ([daemon])": [full, "--help"],
                    "heartwatch restart s0 ([daemon])": [full, "restart", "s0", "-c", config],
                }
                times: dict[str, list[float]] = {name: [] for name in commands}
                for argv in commands.values():  # once each first: caches warm for all
                    timed(argv, work.path)
                for _ in range(runs):
                    for name, argv in commands.items():
                        times[name].append(timed(argv, work.path)[0])
                time.sleep(2.0)  # settle after the restarts
                hw_rss, hw_uss = memory_mb(daemon.pid)
                sv_rss, sv_uss = memory_mb(supervisord.pid)
        finally:
            os.killpg(supervisord.pid, signal.SIGTERM)
            try:
                supervisord.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(supervisord.pid, signal.SIGKILL)
                supervisord.wait()

    print(f"\n{runs} runs each, wall time of the whole command (ms)\n")
    print_table(
        ["", "p50 ms", "min ms", "p90 ms"],
        [
            [name, median(values), min(values), percentile(values, 90)]
            for name, values in times.items()
        ],
    )
    print(f"\nidle, {SERVICES} services each\n")
    print_table(
        ["", "RSS MB", "USS MB"],
        [["heartwatch daemon", hw_rss, hw_uss], ["supervisord", sv_rss, sv_uss]],
    )
    steps = staircase()
    print("\nwhere the daemon's memory goes: RSS after importing each layer (+ that layer)\n")
    print_table(
        ["", "RSS MB", "+ MB"],
        [[name, mb, mb - (steps[i - 1][1] if i else 0.0)] for i, (name, mb) in enumerate(steps)]
        + [["running, 10 services (above)", hw_rss, hw_rss - steps[-1][1]]],
    )
    status = median(times["heartwatch status (light install)"])
    status_full = median(times["heartwatch status ([daemon] install)"])
    ctl_status = median(times["supervisorctl status"])
    beat = median(times["heartwatch beat (light install)"])
    print()
    print(
        f"goal status <= supervisorctl status ({ctl_status:.0f} ms): light {status:.0f} ms, "
        f"[daemon] {status_full:.0f} ms: {verdict(max(status, status_full) <= ctl_status)}"
    )
    print(f"goal beat <= {GOAL_BEAT_MS:.0f} ms: {beat:.0f} ms: {verdict(beat <= GOAL_BEAT_MS)}")
    rss_ok = verdict(hw_rss <= GOAL_RSS_MB)
    print(f"goal daemon RSS <= {GOAL_RSS_MB:.0f} MB: {hw_rss:.1f} MB: {rss_ok}")
    print(f"Heartbeat imports only the standard library: {verdict(outside == [])}")


if __name__ == "__main__":
    main()
