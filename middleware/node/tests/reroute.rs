//! Client sessions survive rerouting: an operation's identity is (client EndpointId, client
//! seq), so a client whose node is SIGKILLed mid-transfer resends through another node and
//! the transfer executes exactly once, on every node, also after the dead node comes back
//! with its own copy of the operation in its ledger. The client talks to its node over the
//! node's local socket, or attaches over zenoh with its key proven in a Noise handshake; over
//! zenoh, a watch naming a second node goes on through it when its node is killed, and
//! first shows what changed while it was away.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{dir, eventually, Node};
use serde_json::Value as Json;

/// Decoherence on, so the survivors prune the dead node and go on committing.
const TIMING: &str = "digest_interval_ms = 100\ndecohere_after_ms = 3000\nrejoin_after_ms = 3000\n";

fn cell(n: &Node, reg: &str) -> (Json, u64) {
    let j = n.spook(&["get", "bank", reg, "--serial"]).unwrap();
    (j["fields"]["owner"]["value"].clone(), j["fields"]["owner"]["version"].as_u64().unwrap_or(0))
}

/// `spook watch <group>` attached over zenoh to the first of `ids` that answers (the locators
/// of `via`), with its output lines.
fn remote_watch(via: &[&Node], ids: &[&str], key: &str, group: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = std::process::Command::new(common::SPOOK);
    // The domain's key, for zenoh to admit the client's session.
    cmd.env("SPOOK_DOMAIN_KEY", common::domain_key(via[0]));
    cmd.args(["--config", via[via.len() - 1].config.to_str().unwrap(), "--json", "--client-key", key]);
    for n in via {
        cmd.args(["--connect", &n.listen]);
    }
    for id in ids {
        cmd.args(["--node", id]);
    }
    let mut child = cmd.args(["watch", group]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let rx = common::stdout_lines(&mut child);
    (child, rx)
}

/// Wait for the watch to print register `reg` with `value`; the lines it printed meanwhile.
fn watch_shows(rx: &std::sync::mpsc::Receiver<String>, reg: &str, value: &str, within: Duration, what: &str) -> Vec<String> {
    let end = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&format!("\"register\":{reg},")) && l.contains(value)) {
        match rx.recv_timeout(end.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("{what} did not show register {reg} = {value} within {within:?}: {seen:?}"),
        }
    }
    seen
}

#[test]
fn a_transfer_resent_through_another_node_after_kill9_executes_once() {
    transfer_survives_kill9("reroute", false);
}

/// The same, with the client attached over zenoh to A and then to B (no local socket); and
/// what such a client may not do.
#[test]
fn a_remote_client_over_zenoh_resends_through_another_node_after_kill9_and_it_executes_once() {
    transfer_survives_kill9("reroute-zenoh", true);
}

