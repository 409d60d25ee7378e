"""A service for the browser tests: beats, sends data events and prints coloured lines.

    worker.py [--interval SECONDS]

Every tick it beats; every 5th tick it sends a ``row`` data event; every 10th it prints a line
with an ANSI colour, as a logging library in a terminal would.
"""

from __future__ import annotations

import argparse
import time

from heartwatch import Heartbeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    heartbeat = Heartbeat()
    heartbeat.status("working")
    tick = 0
    while True:
        heartbeat.beat()
        if tick % 5 == 0:
            heartbeat.event("row", {"n": tick})
        if tick % 10 == 0:
            print(f"\x1b[32mINFO\x1b[0m tick {tick}", flush=True)
        tick += 1
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
