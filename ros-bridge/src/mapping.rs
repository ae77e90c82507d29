//! The mapping file: which ROS topics meet which registers, in which direction, how often,
//! with which QoS.
//!
//! ```toml
//! group = "robots"            # the Spook group (created with spook_ros::msgs::schema())
//! bridge = "robot-a"          # this bridge's name: the origin of what it writes
//!
//! [[topic]]
//! name = "/robot_a/pose"
//! type = "geometry_msgs/msg/PoseStamped"
//! register = "robot-a.pose"   # a register name or id
//! direction = "both"          # to-spook | to-ros | both   (default both)
//! mode = "latest"             # latest: the newest value | log: every message (default latest)
//! rate_hz = 10                # latest topics: at most this many writes a second (0: no limit)
//! qos = { reliability = "reliable", durability = "volatile", depth = 10 }
//! ```

use std::collections::BTreeSet;

use serde::Deserialize;
use spook_client::proto::Reg;

use crate::msgs::Kind;

/// Which way a topic travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// ROS messages are written into Spook.
    ToSpook,
    /// Spook changes are published on ROS.
    ToRos,
    /// Both.
    Both,
}

impl Direction {
    /// Messages from ROS go into Spook.
    #[must_use]
    pub fn to_spook(self) -> bool {
        matches!(self, Direction::ToSpook | Direction::Both)
    }

    /// Changes in Spook go out on ROS.
    #[must_use]
    pub fn to_ros(self) -> bool {
        matches!(self, Direction::ToRos | Direction::Both)
    }
}

/// What a topic's register keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The newest message (last writer wins): a late subscriber gets the current value, a
    /// message may be superseded before it travels, none is delivered twice.
    Latest,
    /// Every message, in the log's order: each is delivered once on every other side.
    Log,
}

/// Reliability of a topic's ROS endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Reliability {
    /// Retransmitted (ROS's default).
    #[default]
    Reliable,
    /// Sent once (sensor data).
    BestEffort,
}

/// Durability of a topic's ROS endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Only live messages (ROS's default).
    #[default]
    Volatile,
    /// The publisher keeps its last `depth` messages for late subscribers.
    TransientLocal,
}

/// A topic's QoS profile (ROS's defaults: reliable, volatile, keep last 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    /// Reliable or best effort.
    #[serde(default)]
    pub reliability: Reliability,
    /// Volatile or transient local.
    #[serde(default)]
    pub durability: Durability,
    /// History depth (keep last).
    #[serde(default = "default_depth")]
    pub depth: usize,
}

fn default_depth() -> usize {
    10
}

impl Default for Qos {
    fn default() -> Qos {
        Qos { reliability: Reliability::default(), durability: Durability::default(), depth: default_depth() }
    }
}

/// One topic of the mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Topic {
    /// The ROS topic (`/robot_a/pose`).
    pub name: String,
    /// The ROS type (`geometry_msgs/msg/PoseStamped`).
    pub ros_type: String,
    /// How it converts (field by field, or raw CDR).
    pub kind: Kind,
    /// The register it meets.
    pub register: Reg,
    /// Which way it travels.
    pub direction: Direction,
    /// What the register keeps.
    pub mode: Mode,
    /// At most this many writes a second into Spook (latest topics; 0: no limit).
    pub rate_hz: f64,
    /// Its QoS.
    pub qos: Qos,
}

/// A bridge's whole mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// The Spook group.
    pub group: String,
    /// This bridge's name: the origin of what it writes.
    pub bridge: String,
    /// The topics.
    pub topics: Vec<Topic>,
}

/// A mapping file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Not TOML, or not of the documented form.
    #[error("mapping: {0}")]
    Toml(String),
    /// A topic that cannot be bridged as given.
    #[error("mapping, topic {topic:?}: {why}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why.
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    group: String,
    bridge: String,
    #[serde(default)]
    topic: Vec<TopicFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    name: String,
    #[serde(rename = "type")]
    ros_type: String,
    register: Reg,
    #[serde(default = "both")]
    direction: Direction,
    #[serde(default = "latest")]
    mode: Mode,
    #[serde(default)]
    rate_hz: f64,
    #[serde(default)]
    qos: Qos,
}

fn both() -> Direction {
    Direction::Both
}

fn latest() -> Mode {
    Mode::Latest
}

