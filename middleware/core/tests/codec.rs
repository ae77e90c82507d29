//! The wire codec: round trips, and malformed input (random bytes, truncation, bit flips,
//! unknown version, trailing bytes, oversized values, unknown fields) never panics and always
//! gives a typed error or, for a flipped payload bit, a frame that still obeys the schema.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use spook_core::codec::{self, Ack, DecodeError, Digest, Frame, GroupView, Limits};
use spook_core::*;

fn roster(members: &[EndpointId]) -> BTreeMap<u64, EndpointId> {
    members.iter().map(|m| (m.short(), *m)).collect()
}

fn sample_frames() -> (Vec<EndpointId>, Vec<Vec<u8>>) {
    let members = origins(3);
    let deltas = generate(&members, &[(0, 0, 1, 5), (0, 5, 2, 1), (0, 6, 2, 1), (0, 4, 3, -9), (0, 7, 0, 2), (0, 3, 1, 8)]);
    let schema = Schema::fleet();
    let mut frames = vec![codec::encode_deltas(&schema, GENESIS, &deltas)];
    let mut r = Replica::new(members[1], config(&members), GENESIS + 100);
    for d in &deltas {
        feed(&mut r, d, GENESIS + 100);
    }
    let msg = r.state_for(r.context());
    frames.push(codec::encode_state(&schema, GENESIS, &msg));
    let digest = Digest {
        context: r.context().clone(),
        hash: r.state_hash().short(),
        acks: vec![Ack { member: members[0], hlc: Hlc::new(GENESIS + 50, 3), own_hlc: Hlc::new(GENESIS + 60, 0), own_seq: 6 }],
    };
    frames.push(codec::encode_digest(GENESIS, &digest));
    frames.push(codec::encode_want(r.context()));
    frames.push(codec::encode_ack(GENESIS, &Ack { member: members[0], hlc: Hlc::new(GENESIS + 50, 3), own_hlc: Hlc::new(GENESIS + 60, 0), own_seq: 6 }));
    let ballot = codec::Ballot { n: 3, by: members[2] };
    let value = vec![
        Op::RemoveMember { member: members[1], cut: 4, heard: None },
        Op::RemoveMember { member: members[2], cut: 7, heard: Some(vec![members[0]]) },
        Op::AddMember(EndpointId::from_index(70)),
    ];
    frames.push(codec::encode_paxos(&schema, &codec::PaxosMsg::Promise { epoch: 2, ballot, accepted: Some((ballot, value.clone())), coverage: vec![(members[1], 9)] }));
    frames.push(codec::encode_paxos(&schema, &codec::PaxosMsg::Accept { epoch: 2, ballot, value }));
    frames.push(codec::encode_paxos(&schema, &codec::PaxosMsg::Prepare { epoch: 2, ballot, removing: vec![members[1]] }));
    (members, frames)
}

#[test]
fn every_frame_kind_round_trips() {
    let (members, frames) = sample_frames();
    let schema = Schema::fleet();
    let ro = roster(&members);
    let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
    for f in &frames {
        let decoded = codec::decode(&g, members[0], f).expect("a frame we encoded decodes");
        let again = match &decoded {
            Frame::Deltas(d) => codec::encode_deltas(&schema, GENESIS, d),
            Frame::State(s) => codec::encode_state(&schema, GENESIS, s),
            Frame::Digest(d) => codec::encode_digest(GENESIS, d),
            Frame::Want(c) => codec::encode_want(c),
            Frame::Paxos(m) => codec::encode_paxos(&schema, m),
            Frame::Ack(a) => {
                assert_eq!(a.member, members[0], "an ack is the sender's own");
                codec::encode_ack(GENESIS, a)
            }
        };
        assert_eq!(&again, f, "re-encoding gives the same bytes");
    }
}

