//! `spook-agents`: coordination patterns for robot fleets and AI agents, written once over
//! [`spook_core::api::GroupApi`], so the same code runs against real nodes (`spook-client`)
//! and on simulated replicas (`spook_sim::net`). Today: task [`claims`] with leases and
//! fencing tokens. It depends on the core's types only: no client, no node, no runtime.

pub mod claims;
