//! When to drop the zenoh session and open a fresh one.
//!
//! zenoh gives no hop-to-hop reliability over an unreliable link (UDP, serial): a declaration
//! is sent once. Over a lossy radio a lost `DeclareKeyExpr` leaves a peer dropping every sample
//! we send it ("Route data with unknown scope"), and a lost or reordered `OpenAck` leaves a
//! session open on one side only (zenoh#2806). Neither heals while the session lives. A fresh
//! session has a fresh zenoh id, so both sides start from nothing: new handshakes, new
//! declarations.
//!
//! Renewing costs every other peer a reconnection, so it is kept for when it can help: a
//! member has been unreachable for [`Renewal::AFTER_MS`] while zenoh holds at least as many
//! transports as it did the last time every member was reachable. A member that is really
//! gone takes its transport with it (zenoh's lease), which keeps a plain partition from
//! causing renewals; a wedged session keeps its transport and gets renewed. Renewals back off
//! (doubling up to [`Renewal::MAX_BACKOFF_MS`]) while the member stays unreachable.

/// The renewal policy: sans-IO, fed the time, whether some member is unreachable, and how
/// many zenoh transports (peers and routers) the session holds.
#[derive(Debug, Clone)]
pub struct Renewal {
    unreachable_since: Option<u64>,
    /// Transports held the last time every member was reachable.
    baseline: usize,
    not_before: u64,
    backoff_ms: u64,
}

impl Default for Renewal {
    fn default() -> Self {
        Renewal { unreachable_since: None, baseline: 0, not_before: 0, backoff_ms: Self::AFTER_MS }
    }
}

impl Renewal {
    /// How long a member must be unreachable before a renewal (ms): longer than zenoh's
    /// default 10 s lease, so that a member that is really gone has lost its transport by then.
    pub const AFTER_MS: u64 = 12_000;
    /// The longest wait between two renewals while a member stays unreachable (ms).
    pub const MAX_BACKOFF_MS: u64 = 96_000;

    /// True when the session should be renewed now.
    ///
    /// ```
    /// use spook_node::renewal::Renewal;
    /// let mut r = Renewal::default();
    /// assert!(!r.on_tick(0, false, 4)); // all reachable over 4 transports
    /// assert!(!r.on_tick(1_000, true, 4)); // a member went quiet
    /// assert!(r.on_tick(13_000, true, 4)); // still quiet, zenoh still holds 4: wedged
    /// ```
    pub fn on_tick(&mut self, now: u64, unreachable: bool, transports: usize) -> bool {
        if !unreachable {
            *self = Renewal { baseline: transports, ..Renewal::default() };
            return false;
        }
        let since = *self.unreachable_since.get_or_insert(now);
        if now.saturating_sub(since) < Self::AFTER_MS || transports < self.baseline || now < self.not_before {
            return false;
        }
        self.not_before = now + self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(Self::MAX_BACKOFF_MS);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Renewal;

    #[test]
    fn a_partition_that_took_its_transport_causes_no_renewal() {
        let mut r = Renewal::default();
        assert!(!r.on_tick(0, false, 4));
        for t in (1_000..120_000).step_by(1_000) {
            // zenoh's lease expired: one transport fewer.
            assert!(!r.on_tick(t, true, if t < 10_000 { 4 } else { 3 }), "at {t}");
        }
    }

    #[test]
    fn a_wedged_session_is_renewed_with_backoff_until_the_member_is_back() {
        let mut r = Renewal::default();
        assert!(!r.on_tick(0, false, 4));
        let renewals: Vec<u64> = (1_000..200_000).step_by(1_000).filter(|&t| r.on_tick(t, true, 4)).collect();
        assert_eq!(renewals, vec![13_000, 25_000, 49_000, 97_000, 193_000]);
        // Reachable again: the backoff starts over.
        assert!(!r.on_tick(200_000, false, 4));
        assert!(!r.on_tick(201_000, true, 4));
        assert!(r.on_tick(213_000, true, 4));
    }

    #[test]
    fn a_node_never_fully_connected_may_renew() {
        let mut r = Renewal::default();
        assert!(!r.on_tick(0, true, 0));
        assert!(r.on_tick(12_000, true, 0));
    }

    #[test]
    fn more_transports_than_the_baseline_still_counts_as_wedged() {
        let mut r = Renewal::default();
        assert!(!r.on_tick(0, false, 2));
        assert!(!r.on_tick(1_000, true, 3));
        assert!(r.on_tick(13_000, true, 3));
    }
}
