//! Serial transactions: evaluated in the total order once causally stable, the same outcome
//! on every node; identity (client, seq) so a resend executes once; dependants of an aborted
//! operation abort; stale operations abort by their deadline; a replica that cannot learn the
//! outcome in time reports Decohered, then the outcome every node agrees on.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

fn txn_states(events: &[(usize, Event)], node: usize, id: OpId) -> Vec<TxnState> {
    events
        .iter()
        .filter(|(n, _)| *n == node)
        .filter_map(|(_, e)| match e {
            Event::Txn { id: i, state } if *i == id => Some(state.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn conflicting_claims_first_in_total_order_wins_everywhere() {
    let ids = origins(3);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    let a = rs[1].submit(now, claim(ids[1], 1, 5, "b", now + 10_000)).unwrap();
    let b = rs[2].submit(now + 1, claim(ids[2], 1, 5, "c", now + 10_000)).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        let cell = r.serial().cell(RegisterId(5), OWNER).unwrap();
        assert_eq!(cell.value, Value::from("b"), "the claim earlier in the total order wins");
        assert_eq!(cell.version, 1);
        assert!(matches!(r.serial().outcome(&a), Some(TxnOutcome::Committed { .. })));
        assert_eq!(r.serial().outcome(&b), Some(&TxnOutcome::Aborted(AbortReason::Precondition(0))));
        assert_eq!(r.serial().hash(), rs[0].serial().hash());
    }
    let fence = match rs[0].serial().outcome(&a) {
        Some(TxnOutcome::Committed { fence }) => *fence,
        other => panic!("{other:?}"),
    };
    assert_eq!(rs[0].serial().cell(RegisterId(5), OWNER).unwrap().stamp, fence, "the commit stamp is the fencing token");
    assert_eq!(
        txn_states(&events, 1, a),
        vec![TxnState::Pending, TxnState::Resolving, TxnState::Resolved(TxnOutcome::Committed { fence })]
    );
    assert_eq!(
        txn_states(&events, 2, b).last(),
        Some(&TxnState::Resolved(TxnOutcome::Aborted(AbortReason::Precondition(0))))
    );
}

#[test]
fn an_operation_resent_through_a_second_node_executes_once() {
    let ids = origins(3);
    let cfg = serial_config(&ids);
    let client = EndpointId::from_index(500);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    let transfer = Txn {
        id: OpId { client, seq: 7 },
        deadline_ms: now + 10_000,
        after: vec![],
        preconditions: vec![],
        writes: vec![TxnWrite { reg: RegisterId(1), field: OWNER, value: Value::I64(100), lease_ms: None }],
    };
    rs[0].submit(now, transfer.clone()).unwrap();
    rs[1].submit(now + 5, transfer.clone()).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        assert_eq!(r.serial().cell(RegisterId(1), OWNER).unwrap().version, 1, "executed exactly once");
        assert!(matches!(r.serial().outcome(&transfer.id), Some(TxnOutcome::Committed { .. })));
    }
}

#[test]
fn dependants_of_an_aborted_operation_abort_and_stale_operations_abort() {
    let ids = origins(2);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    let c = ids[0];
    let first = claim(c, 1, 3, "x", now + 10_000);
    let mut failing = claim(c, 2, 3, "y", now + 10_000); // task 3 is taken by `first`
    failing.preconditions = vec![Precondition::VersionEquals { reg: RegisterId(3), field: OWNER, version: 0 }];
    let mut dependant = claim(c, 3, 4, "z", now + 10_000);
    dependant.after = vec![failing.id];
    let stale = claim(c, 4, 8, "late", now - 1); // its deadline is before its own stamp
    for t in [first.clone(), failing.clone(), dependant.clone(), stale.clone()] {
        now += 1;
        rs[0].submit(now, t).unwrap();
    }
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        assert!(matches!(r.serial().outcome(&first.id), Some(TxnOutcome::Committed { .. })));
        assert_eq!(r.serial().outcome(&failing.id), Some(&TxnOutcome::Aborted(AbortReason::Precondition(0))));
        assert_eq!(r.serial().outcome(&dependant.id), Some(&TxnOutcome::Aborted(AbortReason::DependencyAborted(failing.id))));
        assert_eq!(r.serial().outcome(&stale.id), Some(&TxnOutcome::Aborted(AbortReason::DeadlinePassed)));
        assert!(r.serial().cell(RegisterId(4), OWNER).is_none());
    }
}

#[test]
fn a_pair_whose_counterparty_vanishes_mid_collapse_decoheres_then_agrees_on_heal() {
    let ids = origins(2);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut a = vec![Replica::new(ids[0], cfg.clone(), now)];
    let mut b = vec![Replica::new(ids[1], cfg.clone(), now)];
    let mut events_a = Vec::new();
    let mut events_b = Vec::new();
    // Phase 1 (pending) and 2 (resolving) at both sides, then the link goes.
    let debit = claim(ids[0], 1, 1, "debit", now + 2_000);
    let credit = claim(ids[1], 1, 2, "credit", now + 2_000);
    a[0].submit(now, debit.clone()).unwrap();
    b[0].submit(now, credit.clone()).unwrap();
    // Each side runs alone past its deadline.
    let mut now_b = now;
    run(&mut a, &mut now, 100, 30, &mut events_a);
    run(&mut b, &mut now_b, 100, 30, &mut events_b);
    assert_eq!(txn_states(&events_a, 0, debit.id), vec![TxnState::Pending, TxnState::Resolving, TxnState::Decohered]);
    assert_eq!(txn_states(&events_b, 0, credit.id), vec![TxnState::Pending, TxnState::Resolving, TxnState::Decohered]);
    assert!(a[0].serial().outcome(&debit.id).is_none(), "nothing commits while the counterparty is gone");
    // Heal: both reach the same outcome (here: both within their deadline, so committed).
    let mut both = vec![a.remove(0), b.remove(0)];
    let mut events = Vec::new();
    run(&mut both, &mut now, 100, 20, &mut events);
    for id in [debit.id, credit.id] {
        let (x, y) = (both[0].serial().outcome(&id).cloned(), both[1].serial().outcome(&id).cloned());
        assert!(matches!(x, Some(TxnOutcome::Committed { .. })), "{x:?}");
        assert_eq!(x, y);
    }
    assert!(matches!(txn_states(&events, 0, debit.id).last(), Some(TxnState::Resolved(TxnOutcome::Committed { .. }))));
    assert_eq!(both[0].serial().hash(), both[1].serial().hash());
}

/// Run `groups` of replicas as separate partitions for `rounds` ticks each (interleaved).
fn run_split(rs: &mut [Replica], sides: &[usize], now: &mut u64, step: u64, rounds: usize, events: &mut Vec<(usize, Event)>) {
    for _ in 0..rounds {
        let start = *now;
        let mut end = start;
        for side in 0..=*sides.iter().max().unwrap() {
            let idx: Vec<usize> = (0..rs.len()).filter(|i| sides[*i] == side).collect();
            let mut group: Vec<Replica> = idx.iter().map(|i| std::mem::replace(&mut rs[*i], Replica::new(EndpointId([0; 32]), config(&[]), 0))).collect();
            let mut t = start;
            let mut ev = Vec::new();
            run(&mut group, &mut t, step, 1, &mut ev);
            end = end.max(t);
            for (k, r) in idx.iter().zip(group) {
                rs[*k] = r;
            }
            events.extend(ev.into_iter().map(|(j, e)| (idx[j], e)));
        }
        *now = end;
    }
}

#[test]
fn a_five_node_split_two_three_only_the_majority_commits_and_all_agree_after_heal() {
    let ids = origins(5);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 10, &mut events);
    // Split {0, 1} | {2, 3, 4}; both sides claim tasks during the split.
    let sides = [0, 0, 1, 1, 1];
    let minority = rs[0].submit(now, claim(ids[0], 1, 1, "minority", now + 3_000)).unwrap();
    let patient = rs[1].submit(now, claim(ids[1], 1, 3, "patient", now + 600_000)).unwrap();
    let majority = rs[2].submit(now, claim(ids[2], 1, 2, "majority", now + 60_000)).unwrap();
    let mut ev = Vec::new();
    run_split(&mut rs, &sides, &mut now, 100, 200, &mut ev);
    for r in &rs[2..5] {
        assert!(!r.members().contains(&ids[0]) && !r.members().contains(&ids[1]), "the majority pruned the minority by consensus");
        assert!(matches!(r.serial().outcome(&majority), Some(TxnOutcome::Committed { .. })), "the majority keeps committing");
    }
    for r in &rs[..2] {
        assert!(r.serial().cells().next().is_none(), "the minority commits nothing at all");
        assert_eq!(r.serial().outcome(&minority), None);
    }
    assert!(ev.iter().any(|(n, e)| *n == 0 && *e == Event::Txn { id: minority, state: TxnState::Decohered }));
    // Heal: everyone converges to one serial state. The minority's partition-time claims sort
    // at the stamp of its re-add (never re-sent, never re-stamped): the stale one aborts by
    // its deadline there, the patient one commits there, the same everywhere.
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 150, &mut events);
    for r in &rs {
        assert_eq!(r.serial().hash(), rs[2].serial().hash());
        assert_eq!(r.serial().outcome(&minority), Some(&TxnOutcome::Aborted(AbortReason::DeadlinePassed)));
        assert!(matches!(r.serial().outcome(&patient), Some(TxnOutcome::Committed { .. })));
        assert!(matches!(r.serial().outcome(&majority), Some(TxnOutcome::Committed { .. })));
        assert_eq!(r.state_hash(), rs[2].state_hash());
        assert!(r.members().contains(&ids[0]), "heard steadily again, the minority is re-added by consensus");
    }
    let fence = match rs[0].serial().outcome(&patient) {
        Some(TxnOutcome::Committed { fence }) => *fence,
        other => panic!("{other:?}"),
    };
    let readd = rs[0].decisions().iter().any(|(_, ops)| ops.contains(&Op::AddMember(ids[1])));
    assert!(readd && fence.ms() > now - 15_000 + 3_000, "the patient claim committed at the re-add, not at its own stamp");
    assert!(events.iter().any(|(n, e)| *n == 0 && matches!(e, Event::Txn { id, state: TxnState::Resolved(TxnOutcome::Aborted(AbortReason::DeadlinePassed)) } if *id == minority)));
}

