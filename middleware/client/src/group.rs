//! A group handle: reads, writes, transactions and watches of one entanglement group, typed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use spook_core::{EndpointId, Value, View};

use crate::error::Error;
use crate::proto::{FieldWrite, Reg, Request};
use crate::tx::Tx;
use spook_core::api::{Fields, Outcome};
use crate::watch::Watch;
use crate::Client;

/// One group of the client's domain, by the name its node knows it by (or its hex id).
/// Cheap to clone; every call goes to the client's node.
///
/// ```no_run
/// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
/// let fleet = client.group("fleet");
/// fleet.set("drone-7", "battery", 0.8).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Group {
    client: Client,
    name: String,
}

/// What a watch asks for.
///
/// ```no_run
/// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
/// use spook_client::{View, WatchOptions};
/// let mut w = fleet.watch_with(WatchOptions { view: View::Committed, snapshot: true }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// The view: pending (every change as it is applied) or committed.
    pub view: View,
    /// First every register written so far, as snapshot changes.
    pub snapshot: bool,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions { view: View::Pending, snapshot: false }
    }
}

/// A group's state on the client's node.
///
/// ```no_run
/// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
/// let s = fleet.status().await?;
/// println!("{}: {} members, {} pending, hash {}", s.name, s.members.len(), s.pending, s.state_hash);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group's name on that node.
    pub name: String,
    /// `convergent` or `serial`.
    pub kind: String,
    /// The members now.
    pub members: Vec<EndpointId>,
    /// The committed frontier (ms).
    pub frontier_ms: u64,
    /// Own deltas not yet committed.
    pub pending: u64,
    /// Hash of the pending view and the deltas held.
    pub state_hash: String,
    /// Hash of the committed values.
    pub committed_hash: String,
}

fn view_name(v: View) -> &'static str {
    match v {
        View::Committed => "committed",
        View::Pending => "pending",
    }
}

/// Values as they come in a response: serde [`Value`]s when `typed`, otherwise plain JSON
/// read without a schema (numbers, strings, lists, maps).
pub(crate) fn value_from(j: &Json, typed: bool) -> Result<Value, Error> {
    if typed {
        return serde_json::from_value(j.clone()).map_err(|e| Error::Protocol(format!("a value this client cannot read ({e}): {j}")));
    }
    Ok(crate::proto::untyped_value(j))
}

pub(crate) fn fields_from(j: &Json, typed: bool) -> Result<Fields, Error> {
    match j {
        Json::Object(o) => o.iter().map(|(k, v)| Ok((k.clone(), value_from(v, typed)?))).collect(),
        Json::Null => Ok(Fields::new()),
        _ => Err(Error::Protocol(format!("fields that are not an object: {j}"))),
    }
}

/// A value as a typed request carries it: its serde form.
pub(crate) fn typed(v: &Value) -> Result<Json, Error> {
    serde_json::to_value(v).map_err(|e| Error::BadValue(e.to_string()))
}

impl Group {
    pub(crate) fn new(client: Client, name: &str) -> Group {
        Group { client, name: name.to_string() }
    }

