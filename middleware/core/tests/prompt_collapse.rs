//! Prompt collapse: a replica sends its ack as soon as it moves over a delta
//! (`GroupConfig::prompt_ack_ms`), so the committed view follows the pending view within a
//! few link delays, not a digest period; acks are coalesced (not one per delta) and an idle
//! group sends none.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

/// Three replicas on an instant, lossless network with instant durability, stepped 1 ms at
/// a time; every frame sent is counted by kind.
struct Net {
    rs: Vec<Replica>,
    now: u64,
    acks: usize,
    digests: usize,
    decohered: usize,
}

impl Net {
    fn new(prompt_ack_ms: u64) -> Self {
        let members = origins(3);
        let mut cfg = config(&members);
        cfg.prompt_ack_ms = prompt_ack_ms;
        cfg.digest_interval_ms = 250;
        let now = GENESIS + 10;
        let rs = members.iter().map(|m| Replica::new(*m, cfg.clone(), now)).collect();
        Net { rs, now, acks: 0, digests: 0, decohered: 0 }
    }

    /// Persist, send and deliver until nothing moves, within the current millisecond.
    fn quiesce(&mut self) {
        loop {
            let mut frames = Vec::new();
            for i in 0..self.rs.len() {
                let r = &mut self.rs[i];
                while let Some(p) = r.poll_persist() {
                    r.handle_persisted(p.id, self.now);
                }
                while let Some(t) = r.poll_transmit() {
                    match t.kind {
                        FrameKind::Ack => self.acks += 1,
                        FrameKind::Digest => self.digests += 1,
                        _ => {}
                    }
                    frames.push((i, t));
                }
                while let Some(e) = r.poll_event() {
                    self.decohered += usize::from(matches!(e, Event::Decohered(_)));
                }
            }
            if frames.is_empty() {
                return;
            }
            for (from, t) in frames {
                let sender = self.rs[from].me();
                for (j, r) in self.rs.iter_mut().enumerate() {
                    let to_j = match t.dest {
                        Dest::Members => j != from,
                        Dest::Peer(p) => p == r.me(),
                    };
                    if to_j {
                        r.handle_frame(sender, &t.bytes, self.now);
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        self.now += 1;
        for r in &mut self.rs {
            if r.poll_timeout() <= self.now {
                r.handle_timeout(self.now);
            }
        }
        self.quiesce();
    }

    fn committed_everywhere(&self, reg: RegisterId, v: f64) -> bool {
        self.rs.iter().all(|r| r.get(View::Committed, reg, FieldId(0)) == Some(Value::F64(v)))
    }

    /// Write at replica 0 and step until every replica committed it: the milliseconds taken.
    fn write_and_time(&mut self, reg: RegisterId, v: f64) -> u64 {
        let t0 = self.now;
        self.rs[0].set(self.now, reg, FieldId(0), Value::F64(v)).unwrap();
        self.quiesce();
        for _ in 0..2_000 {
            if self.committed_everywhere(reg, v) {
                return self.now - t0;
            }
            self.step();
        }
        panic!("not committed everywhere within 2 s");
    }
}

#[test]
fn a_write_commits_everywhere_within_a_few_ms_not_a_digest_period() {
    for (prompt, lo, hi) in [(1, 0, 3), (0, 200, 600)] {
        let mut net = Net::new(prompt);
        for _ in 0..500 {
            net.step();
        }
        // Just after a digest round, so that without prompt acks the next one is far.
        while net.rs[0].poll_timeout() != net.now + 250 {
            net.step();
        }
        net.step();
        let took = net.write_and_time(RegisterId(1), 2.5);
        println!("prompt_ack_ms {prompt}: committed at all three replicas {took} ms after the write");
        assert!((lo..=hi).contains(&took), "prompt_ack_ms {prompt}: {took} ms, expected {lo}..={hi}");
    }
}

#[test]
fn acks_are_coalesced_per_batch_and_an_idle_group_sends_none() {
    let mut net = Net::new(1);
    for _ in 0..300 {
        net.step();
    }
    // 100 deltas in one batch: a handful of ack frames in all, not one per delta.
    let before = net.acks;
    for k in 0..100 {
        net.rs[0].set(net.now, RegisterId(k), FieldId(0), Value::F64(f64::from(k))).unwrap();
    }
    net.quiesce();
    for _ in 0..10 {
        net.step();
    }
    assert!(net.committed_everywhere(RegisterId(99), 99.0), "committed within 10 ms");
    let per_batch = net.acks - before;
    println!("ack frames for a batch of 100 deltas, all three replicas: {per_batch}");
    assert!((2..=9).contains(&per_batch), "{per_batch} ack frames for one batch");

    // Idle: no prompt acks; after the first digest rounds show every peer in step, a member's
    // ack alone stands in for each digest (lean anti-entropy), and nobody looks silent.
    let prompt: u64 = net.rs.iter().map(|r| r.stats().acks_sent).sum();
    // (Acks still grow for up to a durable-mark window after the last write.)
    for _ in 0..3_000 {
        net.step();
    }
    assert_eq!(net.rs.iter().map(|r| r.stats().acks_sent).sum::<u64>(), prompt, "an idle group sends no prompt acks");
    let (digests, skipped) = (net.digests, net.rs.iter().map(|r| r.stats().digests_skipped).sum::<u64>());
    for _ in 0..2_000 {
        net.step();
    }
    let skipped = net.rs.iter().map(|r| r.stats().digests_skipped).sum::<u64>() - skipped;
    println!("idle 2 s: {} full digests, {skipped} replaced by an ack alone", net.digests - digests);
    assert_eq!(net.digests, digests, "nothing changed: no full digest");
    assert!(skipped >= 3 * 7, "each replica's rounds go on as acks: {skipped}");
    assert_eq!(net.decohered, 0, "a live member never looks silent");

    // A write: full digests again where the state moved, and everyone in step.
    net.write_and_time(RegisterId(7), 7.0);
    for _ in 0..600 {
        net.step();
    }
    assert!(net.digests > digests, "a change brings the digests back");
    assert!(net.rs.iter().all(|r| r.state_hash() == net.rs[0].state_hash()));
}
