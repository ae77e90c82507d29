//! How long a member may stay silent before it decoheres, learned per member from its link.
//!
//! A fixed timeout is wrong in both directions on a radio: a lossy link delivers a member's
//! frames in bursts with geometric gaps, and a reliable transport that stalls (QUIC or TCP
//! retransmitting) goes quiet for seconds and then delivers everything at once. Both are live
//! members. So the timeout follows the link: twice the longest gap between arrivals seen in
//! the last minute, never below the operator's lower bound (a member really gone decoheres
//! that fast on a quiet link) and never above the upper bound (a member really gone always
//! decoheres within it). Like TCP's retransmission timeout, it is an estimate from observed
//! arrivals, but of the worst recent gap rather than a mean and a variance: one stall is what
//! has to be survived next time, and a mean forgets it within a few arrivals.
//!
//! Pure data, no I/O: time comes in as milliseconds.

use std::collections::VecDeque;

/// How far back a gap counts towards the timeout (ms).
pub const SILENCE_WINDOW_MS: u64 = 60_000;

/// The gaps between arrivals from one member, as a sliding-window maximum.
#[derive(Clone, Debug, Default)]
pub struct SilenceDetector {
    /// (when the gap ended, its length): lengths strictly decreasing from the front, so the
    /// front is the longest gap in the window. A gap is dropped when a longer one ends after
    /// it (it can no longer be the maximum), so the queue stays short.
    peaks: VecDeque<(u64, u64)>,
}

impl SilenceDetector {
    /// A frame from the member arrived `gap` ms after the previous one, at `now`.
    pub fn record_gap(&mut self, now: u64, gap: u64) {
        while self.peaks.back().is_some_and(|(_, g)| *g <= gap) {
            self.peaks.pop_back();
        }
        self.peaks.push_back((now, gap));
        self.expire(now);
    }

    fn expire(&mut self, now: u64) {
        while self.peaks.front().is_some_and(|(t, _)| t.saturating_add(SILENCE_WINDOW_MS) < now) {
            self.peaks.pop_front();
        }
    }

    /// The longest gap of the window ending at `now` (0 if none).
    #[must_use]
    pub fn longest_gap(&self, now: u64) -> u64 {
        self.peaks.iter().find(|(t, _)| t.saturating_add(SILENCE_WINDOW_MS) >= now).map_or(0, |(_, g)| *g)
    }

    /// The longest gap that ended after `t` (0 if none), while `t` is within the window:
    /// the queue holds exactly the suffix maxima, so this is its first entry past `t`.
    #[must_use]
    pub fn longest_gap_since(&self, t: u64) -> u64 {
        self.peaks.iter().find(|(end, _)| *end > t).map_or(0, |(_, g)| *g)
    }

    /// The silence after which the member decoheres at `now`: twice the longest recent gap,
    /// within `[lo, hi]` (`hi` below `lo` counts as `lo`: a fixed timeout).
    #[must_use]
    pub fn timeout(&self, now: u64, lo: u64, hi: u64) -> u64 {
        self.longest_gap(now).saturating_mul(2).clamp(lo, hi.max(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_link_keeps_the_lower_bound() {
        let mut d = SilenceDetector::default();
        for t in 1..=100 {
            d.record_gap(t * 100, 100);
        }
        assert_eq!(d.timeout(10_000, 3_000, 10_000), 3_000);
    }

    #[test]
    fn a_stall_widens_the_timeout_up_to_the_bound_and_is_forgotten_after_the_window() {
        let mut d = SilenceDetector::default();
        d.record_gap(1_000, 100);
        d.record_gap(5_000, 4_000);
        d.record_gap(5_100, 100);
        assert_eq!(d.timeout(5_100, 3_000, 10_000), 8_000);
        assert_eq!(d.timeout(5_100, 3_000, 6_000), 6_000, "never above the upper bound");
        assert_eq!(d.timeout(5_100, 3_000, 0), 3_000, "an upper bound below the lower one is a fixed timeout");
        // A minute after the stall ended only the short gap after it is left.
        assert_eq!(d.longest_gap(5_000 + SILENCE_WINDOW_MS + 1), 100);
        assert_eq!(d.timeout(5_000 + SILENCE_WINDOW_MS + 1, 3_000, 10_000), 3_000);
    }

    #[test]
    fn the_window_holds_only_candidates_for_the_maximum() {
        let mut d = SilenceDetector::default();
        for (i, g) in [50, 40, 30, 20, 10, 60].into_iter().enumerate() {
            d.record_gap(i as u64, g);
        }
        assert_eq!(d.peaks.len(), 1, "a longer gap ending later supersedes every shorter one");
        assert_eq!(d.longest_gap(10), 60);
        let mut d = SilenceDetector::default();
        for (t, g) in [(10, 500), (20, 100), (30, 300), (40, 50)] {
            d.record_gap(t, g);
        }
        assert_eq!(d.longest_gap_since(0), 500);
        assert_eq!(d.longest_gap_since(10), 300, "gaps that ended after t only");
        assert_eq!(d.longest_gap_since(30), 50);
        assert_eq!(d.longest_gap_since(40), 0);
    }
}
