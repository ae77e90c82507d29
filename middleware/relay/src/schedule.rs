//! The sans-IO core: one deterministic impairment decision per datagram.

use crate::impairment::{Impairment, ImpairmentError};
use crate::rng::{splitmix64, Rng};

/// The deterministic impairment of one stream of datagrams (one direction of one client, in
/// the relay).
///
/// Feed it each datagram's arrival time with [`Schedule::on_datagram`]; it answers with the
/// times at which to deliver the copies. It reads no clock and owns no socket: the verdicts
/// depend only on the [`Impairment`], the stream number and the sequence of `now_ms` values,
/// so a run is reproduced by replaying its arrivals. Every call draws the same four numbers
/// from the generator (loss, duplicate, two delays) whatever the outcome, so the k-th
/// datagram's fate does not depend on the fates before it, and with one seed the datagrams
/// lost at a lower `loss_pct` are a subset of those lost at a higher one.
///
/// ```
/// use spook_relay::{Impairment, Schedule};
///
/// let imp = Impairment { loss_pct: 10.0, dup_pct: 5.0, delay_ms: 20, jitter_ms: 15, seed: 7 };
/// let mut schedule = Schedule::new(imp)?;
/// let mut replay = Schedule::new(imp)?;
/// for now_ms in 0..1_000 {
///     let verdict = schedule.on_datagram(now_ms);
///     assert_eq!(verdict, replay.on_datagram(now_ms)); // same seed, same calls: same verdicts
///     for &at in verdict.delivery_times() {
///         assert!((now_ms + 5..=now_ms + 35).contains(&at)); // 20 ± 15 ms
///     }
/// }
/// let stats = schedule.stats();
/// assert_eq!(stats.received, 1_000);
/// assert_eq!(stats.delivered, stats.received - stats.dropped + stats.duplicated);
/// assert!(Schedule::new(Impairment { loss_pct: 101.0, ..imp }).is_err());
/// # Ok::<(), spook_relay::ImpairmentError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    imp: Impairment,
    rng: Rng,
    stats: ScheduleStats,
}

/// What a [`Schedule`] decided so far.
///
/// Always `delivered == received - dropped + duplicated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleStats {
    /// Datagrams seen by [`Schedule::on_datagram`].
    pub received: u64,
    /// Datagrams lost (empty verdicts).
    pub dropped: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Delivery times handed out, duplicates included.
    pub delivered: u64,
}

impl Schedule {
    /// The schedule of stream 0 of `imp.seed`; same as `Schedule::for_stream(imp, 0)`.
    pub fn new(imp: Impairment) -> Result<Self, ImpairmentError> {
        Self::for_stream(imp, 0)
    }

    /// The schedule of stream `stream` of `imp.seed`: streams of one seed are independent of
    /// each other and each is reproducible on its own. The relay gives its k-th client (k
    /// from 0, in order of first datagram) stream `2k` towards upstream and `2k + 1` back.
    pub fn for_stream(imp: Impairment, stream: u64) -> Result<Self, ImpairmentError> {
        imp.validate()?;
        let mut mix = stream;
        let rng = Rng::seeded(imp.seed ^ splitmix64(&mut mix));
        Ok(Self { imp, rng, stats: ScheduleStats::default() })
    }

    /// The impairment this schedule applies.
    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// The counts so far.
    pub fn stats(&self) -> ScheduleStats {
        self.stats
    }

    /// Decides the fate of a datagram that arrived at `now_ms` (any monotonic millisecond
    /// clock): no delivery time if it is lost, two if it is duplicated, each at least
    /// `now_ms` and with its own delay. Call it with non-decreasing `now_ms`; without jitter
    /// the delivery times then never decrease either.
    pub fn on_datagram(&mut self, now_ms: u64) -> Verdict {
        // Always four draws, so each decision keeps its own place in the stream.
        let loss_draw = self.rng.unit_f64() * 100.0;
        let dup_draw = self.rng.unit_f64() * 100.0;
        let spread = 2 * self.imp.jitter_ms; // validated: no overflow
        let (first_offset, second_offset) = (self.rng.up_to(spread), self.rng.up_to(spread));
        let first = self.delivery_time(now_ms, first_offset);
        let second = self.delivery_time(now_ms, second_offset);

        self.stats.received += 1;
        if loss_draw < self.imp.loss_pct {
            self.stats.dropped += 1;
            return Verdict::DROPPED;
        }
        if dup_draw < self.imp.dup_pct {
            self.stats.duplicated += 1;
            self.stats.delivered += 2;
            return Verdict { times: [first, second], len: 2 };
        }
        self.stats.delivered += 1;
        Verdict { times: [first, 0], len: 1 }
    }

    /// `now_ms + delay_ms - jitter_ms + offset`, the delay clamped at 0, where `offset` is
    /// in `0..=2 * jitter_ms`.
    fn delivery_time(&self, now_ms: u64, offset: u64) -> u64 {
        let delay = (self.imp.delay_ms + offset).saturating_sub(self.imp.jitter_ms);
        now_ms.saturating_add(delay)
    }
}

