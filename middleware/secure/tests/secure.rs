//! Handshakes, pairing, pair channels and the group data plane against bad input: every
//! rejection is typed, and nothing rejected is ever returned as plaintext.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use spook_core::GroupId;
use spook_secure::*;

fn allow(ids: &[&Identity]) -> AllowList {
    let mut a = AllowList::default();
    for i in ids {
        a.allow(PeerEntry { id: i.id(), signing: None, name: String::new() });
    }
    a
}

/// An established pair (a initiated, b responded).
fn pair() -> (Identity, Identity, Established, Established) {
    let (a, b) = (Identity::generate(), Identity::generate());
    let (init, hello) = Initiator::start(&a, b.id(), 1_000).unwrap();
    let (at_b, reply) = respond(&b, &allow(&[&a]), &mut HelloGuard::default(), &hello).unwrap();
    let at_a = init.finish(&reply).unwrap();
    (a, b, at_a, at_b)
}

#[test]
fn allowed_peers_handshake_and_talk_both_ways() {
    let (a, b, mut at_a, mut at_b) = pair();
    assert_eq!(at_a.peer, b.id());
    assert_eq!(at_b.peer, a.id());
    assert_eq!(at_a.pair, at_b.pair);
    assert_eq!(at_a.peer_signing, b.signing_public());
    assert_eq!(at_b.peer_signing, a.signing_public());
    assert_eq!(at_a.channel.send_fingerprint(), at_b.channel.recv_fingerprint());
    for i in 0..10u8 {
        let m = at_a.channel.seal(&[i; 40]).unwrap();
        assert_eq!(at_b.channel.open(&m).unwrap(), vec![i; 40]);
        let r = at_b.channel.seal(&[i; 3]).unwrap();
        assert_eq!(at_a.channel.open(&r).unwrap(), vec![i; 3]);
    }
}

#[test]
fn unknown_undecryptable_and_replayed_hellos_get_silence() {
    let (a, b, stranger) = (Identity::generate(), Identity::generate(), Identity::generate());
    let allow_b = allow(&[&a]);
    let mut guard = HelloGuard::default();
    // A stranger who knows b's id but is not on b's allow-list.
    let (_, hello) = Initiator::start(&stranger, b.id(), 1).unwrap();
    assert_eq!(respond(&b, &allow_b, &mut guard, &hello).unwrap_err(), Silent::UnknownPeer(stranger.id()));
    // A hello meant for someone else does not even decrypt.
    let (_, hello) = Initiator::start(&a, stranger.id(), 1).unwrap();
    assert_eq!(respond(&b, &allow_b, &mut guard, &hello).unwrap_err(), Silent::Undecryptable);
    // Garbage and truncations of a valid hello.
    let (_, hello) = Initiator::start(&a, b.id(), 5).unwrap();
    for n in 0..hello.len() {
        let e = respond(&b, &allow_b, &mut guard, &hello[..n]).unwrap_err();
        assert!(matches!(e, Silent::NotAHello | Silent::Undecryptable), "{n}: {e}");
    }
    assert_eq!(respond(&b, &allow_b, &mut guard, &[HELLO; 200]).unwrap_err(), Silent::Undecryptable);
    // The valid hello passes once; the same bytes again are a replay.
    assert!(respond(&b, &allow_b, &mut guard, &hello).is_ok());
    assert_eq!(respond(&b, &allow_b, &mut guard, &hello).unwrap_err(), Silent::ReplayedHello(a.id()));
    // An older timestamp is a replay too; a newer one passes.
    let (_, old) = Initiator::start(&a, b.id(), 4).unwrap();
    assert_eq!(respond(&b, &allow_b, &mut guard, &old).unwrap_err(), Silent::ReplayedHello(a.id()));
    let (_, new) = Initiator::start(&a, b.id(), 6).unwrap();
    assert!(respond(&b, &allow_b, &mut guard, &new).is_ok());
}

