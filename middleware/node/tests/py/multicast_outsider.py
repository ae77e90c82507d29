"""An outsider on the radio's multicast group (the radio test's): it has no identity and no
domain key, only the group's address, which anyone on the radio has.

usage: python multicast_outsider.py LOCATOR SECONDS NEEDLE

Listens on LOCATOR (zenoh's multicast transport, as the nodes use it) for SECONDS/2, keeping
every key expression and a few payloads it sees under spook/**; then, for SECONDS/2, sends to
each key it saw a replayed payload, a copy with one byte flipped, and random bytes. Prints one
JSON line: {"keys": [...], "captured": n, "needle_seen": bool, "sent": n}, where needle_seen
says whether NEEDLE (a value the drones write) appeared in any payload in the clear."""
import json
import os
import sys
import threading
import time

from radio_zenoh import open_session


def main():
    locator, seconds, needle = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode()
    session = open_session(json.dumps([locator]), "[]")
    seen = {}
    lock = threading.Lock()
    state = {"captured": 0, "needle": False}

    def on_sample(sample):
        payload = sample.payload.to_bytes()
        with lock:
            state["captured"] += 1
            state["needle"] = state["needle"] or needle in payload
            seen.setdefault(str(sample.key_expr), []).append(payload)

    sub = session.declare_subscriber("spook/**", on_sample)
    time.sleep(seconds / 2)
    sub.undeclare()
    with lock:
        targets = {k: v[-1] for k, v in seen.items()}
    sent = 0
    end = time.monotonic() + seconds / 2
    while time.monotonic() < end and targets:
        for key, payload in targets.items():
            flipped = bytearray(payload)
            flipped[len(flipped) // 2] ^= 0x40
            for attack in (payload, bytes(flipped), os.urandom(len(payload))):
                session.put(key, attack)
                sent += 1
        time.sleep(0.1)
    print(json.dumps({"keys": sorted(targets), "captured": state["captured"], "needle_seen": state["needle"], "sent": sent}), flush=True)
    session.close()


if __name__ == "__main__":
    main()
