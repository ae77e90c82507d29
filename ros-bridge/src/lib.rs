//! `spook-ros`: the ROS 2 bridge. ROS topics meet Spook registers as a mapping file says
//! ([`mapping`]): messages convert field by field where the type is known ([`msgs`], over
//! its own [`cdr`] codec) or travel as raw CDR, and [`bridge`] decides what to write and what
//! to publish, with echo prevention by origin. The bridge reaches its node only through
//! `spook-client` (an embedded node or a local `spookd`), and its logic runs over
//! `GroupApi`, so it is tested on the simulator too.
//!
//! The ROS side ([`ros`], rcl through `r2r`) is behind the cargo feature `ros2`, off by
//! default: without it this crate builds and tests with no ROS installed. Start reading at
//! [`bridge::Bridge`].

pub mod bridge;
pub mod cdr;
pub mod mapping;
pub mod msgs;
#[cfg(feature = "ros2")]
pub mod ros;