#[test]
fn a_changed_signing_key_is_refused_on_both_sides() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let mut allow_b = AllowList::default();
    allow_b.allow(PeerEntry { id: a.id(), signing: Some([9; 32]), name: String::new() });
    let (_, hello) = Initiator::start(&a, b.id(), 1).unwrap();
    assert_eq!(respond(&b, &allow_b, &mut HelloGuard::default(), &hello).unwrap_err(), Silent::SigningKeyChanged(a.id()));
    let (init, hello) = Initiator::start_expecting(&a, b.id(), Some([9; 32]), 2).unwrap();
    let (_, reply) = respond(&b, &allow(&[&a]), &mut HelloGuard::default(), &hello).unwrap();
    assert_eq!(init.finish(&reply).unwrap_err(), HandshakeError::SigningKeyChanged);
}

#[test]
fn reordered_handshake_messages_are_typed_errors() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let (init, hello) = Initiator::start(&a, b.id(), 1).unwrap();
    let (_, reply) = respond(&b, &allow(&[&a]), &mut HelloGuard::default(), &hello).unwrap();
    // A reply handed to a responder, a hello handed to an initiator.
    assert_eq!(respond(&b, &allow(&[&a]), &mut HelloGuard::default(), &reply).unwrap_err(), Silent::NotAHello);
    assert_eq!(init.finish(&hello).unwrap_err(), HandshakeError::UnexpectedMessage(HELLO));
    // A reply from another handshake does not authenticate.
    let (init2, _) = Initiator::start(&a, b.id(), 2).unwrap();
    assert!(matches!(init2.finish(&reply).unwrap_err(), HandshakeError::Noise(_)));
    let (init3, _) = Initiator::start(&a, b.id(), 3).unwrap();
    assert_eq!(init3.finish(&[]).unwrap_err(), HandshakeError::Truncated);
}

#[test]
fn pair_channel_rejects_tampering_replay_truncation_and_old_nonces() {
    let (_, _, mut at_a, mut at_b) = pair();
    let m = at_a.channel.seal(b"key announcement").unwrap();
    for i in 0..m.len() {
        let mut t = m.clone();
        t[i] ^= 0x20;
        let e = at_b.channel.open(&t).unwrap_err();
        assert!(matches!(e, ChannelError::Tampered | ChannelError::NotData), "byte {i}: {e}");
    }
    for n in 0..m.len() {
        let e = at_b.channel.open(&m[..n]).unwrap_err();
        assert!(matches!(e, ChannelError::Truncated | ChannelError::Tampered), "truncated to {n}: {e}");
    }
    assert_eq!(at_b.channel.open(&m).unwrap(), b"key announcement");
    assert_eq!(at_b.channel.open(&m).unwrap_err(), ChannelError::Replayed(0));
    // Out of order within the window is fine; older than the window is not.
    let msgs: Vec<Vec<u8>> = (0..3000).map(|i| at_a.channel.seal(&[i as u8]).unwrap()).collect();
    assert_eq!(at_b.channel.open(&msgs[2999]).unwrap(), vec![(2999 % 256) as u8]);
    assert!(at_b.channel.open(&msgs[2999 - 2000]).is_ok(), "2,000 behind is inside the window");
    assert_eq!(at_b.channel.open(&msgs[10]).unwrap_err(), ChannelError::TooOld(11));
    assert_eq!(PairChannel::nonce_of(&msgs[5]), Some(6));
}

