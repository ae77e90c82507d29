//! `spook bench`: node-to-node measurements on loopback against raw zenoh in the same run.
//!
//! Every figure is printed with its baseline and the ratio. Nodes run in this process (real
//! zenoh sessions over TCP on 127.0.0.1, real ledger files with fsync), so the CPU time
//! reported is the whole domain's.

use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use crate::control::{FieldWrite, Request};
use crate::demo::{free_port, local_domain, Nodes};
use crate::NodeHandle;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Sequential writes timed for latency.
    pub latency_samples: usize,
    /// Writes of 100 updates each for throughput.
    pub throughput_batches: usize,
    /// Watchers in the larger fan-out run.
    pub watchers: usize,
    /// Seconds of the 100-drone pose stream.
    pub stream_secs: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { latency_samples: 300, throughput_batches: 2_000, watchers: 10, stream_secs: 5 }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn zenoh_peer(listen: u16, connect: Option<u16>) -> anyhow::Result<zenoh::Config> {
    let mut c = zenoh::Config::default();
    let set = |c: &mut zenoh::Config, k: &str, v: String| c.insert_json5(k, &v).map_err(|e| anyhow::anyhow!("zenoh config {k}: {e}"));
    set(&mut c, "mode", "\"peer\"".into())?;
    set(&mut c, "listen/endpoints", format!("[\"tcp/127.0.0.1:{listen}\"]"))?;
    set(&mut c, "connect/endpoints", connect.map_or("[]".into(), |p| format!("[\"tcp/127.0.0.1:{p}\"]")))?;
    set(&mut c, "scouting/multicast/enabled", "false".into())?;
    Ok(c)
}

