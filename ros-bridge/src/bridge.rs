//! The bridge's decisions, without ROS and without a node: a ROS message becomes the typed
//! fields to write (a pose is one `pose` field beside its stamp and frame, not a blob), a
//! change in Spook becomes the messages to publish, and [`drive`] runs both against any
//! [`GroupApi`].
//!
//! A message's fields are written together, all of them, in one delta: fields merge one by
//! one (last writer wins), so a delta that left out a field it thought unchanged could leave
//! a register holding one bridge's pose with another's frame and origin when two bridges
//! write at once.
//!
//! Echo prevention is by origin, never by payload. Every message the bridge writes carries
//! its origin (the bridge's name) and the origin's number for it (`msg_seq`); a change whose
//! origin is this bridge is never published back, and one message, named by (origin,
//! msg_seq), is published at most once. Two identical messages are two messages: both travel.

use std::collections::{BTreeMap, BTreeSet};

use spook_core::api::{Change, Event, Fields, GroupApi, WatchStream};
use spook_core::{RegisterId, Schema, Value, View};

use crate::mapping::{Mapping, Mode, Topic};
use crate::msgs::{field, ConvertError, Msg};

/// Why a message was not bridged. The message is dropped; nothing else is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BridgeError {
    /// A topic the mapping does not carry into Spook.
    #[error("topic {0:?} is not mapped into Spook")]
    Unmapped(String),
    /// Bytes that are not a message of the topic's type.
    #[error("topic {topic:?}: {error}")]
    Malformed {
        /// The topic.
        topic: String,
        /// Why.
        error: crate::cdr::CdrError,
    },
    /// A message that does not convert.
    #[error("topic {topic:?}: {error}")]
    Convert {
        /// The topic.
        topic: String,
        /// Why.
        error: ConvertError,
    },
    /// Two topics on one register.
    #[error("topics {0:?} and {1:?} map to the same register")]
    SharedRegister(String, String),
}

struct Route {
    topic: Topic,
    register: RegisterId,
    /// When it last wrote (ms), for the rate limit; and the newest message held back.
    last_write_ms: Option<u64>,
    held: Option<Fields>,
    /// Latest topics: the last message published, by (origin, msg_seq).
    published: Option<(String, i64)>,
    /// Log topics: every entry published or written here.
    logged: BTreeSet<(String, i64)>,
}

impl Route {
    /// The least time between two writes (ms) under the rate limit.
    fn gap_ms(&self) -> u64 {
        if self.topic.rate_hz > 0.0 {
            (1000.0 / self.topic.rate_hz) as u64
        } else {
            0
        }
    }

    /// The message's write, noted for the rate limit.
    fn write(&mut self, fields: Fields, now_ms: u64) -> Write {
        self.last_write_ms = Some(now_ms);
        Write { register: self.register, fields }
    }
}

/// A write the bridge wants made.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// The register.
    pub register: RegisterId,
    /// The fields: the message's, its origin and its number.
    pub fields: Fields,
}

/// The bridge's state: one route per mapped topic.
pub struct Bridge {
    me: String,
    routes: Vec<Route>,
    by_register: BTreeMap<RegisterId, usize>,
    next_seq: i64,
}

fn origin_of(f: &Fields) -> Option<(String, i64)> {
    let o = f.get(field::ORIGIN)?.as_str()?.to_string();
    Some((o, f.get(field::MSG_SEQ)?.as_i64()?))
}

impl Bridge {
    /// A bridge for `mapping`, whose registers `schema` resolves. Its messages are numbered
    /// from `first_seq` (a time in µs, so that a restarted bridge does not reuse numbers).
    ///
    /// # Errors
    /// Two topics on one register.
    pub fn new(mapping: &Mapping, schema: &Schema, first_seq: i64) -> Result<Bridge, BridgeError> {
        let mut by_register = BTreeMap::new();
        let mut routes = Vec::new();
        for t in &mapping.topics {
            let register = t.register.resolve(schema);
            if let Some(&other) = by_register.get(&register) {
                let other: &Route = &routes[other];
                return Err(BridgeError::SharedRegister(other.topic.name.clone(), t.name.clone()));
            }
            by_register.insert(register, routes.len());
            routes.push(Route { topic: t.clone(), register, last_write_ms: None, held: None, published: None, logged: BTreeSet::new() });
        }
        Ok(Bridge { me: mapping.bridge.clone(), routes, by_register, next_seq: first_seq })
    }