#[test]
fn pairing_inside_the_window_yields_entries_that_let_ik_pass() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let w = PairingWindow::open_for(1_000, 60_000);
    let (mut pa, m1) = Pairing::initiate(&a, "alpha", w, 1_001).unwrap();
    let (mut pb, m2) = Pairing::respond(&b, "bravo", w, 1_002, &m1).unwrap();
    assert!(pb.challenge().is_none(), "no code before the handshake completes");
    let m3 = pa.handle(&m2, 1_003).unwrap().unwrap();
    assert!(pb.handle(&m3, 1_004).unwrap().is_none());
    let (ca, cb) = (pa.challenge().unwrap(), pb.challenge().unwrap());
    assert_eq!(ca, cb);
    assert_eq!(ca.len(), 6);
    let at_a = pa.confirm(&cb, 1_005).unwrap();
    let at_b = pb.confirm(&ca, 1_005).unwrap();
    assert_eq!((at_a.id, at_a.signing, at_a.name.as_str()), (b.id(), Some(b.signing_public()), "bravo"));
    assert_eq!((at_b.id, at_b.signing, at_b.name.as_str()), (a.id(), Some(a.signing_public()), "alpha"));
    // The entries are what IK needs.
    let mut allow_b = AllowList::default();
    allow_b.allow(at_b);
    let (init, hello) = Initiator::start_expecting(&a, at_a.id, at_a.signing, 2_000).unwrap();
    let (_, reply) = respond(&b, &allow_b, &mut HelloGuard::default(), &hello).unwrap();
    init.finish(&reply).unwrap();
}

#[test]
fn pairing_outside_its_window_or_with_other_codes_is_refused() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let w = PairingWindow::open_for(1_000, 10_000);
    assert_eq!(Pairing::initiate(&a, "a", w, 999).unwrap_err(), PairingError::WindowClosed);
    assert_eq!(Pairing::initiate(&a, "a", w, 11_000).unwrap_err(), PairingError::WindowClosed);
    let (mut pa, m1) = Pairing::initiate(&a, "a", w, 1_000).unwrap();
    assert_eq!(Pairing::respond(&b, "b", w, 20_000, &m1).unwrap_err(), PairingError::WindowClosed);
    let (mut pb, m2) = Pairing::respond(&b, "b", w, 2_000, &m1).unwrap();
    let m3 = pa.handle(&m2, 3_000).unwrap().unwrap();
    // A late third message.
    assert_eq!(pb.handle(&m3, 12_000).unwrap_err(), PairingError::WindowClosed);
    pb.handle(&m3, 4_000).unwrap();
    // Reordered messages.
    assert_eq!(pb.handle(&m3, 4_001).unwrap_err(), PairingError::UnexpectedMessage(PAIR3));
    assert_eq!(Pairing::respond(&b, "b", w, 2_000, &m2).unwrap_err(), PairingError::UnexpectedMessage(PAIR2));
    // Someone in the middle would show other codes.
    let code = pa.challenge().unwrap();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    assert_eq!(pa.confirm(&wrong, 5_000).unwrap_err(), PairingError::ChallengeMismatch);
    assert_eq!(pb.confirm(&code, 11_500).unwrap_err(), PairingError::WindowClosed);
}

fn group_of(ids: &[&Identity], cfg: GroupCrypto) -> Vec<GroupKeys> {
    let g = GroupId([3; 16]);
    let mut keys: Vec<GroupKeys> = ids.iter().map(|i| GroupKeys::new(g, i.id(), 0, cfg, &mut rand_core::OsRng)).collect();
    let anns: Vec<KeyAnnouncement> = keys.iter().map(GroupKeys::announcement).collect();
    for (i, k) in keys.iter_mut().enumerate() {
        for (j, a) in anns.iter().enumerate() {
            if i != j {
                k.install(ids[j].id(), a.clone(), ids[j].signing_public(), 0).unwrap();
            }
        }
    }
    keys
}