#[test]
fn a_decohered_claimant_loses_its_lease_when_it_runs_out_and_fences_go_up() {
    let ids = origins(3);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    let lease = |client: EndpointId, seq: u64, who: &str, deadline: u64| Txn {
        id: OpId { client, seq },
        deadline_ms: deadline,
        after: vec![],
        preconditions: vec![Precondition::LeaseExpired { reg: RegisterId(1), field: OWNER }],
        writes: vec![TxnWrite { reg: RegisterId(1), field: OWNER, value: Value::from(who), lease_ms: Some(5_000) }],
    };
    let first = rs[0].submit(now, lease(ids[0], 1, "a", now + 60_000)).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    let fence_a = match rs[1].serial().outcome(&first) {
        Some(TxnOutcome::Committed { fence }) => *fence,
        other => panic!("{other:?}"),
    };
    // A vanishes. B claims at once: the lease still runs, so this claim aborts.
    let mut bc = rs.split_off(1);
    let early = bc[0].submit(now, lease(ids[1], 1, "b", now + 60_000)).unwrap();
    run(&mut bc, &mut now, 100, 80, &mut events);
    assert!(!bc[0].members().contains(&ids[0]), "B and C prune the silent holder by consensus");
    assert_eq!(bc[0].serial().outcome(&early), Some(&TxnOutcome::Aborted(AbortReason::Precondition(0))));
    // Once the lease has run out, B's claim commits with a greater fence.
    let later = bc[0].submit(now, lease(ids[1], 2, "b", now + 60_000)).unwrap();
    run(&mut bc, &mut now, 100, 20, &mut events);
    let fence_b = match bc[1].serial().outcome(&later) {
        Some(TxnOutcome::Committed { fence }) => *fence,
        other => panic!("{other:?}"),
    };
    assert!(fence_b > fence_a, "a later holder's fencing token is greater");
    assert_eq!(bc[1].serial().cell(RegisterId(1), OWNER).unwrap().value, Value::from("b"));
}

