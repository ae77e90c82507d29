#!/usr/bin/env bash
# Starts what spook_bridge.launch.py starts, from the same spook.json, where `ros2 launch` is
# not installed (no launch wheels exist for Jazzy on PyPI): spookd, then, once it is up, the
# bridge. Ctrl-C (or SIGTERM) stops both.
#
# usage: launch/ros2/start.sh [config:=FILE] [mapping:=FILE] [socket:=PATH] [--print]
#   --print   show the commands, one per line, and start nothing
# spookd and spook-ros-bridge are taken from PATH (or SPOOK_BIN, a folder; SPOOK_BRIDGE_BIN, the
# bridge's own path).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
spec_out=$(python3 - "$here/spook.json" "$@" <<'PY'
import json, re, sys
spec = json.load(open(sys.argv[1]))
args = dict(spec["arguments"])
for a in sys.argv[2:]:
    if a == "--print":
        continue
    k, sep, v = a.partition(":=")
    if not sep or k not in args:
        sys.exit(f"start.sh: unknown argument {a!r}; expected one of " + ", ".join(f"{n}:=..." for n in args))
    args[k] = v
for p in spec["processes"]:
    words = [re.sub(r"^\{(\w+)\}$", lambda m: args[m.group(1)], w) for w in p["cmd"]]
    print(json.dumps({"name": p["name"], "cmd": words, "ready": p.get("ready")}))
PY
)
mapfile -t lines <<<"$spec_out"
print=0
for a in "$@"; do [ "$a" = "--print" ] && print=1; done
if [ "$print" = 1 ]; then
  for l in "${lines[@]}"; do python3 -c 'import json,sys; print(" ".join(json.loads(sys.argv[1])["cmd"]))' "$l"; done
  exit 0
fi
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait || true; }
trap stop EXIT INT TERM
for l in "${lines[@]}"; do
  mapfile -t cmd < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])["cmd"]))' "$l")
  ready=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ready"] or "")' "$l")
  [ -n "${SPOOK_BIN:-}" ] && cmd[0]="$SPOOK_BIN/${cmd[0]}"
  # The bridge may come from elsewhere (a build with the ros2 feature).
  [ "${cmd[0]##*/}" = spook-ros-bridge ] && [ -n "${SPOOK_BRIDGE_BIN:-}" ] && cmd[0]="$SPOOK_BRIDGE_BIN"
  if [ -n "$ready" ]; then
    # Wait for its ready line before starting what needs it.
    fifo=$(mktemp -u); mkfifo "$fifo"
    "${cmd[@]}" >"$fifo" &
    pids+=($!)
    exec 3<"$fifo"; rm -f "$fifo"
    while IFS= read -r -t 30 line <&3; do
      echo "$line"
      case "$line" in *"$ready"*) break ;; esac
    done
    ( cat <&3 ) &
    exec 3<&-
  else
    "${cmd[@]}" &
    pids+=($!)
  fi
  echo "start.sh: started ${cmd[*]}" >&2
done
wait -n "${pids[@]}" || true