    /// This bridge's name: the origin of what it writes.
    #[must_use]
    pub fn me(&self) -> &str {
        &self.me
    }

    /// A message from ROS on `topic`: the write to make now, if any (a latest topic under its
    /// rate limit holds the newest message back until [`Bridge::due`]).
    ///
    /// # Errors
    /// The topic is not mapped into Spook, or the bytes are not its message.
    pub fn from_ros(&mut self, topic: &str, cdr: &[u8], now_ms: u64, received_ns: i64) -> Result<Option<Write>, BridgeError> {
        let i = self.routes.iter().position(|r| r.topic.name == topic && r.topic.direction.to_spook()).ok_or_else(|| BridgeError::Unmapped(topic.to_string()))?;
        let kind = self.routes[i].topic.kind;
        let msg = Msg::decode(kind, cdr).map_err(|error| BridgeError::Malformed { topic: topic.to_string(), error })?;
        let mut fields = msg.to_fields(received_ns).map_err(|error| BridgeError::Convert { topic: topic.to_string(), error })?;
        let seq = self.next_seq;
        self.next_seq += 1;
        fields.insert(field::ORIGIN.into(), Value::Str(self.me.clone()));
        fields.insert(field::MSG_SEQ.into(), Value::I64(seq));
        let r = &mut self.routes[i];
        if r.topic.mode == Mode::Log {
            r.logged.insert((self.me.clone(), seq));
            return Ok(Some(Write { register: r.register, fields: Fields::from([(field::LOG.to_string(), Value::Map(fields))]) }));
        }
        if r.last_write_ms.is_some_and(|t| now_ms < t + r.gap_ms()) {
            r.held = Some(fields);
            return Ok(None);
        }
        Ok(Some(r.write(fields, now_ms)))
    }

    /// When a held-back message is due (ms), if one is.
    #[must_use]
    pub fn next_due(&self) -> Option<u64> {
        self.routes.iter().filter(|r| r.held.is_some()).filter_map(|r| Some(r.last_write_ms? + r.gap_ms())).min()
    }

    /// The held-back messages due at `now_ms`.
    pub fn due(&mut self, now_ms: u64) -> Vec<Write> {
        let mut out = Vec::new();
        for r in &mut self.routes {
            if r.held.is_some() && r.last_write_ms.is_none_or(|t| now_ms >= t + r.gap_ms()) {
                if let Some(f) = r.held.take() {
                    out.push(r.write(f, now_ms));
                }
            }
        }
        out
    }

    /// A change in Spook: the messages to publish on ROS (topic, CDR). Latest topics follow
    /// the pending view (a value as soon as it arrives); log topics the committed view, whose
    /// new entries always come after those committed before, so that each origin's messages
    /// go out in the order it sent them.
    pub fn from_spook(&mut self, c: &Change) -> Vec<(String, Vec<u8>)> {
        let Some(&i) = self.by_register.get(&c.register) else { return Vec::new() };
        let me = self.me.clone();
        let r = &mut self.routes[i];
        let view = if r.topic.mode == Mode::Log { View::Committed } else { View::Pending };
        if c.view != view {
            return Vec::new();
        }
        if r.topic.mode == Mode::Log {
            let Some(Value::List(entries)) = c.fields.get(field::LOG) else { return Vec::new() };
            let mut out = Vec::new();
            for e in entries {
                let Value::Map(f) = e else { continue };
                let Some(id) = origin_of(f) else { continue };
                if id.0 == me || !r.logged.insert(id) {
                    continue;
                }
                if r.topic.direction.to_ros() {
                    if let Some(m) = Msg::from_fields(r.topic.kind, f) {
                        out.push((r.topic.name.clone(), m.encode()));
                    }
                }
            }
            return out;
        }
        let id = origin_of(&c.fields);
        if id.as_ref().is_some_and(|(o, _)| *o == me) || (id.is_some() && id == r.published) || !r.topic.direction.to_ros() {
            return Vec::new();
        }
        let Some(m) = Msg::from_fields(r.topic.kind, &c.fields) else { return Vec::new() };
        r.published = id;
        vec![(r.topic.name.clone(), m.encode())]
    }
}

