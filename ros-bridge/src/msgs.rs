//! The message types the bridge converts field by field, their CDR, and the register fields
//! they become. A pose becomes one `pose` field (a [`Value::Pose`]: translation and unit
//! rotation), so that an update of a pose is one field's delta; any other type travels whole
//! as its CDR bytes (`cdr`).
//!
//! Time: a message's `header.stamp` becomes the field `stamp_ns` (nanoseconds since the
//! epoch, exact), and comes back as the same `header.stamp` on the other side. A message
//! without a header carries the time the bridge received it. Spook's own stamps (HLC, ms)
//! order the writes; they are not the messages' times.
//!
//! ```
//! use spook_ros::msgs::{Msg, Pose, PoseStamped, Header};
//! let m = Msg::PoseStamped(PoseStamped { header: Header { stamp_ns: 1_500_000_000, frame_id: "map".into() }, pose: Pose::default() });
//! let cdr = m.encode();
//! assert_eq!(cdr.len(), 76);
//! assert_eq!(Msg::decode(m.kind(), &cdr).unwrap(), m);
//! ```

use nalgebra::{Quaternion, UnitQuaternion};
use spook_core::api::Fields;
use spook_core::{MergePolicy, Schema, Value, ValueKind};

use crate::cdr::{CdrError, Reader, Writer};

/// The message types converted field by field; any other travels as raw CDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `std_msgs/msg/String`.
    String,
    /// `geometry_msgs/msg/Pose`.
    Pose,
    /// `geometry_msgs/msg/PoseStamped`.
    PoseStamped,
    /// `geometry_msgs/msg/Twist`.
    Twist,
    /// `geometry_msgs/msg/Transform`.
    Transform,
    /// `sensor_msgs/msg/NavSatFix`.
    NavSatFix,
    /// Any other type: its CDR bytes, whole.
    Raw,
}

impl Kind {
    /// The kind of a ROS type name (`geometry_msgs/msg/PoseStamped`).
    ///
    /// ```
    /// use spook_ros::msgs::Kind;
    /// assert_eq!(Kind::of("geometry_msgs/msg/PoseStamped"), Kind::PoseStamped);
    /// assert_eq!(Kind::of("nav_msgs/msg/Odometry"), Kind::Raw);
    /// ```
    #[must_use]
    pub fn of(ros_type: &str) -> Kind {
        match ros_type {
            "std_msgs/msg/String" => Kind::String,
            "geometry_msgs/msg/Pose" => Kind::Pose,
            "geometry_msgs/msg/PoseStamped" => Kind::PoseStamped,
            "geometry_msgs/msg/Twist" => Kind::Twist,
            "geometry_msgs/msg/Transform" => Kind::Transform,
            "sensor_msgs/msg/NavSatFix" => Kind::NavSatFix,
            _ => Kind::Raw,
        }
    }
}

/// `std_msgs/Header`: its stamp in nanoseconds since the epoch, and its frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// `stamp.sec * 10⁹ + stamp.nanosec`.
    pub stamp_ns: i64,
    /// `frame_id`.
    pub frame_id: String,
}

/// `geometry_msgs/Pose` (and `Transform`): position and a rotation, `[x, y, z, w]` as ROS
/// orders a quaternion.
#[derive(Clone, Debug, PartialEq)]
pub struct Pose {
    /// Position (`Transform`: translation).
    pub position: [f64; 3],
    /// Orientation `[x, y, z, w]` (`Transform`: rotation).
    pub orientation: [f64; 4],
}

impl Default for Pose {
    fn default() -> Pose {
        Pose { position: [0.0; 3], orientation: [0.0, 0.0, 0.0, 1.0] }
    }
}

/// `geometry_msgs/PoseStamped`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoseStamped {
    /// Stamp and frame.
    pub header: Header,
    /// The pose.
    pub pose: Pose,
}

/// `geometry_msgs/Twist`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Twist {
    /// Linear velocity.
    pub linear: [f64; 3],
    /// Angular velocity.
    pub angular: [f64; 3],
}

/// `sensor_msgs/NavSatFix`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NavSatFix {
    /// Stamp and frame.
    pub header: Header,
    /// `status.status` (-1 no fix … 2 ground-based augmentation).
    pub status: i8,
    /// `status.service` (GPS, GLONASS, … bits).
    pub service: u16,
    /// Degrees.
    pub latitude: f64,
    /// Degrees.
    pub longitude: f64,
    /// Metres.
    pub altitude: f64,
    /// Row-major, m².
    pub position_covariance: [f64; 9],
    /// 0 unknown … 3 known.
    pub position_covariance_type: u8,
}