#[test]
fn typed_errors_for_each_kind_of_bad_frame() {
    let (members, frames) = sample_frames();
    let schema = Schema::fleet();
    let ro = roster(&members);
    let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
    let deltas = &frames[0];
    assert_eq!(codec::decode(&g, members[0], &[]), Err(DecodeError::Empty));
    let mut v = deltas.clone();
    v[0] = 9;
    assert_eq!(codec::decode(&g, members[0], &v), Err(DecodeError::UnknownVersion(9)));
    let mut k = deltas.clone();
    k[1] = 77;
    assert_eq!(codec::decode(&g, members[0], &k), Err(DecodeError::UnknownFrameKind(77)));
    let mut t = deltas.clone();
    t.push(0);
    assert_eq!(codec::decode(&g, members[0], &t), Err(DecodeError::TrailingBytes(1)));
    assert!(matches!(codec::decode(&g, members[0], &deltas[..deltas.len() - 1]), Err(DecodeError::Truncated(_))));

    // Unknown field: a schema with fewer fields than the frame names.
    let small = Schema::new().field("x", ValueKind::F64, MergePolicy::LastWriterWins);
    let gs = GroupView { schema: &small, ..g };
    let d = Delta { origin: members[0], seq: 1, stamp: Hlc::new(GENESIS + 1, 0), ops: vec![Op::Field { reg: RegisterId(0), field: FieldId(4), action: Action::Set(Value::F64(1.0)) }] };
    let bytes = codec::encode_deltas(&schema, GENESIS, &[d]);
    assert_eq!(codec::decode(&gs, members[0], &bytes), Err(DecodeError::UnknownField(4)));

    // Oversized value.
    let big = Delta { origin: members[0], seq: 1, stamp: Hlc::new(GENESIS + 1, 0), ops: vec![Op::Field { reg: RegisterId(0), field: FieldId(7), action: Action::Append(Value::Bytes(vec![7; 5_000])) }] };
    let bytes = codec::encode_deltas(&schema, GENESIS, &[big]);
    let tight = GroupView { limits: Limits { max_value_bytes: 1_000, ..Limits::default() }, ..g };
    assert!(matches!(codec::decode(&tight, members[0], &bytes), Err(DecodeError::Oversized { len: 5_000, limit: 1_000 })));

    // A digest naming an origin that is not a member.
    let stranger = EndpointId::from_index(1234);
    let digest = Digest { context: CausalContext::default(), hash: [0; 16], acks: vec![Ack { member: stranger, hlc: Hlc(0), own_hlc: Hlc(0), own_seq: 0 }] };
    let bytes = codec::encode_digest(GENESIS, &digest);
    assert_eq!(codec::decode(&g, members[0], &bytes), Err(DecodeError::UnknownOrigin(stranger.short())));

    // An ack whose own stamp is below its stamp, and one cut short.
    let ack = codec::encode_ack(GENESIS, &Ack { member: members[0], hlc: Hlc::new(GENESIS + 50, 0), own_hlc: Hlc::new(GENESIS + 50, 2), own_seq: 6 });
    let stale = codec::encode_ack(GENESIS, &Ack { member: members[0], hlc: Hlc::new(GENESIS + 50, 5), own_hlc: Hlc::new(GENESIS + 50, 2), own_seq: 6 });
    assert_eq!(codec::decode(&g, members[0], &stale), Err(DecodeError::Malformed("an ack's own stamp below its stamp")));
    assert!(matches!(codec::decode(&g, members[0], &ack[..ack.len() - 1]), Err(DecodeError::Truncated(_))));
}

#[test]
fn a_replica_rejects_bad_frames_whole_and_counts_them() {
    let (members, frames) = sample_frames();
    let mut r = Replica::new(members[1], config(&members), GENESIS + 100);
    let mut bad = frames[0].clone();
    bad.truncate(bad.len() - 3);
    r.handle_frame(members[0], &bad, GENESIS + 100);
    r.handle_frame(EndpointId::from_index(555), &frames[0], GENESIS + 100);
    assert_eq!(r.stats().frames_rejected, 2);
    assert!(r.context().is_empty(), "nothing of a rejected frame is applied");
    let mut rejected = 0;
    while let Some(e) = r.poll_event() {
        if matches!(e, Event::Rejected { .. }) {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), kind in 1u8..5) {
        let members = origins(3);
        let schema = Schema::fleet();
        let ro = roster(&members);
        let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
        let mut b = vec![codec::VERSION, kind];
        b.extend(bytes);
        let _ = codec::decode(&g, members[0], &b);
    }

    #[test]
    fn truncations_and_bit_flips_never_panic(which in 0usize..7, cut in any::<usize>(), flip in any::<usize>(), bit in 0u8..8) {
        let (members, frames) = sample_frames();
        let schema = Schema::fleet();
        let ro = roster(&members);
        let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
        let f = &frames[which];
        let cut = cut % f.len();
        prop_assert!(codec::decode(&g, members[0], &f[..cut]).is_err(), "a truncated frame is an error");
        let mut flipped = f.clone();
        let i = flip % f.len();
        flipped[i] ^= 1 << bit;
        // Integrity is the channel's job (AEAD); the codec's is to hand on only frames that
        // obey the schema.
        if let Ok(Frame::Deltas(ds)) = codec::decode(&g, members[0], &flipped) {
            for d in ds {
                for op in &d.ops {
                    prop_assert!(codec::check_op(&schema, &Limits::default(), op).is_ok());
                }
            }
        }
    }
}

