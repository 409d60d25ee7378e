"""A live-log viewer's queue: batching, bounds, skip markers, filters and formats."""

from __future__ import annotations

import asyncio
import re

from heartwatch.daemon.logfollow import MAX_FRAME_BYTES, Viewer


def frames_of(viewer: Viewer) -> list[str]:
    async def take() -> list[str]:
        frames = []
        while viewer.has_pending:
            frames.append(await asyncio.wait_for(viewer.next_frame(), 1))
        return frames

    return asyncio.run(take())


def test_viewer_batches_what_piled_up_into_one_frame() -> None:
    """Lines received while no frame was taken go out together, in order."""
    viewer = Viewer(grep=None, html=False, max_lines=1000)
    viewer.receive_lines(["a", "b"])
    viewer.receive_lines(["c"])
    assert frames_of(viewer) == ["a\nb\nc"]


def test_viewer_over_its_bound_skips_oldest_and_says_how_many() -> None:
    """A viewer that fell behind loses its oldest lines and is told so first."""
    viewer = Viewer(grep=None, html=False, max_lines=100)
    viewer.receive_lines([f"line {i}" for i in range(250)])
    frames = frames_of(viewer)
    lines = "\n".join(frames).split("\n")
    assert lines[0] == "[heartwatch] skipped 150 lines (this viewer could not keep up)"
    assert lines[1] == "line 150"
    assert lines[-1] == "line 249"


def test_viewer_frames_stay_under_the_limit() -> None:
    """A burst is split into frames that a default client (1 MiB) accepts."""
    viewer = Viewer(grep=None, html=False, max_lines=100_000)
    viewer.receive_lines(["x" * 1000] * 5000)  # ~5 MB
    frames = frames_of(viewer)
    assert len(frames) > 1
    assert all(len(frame.encode()) <= MAX_FRAME_BYTES + 1001 for frame in frames)
    assert sum(frame.count("\n") + 1 for frame in frames) == 5000


def test_viewer_grep_filters_on_text_without_colours() -> None:
    """The filter sees the text as a person reads it, colour codes stripped."""
    viewer = Viewer(grep=re.compile(r"^ERROR"), html=False, max_lines=100)
    viewer.receive_lines(["\x1b[31mERROR\x1b[0m disk", "INFO ok", "ERROR two"])
    assert frames_of(viewer) == ["\x1b[31mERROR\x1b[0m disk\nERROR two"]


def test_viewer_html_escapes_lines_and_markers() -> None:
    """In html format a log line is text; heartwatch's markers are spans of their own."""
    viewer = Viewer(grep=None, html=True, max_lines=100)
    viewer.receive_lines(["<img src=x onerror=alert(1)>"])
    viewer.receive_marker("file truncated (lines after byte 10 may be lost)")
    frame = frames_of(viewer)[0]
    assert frame.split("\n") == [
        "&lt;img src=x onerror=alert(1)&gt;",
        '<span class="hw-marker">[heartwatch] file truncated (lines after byte 10 may be lost)'
        "</span>",
    ]
