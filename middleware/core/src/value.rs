//! Register values: scalars, geometry and nested lists and maps, with one canonical encoding.

use std::collections::BTreeMap;

use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};

/// A value held by one field of a register.
///
/// Geometry is stored as plain arrays so every node encodes it alike; conversions from and to
/// `nalgebra` types are provided. A rotation is one atomic unit quaternion `[w, x, y, z]`.
///
/// ```
/// # use spook_core::Value;
/// # use nalgebra::{Isometry3, Vector3, UnitQuaternion};
/// let pose = Isometry3::from_parts(Vector3::new(1.0, 2.0, 3.0).into(), UnitQuaternion::identity());
/// let v = Value::from(pose);
/// assert_eq!(v.as_pose(), Some(pose));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// A float; hashed and compared canonically (one NaN, -0.0 as 0.0).
    F64(f64),
    /// UTF-8 text.
    Str(String),
    /// Opaque bytes.
    Bytes(Vec<u8>),
    /// A 3-vector `[x, y, z]`.
    Vec3([f64; 3]),
    /// A unit quaternion `[w, x, y, z]`.
    Quat([f64; 4]),
    /// A pose: translation `[x, y, z]` and rotation `[w, x, y, z]`.
    Pose([f64; 3], [f64; 4]),
    /// A list of values.
    List(Vec<Value>),
    /// A map of named fields.
    Map(BTreeMap<String, Value>),
}

/// The kind of a value, as declared for a field in the group schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ValueKind {
    /// Any value; encoded with a type tag.
    Any = 0,
    /// [`Value::Bool`].
    Bool = 1,
    /// [`Value::I64`].
    I64 = 2,
    /// [`Value::F64`].
    F64 = 3,
    /// [`Value::Str`].
    Str = 4,
    /// [`Value::Bytes`].
    Bytes = 5,
    /// [`Value::Vec3`].
    Vec3 = 6,
    /// [`Value::Quat`].
    Quat = 7,
    /// [`Value::Pose`].
    Pose = 8,
}

/// A value that does not fit a field of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: expected {expected}, got {got}")]
pub struct ValueError {
    /// The field.
    pub field: String,
    /// What fits.
    pub expected: String,
    /// What came (shortened).
    pub got: String,
}

impl ValueError {
    /// The error for `got`, said briefly (at most 60 characters of it).
    #[must_use]
    pub fn new(field: &str, expected: impl Into<String>, got: &str) -> ValueError {
        let got = match got.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &got[..cut]),
            None => got.to_string(),
        };
        ValueError { field: field.to_string(), expected: expected.into(), got }
    }
}

impl ValueKind {
    /// `v` as a field of this kind stores it, or why it does not fit: an integer where a
    /// float is expected is that float, and a rotation must be a unit quaternion (norm 1
    /// within 10⁻³), so that no member stores what another would refuse.
    ///
    /// ```
    /// # use spook_core::{Value, ValueKind};
    /// assert_eq!(ValueKind::F64.admit("battery", Value::I64(1)), Ok(Value::F64(1.0)));
    /// let e = ValueKind::Quat.admit("rot", Value::Quat([2.0, 0.0, 0.0, 0.0])).unwrap_err();
    /// assert!(e.to_string().starts_with("field rot: expected a unit quaternion"));
    /// assert!(ValueKind::Str.admit("owner", Value::I64(7)).is_err());
    /// ```
    ///
    /// # Errors
    /// A value of another kind, or a rotation that is not a unit quaternion.
    pub fn admit(self, field: &str, v: Value) -> Result<Value, ValueError> {
        let v = match v {
            Value::I64(n) if self == ValueKind::F64 => Value::F64(n as f64),
            v => v,
        };
        if let (ValueKind::Quat | ValueKind::Pose, Value::Quat(q) | Value::Pose(_, q)) = (self, &v) {
            if (q.iter().map(|x| x * x).sum::<f64>().sqrt() - 1.0).abs() > 1e-3 {
                return Err(ValueError::new(field, "a unit quaternion [w, x, y, z] (norm 1)", &format!("{v:?}")));
            }
        }
        if !self.admits(&v) {
            return Err(ValueError::new(field, format!("a value of kind {self:?}"), &format!("{v:?}")));
        }
        Ok(v)
    }

