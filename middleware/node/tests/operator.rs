//! What an operator relies on, each from a run that found it broken: an idle node leaves its
//! disk alone, a node never takes over another's control socket, leaving a group lasts, a
//! refused invite leaves nothing behind, and a restart or a slow join causes no churn.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

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
    // The flooder holds the domain key (a member's machine gone bad, say): zenoh admits it,
    // Spook's handshake does not.
    let dk = spook_node::domain_key::DomainKey::from_token(&common::domain_key(&nodes[0])).unwrap();
    let mut z = zenoh::Config::default();
    for (k, v) in [("mode", "\"peer\"".to_string()), ("listen/endpoints", "[]".into()), ("scouting/multicast/enabled", "false".into()), ("connect/endpoints", format!("[\"{}\"]", nodes[0].listen))] {
        z.insert_json5(k, &v).unwrap();
    }
    dk.configure_client(&mut z).unwrap();
    let session = zenoh::open(z).wait().unwrap();
    let key = spook_client::keys::client_key("flood", &node);
    std::thread::sleep(Duration::from_secs(1)); // routes settle
    let pid = nodes[0].child.as_ref().unwrap().id();
    // What the node spends anyway (its 10 ms tick, zenoh's keep-alives) over as long a time.
    let idle0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_millis(3_500));
    let idle = cpu_seconds(pid) - idle0;
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut kept = Vec::new();
    // 10,000 hellos a second for 3 seconds, in steps of 10 ms.
    for step in 0..300u32 {
        for (i, hello) in hellos.iter().take(100).enumerate() {
            let replies = session.get(&key).payload(hello.clone()).timeout(Duration::from_secs(2)).wait().unwrap();
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
    let counted: u64 = rejected.as_object().unwrap().iter().filter(|(k, _)| k.contains("hello")).map(|(_, v)| v.as_u64().unwrap()).sum();
    let per_hello_us = (cpu - idle).max(0.0) / counted.max(1) as f64 * 1e6;
    println!(
        "flood: {sent} hellos in {secs:.2} s ({:.0}/s); the node counted {counted} ({rejected}); node CPU {cpu:.3} s ({idle:.3} s idle over as long) = {:.1}% of a core for the hellos, {per_hello_us:.1} µs per hello",
        sent as f64 / secs,
        (cpu - idle) / secs * 100.0
    );
    // Silence: not one reply to any of them.
    for r in kept {
        while let Ok(reply) = r.recv() {
            assert!(reply.result().is_err(), "a hello from an unknown key got an answer");
        }
    }
    assert!(counted * 10 >= sent * 9, "the node counted {counted} of {sent} hellos");
    // Reading each hello (an X25519 multiplication, 40 to 60 µs here) is what the budget
    // takes off, in zenoh's callback: the node spends what receiving a zenoh query and
    // dropping it costs, 10 to 16 µs measured alone on two VMs (10% of a core at 10,000
    // hellos/s is 10 µs; docs/security.md). The test runs alone (.config/nextest.toml), but
    // a shared VM still adds noise (a compile beside it made it 24 µs), so it guards at
    // 35 µs, below what each hello cost without the budget (55 to 75 µs): it fails if the
    // budget goes.
    assert!(per_hello_us <= 35.0, "{per_hello_us:.1} µs of node CPU per unknown hello");
    // An allowed client still gets in once the flood is over.
    let me = spook_secure::Identity::generate();
    nodes[0].spook(&["allow", &me.id().to_string()]).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let r = spook_client::remote::Remote::attach_keyed(me, node, "flood", std::slice::from_ref(&nodes[0].listen), Some(&dk)).await.unwrap();
        assert!(r.request(&spook_node::control::Request::Status, Duration::from_secs(5)).await.unwrap()["ok"] == true);
    });
}

