//! Leaderless shared goals for a formation. Each member proposes a goal (a waypoint, a
//! formation shape, a target) in a register of its own; the formation's goal is a pure
//! function of the committed proposals of the group's current members: the goal most of them
//! propose, ties to the smallest. Every member computes it from the same state, so all agree
//! without electing anyone, and when a member decoheres and the group prunes it, its proposal
//! stops counting and the goal is chosen again, alike everywhere.
//!
//! Members here are the group's members (nodes: a drone runs one), so an agent says which
//! member it speaks for; in the simulator that is its group's id.
//!
//! ```
//! use spook_agents::goals::Formation;
//! use spook_core::{api::GroupApi, GroupKind, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig::default(), spook_agents::schema(Schema::new()), GroupKind::Serial, 3);
//! for (i, goal) in ["north", "north", "east"].into_iter().enumerate() {
//!     let g = net.group(i);
//!     net.spawn(i, async move { Formation::new(&g, g.id()).propose(goal).await.unwrap(); });
//! }
//! net.run_for(2_000);
//! let g = net.group(2);
//! net.spawn(2, async move {
//!     let choice = Formation::new(&g, g.id()).choose().await.unwrap().unwrap();
//!     assert_eq!((choice.goal.as_str(), choice.votes), ("north", 2));
//! });
//! net.run_for(100);
//! assert_eq!(net.agents(), 0);
//! ```

use std::collections::BTreeMap;

use spook_core::api::{Event, Fields, GroupApi, WatchStream};
use spook_core::{EndpointId, RegisterId, Schema, Value, View};

/// The formation's goal, as every member computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The goal.
    pub goal: String,
    /// How many members propose it.
    pub votes: usize,
    /// The members whose proposals counted (sorted).
    pub members: Vec<EndpointId>,
}

/// One member's part in a formation's goals (field `goal`).
pub struct Formation<'g, G> {
    group: &'g G,
    member: EndpointId,
    prefix: String,
}

impl<'g, G: GroupApi> Formation<'g, G> {
    /// The formation of `group`, as `member` (the group member this agent speaks for).
    pub fn new(group: &'g G, member: EndpointId) -> Formation<'g, G> {
        Formation { group, member, prefix: "formation".into() }
    }

    /// Keep proposals under another name, for several formations in one group.
    #[must_use]
    pub fn named(mut self, name: &str) -> Formation<'g, G> {
        self.prefix = name.to_string();
        self
    }

    /// The register of `member`'s proposal: a hashed name, so proposals need no register
    /// of the schema's.
    #[must_use]
    pub fn register_of(&self, member: EndpointId) -> RegisterId {
        Schema::new().resolve_register(&format!("{}/{member}", self.prefix))
    }

    /// Propose `goal` for this member (replacing its earlier proposal).
    ///
    /// # Errors
    /// The group failed (the schema has no `goal` field holding a string, ...).
    pub async fn propose(&self, goal: &str) -> Result<u64, G::Error> {
        self.group.write(self.register_of(self.member), Fields::from([("goal".to_string(), Value::from(goal))])).await
    }

    /// The goal chosen from the committed proposals of the group's members now, or `None`
    /// if none has proposed one.
    ///
    /// # Errors
    /// The group failed.
    pub async fn choose(&self) -> Result<Option<Choice>, G::Error> {
        let mut members = self.group.members().await?;
        members.sort();
        let mut votes: BTreeMap<String, Vec<EndpointId>> = BTreeMap::new();
        for m in &members {
            if let Some(Value::Str(goal)) = self.group.read(self.register_of(*m), View::Committed).await?.remove("goal") {
                votes.entry(goal).or_default().push(*m);
            }
        }
        // Most votes; among equals the smallest goal (the map's order, and `max_by_key` keeps
        // the last of equal keys, so iterate in reverse).
        Ok(votes.into_iter().rev().max_by_key(|(_, v)| v.len()).map(|(goal, m)| Choice { goal, votes: m.len(), members: m }))
    }

    /// Wait until the choice differs from `last` (a proposal changed, a member decohered,
    /// left or joined), and return the new one; `None` if `watch` ended first.
    ///
    /// # Errors
    /// The group failed.
    pub async fn next_choice(&self, watch: &mut G::Watch, last: Option<&Choice>) -> Result<Option<Option<Choice>>, G::Error> {
        loop {
            match watch.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(Event::Change(_) | Event::Decohered(_) | Event::MemberLeft(_) | Event::MemberJoined(_) | Event::ReEntangled { .. } | Event::Lagged(_))) => {
                    let now = self.choose().await?;
                    if now.as_ref() != last {
                        return Ok(Some(now));
                    }
                }
                Some(Ok(Event::Committed { .. })) => {}
            }
        }
    }
}
