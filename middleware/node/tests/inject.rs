//! The in-process loss injector (`[faults] drop_pct`): three real `spookd` on loopback, each
//! dropping 20% of what it publishes (group frames, pair handshakes, key announcements,
//! digests, consensus messages alike), still converge: the same node-level recovery the
//! netns radio tests exercise (key re-announcement, handshake retry, re-add), in seconds and
//! without root. Seed: `SPOOK_SEED` (printed).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{dir, eventually, metric};
use serde_json::Value as Json;

const TIMING: &str = "digest_interval_ms = 100\ndecohere_after_ms = 3000\nrejoin_after_ms = 3000\n";

fn group<'a>(st: &'a Json, name: &str) -> &'a Json {
    st["groups"].as_array().and_then(|gs| gs.iter().find(|g| g["name"] == name)).unwrap_or(&Json::Null)
}

#[test]
fn three_nodes_dropping_a_fifth_of_their_messages_converge() {
    let seed: u64 = std::env::var("SPOOK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| u64::from(std::process::id()));
    eprintln!("SPOOK_SEED={seed}");
    let d = dir("inject");
    let domain = format!("i{}", std::process::id());
    let mut nodes = common::loopback_chain(&d, &domain, 3, |i| format!("{TIMING}\n[faults]\ndrop_pct = 20.0\nseed = {}\n", seed + i as u64));
    let ids = common::start_domain(&mut nodes);
    common::form_group(&nodes, &ids, "fleet", false);
    common::form_group(&nodes, &ids, "tasks", true);
    for round in 0..20 {
        for (i, n) in nodes.iter().enumerate() {
            n.spook(&["set", "fleet", &i.to_string(), "battery", &format!("0.{}", 99 - round)]).unwrap();
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let c = format!("{}.owner lease-expired", 10 + i);
        let w = format!("{}.owner \"n{i}\"", 10 + i);
        n.spook(&["tx", "tasks", "--client", &ids[i], "--seq", "1", "--timeout-ms", "120000", "--if", &c, "--set", &w, "--no-wait"]).unwrap();
    }
    let started = std::time::Instant::now();
    let mut said = 0;
    eventually("all three converge with full membership and every claim decided", Duration::from_secs(90), || {
        let decided = nodes.iter().all(|n| ids.iter().all(|c| n.spook(&["session", "tasks", "--client", c]).unwrap()["ops"].as_array().is_some_and(|o| o.len() == 1)));
        let st: Vec<Json> = nodes.iter().map(|n| n.spook(&["status"]).unwrap()).collect();
        let done = decided
            && ["fleet", "tasks"].iter().all(|g| {
                st.iter().all(|s| {
                    let me = group(s, g);
                    me["state_hash"] == group(&st[0], g)["state_hash"] && me["members"].as_array().is_some_and(|m| m.len() == 3 && m.iter().all(|x| x["paired"] == true))
                })
            });
        // A run that takes long says why, every 20 s, so that a rare stall leaves evidence.
        let secs = started.elapsed().as_secs();
        if !done && secs >= 20 * (said + 1) {
            said += 1;
            eprintln!("after {secs} s: claims decided everywhere: {decided}");
            for (n, s) in nodes.iter().zip(&st) {
                for g in ["fleet", "tasks"] {
                    let me = group(s, g);
                    let members: Vec<String> = me["members"].as_array().map(|m| m.iter().map(|x| format!("{}:{}", &x["id"].as_str().unwrap_or("?")[..6.min(x["id"].as_str().unwrap_or("?").len())], x["paired"])).collect()).unwrap_or_default();
                    eprintln!("  {} {g}: hash {} members {members:?} pending {}", n.name, me["state_hash"], me["pending_candidates"]);
                }
            }
        }
        done
    });
    for n in &nodes {
        for i in 0..3 {
            let v = n.spook(&["get", "fleet", &i.to_string(), "battery"]).unwrap()["value"].as_f64();
            assert_eq!(v, Some(0.8), "{}: register {i}", n.name);
        }
        for (i, c) in ids.iter().enumerate() {
            let s = n.spook(&["session", "tasks", "--client", c]).unwrap();
            assert_eq!(s["ops"][0]["state"], "committed", "{}: {s}", n.name);
            let t = n.spook(&["get", "tasks", &(10 + i).to_string(), "--serial"]).unwrap();
            assert_eq!(t["fields"]["owner"]["value"], format!("n{i}"), "{}: {t}", n.name);
        }
        let m = n.metrics();
        assert!(metric(&m, "spook_injected_drops_total") > 0, "{}: the injector dropped nothing", n.name);
    }
    std::fs::remove_dir_all(&d).ok();
}