#[test]
fn group_frames_reject_tampering_replay_truncation_and_wrong_salt() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let mut k = group_of(&[&a, &b], GroupCrypto::default());
    let frame = b"a core frame: one delta".to_vec();
    let wire = k[0].seal(&a, &frame).unwrap();
    // Flip each byte: the header (key id, salt, counter) or the body.
    for i in 0..wire.len() {
        let mut t = wire.clone();
        t[i] ^= 0x01;
        let e = k[1].open(&t, 1).unwrap_err();
        let ok = match i {
            0..=3 => matches!(e, OpenError::UnknownKey(_)),
            4..=7 => matches!(e, OpenError::WrongSalt { .. }),
            _ => e == OpenError::Tampered,
        };
        assert!(ok, "byte {i}: {e}");
    }
    for n in 0..wire.len() {
        let e = k[1].open(&wire[..n], 1).unwrap_err();
        assert!(matches!(e, OpenError::Truncated | OpenError::Tampered), "truncated to {n}: {e}");
    }
    let got = k[1].open(&wire, 1).unwrap();
    assert_eq!((got.origin, got.frame), (a.id(), frame.clone()));
    assert_eq!(k[1].open(&wire, 1).unwrap_err(), OpenError::Replayed(got.header.counter));
    // A retransmission is a new counter, accepted.
    let again = k[0].seal(&a, &frame).unwrap();
    assert_eq!(k[1].open(&again, 1).unwrap().header.counter, got.header.counter + 1);
}

#[test]
fn a_member_cannot_forge_another_members_frames() {
    let (a, b, c) = (Identity::generate(), Identity::generate(), Identity::generate());
    let mut k = group_of(&[&a, &b, &c], GroupCrypto::default());
    // b knows a's sender key (every member does) and builds a frame under it, signed by b.
    let a_ann = k[0].announcement();
    let forged = forge(&a_ann, &b, b"transfer 100 to b", 7);
    assert_eq!(k[2].open(&forged, 1).unwrap_err(), OpenError::BadSignature);
    // The same construction signed by a is accepted: the check is the signature alone.
    let genuine = forge(&a_ann, &a, b"transfer 100 to b", 8);
    assert_eq!(k[2].open(&genuine, 1).unwrap().origin, a.id());
    // A key announced by someone else than its origin is refused.
    assert_eq!(k[2].install(b.id(), a_ann, a.signing_public(), 0).unwrap_err(), KeyError::NotOwnKey);
}

/// Seal a frame under `key` as its owner would, but signed by `signer`.
fn forge(key: &KeyAnnouncement, signer: &Identity, frame: &[u8], counter: u64) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let mut h = Vec::new();
    h.extend_from_slice(&key.key_id.to_le_bytes());
    h.extend_from_slice(&key.salt.to_le_bytes());
    h.extend_from_slice(&counter.to_le_bytes());
    let mut signed = b"spook frame v1".to_vec();
    signed.extend_from_slice(&key.group.0);
    signed.extend_from_slice(&h);
    signed.extend_from_slice(frame);
    let mut pt = vec![1u8];
    pt.extend_from_slice(frame);
    pt.extend_from_slice(&signer.sign(&signed));
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&key.salt.to_le_bytes());
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    let cipher = aes_gcm::Aes256Gcm::new(&key.key.into());
    let ct = cipher.encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &pt, aad: &h }).unwrap();
    h.extend_from_slice(&ct);
    h
}

#[test]
fn trusted_members_skip_signatures_and_others_refuse_unsigned_frames() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let trusted = GroupCrypto { trusted_members: true, grace_ms: 1_000 };
    let mut k = group_of(&[&a, &b], trusted);
    let wire = k[0].seal(&a, b"pose").unwrap();
    let signed_len = group_of(&[&a, &b], GroupCrypto::default())[0].seal(&a, b"pose").unwrap().len();
    assert_eq!(signed_len - wire.len(), 64, "one signature per frame is the difference");
    assert_eq!(k[1].open(&wire, 1).unwrap().frame, b"pose");
    // A receiver that requires signatures refuses the same frame.
    let g = GroupId([3; 16]);
    let mut strict = GroupKeys::new(g, b.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    strict.install(a.id(), k[0].announcement(), a.signing_public(), 0).unwrap();
    assert_eq!(strict.open(&wire, 1).unwrap_err(), OpenError::Unsigned);
}

