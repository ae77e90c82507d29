//! `spook-relay`: a user-space UDP relay that impairs traffic (loss, duplication, delay and
//! the reordering that jitter brings), for the network-namespace tests and benchmarks on
//! kernels without the netem qdisc. It owns two things: a deterministic, sans-IO impairment
//! [`Schedule`] that turns "a datagram arrived at `now_ms`" into a [`Verdict`] (when to
//! deliver it: never, once or twice), reproducible from an [`Impairment`]'s seed and the
//! call sequence alone; and a thin shell, [`Relay::spawn`], that proxies UDP between clients
//! and one upstream with std threads and sockets, one `Schedule` per client and direction.
//!
//! It must not depend on anything but std: no async runtime, no other spook crate, no
//! crates.io dependency, so it builds alone and fast wherever a test needs it. The schedule
//! reads no clock and touches no socket; time is always an argument.
//!
//! Start reading at [`Impairment`] (the knobs), then [`Schedule::on_datagram`] (the
//! decision), then [`Relay`] (the proxy) and `src/bin/spook-relay.rs` (the command line).

mod impairment;
mod relay;
mod rng;
mod schedule;

pub use impairment::{Impairment, ImpairmentError, MAX_DELAY_MS};
pub use relay::{DirectionStats, Limits, Relay, RelayHandle, RelayStats, MAX_DATAGRAM};
pub use schedule::{Schedule, ScheduleStats, Verdict};
