//! Python objects to and from Spook values. A value bound for a field of known kind is read as
//! that kind (a 3-sequence or numpy array as a vector, 4 as a quaternion, a pose as
//! `(translation, rotation)`, 7 numbers or a dict), so Python code writes plain lists, tuples
//! and arrays; anything else maps by its Python type.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use spook_core::api::Fields;
use spook_core::{Schema, Value, ValueKind};

/// An object with `tolist()` (a numpy array or scalar) as the plain Python value it holds.
fn plain<'py>(o: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if o.is_instance_of::<PyList>() || o.is_instance_of::<PyTuple>() || o.is_instance_of::<PyString>() || o.is_instance_of::<PyBytes>() {
        return Ok(o.clone());
    }
    if o.hasattr("tolist")? && o.hasattr("dtype")? {
        return o.call_method0("tolist");
    }
    Ok(o.clone())
}

fn floats<const N: usize>(o: &Bound<'_, PyAny>, field: &str, what: &str) -> PyResult<[f64; N]> {
    let o = plain(o)?;
    let bad = || crate::errors::bad_value(format!("field {field:?}: expected {what} ({N} numbers), got {}", short_repr(&o)));
    if o.is_instance_of::<PyString>() || o.is_instance_of::<PyBytes>() || o.is_instance_of::<PyDict>() {
        return Err(bad());
    }
    let items: Vec<f64> = o.try_iter().map_err(|_| bad())?.map(|x| x.and_then(|x| x.extract::<f64>())).collect::<PyResult<_>>().map_err(|_| bad())?;
    items.try_into().map_err(|_| bad())
}

fn short_repr(o: &Bound<'_, PyAny>) -> String {
    let r = o.repr().map(|r| r.to_string()).unwrap_or_else(|_| "<unprintable>".into());
    if r.chars().count() > 80 { format!("{}…", r.chars().take(80).collect::<String>()) } else { r }
}

fn pose(o: &Bound<'_, PyAny>, field: &str) -> PyResult<Value> {
    let what = "a pose: (translation, rotation), {\"translation\": .., \"rotation\": ..} or 7 numbers";
    if let Ok(d) = o.cast::<PyDict>() {
        let t = d.get_item("translation")?.ok_or_else(|| crate::errors::bad_value(format!("field {field:?}: a pose dict needs \"translation\"")))?;
        let r = d.get_item("rotation")?.ok_or_else(|| crate::errors::bad_value(format!("field {field:?}: a pose dict needs \"rotation\"")))?;
        return Ok(Value::Pose(floats(&t, field, "a translation [x, y, z]")?, floats(&r, field, "a rotation [w, x, y, z]")?));
    }
    let o = plain(o)?;
    if o.len().ok() == Some(2) {
        let t = o.get_item(0)?;
        let r = o.get_item(1)?;
        return Ok(Value::Pose(floats(&t, field, "a translation [x, y, z]")?, floats(&r, field, "a rotation [w, x, y, z]")?));
    }
    let n: [f64; 7] = floats(&o, field, what)?;
    Ok(Value::Pose([n[0], n[1], n[2]], [n[3], n[4], n[5], n[6]]))
}

/// `o` as a value for a field of `kind` (the field's name is for the error).
pub(crate) fn to_value_as(o: &Bound<'_, PyAny>, kind: ValueKind, field: &str) -> PyResult<Value> {
    match kind {
        ValueKind::Vec3 => Ok(Value::Vec3(floats(o, field, "a vector [x, y, z]")?)),
        ValueKind::Quat => Ok(Value::Quat(floats(o, field, "a quaternion [w, x, y, z]")?)),
        ValueKind::Pose => pose(o, field),
        ValueKind::F64 if o.is_instance_of::<PyInt>() && !o.is_instance_of::<PyBool>() => Ok(Value::F64(o.extract::<f64>()?)),
        _ => to_value(o, field, 0),
    }
}

/// Deeper than this is refused (as the codec refuses it), not a stack overflow.
const MAX_DEPTH: usize = 16;