#[test]
fn a_window_held_by_a_lease_admits_transactions_until_it_ends_in_the_total_order() {
    let ids = origins(3);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    let txn = |seq: u64, pre: Precondition, reg: u32, lease_ms: Option<u64>, now: u64| Txn {
        id: OpId { client: ids[1], seq },
        deadline_ms: now + 60_000,
        after: vec![],
        preconditions: vec![pre],
        writes: vec![TxnWrite { reg: RegisterId(reg), field: OWNER, value: Value::from("x"), lease_ms }],
    };
    let held = Precondition::LeaseHeld { reg: RegisterId(1), field: OWNER };
    // Never leased: the window is not open.
    let early = rs[1].submit(now, txn(1, held.clone(), 2, None, now)).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    assert_eq!(rs[0].serial().outcome(&early), Some(&TxnOutcome::Aborted(AbortReason::Precondition(0))));
    // Open a 3 s window; a transaction inside it commits on every replica.
    let open = rs[0].submit(now, txn(2, Precondition::Absent { reg: RegisterId(1), field: OWNER }, 1, Some(3_000), now)).unwrap();
    run(&mut rs, &mut now, 100, 5, &mut events);
    let inside = rs[2].submit(now, txn(3, held.clone(), 2, None, now)).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        assert!(matches!(r.serial().outcome(&open), Some(TxnOutcome::Committed { .. })));
        assert!(matches!(r.serial().outcome(&inside), Some(TxnOutcome::Committed { .. })), "inside the window");
    }
    // After the window, the same test aborts everywhere, whatever the local clocks say.
    run(&mut rs, &mut now, 100, 30, &mut events);
    let late = rs[2].submit(now, txn(4, held, 2, None, now)).unwrap();
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        assert_eq!(r.serial().outcome(&late), Some(&TxnOutcome::Aborted(AbortReason::Precondition(0))), "after the window");
    }
}