/// A [`Schedule`]'s decision about one datagram: the times (in the caller's milliseconds) at
/// which to deliver its copies. None means lost, two means duplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Verdict {
    times: [u64; 2],
    len: u8,
}

impl Verdict {
    /// The verdict of a lost datagram.
    pub const DROPPED: Self = Self { times: [0, 0], len: 0 };

    /// When to deliver each copy, in the order drawn (not sorted).
    pub fn delivery_times(&self) -> &[u64] {
        &self.times[..usize::from(self.len)]
    }

    /// Whether the datagram is lost.
    pub fn is_dropped(&self) -> bool {
        self.len == 0
    }

    /// Whether the datagram is delivered twice.
    pub fn is_duplicated(&self) -> bool {
        self.len == 2
    }
}

impl<'a> IntoIterator for &'a Verdict {
    type Item = &'a u64;
    type IntoIter = std::slice::Iter<'a, u64>;

    fn into_iter(self) -> Self::IntoIter {
        self.delivery_times().iter()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    /// The seed of a randomized test: `SPOOK_SEED` if set, else fresh; printed either way.
    fn test_seed() -> u64 {
        let seed = match std::env::var("SPOOK_SEED") {
            Ok(s) => s.parse().expect("SPOOK_SEED must be a u64"),
            Err(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let mut mix = nanos;
                splitmix64(&mut mix)
            }
        };
        println!("seed {seed} (re-run with SPOOK_SEED={seed})");
        seed
    }

    fn imp(loss_pct: f64, dup_pct: f64, delay_ms: u64, jitter_ms: u64, seed: u64) -> Impairment {
        Impairment { loss_pct, dup_pct, delay_ms, jitter_ms, seed }
    }

    /// Verdicts for `n` datagrams arriving one per millisecond from 1000.
    fn run(imp: Impairment, n: u64) -> (Vec<Verdict>, ScheduleStats) {
        let mut s = Schedule::new(imp).unwrap();
        let verdicts = (0..n).map(|i| s.on_datagram(1000 + i)).collect();
        (verdicts, s.stats())
    }

    /// Asserts `count` is within `sigmas` standard deviations of a binomial(n, p) mean.
    fn assert_binomial(what: &str, count: u64, n: u64, p: f64, sigmas: f64) {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (count as f64 - mean).abs() <= sigmas * sd,
            "{what}: {count} of {n}, expected {mean:.0} ± {:.0}",
            sigmas * sd
        );
    }

    #[test]
    fn same_seed_same_verdicts_other_seed_other_verdicts() {
        let seed = test_seed();
        let a = imp(10.0, 5.0, 20, 15, seed);
        assert_eq!(run(a, 10_000), run(a, 10_000));
        let other = imp(10.0, 5.0, 20, 15, seed.wrapping_add(1));
        assert_ne!(run(a, 10_000).0, run(other, 10_000).0);
        // Streams: 0 is `new`, the others differ from it and from each other.
        let mut s0 = Schedule::for_stream(a, 0).unwrap();
        let mut s1 = Schedule::for_stream(a, 1).unwrap();
        let mut s2 = Schedule::for_stream(a, 2).unwrap();
        let v0: Vec<_> = (0..1000).map(|t| s0.on_datagram(t)).collect();
        let v1: Vec<_> = (0..1000).map(|t| s1.on_datagram(t)).collect();
        let v2: Vec<_> = (0..1000).map(|t| s2.on_datagram(t)).collect();
        let mut fresh = Schedule::new(a).unwrap();
        assert_eq!(v0, (0..1000).map(|t| fresh.on_datagram(t)).collect::<Vec<_>>());
        assert_ne!(v0, v1);
        assert_ne!(v1, v2);
    }

    #[test]
    fn loss_rate_is_near_the_configured_one() {
        let seed = test_seed();
        for loss in [1.0, 10.0, 50.0] {
            let (verdicts, stats) = run(imp(loss, 0.0, 0, 0, seed), 100_000);
            let dropped = verdicts.iter().filter(|v| v.is_dropped()).count() as u64;
            assert_eq!(stats.dropped, dropped);
            assert_eq!(stats.received, 100_000);
            assert_eq!(stats.delivered, 100_000 - dropped);
            assert_binomial(&format!("dropped at {loss}%"), dropped, 100_000, loss / 100.0, 5.0);
        }
    }

    #[test]
    fn duplicate_rate_is_near_the_configured_one_among_survivors() {
        let seed = test_seed();
        let (verdicts, stats) = run(imp(20.0, 5.0, 3, 2, seed), 100_000);
        let survivors = verdicts.iter().filter(|v| !v.is_dropped()).count() as u64;
        let duplicated = verdicts.iter().filter(|v| v.is_duplicated()).count() as u64;
        assert_eq!(stats.duplicated, duplicated);
        assert_eq!(stats.delivered, stats.received - stats.dropped + stats.duplicated);
        assert_binomial("survivors at 20% loss", survivors, 100_000, 0.8, 5.0);
        assert_binomial("duplicated at 5% dup", duplicated, survivors, 0.05, 5.0);
        // Each copy has its own delay: over ~4000 duplicates, most pairs differ.
        let split = verdicts.iter().filter(|v| v.is_duplicated() && v.delivery_times()[0] != v.delivery_times()[1]);
        assert!(split.count() as u64 > duplicated / 2);
    }

