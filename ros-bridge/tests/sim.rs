//! Two bridges, two "ROS graphs" (channels standing in for rcl), joined only through a
//! simulated Spook group with loss, duplication and reordering: the bridge's whole logic
//! (`drive` over `GroupApi`) as it runs against real nodes. The real ROS 2 test is
//! `tests/ros2.rs` (feature `ros2`). Seeds: `SPOOK_SEEDS` (default 1..=10), each printed.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use spook_core::GroupKind;
use spook_ros::bridge::{drive, Bridge};
use spook_ros::mapping::Mapping;
use spook_ros::msgs::{Header, Msg, Pose, PoseStamped};
use spook_sim::net::{NetConfig, SimNet};

type Inbox = tokio::sync::mpsc::Sender<(String, Vec<u8>)>;
type Published = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn mapping(bridge: &str) -> Mapping {
    Mapping::from_toml(&format!(
        r#"
group = "robots"
bridge = "{bridge}"
[[topic]]
name = "/pose"
type = "geometry_msgs/msg/PoseStamped"
register = "pose"
[[topic]]
name = "/chatter"
type = "std_msgs/msg/String"
register = "chatter"
mode = "log"
"#
    ))
    .unwrap()
}

fn pose(x: f64) -> Vec<u8> {
    Msg::PoseStamped(PoseStamped { header: Header { stamp_ns: (x * 1e9) as i64, frame_id: "map".into() }, pose: Pose { position: [x, 0.0, 0.0], ..Pose::default() } }).encode()
}

/// A bridge on member `i`: its ROS inbox, and what it published.
fn bridge(net: &mut SimNet, i: usize, name: &str) -> (Inbox, Published) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let published: Published = Arc::new(Mutex::new(Vec::new()));
    let (g, out) = (net.session(i), published.clone());
    let b = Bridge::new(&mapping(name), &spook_ros::msgs::schema(), 1).unwrap();
    net.spawn(i, async move {
        let publish = move |t: String, b: Vec<u8>| out.lock().unwrap().push((t, b));
        let r = drive(b, &g, rx, &publish).await;
        assert!(r.is_ok(), "the bridge failed: {r:?}");
    });
    (tx, published)
}

fn strings(p: &Published, topic: &str) -> Vec<String> {
    p.lock().unwrap().iter().filter(|(t, _)| t == topic).map(|(_, b)| match Msg::decode(spook_ros::msgs::Kind::String, b).unwrap() {
        Msg::String(s) => s,
        m => panic!("{m:?}"),
    }).collect()
}

#[test]
fn two_graphs_joined_through_spook_get_each_others_messages_and_never_their_own() {
    for seed in spook_sim::seeds(1..=10) {
        println!("seed {seed}");
        let cfg = NetConfig { seed, loss: 0.2, dup: 0.05, reorder: 0.1, delay_ms: (5, 60), ..NetConfig::default() };
        let mut net = SimNet::new(cfg, spook_ros::msgs::schema(), GroupKind::Convergent, 2);
        let (a_in, a_out) = bridge(&mut net, 0, "robot-a");
        let (b_in, b_out) = bridge(&mut net, 1, "robot-b");
        let n = 30;
        for k in 0..n {
            // The same text every time on A: identical messages are still messages.
            a_in.try_send(("/chatter".into(), Msg::String("hello".into()).encode())).unwrap();
            b_in.try_send(("/chatter".into(), Msg::String(format!("from b {k}")).encode())).unwrap();
            a_in.try_send(("/pose".into(), pose(f64::from(k)))).unwrap();
            net.run_for(20);
        }
        // B's pose must reach A before A writes again, or A's newer one supersedes it there
        // (latest wins: under loss a value may be superseded before it travels).
        assert!(net.run_until(60_000, |n| n.converged()), "seed {seed}: no convergence");
        b_in.try_send(("/pose".into(), pose(100.0))).unwrap();
        net.run_for(10);
        assert!(net.run_until(60_000, |n| n.converged()), "seed {seed}: no convergence");
        net.run_for(100);
        a_in.try_send(("/pose".into(), pose(200.0))).unwrap();
        net.run_for(10);
        assert!(net.run_until(60_000, |n| n.converged()), "seed {seed}: no convergence");
        net.run_for(500);

        // Log topic: exactly n each way, in each origin's order, none of one's own.
        assert_eq!(strings(&b_out, "/chatter"), vec!["hello".to_string(); n as usize], "seed {seed}: B got A's log");
        assert_eq!(strings(&a_out, "/chatter"), (0..n).map(|k| format!("from b {k}")).collect::<Vec<_>>(), "seed {seed}: A got B's log");
        // Latest topic: the newest value arrives, nothing twice, nothing of one's own.
        let poses = |p: &Published| p.lock().unwrap().iter().filter(|(t, _)| t == "/pose").map(|(_, b)| b.clone()).collect::<Vec<_>>();
        let (at_a, at_b) = (poses(&a_out), poses(&b_out));
        assert_eq!(at_a, vec![pose(100.0)], "seed {seed}: A got B's one pose, not its own");
        assert_eq!(at_b.last(), Some(&pose(200.0)), "seed {seed}: B ends on A's newest pose");
        let mut dedup = at_b.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), at_b.len(), "seed {seed}: no pose published twice in a row");
        assert!(!at_b.contains(&pose(100.0)), "seed {seed}: B never republished its own pose");
        println!("seed {seed}: B published {} of A's {} poses (latest wins), {:?}", at_b.len(), n + 1, net.stats());
    }
}

#[test]
fn with_the_link_cut_nothing_crosses() {
    let mut net = SimNet::new(NetConfig { seed: 3, ..NetConfig::default() }, spook_ros::msgs::schema(), GroupKind::Convergent, 2);
    let (a_in, _a_out) = bridge(&mut net, 0, "robot-a");
    let (_b_in, b_out) = bridge(&mut net, 1, "robot-b");
    net.isolate(1);
    for _ in 0..20 {
        a_in.try_send(("/chatter".into(), Msg::String("hello".into()).encode())).unwrap();
        a_in.try_send(("/pose".into(), pose(1.0))).unwrap();
        net.run_for(50);
    }
    net.run_for(2_000);
    assert!(b_out.lock().unwrap().is_empty(), "B got {} messages through a cut link", b_out.lock().unwrap().len());
    // And once healed, the log arrives whole.
    net.heal();
    assert!(net.run_until(60_000, |n| n.converged()));
    net.run_for(500);
    assert_eq!(strings(&b_out, "/chatter").len(), 20);
}
