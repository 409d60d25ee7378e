"""A stand-in collector: beats from inside its loop, reports each item it captures, and now
and then hangs (stops beating, process still alive) or crashes, as real collectors do."""

import random
import sys
import time

from heartwatch import Heartbeat

heartbeat = Heartbeat()  # HEARTWATCH_ADDR and HEARTWATCH_SERVICE come from the supervisor
print(f"collector: reporting to heartwatch at {heartbeat.address}", flush=True)
item = 0
while True:
    time.sleep(0.5)
    heartbeat.beat()
    if random.random() < 0.5:
        item += 1
        heartbeat.event("poiid", {"item": item})
        print(f"collector: captured item {item}", flush=True)
    fate = random.random()
    if fate < 0.02:
        print("collector: stuck in a loop (hang)", flush=True)
        time.sleep(3600)
    elif fate < 0.03:
        print("collector: crashed", flush=True)
        sys.exit(1)
