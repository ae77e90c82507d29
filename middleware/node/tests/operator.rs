//! What an operator relies on, each from a run that found it broken: an idle node leaves its
//! disk alone, a node never takes over another's control socket, leaving a group lasts, a
//! refused invite leaves nothing behind, and a restart or a slow join causes no churn.

mod common;

use std::time::{Duration, Instant};

use common::{dir, eventually, form_group, loopback_chain, metric, start_domain, Node, SPOOKD};

/// Decoherence on: a churn shows within seconds, and a restart (well under a second here)
/// stays inside the timeout.
const FAST_DECOHERENCE: &str = "digest_interval_ms = 100\ndecohere_after_ms = 4000\nrejoin_after_ms = 1500\n";

/// Bytes a process has caused to be written to storage (`write_bytes` of `/proc/PID/io`).
fn write_bytes(node: &Node) -> u64 {
    let pid = node.child.as_ref().unwrap().id();
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).unwrap().trim().parse().unwrap()
}

/// Every group of every node has nothing pending and all nodes hold the same state hash; the
/// statuses, for a failure message.
fn settled_status(nodes: &[Node]) -> (bool, Vec<serde_json::Value>) {
    let st: Vec<_> = nodes.iter().map(|n| n.spook(&["status"]).unwrap()).collect();
    let hashes: Vec<_> = st.iter().map(|s| s["groups"][0]["state_hash"].clone()).collect();
    (st.iter().all(|s| s["groups"][0]["pending_candidates"] == 0) && hashes.windows(2).all(|w| w[0] == w[1]), st)
}