    /// The group's name (as given to [`Client::group`]).
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// assert_eq!(client.group("fleet").name(), "fleet");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Every field of `register` that holds a value, in `view`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a group the node does not hold; [`Error::NodeLost`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::View;
    /// let fields = fleet.get(7, View::Committed).await?;
    /// println!("battery {:?}", fields.get("battery"));
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, register: impl Into<Reg>, view: View) -> Result<Fields, Error> {
        let r = Request::Get { group: self.name.clone(), register: register.into(), field: None, view: Some(view_name(view).into()), typed: true };
        let j = self.client.call(&r).await?;
        fields_from(j.get("fields").unwrap_or(&Json::Null), true)
    }

    /// One field of `register` in `view`: `None` if it holds no value.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a group or field the node does not know; [`Error::NodeLost`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::{Value, View};
    /// if let Some(Value::F64(b)) = fleet.get_field("drone-7", "battery", View::Pending).await? {
    ///     println!("{b}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_field(&self, register: impl Into<Reg>, field: &str, view: View) -> Result<Option<Value>, Error> {
        let r = Request::Get { group: self.name.clone(), register: register.into(), field: Some(field.to_string()), view: Some(view_name(view).into()), typed: true };
        let j = self.client.call(&r).await?;
        match j.get("value") {
            None | Some(Json::Null) => Ok(None),
            Some(v) => value_from(v, true).map(Some),
        }
    }

    /// Write one field (assign, counter add, set insert or log append, by the field's merge
    /// policy). Answered once the write is durable on the node; returns the delta's seq.
    ///
    /// # Errors
    /// [`Error::BadValue`] for a value or field that does not fit the schema;
    /// [`Error::StorageUnavailable`] when the node cannot store it; [`Error::NodeLost`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// let seq = fleet.set(7, "battery", 0.82).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, register: impl Into<Reg>, field: &str, value: impl Into<Value>) -> Result<u64, Error> {
        let r = Request::Set { group: self.name.clone(), register: register.into(), field: field.to_string(), value: typed(&value.into())?, typed: true };
        seq(&self.client.call(&r).await?)
    }

    /// Write several fields of `register` as one delta: atomically, in one frame and one
    /// ledger record.
    ///
    /// # Errors
    /// As [`Group::set`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Value;
    /// fleet.write(7, [("pose.translation.x", Value::F64(1.0)), ("pose.translation.y", Value::F64(2.0))]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write<K: Into<String>, V: Into<Value>>(&self, register: impl Into<Reg>, fields: impl IntoIterator<Item = (K, V)>) -> Result<u64, Error> {
        let register = register.into();
        let set = fields.into_iter().map(|(k, v)| Ok(FieldWrite { register: register.clone(), field: k.into(), value: typed(&v.into())? })).collect::<Result<Vec<_>, Error>>()?;
        self.write_fields(set, true).await
    }

    /// Write fields of many registers as one delta (how a fleet's poses go out cheaply).
    ///
    /// # Errors
    /// As [`Group::set`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Value;
    /// fleet.write_many((0..3u32).map(|d| (d, "battery".to_string(), Value::F64(0.9)))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_many<R: Into<Reg>>(&self, writes: impl IntoIterator<Item = (R, String, Value)>) -> Result<u64, Error> {
        let set = writes.into_iter().map(|(register, field, v)| Ok(FieldWrite { register: register.into(), field, value: typed(&v)? })).collect::<Result<Vec<_>, Error>>()?;
        self.write_fields(set, true).await
    }

    async fn write_fields(&self, set: Vec<FieldWrite>, typed: bool) -> Result<u64, Error> {
        if set.is_empty() {
            return Err(Error::BadValue("nothing to write".into()));
        }
        seq(&self.client.call(&Request::Write { group: self.name.clone(), set, typed }).await?)
    }

    /// Write a struct's fields to `register` as one delta: each serde field is a schema field
    /// of the same name (rename with `#[serde(rename = "pose.rotation")]`), its value typed by
    /// the schema. Only the fields given travel.
    ///
    /// # Errors
    /// [`Error::BadValue`] if `value` is not a struct or map, or a field does not fit;
    /// otherwise as [`Group::set`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// #[derive(serde::Serialize)]
    /// struct Position {
    ///     #[serde(rename = "pose.translation.x")]
    ///     x: f64,
    ///     #[serde(rename = "pose.translation.y")]
    ///     y: f64,
    /// }
    /// fleet.write_as(7, &Position { x: 1.0, y: 2.0 }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_as<T: Serialize>(&self, register: impl Into<Reg>, value: &T) -> Result<u64, Error> {
        let register = register.into();
        let Json::Object(o) = serde_json::to_value(value).map_err(|e| Error::BadValue(e.to_string()))? else {
            return Err(Error::BadValue("write_as takes a struct or a map of fields".into()));
        };
        let set = o.into_iter().filter(|(_, v)| !v.is_null()).map(|(field, value)| FieldWrite { register: register.clone(), field, value }).collect();
        self.write_fields(set, false).await
    }

    /// Read `register` into a struct whose serde fields are schema fields (see
    /// [`Group::write_as`]).
    ///
    /// # Errors
    /// [`Error::BadValue`] when the fields do not make a `T` (a missing field that is not an
    /// `Option`, say); otherwise as [`Group::get`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Battery {
    ///     battery: Option<f64>,
    /// }
    /// let b: Battery = fleet.get_as(7, spook_client::View::Committed).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_as<T: DeserializeOwned>(&self, register: impl Into<Reg>, view: View) -> Result<T, Error> {
        let register = register.into();
        let r = Request::Get { group: self.name.clone(), register: register.clone(), field: None, view: Some(view_name(view).into()), typed: false };
        let j = self.client.call(&r).await?;
        serde_json::from_value(j.get("fields").cloned().unwrap_or(Json::Null)).map_err(|e| Error::BadValue(format!("register {register}: {e}")))
    }

    /// The group's schema: its fields, kinds and merge policies, and the names pinned to
    /// registers (`schema.resolve_register(name)` gives any name's id, as the node does).
    ///
    /// # Errors
    /// As [`Group::get`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// let schema = fleet.schema().await?;
    /// let id = schema.resolve_register("drone-7");
    /// println!("drone-7 is register {id}; fields: {:?}", schema.fields.iter().map(|f| &f.name).collect::<Vec<_>>());
    /// # Ok(()) }
    /// ```
    pub async fn schema(&self) -> Result<spook_core::Schema, Error> {
        let j = self.client.call(&Request::Schema { group: self.name.clone() }).await?;
        serde_json::from_value(j.get("schema").cloned().unwrap_or(Json::Null)).map_err(|e| Error::Protocol(format!("a schema this client cannot read: {e}")))
    }

    /// A serial transaction (serial groups only).
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Cond;
    /// let o = tasks.tx().when(Cond::absent(3, "owner")).set(3, "owner", "drone-7").submit().await?;
    /// # Ok(()) }
    /// ```
    pub fn tx(&self) -> Tx<'_> {
        Tx::new(self)
    }

    /// The outcome of this client's operation `seq`, if the group has evaluated it.
    ///
    /// # Errors
    /// As [`Group::get`].
    ///
    /// ```no_run
    /// # async fn f(tasks: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::Outcome;
    /// let seq = tasks.tx().set(3, "owner", "drone-7").no_wait().submit().await?.seq();
    /// tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    /// if let Some(Outcome::Committed { fence, .. }) = tasks.outcome(seq).await? {
    ///     println!("fencing token {fence}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn outcome(&self, seq: u64) -> Result<Option<Outcome>, Error> {
        let r = Request::Session { group: self.name.clone(), client: self.client.session_id().to_string() };
        let j = self.client.call(&r).await?;
        let ops = j.get("ops").and_then(Json::as_array).cloned().unwrap_or_default();
        ops.iter().find(|o| o.get("seq").and_then(Json::as_u64) == Some(seq)).map(crate::tx::outcome_from_json).transpose()
    }

    /// The group's members now.
    ///
    /// # Errors
    /// As [`Group::status`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// for m in fleet.members().await? {
    ///     println!("{m}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn members(&self) -> Result<Vec<EndpointId>, Error> {
        Ok(self.status().await?.members)
    }

    /// The group's state on the client's node.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a group the node does not hold; [`Error::NodeLost`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// let s = fleet.status().await?;
    /// assert_eq!(s.name, "fleet");
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<GroupStatus, Error> {
        let j = self.client.call(&Request::Status).await?;
        let groups = j.get("groups").and_then(Json::as_array).cloned().unwrap_or_default();
        let g = groups
            .iter()
            .find(|g| g.get("name").and_then(Json::as_str) == Some(&self.name) || g.get("id").and_then(Json::as_str) == Some(&self.name))
            .ok_or_else(|| Error::NotFound(format!("no group named {:?} on this node", self.name)))?;
        let s = |k: &str| g.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
        let n = |k: &str| g.get(k).and_then(Json::as_u64).unwrap_or(0);
        let members = g.get("members").and_then(Json::as_array).map(|m| m.iter().filter_map(|m| m.get("id").and_then(Json::as_str)?.parse().ok()).collect()).unwrap_or_default();
        Ok(GroupStatus { name: s("name"), kind: s("kind"), members, frontier_ms: n("frontier_ms"), pending: n("pending_candidates"), state_hash: s("state_hash"), committed_hash: s("committed_hash") })
    }

    /// Watch the group's changes in `view` from now on.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a group the node does not hold; [`Error::NodeLost`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::{Event, View};
    /// let mut w = fleet.watch(View::Pending).await?;
    /// if let Some(Ok(Event::Change(c))) = w.next().await {
    ///     println!("register {} now {:?}", c.register, c.fields);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, view: View) -> Result<Watch, Error> {
        self.watch_with(WatchOptions { view, snapshot: false }).await
    }

    /// Watch with options (a snapshot first, say).
    ///
    /// # Errors
    /// As [`Group::watch`].
    ///
    /// ```no_run
    /// # async fn f(fleet: spook_client::Group) -> Result<(), spook_client::Error> {
    /// use spook_client::{View, WatchOptions};
    /// // Every register written so far first (marked snapshot), then the changes.
    /// let w = fleet.watch_with(WatchOptions { view: View::Committed, snapshot: true }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_with(&self, o: WatchOptions) -> Result<Watch, Error> {
        let r = Request::Watch { group: self.name.clone(), view: Some(view_name(o.view).into()), snapshot: o.snapshot, typed: true };
        self.client.watch(r, o.snapshot).await
    }
}

fn seq(j: &Json) -> Result<u64, Error> {
    j.get("seq").and_then(Json::as_u64).ok_or_else(|| Error::Protocol(format!("a write answered without its seq: {j}")))
}
