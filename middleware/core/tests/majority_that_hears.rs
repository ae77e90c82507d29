//! DESIGN.md, "Removals need a majority that hears": a cut-off minority never removes the
//! majority, before or after the heal; a 2 | 2 | 1 split removes no one; nobody removes
//! itself. And the decoherence timeout follows each member's link within its bounds.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

fn left(events: &[(usize, Event)]) -> Vec<(usize, EndpointId)> {
    events.iter().filter_map(|(i, e)| if let Event::MemberLeft(m) = e { Some((*i, *m)) } else { None }).collect()
}

fn decohered(events: &[(usize, Event)], at: usize) -> Vec<EndpointId> {
    events.iter().filter_map(|(i, e)| if let Event::Decohered(m) = e { (*i == at).then_some(*m) } else { None }).collect()
}

/// Five replicas of a convergent group that have run for a second: their ids, the replicas,
/// the time, and the events so far.
type Running = (Vec<EndpointId>, Vec<Replica>, u64, Vec<(usize, Event)>);

fn five_running() -> Running {
    let ids = origins(5);
    let cfg = config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 10, &mut events);
    (ids, rs, now, events)
}

#[test]
fn a_cut_off_drone_is_removed_by_the_four_and_removes_no_one_before_or_after_the_heal() {
    let (ids, mut rs, mut now, mut events) = five_running();

    let side = [0, 0, 0, 0, 1];
    run_split(&mut rs, &side, &mut now, 100, 60, &mut events);
    for r in &rs[..4] {
        assert!(!r.members().contains(&ids[4]), "the four remove the silent one");
    }
    assert_eq!(rs[4].members().len(), 5, "the cut-off drone removes no one: its removals would not be backed");
    let mut seen = decohered(&events, 4);
    seen.sort();
    let mut four = ids[..4].to_vec();
    four.sort();
    assert_eq!(seen, four, "but it reports each of the four decohered: {}", rs[4].summary());
    assert_eq!(rs[4].stats().decohered, 0, "it proposed no removal");
    rs[4].set(now, RegisterId(3), FieldId(0), Value::F64(4.0)).unwrap();
    run_split(&mut rs, &side, &mut now, 100, 20, &mut events);
    assert_eq!(rs[4].get(View::Pending, RegisterId(3), FieldId(0)), Some(Value::F64(4.0)), "its pending view stays live");
    assert_eq!(rs[4].get(View::Committed, RegisterId(3), FieldId(0)), None, "its committed view waits for the heal");

    // The heal: the cut-off drone comes back in after the hysteresis; nobody else ever left.
    run(&mut rs, &mut now, 100, 80, &mut events);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.members().len(), 5, "replica {i} holds every drone again: {}", r.summary());
        assert_eq!(r.state_hash(), rs[0].state_hash());
        assert_eq!(r.void_removals(), 0);
        assert_eq!(r.get(View::Committed, RegisterId(3), FieldId(0)), Some(Value::F64(4.0)));
    }
    assert!(left(&events).iter().all(|(_, m)| *m == ids[4]), "only the cut-off drone ever left a view: {:?}", left(&events));
}

