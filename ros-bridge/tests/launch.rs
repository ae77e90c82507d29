//! The ROS 2 launch file (`launch/ros2/spook_bridge.launch.py`) and its tested twin
//! (`launch/ros2/start.sh`) start the same programs with the same arguments. The launch file
//! is byte-compiled and run against a stand-in of the `launch` package (no launch wheels
//! exist for Jazzy on PyPI) that records the processes it declares; `start.sh --print` shows
//! its own. The ROS test `tests/ros2.rs` starts a real node and bridge with `start.sh`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn launch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch/ros2")
}

/// A stand-in for `launch` (LaunchDescription, DeclareLaunchArgument, ExecuteProcess,
/// LaunchConfiguration) that prints the command lines the launch file declares, with
/// `overrides` (name, value) as `ros2 launch ... name:=value` would give them.
const STAND_IN: &str = r#"
import importlib.util, json, sys, types
launch = types.ModuleType("launch"); actions = types.ModuleType("launch.actions"); subs = types.ModuleType("launch.substitutions")
class LaunchDescription:
    def __init__(self, entities): self.entities = entities
class DeclareLaunchArgument:
    def __init__(self, name, default_value=None): self.name, self.default = name, default_value
class ExecuteProcess:
    def __init__(self, cmd, name=None, output=None): self.cmd, self.name = cmd, name
class LaunchConfiguration:
    def __init__(self, name): self.name = name
launch.LaunchDescription = LaunchDescription; actions.DeclareLaunchArgument = DeclareLaunchArgument
actions.ExecuteProcess = ExecuteProcess; subs.LaunchConfiguration = LaunchConfiguration
sys.modules.update({"launch": launch, "launch.actions": actions, "launch.substitutions": subs})
spec = importlib.util.spec_from_file_location("lf", sys.argv[1]); lf = importlib.util.module_from_spec(spec); spec.loader.exec_module(lf)
d = lf.generate_launch_description()
args = {e.name: e.default for e in d.entities if isinstance(e, DeclareLaunchArgument)}
args.update(dict(a.split(":=", 1) for a in sys.argv[2:]))
for e in d.entities:
    if isinstance(e, ExecuteProcess):
        print(" ".join(args[w.name] if isinstance(w, LaunchConfiguration) else w for w in e.cmd))
"#;

fn launch_file_commands(overrides: &[&str]) -> String {
    let out = Command::new("python3").arg("-c").arg(STAND_IN).arg(launch_dir().join("spook_bridge.launch.py")).args(overrides).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn start_sh_commands(overrides: &[&str]) -> String {
    let out = Command::new("bash").arg(launch_dir().join("start.sh")).args(overrides).arg("--print").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_launch_file_compiles_and_starts_what_start_sh_starts() {
    let out = Command::new("python3").args(["-m", "py_compile"]).arg(launch_dir().join("spook_bridge.launch.py")).output().unwrap();
    assert!(out.status.success(), "the launch file does not compile: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(launch_dir().join("__pycache__"));
    for overrides in [&[][..], &["config:=/etc/spook/spookd.toml", "socket:=/run/spook/spookd.sock"][..]] {
        let (a, b) = (launch_file_commands(overrides), start_sh_commands(overrides));
        assert_eq!(a, b, "with {overrides:?}");
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines.len(), 2, "{a}");
        assert!(lines[0].starts_with("spookd --config") && lines[1].starts_with("spook-ros-bridge --mapping"), "{a}");
    }
    assert!(start_sh_commands(&["config:=/x.toml"]).contains("spookd --config /x.toml"));
    let bad = Command::new("bash").arg(launch_dir().join("start.sh")).arg("colour:=red").arg("--print").output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown argument 'colour:=red'"));
}
