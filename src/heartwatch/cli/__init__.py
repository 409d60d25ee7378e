"""The ``heartwatch`` command (``heartwatch.cli:main``).

``app.py`` defines it with typer, the one definition of its interface (help, errors,
completion); ``fast.py`` runs ``status``, ``beat`` and ``run`` without importing typer when
their arguments are plain; ``hot.py`` is what the first two do, ``daemon_run.py`` the third,
``remote.py`` how any command finds and asks the daemon, ``text.py`` how the quick commands
print, ``top.py`` the live view.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from heartwatch.cli.fast import run_fast

        code = run_fast(sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
        from heartwatch.cli.app import app
    except ModuleNotFoundError as error:
        if (error.name or "heartwatch").partition(".")[0] == "heartwatch":
            raise
        # ``pip install heartwatch`` is the client (and status, beat); the rest is an extra.
        command = " ".join(["heartwatch", *sys.argv[1:2]])
        sys.stderr.write(
            f"{command}: needs {error.name}, one of the daemon's dependencies: "
            "pip install 'heartwatch[daemon]' (the client, status and beat need none)\n"
        )
        raise SystemExit(1) from None
    app()