    /// Whether `v` may be stored in a field of this kind (only `Any` fields hold `Null`).
    #[must_use]
    pub fn admits(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (ValueKind::Any, _)
                | (ValueKind::Bool, Value::Bool(_))
                | (ValueKind::I64, Value::I64(_))
                | (ValueKind::F64, Value::F64(_))
                | (ValueKind::Str, Value::Str(_))
                | (ValueKind::Bytes, Value::Bytes(_))
                | (ValueKind::Vec3, Value::Vec3(_))
                | (ValueKind::Quat, Value::Quat(_))
                | (ValueKind::Pose, Value::Pose(..))
        )
    }
}

/// f64 in canonical form: every NaN is one NaN, -0.0 is 0.0.
#[must_use]
pub fn canonical_f64(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x == 0.0 {
        0.0
    } else {
        x
    }
}

impl Value {
    /// The canonical bytes of this value (tagged, floats canonicalised): equal values give
    /// equal bytes on every node. Used for hashing, set elements and tie-breaks.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::codec::put_value_tagged(&mut out, self);
        out
    }

    /// Encoded size in bytes (tagged form), used for the oversized-value limit.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.canonical_bytes().len()
    }

    /// The value as a float, if it is one.
    #[must_use]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(x) => Some(*x),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::I64(x) => Some(*x),
            _ => None,
        }
    }

    /// The value as a pose, if it is one.
    #[must_use]
    pub fn as_pose(&self) -> Option<Isometry3<f64>> {
        match self {
            Value::Pose(t, r) => Some(Isometry3::from_parts(
                Translation3::new(t[0], t[1], t[2]),
                UnitQuaternion::new_unchecked(Quaternion::new(r[0], r[1], r[2], r[3])),
            )),
            _ => None,
        }
    }

    /// The value as a vector, if it is one.
    ///
    /// ```
    /// # use spook_core::Value;
    /// let v = Value::from(nalgebra::Vector3::new(1.0, 2.0, 3.0));
    /// assert_eq!(v.as_vec3(), Some(nalgebra::Vector3::new(1.0, 2.0, 3.0)));
    /// ```
    #[must_use]
    pub fn as_vec3(&self) -> Option<Vector3<f64>> {
        match self {
            Value::Vec3(v) => Some(Vector3::new(v[0], v[1], v[2])),
            _ => None,
        }
    }

    /// The value as a unit quaternion, if it is one (taken as unit, as stored).
    #[must_use]
    pub fn as_quat(&self) -> Option<UnitQuaternion<f64>> {
        match self {
            Value::Quat(r) => Some(UnitQuaternion::new_unchecked(Quaternion::new(r[0], r[1], r[2], r[3]))),
            _ => None,
        }
    }

    /// The value as text, if it is text.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<String> for Value {
    fn from(x: String) -> Self {
        Value::Str(x)
    }
}
impl From<Vec<u8>> for Value {
    fn from(x: Vec<u8>) -> Self {
        Value::Bytes(x)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::F64(x)
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::I64(x)
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Bool(x)
    }
}
impl From<&str> for Value {
    fn from(x: &str) -> Self {
        Value::Str(x.to_owned())
    }
}
impl From<Vector3<f64>> for Value {
    fn from(v: Vector3<f64>) -> Self {
        Value::Vec3([v.x, v.y, v.z])
    }
}
impl From<UnitQuaternion<f64>> for Value {
    fn from(q: UnitQuaternion<f64>) -> Self {
        Value::Quat([q.w, q.i, q.j, q.k])
    }
}
impl From<Isometry3<f64>> for Value {
    fn from(p: Isometry3<f64>) -> Self {
        let t = p.translation.vector;
        let r = p.rotation;
        Value::Pose([t.x, t.y, t.z], [r.w, r.i, r.j, r.k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_floats_hash_alike() {
        assert_eq!(Value::F64(-0.0).canonical_bytes(), Value::F64(0.0).canonical_bytes());
        let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        assert_eq!(Value::F64(odd_nan).canonical_bytes(), Value::F64(f64::NAN).canonical_bytes());
        assert_ne!(Value::F64(1.0).canonical_bytes(), Value::F64(2.0).canonical_bytes());
    }

    #[test]
    fn kinds_admit_matching_values_only() {
        assert!(ValueKind::F64.admits(&Value::F64(1.0)));
        assert!(!ValueKind::F64.admits(&Value::I64(1)));
        assert!(ValueKind::Any.admits(&Value::Str("x".into())));
    }
}
