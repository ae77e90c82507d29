//! `spook-sim`: a seeded, deterministic network simulator of `spook-core` replicas on a
//! virtual clock, in the manner of TigerBeetle's VOPR. Per-link loss, duplication, reordering
//! and delay; scheduled partitions and heals; crash and restart (a restarted replica keeps
//! exactly what the durability contract persisted); clock skew. A run is a pure function of
//! its seed: the same seed gives the same trace hash, in any process.
//!
//! A run has a fault phase (writes and faults) and a liveness phase (faults stop, writes stop;
//! every replica must converge to the oracle's state, the merge of every durable delta, within
//! a bound). Convergence comes from the protocol only: nothing copies state at the end.
//!
//! [`net`] hosts application code instead of a built-in workload: each member of a group is a
//! [`net::SimGroup`], the same `GroupApi` a client's group offers, so code written over that
//! trait runs here on the virtual clock and the link model.
//!
//! Depends on `spook-core` only: no tokio, no real clock, no OS randomness.

pub mod mc;
pub mod net;
pub mod rng;
mod run;

pub use run::{run, FaultCounts, Outcome, SimConfig};

/// The seeds a randomized test runs: `SPOOK_SEEDS` (comma-separated) if set, else `default`.
/// Tests print each seed, so a failure is re-run with `SPOOK_SEEDS=<seed>`.
///
/// ```
/// let seeds = spook_sim::seeds(1..=3);
/// assert!(std::env::var("SPOOK_SEEDS").is_ok() || seeds == vec![1, 2, 3]);
/// ```
#[must_use]
pub fn seeds(default: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    std::env::var("SPOOK_SEEDS").ok().map_or_else(|| default.collect(), |s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
}