/// Wait until `nodes` are settled for two digest periods in a row (or fail with their status).
fn wait_settled(nodes: &[Node], what: &str) {
    let (begin, mut streak) = (Instant::now(), None);
    loop {
        let (ok, st) = settled_status(nodes);
        match (ok, streak) {
            (true, Some(t)) if Instant::now().duration_since(t) >= Duration::from_millis(250) => return,
            (true, None) => streak = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => streak = None,
        }
        assert!(begin.elapsed() < Duration::from_secs(60), "{what}: not settled within 60 s: {}", serde_json::to_string_pretty(&st).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `nodes` are settled, then measure their ledger writes over 10 idle seconds.
fn idle_writes(nodes: &[Node]) -> Vec<u64> {
    wait_settled(nodes, "idle");
    let before: Vec<u64> = nodes.iter().map(write_bytes).collect();
    std::thread::sleep(Duration::from_secs(10));
    nodes.iter().zip(before).map(|(n, b)| write_bytes(n) - b).collect()
}

#[test]
fn an_idle_node_does_not_write_to_its_ledger() {
    // A single-member group: its stability frontier moves with the clock alone.
    let mut solo = loopback_chain(&dir("idle1"), "idle1", 1, |_| common::TIMING.to_string());
    start_domain(&mut solo);
    solo[0].spook(&["group", "create", "alone"]).unwrap();
    solo[0].spook(&["set", "alone", "1", "battery", "0.5"]).unwrap();
    let grew = idle_writes(&solo);
    println!("single-member group: write_bytes grew by {grew:?} in 10 idle seconds");
    assert!(grew[0] < 64 * 1024, "an idle single-member node wrote {} bytes in 10 s", grew[0]);
    drop(solo);

    // A settled three-node group.
    let mut nodes = loopback_chain(&dir("idle3"), "idle3", 3, |_| common::TIMING.to_string());
    let ids = start_domain(&mut nodes);
    form_group(&nodes, &ids, "fleet", false);
    for (i, n) in nodes.iter().enumerate() {
        n.spook(&["set", "fleet", &i.to_string(), "battery", "0.9"]).unwrap();
    }
    let grew = idle_writes(&nodes);
    println!("settled three-node group: write_bytes grew by {grew:?} in 10 idle seconds");
    for (i, g) in grew.iter().enumerate() {
        assert!(*g < 64 * 1024, "idle node n{i} of a settled group wrote {g} bytes in 10 s");
    }
    // Idle is not dead: a write after the pause still commits everywhere.
    nodes[0].spook(&["set", "fleet", "9", "battery", "0.1"]).unwrap();
    for n in &nodes {
        eventually("the write after the pause commits", Duration::from_secs(10), || {
            n.spook(&["get", "fleet", "9", "--committed"]).unwrap()["fields"]["battery"] == 0.1
        });
    }
}

#[test]
fn a_second_node_never_takes_over_a_live_control_socket() {
    let d = dir("socket");
    let mut nodes = loopback_chain(&d, "socket", 1, |_| common::TIMING.to_string());
    start_domain(&mut nodes);
    let first = nodes[0].spook(&["id"]).unwrap()["id"].clone();
    // Same control path, another ledger.
    let other = d.join("other.toml");
    let text = std::fs::read_to_string(&nodes[0].config).unwrap().replace("n0.spookdb", "other.spookdb");
    std::fs::write(&other, text).unwrap();
    let out = std::process::Command::new(SPOOKD).arg("--config").arg(&other).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second spookd started on a live control socket: {err}");
    assert!(err.contains("another node is running"), "{err}");
    // The first node still answers, as itself.
    assert_eq!(nodes[0].spook(&["id"]).unwrap()["id"], first);
    // A stale socket (its node killed) is replaced: the node starts again.
    nodes[0].kill9();
    let sock = d.join("n0.sock");
    let stale = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    drop(stale); // bound, then nobody accepts: what a killed node leaves
    nodes[0].start();
    assert_eq!(nodes[0].spook(&["id"]).unwrap()["id"], first);
    // Something that is not a socket is never deleted.
    let file = d.join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let text = std::fs::read_to_string(&other).unwrap().replace("n0.sock", "not-a-socket");
    std::fs::write(&other, text).unwrap();
    let out = std::process::Command::new(SPOOKD).arg("--config").arg(&other).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn leaving_a_group_lasts_and_a_refused_invite_leaves_nothing() {
    let d = dir("leave");
    let mut nodes = loopback_chain(&d, "leave", 3, |_| common::TIMING.to_string());
    let ids = start_domain(&mut nodes);
    // An invite made for n0 and n1 only: n2 must refuse it and store nothing.
    let invite = nodes[0].spook(&["group", "create", "pair", "--member", &ids[1]]).unwrap()["invite"].as_str().unwrap().to_string();
    let err = nodes[2].spook(&["group", "join", &invite]).unwrap_err();
    assert!(err.contains("not a member"), "{err}");
    nodes[1].spook(&["group", "join", &invite]).unwrap();
    nodes[1].spook(&["set", "pair", "1", "battery", "0.4"]).unwrap();
    assert_eq!(nodes[1].spook(&["group", "list"]).unwrap()["groups"].as_array().unwrap().len(), 1);
    nodes[1].spook(&["group", "leave", "pair"]).unwrap();
    for n in [1, 2] {
        nodes[n].kill9();
        nodes[n].start();
        let groups = nodes[n].spook(&["group", "list"]).unwrap();
        assert_eq!(groups["groups"].as_array().unwrap().len(), 0, "n{n} after a restart: {groups}");
        let err = nodes[n].spook(&["get", "pair", "1"]).unwrap_err();
        assert!(err.contains("no group named"), "{err}");
    }
    // n0 still has it.
    assert_eq!(nodes[0].spook(&["group", "list"]).unwrap()["groups"].as_array().unwrap().len(), 1);
    // Leaving what one is not in says so.
    assert!(nodes[1].spook(&["group", "leave", "pair"]).unwrap_err().contains("no group named"));
}

#[test]
fn a_restart_or_a_slow_join_decoheres_no_one() {
    let d = dir("churn");
    let mut nodes = loopback_chain(&d, "churn", 3, |_| FAST_DECOHERENCE.to_string());
    let ids = start_domain(&mut nodes);
    // The README's pause between `group create` and `group join`, here longer than the
    // decoherence timeout.
    let invite = nodes[0].spook(&["group", "create", "fleet", "--member", &ids[1], "--member", &ids[2]]).unwrap()["invite"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(5_000));
    for n in &nodes[1..] {
        n.spook(&["group", "join", &invite]).unwrap();
    }
    for (i, n) in nodes.iter().enumerate() {
        n.spook(&["set", "fleet", &i.to_string(), "battery", "0.5"]).unwrap();
    }
    wait_settled(&nodes, "formed");
    // A member that restarts (within the timeout) and the nodes that see it go, come back.
    for round in 0..2 {
        nodes[2].kill9();
        nodes[2].start();
        nodes[2].spook(&["set", "fleet", "7", "battery", &format!("0.{round}")]).unwrap();
        wait_settled(&nodes, "re-aligned after the restart");
        std::thread::sleep(Duration::from_millis(5_000));
    }
    for (i, n) in nodes.iter().enumerate() {
        let decohered = metric(&n.metrics(), "spook_decoherence_events_total");
        let members = n.spook(&["status"]).unwrap()["groups"][0]["members"].as_array().unwrap().len();
        assert_eq!((decohered, members), (0, 3), "n{i} proposed {decohered} removals and sees {members} members");
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    ticks as f64 / String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap()
}

#[test]
fn a_flood_of_unknown_hellos_costs_the_node_little_and_gets_no_answer() {
    use zenoh::Wait;
    let d = dir("flood");
    let mut nodes = loopback_chain(&d, "flood", 1, |_| common::TIMING.to_string());
    let ids = start_domain(&mut nodes);
    let node: spook_core::EndpointId = ids[0].parse().unwrap();
    // Hellos from 100 keys the node does not know (made before the clock starts).
    let hellos: Vec<Vec<u8>> = (0..100).map(|_| spook_secure::Initiator::start(&spook_secure::Identity::generate(), node, 1).unwrap().1).collect();
    let mut z = zenoh::Config::default();
    for (k, v) in [("mode", "\"peer\"".to_string()), ("listen/endpoints", "[]".into()), ("scouting/multicast/enabled", "false".into()), ("connect/endpoints", format!("[\"{}\"]", nodes[0].listen))] {
        z.insert_json5(k, &v).unwrap();
    }
    let session = zenoh::open(z).wait().unwrap();
    let key = spook_node::remote::client_key("flood", &node);
    std::thread::sleep(Duration::from_secs(1)); // routes settle
    let pid = nodes[0].child.as_ref().unwrap().id();
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut kept = Vec::new();
    // 10,000 hellos a second for 3 seconds, in steps of 10 ms.
    for step in 0..300u32 {
        for i in 0..100usize {
            let replies = session.get(&key).payload(hellos[i].clone()).timeout(Duration::from_secs(2)).wait().unwrap();
            if i == 0 && step % 30 == 0 {
                kept.push(replies);
            }
            sent += 1;
        }
        if let Some(pause) = (start + Duration::from_millis(10 * u64::from(step + 1))).checked_duration_since(Instant::now()) {
            std::thread::sleep(pause);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500)); // the last ones arrive
    let cpu = cpu_seconds(pid) - cpu0;
    let rejected = nodes[0].spook(&["status"]).unwrap()["rejected"].clone();
    let counted: u64 = rejected.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("hello-")).map(|(_, v)| v.as_u64().unwrap()).sum();
    let per_hello_us = cpu / counted.max(1) as f64 * 1e6;
    println!(
        "flood: {sent} hellos in {secs:.2} s ({:.0}/s); the node counted {counted} ({rejected}); node CPU {cpu:.2} s = {:.1}% of a core, {per_hello_us:.1} µs per hello",
        sent as f64 / secs,
        cpu / (secs + 0.5) * 100.0
    );
    // Silence: not one reply to any of them.
    for r in kept {
        while let Ok(reply) = r.recv() {
            assert!(reply.result().is_err(), "a hello from an unknown key got an answer");
        }
    }
    assert!(counted * 10 >= sent * 9, "the node counted {counted} of {sent} hellos");
    // Reading each hello (an X25519 multiplication, 40 to 60 µs here) is what the budget
    // takes off: with it the node spends what receiving a zenoh query and dropping it costs
    // (15 to 20 µs measured on the CI machines, so 15 to 20% of a core at 10,000 hellos/s;
    // the target is 10 µs, which this does not reach: see docs/security.md).
    assert!(per_hello_us <= 30.0, "{per_hello_us:.1} µs of node CPU per unknown hello");
    // An allowed client still gets in once the flood is over.
    let me = spook_secure::Identity::generate();
    nodes[0].spook(&["allow", &me.id().to_string()]).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let mut r = spook_node::remote::Remote::attach(me, node, "flood", std::slice::from_ref(&nodes[0].listen)).await.unwrap();
        assert!(r.request(&spook_node::control::Request::Status, Duration::from_secs(5)).await.unwrap()["ok"] == true);
    });
}
