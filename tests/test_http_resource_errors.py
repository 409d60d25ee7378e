"""The loop's exception handler: running out of descriptors is one line, not a traceback each.

asyncio's listener (uvicorn's) reports every ``accept`` refused for want of descriptors to the
loop's exception handler, which logged each with a traceback: 55,268 of them in 25 s.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

from loguru import logger

from heartwatch.daemon.http_server import quiet_resource_errors


def test_out_of_descriptors_is_one_line_and_other_errors_pass_on() -> None:
    lines: list[str] = []
    passed_on: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: passed_on.append(context))
        quiet_resource_errors(loop)
        error = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        for _ in range(1000):
            loop.call_exception_handler(
                {"message": "socket.accept() out of system resource", "exception": error}
            )
        loop.call_exception_handler({"message": "something else", "exception": ValueError()})

    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        asyncio.run(main())
    finally:
        logger.remove(sink)
    assert len(lines) == 1, lines[:5]
    assert "socket.accept() out of system resource: Too many open files" in lines[0]
    assert "Traceback" not in lines[0]
    assert [c["message"] for c in passed_on] == ["something else"]
