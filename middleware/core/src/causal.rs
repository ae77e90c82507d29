//! Causal contexts: which deltas a replica holds, per origin, with gaps kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Dot, EndpointId};

/// A set of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges.
///
/// ```
/// # use spook_core::IntervalSet;
/// let mut s = IntervalSet::default();
/// for x in [1, 2, 3, 7] { s.insert(x); }
/// assert_eq!(s.contiguous_max(), 3);
/// assert!(s.contains(7) && !s.contains(5));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntervalSet(Vec<(u64, u64)>);

impl IntervalSet {
    /// The ranges, sorted.
    #[must_use]
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Build from ranges (normalised: sorted, merged; empty ranges dropped).
    #[must_use]
    pub fn from_ranges(mut r: Vec<(u64, u64)>) -> Self {
        r.retain(|(a, b)| a <= b);
        r.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        IntervalSet(out)
    }

    /// Whether `x` is in the set.
    #[must_use]
    pub fn contains(&self, x: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < x);
        self.0.get(i).is_some_and(|&(a, _)| a <= x)
    }

    /// Add `x`; returns whether it was new.
    pub fn insert(&mut self, x: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b.saturating_add(1) < x);
        if let Some(&(a, b)) = self.0.get(i) {
            if a <= x && x <= b {
                return false;
            }
        }
        // x is adjacent to or between ranges i-1 and i.
        let joins_next = self.0.get(i).is_some_and(|&(a, _)| a == x + 1);
        let joins_prev = self.0.get(i).is_some_and(|&(_, b)| b + 1 == x);
        match (joins_prev, joins_next) {
            (true, _) => {
                self.0[i].1 = x;
                if self.0.get(i + 1).is_some_and(|&(a, _)| a == x + 1) {
                    self.0[i].1 = self.0[i + 1].1;
                    self.0.remove(i + 1);
                }
            }
            (false, true) => self.0[i].0 = x,
            (false, false) => self.0.insert(i, (x, x)),
        }
        true
    }

    /// The largest `k` such that `1..=k` are all present (0 if 1 is missing).
    #[must_use]
    pub fn contiguous_max(&self) -> u64 {
        match self.0.first() {
            Some(&(1, b)) => b,
            _ => 0,
        }
    }

    /// The largest element, or 0.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.0.last().map_or(0, |r| r.1)
    }

    /// Number of elements.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Elements of `self` not in `other`.
    #[must_use]
    pub fn difference(&self, other: &IntervalSet) -> IntervalSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(a, b) in &self.0 {
            let mut lo = a;
            while j < other.0.len() && other.0[j].1 < lo {
                j += 1;
            }
            let mut k = j;
            while lo <= b {
                match other.0.get(k) {
                    Some(&(oa, ob)) if oa <= b => {
                        if oa > lo {
                            out.push((lo, oa - 1));
                        }
                        if ob >= b {
                            break;
                        }
                        lo = ob + 1;
                        k += 1;
                    }
                    _ => {
                        out.push((lo, b));
                        break;
                    }
                }
            }
        }
        IntervalSet(out)
    }

    /// Add every element of `other`.
    pub fn union_with(&mut self, other: &IntervalSet) {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        *self = IntervalSet::from_ranges(all);
    }

    /// Whether every element of `other` is in `self`.
    #[must_use]
    pub fn covers(&self, other: &IntervalSet) -> bool {
        other.difference(self).is_empty()
    }

    /// Iterate the elements.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }
}

/// Which deltas a replica holds: per origin, the set of sequence numbers, gaps kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CausalContext(pub BTreeMap<EndpointId, IntervalSet>);

impl CausalContext {
    /// Whether the dot is held.
    #[must_use]
    pub fn contains(&self, d: Dot) -> bool {
        self.0.get(&d.origin).is_some_and(|s| s.contains(d.seq))
    }

    /// Add a dot; returns whether it was new.
    pub fn insert(&mut self, d: Dot) -> bool {
        self.0.entry(d.origin).or_default().insert(d.seq)
    }

    /// The set of one origin's sequence numbers.
    #[must_use]
    pub fn of(&self, origin: &EndpointId) -> Option<&IntervalSet> {
        self.0.get(origin)
    }

    /// Dots in `self` and not in `other`.
    #[must_use]
    pub fn difference(&self, other: &CausalContext) -> CausalContext {
        let mut out = BTreeMap::new();
        for (o, s) in &self.0 {
            let d = match other.0.get(o) {
                Some(os) => s.difference(os),
                None => s.clone(),
            };
            if !d.is_empty() {
                out.insert(*o, d);
            }
        }
        CausalContext(out)
    }

    /// Whether no dot is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.values().all(IntervalSet::is_empty)
    }

    /// Number of dots.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.0.values().map(IntervalSet::len).sum()
    }

    /// Iterate every dot.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.0.iter().flat_map(|(o, s)| s.iter().map(move |seq| Dot { origin: *o, seq }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn interval_set_matches_a_btreeset(xs in proptest::collection::vec(1u64..60, 0..80),
                                           ys in proptest::collection::vec(1u64..60, 0..80)) {
            let mut a = IntervalSet::default();
            let mut b = IntervalSet::default();
            let sa: BTreeSet<u64> = xs.iter().copied().collect();
            let sb: BTreeSet<u64> = ys.iter().copied().collect();
            for &x in &xs { a.insert(x); }
            for &y in &ys { b.insert(y); }
            prop_assert_eq!(a.iter().collect::<Vec<_>>(), sa.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(&a, &IntervalSet::from_ranges(xs.iter().map(|&x| (x, x)).collect()));
            let d: Vec<u64> = a.difference(&b).iter().collect();
            prop_assert_eq!(d, sa.difference(&sb).copied().collect::<Vec<_>>());
            let mut u = a.clone(); u.union_with(&b);
            prop_assert_eq!(u.len() as usize, sa.union(&sb).count());
            let want = (1..).take_while(|x| sa.contains(x)).last().unwrap_or(0);
            prop_assert_eq!(a.contiguous_max(), want);
        }
    }
}