/// The time now in ns since the epoch (for messages without a header).
#[must_use]
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Counters an operator reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// ROS messages written into Spook.
    pub to_spook: u64,
    /// Messages held back by a rate limit and then superseded.
    pub superseded: u64,
    /// Messages published on ROS.
    pub to_ros: u64,
    /// ROS messages dropped (unmapped, malformed, not convertible).
    pub dropped: u64,
}

/// Run `bridge` against `group`: messages from ROS come in on `from_ros` as (topic, CDR);
/// messages for ROS go out through `to_ros`. Ends when `from_ros` closes or the watch ends
/// (after an error saying why).
///
/// # Errors
/// The group's, when a write or the watch fails.
pub async fn drive<G: GroupApi>(mut bridge: Bridge, group: &G, mut from_ros: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>, to_ros: &(dyn Fn(String, Vec<u8>) + Sync)) -> Result<Counts, G::Error> {
    let mut pending = group.watch(View::Pending).await?;
    let mut committed = group.watch(View::Committed).await?;
    let mut counts = Counts::default();
    loop {
        let wait_ms = bridge.next_due().map_or(1_000, |due| due.saturating_sub(group.now_ms()).max(1));
        // Biased: the order of readiness decides, not a random draw, so a run on the simulator
        // is a function of its seed.
        tokio::select! {
            biased;
            m = from_ros.recv() => {
                let Some((topic, cdr)) = m else { return Ok(counts) };
                match bridge.from_ros(&topic, &cdr, group.now_ms(), now_ns()) {
                    Ok(Some(w)) => {
                        tracing::debug!(%topic, register = %w.register, "to Spook");
                        group.write(w.register, w.fields).await?;
                        counts.to_spook += 1;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        counts.dropped += 1;
                        tracing::warn!(%e, "ROS message dropped");
                    }
                }
            }
            ev = pending.next() => match ev {
                Some(Ok(Event::Change(c))) => publish(&mut bridge, &c, to_ros, &mut counts),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(counts),
            },
            ev = committed.next() => match ev {
                Some(Ok(Event::Change(c))) => publish(&mut bridge, &c, to_ros, &mut counts),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(counts),
            },
            () = group.sleep_ms(wait_ms) => {
                for w in bridge.due(group.now_ms()) {
                    group.write(w.register, w.fields).await?;
                    counts.to_spook += 1;
                }
            }
        }
    }
}