#[test]
fn rotation_locks_out_a_pruned_member_and_old_keys_expire_after_grace() {
    let (a, b, c) = (Identity::generate(), Identity::generate(), Identity::generate());
    let cfg = GroupCrypto { trusted_members: false, grace_ms: 5_000 };
    let mut k = group_of(&[&a, &b, &c], cfg);
    let before = k[0].seal(&a, b"before").unwrap();
    // c is pruned: a rotates and hands the new key to b only.
    let fp_old = k[0].own_fingerprint();
    let ann = k[0].rotate(1, &mut rand_core::OsRng);
    assert_ne!(k[0].own_fingerprint(), fp_old);
    k[1].install(a.id(), ann, a.signing_public(), 100).unwrap();
    k[1].remove_member(&c.id());
    let after = k[0].seal(&a, b"after the prune").unwrap();
    assert!(matches!(k[2].open(&after, 200).unwrap_err(), OpenError::UnknownKey(_)), "the pruned member cannot read what follows");
    assert_eq!(k[1].open(&after, 200).unwrap().frame, b"after the prune");
    // The old epoch is accepted within the grace period, then refused.
    let late = before.clone();
    assert_eq!(k[1].open(&late, 4_000).unwrap().frame, b"before");
    let mut k2 = group_of(&[&a, &b], cfg);
    let old = k2[0].seal(&a, b"old").unwrap();
    let ann = k2[0].rotate(1, &mut rand_core::OsRng);
    k2[1].install(a.id(), ann, a.signing_public(), 1_000).unwrap();
    assert!(matches!(k2[1].open(&old, 6_001).unwrap_err(), OpenError::KeyExpired(_)));
    // A frame under the new key but with the old key's salt.
    let new = k2[0].seal(&a, b"new").unwrap();
    let mut wrong = new.clone();
    wrong[4..8].copy_from_slice(&old[4..8]);
    assert!(matches!(k2[1].open(&wrong, 1_001).unwrap_err(), OpenError::WrongSalt { .. }));
}