impl Mapping {
    /// Read a mapping file's text.
    ///
    /// ```
    /// let m = spook_ros::mapping::Mapping::from_toml(r#"
    ///     group = "robots"
    ///     bridge = "robot-a"
    ///     [[topic]]
    ///     name = "/chatter"
    ///     type = "std_msgs/msg/String"
    ///     register = "chatter"
    ///     mode = "log"
    /// "#).unwrap();
    /// assert_eq!(m.topics[0].mode, spook_ros::mapping::Mode::Log);
    /// assert!(spook_ros::mapping::Mapping::from_toml("group = 1").is_err());
    /// ```
    ///
    /// # Errors
    /// Bad TOML, an unknown key, or a topic that cannot be bridged as given.
    pub fn from_toml(text: &str) -> Result<Mapping, MappingError> {
        let f: File = toml::from_str(text).map_err(|e| MappingError::Toml(e.to_string()))?;
        if f.group.is_empty() || f.bridge.is_empty() {
            return Err(MappingError::Toml("`group` and `bridge` must not be empty".into()));
        }
        let mut seen = BTreeSet::new();
        let mut topics = Vec::with_capacity(f.topic.len());
        for t in f.topic {
            let bad = |why: String| MappingError::Topic { topic: t.name.clone(), why };
            if !t.name.starts_with('/') || t.name.len() < 2 {
                return Err(bad("a topic name starts with / (an absolute name)".into()));
            }
            if !seen.insert(t.name.clone()) {
                return Err(bad("mapped twice".into()));
            }
            if t.ros_type.split('/').count() != 3 {
                return Err(bad(format!("type {:?}: expected package/msg/Name", t.ros_type)));
            }
            if !(t.rate_hz >= 0.0 && t.rate_hz.is_finite()) {
                return Err(bad(format!("rate_hz {} is not a rate", t.rate_hz)));
            }
            if t.mode == Mode::Log && t.rate_hz > 0.0 {
                return Err(bad("a log topic keeps every message: rate_hz applies to latest topics only".into()));
            }
            if t.qos.depth == 0 {
                return Err(bad("qos depth must be at least 1".into()));
            }
            topics.push(Topic { kind: Kind::of(&t.ros_type), name: t.name, ros_type: t.ros_type, register: t.register, direction: t.direction, mode: t.mode, rate_hz: t.rate_hz, qos: t.qos });
        }
        Ok(Mapping { group: f.group, bridge: f.bridge, topics })
    }

    /// Read a mapping file.
    ///
    /// # Errors
    /// The file cannot be read, or [`Mapping::from_toml`]'s.
    pub fn load(path: &std::path::Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingError::Toml(format!("{}: {e}", path.display())))?;
        Mapping::from_toml(&text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEAD: &str = "group = \"g\"\nbridge = \"b\"\n";

    fn topic(extra: &str) -> String {
        format!("{HEAD}[[topic]]\nname = \"/t\"\ntype = \"std_msgs/msg/String\"\nregister = 3\n{extra}")
    }

    #[test]
    fn defaults_and_every_bad_topic_is_named() {
        let m = Mapping::from_toml(&topic("")).unwrap();
        let t = &m.topics[0];
        assert_eq!((t.direction, t.mode, t.rate_hz, t.qos, t.register.clone()), (Direction::Both, Mode::Latest, 0.0, Qos::default(), Reg::Id(3)));
        for (extra, says) in [
            ("mode = \"log\"\nrate_hz = 5", "rate_hz applies to latest"),
            ("rate_hz = -1", "not a rate"),
            ("direction = \"sideways\"", "sideways"),
            ("qos = { depth = 0 }", "depth"),
            ("qos = { reliable = true }", "unknown field"),
            ("colour = 1", "unknown field"),
        ] {
            let e = Mapping::from_toml(&topic(extra)).unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let twice = format!("{}[[topic]]\nname = \"/t\"\ntype = \"std_msgs/msg/String\"\nregister = 4\n", topic(""));
        assert!(Mapping::from_toml(&twice).unwrap_err().to_string().contains("mapped twice"));
        let relative = topic("").replace("\"/t\"", "\"t\"");
        assert!(Mapping::from_toml(&relative).unwrap_err().to_string().contains("starts with /"));
        let bad_type = topic("").replace("std_msgs/msg/String", "String");
        assert!(Mapping::from_toml(&bad_type).unwrap_err().to_string().contains("package/msg/Name"));
    }
}