/// One message of a converted type, or a raw one.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// `std_msgs/String`.
    String(String),
    /// `geometry_msgs/Pose`.
    Pose(Pose),
    /// `geometry_msgs/PoseStamped`.
    PoseStamped(PoseStamped),
    /// `geometry_msgs/Twist`.
    Twist(Twist),
    /// `geometry_msgs/Transform`.
    Transform(Pose),
    /// `sensor_msgs/NavSatFix`.
    NavSatFix(NavSatFix),
    /// Another type's CDR bytes.
    Raw(Vec<u8>),
}

fn vec3(r: &mut Reader<'_>) -> Result<[f64; 3], CdrError> {
    Ok([r.f64()?, r.f64()?, r.f64()?])
}

fn quat(r: &mut Reader<'_>) -> Result<[f64; 4], CdrError> {
    Ok([r.f64()?, r.f64()?, r.f64()?, r.f64()?])
}

fn header(r: &mut Reader<'_>) -> Result<Header, CdrError> {
    let sec = r.i32()?;
    let nanosec = r.u32()?;
    Ok(Header { stamp_ns: i64::from(sec) * 1_000_000_000 + i64::from(nanosec), frame_id: r.string()? })
}

fn put_header(w: &mut Writer, h: &Header) {
    let sec = h.stamp_ns.div_euclid(1_000_000_000);
    w.i32(i32::try_from(sec).unwrap_or(if sec < 0 { i32::MIN } else { i32::MAX }));
    w.u32(u32::try_from(h.stamp_ns.rem_euclid(1_000_000_000)).unwrap_or(0));
    w.string(&h.frame_id);
}

fn put(w: &mut Writer, xs: &[f64]) {
    for &x in xs {
        w.f64(x);
    }
}

