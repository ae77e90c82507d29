//! The simulator's membership invariant (DESIGN.md, "Removals need a majority that hears"):
//! every removal that took effect is explained by a fault between the member removed and its
//! proposer (a crash of either, or a partition between them, within the decoherence bound
//! before it), and a partition explains it only if the proposer's side held a majority of the
//! members in force. Any other removal is a membership change a fleet would see as a flap.

use spook_core::{EndpointId, Removal};

/// The faults of a run, in world time.
#[derive(Default)]
pub(crate) struct FaultHistory {
    /// (node, down from, back at; `u64::MAX` while down).
    crashes: Vec<(usize, u64, u64)>,
    /// (from, until; `u64::MAX` while in force, side of each node).
    partitions: Vec<(u64, u64, Vec<u8>)>,
}

impl FaultHistory {
    pub(crate) fn crashed(&mut self, node: usize, now: u64) {
        self.crashes.push((node, now, u64::MAX));
    }

    pub(crate) fn restarted(&mut self, node: usize, now: u64) {
        if let Some(c) = self.crashes.iter_mut().rev().find(|c| c.0 == node && c.2 == u64::MAX) {
            c.2 = now;
        }
    }

    pub(crate) fn partitioned(&mut self, side: &[u8], now: u64) {
        self.healed(now);
        self.partitions.push((now, u64::MAX, side.to_vec()));
    }

    pub(crate) fn healed(&mut self, now: u64) {
        for p in self.partitions.iter_mut().filter(|p| p.1 == u64::MAX) {
            p.1 = now;
        }
    }

    /// The removals no fault explains, each described. `ids` and `skews` are the nodes' ids
    /// and clock offsets (a stamp is its proposer's clock); `window` is how long before a
    /// removal a fault can have caused it (the decoherence bound plus slack).
    pub(crate) fn judge(&self, removals: &[Removal], ids: &[EndpointId], skews: &[i64], window: u64) -> Vec<String> {
        let index = |e: &EndpointId| ids.iter().position(|x| x == e);
        let short = |e: &EndpointId| e.to_string()[..4].to_string();
        let mut bad = Vec::new();
        for r in removals.iter().filter(|r| !r.forced) {
            let Some(m) = index(&r.member) else { continue };
            let by = r.by.as_ref().and_then(index);
            let t = u64::try_from(i64::try_from(r.stamp.ms()).unwrap_or(i64::MAX) - by.map_or(0, |b| skews[b])).unwrap_or(0);
            let (from, until) = (t.saturating_sub(window), t.saturating_add(1_000));
            let crashed = |n: usize| self.crashes.iter().any(|c| c.0 == n && c.1 <= until && c.2 >= from);
            if crashed(m) || by.is_some_and(crashed) {
                continue;
            }
            let cuts: Vec<&Vec<u8>> = self
                .partitions
                .iter()
                .filter(|p| p.0 <= until && p.1 >= from)
                .map(|p| &p.2)
                .filter(|side| by.is_none_or(|b| side[b] != side[m]))
                .collect();
            let who = format!("node {m} ({}) removed by {} at ~{t} ms", short(&r.member), by.map_or("consensus".into(), |b| format!("node {b}")));
            if cuts.is_empty() {
                bad.push(format!("{who} with no crash or partition between them"));
                continue;
            }
            if let Some(b) = by {
                let majority = cuts.iter().any(|side| {
                    let mine = r.in_force.iter().filter(|e| index(e).is_some_and(|i| side[i] == side[b])).count();
                    2 * mine > r.in_force.len()
                });
                if !majority {
                    let heard: Vec<usize> = r.heard.iter().filter_map(index).collect();
                    bad.push(format!("{who}, whose side was not a majority of the {} in force (it heard {heard:?}; sides {cuts:?})", r.in_force.len()));
                }
            }
        }
        bad
    }
}