#[test]
fn sealed_frames_carry_no_plaintext_and_a_fresh_start_uses_a_fresh_key() {
    let a = Identity::generate();
    let g = GroupId([1; 16]);
    let marker = b"REGISTER-battery-VALUE-0.8125";
    let mut k1 = GroupKeys::new(g, a.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    let wire = k1.seal(&a, marker).unwrap();
    assert!(!wire.windows(marker.len()).any(|w| w == marker));
    assert!(!wire.windows(6).any(|w| w == b"REGIST"));
    let k2 = GroupKeys::new(g, a.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    assert_ne!(k1.own_fingerprint(), k2.own_fingerprint(), "a restart never resumes a sending key");
    assert_ne!(k1.announcement().key_id, k2.announcement().key_id);
    // No field of the clear header repeats across restarts or tells the start time (the
    // epoch, here a start time in seconds, is never in clear).
    let start = 1_764_000_000u32;
    let mut k3 = GroupKeys::new(g, a.id(), start, GroupCrypto::default(), &mut rand_core::OsRng);
    let (h1, h3) = (Header::parse(&wire).unwrap(), Header::parse(&k3.seal(&a, marker).unwrap()).unwrap());
    assert!(h1.key_id != h3.key_id && h1.salt != h3.salt && h1.counter != h3.counter, "{h1:?} {h3:?}");
    assert!(!k3.seal(&a, marker).unwrap()[..Header::LEN].windows(4).any(|w| w == start.to_le_bytes()));
}

#[test]
fn identities_round_trip_and_damaged_ones_are_refused() {
    let a = Identity::generate();
    let b = a.to_bytes();
    assert_eq!(Identity::from_bytes(&b).unwrap().id(), a.id());
    assert_eq!(Identity::from_bytes(&b[..95]).unwrap_err(), IdentityError::Length(95));
    let mut bad = b.clone();
    bad[40] ^= 1;
    assert_eq!(Identity::from_bytes(&bad).unwrap_err(), IdentityError::Mismatch);
    assert!(KeyAnnouncement::decode(&[0; 10]).is_err());
    let ann = GroupKeys::new(GroupId([1; 16]), a.id(), 3, GroupCrypto::default(), &mut rand_core::OsRng).announcement();
    assert_eq!(KeyAnnouncement::decode(&ann.encode()).unwrap(), ann);
}

#[test]
fn group_frames_out_of_order_within_the_window_are_accepted_older_ones_too_old() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let mut k = group_of(&[&a, &b], GroupCrypto { trusted_members: true, grace_ms: 0 });
    let wires: Vec<Vec<u8>> = (0..3_000u32).map(|i| k[0].seal(&a, &i.to_le_bytes()).unwrap()).collect();
    // Counters start at a random point and count up from there.
    let base = Header::parse(&wires[0]).unwrap().counter;
    assert_eq!(k[1].open(&wires[2_999], 1).unwrap().frame, 2_999u32.to_le_bytes());
    for i in [2_998, 1_500, 2_999 - 2_047, 2_000] {
        assert_eq!(k[1].open(&wires[i], 1).unwrap().header.counter, base + i as u64, "{i} is inside the window");
    }
    assert_eq!(k[1].open(&wires[1_500], 1).unwrap_err(), OpenError::Replayed(base + 1_500));
    assert_eq!(k[1].open(&wires[100], 1).unwrap_err(), OpenError::TooOld(base + 100));
    assert_eq!(k[1].open(&wires[2_999 - 2_049], 1).unwrap_err(), OpenError::TooOld(base + 950));
}

#[test]
fn stale_or_foreign_key_announcements_are_refused() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let mut k = group_of(&[&a, &b], GroupCrypto::default());
    let epoch0 = k[0].announcement();
    let epoch1 = k[0].rotate(1, &mut rand_core::OsRng);
    k[1].install(a.id(), epoch1.clone(), a.signing_public(), 10).unwrap();
    // Installing the same key again is harmless; an older epoch (a delayed announcement) is not.
    k[1].install(a.id(), epoch1, a.signing_public(), 11).unwrap();
    let mut older = epoch0.clone();
    older.key_id ^= 0x5a5a;
    assert_eq!(k[1].install(a.id(), older, a.signing_public(), 12).unwrap_err(), KeyError::StaleEpoch);
    // The current key still works: the stale announcement retired nothing.
    let wire = k[0].seal(&a, b"still epoch 1").unwrap();
    assert_eq!(k[1].open(&wire, 1_000_000).unwrap().frame, b"still epoch 1");
    let mut other_group = epoch0;
    other_group.group = GroupId([9; 16]);
    assert_eq!(k[1].install(a.id(), other_group, a.signing_public(), 13).unwrap_err(), KeyError::WrongGroup);
    let mut bytes = k[0].announcement().encode();
    bytes.push(0);
    assert_eq!(KeyAnnouncement::decode(&bytes).unwrap_err(), KeyError::Malformed("length"));
}