impl Msg {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Msg::String(_) => Kind::String,
            Msg::Pose(_) => Kind::Pose,
            Msg::PoseStamped(_) => Kind::PoseStamped,
            Msg::Twist(_) => Kind::Twist,
            Msg::Transform(_) => Kind::Transform,
            Msg::NavSatFix(_) => Kind::NavSatFix,
            Msg::Raw(_) => Kind::Raw,
        }
    }

    /// Read a message of `kind` from its CDR bytes (trailing padding accepted).
    ///
    /// # Errors
    /// The bytes are not such a message.
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Msg, CdrError> {
        if kind == Kind::Raw {
            Reader::new(bytes)?;
            return Ok(Msg::Raw(bytes.to_vec()));
        }
        let r = &mut Reader::new(bytes)?;
        Ok(match kind {
            Kind::String => Msg::String(r.string()?),
            Kind::Pose => Msg::Pose(Pose { position: vec3(r)?, orientation: quat(r)? }),
            Kind::PoseStamped => Msg::PoseStamped(PoseStamped { header: header(r)?, pose: Pose { position: vec3(r)?, orientation: quat(r)? } }),
            Kind::Twist => Msg::Twist(Twist { linear: vec3(r)?, angular: vec3(r)? }),
            Kind::Transform => Msg::Transform(Pose { position: vec3(r)?, orientation: quat(r)? }),
            Kind::NavSatFix => {
                let header = header(r)?;
                let status = i8::from_le_bytes([r.u8()?]);
                let service = r.u16()?;
                let (latitude, longitude, altitude) = (r.f64()?, r.f64()?, r.f64()?);
                let mut position_covariance = [0.0; 9];
                for c in &mut position_covariance {
                    *c = r.f64()?;
                }
                Msg::NavSatFix(NavSatFix { header, status, service, latitude, longitude, altitude, position_covariance, position_covariance_type: r.u8()? })
            }
            Kind::Raw => unreachable!("handled above"),
        })
    }

    /// Its CDR bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Msg::String(s) => w.string(s),
            Msg::Pose(p) | Msg::Transform(p) => {
                put(&mut w, &p.position);
                put(&mut w, &p.orientation);
            }
            Msg::PoseStamped(p) => {
                put_header(&mut w, &p.header);
                put(&mut w, &p.pose.position);
                put(&mut w, &p.pose.orientation);
            }
            Msg::Twist(t) => {
                put(&mut w, &t.linear);
                put(&mut w, &t.angular);
            }
            Msg::NavSatFix(f) => {
                put_header(&mut w, &f.header);
                w.u8(f.status.to_le_bytes()[0]);
                w.u16(f.service);
                put(&mut w, &[f.latitude, f.longitude, f.altitude]);
                put(&mut w, &f.position_covariance);
                w.u8(f.position_covariance_type);
            }
            Msg::Raw(b) => return b.clone(),
        }
        w.finish()
    }

    /// The register fields this message sets, with the time it was received for types
    /// without a header.
    ///
    /// # Errors
    /// A rotation that is not a rotation (all zeros, say): ROS does not normalise
    /// quaternions, Spook stores unit ones.
    pub fn to_fields(&self, received_ns: i64) -> Result<Fields, ConvertError> {
        let mut f = Fields::new();
        let stamp = |f: &mut Fields, h: Option<&Header>| {
            let (ns, frame) = h.map_or((received_ns, None), |h| (h.stamp_ns, Some(h.frame_id.clone())));
            f.insert(field::STAMP_NS.into(), Value::I64(ns));
            if let Some(frame) = frame {
                f.insert(field::FRAME_ID.into(), Value::Str(frame));
            }
        };
        match self {
            Msg::String(s) => {
                stamp(&mut f, None);
                f.insert(field::DATA.into(), Value::Str(s.clone()));
            }
            Msg::Pose(p) | Msg::Transform(p) => {
                stamp(&mut f, None);
                f.insert(field::POSE.into(), pose_value(p)?);
            }
            Msg::PoseStamped(p) => {
                stamp(&mut f, Some(&p.header));
                f.insert(field::POSE.into(), pose_value(&p.pose)?);
            }
            Msg::Twist(t) => {
                stamp(&mut f, None);
                f.insert(field::LINEAR.into(), Value::Vec3(t.linear));
                f.insert(field::ANGULAR.into(), Value::Vec3(t.angular));
            }
            Msg::NavSatFix(n) => {
                stamp(&mut f, Some(&n.header));
                f.insert(field::FIX_STATUS.into(), Value::I64(i64::from(n.status)));
                f.insert(field::FIX_SERVICE.into(), Value::I64(i64::from(n.service)));
                f.insert(field::FIX_POSITION.into(), Value::Vec3([n.latitude, n.longitude, n.altitude]));
                f.insert(field::FIX_COVARIANCE.into(), Value::List(n.position_covariance.iter().map(|&c| Value::F64(c)).collect()));
                f.insert(field::FIX_COVARIANCE_TYPE.into(), Value::I64(i64::from(n.position_covariance_type)));
            }
            Msg::Raw(b) => {
                stamp(&mut f, None);
                f.insert(field::CDR.into(), Value::Bytes(b.clone()));
            }
        }
        Ok(f)
    }

    /// The message of `kind` that a register's fields hold, if they hold one.
    ///
    /// ```
    /// use spook_ros::msgs::{Kind, Msg};
    /// let m = Msg::String("hello".into());
    /// let fields = m.to_fields(7).unwrap();
    /// assert_eq!(Msg::from_fields(Kind::String, &fields), Some(m));
    /// assert_eq!(Msg::from_fields(Kind::Twist, &fields), None);
    /// ```
    #[must_use]
    pub fn from_fields(kind: Kind, f: &Fields) -> Option<Msg> {
        let header = || Header {
            stamp_ns: f.get(field::STAMP_NS).and_then(Value::as_i64).unwrap_or(0),
            frame_id: f.get(field::FRAME_ID).and_then(Value::as_str).unwrap_or_default().to_string(),
        };
        let pose = || match f.get(field::POSE)? {
            Value::Pose(t, [w, x, y, z]) => Some(Pose { position: *t, orientation: [*x, *y, *z, *w] }),
            _ => None,
        };
        let v3 = |k: &str| match f.get(k)? {
            Value::Vec3(v) => Some(*v),
            _ => None,
        };
        let int = |k: &str| f.get(k).and_then(Value::as_i64);
        Some(match kind {
            Kind::String => Msg::String(f.get(field::DATA)?.as_str()?.to_string()),
            Kind::Pose => Msg::Pose(pose()?),
            Kind::Transform => Msg::Transform(pose()?),
            Kind::PoseStamped => Msg::PoseStamped(PoseStamped { header: header(), pose: pose()? }),
            Kind::Twist => Msg::Twist(Twist { linear: v3(field::LINEAR)?, angular: v3(field::ANGULAR)? }),
            Kind::NavSatFix => {
                let [latitude, longitude, altitude] = v3(field::FIX_POSITION)?;
                let mut position_covariance = [0.0; 9];
                if let Some(Value::List(c)) = f.get(field::FIX_COVARIANCE) {
                    for (o, v) in position_covariance.iter_mut().zip(c) {
                        *o = if let Value::F64(x) = v { *x } else { 0.0 };
                    }
                }
                Msg::NavSatFix(NavSatFix {
                    header: header(),
                    status: i8::try_from(int(field::FIX_STATUS).unwrap_or(-1)).unwrap_or(-1),
                    service: u16::try_from(int(field::FIX_SERVICE).unwrap_or(0)).unwrap_or(0),
                    latitude,
                    longitude,
                    altitude,
                    position_covariance,
                    position_covariance_type: u8::try_from(int(field::FIX_COVARIANCE_TYPE).unwrap_or(0)).unwrap_or(0),
                })
            }
            Kind::Raw => match f.get(field::CDR)? {
                Value::Bytes(b) => Msg::Raw(b.clone()),
                _ => return None,
            },
        })
    }
}

