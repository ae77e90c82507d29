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
        assert!(events.iter().any(|(j, e)| *j == i && *e == Event::MemberJoined(ids[2])), "replica {i} reports the join once committed");
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
    rs[1].write(now, vec![Op::RemoveMember { member: ids[2], cut: 0 }]).unwrap();
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
