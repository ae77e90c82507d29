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

/// Raw zenoh between two sessions: the latency baseline (put after fsync) and bare puts.
///
/// The latency baseline does what Spook's write path must do at the least, the cheapest way:
/// the payload is written over bytes of a file written out beforehand (as Spook's commit log
/// is) and `fdatasync`ed, then put; the time is taken where an application task receives it
/// from zenoh's default (FIFO channel) subscriber, as the Spook figure is taken where the
/// watching task receives its event.
struct RawZenoh {
    a: zenoh::Session,
    b: zenoh::Session,
    lat_sub: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    tp_rx: mpsc::UnboundedReceiver<Instant>,
    _tp_sub: zenoh::pubsub::Subscriber<()>,
    file: std::fs::File,
    sent: usize,
}

/// Bytes of the baseline's pre-written file; samples overwrite it round robin.
const RAW_FILE: usize = 1 << 20;

impl RawZenoh {
    async fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::FileExt;
        let (pa, pb) = (free_port()?, free_port()?);
        let a = zenoh::open(zenoh_peer(pa, None)?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let b = zenoh::open(zenoh_peer(pb, Some(pa))?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let lat_sub = b.declare_subscriber("bench/raw/lat").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let (tx, mut tp_rx) = mpsc::unbounded_channel::<Instant>();
        let tp_sub = b
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
                    tokio::time::timeout(Duration::from_millis(100), tp_rx.recv()).await.is_ok()
                };
                if arrived {
                    break;
                }
                anyhow::ensure!(warm.elapsed() < Duration::from_secs(10), "raw zenoh sessions did not connect");
            }
        }
        while lat_sub.try_recv().ok().flatten().is_some() {}
        while tp_rx.try_recv().is_ok() {}
        let file = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(dir.join("raw.log"))?;
        file.write_all_at(&vec![0u8; RAW_FILE], 0)?;
        file.sync_all()?;
        Ok(RawZenoh { a, b, lat_sub, tp_rx, _tp_sub: tp_sub, file, sent: 0 })
    }

    /// One put after fsync, in ms until the subscribing task has it.
    async fn sample(&mut self) -> anyhow::Result<f64> {
        use std::os::unix::fs::FileExt;
        let payload = (self.sent as f64).to_le_bytes().to_vec();
        let at = (self.sent * 8 % RAW_FILE) as u64;
        self.sent += 1;
        let t0 = Instant::now();
        self.file.write_all_at(&payload, at)?;
        self.file.sync_data()?;
        self.a.put("bench/raw/lat", payload).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::time::timeout(Duration::from_secs(5), self.lat_sub.recv_async()).await?.map_err(|e| anyhow::anyhow!("raw subscriber: {e}"))?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// Synchronous small puts, counted at the subscriber: messages/s, and the cores this
    /// process used meanwhile.
    async fn throughput(&mut self, messages: usize) -> anyhow::Result<(f64, f64)> {
        let (t0, c0) = (Instant::now(), cpu_secs());
        for i in 0..messages {
            self.a.put("bench/raw/tp", (i as u64).to_le_bytes().to_vec()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut got = 0usize;
        let mut last = t0;
        while got < messages {
            match tokio::time::timeout(Duration::from_millis(500), self.tp_rx.recv()).await {
                Ok(Some(t)) => {
                    got += 1;
                    last = t;
                }
                _ => break,
            }
        }
        // Both over the time to the last arrival: the wait for stragglers after it is idle.
        let secs = (last - t0).as_secs_f64().max(1e-9);
        Ok((got as f64 / secs, (cpu_secs() - c0) / secs))
    }

    async fn close(self) -> anyhow::Result<()> {
        self.a.close().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        self.b.close().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
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
    let r = nodes[0].0.request(Request::Set { group: "fleet".into(), register: 0.into(), field: "battery".into(), value: json!(1.0), typed: false }).await;
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
async fn wait_for(rx: &mut mpsc::Receiver<Json>, v: f64) -> anyhow::Result<Instant> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.ok().flatten().ok_or_else(|| anyhow::anyhow!("no change event within 10 s"))?;
        if ev["register"] == json!(1) && ev["fields"]["peak_speed"].as_f64() == Some(v) {
            return Ok(Instant::now());
        }
    }
}

/// p50 and p99 of write → remote watch latency, in ms, with the raw baseline's taken in the
/// same loop.
struct Latency {
    pending: [f64; 2],
    raw: [f64; 2],
    /// NaN unless asked for.
    committed: [f64; 2],
}

fn p50_p99(mut v: Vec<f64>) -> [f64; 2] {
    [pct(&mut v, 0.5), pct(&mut v, 0.99)]
}

/// Write → remote watch latency: the pending view, each Spook write alternating with one raw
/// baseline sample so that both meet the same moments of a shared machine; then, if
/// `committed_view`, the committed view.
///
/// Each write waits for the previous one to be seen, as the baseline does. The committed view
/// needs the members' acks, which ride the digest interval, so it is timed in a second loop:
/// an `fdatasync` after tens of milliseconds of idle disk costs about twice one that follows
/// another closely, in Spook and in the baseline alike.
async fn latency(dir: &std::path::Path, raw: &mut RawZenoh, samples: usize, trusted_members: bool, committed_view: bool) -> anyhow::Result<Latency> {
    let (nodes, _) = domain(dir, 2, trusted_members).await?;
    let (a, b) = (&nodes[0].0, &nodes[1].0);
    let (_, mut pending) = b.watch("fleet".into(), spook_core::View::Pending, false, false).await;
    let (_, mut committed) = b.watch("fleet".into(), spook_core::View::Committed, false, false).await;
    let write = |v: f64| async move {
        let t0 = Instant::now();
        let r = a.request(Request::Set { group: "fleet".into(), register: 1.into(), field: "peak_speed".into(), value: json!(v), typed: false }).await;
        anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
        Ok(t0)
    };
    // B writes what it received to its own ledger after showing it to watchers; the next
    // sample (either path) starts once that is done, so that no sample meets the other's disk
    // write (two nodes share one disk here; in a fleet each has its own).
    let b_metrics = b.metrics.clone();
    let b_persisted = |before: u64| {
        let m = b_metrics.clone();
        async move {
            let t = Instant::now();
            while m.ledger_writes() <= before && t.elapsed() < Duration::from_secs(1) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    let (mut lp, mut lr, mut lc) = (Vec::new(), Vec::new(), Vec::new());
    // Max-policy field: every write is a new, larger value. Which goes first alternates.
    for i in 0..samples {
        if i % 2 == 0 {
            lr.push(raw.sample().await?);
        }
        let v = (i + 1) as f64;
        let before = b_metrics.ledger_writes();
        let t0 = write(v).await?;
        lp.push((wait_for(&mut pending, v).await? - t0).as_secs_f64() * 1e3);
        b_persisted(before).await;
        if i % 2 == 1 {
            lr.push(raw.sample().await?);
        }
    }
    for i in 0..if committed_view { samples } else { 0 } {
        let v = (samples + i + 1) as f64;
        let t0 = write(v).await?;
        lc.push((wait_for(&mut committed, v).await? - t0).as_secs_f64() * 1e3);
    }
    stop(nodes).await;
    Ok(Latency { pending: p50_p99(lp), raw: p50_p99(lr), committed: p50_p99(lc) })
}

/// Concurrent writers in the throughput runs.
const CLIENTS: usize = 16;

/// [`CLIENTS`] concurrent writers, each making `per` writes of 100 updates to node `a`: as
/// JSON requests, or through `client`.
async fn concurrent_writes(a: &NodeHandle, client: Option<&spook_client::Client>, per: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (a, cl) = (a.clone(), client.cloned());
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                let x = (k * CLIENTS + c) as f64;
                let value = |r: u32| x + f64::from(r) / 1000.0;
                match &cl {
                    Some(cl) => drop(cl.group("fleet").write_many((0..100u32).map(|r| (r, "pose.translation.x".to_string(), spook_client::Value::F64(value(r))))).await?),
                    None => {
                        let set: Vec<FieldWrite> = (0..100u32).map(|r| FieldWrite { register: r.into(), field: "pose.translation.x".into(), value: json!(value(r)) }).collect();
                        let r = a.request(Request::Write { group: "fleet".into(), set, typed: false }).await;
                        anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Updates/s from one writer to `watchers` nodes, in writes of 100 updates; and CPU cores
/// used by the whole domain meanwhile.
async fn throughput(dir: &std::path::Path, watchers: usize, batches: usize) -> anyhow::Result<(f64, f64)> {
    let (nodes, ids) = domain(dir, watchers + 1, false).await?;
    let a = &nodes[0].0;
    let base = seq_of(a, &ids[0]).await;
    let (t0, c0) = (Instant::now(), cpu_secs());
    // Each client is answered once its write is durable; with many writing at once, the node
    // commits all the writes queued meanwhile with one fsync (group commit).
    let per = batches / CLIENTS;
    concurrent_writes(a, None, per).await?;
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
    // Where the writer's node spent its time: how the group commit came out.
    let m = &a.metrics;
    let (writes, us) = (m.ledger_writes().max(1), m.ledger_write_us_total());
    let frames = m.frames_out.load(std::sync::atomic::Ordering::Relaxed).max(1);
    let checkpoints = m.ledger_checkpoints.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "      writer's node: {writes} ledger writes ({checkpoints} with a checkpoint into redb), {:.0} updates and {:.0} µs each ({:.0}% of the run); {frames} frames out",
        (batches * 100) as f64 / writes as f64,
        us as f64 / writes as f64,
        us as f64 / 1e4 / secs
    );
    // What the prompt acks cost, beside what the deltas themselves do (sealed bytes, all nodes).
    let kind_bytes = |k: usize| nodes.iter().map(|(h, _)| h.metrics.frame_bytes_out[k].load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>() as f64 / (batches * 100) as f64;
    println!("      sealed bytes per update, all nodes: deltas {:.1} B, acks {:.2} B, digests {:.2} B", kind_bytes(0), kind_bytes(5), kind_bytes(1));
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
            set.push(FieldWrite { register: d.into(), field: "pose.translation.x".into(), value: json!(50.0 * a.cos()) });
            set.push(FieldWrite { register: d.into(), field: "pose.translation.y".into(), value: json!(50.0 * a.sin()) });
            set.push(FieldWrite { register: d.into(), field: "pose.translation.z".into(), value: json!(10.0 + f64::from(d % 5)) });
            set.push(FieldWrite { register: d.into(), field: "pose.rotation".into(), value: json!([c, 0.0, 0.0, s]) });
        }
        let r = a.request(Request::Write { group: "fleet".into(), set, typed: false }).await;
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
    println!("[1/6] raw zenoh baseline: {} bare puts", cfg.throughput_batches * 100);
    let mut raw = RawZenoh::open(&sub("raw")?).await?;
    let (zrate, zcpu) = raw.throughput(cfg.throughput_batches * 100).await?;
    println!("[2/6] write -> remote watch latency, {} writes, each beside a raw zenoh put after fsync", cfg.latency_samples);
    let signed = latency(&sub("lat")?, &mut raw, cfg.latency_samples, false, true).await?;
    println!("[3/6] the same in a trusted-members group (frames not signed), pending view");
    let trusted = latency(&sub("lat-trusted")?, &mut raw, cfg.latency_samples, true, false).await?;
    raw.close().await?;
    println!("[4/6] throughput, 1 watcher");
    let (r1, cpu1) = throughput(&sub("tp1")?, 1, cfg.throughput_batches).await?;
    println!("[5/6] throughput, {} watchers", cfg.watchers);
    let (rn, cpun) = throughput(&sub("tpn")?, cfg.watchers, cfg.throughput_batches / 4).await?;
    println!("[6/6] 100 drones' poses at 10 Hz for {} s", cfg.stream_secs);
    let per_update = pose_stream(&sub("poses")?, cfg.stream_secs).await?;
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!("| measurement | Spook | baseline (same loop) | ratio |");
    println!("|---|---|---|---|");
    let row = |what: &str, ms: f64, base: f64| println!("| write → remote watch {what} | {ms:.3} ms | raw zenoh put after fsync {base:.3} ms | {:.2}× |", ms / base);
    let ([p50, p99], [z50, z99]) = (signed.pending, signed.raw);
    row("p50, pending view", p50, z50);
    row("p99, pending view", p99, z99);
    let ([t50, t99], [y50, y99]) = (trusted.pending, trusted.raw);
    row("p50, pending view, trusted-members group", t50, y50);
    row("p99, pending view, trusted-members group", t99, y99);
    let [c50, c99] = signed.committed;
    row("p50, committed view", c50, z50);
    row("p99, committed view", c99, z99);
    println!("| committed view p50 against the pending view's p50 (prompt acks) | {c50:.3} ms | pending view {p50:.3} ms | {:.2}× |", c50 / p50);
    println!("| updates/s, 1 writer → 1 watcher (100 per write) | {r1:.0} ({cpu1:.2} cores) | raw zenoh {zrate:.0} msgs/s ({zcpu:.2} cores) | {:.2}× |", r1 / zrate);
    println!("| updates/s, 1 writer → {} watchers | {rn:.0} ({cpun:.2} cores) | {zrate:.0} msgs/s | {:.2}× |", cfg.watchers, rn / zrate);
    // On a machine with few cores the rate is bounded by CPU per update: the whole domain's
    // (both nodes, zenoh and the writing clients) against raw zenoh's per message.
    let per = |cores: f64, rate: f64| cores / rate * 1e6;
    println!("| CPU per update, 1 → 1 (whole process) | {:.2} µs | raw zenoh {:.2} µs per message | {:.2}× |", per(cpu1, r1), per(zcpu, zrate), per(cpu1, r1) / per(zcpu, zrate));
    println!("| bytes per pose update, 100 drones at 10 Hz | {per_update:.1} B | PoseStamped CDR {POSE_STAMPED_CDR_BYTES} B | {:.2}× |", per_update / POSE_STAMPED_CDR_BYTES);
    Ok(())
}

/// One way to write in the client benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// `NodeHandle::request` with JSON values: the path applications had before the client.
    Json,
    /// `spook-client`, embedded.
    Embedded,
    /// `spook-client` over the control socket.
    Local,
    /// `spook-client` over zenoh (Noise channel).
    Remote,
}

const PATHS: [Path; 4] = [Path::Json, Path::Embedded, Path::Local, Path::Remote];

/// `spook bench --client`: write → remote watch latency and updates/s through `spook-client`
/// in each of its modes, against the JSON requests of before and raw zenoh, in one run. Two
/// nodes in this process; the writes go to node A (embedded, over its control socket, or over
/// zenoh from a remote client), the watch is node B's.
///
/// # Errors
/// A node cannot start, or a write or the watch fails.
pub async fn client_modes(samples: usize, batches: usize) -> anyhow::Result<()> {
    use spook_client::{Client, RemoteOptions};
    let dir = std::env::temp_dir().join(format!("spook-bench-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!("spook bench --client: two nodes in this process on 127.0.0.1 (ledgers in {})", dir.display());
    let ports = [free_port()?, free_port()?];
    let (nodes, ids) = local_domain(&dir, &ports, false, |c| c.timing.digest_interval_ms = 50).await?;
    let (a, b) = (nodes[0].0.clone(), nodes[1].0.clone());
    let r = a.request(Request::Set { group: "fleet".into(), register: 0.into(), field: "battery".into(), value: json!(1.0), typed: false }).await;
    anyhow::ensure!(r["ok"] == json!(true), "first write: {r}");
    let t0 = Instant::now();
    while seq_of(&b, &ids[0].to_string()).await < 1 {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "the nodes did not form a group within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The three ways in, to node A.
    let socket = crate::control::ControlSocket::claim(&dir.join("bench.sock"))?;
    let _server = crate::control::serve(&socket, a.clone())?;
    let me = spook_secure::Identity::generate();
    a.request(Request::Allow { peer: me.id().to_string(), name: "bench".into() }).await;
    let token = a.request(Request::DomainKey { set: None }).await["token"].as_str().unwrap_or_default().to_string();
    let embedded = Client::embedded(std::sync::Arc::new(a.clone()));
    let local = Client::local(socket.path()).await?;
    let opts = RemoteOptions::new(me, &format!("demo{}", ports[0])).node(a.id).connect(&format!("tcp/127.0.0.1:{}", ports[0])).domain_key(crate::domain_key::DomainKey::from_token(&token)?);
    let remote = Client::remote(opts).await?;
    let client = |p: Path| match p {
        Path::Embedded => Some(&embedded),
        Path::Local => Some(&local),
        Path::Remote => Some(&remote),
        Path::Json => None,
    };
    let (_, mut watch) = b.watch("fleet".into(), spook_core::View::Pending, false, false).await;
    std::fs::create_dir_all(dir.join("raw"))?;
    let mut raw = RawZenoh::open(&dir.join("raw")).await?;

    println!("[1/2] write -> remote watch latency: {samples} writes per path, the paths taking turns, each beside a raw zenoh put after fsync");
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    let mut lraw = Vec::new();
    let mut v = 0.0;
    for i in 0..samples {
        for k in 0..PATHS.len() {
            let p = PATHS[(i + k) % PATHS.len()];
            v += 1.0;
            let t0 = Instant::now();
            match client(p) {
                Some(c) => drop(c.group("fleet").set(1, "peak_speed", v).await?),
                None => {
                    let r = a.request(Request::Set { group: "fleet".into(), register: 1.into(), field: "peak_speed".into(), value: json!(v), typed: false }).await;
                    anyhow::ensure!(r["ok"] == json!(true), "write: {r}");
                }
            }
            lat[PATHS.iter().position(|q| *q == p).unwrap_or(0)].push((wait_for(&mut watch, v).await? - t0).as_secs_f64() * 1e3);
        }
        lraw.push(raw.sample().await?);
    }

    println!("[2/2] updates/s: {batches} writes of 100 updates per path from {CLIENTS} concurrent writers, until node B holds them all");
    let mut rates = Vec::new();
    for p in PATHS {
        let base = seq_of(&a, &ids[0].to_string()).await;
        let t0 = Instant::now();
        let per = (batches / CLIENTS).max(1);
        concurrent_writes(&a, client(p), per).await?;
        let want = base + (per * CLIENTS) as u64;
        while seq_of(&b, &ids[0].to_string()).await < want {
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(120), "node B did not receive every write within 120 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rates.push((per * CLIENTS * 100) as f64 / t0.elapsed().as_secs_f64());
    }
    let (zrate, _) = raw.throughput(batches * 100).await?;
    raw.close().await?;
    drop((embedded, local, remote));
    stop(nodes).await;
    socket.release();
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!("| measurement | through the client | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    let json = |q: f64| p50_p99(lat[0].clone())[usize::from(q > 0.5)];
    let zraw = p50_p99(lraw);
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        let j = json(q);
        println!("| write → remote watch {name}, JSON requests (before the client) | {j:.3} ms | raw zenoh put after fsync {:.3} ms | {:.2}× |", zraw[usize::from(q > 0.5)], j / zraw[usize::from(q > 0.5)]);
        for (i, p) in PATHS.iter().enumerate().skip(1) {
            let x = p50_p99(lat[i].clone())[usize::from(q > 0.5)];
            println!("| write → remote watch {name}, client {p:?} | {x:.3} ms | JSON requests {j:.3} ms | {:.2}× |", x / j);
        }
    }
    println!("| updates/s, JSON requests (before the client) | {:.0} | raw zenoh {zrate:.0} msgs/s | {:.2}× |", rates[0], rates[0] / zrate);
    for (i, p) in PATHS.iter().enumerate().skip(1) {
        println!("| updates/s, client {p:?} | {:.0} | JSON requests {:.0} | {:.2}× |", rates[i], rates[0], rates[i] / rates[0]);
    }
    Ok(())
}
