//! `spook demo`: a small local domain a newcomer can watch. N nodes on loopback (each with its
//! own ledger), one group, each node flying one drone at 10 Hz; halfway through, one node is
//! stopped, the others go on, and it comes back from its ledger and re-aligns.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::control::Request;
use crate::node::{allow_in_ledger, ensure_identity};
use crate::{Config, NodeHandle};
use spook_core::EndpointId;

/// Nodes running in this process, with their tasks.
pub(crate) type Nodes = Vec<(NodeHandle, tokio::task::JoinHandle<anyhow::Result<()>>)>;

/// Start one node per port in this process, on loopback, each dialling the earlier ones, all
/// allowing each other, with one convergent group "fleet" of them all (node 0 creates it,
/// signed unless `trusted_members`). `tune` edits each node's config before it starts.
pub(crate) async fn local_domain(dir: &std::path::Path, ports: &[u16], trusted_members: bool, tune: impl Fn(&mut Config)) -> anyhow::Result<(Nodes, Vec<EndpointId>)> {
    let n = ports.len();
    let mut ids = Vec::new();
    // One domain key (node 0's, if its ledger has one from an earlier run): zenoh admits no
    // session from outside the domain.
    let mut key = None;
    for i in 0..n {
        let mut l = spook_ledger::Ledger::open(dir.join(format!("node{i}.spookdb")))?;
        ids.push(ensure_identity(&mut l)?.id());
        let k = key.get_or_insert_with(|| l.domain_key().ok().flatten().unwrap_or_else(|| crate::domain_key::DomainKey::generate(1).to_bytes().to_vec()));
        l.set_domain_key(k)?;
    }
    for i in 0..n {
        let mut l = spook_ledger::Ledger::open(dir.join(format!("node{i}.spookdb")))?;
        for (j, id) in ids.iter().enumerate() {
            if j != i {
                allow_in_ledger(&mut l, *id, &format!("node{j}"))?;
            }
        }
    }
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut cfg = node_config(dir, i, ports, 0..i);
        tune(&mut cfg);
        let (h, task, _) = crate::start(cfg).await?;
        nodes.push((h, task));
    }
    let first = &nodes[0].0;
    let created = first.request(Request::GroupCreate { name: "fleet".into(), members: ids[1..].iter().map(ToString::to_string).collect(), kind: None, trusted_members, schema: None }).await;
    let invite = created["invite"].as_str().ok_or_else(|| anyhow::anyhow!("group create failed: {created}"))?.to_string();
    for (h, _) in nodes.iter().skip(1) {
        let r = h.request(Request::GroupJoin { invite: invite.clone(), name: None }).await;
        anyhow::ensure!(r["ok"] == json!(true), "join failed: {r}");
    }
    Ok((nodes, ids))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn node_config(dir: &std::path::Path, i: usize, ports: &[u16], connect_to: std::ops::Range<usize>) -> Config {
    let mut cfg = Config::default();
    cfg.node.ledger = dir.join(format!("node{i}.spookdb"));
    cfg.node.control = dir.join(format!("node{i}.sock"));
    cfg.node.domain = format!("demo{}", ports[0]);
    cfg.metrics.listen = String::new();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{}", ports[i])];
    cfg.zenoh.connect = connect_to.map(|j| format!("tcp/127.0.0.1:{}", ports[j])).collect();
    cfg
}

async fn status(h: &NodeHandle) -> (String, u64, u64) {
    let s = h.request(Request::Status).await;
    let g = &s["groups"][0];
    let hash = g["state_hash"].as_str().unwrap_or("-").chars().take(12).collect();
    (hash, g["frontier_ms"].as_u64().unwrap_or(0), g["states_applied"].as_u64().unwrap_or(0))
}

/// Run the demo for about `seconds`.
pub async fn run(n: usize, seconds: u64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("spook-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!("spook demo: {n} nodes on 127.0.0.1, ledgers in {}", dir.display());
    let ports = (0..n).map(|_| free_port()).collect::<anyhow::Result<Vec<_>>>()?;
    let (handles, _) = local_domain(&dir, &ports, false, |_| {}).await?;
    let mut nodes: Vec<Option<(NodeHandle, tokio::task::JoinHandle<anyhow::Result<()>>)>> = handles.into_iter().map(Some).collect();
    for (i, (h, _)) in nodes.iter().flatten().enumerate() {
        println!("  node{i} {}… listening on tcp/127.0.0.1:{}", &h.id.to_string()[..12], ports[i]);
    }
    println!("group \"fleet\" with {n} members; each node flies one drone (register = node number) at 10 Hz\n");
    let start = Instant::now();
    let total = Duration::from_secs(seconds.max(6));
    let (stop_at, back_at) = (total / 3, total / 2);
    let last = n - 1;
    let mut stopped = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_print = Duration::ZERO;
    let mut k = 0u64;
    while start.elapsed() < total {
        tick.tick().await;
        k += 1;
        let t = k as f64 / 10.0;
        for (i, slot) in nodes.iter().enumerate() {
            let Some((h, _)) = slot else { continue };
            let a = t * 0.5 + i as f64;
            for (field, v) in [("pose.translation.x", json!(10.0 * a.cos())), ("pose.translation.y", json!(10.0 * a.sin())), ("pose.translation.z", json!(5.0 + i as f64)), ("battery", json!(1.0 - t / 1000.0))] {
                let r = h.request(Request::Set { group: "fleet".into(), register: (i as u32).into(), field: field.into(), value: v, typed: false }).await;
                if r["ok"] != json!(true) {
                    println!("  node{i}: write refused: {}", r["error"]);
                }
            }
        }
        let el = start.elapsed();
        if !stopped && el >= stop_at && el < back_at {
            if let Some((h, task)) = nodes[last].take() {
                let _ = h.request(Request::Shutdown).await;
                let _ = task.await;
                println!("\n>> node{last} stopped (as if its radio died); the others keep flying\n");
                stopped = true;
            }
        }
        if stopped && el >= back_at {
            let (h, task, _) = crate::start(node_config(&dir, last, &ports, 0..last)).await?;
            nodes[last] = Some((h, task));
            println!("\n>> node{last} restarted from its ledger; it re-aligns with only what it missed\n");
            stopped = false;
        }
        if el >= next_print {
            next_print += Duration::from_secs(1);
            let mut line = format!("t={:>4.1}s ", el.as_secs_f64());
            for (i, slot) in nodes.iter().enumerate() {
                match slot {
                    Some((h, _)) => {
                        let (hash, _, realign) = status(h).await;
                        line += &format!(" | node{i} state {hash} realigned {realign}");
                    }
                    None => line += &format!(" | node{i} (stopped)"),
                }
            }
            println!("{line}");
        }
    }
    // Writes stop; every node must end with the same state.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut hashes = Vec::new();
        for (h, _) in nodes.iter().flatten() {
            hashes.push(status(h).await.0);
        }
        if hashes.windows(2).all(|w| w[0] == w[1]) && hashes.len() == n {
            println!("\nconverged: all {n} nodes hold the identical state {}", hashes[0]);
            break;
        }
        if Instant::now() > deadline {
            println!("\nNOT converged after 15 s: {hashes:?}");
            anyhow::bail!("the demo did not converge");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (h, task) in nodes.into_iter().flatten() {
        let _ = h.request(Request::Shutdown).await;
        let _ = task.await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
