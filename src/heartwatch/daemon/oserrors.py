"""OS errors as people say them (no errno numbers, no reprs)."""

from __future__ import annotations

import os


def describe_os_error(error: OSError) -> str:
    """An OS error as people say it: ``Permission denied: /var/log/x.log``.

    ``str(error)`` would show ``[Errno 13]`` and, for a ``Path``, ``PosixPath('/var/log/x.log')``.
    """
    text = error.strerror or str(error) or type(error).__name__
    for name in (error.filename, error.filename2):
        if isinstance(name, str | bytes | os.PathLike):
            text += f": {os.fsdecode(name)}"
    return text
