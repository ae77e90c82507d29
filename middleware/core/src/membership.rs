//! Group membership as a pure function of the membership log (DESIGN.md, "Membership" and
//! "Removals need a majority that hears"): the log folded in total order gives the members,
//! the cuts of removed members, the serial epoch and every removal episode. Every replica that
//! holds the same log computes the same fold, so a removal that is void is void everywhere.
//!
//! Who proposes what, and when, is the replica's business (`replica.rs`, `silence.rs`); this
//! file only says which proposals take effect.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Delta, EndpointId, Hlc, Op};

/// Membership folded in total order.
#[derive(Clone, Default)]
pub(crate) struct MembershipFold {
    pub(crate) members: BTreeSet<EndpointId>,
    pub(crate) cuts: BTreeMap<EndpointId, u64>,
    pub(crate) epoch: u64,
    /// (member, cut, stamp of the re-add that ended the removal, if any).
    pub(crate) episodes: Vec<(EndpointId, u64, Option<Hlc>)>,
    /// Removals by decoherence that were void (not backed by a majority that hears).
    pub(crate) void_removals: u64,
    /// Every removal that took effect, in total order.
    pub(crate) removals: Vec<Removal>,
}

/// A removal that took effect in the membership fold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The member removed.
    pub member: EndpointId,
    /// Who proposed it (`None`: decided by consensus, serial groups).
    pub by: Option<EndpointId>,
    /// Where it sorts in the total order.
    pub stamp: Hlc,
    /// The members in force just before it.
    pub in_force: BTreeSet<EndpointId>,
    /// An operator's force-remove (exempt from the majority rule).
    pub forced: bool,
    /// The members the proposer heard (empty when forced or decided by consensus).
    pub heard: Vec<EndpointId>,
}

/// Whether a removal of `member` proposed by `proposer` takes effect among `members` (the
/// members in force where it sorts): DESIGN.md's "Removals need a majority that hears". The
/// proposer and the members in force it heard, other than the one removed, must be a strict
/// majority (`2 * votes > n`), and a member never removes itself this way. `heard: None` is an
/// operator's force-remove, which is exempt.
///
/// ```
/// use spook_core::{removal_is_backed, EndpointId};
/// let m: Vec<EndpointId> = (0..5).map(EndpointId::from_index).collect();
/// let all = m.iter().copied().collect();
/// // The majority side of a 3 | 2 split removes a member of the other side...
/// assert!(removal_is_backed(&all, m[0], m[4], Some(&[m[1], m[2]])));
/// // ...the minority side (or a 2 | 2 | 1 split) removes no one...
/// assert!(!removal_is_backed(&all, m[3], m[0], Some(&[m[4]])));
/// // ...and nobody removes itself.
/// assert!(!removal_is_backed(&all, m[0], m[0], Some(&[m[1], m[2], m[3]])));
/// ```
#[must_use]
pub fn removal_is_backed(members: &BTreeSet<EndpointId>, proposer: EndpointId, member: EndpointId, heard: Option<&[EndpointId]>) -> bool {
    let Some(heard) = heard else { return true };
    if proposer == member {
        return false;
    }
    let voters: BTreeSet<&EndpointId> = heard.iter().filter(|h| **h != proposer && **h != member && members.contains(*h)).collect();
    let votes = voters.len() + usize::from(members.contains(&proposer));
    2 * votes > members.len()
}

impl MembershipFold {
    /// The fold of `log` (ordered by (stamp, origin, seq)) from the initial `members`, up to
    /// `upto` (`None`: the whole log). A change proposed by a non-member is void. Convergent
    /// groups apply `AddMember`/`RemoveMember` (removals only when backed); serial groups
    /// apply only the first `Decided` of each next epoch (consensus is their majority).
    pub(crate) fn of(initial: &[EndpointId], serial: bool, log: &BTreeMap<(Hlc, EndpointId, u64), Delta>, upto: Option<Hlc>) -> Self {
        let mut f = MembershipFold { members: initial.iter().copied().collect(), ..MembershipFold::default() };
        for ((stamp, origin, _), d) in log {
            if upto.is_some_and(|u| *stamp > u) {
                break;
            }
            if !f.members.contains(origin) {
                continue;
            }
            for op in &d.ops {
                match op {
                    Op::Decided { epoch: e, ops } if serial && *e == f.epoch + 1 => {
                        f.epoch += 1;
                        for o in ops {
                            f.apply(o, *stamp, None);
                        }
                    }
                    Op::AddMember(_) | Op::RemoveMember { .. } if !serial => f.apply(op, *stamp, Some(*origin)),
                    _ => {}
                }
            }
        }
        f
    }

    /// Apply one change at `stamp`; `proposer` is `None` for a decision by consensus.
    fn apply(&mut self, op: &Op, stamp: Hlc, proposer: Option<EndpointId>) {
        match op {
            Op::AddMember(x) => {
                if self.members.insert(*x) {
                    if let Some(e) = self.episodes.iter_mut().rev().find(|(m, _, readd)| m == x && readd.is_none()) {
                        e.2 = Some(stamp);
                    }
                }
                self.cuts.remove(x);
            }
            Op::RemoveMember { member, cut, heard } if self.members.contains(member) => {
                let backed = proposer.is_none_or(|p| removal_is_backed(&self.members, p, *member, heard.as_deref()));
                if !backed {
                    self.void_removals += 1;
                    return;
                }
                self.removals.push(Removal { member: *member, by: proposer, stamp, in_force: self.members.clone(), forced: heard.is_none(), heard: heard.clone().unwrap_or_default() });
                self.members.remove(member);
                self.cuts.insert(*member, *cut);
                self.episodes.push((*member, *cut, None));
            }
            _ => {}
        }
    }
}
