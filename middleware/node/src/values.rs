//! Values as JSON, for the CLI and client sessions: typed by the group schema, with errors
//! that say what was expected.

use serde_json::Value as Json;
use spook_core::{Action, FieldDef, MergePolicy, Value, ValueKind};

pub use spook_core::ValueError;

fn floats<const N: usize>(j: &Json) -> Option<[f64; N]> {
    let a = j.as_array()?;
    if a.len() != N {
        return None;
    }
    let mut out = [0.0; N];
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.as_f64()?;
    }
    Some(out)
}

/// Convert JSON to a value of `kind`.
///
/// ```
/// # use spook_core::{Value, ValueKind};
/// # use spook_node::values::from_json;
/// let v = from_json("battery", ValueKind::F64, &serde_json::json!(0.82)).unwrap();
/// assert_eq!(v, Value::F64(0.82));
/// let e = from_json("battery", ValueKind::F64, &serde_json::json!("full")).unwrap_err();
/// assert_eq!(e.to_string(), "field battery: expected a number, got \"full\"");
/// ```
pub fn from_json(field: &str, kind: ValueKind, j: &Json) -> Result<Value, ValueError> {
    let err = |expected: &str| ValueError::new(field, expected, &j.to_string());
    Ok(match kind {
        ValueKind::Bool => Value::Bool(j.as_bool().ok_or_else(|| err("true or false"))?),
        ValueKind::I64 => Value::I64(j.as_i64().ok_or_else(|| err("an integer"))?),
        ValueKind::F64 => Value::F64(j.as_f64().ok_or_else(|| err("a number"))?),
        ValueKind::Str => Value::Str(j.as_str().ok_or_else(|| err("a string"))?.to_string()),
        ValueKind::Vec3 => Value::Vec3(floats::<3>(j).ok_or_else(|| err("[x, y, z]"))?),
        ValueKind::Quat => {
            let q = floats::<4>(j).ok_or_else(|| err("a unit quaternion [w, x, y, z]"))?;
            let n = q.iter().map(|x| x * x).sum::<f64>().sqrt();
            if (n - 1.0).abs() > 1e-3 {
                return Err(err("a unit quaternion [w, x, y, z] (norm 1)"));
            }
            Value::Quat(q)
        }
        ValueKind::Pose => {
            let o = j.as_object().ok_or_else(|| err("{\"t\": [x, y, z], \"q\": [w, x, y, z]}"))?;
            let t = o.get("t").and_then(floats::<3>).ok_or_else(|| err("a pose with \"t\": [x, y, z]"))?;
            let q = o.get("q").and_then(floats::<4>).ok_or_else(|| err("a pose with \"q\": [w, x, y, z]"))?;
            Value::Pose(t, q)
        }
        ValueKind::Bytes => Value::Bytes(j.as_str().ok_or_else(|| err("a string of bytes"))?.as_bytes().to_vec()),
        _ => spook_client::proto::untyped_value(j),
    })
}

/// Convert a value to JSON.
#[must_use]
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => Json::from(*f),
        Value::Str(s) => Json::from(s.clone()),
        Value::Bytes(b) => Json::from(String::from_utf8_lossy(b).into_owned()),
        Value::Vec3(a) => Json::from(a.to_vec()),
        Value::Quat(a) => Json::from(a.to_vec()),
        Value::Pose(t, q) => serde_json::json!({"t": t.to_vec(), "q": q.to_vec()}),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// A value as a request carries it: with `typed`, a [`Value`] in its serde form (what
/// `spook-client` sends), checked against `kind`; otherwise JSON typed by `kind` ([`from_json`]).
///
/// ```
/// # use spook_core::{Value, ValueKind};
/// # use spook_node::values::value_in;
/// let j = serde_json::to_value(Value::Vec3([1.0, 2.0, 3.0])).unwrap();
/// assert_eq!(value_in("pos", ValueKind::Vec3, &j, true).unwrap(), Value::Vec3([1.0, 2.0, 3.0]));
/// assert!(value_in("battery", ValueKind::F64, &j, true).unwrap_err().to_string().contains("battery"));
/// ```
///
/// # Errors
/// A value that does not fit the field.
pub fn value_in(field: &str, kind: ValueKind, j: &Json, typed: bool) -> Result<Value, ValueError> {
    if !typed {
        return from_json(field, kind, j);
    }
    kind.admit(field, typed_value(field, j)?)
}

/// A [`Value`] in its serde form.
fn typed_value(field: &str, j: &Json) -> Result<Value, ValueError> {
    serde_json::from_value(j.clone()).map_err(|e| ValueError::new(field, format!("a typed value ({e})"), &j.to_string()))
}

/// A value as a response carries it: a serde [`Value`] with `typed`, else plain JSON.
#[must_use]
pub fn out(v: &Value, typed: bool) -> Json {
    if typed {
        serde_json::to_value(v).unwrap_or(Json::Null)
    } else {
        to_json(v)
    }
}

/// The action a `set` means for a field of `policy`: assign for last-writer-wins, max and
/// min; add for counters; insert for sets; append for logs.
///
/// # Errors
/// A value that does not fit the field.
pub fn action(field: &str, policy: MergePolicy, kind: ValueKind, j: &Json, typed: bool) -> Result<Action, ValueError> {
    let def = FieldDef { name: field.to_string(), kind, policy };
    if typed {
        return def.action(typed_value(field, j)?);
    }
    match policy {
        MergePolicy::Counter => Ok(Action::Add(j.as_i64().ok_or_else(|| ValueError::new(field, "an integer to add", &j.to_string()))?)),
        _ => def.action(from_json(field, kind, j)?),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_bad_values_name_the_field() {
        let q = from_json("pose.rotation", ValueKind::Quat, &serde_json::json!([1.0, 0.0, 0.0, 0.0])).unwrap();
        assert_eq!(to_json(&q), serde_json::json!([1.0, 0.0, 0.0, 0.0]));
        let e = from_json("pose.rotation", ValueKind::Quat, &serde_json::json!([2.0, 0.0, 0.0, 0.0])).unwrap_err();
        assert!(e.to_string().contains("pose.rotation") && e.to_string().contains("norm"), "{e}");
        let e = from_json("battery", ValueKind::F64, &serde_json::json!("full")).unwrap_err();
        assert_eq!(e.to_string(), "field battery: expected a number, got \"full\"");
        assert!(matches!(action("odometer", MergePolicy::Counter, ValueKind::I64, &serde_json::json!(3), false), Ok(Action::Add(3))));
        assert!(matches!(action("odometer", MergePolicy::Counter, ValueKind::I64, &serde_json::json!({"I64": 3}), true), Ok(Action::Add(3))));
    }
}