#[test]
fn a_zenoh_peer_without_the_domain_key_opens_no_session_and_sees_nothing() {
    // An independent zenoh implementation (the eclipse-zenoh Python package), as an attacker
    // on the network would run it; scripts/test.sh installs it and sets SPOOK_PYTHON.
    let Some(python) = std::env::var_os("SPOOK_PYTHON") else {
        return common::skip("zenoh_outsider", "SPOOK_PYTHON (a Python with eclipse-zenoh 1.10) is not set");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/zenoh_outsider.py");
    let d = dir("outsider");
    let mut nodes = loopback_chain(&d, "outsider", 2, |_| common::TIMING.to_string());
    let ids = start_domain(&mut nodes);
    form_group(&nodes, &ids, "fleet", false);
    let dk = spook_node::domain_key::DomainKey::from_token(&common::domain_key(&nodes[0])).unwrap();
    // Traffic to see: a write every 100 ms while the outsider listens (digests flow anyway).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (config, stop) = (nodes[0].config.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..200u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = std::process::Command::new(common::SPOOK).arg("--config").arg(&config).args(["set", "fleet", "1", "battery", &format!("0.{i}")]).output();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let run = |creds: &[String]| -> serde_json::Value {
        let out = std::process::Command::new(&python).arg(script).arg(&nodes[1].listen).arg("3").args(creds).output().unwrap();
        assert!(out.status.success(), "the outsider script failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let without = run(&[]);
    let wrong = run(&["spook-g1".into(), "00".repeat(32)]);
    // Positive control: the same script, given the credential, sees the domain's traffic.
    let with = run(&[dk.user(), dk.password()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    println!("outsider without the key: {without}\nwith a wrong password: {wrong}\nwith the key: {with}");
    for seen in [&without, &wrong] {
        assert_eq!(seen["keys"].as_array().unwrap().len(), 0, "an outsider saw key expressions: {seen}");
        assert_eq!(seen["queries"], 0, "an outsider's queryable got queries: {seen}");
    }
    let keys = with["keys"].as_array().unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|k| k.as_str().unwrap().starts_with("spook/outsider/")), "with the key the script sees the domain's key expressions: {with}");
    // The nodes themselves still talk: the writes reached the other node.
    eventually("the writes crossed", Duration::from_secs(10), || nodes[1].spook(&["get", "fleet", "1"]).unwrap()["fields"]["battery"].is_number());
}

#[test]
fn disallow_rotates_the_domain_key_and_the_revoked_peer_is_shut_out_of_zenoh() {
    let Some(python) = std::env::var_os("SPOOK_PYTHON") else {
        return common::skip("domain_key_rotation", "SPOOK_PYTHON (a Python with eclipse-zenoh 1.10) is not set");
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/zenoh_outsider.py");
    let d = dir("rotate");
    let mut nodes = loopback_chain(&d, "rotate", 3, |_| common::TIMING.to_string());
    let ids = start_domain(&mut nodes);
    form_group(&nodes, &ids, "fleet", false);
    let old = spook_node::domain_key::DomainKey::from_token(&common::domain_key(&nodes[2])).unwrap();
    // n2 is revoked on every other node (revocation is per node).
    nodes[0].spook(&["disallow", &ids[2]]).unwrap();
    nodes[1].spook(&["disallow", &ids[2]]).unwrap();
    // n0 and n1 end on one newer key, whoever rotated last.
    let mut current = None;
    eventually("n0 and n1 hold one newer domain key", Duration::from_secs(20), || {
        let (k0, k1) = (common::domain_key(&nodes[0]), common::domain_key(&nodes[1]));
        current = Some(k0.clone());
        k0 == k1 && k0 != old.token()
    });
    let new = spook_node::domain_key::DomainKey::from_token(&current.unwrap()).unwrap();
    assert!(new.generation > old.generation);
    // Through both steps of the rotation (and a little more), then the old key is refused.
    std::thread::sleep(Duration::from_millis(2 * spook_node::domain_key::ROTATION_STEP_MS + 2_000));
    let run = |k: &spook_node::domain_key::DomainKey| -> serde_json::Value {
        let out = std::process::Command::new(&python).arg(script).arg(&nodes[1].listen).arg("3").arg(k.user()).arg(k.password()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    nodes[0].spook(&["set", "fleet", "5", "battery", "0.5"]).unwrap();
    let with_old = run(&old);
    let with_new = run(&new);
    println!("with the revoked key: {with_old}\nwith the new key: {with_new}");
    assert_eq!(with_old["keys"].as_array().unwrap().len(), 0, "the revoked key still opens a zenoh session: {with_old}");
    assert!(!with_new["keys"].as_array().unwrap().is_empty(), "positive control: {with_new}");
    // The remaining nodes still replicate.
    eventually("n1 gets n0's write", Duration::from_secs(20), || nodes[1].spook(&["get", "fleet", "5"]).unwrap()["fields"]["battery"] == 0.5);
}

#[test]
fn the_cli_says_what_it_expects_and_prints_what_scripts_need() {
    let spook = |args: &[&str]| std::process::Command::new(common::SPOOK).args(args).output().unwrap();
    // Bare `spook`: a usage line, not success.
    let out = spook(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("spook --help"));
    // An unknown command: one line, not the whole help.
    let out = spook(&["frobnicate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown command") && err.lines().count() == 1, "{err}");
    // A command's help is that command's.
    let out = spook(&["pair", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.contains("pair --confirm") && !help.contains("GROUPS:"), "{help}");
    // A malformed locator is refused before any node starts.
    let d = dir("cli");
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[zenoh]\nconnect = [\"tcp/127.0.0.1\"]\n").unwrap();
    let out = spook(&["-c", bad.to_str().unwrap(), "init"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tcp/127.0.0.1") && err.contains("port"), "{err}");
    // `group create` prints the invite alone on stdout, for INVITE=$(spook group create ...).
    let mut nodes = loopback_chain(&d, "cli", 1, |_| common::TIMING.to_string());
    start_domain(&mut nodes);
    let cfg = nodes[0].config.to_str().unwrap().to_string();
    let out = spook(&["-c", &cfg, "group", "create", "solo"]);
    let invite = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && invite.starts_with("spook1") && invite.trim().lines().count() == 1, "{invite}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("group join"), "the advice goes to stderr");
    let list = String::from_utf8_lossy(&spook(&["-c", &cfg, "group", "list"]).stdout).to_string();
    assert!(list.contains("1 member ") && !list.contains("1 members"), "{list}");
    // A name with an escape sequence is refused, not printed raw later.
    let out = spook(&["-c", &cfg, "group", "create", "evil\u{1b}[2J"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("control characters"));
    // A JSON list given to a set field inserts its elements (it stored the list as one).
    nodes[0].spook(&["set", "solo", "1", "tags", r#"["a","b"]"#]).unwrap();
    nodes[0].spook(&["set", "solo", "1", "tags", r#""c""#]).unwrap();
    let tags = nodes[0].spook(&["get", "solo", "1", "tags"]).unwrap()["value"].clone();
    assert_eq!(tags, serde_json::json!(["a", "b", "c"]), "{tags}");
    // `write`: several fields as one delta (one seq), and documented.
    let before = nodes[0].spook(&["write", "solo", "2", "battery", "0.5", "owner", r#""drone-2""#]).unwrap()["seq"].as_u64().unwrap();
    let after = nodes[0].spook(&["set", "solo", "2", "battery", "0.4"]).unwrap()["seq"].as_u64().unwrap();
    assert_eq!(after, before + 1, "the two fields went as one delta");
    let fields = nodes[0].spook(&["get", "solo", "2"]).unwrap()["fields"].clone();
    assert_eq!((fields["owner"].clone(), fields["battery"].clone()), (serde_json::json!("drone-2"), serde_json::json!(0.4)));
    let out = spook(&["write", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("one atomic delta"));
}

#[test]
fn sigterm_stops_a_node_within_two_seconds_mid_traffic_over_udp() {
    // Three nodes on loopback over reliable UDP (what a radio uses), writing, then each told to
    // stop while the others keep writing to it: each exits within 2 s, its ledger closed.
    let d = dir("sigterm");
    let ports: Vec<u16> = (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let loc = |p: u16| format!("udp/127.0.0.1:{p}?rel=1;mixed_rel=1");
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            let connect: Vec<String> = ports[..i].iter().map(|p| loc(*p)).collect();
            Node::with(&d, &format!("n{i}"), "sigterm", &loc(ports[i]), &connect, common::TIMING, &[])
        })
        .collect();
    let ids = start_domain(&mut nodes);
    form_group(&nodes, &ids, "fleet", false);
    for (i, n) in nodes.iter().enumerate() {
        n.spook(&["set", "fleet", &i.to_string(), "battery", "0.5"]).unwrap();
    }
    wait_settled(&nodes, "formed over UDP");
    for victim in 0..3 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .filter(|i| *i > victim)
            .map(|i| {
                let (config, stop) = (nodes[i].config.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut k = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && k < 2_000 {
                        k += 1;
                        let _ = std::process::Command::new(common::SPOOK).arg("--config").arg(&config).args(["set", "fleet", &i.to_string(), "battery", &format!("0.{k}")]).output();
                    }
                })
            })
            .collect();
        // The victim writes too, up to the signal.
        for k in 0..20 {
            nodes[victim].spook(&["set", "fleet", "9", "battery", &format!("0.{k}")]).unwrap();
        }
        let mut child = nodes[victim].child.take().unwrap();
        let started = Instant::now();
        common::signal(child.id(), "-TERM");
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "n{victim} still running 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        println!("n{victim}: exited {status} {} ms after SIGTERM", took.as_millis());
        assert!(status.success(), "n{victim} exits cleanly: {status}");
        assert!(took < Duration::from_secs(2), "n{victim} took {took:?} to stop");
    }
}
