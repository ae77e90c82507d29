//! Administration of the client's node, typed: allow a peer, create and join groups, read
//! the domain key. A local or embedded client may ask; over zenoh the node refuses
//! ([`Error::NotAllowed`]), since administration stays on the node's own machine.

use serde_json::Value as Json;
use spook_core::{EndpointId, Schema};

use crate::error::Error;
use crate::proto::Request;
use crate::Client;

/// A group to create: its name, the other members, its kind and schema.
///
/// ```
/// use spook_client::GroupSpec;
/// let spec = GroupSpec::new("tasks").serial();
/// assert_eq!((spec.name.as_str(), spec.kind.as_str(), spec.members.len()), ("tasks", "serial", 0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    /// The group's name on this node (and, by default, on the members that join it).
    pub name: String,
    /// The other members.
    pub members: Vec<EndpointId>,
    /// `convergent` or `serial`.
    pub kind: String,
    /// The schema (the node's fleet schema if `None`).
    pub schema: Option<Schema>,
}

impl GroupSpec {
    /// A convergent group named `name` with this node alone and the default schema.
    #[must_use]
    pub fn new(name: &str) -> GroupSpec {
        GroupSpec { name: name.to_string(), members: Vec::new(), kind: "convergent".into(), schema: None }
    }

    /// A serial group: transactions in one total order.
    #[must_use]
    pub fn serial(mut self) -> GroupSpec {
        self.kind = "serial".into();
        self
    }

    /// Add a member.
    #[must_use]
    pub fn member(mut self, id: EndpointId) -> GroupSpec {
        self.members.push(id);
        self
    }

    /// Use this schema.
    #[must_use]
    pub fn schema(mut self, schema: Schema) -> GroupSpec {
        self.schema = Some(schema);
        self
    }
}

fn text(j: &Json, key: &str) -> Result<String, Error> {
    j.get(key).and_then(Json::as_str).map(str::to_string).ok_or_else(|| Error::Protocol(format!("an answer without {key:?}: {j}")))
}

impl Client {
    /// Allow `peer` (a node or a client key) to pair with the node, under a display name.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] over zenoh; the node's refusal otherwise.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client, peer: spook_core::EndpointId) -> Result<(), spook_client::Error> {
    /// client.allow(peer, "drone-7").await?;
    /// # Ok(()) }
    /// ```
    pub async fn allow(&self, peer: EndpointId, name: &str) -> Result<(), Error> {
        self.call(&Request::Allow { peer: peer.to_string(), name: name.to_string() }).await.map(drop)
    }

    /// Create a group; the answer is its invite, which each other member joins with.
    ///
    /// # Errors
    /// [`Error::BadValue`] for an unusable schema or kind; [`Error::NotAllowed`] over zenoh.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client, other: spook_client::Client) -> Result<(), spook_client::Error> {
    /// use spook_client::GroupSpec;
    /// let invite = client.create_group(GroupSpec::new("fleet").member(other.node_id().await?)).await?;
    /// other.join_group(&invite, None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn create_group(&self, spec: GroupSpec) -> Result<String, Error> {
        let r = Request::GroupCreate {
            name: spec.name,
            members: spec.members.iter().map(ToString::to_string).collect(),
            kind: Some(spec.kind),
            trusted_members: false,
            schema: spec.schema,
        };
        text(&self.call(&r).await?, "invite")
    }

    /// Join the group an invite names (under `name`, or the creator's name for it); the
    /// answer is the name it has here.
    ///
    /// # Errors
    /// [`Error::BadValue`] for a malformed invite; [`Error::NotAllowed`] over zenoh.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client, invite: String) -> Result<(), spook_client::Error> {
    /// let name = client.join_group(&invite, Some("fleet")).await?;
    /// assert_eq!(name, "fleet");
    /// # Ok(()) }
    /// ```
    pub async fn join_group(&self, invite: &str, name: Option<&str>) -> Result<String, Error> {
        let j = self.call(&Request::GroupJoin { invite: invite.to_string(), name: name.map(str::to_string) }).await?;
        text(&j, "group").or_else(|_| name.map(str::to_string).ok_or_else(|| Error::Protocol(format!("a join answer without the group: {j}"))))
    }

    /// The domain key's token, to hand to a node or client joining the domain.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] over zenoh; [`Error::NotFound`] if the node has none.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// let token = client.domain_key().await?;
    /// # Ok(()) }
    /// ```
    pub async fn domain_key(&self) -> Result<String, Error> {
        text(&self.call(&Request::DomainKey { set: None }).await?, "token")
    }

    /// Take the domain key `token` (from `domain_key()` on a node of the domain): the node
    /// joins that domain and renews its zenoh session.
    ///
    /// # Errors
    /// [`Error::BadValue`] for a malformed token; [`Error::NotAllowed`] over zenoh.
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client, token: String) -> Result<(), spook_client::Error> {
    /// client.set_domain_key(&token).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_domain_key(&self, token: &str) -> Result<(), Error> {
        self.call(&Request::DomainKey { set: Some(token.to_string()) }).await.map(drop)
    }
}
