//! Field states and facts: the merge of each policy, and the atomic pieces of state
//! (facts) that replicas exchange when they re-align.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CausalContext, Dot, EndpointId, Hlc, MergePolicy, Value};

/// One written value with the stamp and dot of the delta that wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// The value.
    pub value: Value,
    /// The writing delta's stamp.
    pub stamp: Hlc,
    /// The writing delta.
    pub dot: Dot,
}

/// One origin's adds to a counter: a prefix (every add with seq ≤ `upto`) summed, plus the
/// adds above it kept one by one, so parts from different replicas merge exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterPart {
    /// Every add of this origin with seq ≤ `upto` is in `sum`.
    pub upto: u64,
    /// The sum of those adds.
    pub sum: i64,
    /// Greatest stamp among the adds in `sum`.
    pub upto_stamp: Hlc,
    /// Adds above the prefix: seq → (amount, stamp).
    pub extras: BTreeMap<u64, (i64, Hlc)>,
}

impl CounterPart {
    fn total(&self) -> i64 {
        self.extras.values().fold(self.sum, |a, (n, _)| a.wrapping_add(*n))
    }

    fn max_stamp(&self) -> Hlc {
        self.extras.values().map(|(_, s)| *s).fold(self.upto_stamp, Hlc::max)
    }

    /// Merge another part of the same origin; true if anything changed.
    fn merge(&mut self, other: &CounterPart) -> bool {
        let before = (self.upto, self.extras.len());
        if other.upto > self.upto {
            self.upto = other.upto;
            self.sum = other.sum;
            self.upto_stamp = other.upto_stamp;
        }
        for (s, v) in &other.extras {
            self.extras.entry(*s).or_insert(*v);
        }
        let upto = self.upto;
        let changed_extras = self.extras.len();
        self.extras.retain(|s, _| *s > upto);
        before != (self.upto, changed_extras) || self.extras.len() != changed_extras
    }

    /// Fold adds up to `contiguous` into the prefix. Valid when every delta of this origin
    /// with seq ≤ `contiguous` has been applied to this part.
    pub fn normalize(&mut self, contiguous: u64) {
        if contiguous <= self.upto {
            return;
        }
        let keep = self.extras.split_off(&(contiguous + 1));
        for (_, (n, s)) in std::mem::replace(&mut self.extras, keep) {
            self.sum = self.sum.wrapping_add(n);
            self.upto_stamp = self.upto_stamp.max(s);
        }
        self.upto = contiguous;
    }
}

/// An atomic piece of a field's state, with the stamp that orders its commit. Deltas turn
/// into facts when applied; anti-entropy sends facts instead of replaying deltas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A value for a last-writer-wins, max or min field.
    Write(Write),
    /// One origin's part of a counter.
    Count {
        /// The origin whose adds these are.
        origin: EndpointId,
        /// Its adds.
        part: CounterPart,
    },
    /// A set element added by `dot`.
    Add {
        /// The element.
        value: Value,
        /// The add.
        dot: Dot,
        /// Its stamp.
        stamp: Hlc,
    },
    /// The add `removed` was cancelled by the remove `by`.
    Tomb {
        /// The cancelled add.
        removed: Dot,
        /// The removing delta.
        by: Dot,
        /// The remove's stamp.
        stamp: Hlc,
    },
    /// A log entry.
    Entry(Write),
}

impl Fact {
    /// The stamp that decides when this fact becomes stable.
    #[must_use]
    pub fn stamp(&self) -> Hlc {
        match self {
            Fact::Write(w) | Fact::Entry(w) => w.stamp,
            Fact::Count { part, .. } => part.max_stamp(),
            Fact::Add { stamp, .. } | Fact::Tomb { stamp, .. } => *stamp,
        }
    }
}

/// The merged state of one field of one register.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldState {
    /// Last-writer-wins, max or min: the winning write.
    Reg(Write),
    /// Counter: one part per origin.
    Counter(BTreeMap<EndpointId, CounterPart>),
    /// Add-wins set.
    Set(SetState),
    /// Append-only log ordered by (stamp, dot).
    Log(BTreeMap<(Hlc, Dot), Value>),
}

/// Add-wins set state: live adds per element, and the cancelled adds (tombstones).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetState {
    /// Element (canonical bytes) → (value, live add dots with stamps).
    pub adds: BTreeMap<Vec<u8>, (Value, BTreeMap<Dot, Hlc>)>,
    /// Cancelled add → (removing dot, remove stamp).
    pub tombs: BTreeMap<Dot, (Dot, Hlc)>,
}

