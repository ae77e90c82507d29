//! Guarantee 1 (convergence) as property tests: any permutation, duplication, or
//! subset-then-resend of a delta set yields the same state hash and the same canonical bytes;
//! with the same acks, the same committed view, which covers at least 90% of the deltas.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use proptest::prelude::*;
use spook_core::codec::Ack;
use spook_core::*;

fn script() -> impl Strategy<Value = Vec<(u8, u8, u8, i16)>> {
    proptest::collection::vec((0u8..3, 0u8..8, 0u8..6, -40i16..40), 10..60)
}

/// A permutation with duplicates and a resent subset, driven by `picks`.
fn shuffled(deltas: &[Delta], picks: &[u16]) -> Vec<Delta> {
    let mut order: Vec<Delta> = deltas.to_vec();
    for (i, p) in picks.iter().enumerate() {
        let n = order.len();
        order.swap(i % n, usize::from(*p) % n);
    }
    let dups: Vec<Delta> = picks.iter().take(deltas.len() / 3).map(|p| deltas[usize::from(*p) % deltas.len()].clone()).collect();
    let mut out: Vec<Delta> = order.iter().step_by(2).cloned().collect();
    out.extend(dups);
    out.extend(order);
    out
}

fn acks_at(members: &[EndpointId], deltas: &[Delta], s: Hlc) -> Vec<Ack> {
    members
        .iter()
        .map(|m| Ack { member: *m, hlc: s, own_hlc: s, own_seq: deltas.iter().filter(|d| d.origin == *m && d.stamp <= s).count() as u64 })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_order_duplication_or_resend_gives_identical_state(
        script in script(),
        picks_a in proptest::collection::vec(any::<u16>(), 60),
        picks_b in proptest::collection::vec(any::<u16>(), 60),
        cut in 90u64..=100,
    ) {
        let members = origins(3);
        let deltas = generate(&members, &script);
        let observer = EndpointId::from_index(99);
        let now = GENESIS + 1_000_000;
        let mut a = Replica::new(observer, config(&members), now);
        let mut b = Replica::new(observer, config(&members), now);
        for d in shuffled(&deltas, &picks_a) { feed(&mut a, &d, now); }
        for d in shuffled(&deltas, &picks_b) { feed(&mut b, &d, now); }
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.view(View::Pending).canonical_bytes(), b.view(View::Pending).canonical_bytes());
        prop_assert_eq!(a.context(), b.context());

        // Same acks (part of the input): the frontier at the stamp of the delta at `cut`% of
        // the total order.
        let mut stamps: Vec<Hlc> = deltas.iter().map(|d| d.stamp).collect();
        stamps.sort();
        let idx = ((stamps.len() as u64 * cut).div_ceil(100) as usize).saturating_sub(1);
        let s = stamps[idx];
        let acks = acks_at(&members, &deltas, s);
        ack(&mut a, &acks, now);
        ack(&mut b, &acks, now);
        prop_assert_eq!(a.frontier(), s);
        prop_assert_eq!(a.committed_hash(), b.committed_hash());
        prop_assert_eq!(a.view(View::Committed).canonical_bytes(), b.view(View::Committed).canonical_bytes());
        let committed = deltas.iter().filter(|d| d.stamp <= s).count();
        prop_assert!(committed * 10 >= deltas.len() * 9, "committed {} of {}", committed, deltas.len());

        // The committed view is exactly the merge of the deltas at or below the frontier.
        let mut reference = Replica::new(observer, config(&members), now);
        for d in deltas.iter().filter(|d| d.stamp <= s) { feed(&mut reference, d, now); }
        prop_assert_eq!(a.view(View::Committed).canonical_bytes(), reference.view(View::Pending).canonical_bytes());
        prop_assert_eq!(a.pending_candidates(), deltas.len() - committed);
    }

    #[test]
    fn state_transfer_reaches_the_same_state_as_the_deltas(
        script in script(),
        split in 0usize..60,
    ) {
        // Replica a holds everything; b holds a prefix; b asks for what it lacks and gets state.
        let members = origins(3);
        let deltas = generate(&members, &script);
        let observer = EndpointId::from_index(99);
        let now = GENESIS + 1_000_000;
        let mut a = Replica::new(members[0], config(&members), now);
        let mut b = Replica::new(members[1], config(&members), now);
        for d in &deltas { feed(&mut a, d, now); }
        for d in deltas.iter().take(split % deltas.len()) { feed(&mut b, d, now); }
        let msg = a.state_for(&a.context().difference(b.context()));
        let bytes = codec::encode_state(a.schema(), GENESIS, &msg);
        b.handle_frame(a.me(), &bytes, now);
        settle(&mut b, now);
        prop_assert_eq!(a.context(), b.context());
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(a.view(View::Pending).canonical_bytes(), b.view(View::Pending).canonical_bytes());
        let _ = observer;
    }
}

#[test]
fn nothing_commits_without_every_members_ack() {
    let members = origins(3);
    let deltas = generate(&members, &[(0, 0, 1, 5), (1, 4, 2, 3), (2, 2, 3, -7)]);
    let now = GENESIS + 10_000;
    let mut r = Replica::new(EndpointId::from_index(99), config(&members), now);
    for d in &deltas {
        feed(&mut r, d, now);
    }
    let top = deltas.iter().map(|d| d.stamp).max().unwrap_or_default();
    let mut acks = acks_at(&members, &deltas, top);
    let last = acks.pop().expect("three acks");
    ack(&mut r, &acks, now);
    assert_eq!(r.view(View::Committed).len(), 0, "two of three acks must not commit");
    ack(&mut r, &[last], now);
    assert_eq!(r.pending_candidates(), 0);
    assert_eq!(r.committed_hash(), r.view(View::Pending).hash());
}
