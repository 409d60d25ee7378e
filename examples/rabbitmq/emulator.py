"""A stand-in for the phone emulator: boots, then runs quietly. It sends no heartbeats."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("emulator: boot completed", flush=True)
while True:
    time.sleep(3600)