#[test]
fn transactions_round_trip_and_reject_unknown_fields() {
    let members = origins(2);
    let schema = Schema::fleet();
    let ro = roster(&members);
    let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
    let t = Txn {
        id: OpId { client: EndpointId::from_index(40), seq: 3 },
        deadline_ms: 99_000,
        after: vec![OpId { client: members[1], seq: 1 }],
        preconditions: vec![
            Precondition::VersionEquals { reg: RegisterId(1), field: FieldId(9), version: 2 },
            Precondition::ValueEquals { reg: RegisterId(1), field: FieldId(9), value: Value::from("me") },
            Precondition::Absent { reg: RegisterId(2), field: FieldId(9) },
            Precondition::Compare { reg: RegisterId(3), field: FieldId(9), cmp: Cmp::Ge, value: Value::I64(10) },
            Precondition::LeaseExpired { reg: RegisterId(4), field: FieldId(9) },
            Precondition::LeaseHeld { reg: RegisterId(4), field: FieldId(9) },
        ],
        writes: vec![TxnWrite { reg: RegisterId(4), field: FieldId(9), value: Value::from("me"), lease_ms: Some(5_000) }],
    };
    let d = Delta { origin: members[0], seq: 1, stamp: Hlc::new(GENESIS + 5, 0), ops: vec![Op::Txn(t.clone())] };
    let bytes = codec::encode_deltas(&schema, GENESIS, std::slice::from_ref(&d));
    assert_eq!(codec::decode(&g, members[0], &bytes), Ok(Frame::Deltas(vec![d])));
    let small = Schema::new().field("x", ValueKind::F64, MergePolicy::LastWriterWins);
    let gs = GroupView { schema: &small, ..g };
    assert_eq!(codec::decode(&gs, members[0], &bytes), Err(DecodeError::UnknownField(9)));
    for cut in 0..bytes.len() {
        assert!(codec::decode(&g, members[0], &bytes[..cut]).is_err());
    }
}


#[test]
fn a_digest_of_the_first_wire_format_still_decodes() {
    // Sent by builds before compact acks (frame kind 2, each ack's stamps from genesis); a
    // node of this build still reads them from older members. Bytes of `sample_frames`'s
    // digest as that build encoded it.
    let legacy = "010201ec2bd03bf86b935f01000101056ca812a68d7c0e0f5fb91cef151630d1010065037806";
    let bytes: Vec<u8> = (0..legacy.len()).step_by(2).map(|i| u8::from_str_radix(&legacy[i..i + 2], 16).unwrap()).collect();
    let (members, frames) = sample_frames();
    let schema = Schema::fleet();
    let ro = roster(&members);
    let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
    let old = codec::decode(&g, members[1], &bytes).expect("a legacy digest decodes");
    let new = codec::decode(&g, members[1], &frames[2]).expect("today's digest decodes");
    assert_eq!(old, new, "the same digest either way");
    assert_eq!(frames[2][1], 7, "digests are sent in the compact form");

    // Twenty members' acks in a group a day old: stamps near each other, far from genesis.
    let ids: Vec<EndpointId> = (0..20).map(EndpointId::from_index).collect();
    let day = GENESIS + 86_400_000;
    let acks: Vec<Ack> = ids.iter().enumerate().map(|(i, m)| {
        let t = day + 3 * i as u64;
        Ack { member: *m, hlc: Hlc::new(t, 0), own_hlc: Hlc::new(t + 40, 0), own_seq: 1_000 + i as u64 }
    }).collect();
    let d = Digest { context: CausalContext::default(), hash: [0; 16], acks };
    let ro = roster(&ids);
    let g = GroupView { schema: &schema, genesis_ms: GENESIS, roster: &ro, limits: Limits::default() };
    let compact = codec::encode_digest(GENESIS, &d);
    assert_eq!(codec::decode(&g, ids[0], &compact), Ok(Frame::Digest(d)));
    println!("20 acks, a day after genesis: {} B", compact.len());
    // The origin table (8 B a member) and the hash, then at most 6 B an ack (the first form
    // took 13: two 5-byte stamps from genesis).
    assert!(compact.len() <= 20 * 8 + 16 + 20 * 6 + 10, "{} B", compact.len());
}