/// Raw zenoh between two sessions: latency of put-after-fsync, and messages/s of bare puts.
///
/// The latency baseline does what Spook's write path must do at the least, the cheapest way:
/// the payload is written over bytes of a file written out beforehand (as Spook's commit log
/// is) and `fdatasync`ed, then put; the time is taken where an application task receives it
/// from zenoh's default (FIFO channel) subscriber, as the Spook figure is taken where the
/// watching task receives its event.
async fn raw_zenoh(dir: &std::path::Path, samples: usize, messages: usize) -> anyhow::Result<(f64, f64, f64)> {
    use std::os::unix::fs::FileExt;
    let (pa, pb) = (free_port()?, free_port()?);
    let a = zenoh::open(zenoh_peer(pa, None)?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let b = zenoh::open(zenoh_peer(pb, Some(pa))?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let lat_sub = b.declare_subscriber("bench/raw/lat").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let _tp_sub = b
        .declare_subscriber("bench/raw/tp")
        .callback(move |_| {
            let _ = tx.send(Instant::now());
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Wait until both subscriptions reach the publisher.
    let warm = Instant::now();
    for key in ["bench/raw/lat", "bench/raw/tp"] {
        loop {
            a.put(key, vec![0u8; 8]).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let arrived = if key.ends_with("lat") {
                tokio::time::timeout(Duration::from_millis(100), lat_sub.recv_async()).await.is_ok()
            } else {
                tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_ok()
            };
            if arrived {
                break;
            }
            anyhow::ensure!(warm.elapsed() < Duration::from_secs(10), "raw zenoh sessions did not connect");
        }
    }
    while lat_sub.try_recv().ok().flatten().is_some() {}
    while rx.try_recv().is_ok() {}
    let file = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(dir.join("raw.log"))?;
    file.write_all_at(&vec![0u8; (samples * 8).max(1 << 20)], 0)?;
    file.sync_all()?;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let payload = (i as f64).to_le_bytes().to_vec();
        let t0 = Instant::now();
        file.write_all_at(&payload, (i * 8) as u64)?;
        file.sync_data()?;
        a.put("bench/raw/lat", payload).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::time::timeout(Duration::from_secs(5), lat_sub.recv_async()).await?.map_err(|e| anyhow::anyhow!("raw subscriber: {e}"))?;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    // Throughput: synchronous small puts, counted at the subscriber.
    let t0 = Instant::now();
    for i in 0..messages {
        a.put("bench/raw/tp", (i as u64).to_le_bytes().to_vec()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut got = 0usize;
    let mut last = t0;
    while got < messages {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(t)) => {
                got += 1;
                last = t;
            }
            _ => break,
        }
    }
    let rate = got as f64 / (last - t0).as_secs_f64().max(1e-9);
    let (p50, p99) = (pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99));
    a.close().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    b.close().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((p50, p99, rate))
}

async fn seq_of(h: &NodeHandle, member: &str) -> u64 {
    let s = h.request(Request::Status).await;
    s["groups"][0]["members"].as_array().and_then(|ms| ms.iter().find(|m| m["id"] == member)).and_then(|m| m["seq"].as_u64()).unwrap_or(0)
}

async fn stop(nodes: Nodes) {
    for (h, t) in nodes {
        let _ = h.request(Request::Shutdown).await;
        let _ = t.await;
    }
}

async fn domain(dir: &std::path::Path, n: usize, trusted_members: bool) -> anyhow::Result<(Nodes, Vec<String>)> {
    let ports = (0..n).map(|_| free_port()).collect::<anyhow::Result<Vec<_>>>()?;
    let (nodes, ids) = local_domain(dir, &ports, trusted_members, |c| c.timing.digest_interval_ms = 50).await?;
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    // Formed: every node holds a first write of node 0's.
    let r = nodes[0].0.request(Request::Set { group: "fleet".into(), register: 0, field: "battery".into(), value: json!(1.0) }).await;
    anyhow::ensure!(r["ok"] == json!(true), "first write: {r}");
    let t0 = Instant::now();
    for (h, _) in &nodes[1..] {
        while seq_of(h, &ids[0]).await < 1 {
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "the nodes did not form a group within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok((nodes, ids))
}

/// Wait for the change event of register 1 carrying `v`.
async fn wait_for(rx: &mut mpsc::UnboundedReceiver<Json>, v: f64) -> anyhow::Result<Instant> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.ok().flatten().ok_or_else(|| anyhow::anyhow!("no change event within 10 s"))?;
        if ev["register"] == json!(1) && ev["fields"]["peak_speed"].as_f64() == Some(v) {
            return Ok(Instant::now());
        }
    }
}

/// Write → remote watch latency (pending and committed views), p50 and p99 in ms; the
/// committed view only if `committed` (else NaN).
///
/// The pending view is timed with writes back to back, paced like the raw baseline (the next
/// write once the previous one was seen). The committed view needs the members' acks, which
/// ride the digest interval, so it is timed in a second loop. Keeping the loops apart matters
/// on these machines: an `fdatasync` after tens of milliseconds of idle disk costs about twice
/// one that follows another closely, in Spook and in the baseline alike.
async fn latency(dir: &std::path::Path, samples: usize, trusted_members: bool, committed_view: bool) -> anyhow::Result<[f64; 4]> {
    let (nodes, _) = domain(dir, 2, trusted_members).await?;
    let (a, b) = (&nodes[0].0, &nodes[1].0);
    let (_, mut pending) = b.watch("fleet".into(), spook_core::View::Pending).await;
    let (_, mut committed) = b.watch("fleet".into(), spook_core::View::Committed).await;
    let write = |v: f64| async move {
        let t0 = Instant::now();
        let r = a.request(Request::Set { group: "fleet".into(), register: 1, field: "peak_speed".into(), value: json!(v) }).await;
        anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
        Ok(t0)
    };
    let (mut lp, mut lc) = (Vec::new(), Vec::new());
    // Max-policy field: every write is a new, larger value.
    for i in 0..samples {
        let v = (i + 1) as f64;
        let t0 = write(v).await?;
        lp.push((wait_for(&mut pending, v).await? - t0).as_secs_f64() * 1e3);
    }
    for i in 0..if committed_view { samples } else { 0 } {
        let v = (samples + i + 1) as f64;
        let t0 = write(v).await?;
        lc.push((wait_for(&mut committed, v).await? - t0).as_secs_f64() * 1e3);
    }
    stop(nodes).await;
    Ok([pct(&mut lp.clone(), 0.5), pct(&mut lp, 0.99), pct(&mut lc.clone(), 0.5), pct(&mut lc, 0.99)])
}

/// Updates/s from one writer to `watchers` nodes, in writes of 100 updates; and CPU cores
/// used by the whole domain meanwhile.
/// Concurrent writers in the throughput runs.
const CLIENTS: usize = 16;

async fn throughput(dir: &std::path::Path, watchers: usize, batches: usize) -> anyhow::Result<(f64, f64)> {
    let (nodes, ids) = domain(dir, watchers + 1, false).await?;
    let a = &nodes[0].0;
    let base = seq_of(a, &ids[0]).await;
    let (t0, c0) = (Instant::now(), cpu_secs());
    // Each client is answered once its write is durable; with many writing at once, the node
    // commits all the writes queued meanwhile with one fsync (group commit).
    let per = batches / CLIENTS;
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let a = a.clone();
        clients.push(tokio::spawn(async move {
            for k in 0..per {
                let v = (k * CLIENTS + c) as f64;
                let set: Vec<FieldWrite> = (0..100u32).map(|r| FieldWrite { register: r, field: "pose.translation.x".into(), value: json!(v + f64::from(r) / 1000.0) }).collect();
                let r = a.request(Request::Write { group: "fleet".into(), set }).await;
                anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for c in clients {
        c.await??;
    }
    let batches = per * CLIENTS;
    let want = base + batches as u64;
    for (h, _) in &nodes[1..] {
        while seq_of(h, &ids[0]).await < want {
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(120), "watchers did not receive every write within 120 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cores = (cpu_secs() - c0) / secs;
    stop(nodes).await;
    Ok(((batches * 100) as f64 / secs, cores))
}

/// Bytes published for 100 drones' poses (translation and rotation) at 10 Hz, per update.
async fn pose_stream(dir: &std::path::Path, secs: u64) -> anyhow::Result<f64> {
    let (nodes, _) = domain(dir, 2, false).await?;
    let (a, m) = (&nodes[0].0, nodes[0].0.metrics.clone());
    let out0 = m.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let ticks = secs * 10;
    for k in 0..ticks {
        tick.tick().await;
        let t = k as f64 / 10.0;
        let mut set = Vec::with_capacity(400);
        for d in 0..100u32 {
            let a = t * 0.3 + f64::from(d);
            let (s, c) = (a / 2.0).sin_cos();
            set.push(FieldWrite { register: d, field: "pose.translation.x".into(), value: json!(50.0 * a.cos()) });
            set.push(FieldWrite { register: d, field: "pose.translation.y".into(), value: json!(50.0 * a.sin()) });
            set.push(FieldWrite { register: d, field: "pose.translation.z".into(), value: json!(10.0 + f64::from(d % 5)) });
            set.push(FieldWrite { register: d, field: "pose.rotation".into(), value: json!([c, 0.0, 0.0, s]) });
        }
        let r = a.request(Request::Write { group: "fleet".into(), set }).await;
        anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
    }
    // Let digests and acks of the last ticks go out too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bytes = m.bytes_out.load(std::sync::atomic::Ordering::Relaxed) - out0;
    stop(nodes).await;
    Ok(bytes as f64 / (ticks * 100) as f64)
}

/// The bytes of one geometry_msgs/PoseStamped in CDR (ROS 2's wire form): encapsulation
/// header 4, stamp 8, frame_id "map" 4 + 4, position 24, orientation 32.
pub const POSE_STAMPED_CDR_BYTES: f64 = 76.0;

/// Run every measurement and print the table.
///
/// # Errors
/// A node or zenoh session fails to start, or a measurement times out.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("spook-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    println!("spook bench: nodes in this process on 127.0.0.1 (zenoh over TCP, ledgers with fsync in {})", dir.display());
    let sub = |name: &str| -> anyhow::Result<std::path::PathBuf> {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    println!("[1/6] raw zenoh baseline: {} puts after fsync, then {} bare puts", cfg.latency_samples, cfg.throughput_batches * 100);
    let (zp50, zp99, zrate) = raw_zenoh(&sub("raw")?, cfg.latency_samples, cfg.throughput_batches * 100).await?;
    println!("[2/6] write -> remote watch latency, {} writes", cfg.latency_samples);
    let [p50, p99, c50, c99] = latency(&sub("lat")?, cfg.latency_samples, false, true).await?;
    println!("[3/6] the same in a trusted-members group (frames not signed), pending view");
    let [t50, t99, _, _] = latency(&sub("lat-trusted")?, cfg.latency_samples, true, false).await?;
    println!("[4/6] throughput, 1 watcher");
    let (r1, cpu1) = throughput(&sub("tp1")?, 1, cfg.throughput_batches).await?;
    println!("[5/6] throughput, {} watchers", cfg.watchers);
    let (rn, cpun) = throughput(&sub("tpn")?, cfg.watchers, cfg.throughput_batches / 4).await?;
    println!("[6/6] 100 drones' poses at 10 Hz for {} s", cfg.stream_secs);
    let per_update = pose_stream(&sub("poses")?, cfg.stream_secs).await?;
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!("| measurement | Spook | baseline | ratio |");
    println!("|---|---|---|---|");
    println!("| write → remote watch p50, pending view | {p50:.3} ms | raw zenoh put after fsync {zp50:.3} ms | {:.2}× |", p50 / zp50);
    println!("| write → remote watch p99, pending view | {p99:.3} ms | {zp99:.3} ms | {:.2}× |", p99 / zp99);
    println!("| write → remote watch p50, pending view, trusted-members group | {t50:.3} ms | {zp50:.3} ms | {:.2}× |", t50 / zp50);
    println!("| write → remote watch p99, pending view, trusted-members group | {t99:.3} ms | {zp99:.3} ms | {:.2}× |", t99 / zp99);
    println!("| write → remote watch p50, committed view | {c50:.3} ms | {zp50:.3} ms | {:.2}× |", c50 / zp50);
    println!("| write → remote watch p99, committed view | {c99:.3} ms | {zp99:.3} ms | {:.2}× |", c99 / zp99);
    println!("| updates/s, 1 writer → 1 watcher (100 per write) | {r1:.0} ({cpu1:.2} cores) | raw zenoh {zrate:.0} msgs/s | {:.2}× |", r1 / zrate);
    println!("| updates/s, 1 writer → {} watchers | {rn:.0} ({cpun:.2} cores) | {zrate:.0} msgs/s | {:.2}× |", cfg.watchers, rn / zrate);
    println!("| bytes per pose update, 100 drones at 10 Hz | {per_update:.1} B | PoseStamped CDR {POSE_STAMPED_CDR_BYTES} B | {:.2}× |", per_update / POSE_STAMPED_CDR_BYTES);
    Ok(())
}