/// Whether `new` beats `old` in a field of `policy`.
pub(crate) fn wins(policy: MergePolicy, new: &Write, old: &Write) -> bool {
    let by_stamp = (new.stamp, new.dot) > (old.stamp, old.dot);
    match policy {
        MergePolicy::Max | MergePolicy::Min => {
            let (a, b) = (new.value.canonical_bytes(), old.value.canonical_bytes());
            let ord = match (&new.value, &old.value) {
                (Value::F64(x), Value::F64(y)) => crate::value::canonical_f64(*x).total_cmp(&crate::value::canonical_f64(*y)),
                (Value::I64(x), Value::I64(y)) => x.cmp(y),
                _ => a.cmp(&b),
            };
            let ord = if policy == MergePolicy::Min { ord.reverse() } else { ord };
            ord.is_gt() || (ord.is_eq() && by_stamp)
        }
        _ => by_stamp,
    }
}

impl FieldState {
    /// A field state holding just `fact`, for a field of `policy`; `None` if the fact does not
    /// fit the policy.
    #[must_use]
    pub fn from_fact(policy: MergePolicy, fact: &Fact) -> Option<FieldState> {
        let mut s = match (policy, fact) {
            (MergePolicy::LastWriterWins | MergePolicy::Max | MergePolicy::Min, Fact::Write(w)) => {
                return Some(FieldState::Reg(w.clone()))
            }
            (MergePolicy::Counter, Fact::Count { .. }) => FieldState::Counter(BTreeMap::new()),
            (MergePolicy::AddWinsSet, Fact::Add { .. } | Fact::Tomb { .. }) => FieldState::Set(SetState::default()),
            (MergePolicy::AppendLog, Fact::Entry(_)) => FieldState::Log(BTreeMap::new()),
            _ => return None,
        };
        s.apply(policy, fact);
        Some(s)
    }

    /// Merge a fact in; returns whether the field's value changed. Idempotent.
    pub fn apply(&mut self, policy: MergePolicy, fact: &Fact) -> bool {
        match (self, fact) {
            (FieldState::Reg(cur), Fact::Write(w))
                if wins(policy, w, cur) => {
                    *cur = w.clone();
                    true
                }
            (FieldState::Counter(parts), Fact::Count { origin, part }) => {
                let p = parts.entry(*origin).or_default();
                let before = p.total();
                p.merge(part);
                p.total() != before
            }
            (FieldState::Set(s), Fact::Add { value, dot, stamp }) => {
                if s.tombs.contains_key(dot) {
                    return false;
                }
                let e = s.adds.entry(value.canonical_bytes()).or_insert_with(|| (value.clone(), BTreeMap::new()));
                let was_empty = e.1.is_empty();
                e.1.insert(*dot, *stamp).is_none() && was_empty
            }
            (FieldState::Set(s), Fact::Tomb { removed, by, stamp }) => {
                if s.tombs.insert(*removed, (*by, *stamp)).is_some() {
                    return false;
                }
                let mut changed = false;
                s.adds.retain(|_, (_, dots)| {
                    if dots.remove(removed).is_some() && dots.is_empty() {
                        changed = true;
                    }
                    !dots.is_empty()
                });
                changed
            }
            (FieldState::Log(log), Fact::Entry(w)) => log.insert((w.stamp, w.dot), w.value.clone()).is_none(),
            _ => false,
        }
    }

    /// The value an application reads.
    #[must_use]
    pub fn value(&self) -> Value {
        match self {
            FieldState::Reg(w) => w.value.clone(),
            FieldState::Counter(parts) => Value::I64(parts.values().fold(0i64, |a, p| a.wrapping_add(p.total()))),
            FieldState::Set(s) => Value::List(s.adds.values().map(|(v, _)| v.clone()).collect()),
            FieldState::Log(l) => Value::List(l.values().cloned().collect()),
        }
    }

    /// Canonical bytes: equal for equal merged states, whatever their history.
    pub fn canonical_bytes(&self, out: &mut Vec<u8>) {
        use crate::codec::{put_hlc, put_uvarint, put_value_tagged};
        match self {
            FieldState::Reg(w) => {
                out.push(0);
                put_value_tagged(out, &w.value);
                put_hlc(out, w.stamp);
                out.extend_from_slice(&w.dot.origin.0);
                put_uvarint(out, w.dot.seq);
            }
            FieldState::Counter(parts) => {
                out.push(1);
                for (o, p) in parts {
                    out.extend_from_slice(&o.0);
                    out.extend_from_slice(&p.total().to_le_bytes());
                }
            }
            FieldState::Set(s) => {
                out.push(2);
                for (k, (_, dots)) in &s.adds {
                    put_uvarint(out, k.len() as u64);
                    out.extend_from_slice(k);
                    for d in dots.keys() {
                        out.extend_from_slice(&d.origin.0);
                        put_uvarint(out, d.seq);
                    }
                }
            }
            FieldState::Log(l) => {
                out.push(3);
                for ((s, d), v) in l {
                    put_hlc(out, *s);
                    out.extend_from_slice(&d.origin.0);
                    put_uvarint(out, d.seq);
                    put_value_tagged(out, v);
                }
            }
        }
    }

