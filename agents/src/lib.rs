//! `spook-agents`: coordination patterns for robot fleets and AI agents, written once over
//! [`spook_core::api::GroupApi`], so the same code runs against real nodes (`spook-client`)
//! and on simulated replicas (`spook_sim::net`): task [`claims`] with leases and fencing
//! tokens, [`auctions`] with a winner every member computes (open bids) and [`sealed`] bids,
//! a [`blackboard`] of owned entries, [`barrier`]s with a deadline, and leaderless [`goals`]
//! for a formation.
//!
//! Each pattern is a few serial transactions and reads; none has a leader, a lock server or
//! a timer of its own that decides anything: windows (a bidding period, a barrier's wait) are
//! leases, judged at each transaction's turn in the group's total order, so every member
//! reaches the same outcome. The fields they use are in [`schema`].
//!
//! It depends on the core's types only: no client, no node, no runtime.

pub mod auctions;
pub mod barrier;
pub mod blackboard;
pub mod claims;
pub mod goals;
pub mod sealed;
mod txn;
mod window;

use spook_core::api::GroupApi;
use spook_core::{MergePolicy, RegisterId, Schema, Value, ValueKind, View};

/// A string cell's committed value, if it holds one.
pub(crate) async fn committed_str<G: GroupApi>(g: &G, reg: RegisterId, field: &str) -> Result<Option<String>, G::Error> {
    Ok(match g.read(reg, View::Committed).await?.remove(field) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    })
}

/// The fields the patterns use: `owner` (claims, blackboard entries), `state` (a window: an
/// auction's bidding, a barrier's wait), `best` and `leader` (an auction's best bid and its
/// bidder), `arrived` (a barrier's arrivals), `goal` (a formation member's proposal), and
/// `bidders`, `seal` and `bid` (sealed bids).
pub const FIELDS: [(&str, ValueKind); 9] = [
    ("owner", ValueKind::Str),
    ("state", ValueKind::Str),
    ("best", ValueKind::F64),
    ("leader", ValueKind::Str),
    ("arrived", ValueKind::Str),
    ("goal", ValueKind::Str),
    ("bidders", ValueKind::Str),
    ("seal", ValueKind::Str),
    ("bid", ValueKind::Str),
];

/// `schema` with the fields of [`FIELDS`] added (last-writer-wins), for a group whose own
/// fields come first; a name it already has is left as it is.
///
/// ```
/// use spook_core::{MergePolicy, Schema, ValueKind};
/// let s = spook_agents::schema(Schema::new().field("note", ValueKind::Str, MergePolicy::LastWriterWins));
/// assert!(s.validate().is_ok());
/// assert!(s.field_id("note").is_some() && s.field_id("best").is_some());
/// ```
#[must_use]
pub fn schema(mut s: Schema) -> Schema {
    for (name, kind) in FIELDS {
        if s.field_id(name).is_none() {
            s = s.field(name, kind, MergePolicy::LastWriterWins);
        }
    }
    s
}
