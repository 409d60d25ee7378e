"""The writer and the viewers for ``bench/logs.py``, each run as a process of its own.

Lines are ``<9-digit sequence number> <filler>\\n``, ASCII, ``--line-bytes`` long with the
newline. Every time is ``time.monotonic_ns()``, one clock for every process on the machine.

``write``: appends ``--count`` lines to ``--path`` (``O_APPEND``), one ``os.write`` per line,
at ``--rate`` lines per second on a fixed schedule (a late line is written at once, not
skipped), for ``--seconds`` at most. Right after each ``os.write`` returns it notes the time;
at the end it saves those times (``array('q')``, indexed by sequence number, 0 = not written)
to ``--times`` and prints ``{"written", "t_first", "t_last"}``.

``burst``: appends ``--count`` lines as fast as it can, ``--chunk-lines`` lines per
``os.write``, and prints ``{"written", "t_first"`` (before the first write) ``, "t_last"}``.

``view``: opens ``--viewers`` websocket connections to ``--url`` (client defaults: a 1 MiB
``max_size``, permessage-deflate offered, as a browser does), ``--connect-batch`` at a time,
prints ``ready``, then notes for every viewer the time each line's frame arrived, until each
viewer has the last line (``--count`` - 1), its connection closed, or ``--seconds`` passed.
``--mode inotify`` instead watches ``--path``'s folder with asyncinotify and reads the new
bytes at each event (time taken at the event): the floor of any follower in Python. It saves
the times (one array per viewer, concatenated) to ``--out`` and prints one JSON object per
viewer: lines received, duplicates, lines out of order, markers, frames, largest frame in
bytes, first and last arrival, the error that ended it (if any); then the process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from array import array
from pathlib import Path

SEQ_DIGITS = 9
FILLER = "INFO pipeline.stage:142 processed item, queue depth ok, nothing to report here "


def make_line(seq: int, line_bytes: int) -> bytes:
    head = f"{seq:0{SEQ_DIGITS}d} "
    body = (FILLER * (line_bytes // len(FILLER) + 1))[: max(0, line_bytes - len(head) - 1)]
    return (head + body + "\n").encode()


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- writing -----------------------------------------------------------------------------------


def write_paced(args: argparse.Namespace) -> None:
    times = array("q", bytes(8 * args.count))
    fd = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lines = [make_line(seq, args.line_bytes) for seq in range(args.count)]
    interval_ns = int(1e9 / args.rate)
    start = time.monotonic_ns()
    deadline = start + int(args.seconds * 1e9)
    written = 0
    for seq, line in enumerate(lines):
        due = start + seq * interval_ns
        now = time.monotonic_ns()
        if now >= deadline:
            break
        if due > now:
            time.sleep((due - now) / 1e9)
        os.write(fd, line)
        times[seq] = time.monotonic_ns()
        written += 1
    os.close(fd)
    Path(args.times).write_bytes(times.tobytes())
    last = times[written - 1] if written else 0
    print(json.dumps({"written": written, "t_first": times[0], "t_last": last}), flush=True)


def write_burst(args: argparse.Namespace) -> None:
    fd = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    chunks = [
        b"".join(
            make_line(seq, args.line_bytes)
            for seq in range(i, min(i + args.chunk_lines, args.count))
        )
        for i in range(0, args.count, args.chunk_lines)
    ]
    first = time.monotonic_ns()
    for chunk in chunks:
        os.write(fd, chunk)
    last = time.monotonic_ns()
    os.close(fd)
    print(json.dumps({"written": args.count, "t_first": first, "t_last": last}), flush=True)


# -- viewing -----------------------------------------------------------------------------------


class Tally:
    """What one viewer received."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.times = array("q", bytes(8 * count))
        self.next = 0  # the sequence number expected next
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.markers: list[str] = []
        self.frames = 0
        self.max_frame = 0
        self.bytes = 0
        self.first = 0
        self.last = 0
        self.ended = 0
        self.error = ""

    @property
    def done(self) -> bool:
        return self.next >= self.count

    def receive_frame(self, frame: str, at: int) -> None:
        size = len(frame) if frame.isascii() else len(frame.encode())
        self.frames += 1
        self.bytes += size
        self.max_frame = max(self.max_frame, size)
        self.receive_lines(frame.split("\n"), at)

    def receive_lines(self, lines: list[str], at: int) -> None:
        if not lines:
            return
        self.first = self.first or at
        self.last = at
        head, tail = lines[0], lines[-1]
        if head[:SEQ_DIGITS].isdigit() and tail[:SEQ_DIGITS].isdigit():
            low, high = int(head[:SEQ_DIGITS]), int(tail[:SEQ_DIGITS])
            if low == self.next and high - low + 1 == len(lines) and high < self.count:
                self.times[low : high + 1] = array("q", [at]) * len(lines)  # the usual case
                self.received += len(lines)
                self.next = high + 1
                return
        for line in lines:  # markers, gaps or something unexpected: line by line
            if not line[:SEQ_DIGITS].isdigit():
                if len(self.markers) < 1000:
                    self.markers.append(line[:200])
                continue
            seq = int(line[:SEQ_DIGITS])
            if seq >= self.count:
                continue
            if self.times[seq]:
                self.duplicates += 1
                continue
            if seq != self.next:
                self.out_of_order += 1
            self.times[seq] = at
            self.received += 1
            self.next = max(self.next, seq + 1)

    def summary(self) -> dict[str, object]:
        return {
            "received": self.received,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "markers": len(self.markers),
            "marker_samples": self.markers[:3],
            "frames": self.frames,
            "max_frame": self.max_frame,
            "bytes": self.bytes,
            "first": self.first,
            "last": self.last,
            "ended": self.ended,
            "error": self.error,
        }


