//! Membership changes travel as deltas and take effect in the committed view; re-alignment
//! after a partition is proportional to the state that diverged, not to the history.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

#[test]
fn an_added_member_joins_the_committed_view_and_then_counts_for_stability() {
    let ids = origins(3);
    let cfg = config(&ids[..2]);
    let mut now = GENESIS + 1_000;
    let mut rs = vec![Replica::new(ids[0], cfg.clone(), now), Replica::new(ids[1], cfg.clone(), now)];
    let mut events = Vec::new();
    rs[0].write(now, vec![Op::AddMember(ids[2])]).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    for (i, r) in rs.iter().enumerate() {
        assert!(r.members().contains(&ids[2]), "replica {i} sees the new member");
        assert!(!events.iter().any(|(_, e)| *e == Event::MemberJoined(ids[2])), "a pending addition counts for S: it cannot commit without the new member's ack");
    }
    // From now on the new member's ack is needed: without it nothing more commits.
    let f = rs[0].frontier();
    rs[0].set(now, RegisterId(1), FieldId(0), Value::F64(1.0)).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    assert_eq!(rs[1].get(View::Pending, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
    assert_eq!(rs[1].get(View::Committed, RegisterId(1), FieldId(0)), None, "the silent new member holds S back");
    assert!(rs[0].frontier() >= f);
    // The new member comes up (it knows the group as of its genesis plus the add): all commit.
    let mut cfg3 = cfg.clone();
    cfg3.members = ids[..2].to_vec();
    rs.push(Replica::new(ids[2], cfg3, now));
    run(&mut rs, &mut now, 100, 20, &mut events);
    for r in &rs {
        assert_eq!(r.get(View::Committed, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
    }
    assert!(events.iter().any(|(j, e)| *j == 0 && *e == Event::MemberJoined(ids[2])), "the join commits once the new member acks");
    assert_eq!(rs[0].state_hash(), rs[2].state_hash());
}

#[test]
fn a_removed_member_no_longer_holds_back_commits() {
    let ids = origins(3);
    let cfg = config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs = vec![Replica::new(ids[0], cfg.clone(), now), Replica::new(ids[1], cfg, now)];
    let mut events = Vec::new();
    rs[0].set(now, RegisterId(1), FieldId(0), Value::F64(2.0)).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    assert_eq!(rs[1].get(View::Committed, RegisterId(1), FieldId(0)), None, "member 3 never acked");
    rs[1].write(now, vec![Op::RemoveMember { member: ids[2], cut: 0, heard: None }]).unwrap();
    run(&mut rs, &mut now, 100, 10, &mut events);
    for r in &rs {
        assert!(!r.members().contains(&ids[2]));
        assert_eq!(r.get(View::Committed, RegisterId(1), FieldId(0)), Some(Value::F64(2.0)));
    }
    assert!(events.iter().any(|(_, e)| *e == Event::MemberLeft(ids[2])));
}

#[test]
fn realignment_is_proportional_to_the_fields_that_diverged_not_to_history() {
    let ids = origins(2);
    let cfg = config(&ids);
    let mut a = Replica::new(ids[0], cfg.clone(), GENESIS);
    let b = Replica::new(ids[1], cfg, GENESIS);
    // 5,000 updates of the same 80 fields (10 registers x 8 fields).
    for i in 0..5_000u32 {
        let (reg, field) = (RegisterId(i % 10), FieldId(((i / 10) % 3) as u16));
        let value = Value::F64(f64::from(i));
        let op = if (i / 10) % 8 < 3 {
            Op::Field { reg, field, action: Action::Set(value) }
        } else if (i / 10) % 8 < 5 {
            Op::Field { reg, field: FieldId(4), action: Action::Set(value) }
        } else if (i / 10) % 8 < 7 {
            Op::Field { reg, field: FieldId(8), action: Action::Set(value) }
        } else {
            Op::Field { reg, field: FieldId(5), action: Action::Add(1) }
        };
        a.write(GENESIS + 1 + u64::from(i), vec![op]).unwrap();
    }
    let missing = a.context().difference(b.context());
    assert_eq!(missing.len(), 5_000);
    let msg = a.state_for(&missing);
    let bytes = codec::encode_state(a.schema(), GENESIS, &msg);
    assert!(msg.facts.len() <= 10 * 6, "one fact per diverged field, not one per update: {}", msg.facts.len());
    assert!(bytes.len() < 2_000, "state of 60 fields, not 5,000 deltas: {} bytes", bytes.len());
}

#[test]
fn a_silent_member_decoheres_the_rest_commit_and_the_heal_re_entangles_by_original_stamps() {
    let ids = origins(3);
    let cfg = config(&ids); // convergent; decoherence after 3 s, re-add after 3 s heard
    let mut now = GENESIS + 1_000;
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 10, &mut events);

    // Split {0, 1} | {2}. Node 2 writes a stale pose first; node 0 writes a fresh one later.
    let (x, fresh_field) = (RegisterId(7), FieldId(0));
    let mut now2 = now;
    rs[2].set(now2, x, fresh_field, Value::F64(-1.0)).unwrap();
    rs[2].set(now2, RegisterId(8), FieldId(1), Value::F64(8.0)).unwrap();
    let (left, right) = rs.split_at_mut(2);
    let mut ev_right = Vec::new();
    run(left, &mut now, 100, 5, &mut events);
    left[0].set(now, x, fresh_field, Value::F64(42.0)).unwrap();
    run(left, &mut now, 100, 60, &mut events);
    run(right, &mut now2, 100, 65, &mut ev_right);
    for r in left.iter() {
        assert!(!r.members().contains(&ids[2]), "the silent member is pruned");
        assert_eq!(r.get(View::Committed, x, fresh_field), Some(Value::F64(42.0)), "the rest keep committing");
    }
    assert!(events.iter().any(|(_, e)| *e == Event::Decohered(ids[2])));
    assert!(events.iter().any(|(_, e)| *e == Event::MemberLeft(ids[2])));

    // Heal. Deltas merge by their original stamps: the stale pose does not overwrite the
    // fresh one; the register only node 2 wrote is committed late, as a re-entanglement.
    let mut events = Vec::new();
    now = now.max(now2);
    run(&mut rs, &mut now, 100, 80, &mut events);
    for r in &rs {
        assert_eq!(r.get(View::Committed, x, fresh_field), Some(Value::F64(42.0)));
        assert_eq!(r.get(View::Committed, RegisterId(8), FieldId(1)), Some(Value::F64(8.0)));
        assert!(r.members().contains(&ids[2]), "heard steadily again, the member is re-added");
        assert_eq!(r.state_hash(), rs[0].state_hash());
        assert_eq!(r.committed_hash(), rs[0].committed_hash());
    }
    let reentangled: Vec<&Vec<RegisterId>> = events
        .iter()
        .filter_map(|(n, e)| match e {
            Event::ReEntangled { registers } if *n < 2 => Some(registers),
            _ => None,
        })
        .collect();
    assert!(reentangled.iter().any(|r| r.contains(&RegisterId(8))), "survivors report the late register: {reentangled:?}");
    assert!(events.iter().any(|(_, e)| *e == Event::MemberJoined(ids[2])));
}

#[test]
fn a_serial_group_never_prunes_by_itself_but_an_operator_can() {
    let ids = origins(2);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut rs = vec![Replica::new(ids[0], cfg.clone(), now)];
    let mut events = Vec::new();
    run(&mut rs, &mut now, 100, 100, &mut events);
    assert!(rs[0].members().contains(&ids[1]), "a pair cannot prune its peer by itself");
    rs[0].set(now, RegisterId(1), FieldId(0), Value::F64(1.0)).unwrap();
    run(&mut rs, &mut now, 100, 5, &mut events);
    assert_eq!(rs[0].get(View::Committed, RegisterId(1), FieldId(0)), None, "nothing commits without the peer");
    rs[0].force_remove(now, ids[1]).unwrap();
    run(&mut rs, &mut now, 100, 5, &mut events);
    assert!(!rs[0].members().contains(&ids[1]));
    assert_eq!(rs[0].get(View::Committed, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
}