/// A message that does not convert to register fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A quaternion of (near) zero length.
    #[error("orientation {0:?} is not a rotation (its length is 0)")]
    NotARotation([u64; 4]),
}

/// A ROS pose as a Spook pose value: the rotation normalised (nalgebra), reordered to
/// `[w, x, y, z]`.
fn pose_value(p: &Pose) -> Result<Value, ConvertError> {
    let [x, y, z, w] = p.orientation;
    let q = Quaternion::new(w, x, y, z);
    if !q.norm().is_finite() || q.norm() <= 1e-9 {
        return Err(ConvertError::NotARotation(p.orientation.map(f64::to_bits)));
    }
    let u = UnitQuaternion::from_quaternion(q);
    Ok(Value::Pose(p.position, [u.w, u.i, u.j, u.k]))
}

/// The register fields the bridge writes.
pub mod field {
    /// Who wrote the register's message: the bridge's id (echo prevention by origin).
    pub const ORIGIN: &str = "origin";
    /// The origin's number for the message: (origin, msg_seq) names it.
    pub const MSG_SEQ: &str = "msg_seq";
    /// `header.stamp` in ns since the epoch, or the time the bridge received it.
    pub const STAMP_NS: &str = "stamp_ns";
    /// `header.frame_id`.
    pub const FRAME_ID: &str = "frame_id";
    /// A pose or transform: translation and unit rotation.
    pub const POSE: &str = "pose";
    /// `Twist.linear`.
    pub const LINEAR: &str = "twist.linear";
    /// `Twist.angular`.
    pub const ANGULAR: &str = "twist.angular";
    /// `NavSatFix`: latitude, longitude, altitude.
    pub const FIX_POSITION: &str = "fix.position";
    /// `NavSatFix.status.status`.
    pub const FIX_STATUS: &str = "fix.status";
    /// `NavSatFix.status.service`.
    pub const FIX_SERVICE: &str = "fix.service";
    /// `NavSatFix.position_covariance` (9 floats).
    pub const FIX_COVARIANCE: &str = "fix.covariance";
    /// `NavSatFix.position_covariance_type`.
    pub const FIX_COVARIANCE_TYPE: &str = "fix.covariance_type";
    /// `std_msgs/String.data`.
    pub const DATA: &str = "data";
    /// Another type's CDR bytes.
    pub const CDR: &str = "cdr";
    /// A log topic's messages, each an entry (a map of the fields above).
    pub const LOG: &str = "log";
}