fn transfer_survives_kill9(name: &str, over_zenoh: bool) {
    let d = dir(name);
    let domain = format!("r{}{}", std::process::id(), u8::from(over_zenoh));
    let mut nodes = common::loopback_chain(&d, &domain, 3, |_| TIMING.to_string());
    let ids = common::start_domain(&mut nodes);
    common::form_group(&nodes, &ids, "bank", true);
    // The client's own identity: its session, whichever node it talks to.
    let key = d.join("client.key");
    let client = spook_client::identity::load_or_create(&key).unwrap().id().to_string();
    let key = key.to_str().unwrap().to_string();
    // Over zenoh, the node knows the client by the key it proved; over the socket, it is told.
    // Attached to the first of `ids` that answers, over the locators of `via`.
    let dk = common::domain_key(&nodes[0]);
    let remote_via = |via: &[&Node], ids: &[&str], args: &[&str]| -> Result<Json, String> {
        let mut a = vec!["--client-key", key.as_str(), "--domain-key", dk.as_str()];
        for n in via {
            a.extend(["--connect", n.listen.as_str()]);
        }
        for id in ids {
            a.extend(["--node", id]);
        }
        a.extend_from_slice(args);
        via[via.len() - 1].spook(&a)
    };
    let remote = |n: &Node, id: &str, args: &[&str]| remote_via(&[n], &[id], args);
    if over_zenoh {
        // Only allowed clients get an answer: a stranger hears nothing, and is told why.
        let e = remote(&nodes[0], &ids[0], &["status"]).unwrap_err();
        assert!(e.contains("no answer") && e.contains(&format!("spook allow {client}")), "{e}");
        assert!(common::metric(&nodes[0].metrics(), "spook_rejected_total{reason=\"client-hello-unknown\"}") >= 1, "the refused hello is counted");
        for n in &nodes {
            n.spook(&["allow", &client, "--name", "bank-client"]).unwrap();
        }
        let st = remote(&nodes[0], &ids[0], &["status"]).unwrap();
        assert_eq!(st["id"].as_str(), Some(ids[0].as_str()), "{st}");
        // The session is the proven key: naming another client is refused, and so is
        // administration.
        let e = remote(&nodes[0], &ids[0], &["tx", "bank", "--client", &ids[1], "--set", "9.owner 1"]).unwrap_err();
        assert!(e.contains("is not the key this channel was opened with"), "{e}");
        let e = remote(&nodes[0], &ids[0], &["allow", &ids[1]]).unwrap_err();
        assert!(e.contains("only served on the node's local control socket"), "{e}");
        let e = remote(&nodes[0], &ids[0], &["watch", "nope"]).unwrap_err();
        assert!(e.contains("no group named"), "{e}");
    }
    // A remote watch on A, naming C as the node to go on through, streams the changes that
    // follow.
    let watch = over_zenoh.then(|| remote_watch(&[&nodes[0], &nodes[2]], &[&ids[0], &ids[2]], &key, "bank"));
    // Give the watch time to attach before the writes it must see.
    if over_zenoh {
        std::thread::sleep(Duration::from_secs(2));
    }
    let tx = |n: &Node, id: &str, seq: &str, extra: &[&str]| -> Result<Json, String> {
        let mut args = vec!["tx", "bank", "--seq", seq, "--timeout-ms", "30000"];
        args.extend_from_slice(extra);
        if over_zenoh {
            remote(n, id, &args)
        } else {
            args.extend(["--client", client.as_str()]);
            n.spook(&args)
        }
    };

    // The client opens two accounts through A (registers 1 and 2, field `owner`).
    let setup = ["--if", "1.owner absent", "--if", "2.owner absent", "--set", "1.owner 100", "--set", "2.owner 0"];
    eventually("the accounts open through A", Duration::from_secs(30), || tx(&nodes[0], &ids[0], "1", &setup).is_ok_and(|j| j["state"] == "committed"));
    if let Some((child, rx)) = &watch {
        // A convergent write through A (the serial state has no watch events).
        remote(&nodes[0], &ids[0], &["set", "bank", "7", "battery", "0.25"]).unwrap();
        watch_shows(rx, "7", "0.25", Duration::from_secs(15), &format!("the remote watch on A (pid {})", child.id()));
    }
    // The transfer, through A; A dies as soon as it has accepted it.
    let transfer = ["--if", "1.owner == 100", "--if", "2.owner == 0", "--set", "1.owner 70", "--set", "2.owner 30"];
    let mut no_wait = transfer.to_vec();
    no_wait.push("--no-wait");
    let first = tx(&nodes[0], &ids[0], "2", &no_wait).unwrap();
    assert_eq!(first["state"], "pending", "{first}");
    // The watch is frozen while A dies and a write is made through B: it cannot have seen
    // that write from A, and must show it from its snapshot once it attaches to C.
    let freeze = |sig: &str| {
        if let Some((child, _)) = &watch {
            common::signal(child.id(), sig);
        }
    };
    if over_zenoh {
        // C holds register 7 before A dies, so that C's snapshot has it and it is not shown
        // again (were it to come later, from B, it would be a change at C and shown).
        eventually("C holds register 7", Duration::from_secs(15), || nodes[2].spook(&["get", "bank", "7", "battery"]).is_ok_and(|j| j["value"] == 0.25));
    }
    freeze("-STOP");
    nodes[0].kill9();
    if over_zenoh {
        remote(&nodes[1], &ids[1], &["set", "bank", "9", "battery", "0.75"]).unwrap();
    }
    freeze("-CONT");

    // The client resends the same operation (client, 2) through B.
    let resent = tx(&nodes[1], &ids[1], "2", &transfer).unwrap();
    assert_eq!(resent["state"], "committed", "the transfer commits once A is pruned: {resent}");
    let path = if resent["resent"] == true { "A's copy had committed before A died" } else { "B submitted it again; whichever copy comes first executes" };
    eprintln!("resend through B: {resent} ({path})");
    if let Some((child, rx)) = &watch {
        // The watch lost A and goes on through C: first what changed while it was away
        // (register 9), not what it had shown (register 7); then a write through B.
        let mut lines = watch_shows(rx, "9", "0.75", Duration::from_secs(45), &format!("the remote watch's snapshot on C, once A died (pid {})", child.id()));
        remote(&nodes[1], &ids[1], &["set", "bank", "8", "battery", "0.5"]).unwrap();
        lines.extend(watch_shows(rx, "8", "0.5", Duration::from_secs(45), &format!("the remote watch, once A died (pid {})", child.id())));
        assert!(lines.iter().all(|l| !l.contains("\"register\":7,")), "register 7 did not change and was shown again: {lines:?}");
        assert!(lines.iter().any(|l| l.contains("\"register\":9,") && l.contains("\"snapshot\":true")), "{lines:?}");
        // A client naming A first is served by the next node that answers.
        let st = remote_via(&[&nodes[0], &nodes[1]], &[&ids[0], &ids[1]], &["status"]).unwrap();
        assert_eq!(st["id"].as_str(), Some(ids[1].as_str()), "{st}");
    }
    for n in &nodes[1..] {
        eventually("B and C hold the transfer", Duration::from_secs(15), || cell(n, "1") == (Json::from(70), 2) && cell(n, "2") == (Json::from(30), 2));
    }

    // A comes back from its ledger, with its own copy of the transfer in it: the group
    // re-adds it, and the copy executes nowhere a second time.
    nodes[0].start();
    // Agreement includes the serial cells: equal state hashes can come a commit round before
    // the restarted node's serial state has applied what they hold.
    eventually("all three agree", Duration::from_secs(60), || {
        let st: Vec<Json> = nodes.iter().map(|n| n.spook(&["status"]).unwrap()["groups"][0].clone()).collect();
        let cells: Vec<_> = nodes.iter().map(|n| (cell(n, "1"), cell(n, "2"))).collect();
        st.iter().all(|g| g["state_hash"] == st[0]["state_hash"] && g["members"].as_array().is_some_and(|m| m.len() == 3)) && cells.iter().all(|c| *c == cells[0])
    });
    for n in &nodes {
        assert_eq!(cell(n, "1"), (Json::from(70), 2), "{}: account 1 written twice: by the setup and by the transfer, once", n.name);
        assert_eq!(cell(n, "2"), (Json::from(30), 2), "{}", n.name);
        let s = n.spook(&["session", "bank", "--client", &client]).unwrap();
        let states: Vec<(u64, String)> = s["ops"].as_array().unwrap().iter().map(|o| (o["seq"].as_u64().unwrap(), o["state"].as_str().unwrap().to_string())).collect();
        assert_eq!(states, vec![(1, "committed".into()), (2, "committed".into())], "{}: {s}", n.name);
        assert_eq!(s["next_seq"], 3);
    }
    // Resending once more, through the restarted A, only reports the outcome.
    let again = tx(&nodes[0], &ids[0], "2", &transfer).unwrap();
    assert_eq!((again["state"].as_str(), again["resent"].as_bool()), (Some("committed"), Some(true)), "{again}");
    assert_eq!(again["fence"], resent["fence"], "the same commit, not a second one");

    if let Some((mut child, _)) = watch {
        let _ = child.kill();
        let _ = child.wait();
    }
    // A different operation with the same conditions is a new transfer and aborts.
    let other = tx(&nodes[2], &ids[2], "3", &transfer).unwrap_err();
    assert!(other.contains("aborted") && other.contains("condition 1"), "{other}");
    std::fs::remove_dir_all(&d).ok();
}

