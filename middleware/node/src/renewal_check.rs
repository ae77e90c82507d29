//! Whether a renewal of the zenoh session left the data path working (sans-IO: time and what
//! was heard are arguments). A renewal closes every zenoh link and opens new ones; when both
//! ends of a link renew within the same few milliseconds (the steps of a domain key rotation
//! are the same on every node), zenoh can end up with a link that carries nothing between two
//! live nodes, and it does not repair that by itself. So after each renewal the node checks
//! that the members it heard just before are heard again within [`CHECK_AFTER_MS`], and
//! renews once more if not, at most [`MAX_REPAIRS`] times in a row: a member that is really
//! gone (a partition) costs a few renewals, never a loop. Each node waits a little more than
//! the others (a stagger drawn from its id), so that two nodes that lost each other do not
//! renew at the same moment again.
//!
//! ```
//! use spook_core::EndpointId;
//! use spook_node::renewal_check::{RenewalCheck, Verdict, CHECK_AFTER_MS};
//! let (a, b) = (EndpointId::from_index(1), EndpointId::from_index(2));
//! let check = RenewalCheck::after_renewal(None, false, 1_000, 0, [a, b].into());
//! assert_eq!(check.verdict(1_500, |_| false), Verdict::Wait);
//! // `a` was heard after the renewal, `b` was not.
//! let heard_after = |m: &EndpointId| *m == a;
//! assert_eq!(check.verdict(1_000 + CHECK_AFTER_MS, heard_after), Verdict::Renew(vec![b]));
//! ```

use std::collections::BTreeSet;

use spook_core::EndpointId;

/// How long after a renewal every member heard before it must be heard again (ms): more than
/// two rounds of key announcements and many digests.
pub const CHECK_AFTER_MS: u64 = 8_000;

/// Renewals in a row made because members stayed silent after the last one.
pub const MAX_REPAIRS: u32 = 3;

/// What to check after one renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalCheck {
    /// When the session was renewed (ms).
    at: u64,
    /// When to look (ms).
    due: u64,
    /// The members heard just before (kept through repairs: after a broken renewal, nobody
    /// was heard since).
    heard: BTreeSet<EndpointId>,
    /// Repairs in a row, this one included.
    repairs: u32,
}

/// What the check says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Too early to tell.
    Wait,
    /// Every member heard before was heard again: nothing more to check.
    Done,
    /// These members went silent with the renewal: renew once more.
    Renew(Vec<EndpointId>),
    /// Still silent after [`MAX_REPAIRS`] repairs: they are gone, not the link.
    GiveUp(Vec<EndpointId>),
}

impl RenewalCheck {
    /// The check for a renewal at `now`, looked at [`CHECK_AFTER_MS`] plus `stagger_ms`
    /// later. `repair` says this renewal was made because the last check said so: it keeps
    /// the members that check expected; otherwise they are `heard_before` (members heard
    /// within [`CHECK_AFTER_MS`] before now).
    #[must_use]
    pub fn after_renewal(
        last: Option<RenewalCheck>,
        repair: bool,
        now: u64,
        stagger_ms: u64,
        heard_before: BTreeSet<EndpointId>,
    ) -> RenewalCheck {
        let due = now
            .saturating_add(CHECK_AFTER_MS)
            .saturating_add(stagger_ms);
        match last {
            Some(l) if repair => RenewalCheck {
                at: now,
                due,
                heard: l.heard,
                repairs: l.repairs + 1,
            },
            _ => RenewalCheck {
                at: now,
                due,
                heard: heard_before,
                repairs: 0,
            },
        }
    }

    /// When the renewal was made (ms): members heard since then count as heard again.
    #[must_use]
    pub fn renewed_at(&self) -> u64 {
        self.at
    }

    /// The verdict at `now`, given whether each expected member (still allowed and a member)
    /// was heard since [`RenewalCheck::renewed_at`].
    #[must_use]
    pub fn verdict(&self, now: u64, heard_since_renewal: impl Fn(&EndpointId) -> bool) -> Verdict {
        if now < self.due {
            return Verdict::Wait;
        }
        let silent: Vec<EndpointId> = self
            .heard
            .iter()
            .filter(|m| !heard_since_renewal(m))
            .copied()
            .collect();
        match silent {
            s if s.is_empty() => Verdict::Done,
            s if self.repairs < MAX_REPAIRS => Verdict::Renew(s),
            s => Verdict::GiveUp(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_are_bounded_and_keep_the_members_heard_before_the_first_renewal() {
        let (a, b) = (EndpointId::from_index(1), EndpointId::from_index(2));
        let mut check = RenewalCheck::after_renewal(None, false, 0, 0, [a, b].into());
        let mut now = 0;
        let mut renewals = 0;
        loop {
            now += CHECK_AFTER_MS;
            match check.verdict(now, |m| *m == a) {
                Verdict::Renew(silent) => {
                    assert_eq!(silent, vec![b]);
                    renewals += 1;
                    // After a broken renewal nobody was heard before it: the set is kept.
                    check = RenewalCheck::after_renewal(Some(check), true, now, 0, BTreeSet::new());
                }
                Verdict::GiveUp(silent) => {
                    assert_eq!(silent, vec![b]);
                    break;
                }
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(renewals, MAX_REPAIRS);
        // A renewal for another reason starts over.
        let fresh = RenewalCheck::after_renewal(Some(check), false, now, 700, [a].into());
        assert_eq!(
            fresh.verdict(now + CHECK_AFTER_MS, |m| *m == a),
            Verdict::Wait,
            "staggered"
        );
        assert_eq!(
            fresh.verdict(now + CHECK_AFTER_MS + 700, |m| *m == a),
            Verdict::Done
        );
    }
}