#[test]
fn a_frame_signature_does_not_carry_over_to_another_group() {
    // b is in two groups with a and re-seals a's signed frame from group 1 into group 2 under a
    // key b made up for a (as if a's announcement had been forged): the signature binds the group.
    let (a, b) = (Identity::generate(), Identity::generate());
    let (g1, g2) = (GroupId([1; 16]), GroupId([2; 16]));
    let mut a1 = GroupKeys::new(g1, a.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    let mut b2 = GroupKeys::new(g2, b.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    let mut fake = a1.announcement();
    fake.group = g2;
    b2.install(a.id(), fake.clone(), a.signing_public(), 0).unwrap();
    let wire = a1.seal(&a, b"group 1 only").unwrap();
    // Decrypt with a's group-1 key and re-encrypt unchanged under the same key for group 2.
    let mut g1_reader = GroupKeys::new(g1, b.id(), 0, GroupCrypto::default(), &mut rand_core::OsRng);
    g1_reader.install(a.id(), a1.announcement(), a.signing_public(), 0).unwrap();
    assert_eq!(g1_reader.open(&wire, 1).unwrap().frame, b"group 1 only");
    assert_eq!(b2.open(&wire, 1).unwrap_err(), OpenError::BadSignature);
}

#[test]
fn garbage_never_panics_and_is_never_accepted() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let (_, _, _, mut at_b) = pair();
    let mut k = group_of(&[&a, &b], GroupCrypto::default());
    let mut w = PairingWindow::open_for(0, 1_000);
    w.closes_at_ms = u64::MAX;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..300usize {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for first in [HELLO, REPLY, DATA, PAIR1, PAIR2, PAIR3] {
            let mut m = junk.clone();
            if let Some(f) = m.first_mut() {
                *f = first;
            }
            assert!(respond(&b, &allow(&[&a]), &mut HelloGuard::default(), &m).is_err());
            assert!(at_b.channel.open(&m).is_err());
            assert!(k[1].open(&m, 1).is_err());
            let (init, _) = Initiator::start(&a, b.id(), 1).unwrap();
            assert!(init.finish(&m).is_err());
            let _ = Pairing::respond(&b, "b", w, 1, &m); // may legitimately answer a PAIR1
            let (mut p, _) = Pairing::initiate(&a, "a", w, 1).unwrap();
            assert!(p.handle(&m, 2).is_err());
        }
    }
}

#[test]
fn signatures_with_prepared_nonces_are_standard_fresh_and_each_nonce_signs_once() {
    use ed25519_dalek::{Signature, VerifyingKey};
    let (a, b) = (Identity::generate(), Identity::generate());
    let key = VerifyingKey::from_bytes(&a.signing_public()).unwrap();
    assert_eq!(a.prepare_nonces(usize::MAX), NONCE_POOL, "the pool is bounded");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..NONCE_POOL {
        let msg = format!("frame {i}");
        let sig = a.sign(msg.as_bytes());
        assert_eq!(a.prepare_nonces(0), NONCE_POOL - 1 - i, "one nonce per signature");
        // Standard Ed25519 (strict verification), bound to the message and the key.
        assert!(key.verify_strict(msg.as_bytes(), &Signature::from_bytes(&sig)).is_ok(), "signature {i}");
        assert!(key.verify_strict(b"another frame", &Signature::from_bytes(&sig)).is_err());
        let other = VerifyingKey::from_bytes(&b.signing_public()).unwrap();
        assert!(other.verify_strict(msg.as_bytes(), &Signature::from_bytes(&sig)).is_err());
        // R (the nonce's point) never repeats.
        assert!(seen.insert(sig[..32].to_vec()), "nonce reused at signature {i}");
    }
    // With the pool empty, signing falls back to RFC 8032's deterministic nonce.
    assert_eq!(a.sign(b"x"), a.sign(b"x"));
    // The group data plane: a frame signed with a prepared nonce opens, a forged one does not.
    let mut k = group_of(&[&a, &b], GroupCrypto::default());
    a.prepare_nonces(2);
    let wire = k[0].seal(&a, b"pose of drone 3").unwrap();
    assert_eq!(k[1].open(&wire, 1).unwrap().frame, b"pose of drone 3");
    b.prepare_nonces(1);
    let next = Header::parse(&wire).unwrap().counter + 1;
    let forged = forge(&k[0].announcement(), &b, b"pose of drone 3", next);
    assert_eq!(k[1].open(&forged, 1).unwrap_err(), OpenError::BadSignature);
}