/// A node cannot see a remote watcher that went away: it ends a watch whose client has been
/// silent for 30 s. A client that was only stalled (SIGSTOP) attaches again when it resumes.
#[test]
fn a_stalled_remote_watcher_is_dropped_after_the_idle_time_and_attaches_again_when_it_resumes() {
    let d = dir("watch-idle");
    let mut nodes = common::loopback_chain(&d, &format!("w{}", std::process::id()), 1, |_| TIMING.to_string());
    let ids = common::start_domain(&mut nodes);
    common::form_group(&nodes, &ids, "fleet", false);
    let a = &nodes[0];
    let key = d.join("client.key");
    let client = spook_client::identity::load_or_create(&key).unwrap().id().to_string();
    a.spook(&["allow", &client, "--name", "watcher"]).unwrap();
    let watches = || common::metric(&a.metrics(), "spook_remote_watches");
    let (mut child, rx) = remote_watch(&[a], &[&ids[0]], key.to_str().unwrap(), "fleet");
    eventually("the watch is served", Duration::from_secs(20), || watches() == 1);
    a.spook(&["set", "fleet", "1", "battery", "0.1"]).unwrap();
    watch_shows(&rx, "1", "0.1", Duration::from_secs(10), "the watch");

    let signal = |sig: &str| common::signal(child.id(), sig);
    signal("-STOP");
    let stopped = std::time::Instant::now();
    eventually("the node drops the silent watcher", Duration::from_secs(45), || watches() == 0);
    let after = stopped.elapsed();
    assert!(after >= Duration::from_millis(spook_client::remote::WATCH_IDLE_MS - 1_000), "dropped after {after:?}, before the idle time");
    // Written while the client was away: shown from the snapshot it attaches with.
    a.spook(&["set", "fleet", "3", "battery", "0.3"]).unwrap();
    signal("-CONT");
    eventually("the resumed client watches again", Duration::from_secs(30), || watches() == 1);
    let caught_up = watch_shows(&rx, "3", "0.3", Duration::from_secs(10), "the resumed watch's snapshot");
    assert!(caught_up.iter().all(|l| !l.contains("\"register\":1,")), "register 1 did not change and was shown again: {caught_up:?}");
    a.spook(&["set", "fleet", "2", "battery", "0.2"]).unwrap();
    watch_shows(&rx, "2", "0.2", Duration::from_secs(10), "the resumed watch");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&d).ok();
}
