"""An independent zenoh peer (eclipse-zenoh, not Spook's code) that tries to watch a domain.

Usage: zenoh_outsider.py ENDPOINT SECONDS [USER PASSWORD]

It connects to ENDPOINT (scouting off), subscribes to every key expression, declares a
queryable on spook/** (what a rogue peer would do to receive the nodes' sync queries), waits
SECONDS, and prints one JSON line: the key expressions it saw and how many queries reached it.
"""
import json
import sys
import time

import zenoh


def main() -> None:
    endpoint, seconds = sys.argv[1], float(sys.argv[2])
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("connect/endpoints", json.dumps([endpoint]))
    conf.insert_json5("listen/endpoints", "[]")
    conf.insert_json5("scouting/multicast/enabled", "false")
    if len(sys.argv) == 5:
        conf.insert_json5("transport/auth/usrpwd/user", json.dumps(sys.argv[3]))
        conf.insert_json5("transport/auth/usrpwd/password", json.dumps(sys.argv[4]))
    keys = set()
    queries = 0

    def on_sample(sample: "zenoh.Sample") -> None:
        keys.add(str(sample.key_expr))

    def on_query(query: "zenoh.Query") -> None:
        nonlocal queries
        queries += 1
        keys.add(str(query.key_expr))

    session = zenoh.open(conf)
    sub = session.declare_subscriber("**", on_sample)
    qbl = session.declare_queryable("spook/**", on_query)
    time.sleep(seconds)
    print(json.dumps({"keys": sorted(keys), "queries": queries}), flush=True)
    del sub, qbl
    session.close()


if __name__ == "__main__":
    main()
