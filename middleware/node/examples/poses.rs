//! An application with its node inside: it writes the poses of a few drones into a group at
//! 10 Hz through `spook-client`, while another process (a `spookd` with `spook watch`)
//! watches them. Walk-through in docs/client.md ("An embedded application").
//!
//! ```text
//! cargo run -p spook-node --example poses -- <config.toml> <member id>... [--seconds N]
//! ```

use std::time::Duration;

use anyhow::{bail, Context};
use spook_client::proto::Request;
use spook_client::Value;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) if i + 1 < args.len() => {
            let s = args.remove(i + 1).parse::<u64>().context("--seconds needs a number")?;
            args.remove(i);
            s
        }
        Some(_) => bail!("--seconds needs a number"),
        None => 60,
    };
    let Some((config, members)) = args.split_first() else {
        bail!("usage: poses <config.toml> <member id>... [--seconds N]   (the node's config, as `spook init` made it; the ids of the nodes that watch)");
    };
    let cfg = spook_node::Config::load(Some(std::path::Path::new(config)))?;
    let (client, node) = spook_node::embedded::start(cfg).await?;
    println!("node {} runs in this process", node.id());

    // The group, with the watching nodes as members; its invite is for them to join.
    if !client.groups().await?.iter().any(|g| g == "fleet") {
        let r = Request::GroupCreate { name: "fleet".into(), members: members.to_vec(), kind: None, trusted_members: false, schema: None };
        let created = client.call(&r).await?;
        println!("on the watching node run:\n  spook -c <its config> group join {}\n  spook -c <its config> watch fleet", created["invite"].as_str().unwrap_or_default());
    }

    let fleet = client.group("fleet");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for step in 0..seconds * 10 {
        tick.tick().await;
        let t = step as f64 / 10.0;
        // Three drones on circles: each pose is one atomic delta of the fields that changed.
        for d in 0..3u32 {
            let a = t * 0.5 + f64::from(d) * 2.1;
            let (s, c) = (a / 2.0).sin_cos();
            let fields = [
                ("pose.translation.x", Value::F64(10.0 * a.cos())),
                ("pose.translation.y", Value::F64(10.0 * a.sin())),
                ("pose.rotation", Value::Quat([c, 0.0, 0.0, s])),
            ];
            fleet.write(d, fields).await?;
        }
        if step % 50 == 0 {
            let st = fleet.status().await?;
            println!("t={t:>5.1} s  members {}  committed up to {} ms  state {}", st.members.len(), st.frontier_ms, st.state_hash.get(..12).unwrap_or_default());
        }
    }
    node.shutdown().await?;
    Ok(())
}
