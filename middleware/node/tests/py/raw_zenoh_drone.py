"""One drone of the radio test's raw-zenoh baseline: the same pose update, published with zenoh
alone (no Spook), over the same links, so that bytes on the air compare in one run.

usage: python raw_zenoh_drone.py ME DRONES SECONDS LISTEN_JSON CONNECT_JSON SIZE

Publishes a SIZE-byte frame (a pose: drone id, x, y as little-endian u32, f64, f64, padded to
SIZE, the size of Spook's frame for the same update) on radio/raw/ME, best effort, 10 times a
second for SECONDS, and subscribes to radio/raw/**. Prints "heard all" once
it has heard every other drone, then at the end one JSON line: {"sent": N, "received": {id: n}}.
Scouting and gossip are off: the links are the ones given."""
import json
import struct
import sys
import threading
import time

import zenoh
from radio_zenoh import open_session


def main():
    me, drones, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    listen, connect, size = sys.argv[4], sys.argv[5], max(20, int(sys.argv[6]))
    session = open_session(listen, connect)
    received = {}
    lock = threading.Lock()
    told = threading.Event()

    def on_sample(sample):
        who = int(str(sample.key_expr).rsplit("/", 1)[1])
        if who == me:
            return
        with lock:
            received[who] = received.get(who, 0) + 1
            if len(received) == drones - 1 and not told.is_set():
                told.set()
                print("heard all", flush=True)

    sub = session.declare_subscriber("radio/raw/*", on_sample)
    pub = session.declare_publisher(
        f"radio/raw/{me}",
        reliability=zenoh.Reliability.BEST_EFFORT,
        congestion_control=zenoh.CongestionControl.DROP,
    )
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        pub.put(struct.pack("<Idd", me, float(sent), time.time() * 1000.0).ljust(size, b"\0"))
        sent += 1
        time.sleep(max(0.0, start + sent * 0.1 - time.monotonic()))
    with lock:
        print(json.dumps({"sent": sent, "received": {str(k): v for k, v in received.items()}}), flush=True)
    sub.undeclare()
    session.close()


if __name__ == "__main__":
    main()