/// `o` as a value by its Python type: None, bool, int (64-bit), float, str, bytes, list or
/// tuple, dict with str keys; numpy arrays and scalars through `tolist()`.
pub(crate) fn to_value(o: &Bound<'_, PyAny>, field: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(crate::errors::bad_value(format!("field {field:?}: nested deeper than {MAX_DEPTH} levels")));
    }
    if o.is_none() {
        return Ok(Value::Null);
    }
    if o.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(o.extract()?));
    }
    if o.is_instance_of::<PyInt>() {
        return o.extract::<i64>().map(Value::I64).map_err(|_| crate::errors::bad_value(format!("field {field:?}: {} does not fit in 64 bits", short_repr(o))));
    }
    if o.is_instance_of::<PyFloat>() {
        return Ok(Value::F64(o.extract()?));
    }
    if let Ok(s) = o.cast::<PyString>() {
        return Ok(Value::Str(s.extract::<String>()?));
    }
    if let Ok(b) = o.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if o.is_instance_of::<pyo3::types::PyByteArray>() {
        return Ok(Value::Bytes(o.extract::<Vec<u8>>()?));
    }
    if let Ok(d) = o.cast::<PyDict>() {
        let mut m = BTreeMap::new();
        for (k, v) in d.iter() {
            let k: String = k.extract().map_err(|_| crate::errors::bad_value(format!("field {field:?}: dict keys must be str, got {}", short_repr(&k))))?;
            m.insert(k, to_value(&v, field, depth + 1)?);
        }
        return Ok(Value::Map(m));
    }
    if o.is_instance_of::<PyList>() || o.is_instance_of::<PyTuple>() {
        return Ok(Value::List(o.try_iter()?.map(|x| to_value(&x?, field, depth + 1)).collect::<PyResult<_>>()?));
    }
    if o.hasattr("tolist")? && o.hasattr("dtype")? {
        return to_value(&o.call_method0("tolist")?, field, depth);
    }
    if o.hasattr("model_dump")? {
        return to_value(&o.call_method0("model_dump")?, field, depth);
    }
    Err(crate::errors::bad_value(format!(
        "field {field:?}: cannot store {} (a {}): use None, bool, int, float, str, bytes, list, dict or a numpy array",
        short_repr(o),
        o.get_type().name().map(|n| n.to_string()).unwrap_or_default()
    )))
}

/// A field's value by the schema (its kind), or by type for a field the schema lacks (the node
/// then says so).
pub(crate) fn field_value(schema: &Schema, field: &str, o: &Bound<'_, PyAny>) -> PyResult<Value> {
    match schema.field_named(field) {
        Ok((_, def)) => to_value_as(o, def.kind, field),
        Err(_) => to_value(o, field, 0),
    }
}

/// A mapping of field names to values (a dict, or a pydantic model's `model_dump()`).
pub(crate) fn fields_of(schema: &Schema, o: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Value)>> {
    let o = if o.hasattr("model_dump")? && !o.is_instance_of::<PyDict>() { o.call_method0("model_dump")? } else { o.clone() };
    let d = o.cast::<PyDict>().map_err(|_| crate::errors::bad_value(format!("fields must be a dict of field name to value (or a pydantic model), got {}", short_repr(&o))))?;
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d.iter() {
        let k: String = k.extract().map_err(|_| crate::errors::bad_value(format!("field names are str, got {}", short_repr(&k))))?;
        let v = field_value(schema, &k, &v)?;
        out.push((k, v));
    }
    Ok(out)
}

/// A value as Python: vectors and quaternions as lists, a pose as a dict of `translation` and
/// `rotation`, bytes as bytes, maps as dicts.
pub(crate) fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::I64(n) => n.into_pyobject(py)?.into_any(),
        Value::F64(x) => PyFloat::new(py, *x).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Vec3(a) => PyList::new(py, a)?.into_any(),
        Value::Quat(a) => PyList::new(py, a)?.into_any(),
        Value::Pose(t, r) => {
            let d = PyDict::new(py);
            d.set_item("translation", PyList::new(py, t)?)?;
            d.set_item("rotation", PyList::new(py, r)?)?;
            d.into_any()
        }
        Value::List(items) => PyList::new(py, items.iter().map(|x| to_py(py, x)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        Value::Map(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// A register's fields as a dict.
pub(crate) fn fields_to_py<'py>(py: Python<'py>, f: &Fields) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in f {
        d.set_item(k, to_py(py, v)?)?;
    }
    Ok(d)
}

/// Fields held until the GIL is free to build their dict: what async calls return.
pub(crate) struct PyFields(pub(crate) Fields);

impl<'py> IntoPyObject<'py> for PyFields {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        fields_to_py(py, &self.0)
    }
}

/// One value, likewise.
pub(crate) struct PyValue(pub(crate) Option<Value>);

impl<'py> IntoPyObject<'py> for PyValue {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            Some(v) => to_py(py, &v),
            None => Ok(py.None().into_bound(py)),
        }
    }
}
