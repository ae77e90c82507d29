//! Replica behaviour at its edges: clock skew, durability before send and ack, bad writes,
//! restart from durable records.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

#[test]
fn a_stamp_too_far_ahead_is_held_and_applied_later_never_dropped() {
    let members = origins(2);
    let mut cfg = config(&members);
    cfg.max_future_ms = 500;
    let mut a = Replica::new(members[0], cfg.clone(), 10_000);
    let mut b = Replica::new(members[1], cfg, 5_000);
    a.set(10_000, RegisterId(1), FieldId(0), Value::F64(1.5)).expect("valid write");
    settle_send(&mut a, &mut b, 5_000);
    assert_eq!(b.get(View::Pending, RegisterId(1), FieldId(0)), None, "held: 5 s ahead of b's clock");
    assert_eq!(b.stats().frames_held, 1);
    b.handle_timeout(9_400);
    assert_eq!(b.get(View::Pending, RegisterId(1), FieldId(0)), None, "still ahead at 9.4 s");
    b.handle_timeout(9_500);
    assert_eq!(b.get(View::Pending, RegisterId(1), FieldId(0)), Some(Value::F64(1.5)));
}

fn settle_send(a: &mut Replica, b: &mut Replica, now_b: u64) {
    while let Some(p) = a.poll_persist() {
        a.handle_persisted(p.id, now_b);
    }
    while let Some(t) = a.poll_transmit() {
        b.handle_frame(a.me(), &t.bytes, now_b);
    }
}

#[test]
fn own_deltas_are_sent_only_once_durable() {
    let members = origins(2);
    let mut a = Replica::new(members[0], config(&members), 2_000);
    a.set(2_000, RegisterId(1), FieldId(0), Value::F64(1.0)).expect("valid write");
    let req = a.poll_persist().expect("the write asks to be persisted");
    assert!(a.poll_transmit().is_none(), "nothing is sent before the delta is durable");
    assert_eq!(a.unsent(), 1);
    a.handle_persisted(req.id, 2_001);
    let t = a.poll_transmit().expect("sent once durable");
    assert_eq!(t.kind, FrameKind::Deltas);
    assert_eq!(t.dest, Dest::Members);
}

#[test]
fn bad_writes_get_typed_errors_and_change_nothing() {
    let members = origins(2);
    let mut cfg = config(&members);
    cfg.limits.max_value_bytes = 100;
    let mut a = Replica::new(members[0], cfg, 2_000);
    let e = a.set(2_000, RegisterId(1), FieldId(0), Value::Str("not a float".into())).unwrap_err();
    assert!(matches!(e, WriteError::Invalid(_)), "{e}");
    let e = a.set(2_000, RegisterId(1), FieldId(99), Value::F64(1.0)).unwrap_err();
    assert_eq!(e, WriteError::Invalid(DecodeError::UnknownField(99)));
    let e = a.write(2_000, vec![Op::Field { reg: RegisterId(1), field: FieldId(7), action: Action::Append(Value::Bytes(vec![0; 500])) }]).unwrap_err();
    assert!(matches!(e, WriteError::Invalid(DecodeError::Oversized { .. })), "{e}");
    let e = a.write(2_000, vec![Op::Field { reg: RegisterId(1), field: FieldId(0), action: Action::Add(1) }]).unwrap_err();
    assert!(matches!(e, WriteError::Invalid(DecodeError::OpDoesNotFitField(1))), "{e}");
    assert_eq!(a.write(2_000, vec![]), Err(WriteError::Empty));
    let outsider = EndpointId::from_index(77);
    let mut o = Replica::new(outsider, config(&members), 2_000);
    assert_eq!(o.set(2_000, RegisterId(1), FieldId(0), Value::F64(1.0)), Err(WriteError::NotAMember));
    assert!(a.context().is_empty() && a.poll_persist().is_none_or(|p| p.records.iter().all(|r| !matches!(r, Record::Delta(_)))));
}

#[test]
fn restart_keeps_exactly_the_durable_records() {
    let members = origins(2);
    let cfg = config(&members);
    let mut a = Replica::new(members[0], cfg.clone(), 2_000);
    let mut disk = Vec::new();
    a.set(2_000, RegisterId(1), FieldId(0), Value::F64(1.0)).expect("valid");
    let p = a.poll_persist().expect("persist");
    disk.extend(p.records.clone());
    a.handle_persisted(p.id, 2_000);
    a.set(2_001, RegisterId(1), FieldId(1), Value::F64(2.0)).expect("valid");
    let _lost = a.poll_persist(); // crash before this batch is durable
    let r = Replica::restore(members[0], cfg, &disk, 2_002);
    assert_eq!(r.get(View::Pending, RegisterId(1), FieldId(0)), Some(Value::F64(1.0)));
    assert_eq!(r.get(View::Pending, RegisterId(1), FieldId(1)), None);
    let mut r = r;
    // The next delta reuses no durable sequence number and no durable stamp.
    let dot = r.set(1_000, RegisterId(2), FieldId(0), Value::F64(3.0)).expect("valid");
    assert_eq!(dot.seq, 2);
    let stamp = match r.poll_persist().expect("persist").records.iter().find_map(|x| if let Record::Delta(d) = x { Some(d.stamp) } else { None }) {
        Some(s) => s,
        None => panic!("the write is persisted"),
    };
    assert!(stamp.ms() >= 2_000, "restarted clock never goes below the durable high-water mark");
}
