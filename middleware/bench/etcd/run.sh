#!/usr/bin/env bash
# Task claims: Spook against etcd 3.4 (CAS transaction and lock API), loopback clusters of
# three, in one run; printed as ratios. Outside CI. Usage: middleware/bench/etcd/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v protoc >/dev/null || need+=(protobuf-compiler) # etcd-client compiles etcd's .proto files
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
echo "== $(etcd --version | head -n1)"
cargo build -q -p spook-node --bins
cargo build -q -p spook-bench-etcd
# The node's default digest interval, then a shorter one: acks ride digests, so a claim's
# commit waits for them (what the efficiency issue's prompt collapse removes).
for d in 250 50; do
  target/debug/spook-bench-etcd --bin-dir target/debug --digest-ms "$d" "$@"
done
