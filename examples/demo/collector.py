"""A stand-in collector: beats from inside its loop, reports each item it captures, and now
and then hangs (stops beating, process still alive) or crashes, as real collectors do."""

import json
import os
import random
import socket
import sys
import time

host, _, port = os.environ.get("HEARTWATCH_ADDR", "127.0.0.1:5005").rpartition(":")
service = os.environ.get("HEARTWATCH_SERVICE", "collector")
sock = socket.create_connection((host, int(port)))


def send(kind: str, **fields: object) -> None:
    message = {"type": kind, "service": service, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    sock.sendall((json.dumps({**message, **fields}) + "\n").encode())


print(f"collector: connected to heartwatch at {host}:{port}", flush=True)
item = 0
while True:
    time.sleep(0.5)
    send("heartbeat")
    if random.random() < 0.5:
        item += 1
        send("poiid", dat={"item": item})
        print(f"collector: captured item {item}", flush=True)
    fate = random.random()
    if fate < 0.02:
        print("collector: stuck in a loop (hang)", flush=True)
        time.sleep(3600)
    elif fate < 0.03:
        print("collector: crashed", flush=True)
        sys.exit(1)