#[test]
fn a_two_two_one_split_removes_no_one_and_commits_nothing_until_the_heal() {
    let (_, mut rs, mut now, mut events) = five_running();

    let side = [0, 0, 1, 1, 2];
    rs[0].set(now, RegisterId(1), FieldId(0), Value::F64(1.0)).unwrap();
    run_split(&mut rs, &side, &mut now, 100, 100, &mut events);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.members().len(), 5, "replica {i}: a 2 | 2 | 1 split removes no one");
        assert_eq!(r.stats().decohered, 0, "replica {i} proposed no removal");
        assert_eq!(decohered(&events, i).len(), if i == 4 { 4 } else { 3 }, "replica {i} reports the other sides decohered");
    }
    assert_eq!(rs[1].get(View::Pending, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
    assert_eq!(rs[1].get(View::Committed, RegisterId(1), FieldId(0)), None, "no side is a majority: nothing commits");

    run(&mut rs, &mut now, 100, 30, &mut events);
    for r in &rs {
        assert_eq!(r.get(View::Committed, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
        assert_eq!(r.state_hash(), rs[0].state_hash());
    }
    assert!(left(&events).is_empty(), "{:?} {}", left(&events), rs[0].summary());
}

#[test]
fn a_removal_not_backed_by_a_majority_that_hears_is_void_on_every_replica() {
    let (ids, mut rs, mut now, mut events) = five_running();
    // A minority's proposal (it heard one other), and a member removing itself.
    rs[4].write(now, vec![Op::RemoveMember { member: ids[0], cut: 0, heard: Some(vec![ids[3]]) }]).unwrap();
    rs[1].write(now, vec![Op::RemoveMember { member: ids[1], cut: 0, heard: Some(ids.clone()) }]).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.members().len(), 5, "replica {i}");
        assert_eq!(r.void_removals(), 2, "replica {i} holds both proposals and voids both");
    }
    // A majority that hears removes (the heard list names those in force it heard).
    rs[0].write(now, vec![Op::RemoveMember { member: ids[4], cut: 0, heard: Some(vec![ids[1], ids[2]]) }]).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    for r in &rs[..4] {
        assert!(!r.members().contains(&ids[4]));
    }
    // A force-remove (no heard list) is the operator's, and takes effect as before.
    rs[0].force_remove(now, ids[3]).unwrap();
    run(&mut rs, &mut now, 100, 5, &mut events);
    assert!(!rs[1].members().contains(&ids[3]));
}

#[test]
fn the_timeout_follows_the_link_within_the_operators_bounds() {
    let ids = origins(3);
    let mut cfg = config(&ids);
    cfg.decohere_after_ms = 3_000;
    cfg.decohere_max_ms = 10_000;
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 10, &mut events);
    assert_eq!(rs[0].silence_timeout(&ids[2], now), 3_000, "a steady link keeps the lower bound");

    // Replica 2's link stalls for 2.5 s (under the bound): the link's timeout widens to twice that.
    let stall = [0, 0, 1];
    run_split(&mut rs, &stall, &mut now, 100, 25, &mut events);
    run(&mut rs, &mut now, 100, 5, &mut events);
    let t = rs[0].silence_timeout(&ids[2], now);
    assert!((5_000..=5_600).contains(&t), "twice the stall: {t}");
    // So a 4 s stall, which a fixed 3 s timeout would have taken for a departure, decoheres no one.
    run_split(&mut rs, &stall, &mut now, 100, 40, &mut events);
    run(&mut rs, &mut now, 100, 5, &mut events);
    assert!(decohered(&events, 0).is_empty() && rs[0].members().len() == 3, "{:?}", decohered(&events, 0));
    let t = rs[0].silence_timeout(&ids[2], now);
    assert!((8_000..=8_600).contains(&t), "the longer stall widens it further: {t}");

    // A member really gone still decoheres within the link's timeout, which is within the
    // upper bound.
    let gone_at = now;
    let mut at = None;
    for _ in 0..110 {
        let mut round = Vec::new();
        run_split(&mut rs, &stall, &mut now, 100, 1, &mut round);
        if at.is_none() && round.iter().any(|(i, e)| *i == 0 && *e == Event::Decohered(ids[2])) {
            at = Some(now - gone_at);
        }
    }
    let at = at.expect("the gone member decohered");
    assert!(at > t && at <= t + 300, "decohered {at} ms after it went silent, timeout {t} ms");
    assert!(!rs[0].members().contains(&ids[2]) && !rs[1].members().contains(&ids[2]), "and two of three remove it");
}

/// The digests a replica sends at the next digest round: (to every member, to one endpoint).
fn digest_round(r: &mut Replica, now: &mut u64, step: u64) -> (usize, Vec<EndpointId>) {
    let (mut all, mut one) = (0, Vec::new());
    for _ in 0..20 {
        *now += step;
        r.handle_timeout(*now);
        while let Some(t) = r.poll_transmit() {
            match (t.kind, t.dest) {
                // In a group idle and in step, a member's ack alone stands in for its digest.
                (FrameKind::Digest | FrameKind::Ack, Dest::Members) => all += 1,
                (FrameKind::Digest, Dest::Peer(p)) => one.push(p),
                _ => {}
            }
        }
        if all + one.len() > 0 {
            break;
        }
    }
    (all, one)
}

#[test]
fn broadcast_digests_are_one_frame_for_the_members_and_one_each_for_the_pruned() {
    let ids = origins(5);
    let mut cfg = config(&ids);
    cfg.digest_broadcast = true;
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 10, &mut events);
    assert_eq!(digest_round(&mut rs[0], &mut now, 50), (1, vec![]), "one digest for all four members, none one by one");

    // Cut one off: the four remove it; their digests still reach it, one by one, so that it
    // is heard and re-added after the heal, as with digests sent round robin.
    let side = [0, 0, 0, 0, 1];
    run_split(&mut rs, &side, &mut now, 100, 60, &mut events);
    assert!(!rs[0].members().contains(&ids[4]), "{}", rs[0].summary());
    assert_eq!(digest_round(&mut rs[0], &mut now, 50), (1, vec![ids[4]]), "the pruned one gets its own");
    run(&mut rs, &mut now, 100, 80, &mut events);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.members().len(), 5, "replica {i} holds every member again: {}", r.summary());
        assert_eq!(r.state_hash(), rs[0].state_hash());
    }
    assert!(left(&events).iter().all(|(_, m)| *m == ids[4]), "only the cut-off one ever left: {:?}", left(&events));
}
