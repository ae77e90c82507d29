//! How many hellos a node answers per second. Reading a Noise IK hello costs one X25519
//! multiplication before the node even knows whether it allows the sender; a flood of hellos
//! from keys it does not know would otherwise take whole cores. Past the budget a hello is
//! dropped unread (and counted), so a flood costs the node little more than receiving it.
//! Allowed peers and clients retry with back-off and get in once the flood ebbs.

/// Hellos read per second, sustained: at tens of µs each, a few percent of one core.
pub(crate) const HELLOS_PER_SEC: u64 = 200;
/// Hellos read at once after a quiet spell (a domain's nodes all restarting).
pub(crate) const HELLO_BURST: u64 = 100;

/// A token bucket on time in milliseconds (the caller's clock: no system time here): full, it
/// lets [`HELLO_BURST`] through at once, then one per `1000 / HELLOS_PER_SEC` ms.
#[derive(Debug)]
pub(crate) struct HelloBudget {
    /// Thousandths of a hello.
    milli: u64,
    last_ms: u64,
}

impl HelloBudget {
    /// A full bucket at `now_ms`.
    pub(crate) fn new(now_ms: u64) -> HelloBudget {
        HelloBudget { milli: HELLO_BURST * 1000, last_ms: now_ms }
    }

    /// Whether a hello may be read now; takes it from the budget if so.
    pub(crate) fn try_take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.milli = (self.milli + elapsed.saturating_mul(HELLOS_PER_SEC)).min(HELLO_BURST * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_and_never_more() {
        let mut b = HelloBudget::new(1_000);
        assert_eq!((0..1_000).filter(|_| b.try_take(1_000)).count() as u64, HELLO_BURST);
        // Over ten seconds of a flood (one attempt per 100 µs, as at 10,000 hellos/s), the
        // rate it lets through is the sustained one.
        let mut read = 0u64;
        for i in 0..100_000u64 {
            read += u64::from(b.try_take(1_000 + i / 10));
        }
        assert!((HELLOS_PER_SEC * 10 - 1..=HELLOS_PER_SEC * 10).contains(&read), "{read}");
        // A clock that steps back takes nothing extra.
        assert!(!b.try_take(500));
        // A quiet spell fills it again, no further than the burst.
        assert_eq!((0..1_000).filter(|_| b.try_take(1_000_000)).count() as u64, HELLO_BURST);
    }
}
