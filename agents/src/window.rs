//! A window open for a while in the group's total order: a cell leased for the window's
//! length. Opening commits only where the cell was never written; a transaction inside the
//! window conditions on the lease being held at its turn; closing commits once the lease has
//! ended at the closing transaction's turn. Once a member has seen a close commit, every
//! transaction inside the window has been evaluated there, so what the window gathered is
//! final, and the same on every member.

use spook_core::api::{GroupApi, Test, TxSpec};
use spook_core::RegisterId;

use crate::txn::{self, Done};

/// What a closed window's cell starts with; what it held while open follows.
const CLOSED: &str = "closed: ";

/// Whether a window cell's value says it is closed.
pub(crate) fn is_closed(state: &str) -> bool {
    state.starts_with(CLOSED)
}

/// What the window's cell held while it was open (what its opener wrote: a rule, a count).
pub(crate) fn opened_as(state: &str) -> &str {
    state.strip_prefix(CLOSED).unwrap_or(state)
}

/// Where a window stands after an attempt to close it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Closed (by this attempt or an earlier one): what it gathered is final.
    Closed,
    /// Its lease still runs at the closing transaction's turn.
    StillOpen,
    /// Nobody opened it.
    NeverOpened,
    /// The outcome of the closing transaction is not known here yet.
    Unknown,
}

/// The window cell's committed value, waiting up to `within_ms` for it to appear: a member
/// may act before the opening has reached it. `None` if nobody opened it by then.
pub(crate) async fn opened<G: GroupApi>(g: &G, reg: RegisterId, field: &str, within_ms: u64) -> Result<Option<String>, G::Error> {
    let since = g.now_ms();
    loop {
        if let Some(s) = crate::committed_str(g, reg, field).await? {
            return Ok(Some(s));
        }
        if g.now_ms().saturating_sub(since) >= within_ms {
            return Ok(None);
        }
        g.sleep_ms(100).await;
    }
}

/// Close the window on (`reg`, `field`) if its lease has ended.
pub(crate) async fn close<G: GroupApi>(g: &G, reg: RegisterId, field: &str, deadline_ms: u64) -> Result<Closing, G::Error> {
    // Two rounds at most: a close that lost to another member's close reads "closed" next.
    for _ in 0..2 {
        let open = match crate::committed_str(g, reg, field).await? {
            None => return Ok(Closing::NeverOpened),
            Some(s) if is_closed(&s) => return Ok(Closing::Closed),
            Some(s) => s,
        };
        let closed = format!("{CLOSED}{open}");
        let tx = TxSpec::new().when(reg, field, Test::Equals(open.into())).when(reg, field, Test::LeaseExpired).set(reg, field, closed);
        match txn::run(g, tx, deadline_ms).await? {
            Done::Committed(_) => return Ok(Closing::Closed),
            Done::Failed(Some(1)) => return Ok(Closing::StillOpen),
            Done::Failed(Some(_)) => {}
            Done::Failed(None) | Done::Unknown => return Ok(Closing::Unknown),
        }
    }
    Ok(Closing::Unknown)
}
