//! `spook-node`: the product people run. It drives the sans-IO core (`spook-core`), the secure
//! channel (`spook-secure`) and the ledger (`spook-ledger`) over zenoh, on tokio: the `spookd`
//! daemon, the `spook` CLI, the TOML configuration, the control protocol and the metrics
//! endpoint. Protocol decisions stay in the core; this crate only moves bytes, time and
//! durability between the core and the world.

pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod domain_key;
pub mod embedded;
mod hello_budget;
pub mod metrics;
pub mod multicast;
pub mod node;
pub mod pairing;
pub mod refusal;
pub mod renewal_check;
pub mod session;
mod watchers;
pub mod zenoh_noise;
pub mod values;

pub use config::Config;
pub use node::{start, NodeHandle};
