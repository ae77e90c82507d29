//! A sliding replay window over 64-bit counters (as IPsec and WireGuard keep), so frames may
//! arrive out of order over lossy links but never twice.

/// Why a counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Seen before.
    #[error("counter {0} was seen before")]
    Replayed(u64),
    /// Older than the window.
    #[error("counter {0} is older than the replay window")]
    TooOld(u64),
}

const WORDS: usize = 32;

/// The last [`ReplayWindow::SIZE`] counters below the highest seen.
///
/// ```
/// # use spook_secure::ReplayWindow;
/// let mut w = ReplayWindow::default();
/// w.check(5).unwrap();
/// w.mark(5);
/// assert!(w.check(5).is_err());
/// assert!(w.check(4).is_ok()); // late, but not seen: accepted
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// One past the highest counter marked (0: none yet).
    top: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// Counters kept.
    pub const SIZE: u64 = (WORDS * 64) as u64;

    /// Whether `counter` may be accepted (call before the expensive check, then [`mark`]).
    ///
    /// [`mark`]: ReplayWindow::mark
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if counter >= self.top {
            return Ok(());
        }
        if self.top - counter > Self::SIZE {
            return Err(ReplayError::TooOld(counter));
        }
        let (w, b) = Self::slot(counter);
        if self.bits[w] & (1 << b) != 0 {
            return Err(ReplayError::Replayed(counter));
        }
        Ok(())
    }

    /// Record `counter` as seen (only after the frame authenticated).
    pub fn mark(&mut self, counter: u64) {
        if counter >= self.top {
            let advance = counter + 1 - self.top;
            if advance >= Self::SIZE {
                self.bits = [0; WORDS];
            } else {
                for c in self.top..=counter {
                    let (w, b) = Self::slot(c);
                    self.bits[w] &= !(1 << b);
                }
            }
            self.top = counter + 1;
        } else if self.top - counter > Self::SIZE {
            return;
        }
        let (w, b) = Self::slot(counter);
        self.bits[w] |= 1 << b;
    }

    fn slot(c: u64) -> (usize, u32) {
        let i = (c % Self::SIZE) as usize;
        (i / 64, (i % 64) as u32)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const _: () = assert!(ReplayWindow::SIZE >= 2048, "DESIGN.md: a replay window of at least 2048");

    #[test]
    fn out_of_order_within_the_window_is_accepted_once() {
        let mut w = ReplayWindow::default();
        for c in [10, 3, 7, 2_000, 1_000, 9] {
            w.check(c).unwrap();
            w.mark(c);
            assert_eq!(w.check(c), Err(ReplayError::Replayed(c)));
        }
        w.mark(5_000);
        assert_eq!(w.check(5_000 - ReplayWindow::SIZE - 1), Err(ReplayError::TooOld(5_000 - ReplayWindow::SIZE - 1)));
        assert!(w.check(5_000 - ReplayWindow::SIZE + 1).is_ok());
    }

    proptest::proptest! {
        /// The bitmap agrees with a model that remembers every counter: a counter is accepted
        /// iff it was never marked and is within SIZE of the highest marked one.
        #[test]
        fn agrees_with_a_set_model(ops in proptest::collection::vec(0u64..6_000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            for c in ops {
                let top = seen.last().map_or(0, |t| t + 1);
                let want = if seen.contains(&c) && top - c <= ReplayWindow::SIZE {
                    Err(ReplayError::Replayed(c))
                } else if c < top && top - c > ReplayWindow::SIZE {
                    Err(ReplayError::TooOld(c))
                } else {
                    Ok(())
                };
                proptest::prop_assert_eq!(w.check(c), want);
                if want.is_ok() {
                    w.mark(c);
                    seen.insert(c);
                }
            }
        }
    }
}