/// The schema of a group the bridge writes to: every field above, last-writer-wins, and
/// `log` an append-only log. Create the group with it (`spook group create robots --schema
/// ros-bridge/schema.toml`, the same schema as a file).
///
/// ```
/// let s = spook_ros::msgs::schema();
/// assert!(s.validate().is_ok());
/// assert!(s.field_id("pose").is_some() && s.field_id("log").is_some());
/// ```
#[must_use]
pub fn schema() -> Schema {
    use field::*;
    let lww = MergePolicy::LastWriterWins;
    Schema::new()
        .field(ORIGIN, ValueKind::Str, lww)
        .field(MSG_SEQ, ValueKind::I64, lww)
        .field(STAMP_NS, ValueKind::I64, lww)
        .field(FRAME_ID, ValueKind::Str, lww)
        .field(POSE, ValueKind::Pose, lww)
        .field(LINEAR, ValueKind::Vec3, lww)
        .field(ANGULAR, ValueKind::Vec3, lww)
        .field(FIX_POSITION, ValueKind::Vec3, lww)
        .field(FIX_STATUS, ValueKind::I64, lww)
        .field(FIX_SERVICE, ValueKind::I64, lww)
        .field(FIX_COVARIANCE, ValueKind::Any, lww)
        .field(FIX_COVARIANCE_TYPE, ValueKind::I64, lww)
        .field(DATA, ValueKind::Str, lww)
        .field(CDR, ValueKind::Bytes, lww)
        .field(LOG, ValueKind::Any, MergePolicy::AppendLog)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_file_is_the_schema() {
        let file = spook_client::schema::from_toml(include_str!("../schema.toml")).unwrap();
        assert_eq!(file, schema());
    }

    #[test]
    fn golden_bytes_of_known_messages() {
        // std_msgs/String "hello", as rclpy's serialize_message and r2r give it.
        assert_eq!(Msg::String("hello".into()).encode(), [0x00, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00]);
        // From the wire it comes padded to 4 bytes.
        let wire = [0x00, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x00, 0x00];
        assert_eq!(Msg::decode(Kind::String, &wire).unwrap(), Msg::String("hello".into()));
        // PoseStamped, frame "map", stamp 1.5 s, position (1, 2, 3), identity rotation: 76
        // bytes (header 4 + stamp 8 + frame 8 + pose 56), the pose 8-aligned at data offset 16.
        let p = Msg::PoseStamped(PoseStamped { header: Header { stamp_ns: 1_500_000_000, frame_id: "map".into() }, pose: Pose { position: [1.0, 2.0, 3.0], orientation: [0.0, 0.0, 0.0, 1.0] } });
        let b = p.encode();
        assert_eq!(b.len(), 76);
        assert_eq!(&b[..20], &[0, 1, 0, 0, 1, 0, 0, 0, 0x00, 0x65, 0xcd, 0x1d, 4, 0, 0, 0, b'm', b'a', b'p', 0]);
        assert_eq!(&b[20..28], &1.0f64.to_le_bytes());
        assert_eq!(&b[68..76], &1.0f64.to_le_bytes(), "w last");
        assert_eq!(Msg::decode(Kind::PoseStamped, &b).unwrap(), p);
        for cut in [5, 19, 30, 75] {
            assert!(Msg::decode(Kind::PoseStamped, &b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_converted_type_round_trips_through_its_fields() {
        let h = Header { stamp_ns: -1_250_000_000, frame_id: "odom".into() };
        let fix = NavSatFix { header: h.clone(), status: -1, service: 5, latitude: 48.1, longitude: 11.5, altitude: 520.0, position_covariance: [1.0; 9], position_covariance_type: 2 };
        let msgs = [
            Msg::String("é ünïcode".into()),
            Msg::Pose(Pose { position: [1.0, -2.0, 0.5], orientation: [0.0, 0.0, std::f64::consts::FRAC_1_SQRT_2, std::f64::consts::FRAC_1_SQRT_2] }),
            Msg::PoseStamped(PoseStamped { header: h.clone(), pose: Pose::default() }),
            Msg::Twist(Twist { linear: [1.0, 0.0, 0.0], angular: [0.0, 0.0, 0.3] }),
            Msg::Transform(Pose::default()),
            Msg::NavSatFix(fix),
            Msg::Raw(vec![0, 1, 0, 0, 42, 0, 0, 0]),
        ];
        for m in msgs {
            assert_eq!(Msg::decode(m.kind(), &m.encode()).unwrap(), m, "CDR");
            let f = m.to_fields(99).unwrap();
            assert_eq!(Msg::from_fields(m.kind(), &f).as_ref(), Some(&m), "fields {f:?}");
            assert!(f.keys().all(|k| schema().field_id(k).is_some()), "{f:?} fits the schema");
        }
    }

    #[test]
    fn a_zero_quaternion_is_refused_and_a_long_one_normalised() {
        let zero = Msg::Pose(Pose { position: [0.0; 3], orientation: [0.0; 4] });
        assert!(matches!(zero.to_fields(0), Err(ConvertError::NotARotation(_))));
        let long = Msg::Pose(Pose { position: [0.0; 3], orientation: [0.0, 0.0, 0.0, 2.0] });
        assert_eq!(long.to_fields(0).unwrap()[field::POSE], Value::Pose([0.0; 3], [1.0, 0.0, 0.0, 0.0]));
    }
}
