//! Benchmarks that run Spook and the baselines — `yrs`, `automerge`, `loro`
//! and a full-message ROS 2 `PoseStamped` stream — on one shared, seeded
//! workload: a fleet of entities with eight `f64` fields each, a stream of
//! single-field updates, and two divergent update sets to heal after a
//! partition.

pub mod baselines;
pub mod workload;
pub mod spook_side;
