"""Load generator for ``bench/ingest.py`` and ``bench/flood.py``, run as its own process so
that it never shares an interpreter (or a GIL) with the server it measures.

Protocol on stdio: it connects what it needs, prints ``ready``, waits for a ``go`` line on
stdin, sends, and prints one JSON line of results.

- ``persistent``: ``--connections`` blocking sockets; one pre-built buffer of many
  newline-terminated messages is ``sendall``-ed round-robin over them until ``--messages`` are
  sent or ``--seconds`` have passed. Then each socket is half-closed (``SHUT_WR``) and read
  until the server closes it: a server closes after end-of-file, which it reaches only after it
  has handled every byte before it, so ``t_end`` is when the server finished, measured here
  without polling it.
- ``per-connection``: the original client's framing, one JSON object per connection, no
  newline, then close. One non-blocking selector loop keeps ``--connections`` connections in
  flight, each: connect, send, ``SHUT_WR``, read until the server closes, close. Waiting for the
  server's close bounds the connections in flight (so the accept backlog never overflows into SYN
  retries) and marks the message handled.
- ``flood``: ``--connections`` non-blocking sockets, each written whenever the kernel takes more
  (one selector loop: every connection sends as fast as it can, none waits for another), until
  a line or end-of-file on stdin, or ``--seconds``. Then each socket is reset (``SO_LINGER`` 0),
  so that a message cut in the middle is discarded, not reported as broken.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

# One pre-built chunk of this many messages is sent again and again (about 84 KB).
CHUNK_MESSAGES = 2000


def message(index: int, services: int) -> bytes:
    return json.dumps({"type": "heartbeat", "service": f"svc-{index % services}"}).encode()


def wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go' on stdin")


def persistent(
    address: tuple[str, int], connections: int, total: int, seconds: float, services: int
) -> dict[str, float]:
    chunk = b"".join(message(i, services) + b"\n" for i in range(CHUNK_MESSAGES))
    socks = [socket.create_connection(address) for _ in range(connections)]
    rounds = max(1, total // (CHUNK_MESSAGES * connections))
    wait_for_go()
    t_go, cpu_go = time.time(), time.process_time()
    deadline = time.monotonic() + seconds
    sent = 0
    for _ in range(rounds):
        for sock in socks:
            sock.sendall(chunk)
        sent += CHUNK_MESSAGES * connections
        if time.monotonic() >= deadline:
            break
    t_sent = time.time()
    for sock in socks:
        sock.shutdown(socket.SHUT_WR)
    for sock in socks:
        sock.settimeout(120.0)
        while sock.recv(65536):
            pass
        sock.close()
    t_end = time.time()
    return {
        "sent": sent,
        "t_go": t_go,
        "t_sent": t_sent,
        "t_end": t_end,
        "cpu": time.process_time() - cpu_go,
    }


def per_connection(
    address: tuple[str, int], concurrency: int, total: int, seconds: float, services: int
) -> dict[str, float]:
    """Keep ``concurrency`` connections in flight with one non-blocking selector loop."""
    payloads = [message(i, services) for i in range(services)]
    selector = selectors.DefaultSelector()
    started = done = 0

    def open_one() -> None:
        nonlocal started
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        error = sock.connect_ex(address)
        if error not in (0, errno.EINPROGRESS):
            raise OSError(error, os.strerror(error))
        selector.register(sock, selectors.EVENT_WRITE, payloads[started % services])
        started += 1

    wait_for_go()
    t_go, cpu_go = time.time(), time.process_time()
    deadline = time.monotonic() + seconds
    for _ in range(min(concurrency, total)):
        open_one()
    while selector.get_map():
        for key, events in selector.select(timeout=5.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.send(key.data)  # a few dozen bytes: always fits
                sock.shutdown(socket.SHUT_WR)
                selector.modify(sock, selectors.EVENT_READ, None)
                continue
            if sock.recv(256):
                continue
            selector.unregister(sock)
            sock.close()
            done += 1
            if started < total and time.monotonic() < deadline:
                open_one()
    t_end = time.time()
    return {
        "sent": done,
        "t_go": t_go,
        "t_sent": t_end,
        "t_end": t_end,
        "cpu": time.process_time() - cpu_go,
    }


def flood(
    address: tuple[str, int], connections: int, total: int, seconds: float, services: int
) -> dict[str, float]:
    """Every connection sends as fast as it can until told to stop (``total`` is not used)."""
    line_length = len(message(0, services)) + 1  # services < 10: every message this long
    chunk = memoryview(b"".join(message(i, services) + b"\n" for i in range(CHUNK_MESSAGES)))
    selector = selectors.DefaultSelector()
    offsets: dict[socket.socket, int] = {}
    for _ in range(connections):
        sock = socket.create_connection(address)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_WRITE)
        offsets[sock] = 0
    wait_for_go()
    selector.register(sys.stdin, selectors.EVENT_READ)
    t_go, cpu_go = time.time(), time.process_time()
    deadline = time.monotonic() + seconds
    sent = 0
    running = True
    while running and time.monotonic() < deadline:
        for key, _ in selector.select(0.5):
            sock = key.fileobj
            if not isinstance(sock, socket.socket):
                running = False  # stdin: a line or end-of-file
                break
            try:
                n = sock.send(chunk[offsets[sock] :])
            except BlockingIOError:
                continue
            offsets[sock] = (offsets[sock] + n) % len(chunk)
            sent += n
    t_end = time.time()
    for sock in offsets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return {
        "sent": sent // line_length,
        "t_go": t_go,
        "t_sent": t_end,
        "t_end": t_end,
        "cpu": time.process_time() - cpu_go,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["persistent", "per-connection", "flood"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--services", type=int, default=10)
    args = parser.parse_args()
    run = {"persistent": persistent, "per-connection": per_connection, "flood": flood}[args.mode]
    result = run(
        (args.host, args.port), args.connections, args.messages, args.seconds, args.services
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