    /// Normalise counter parts against the replica's causal context.
    pub fn normalize(&mut self, ctx: &CausalContext) {
        if let FieldState::Counter(parts) = self {
            for (o, p) in parts.iter_mut() {
                p.normalize(ctx.of(o).map_or(0, crate::IntervalSet::contiguous_max));
            }
        }
    }

    /// The facts a replica lacking the dots in `missing` needs to reach this state. For
    /// last-writer-wins, max and min fields that is the winner alone, whatever history led to
    /// it: re-alignment is proportional to the state that diverged.
    pub fn facts_for(&self, missing: &CausalContext, out: &mut Vec<Fact>) {
        match self {
            FieldState::Reg(w) => {
                if missing.contains(w.dot) {
                    out.push(Fact::Write(w.clone()));
                }
            }
            FieldState::Counter(parts) => {
                for (o, p) in parts {
                    let Some(m) = missing.of(o) else { continue };
                    let prefix_missing = m.ranges().first().is_some_and(|&(a, _)| a <= p.upto);
                    if prefix_missing || p.extras.keys().any(|s| m.contains(*s)) {
                        out.push(Fact::Count { origin: *o, part: p.clone() });
                    }
                }
            }
            FieldState::Set(s) => {
                for (v, dots) in s.adds.values() {
                    for (d, st) in dots {
                        if missing.contains(*d) {
                            out.push(Fact::Add { value: v.clone(), dot: *d, stamp: *st });
                        }
                    }
                }
                for (removed, (by, st)) in &s.tombs {
                    if missing.contains(*by) {
                        out.push(Fact::Tomb { removed: *removed, by: *by, stamp: *st });
                    }
                }
            }
            FieldState::Log(l) => {
                for ((st, d), v) in l {
                    if missing.contains(*d) {
                        out.push(Fact::Entry(Write { value: v.clone(), stamp: *st, dot: *d }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    fn dot(o: u8, seq: u64) -> Dot {
        Dot { origin: EndpointId([o; 32]), seq }
    }

    #[test]
    fn counter_parts_merge_exactly_with_gaps() {
        // Replica X holds adds 1, 2 and 5 of origin o; replica Y holds 1..=4 summed.
        let mut x = CounterPart::default();
        for (s, n) in [(1, 1), (2, 10), (5, 1000)] {
            x.merge(&CounterPart { extras: [(s, (n, Hlc(s)))].into(), ..Default::default() });
        }
        x.normalize(2);
        let y = CounterPart { upto: 4, sum: 1 + 10 + 100 + 200, upto_stamp: Hlc(4), extras: BTreeMap::new() };
        let mut a = x.clone();
        a.merge(&y);
        let mut b = y.clone();
        b.merge(&x);
        assert_eq!(a.total(), 311 + 1000);
        assert_eq!(a.total(), b.total());
    }

    #[test]
    fn add_wins_over_concurrent_remove() {
        let p = MergePolicy::AddWinsSet;
        let v = Value::from("red");
        let add1 = Fact::Add { value: v.clone(), dot: dot(1, 1), stamp: Hlc(1) };
        let add2 = Fact::Add { value: v.clone(), dot: dot(2, 1), stamp: Hlc(2) };
        let rm = Fact::Tomb { removed: dot(1, 1), by: dot(3, 1), stamp: Hlc(3) };
        let mut s = FieldState::from_fact(p, &rm).unwrap();
        s.apply(p, &add2);
        s.apply(p, &add1);
        assert_eq!(s.value(), Value::List(vec![v.clone()]));
        let mut t = FieldState::from_fact(p, &add1).unwrap();
        t.apply(p, &rm);
        assert_eq!(t.value(), Value::List(vec![]));
    }

    #[test]
    fn min_and_max_pick_by_value_not_stamp() {
        let w = |x: f64, s| Fact::Write(Write { value: Value::F64(x), stamp: Hlc(s), dot: dot(1, s) });
        let mut m = FieldState::from_fact(MergePolicy::Min, &w(5.0, 1)).unwrap();
        assert!(m.apply(MergePolicy::Min, &w(3.0, 2)));
        assert!(!m.apply(MergePolicy::Min, &w(4.0, 3)));
        assert_eq!(m.value(), Value::F64(3.0));
    }
}