    #[test]
    fn extremes_drop_or_duplicate_everything() {
        let seed = test_seed();
        let (all_lost, stats) = run(imp(100.0, 100.0, 0, 0, seed), 10_000);
        assert!(all_lost.iter().all(Verdict::is_dropped));
        assert_eq!((stats.dropped, stats.delivered), (10_000, 0));
        let (all_twice, stats) = run(imp(0.0, 100.0, 0, 0, seed), 10_000);
        assert!(all_twice.iter().all(Verdict::is_duplicated));
        assert_eq!((stats.duplicated, stats.delivered), (10_000, 20_000));
    }

    #[test]
    fn no_loss_delivers_everything_once_and_on_time() {
        let seed = test_seed();
        let mut s = Schedule::new(imp(0.0, 0.0, 7, 0, seed)).unwrap();
        for now in 0..100_000 {
            assert_eq!(s.on_datagram(now).delivery_times(), &[now + 7]);
        }
        assert_eq!(s.stats(), ScheduleStats { received: 100_000, dropped: 0, duplicated: 0, delivered: 100_000 });
    }

    #[test]
    fn delays_stay_in_bounds_and_cover_them_uniformly() {
        let seed = test_seed();
        let (verdicts, _) = run(imp(0.0, 0.0, 20, 15, seed), 100_000);
        let mut histogram = [0u64; 31];
        for (i, v) in verdicts.iter().enumerate() {
            let delay = v.delivery_times()[0] - (1000 + i as u64);
            assert!((5..=35).contains(&delay), "delay {delay} outside 20 ± 15");
            histogram[(delay - 5) as usize] += 1;
        }
        for (i, &count) in histogram.iter().enumerate() {
            assert_binomial(&format!("delay {} ms", i + 5), count, 100_000, 1.0 / 31.0, 6.0);
        }
    }

    #[test]
    fn delays_below_zero_clamp_to_zero() {
        let seed = test_seed();
        // 5 ± 10: offsets 0..=20, the 6 lowest (delay -5..=0) all become 0.
        let (verdicts, _) = run(imp(0.0, 0.0, 5, 10, seed), 100_000);
        let delays: Vec<u64> = verdicts.iter().enumerate().map(|(i, v)| v.delivery_times()[0] - (1000 + i as u64)).collect();
        assert!(delays.iter().all(|&d| d <= 15));
        let zero = delays.iter().filter(|&&d| d == 0).count() as u64;
        assert_binomial("zero delays", zero, 100_000, 6.0 / 21.0, 5.0);
        let fifteen = delays.iter().filter(|&&d| d == 15).count() as u64;
        assert_binomial("15 ms delays", fifteen, 100_000, 1.0 / 21.0, 5.0);
    }

    /// How many delivery times, in issue order, come before one issued earlier.
    fn inversions(verdicts: &[Verdict]) -> usize {
        let mut latest = 0;
        let mut count = 0;
        for &t in verdicts.iter().flat_map(|v| v.delivery_times()) {
            if t < latest {
                count += 1;
            }
            latest = latest.max(t);
        }
        count
    }

    #[test]
    fn jitter_reorders_and_no_jitter_never_does() {
        let seed = test_seed();
        let (jittered, _) = run(imp(10.0, 5.0, 20, 15, seed), 10_000);
        assert!(inversions(&jittered) > 1000, "only {} reorderings", inversions(&jittered));
        for delay in [0, 20] {
            let (steady, stats) = run(imp(10.0, 50.0, delay, 0, seed), 10_000);
            assert!(stats.duplicated > 0);
            assert_eq!(inversions(&steady), 0);
        }
    }

    #[test]
    fn loss_grows_monotonically_with_the_percentage_for_one_seed() {
        let seed = test_seed();
        let (low, _) = run(imp(10.0, 5.0, 20, 15, seed), 10_000);
        let (high, _) = run(imp(20.0, 5.0, 20, 15, seed), 10_000);
        for (l, h) in low.iter().zip(&high) {
            if l.is_dropped() {
                assert!(h.is_dropped());
            } else if !h.is_dropped() {
                assert_eq!(l, h, "survivors of both keep their fate");
            }
        }
    }

    #[test]
    fn refuses_an_invalid_impairment() {
        let bad = imp(0.0, 100.5, 0, 0, 1);
        assert_eq!(Schedule::new(bad).err(), Some(ImpairmentError::DupOutOfRange(100.5)));
        assert!(Schedule::for_stream(imp(-1.0, 0.0, 0, 0, 1), 3).is_err());
    }

    #[test]
    fn far_future_times_saturate() {
        let mut s = Schedule::new(imp(0.0, 0.0, 10, 0, 1)).unwrap();
        assert_eq!(s.on_datagram(u64::MAX - 3).delivery_times(), &[u64::MAX]);
        let v = s.on_datagram(5);
        assert_eq!((&v).into_iter().copied().collect::<Vec<_>>(), vec![15]);
    }
}
