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

mod membership_check;
pub mod mc;
pub mod net;
pub mod rng;
mod run;

pub use run::{run, FaultCounts, Outcome, SimConfig};

/// The seeds a randomized test runs: `SPOOK_SEEDS` if set, else `default`. `SPOOK_SEEDS` is
/// a comma-separated list of seeds and ranges (`7`, `1..=10000`, `5..9`). Tests print each
/// seed, so a failure is re-run with `SPOOK_SEEDS=<seed>`.
///
/// ```
/// let seeds = spook_sim::seeds(1..=3);
/// assert!(std::env::var("SPOOK_SEEDS").is_ok() || seeds == vec![1, 2, 3]);
/// assert_eq!(spook_sim::parse_seeds("4, 10..=12,20..22"), Ok(vec![4, 10, 11, 12, 20, 21]));
/// assert!(spook_sim::parse_seeds("1..=3x").is_err());
/// ```
///
/// # Panics
/// If `SPOOK_SEEDS` does not parse, or names no seed: a typo must not run no test at all.
#[must_use]
pub fn seeds(default: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    match std::env::var("SPOOK_SEEDS") {
        Err(_) => default.collect(),
        Ok(s) => match parse_seeds(&s) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => panic!("SPOOK_SEEDS={s:?} names no seed"),
            Err(e) => panic!("SPOOK_SEEDS={s:?}: {e}"),
        },
    }
}

/// Parse a list of seeds and ranges, as [`seeds`] reads `SPOOK_SEEDS`.
///
/// # Errors
/// The first item that is not a number or a range of numbers.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("{x:?} is not a seed (a number, A..=B or A..B)"));
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        if let Some((a, b)) = item.split_once("..=") {
            out.extend(num(a)?..=num(b)?);
        } else if let Some((a, b)) = item.split_once("..") {
            out.extend(num(a)?..num(b)?);
        } else {
            out.push(num(item)?);
        }
    }
    Ok(out)
}