#[test]
fn a_ten_hour_two_three_split_with_writes_on_both_sides() {
    // Simulated time in 1 s steps (digests every second, decoherence after 3 s).
    let ids = origins(5);
    let mut cfg = serial_config(&ids);
    cfg.digest_interval_ms = 1_000;
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 1_000, 10, &mut events);
    let sides = [0, 0, 1, 1, 1];
    let mut claims = Vec::new();
    let hours = 10;
    for slot in 0..hours * 6 {
        // Every ten minutes each side writes poses and claims a task.
        for (i, r) in rs.iter_mut().enumerate() {
            let value = Value::F64(f64::from(slot as u32) + i as f64 / 10.0);
            r.set(now, RegisterId(i as u32), FieldId(0), value).unwrap();
            if i == 0 || i == 2 {
                let t = claim(ids[i], 1 + slot as u64, 100 + slot as u32, if i == 0 { "minority" } else { "majority" }, now + 120_000);
                claims.push((i, r.submit(now, t).unwrap()));
            }
        }
        let mut ev = Vec::new();
        run_split(&mut rs, &sides, &mut now, 1_000, 600, &mut ev);
    }
    let diverged: usize = {
        let (a, b) = (rs[0].view(View::Pending), rs[2].view(View::Pending));
        a.iter().filter(|(k, st)| b.field_state(k.0, k.1) != Some(*st)).count() + b.iter().filter(|(k, _)| a.field_state(k.0, k.1).is_none()).count()
    };
    for (i, id) in &claims {
        let o = rs[*i].serial().outcome(id);
        if *i == 0 {
            assert_eq!(o, None, "the minority commits nothing in ten hours");
        } else {
            assert!(matches!(o, Some(TxnOutcome::Committed { .. })), "the majority commits");
        }
    }
    let mut events = Vec::new();
    let (mut bytes, mut secs) = (0, 0);
    let done = |rs: &[Replica]| {
        rs.iter().all(|r| {
            r.state_hash() == rs[2].state_hash()
                && r.serial().hash() == rs[2].serial().hash()
                && r.pending_candidates() == 0
                && claims.iter().all(|(_, id)| r.serial().outcome(id).is_some())
        })
    };
    while secs < 300 && !done(&rs) {
        bytes += run(&mut rs, &mut now, 1_000, 1, &mut events);
        secs += 1;
    }
    println!("ten-hour split: {} claims; re-aligned and re-added (every claim resolved everywhere) in {secs} s with {bytes} bytes (all frames) for {diverged} diverged fields and {} minority claims", claims.len(), claims.len() / 2);
    for r in &rs {
        assert_eq!(r.state_hash(), rs[2].state_hash(), "byte-identical after the heal");
        assert_eq!(r.serial().hash(), rs[2].serial().hash());
        assert_eq!(r.committed_hash(), rs[2].committed_hash());
    }
    // The minority's claims sort at the re-add, ten minutes or more after each was issued
    // with a two-minute deadline: all stale, all aborted by their deadline, everywhere.
    for (i, id) in &claims {
        let expected = if *i == 0 { Some(TxnOutcome::Aborted(AbortReason::DeadlinePassed)) } else { rs[2].serial().outcome(id).cloned() };
        assert_eq!(rs[0].serial().outcome(id).cloned(), expected, "claim {id:?} of node {i}");
    }
}
