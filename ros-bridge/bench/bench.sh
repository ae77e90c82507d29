#!/usr/bin/env bash
# The ROS 2 bridge's benchmark (not run in CI): PoseStamped from an rclpy publisher on robot
# A's ROS domain to an rclpy subscriber on robot B's, through bridge A -> spookd A -> spookd B
# -> bridge B, against the same publisher and subscriber on one domain (rclpy -> rclpy), in the
# same run. Prints the latency ratio, Spook's bytes per message against the 76-byte CDR
# message, and the CPU the bridges and nodes spent per message.
#
# usage: ros-bridge/bench/bench.sh [SECONDS] [RATE_HZ]      (default 20 s at 50 Hz)
# needs: . ros-bridge/ros2/env.sh target/ros2-venv, and
#        cargo build --release --features spook-ros/ros2 -p spook-ros -p spook-node --bins
set -euo pipefail
secs=${1:-20}; rate=${2:-50}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${SPOOK_BIN:-$root/target/release}
py=${ROS2_VENV:?source ros-bridge/ros2/env.sh first}/bin/python
d=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(port); pb=$(port); ma=$(port); mb=$(port)
conf() { # name listen connect metrics
  printf '[node]\nledger = "%s/%s.spookdb"\ndomain = "bench"\ncontrol = "%s/%s.sock"\nlog = "warn"\n[zenoh]\nlisten = ["tcp/127.0.0.1:%s"]\nconnect = [%s]\n[metrics]\nlisten = "127.0.0.1:%s"\n[timing]\ndigest_interval_ms = 50\ndecohere_after_ms = 60000\n' \
    "$d" "$1" "$d" "$1" "$2" "$3" "$4" > "$d/$1.toml"
}
conf a "$pa" "" "$ma"; conf b "$pb" "\"tcp/127.0.0.1:$pa\"" "$mb"
A=$("$bin/spook" -c "$d/a.toml" init); key=$("$bin/spook" -c "$d/a.toml" domain-key)
B=$("$bin/spook" -c "$d/b.toml" init --domain-key "$key")
"$bin/spook" -c "$d/a.toml" allow "$B" >/dev/null; "$bin/spook" -c "$d/b.toml" allow "$A" >/dev/null
"$bin/spookd" --config "$d/a.toml" > "$d/a.out" & pida=$!
"$bin/spookd" --config "$d/b.toml" > "$d/b.out" & pidb=$!
sleep 2
inv=$("$bin/spook" -c "$d/a.toml" group create robots --member "$B" --schema "$root/ros-bridge/schema.toml" 2>/dev/null)
"$bin/spook" -c "$d/b.toml" group join "$inv" >/dev/null
for r in a b; do
  printf 'group = "robots"\nbridge = "robot-%s"\n[[topic]]\nname = "/bench_pose"\ntype = "geometry_msgs/msg/PoseStamped"\nregister = "bench.pose"\ndirection = "%s"\nqos = { depth = 100 }\n' \
    "$r" "$([ $r = a ] && echo to-spook || echo to-ros)" > "$d/$r-map.toml"
done
ROS_DOMAIN_ID=61 RUST_LOG=warn "$bin/spook-ros-bridge" --mapping "$d/a-map.toml" --socket "$d/a.sock" & bra=$!
ROS_DOMAIN_ID=62 RUST_LOG=warn "$bin/spook-ros-bridge" --mapping "$d/b-map.toml" --socket "$d/b.sock" & brb=$!
sleep 2
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
bytes() { python3 - "$1" <<'PY'
import sys, urllib.request
t = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
print(int(sum(float(l.split()[-1]) for l in t.splitlines() if l.startswith("spook_bytes_out_total"))))
PY
}
c0=$(( $(cpu $bra) + $(cpu $brb) + $(cpu $pida) + $(cpu $pidb) )); b0=$(( $(bytes $ma) + $(bytes $mb) ))
# Through Spook: publisher on domain 61, subscriber on domain 62.
ROS_DOMAIN_ID=62 "$py" "$root/ros-bridge/bench/latency.py" sub $((secs + 6)) > "$d/via.json" & sub=$!
ROS_DOMAIN_ID=61 "$py" "$root/ros-bridge/bench/latency.py" pub $((secs + 3)) "$rate" > "$d/via-pub.json"
wait $sub
c1=$(( $(cpu $bra) + $(cpu $brb) + $(cpu $pida) + $(cpu $pidb) )); b1=$(( $(bytes $ma) + $(bytes $mb) ))
# Direct: both on domain 63.
ROS_DOMAIN_ID=63 "$py" "$root/ros-bridge/bench/latency.py" sub $((secs + 6)) > "$d/direct.json" & sub=$!
ROS_DOMAIN_ID=63 "$py" "$root/ros-bridge/bench/latency.py" pub $((secs + 3)) "$rate" > "$d/direct-pub.json"
wait $sub
python3 - "$d" "$((c1 - c0))" "$((b1 - b0))" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
d, ticks, nbytes, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(n):
    return json.load(open(f"{d}/{n}.json")), json.load(open(f"{d}/{n}-pub.json"))["sent"]
(via, sent_v), (direct, sent_d) = load("via"), load("direct")
def q(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
lv, ld = via["latency_ms"], direct["latency_ms"]
print(f"messages: through Spook {via['received']}/{sent_v} (latest register: a newer pose may supersede one in flight), direct {direct['received']}/{sent_d}")
for name, p in (("p50", 0.5), ("p95", 0.95)):
    print(f"latency {name}: through Spook {q(lv, p):.2f} ms, direct rclpy {q(ld, p):.2f} ms, ratio {q(lv, p) / q(ld, p):.1f}x, added {q(lv, p) - q(ld, p):.2f} ms")
print(f"Spook bytes out (both nodes, all frames) per message sent: {nbytes / sent_v:.0f} B, {nbytes / sent_v / 76:.1f}x the 76-byte CDR PoseStamped")
print(f"CPU (2 bridges + 2 spookd) per message: {ticks / hz / sent_v * 1e6:.0f} us")
PY