fn publish(bridge: &mut Bridge, c: &Change, to_ros: &(dyn Fn(String, Vec<u8>) + Sync), counts: &mut Counts) {
    tracing::trace!(register = %c.register, view = ?c.view, origin = ?c.fields.get(field::ORIGIN), "change");
    for (topic, cdr) in bridge.from_spook(c) {
        tracing::debug!(%topic, bytes = cdr.len(), "to ROS");
        to_ros(topic, cdr);
        counts.to_ros += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::msgs::{Header, Pose, PoseStamped};

    fn mapping(extra: &str) -> Mapping {
        Mapping::from_toml(&format!(
            "group = \"g\"\nbridge = \"a\"\n[[topic]]\nname = \"/pose\"\ntype = \"geometry_msgs/msg/PoseStamped\"\nregister = 1\n{extra}\n[[topic]]\nname = \"/chatter\"\ntype = \"std_msgs/msg/String\"\nregister = 2\nmode = \"log\"\n"
        ))
        .unwrap()
    }

    fn pose(x: f64, stamp_ns: i64) -> Vec<u8> {
        Msg::PoseStamped(PoseStamped { header: Header { stamp_ns, frame_id: "map".into() }, pose: Pose { position: [x, 0.0, 0.0], ..Pose::default() } }).encode()
    }

    #[test]
    fn a_pose_is_written_as_typed_fields_with_its_origin() {
        let mut b = Bridge::new(&mapping(""), &crate::msgs::schema(), 100).unwrap();
        let w = b.from_ros("/pose", &pose(1.0, 5), 0, 0).unwrap().unwrap();
        assert_eq!(w.fields.keys().map(String::as_str).collect::<Vec<_>>(), ["frame_id", "msg_seq", "origin", "pose", "stamp_ns"]);
        assert_eq!(w.fields[field::POSE], Value::Pose([1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]));
        let w = b.from_ros("/pose", &pose(2.0, 5), 1, 0).unwrap().unwrap();
        assert_eq!(w.fields.len(), 5, "every field of the message, so that two writers never mix");
        // An identical message is still a message: it travels (with its own number).
        let w2 = b.from_ros("/pose", &pose(2.0, 5), 2, 0).unwrap().unwrap();
        assert_eq!(w2.fields[field::MSG_SEQ], Value::I64(102));
        assert!(matches!(b.from_ros("/nope", &pose(1.0, 0), 0, 0), Err(BridgeError::Unmapped(_))));
        assert!(matches!(b.from_ros("/pose", &[0, 1, 0, 0, 1], 0, 0), Err(BridgeError::Malformed { .. })));
    }

    #[test]
    fn a_rate_limit_holds_back_only_the_newest() {
        let mut b = Bridge::new(&mapping("rate_hz = 10"), &crate::msgs::schema(), 1).unwrap();
        assert!(b.from_ros("/pose", &pose(1.0, 1), 1_000, 0).unwrap().is_some());
        assert!(b.from_ros("/pose", &pose(2.0, 2), 1_020, 0).unwrap().is_none());
        assert!(b.from_ros("/pose", &pose(3.0, 3), 1_050, 0).unwrap().is_none());
        assert_eq!(b.next_due(), Some(1_100));
        assert!(b.due(1_099).is_empty());
        let w = b.due(1_100);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].fields[field::STAMP_NS], Value::I64(3), "the newest");
    }

    #[test]
    fn changes_of_its_own_origin_are_not_published_and_a_message_is_published_once() {
        let mut a = Bridge::new(&mapping(""), &crate::msgs::schema(), 1).unwrap();
        let mut b = Bridge::new(&Mapping { bridge: "b".into(), ..mapping("") }, &crate::msgs::schema(), 1).unwrap();
        let w = a.from_ros("/pose", &pose(1.0, 7), 0, 0).unwrap().unwrap();
        let change = Change { register: w.register, view: View::Pending, fields: w.fields.clone(), snapshot: false };
        assert!(a.from_spook(&change).is_empty(), "its own write comes back and stays");
        let out = b.from_spook(&change);
        assert_eq!(out, vec![("/pose".to_string(), pose(1.0, 7))]);
        assert!(b.from_spook(&Change { snapshot: true, ..change }).is_empty(), "the same message again (a snapshot) is not republished");
        // Log: entries published once each, its own never.
        let e1 = a.from_ros("/chatter", &Msg::String("hi".into()).encode(), 0, 1).unwrap().unwrap();
        let e2 = a.from_ros("/chatter", &Msg::String("hi".into()).encode(), 0, 2).unwrap().unwrap();
        let log = |es: &[&Write]| Change {
            register: RegisterId(2),
            view: View::Committed,
            fields: Fields::from([(field::LOG.to_string(), Value::List(es.iter().map(|w| w.fields[field::LOG].clone()).collect()))]),
            snapshot: false,
        };
        assert_eq!(b.from_spook(&log(&[&e1])).len(), 1);
        assert_eq!(b.from_spook(&log(&[&e1, &e2])).len(), 1, "only the new entry; two equal messages are two");
        assert!(a.from_spook(&log(&[&e1, &e2])).is_empty());
    }
}
