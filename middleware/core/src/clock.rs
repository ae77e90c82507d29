//! QNetClock: hybrid logical clock stamps that give one total order every node computes alike.

use serde::{Deserialize, Serialize};

/// A hybrid logical clock value: wall milliseconds in the high 48 bits, a logical counter in
/// the low 16. Ordered as an integer; ties between origins break by `EndpointId` (see
/// [`crate::Delta::order_key`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    /// The stamp at wall time `ms` with logical counter `ctr`.
    #[must_use]
    pub const fn new(ms: u64, ctr: u16) -> Self {
        Hlc((ms << 16) | ctr as u64)
    }
    /// Wall-clock milliseconds.
    #[must_use]
    pub const fn ms(self) -> u64 {
        self.0 >> 16
    }
    /// Logical counter.
    #[must_use]
    pub const fn ctr(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

/// A stamp was too far ahead of local time to adopt; retry once local time reaches `retry_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stamp {stamp:?} is more than the allowed skew ahead of local time; retry at {retry_at} ms")]
pub struct TooFarAhead {
    /// The stamp that was held back.
    pub stamp: Hlc,
    /// Local time (ms) at which it is no longer too far ahead.
    pub retry_at: u64,
}

/// A hybrid logical clock. It never reads a clock: local time comes in as `now` (ms).
///
/// ```
/// # use spook_core::{Clock, Hlc};
/// let mut c = Clock::new(1_000);
/// let a = c.tick(5);
/// let b = c.tick(5);
/// assert!(b > a);
/// assert!(c.observe(Hlc::new(60_000, 0), 5).is_err()); // a minute ahead: held back
/// ```
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
    max_future_ms: u64,
}

impl Clock {
    /// A clock that refuses stamps more than `max_future_ms` ahead of local time.
    #[must_use]
    pub fn new(max_future_ms: u64) -> Self {
        Clock { last: Hlc(0), max_future_ms }
    }

    /// A fresh stamp for a local event at local time `now`, greater than every stamp seen.
    pub fn tick(&mut self, now: u64) -> Hlc {
        let ms = now.max(self.last.ms());
        self.last = if ms == self.last.ms() {
            if self.last.ctr() == u16::MAX {
                Hlc::new(ms + 1, 0)
            } else {
                Hlc(self.last.0 + 1)
            }
        } else {
            Hlc::new(ms, 0)
        };
        self.last
    }

    /// The current reading without creating an event: every later [`Clock::tick`] is greater.
    pub fn read(&mut self, now: u64) -> Hlc {
        if now > self.last.ms() {
            self.last = Hlc::new(now, 0);
        }
        self.last
    }

    /// Adopt a remote stamp, unless it is more than the allowed skew ahead of `now`.
    ///
    /// # Errors
    /// [`TooFarAhead`] when the stamp must be held back and retried later.
    pub fn check(&self, stamp: Hlc, now: u64) -> Result<(), TooFarAhead> {
        if stamp.ms() > now.saturating_add(self.max_future_ms) {
            return Err(TooFarAhead { stamp, retry_at: stamp.ms() - self.max_future_ms });
        }
        Ok(())
    }

    /// [`Clock::check`], then move the clock past `stamp`.
    ///
    /// # Errors
    /// [`TooFarAhead`] when the stamp must be held back and retried later.
    pub fn observe(&mut self, stamp: Hlc, now: u64) -> Result<(), TooFarAhead> {
        self.check(stamp, now)?;
        if stamp > self.last {
            self.last = stamp;
        }
        Ok(())
    }

    /// The last stamp issued or observed.
    #[must_use]
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Restore after a restart: never issue a stamp at or below `hwm`.
    pub fn restore(&mut self, hwm: Hlc) {
        if hwm > self.last {
            self.last = hwm;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_even_when_time_goes_back() {
        let mut c = Clock::new(100);
        let a = c.tick(50);
        let b = c.tick(10);
        assert!(b > a);
        let r = c.read(10);
        assert!(c.tick(10) > r);
    }

    #[test]
    fn future_stamp_is_held_with_retry_time() {
        let mut c = Clock::new(100);
        let e = c.observe(Hlc::new(500, 0), 100).unwrap_err();
        assert_eq!(e.retry_at, 400);
        assert!(c.observe(Hlc::new(500, 0), 400).is_ok());
        assert_eq!(c.last(), Hlc::new(500, 0));
    }
}
