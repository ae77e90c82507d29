//! Two robots, two ROS graphs: real rclpy nodes on two ROS_DOMAIN_IDs that cannot see each
//! other's DDS traffic, joined only through two bridges and two `spookd` nodes that drop 20%
//! of the frames they send. Both directions on the same topics: a log topic (`/chatter`)
//! delivers exactly N messages each way and none back to where it came from; a latest topic
//! (`/pose`) delivers the newest pose, never a duplicate, never an echo. Negative control:
//! with the Spook link cut (every frame dropped), robot B hears nothing of robot A.
//!
//! Needs ROS 2 (`. ros-bridge/ros2/env.sh target/ros2-venv`), the feature `ros2`, and
//! `spookd`/`spook` built (`cargo build -p spook-node --bins`). DDS stays on loopback
//! (`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`, from env.sh).
#![cfg(feature = "ros2")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value as Json;

const BRIDGE: &str = env!("CARGO_BIN_EXE_spook-ros-bridge");

/// `spookd` or `spook`, built beside this test.
fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build -p spook-node --bins` first", p.display());
    p
}

fn python() -> PathBuf {
    let venv = std::env::var("ROS2_VENV").expect("ROS2_VENV: source ros-bridge/ros2/env.sh first");
    PathBuf::from(venv).join("bin/python")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills its process when dropped, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Robot {
    dir: PathBuf,
    name: String,
    config: PathBuf,
    domain_id: u32,
    procs: Vec<Proc>,
}

impl Robot {
    fn new(dir: &Path, name: &str, domain: &str, listen: u16, connect: Option<u16>, drop_pct: f64, domain_id: u32) -> Robot {
        let config = dir.join(format!("{name}.toml"));
        let connect = connect.map(|p| format!("\"tcp/127.0.0.1:{p}\"")).unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "[node]\nledger = \"{d}/{name}.spookdb\"\ndomain = \"{domain}\"\ncontrol = \"{d}/{name}.sock\"\nlog = \"warn\"\n\n[zenoh]\nlisten = [\"tcp/127.0.0.1:{listen}\"]\nconnect = [{connect}]\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[timing]\ndigest_interval_ms = 100\ndecohere_after_ms = 60000\n\n[faults]\ndrop_pct = {drop_pct}\nseed = {domain_id}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Robot { dir: dir.to_path_buf(), name: name.into(), config, domain_id, procs: Vec::new() }
    }

    fn spook(&self, args: &[&str]) -> Json {
        let out = Command::new(bin("spook")).arg("--config").arg(&self.config).arg("--json").args(args).output().unwrap();
        assert!(out.status.success(), "spook {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn start_node(&mut self) {
        let mut child = Command::new(bin("spookd")).arg("--config").arg(&self.config).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(" up;"), "{}: {line}", self.name);
        self.procs.push(Proc(child));
    }

    fn start_bridge(&mut self) {
        let mapping = self.dir.join(format!("{}-mapping.toml", self.name));
        std::fs::write(
            &mapping,
            format!(
                "group = \"robots\"\nbridge = \"{}\"\n\n[[topic]]\nname = \"/chatter\"\ntype = \"std_msgs/msg/String\"\nregister = \"chatter\"\nmode = \"log\"\nqos = {{ depth = 100 }}\n\n[[topic]]\nname = \"/pose\"\ntype = \"geometry_msgs/msg/PoseStamped\"\nregister = \"pose\"\n",
                self.name
            ),
        )
        .unwrap();
        let child = Command::new(BRIDGE)
            .arg("--mapping")
            .arg(&mapping)
            .arg("--socket")
            .arg(self.dir.join(format!("{}.sock", self.name)))
            .env("ROS_DOMAIN_ID", self.domain_id.to_string())
            .env("RUST_LOG", std::env::var("BRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
            .spawn()
            .unwrap();
        self.procs.push(Proc(child));
    }

    /// Run this robot's rclpy node (rclpy_robot.py) to its end: what it received.
    fn rclpy(&self, count: u32, seconds: f64, delay: f64, quiet: bool) -> Child {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rclpy_robot.py");
        let mut c = Command::new(python());
        c.arg(script).arg(&self.name).arg(count.to_string()).arg(seconds.to_string()).arg(delay.to_string());
        if quiet {
            c.arg("--quiet");
        }
        c.env("ROS_DOMAIN_ID", self.domain_id.to_string()).stdout(Stdio::piped()).spawn().unwrap()
    }
}

/// A received pose: frame, x, stamp seconds, stamp nanoseconds.
type PoseSeen = (String, f64, i64, i64);

fn received(c: Child) -> (Vec<String>, Vec<PoseSeen>) {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "rclpy failed");
    let j: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("rclpy printed {:?}: {e}", String::from_utf8_lossy(&out.stdout)));
    let strings = j["strings"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let poses = j["poses"].as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap(), p[2].as_i64().unwrap(), p[3].as_i64().unwrap())).collect();
    (strings, poses)
}

/// Two robots' nodes, with their group of the bridge's schema, bridges started.
fn robots(dir: &Path, drop_pct: f64, first_domain_id: u32) -> (Robot, Robot) {
    let (pa, pb) = (free_port(), free_port());
    let domain = format!("ros-{first_domain_id}");
    let mut a = Robot::new(dir, "robot-a", &domain, pa, None, drop_pct, first_domain_id);
    let mut b = Robot::new(dir, "robot-b", &domain, pb, Some(pa), drop_pct, first_domain_id + 1);
    let ida = a.spook(&["init"])["id"].as_str().unwrap().to_string();
    let key = a.spook(&["domain-key"])["token"].as_str().unwrap().to_string();
    let idb = b.spook(&["init", "--domain-key", &key])["id"].as_str().unwrap().to_string();
    a.spook(&["allow", &idb]);
    b.spook(&["allow", &ida]);
    a.start_node();
    b.start_node();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.toml");
    let invite = a.spook(&["group", "create", "robots", "--member", &idb, "--schema", schema.to_str().unwrap()])["invite"].as_str().unwrap().to_string();
    b.spook(&["group", "join", &invite]);
    a.start_bridge();
    b.start_bridge();
    (a, b)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spook-ros-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A domain id pair of our own (1..=100), so that parallel runs do not meet.
fn domain_ids() -> u32 {
    1 + (std::process::id() % 48) * 2
}

#[test]
fn two_robots_on_two_ros_domains_hear_each_other_only_through_spook_over_a_lossy_link() {
    let d = dir("two");
    let (a, b) = robots(&d, 20.0, domain_ids());
    let n = 20;
    // Both robots listen throughout; A publishes first, then B (each N at 10 Hz, after
    // discovery): the robots share one latest register per topic, and two writers at once
    // would supersede each other's newest pose (last writer wins), which is not under test
    // here. The logs overlap nothing either way; `sim.rs` has them concurrent.
    let (ra, rb) = (a.rclpy(n, 15.0, 3.0, false), b.rclpy(n, 15.0, 7.5, false));
    let ((a_strings, a_poses), (b_strings, b_poses)) = (received(ra), received(rb));
    // What each node holds in the pose register, for a failure's message: it tells a pose
    // that never reached Spook (the sending bridge) from one Spook holds but no bridge
    // published (the receiving side). One CI run (2026-12-05) had a robot get none of the
    // other's poses while every string arrived, and did not leave this evidence.
    let held = format!("pose register at A: {}; at B: {}", a.spook(&["get", "robots", "pose"]), b.spook(&["get", "robots", "pose"]));
    println!("{held}");
    let from = |who: &str, v: &[String]| v.iter().filter(|s| s.starts_with(who)).cloned().collect::<Vec<_>>();
    let expect = |who: &str| (0..n).map(|k| format!("{who} {k}")).collect::<Vec<_>>();
    // Each robot hears its own publications locally (rclpy does), once each: a second copy
    // would be an echo through Spook.
    assert_eq!(from("robot-a", &a_strings), expect("robot-a"), "A's own strings, once each (no echo)");
    assert_eq!(from("robot-b", &b_strings), expect("robot-b"), "B's own strings, once each (no echo)");
    // And the other's, through Spook: exactly N, in order.
    assert_eq!(from("robot-a", &b_strings), expect("robot-a"), "B got A's log");
    assert_eq!(from("robot-b", &a_strings), expect("robot-b"), "A got B's log");
    // Poses: the other's arrive with their values, the newest last, none twice, none echoed.
    for (me, other, poses) in [("robot-a", "robot-b", &a_poses), ("robot-b", "robot-a", &b_poses)] {
        let theirs: Vec<_> = poses.iter().filter(|p| p.0 == other).collect();
        let mine = poses.iter().filter(|p| p.0 == me).count();
        assert_eq!(mine, n as usize, "{me}: its own poses once each (no echo)");
        assert!(!theirs.is_empty(), "{me} got none of {other}'s poses; {held}");
        let last = theirs.last().unwrap();
        assert_eq!((last.1, last.2, last.3), (f64::from(n - 1), i64::from(n - 1), 500), "{me}: {other}'s newest pose, its stamp kept; {held}");
        let mut xs: Vec<f64> = theirs.iter().map(|p| p.1).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{me}: {other}'s poses in order, none twice: {xs:?}");
        xs.dedup();
        println!("{me} got {} of {other}'s {n} poses (latest wins)", xs.len());
    }
    drop((a, b));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn with_the_spook_link_cut_robot_b_hears_nothing_of_robot_a() {
    let d = dir("cut");
    let (a, b) = robots(&d, 100.0, domain_ids() + 50);
    let (ra, rb) = (a.rclpy(20, 8.0, 3.0, false), b.rclpy(0, 8.0, 3.0, true));
    let ((_, _), (b_strings, b_poses)) = (received(ra), received(rb));
    assert!(b_strings.is_empty() && b_poses.is_empty(), "B heard {} strings and {} poses through a cut link", b_strings.len(), b_poses.len());
    drop((a, b));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_bridge_refuses_bad_arguments_and_an_unknown_group_clearly() {
    let out = Command::new(BRIDGE).arg("--mapping").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mapping needs a value"));
    let d = dir("bad");
    let mapping = d.join("m.toml");
    std::fs::write(&mapping, "group = \"robots\"\nbridge = \"x\"\n[[topic]]\nname = \"chatter\"\ntype = \"std_msgs/msg/String\"\nregister = 1\n").unwrap();
    let out = Command::new(BRIDGE).arg("--mapping").arg(&mapping).arg("--socket").arg(d.join("none.sock")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("starts with /"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn start_sh_starts_spookd_and_then_the_bridge_and_stops_both() {
    let d = dir("start");
    let mut r = Robot::new(&d, "robot-s", "ros-start", free_port(), None, 0.0, domain_ids() + 40);
    r.spook(&["init"]);
    r.start_node();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.toml");
    r.spook(&["group", "create", "robots", "--schema", schema.to_str().unwrap()]);
    // The node the test started stops; start.sh starts its own from the same config.
    r.procs.clear();
    let socket = d.join("robot-s.sock");
    let _ = std::fs::remove_file(&socket);
    r.start_bridge();
    r.procs.clear(); // only the mapping file was wanted
    let mapping = d.join("robot-s-mapping.toml");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch/ros2/start.sh");
    let bin_dir = bin("spookd").parent().unwrap().to_path_buf();
    let mut child = Command::new("bash")
        .arg(script)
        .arg(format!("config:={}", r.config.display()))
        .arg(format!("mapping:={}", mapping.display()))
        .arg(format!("socket:={}", socket.display()))
        .env("SPOOK_BIN", &bin_dir)
        .env("SPOOK_BRIDGE_BIN", BRIDGE)
        .env("ROS_DOMAIN_ID", r.domain_id.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("bridging") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("started") && seen.contains("bridging"), "start.sh said: {seen}");
    assert!(socket.exists(), "spookd is up on its socket");
    // SIGTERM to start.sh stops both.
    Command::new("kill").arg(child.id().to_string()).status().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!socket.exists(), "spookd stopped and released its socket");
    let _ = std::fs::remove_dir_all(&d);
}
