//! The impairment knobs and their validation.

use std::error::Error;
use std::fmt;

/// The largest accepted `delay_ms + jitter_ms`: ten minutes. Longer holds make no sense for
/// a test relay and would only fill its queue.
pub const MAX_DELAY_MS: u64 = 600_000;

/// How a relay mistreats datagrams, in each direction independently.
///
/// Each datagram is first lost with probability `loss_pct`%; a survivor is then sent twice
/// with probability `dup_pct`%. Every copy gets its own delay, uniform over the whole
/// milliseconds in `[delay_ms - jitter_ms, delay_ms + jitter_ms]`, clamped at 0 (so with
/// `jitter_ms > delay_ms` a share of the datagrams goes out at once). Reordering is not a
/// knob: it emerges from jitter, and without jitter nothing is reordered.
///
/// The default impairs nothing: no loss, no duplicates, no delay, seed 0. Check a value with
/// [`Impairment::validate`]; [`Schedule::new`](crate::Schedule::new) and
/// [`Relay::spawn`](crate::Relay::spawn) do it too.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Percentage of datagrams dropped, `0.0..=100.0`.
    pub loss_pct: f64,
    /// Percentage of surviving datagrams delivered twice, `0.0..=100.0`.
    pub dup_pct: f64,
    /// Base one-way delay in milliseconds.
    pub delay_ms: u64,
    /// Half-width of the uniform delay spread in milliseconds.
    pub jitter_ms: u64,
    /// Seed of the pseudo-random schedule: equal seeds and equal call sequences give equal
    /// verdicts.
    pub seed: u64,
}

impl Impairment {
    /// Checks the percentages and that `delay_ms + jitter_ms` stays within [`MAX_DELAY_MS`].
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        if !(0.0..=100.0).contains(&self.loss_pct) {
            return Err(ImpairmentError::LossOutOfRange(self.loss_pct));
        }
        if !(0.0..=100.0).contains(&self.dup_pct) {
            return Err(ImpairmentError::DupOutOfRange(self.dup_pct));
        }
        match self.delay_ms.checked_add(self.jitter_ms) {
            Some(max) if max <= MAX_DELAY_MS => Ok(()),
            _ => Err(ImpairmentError::DelayTooLarge { delay_ms: self.delay_ms, jitter_ms: self.jitter_ms }),
        }
    }
}

/// Formats as `loss X%, dup Y%, delay A±B ms, seed S`, the words of the relay's startup line.
impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss {}%, dup {}%, delay {}±{} ms, seed {}",
            self.loss_pct, self.dup_pct, self.delay_ms, self.jitter_ms, self.seed
        )
    }
}

/// Why an [`Impairment`] was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ImpairmentError {
    /// `loss_pct` is not a number in `0.0..=100.0` (NaN included).
    LossOutOfRange(f64),
    /// `dup_pct` is not a number in `0.0..=100.0` (NaN included).
    DupOutOfRange(f64),
    /// `delay_ms + jitter_ms` exceeds [`MAX_DELAY_MS`].
    DelayTooLarge {
        /// The refused base delay.
        delay_ms: u64,
        /// The refused jitter.
        jitter_ms: u64,
    },
}

impl fmt::Display for ImpairmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LossOutOfRange(v) => write!(f, "loss percentage {v} is outside 0..=100"),
            Self::DupOutOfRange(v) => write!(f, "duplicate percentage {v} is outside 0..=100"),
            Self::DelayTooLarge { delay_ms, jitter_ms } => write!(
                f,
                "delay {delay_ms} ms + jitter {jitter_ms} ms exceeds the maximum of {MAX_DELAY_MS} ms"
            ),
        }
    }
}

impl Error for ImpairmentError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(loss_pct: f64, dup_pct: f64, delay_ms: u64, jitter_ms: u64) -> Impairment {
        Impairment { loss_pct, dup_pct, delay_ms, jitter_ms, seed: 0 }
    }

    #[test]
    fn accepts_the_bounds() {
        assert_eq!(Impairment::default().validate(), Ok(()));
        assert_eq!(with(0.0, 0.0, 0, 0).validate(), Ok(()));
        assert_eq!(with(100.0, 100.0, MAX_DELAY_MS - 7, 7).validate(), Ok(()));
        assert_eq!(with(0.5, 99.9, 0, MAX_DELAY_MS).validate(), Ok(()));
    }

    #[test]
    fn refuses_percentages_out_of_range() {
        for bad in [-0.1, 100.01, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(with(bad, 0.0, 0, 0).validate(), Err(ImpairmentError::LossOutOfRange(bad)));
            assert_eq!(with(0.0, bad, 0, 0).validate(), Err(ImpairmentError::DupOutOfRange(bad)));
        }
        assert!(matches!(with(f64::NAN, 0.0, 0, 0).validate(), Err(ImpairmentError::LossOutOfRange(v)) if v.is_nan()));
        assert!(matches!(with(0.0, f64::NAN, 0, 0).validate(), Err(ImpairmentError::DupOutOfRange(v)) if v.is_nan()));
    }

    #[test]
    fn refuses_too_long_or_overflowing_delays() {
        let too_long = ImpairmentError::DelayTooLarge { delay_ms: MAX_DELAY_MS, jitter_ms: 1 };
        assert_eq!(with(0.0, 0.0, MAX_DELAY_MS, 1).validate(), Err(too_long));
        let overflow = ImpairmentError::DelayTooLarge { delay_ms: u64::MAX, jitter_ms: u64::MAX };
        assert_eq!(with(0.0, 0.0, u64::MAX, u64::MAX).validate(), Err(overflow));
    }

    #[test]
    fn errors_explain_themselves() {
        let e: Box<dyn Error> = Box::new(ImpairmentError::LossOutOfRange(101.0));
        assert_eq!(e.to_string(), "loss percentage 101 is outside 0..=100");
        assert_eq!(ImpairmentError::DupOutOfRange(-1.0).to_string(), "duplicate percentage -1 is outside 0..=100");
        let e = ImpairmentError::DelayTooLarge { delay_ms: 600_000, jitter_ms: 5 };
        assert_eq!(e.to_string(), "delay 600000 ms + jitter 5 ms exceeds the maximum of 600000 ms");
    }

    #[test]
    fn displays_like_the_startup_line() {
        let imp = Impairment { loss_pct: 10.0, dup_pct: 0.5, delay_ms: 20, jitter_ms: 15, seed: 42 };
        assert_eq!(imp.to_string(), "loss 10%, dup 0.5%, delay 20±15 ms, seed 42");
    }
}
