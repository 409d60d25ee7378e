"""The ``heartwatch`` command (``heartwatch.cli:main``).

``app.py`` defines it with typer, the one definition of its interface (help, errors,
completion); ``fast.py`` runs ``status`` and ``beat`` without importing typer when their
arguments are plain; ``hot.py`` is what those two do, ``remote.py`` how any command finds and
asks the daemon, ``text.py`` how the quick commands print, ``top.py`` the live view.
"""

from __future__ import annotations

import sys


def main() -> None:
    from heartwatch.cli.fast import run_fast

    code = run_fast(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from heartwatch.cli.app import app

    app()