async def view_websocket(args: argparse.Namespace) -> list[Tally]:
    from websockets.asyncio.client import ClientConnection, connect

    tallies = [Tally(args.count) for _ in range(args.viewers)]
    compression = None if args.compression == "none" else "deflate"
    connections: list[ClientConnection] = []
    for i in range(0, args.viewers, args.connect_batch):
        batch = range(i, min(i + args.connect_batch, args.viewers))
        connections += await asyncio.gather(
            *(connect(args.url, compression=compression) for _ in batch)
        )
    print(f"ready {cpu_now()!r}", flush=True)

    async def follow(ws: ClientConnection, tally: Tally) -> None:
        try:
            async for frame in ws:
                at = time.monotonic_ns()
                tally.receive_frame(frame if isinstance(frame, str) else frame.decode(), at)
                if tally.done:
                    break
        except Exception as error:  # what ended a viewer is a result
            tally.error = f"{type(error).__name__}: {error}"
        finally:
            tally.ended = time.monotonic_ns()
            await ws.close()

    tasks = [
        asyncio.ensure_future(follow(ws, t)) for ws, t in zip(connections, tallies, strict=True)
    ]
    _, pending = await asyncio.wait(tasks, timeout=args.seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for tally in tallies:
        if not tally.done and not tally.error:
            tally.error = f"timed out after {args.seconds:g} s"
    return tallies


async def view_inotify(args: argparse.Namespace) -> list[Tally]:
    from asyncinotify import Inotify, Mask

    tally = Tally(args.count)
    path = Path(args.path)
    fd = os.open(path, os.O_RDONLY)
    offset = os.fstat(fd).st_size
    partial = b""
    with Inotify() as inotify:
        inotify.add_watch(path.parent, Mask.MODIFY)
        print(f"ready {cpu_now()!r}", flush=True)

        async def follow() -> None:
            nonlocal offset, partial
            async for event in inotify:
                if event.name is None or event.name.name != path.name:
                    continue
                while data := os.pread(fd, 1 << 20, offset):
                    at = time.monotonic_ns()  # at the first read, the event's time
                    offset += len(data)
                    data = partial + data
                    cut = data.rfind(b"\n") + 1
                    partial = data[cut:]
                    if cut:
                        tally.receive_lines(data[: cut - 1].decode().split("\n"), at)
                if tally.done:
                    return

        try:
            await asyncio.wait_for(follow(), args.seconds)
        except TimeoutError:
            tally.error = f"timed out after {args.seconds:g} s"
    os.close(fd)
    return [tally]


def view(args: argparse.Namespace) -> None:
    viewer = view_inotify if args.mode == "inotify" else view_websocket
    tallies = asyncio.run(viewer(args))
    with open(args.out, "wb") as f:
        for tally in tallies:
            f.write(tally.times.tobytes())
    print(json.dumps({"viewers": [t.summary() for t in tallies], "cpu": cpu_now()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "burst", "view"])
    parser.add_argument("--path", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--line-bytes", type=int, default=100)
    parser.add_argument("--chunk-lines", type=int, default=1000)
    parser.add_argument("--times", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--connect-batch", type=int, default=20)
    parser.add_argument("--mode", choices=["websocket", "inotify"], default="websocket")
    parser.add_argument("--out", default="")
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    args = parser.parse_args()
    {"write": write_paced, "burst": write_burst, "view": view}[args.command](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
