//! A transaction's outcome as the patterns read it: committed with its fencing token, aborted
//! at a condition (which one), or not known here yet.

use spook_core::api::{GroupApi, Outcome, TxSpec};

/// What became of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// Committed, with its commit stamp.
    Committed(u64),
    /// Aborted because this condition (from 0) did not hold; `None` for another reason (its
    /// deadline passed, a dependency aborted).
    Failed(Option<usize>),
    /// Its deadline passed with the outcome unknown here.
    Unknown,
}

/// Run `tx` with `deadline_ms` and wait for its outcome.
pub(crate) async fn run<G: GroupApi>(g: &G, tx: TxSpec, deadline_ms: u64) -> Result<Done, G::Error> {
    Ok(match g.transact(tx.deadline_ms(deadline_ms)).await? {
        Outcome::Committed { fence, .. } => Done::Committed(fence),
        o @ Outcome::Aborted { .. } => Done::Failed(o.failed_condition()),
        Outcome::Decohered { .. } | Outcome::Pending { .. } => Done::Unknown,
    })
}
