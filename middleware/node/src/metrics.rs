//! Counters a fleet operator reads, in Prometheus text format, served over plain HTTP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds (ms) of the commit latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000];
/// Upper bounds (µs) of the ledger write histogram buckets: an `fdatasync` is sub-millisecond
/// on a good disk and tens of milliseconds on a struggling one.
pub const LEDGER_BUCKETS_US: [u64; 10] = [100, 250, 500, 1000, 2500, 5000, 10_000, 50_000, 250_000, 1_000_000];

/// A Prometheus histogram with fixed bounds.
struct Histogram {
    bounds: &'static [u64],
    /// One count per bound, then the overflow.
    counts: Mutex<Vec<u64>>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64]) -> Self {
        Histogram { bounds, counts: Mutex::new(vec![0; bounds.len() + 1]), sum: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    fn observe(&self, v: u64) {
        if let Ok(mut h) = self.counts.lock() {
            let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
            h[i] += 1;
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let h = self.counts.lock().map(|h| h.clone()).unwrap_or_default();
        let mut cum = 0;
        for (b, n) in self.bounds.iter().zip(&h) {
            cum += n;
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += h.get(self.bounds.len()).copied().unwrap_or(0);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(s, "{name}_sum {}", self.sum.load(Ordering::Relaxed));
        let _ = writeln!(s, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// Node-wide counters. Cheap to update from the node task; read by the HTTP endpoint.
pub struct Metrics {
    /// Group frames published.
    pub frames_out: AtomicU64,
    /// Group frames this node signed (all but those of `trusted-members` groups).
    pub frames_signed: AtomicU64,
    /// Of those, signed with a nonce made ahead of time (the signature off the write path).
    pub frames_signed_ahead: AtomicU64,
    /// Frames sent once on the multicast group for every member (`[zenoh] multicast`).
    pub frames_multicast: AtomicU64,
    /// Sealed group-frame bytes sent, by frame kind ([`FRAME_KINDS`] order).
    pub frame_bytes_out: [AtomicU64; 6],
    /// Group frames received and opened.
    pub frames_in: AtomicU64,
    /// Bytes published (group and pair messages).
    pub bytes_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Own deltas sent (counted in Deltas frames).
    pub deltas_out: AtomicU64,
    /// Deltas received from others.
    pub deltas_in: AtomicU64,
    /// State messages applied (re-alignments).
    pub realignments: AtomicU64,
    /// Members this node proposed to prune.
    pub decoherence_events: AtomicU64,
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Local writes refused.
    pub writes_refused: AtomicU64,
    /// Fresh handshakes with a peer whose channels had been silent (see `PAIR_SILENCE_MS`).
    pub pair_repairs: AtomicU64,
    /// Times the subscriptions were declared again (a member was unreachable).
    pub redeclarations: AtomicU64,
    /// zenoh sessions dropped and opened afresh (`spook reconnect`).
    pub renewals: AtomicU64,
    /// Publications dropped by the fault injector (`[faults] drop_pct`).
    pub injected_drops: AtomicU64,
    /// Digests and wants sent as zenoh queries.
    pub sync_queries_out: AtomicU64,
    /// Frames sent as replies to another member's digest or want query.
    pub sync_replies_out: AtomicU64,
    /// Checkpoints of the ledger's commit log into redb (copied from the ledger).
    pub ledger_checkpoints: AtomicU64,
    /// Remote watches being served now (a gauge).
    pub remote_watches: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    commit_latency: Histogram,
    ledger_write: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Metrics {
            frames_out: z(),
            frames_signed: z(),
            frames_signed_ahead: z(),
            frames_multicast: z(),
            frame_bytes_out: [z(), z(), z(), z(), z(), z()],
            frames_in: z(),
            bytes_out: z(),
            bytes_in: z(),
            deltas_out: z(),
            deltas_in: z(),
            realignments: z(),
            decoherence_events: z(),
            handshakes: z(),
            writes_refused: z(),
            pair_repairs: z(),
            redeclarations: z(),
            renewals: z(),
            injected_drops: z(),
            sync_queries_out: z(),
            sync_replies_out: z(),
            ledger_checkpoints: z(),
            remote_watches: z(),
            rejected: Mutex::default(),
            commit_latency: Histogram::new(&LATENCY_BUCKETS_MS),
            ledger_write: Histogram::new(&LEDGER_BUCKETS_US),
        }
    }
}

impl Metrics {
    /// A shared, zeroed set.
    #[must_use]
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Count a rejected frame or message by reason (a short, stable label).
    pub fn reject(&self, reason: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            // No allocation for a reason seen before: a flood counts at the cost of a lookup.
            match m.get_mut(reason) {
                Some(n) => *n += 1,
                None => drop(m.insert(reason.to_string(), 1)),
            }
        }
    }

    /// Rejections by reason.
    #[must_use]
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Record one commit latency (local write to committed).
    pub fn observe_commit_ms(&self, ms: u64) {
        self.commit_latency.observe(ms);
    }

    /// Durable ledger writes so far.
    #[must_use]
    pub fn ledger_writes(&self) -> u64 {
        self.ledger_write.count.load(Ordering::Relaxed)
    }

    /// Microseconds spent in durable ledger writes so far.
    #[must_use]
    pub fn ledger_write_us_total(&self) -> u64 {
        self.ledger_write.sum.load(Ordering::Relaxed)
    }

    /// Record one durable ledger write (the commit log's write and sync, or a checkpoint with
    /// it), from the node's side.
    pub fn observe_ledger_write_us(&self, us: u64) {
        self.ledger_write.observe(us);
    }

    /// Count a sealed group frame of `kind` and `len` bytes sent.
    pub fn frame_out(&self, kind: spook_core::FrameKind, len: usize) {
        let i = match kind {
            spook_core::FrameKind::Deltas => 0,
            spook_core::FrameKind::Digest => 1,
            spook_core::FrameKind::Want => 2,
            spook_core::FrameKind::State => 3,
            spook_core::FrameKind::Paxos => 4,
            spook_core::FrameKind::Ack => 5,
        };
        Self::add(&self.frame_bytes_out[i], len as u64);
    }

    /// Add to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::new();
        let counters = [
            ("spook_frames_out_total", "Group frames published", &self.frames_out),
            ("spook_frames_signed_total", "Group frames sealed with this node's Ed25519 signature (none in trusted-members groups)", &self.frames_signed),
            ("spook_frames_signed_ahead_total", "Of those, signed with a nonce made ahead of time while idle (the costly half of the signature off the write path)", &self.frames_signed_ahead),
            ("spook_frames_multicast_total", "Frames sent once on the multicast group for every member of a group, rather than once per member", &self.frames_multicast),
            ("spook_frames_in_total", "Group frames received and opened", &self.frames_in),
            ("spook_bytes_out_total", "Bytes published", &self.bytes_out),
            ("spook_bytes_in_total", "Bytes received", &self.bytes_in),
            ("spook_pair_repairs_total", "Fresh handshakes with a peer whose pair channels had gone silent", &self.pair_repairs),
            ("spook_redeclarations_total", "Subscriptions declared again while a member was unreachable", &self.redeclarations),
            ("spook_zenoh_renewals_total", "zenoh sessions dropped and opened afresh (`spook reconnect`)", &self.renewals),
            ("spook_injected_drops_total", "Publications dropped by fault injection ([faults])", &self.injected_drops),
            ("spook_sync_queries_out_total", "Digests and wants sent as zenoh queries", &self.sync_queries_out),
            ("spook_sync_replies_out_total", "Frames sent as replies to a member's digest or want query", &self.sync_replies_out),
            ("spook_deltas_out_total", "Own deltas sent", &self.deltas_out),
            ("spook_deltas_in_total", "Deltas received from other members", &self.deltas_in),
            ("spook_realignments_total", "State messages applied (re-alignments)", &self.realignments),
            ("spook_decoherence_events_total", "Members this node saw decohere (silent past their timeout; removed only where a majority hears)", &self.decoherence_events),
            ("spook_handshakes_total", "Pair handshakes completed", &self.handshakes),
            ("spook_writes_refused_total", "Local writes refused", &self.writes_refused),
            ("spook_ledger_checkpoints_total", "Checkpoints of the ledger's commit log into redb", &self.ledger_checkpoints),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            s,
            "# HELP spook_remote_watches Remote watches served now (one ends when its client has been silent for the watch idle time)\n# TYPE spook_remote_watches gauge\nspook_remote_watches {}",
            self.remote_watches.load(Ordering::Relaxed)
        );
        let _ = writeln!(s, "# HELP spook_frame_bytes_out_total Sealed group-frame bytes sent, by frame kind (what the group's traffic is made of)\n# TYPE spook_frame_bytes_out_total counter");
        for (kind, c) in FRAME_KINDS.iter().zip(&self.frame_bytes_out) {
            let _ = writeln!(s, "spook_frame_bytes_out_total{{kind=\"{kind}\"}} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(s, "# HELP spook_rejected_total Frames and messages rejected, by reason\n# TYPE spook_rejected_total counter");
        for (reason, n) in self.rejected() {
            let _ = writeln!(s, "spook_rejected_total{{reason=\"{reason}\"}} {n}");
        }
        self.commit_latency.render(&mut s, "spook_commit_latency_ms", "Local write to committed");
        self.ledger_write.render(&mut s, "spook_ledger_write_us", "Durable ledger writes (commit log write and fdatasync, with a checkpoint when one is due), microseconds");
        s
    }
}

/// The frame kinds of `spook_frame_bytes_out_total`, as labelled.
pub const FRAME_KINDS: [&str; 6] = ["deltas", "digest", "want", "state", "paxos", "ack"];

/// Serve `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") || req.starts_with("GET / ") {
                ("200 OK", m.render())
            } else {
                ("404 Not Found", "try GET /metrics\n".to_string())
            };
            let resp = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for ms in [1, 3, 3, 40, 20_000] {
            m.observe_commit_ms(ms);
        }
        m.reject("unknown-key");
        let t = m.render();
        assert!(t.contains("spook_commit_latency_ms_bucket{le=\"1\"} 1"), "{t}");
        assert!(t.contains("spook_commit_latency_ms_bucket{le=\"5\"} 3"), "{t}");
        assert!(t.contains("spook_commit_latency_ms_bucket{le=\"50\"} 4"), "{t}");
        assert!(t.contains("spook_commit_latency_ms_bucket{le=\"+Inf\"} 5"), "{t}");
        assert!(t.contains("spook_commit_latency_ms_count 5"), "{t}");
        assert!(t.contains("spook_rejected_total{reason=\"unknown-key\"} 1"), "{t}");
        m.observe_ledger_write_us(180);
        m.observe_ledger_write_us(2_000_000);
        let t = m.render();
        assert!(t.contains("spook_ledger_write_us_bucket{le=\"100\"} 0"), "{t}");
        assert!(t.contains("spook_ledger_write_us_bucket{le=\"250\"} 1"), "{t}");
        assert!(t.contains("spook_ledger_write_us_bucket{le=\"1000000\"} 1"), "{t}");
        assert!(t.contains("spook_ledger_write_us_bucket{le=\"+Inf\"} 2"), "{t}");
        assert!(t.contains("spook_ledger_write_us_sum 2000180"), "{t}");
        assert!(t.contains("spook_commit_latency_ms_count 5"), "the other histogram is untouched: {t}");
    }
}
