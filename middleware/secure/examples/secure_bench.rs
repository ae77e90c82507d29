//! Secure-channel benchmarks, each against a baseline in the same run:
//! handshake time (IK, XX) against one X25519 Diffie-Hellman; group frame seal+open for 64 B
//! and 1 KB frames (signed, and `trusted-members` unsigned) against bare AES-256-GCM of the
//! same bytes; bytes of overhead per frame; a frame's signature with a nonce made ahead of time
//! against RFC 8032 signing.
//!
//!     cargo run --release -p spook-secure --example secure_bench
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use spook_core::GroupId;
use spook_secure::*;

fn per_op(n: u32, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / f64::from(n)
}

fn main() {
    let (a, b) = (Identity::generate(), Identity::generate());
    let mut allow_b = AllowList::default();
    allow_b.allow(PeerEntry { id: a.id(), signing: None, name: String::new() });
    let mut ts = 0u64;
    let ik = per_op(2_000, &mut || {
        ts += 1;
        let (init, hello) = Initiator::start(&a, b.id(), ts).unwrap();
        let (_, reply) = respond(&b, &allow_b, &mut HelloGuard::default(), &hello).unwrap();
        init.finish(&reply).unwrap();
    });
    let w = PairingWindow::open_for(0, u64::MAX);
    let xx = per_op(2_000, &mut || {
        let (mut pa, m1) = Pairing::initiate(&a, "a", w, 1).unwrap();
        let (mut pb, m2) = Pairing::respond(&b, "b", w, 1, &m1).unwrap();
        let m3 = pa.handle(&m2, 1).unwrap().unwrap();
        pb.handle(&m3, 1).unwrap();
    });
    let sa = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
    let pb = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng));
    let dh = per_op(20_000, &mut || {
        std::hint::black_box(sa.diffie_hellman(&pb));
    });
    println!("handshake (both sides, in one process)      time       per X25519 DH   ratio");
    println!("IK  (pair formation)                    {:>8.1} us   {:>8.1} us     {:>5.1}x", ik * 1e6, dh * 1e6, ik / dh);
    println!("XX  (pairing ceremony)                  {:>8.1} us   {:>8.1} us     {:>5.1}x", xx * 1e6, dh * 1e6, xx / dh);

    let g = GroupId([1; 16]);
    println!("\ngroup frame seal+open          frames/s      MB/s   bare AES-256-GCM frames/s   ratio   overhead B/frame");
    for size in [64usize, 1024] {
        let frame = vec![0x5a; size];
        for (label, trusted) in [("signed (default)", false), ("trusted-members", true)] {
            let cfg = GroupCrypto { trusted_members: trusted, grace_ms: 10_000 };
            let mut ka = GroupKeys::new(g, a.id(), 0, cfg, &mut rand_core::OsRng);
            let mut kb = GroupKeys::new(g, b.id(), 0, cfg, &mut rand_core::OsRng);
            kb.install(a.id(), ka.announcement(), a.signing_public(), 0).unwrap();
            let mut overhead = 0;
            let t = per_op(20_000, &mut || {
                let wire = ka.seal(&a, &frame).unwrap();
                overhead = wire.len() - frame.len();
                std::hint::black_box(kb.open(&wire, 1).unwrap());
            });
            // Baseline: the same bytes through bare AES-256-GCM with a 16-byte AAD, no header,
            // no signature, no replay window.
            let key = [7u8; 32];
            let c = aes_gcm::Aes256Gcm::new(&key.into());
            let mut n = 0u64;
            let base = per_op(20_000, &mut || {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_le_bytes());
                let ct = c.encrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &frame, aad: &[0u8; 16] }).unwrap();
                std::hint::black_box(c.decrypt(aes_gcm::Nonce::from_slice(&nonce), Payload { msg: &ct, aad: &[0u8; 16] }).unwrap());
            });
            println!(
                "{size:>5} B {label:<18} {:>10.0} {:>9.1} {:>20.0}   {:>6.1}x   {overhead:>5}",
                1.0 / t,
                size as f64 / t / 1e6,
                1.0 / base,
                t / base,
            );
        }
    }
    // The signature alone: what a sealing node pays on its write path, with and without a
    // nonce made ahead of time (an idle node keeps some ready), against RFC 8032 signing.
    let frame = vec![0x5a; 64];
    let det = per_op(5_000, &mut || {
        std::hint::black_box(a.sign(&frame));
    });
    let (mut spent, mut n) = (std::time::Duration::ZERO, 0u32);
    for _ in 0..80 {
        let ready = a.prepare_nonces(NONCE_POOL);
        let t = Instant::now();
        for _ in 0..ready {
            std::hint::black_box(a.sign(&frame));
        }
        spent += t.elapsed();
        n += ready as u32;
    }
    let fast = spent.as_secs_f64() / f64::from(n);
    let prep = per_op(2_000, &mut || {
        a.prepare_nonces(1);
        std::hint::black_box(a.sign(&frame));
    });
    let key = ed25519_dalek::VerifyingKey::from_bytes(&a.signing_public()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&a.sign(&frame));
    let verify = per_op(5_000, &mut || {
        assert!(key.verify_strict(std::hint::black_box(&frame), &sig).is_ok());
    });
    println!("
Ed25519 on a 64 B frame                 time   vs RFC 8032 signing");
    println!("sign, RFC 8032 (deterministic nonce) {:>8.1} us      1.0x", det * 1e6);
    println!("sign, nonce made ahead of time       {:>8.1} us   {:>7.2}x", fast * 1e6, fast / det);
    println!("making a nonce, then signing         {:>8.1} us   {:>7.2}x", prep * 1e6, prep / det);
    println!("verify (receiver)                    {:>8.1} us   {:>7.2}x", verify * 1e6, verify / det);

    let (_, _, mut at_a, mut at_b) = {
        let (init, hello) = Initiator::start(&a, b.id(), u64::MAX / 2).unwrap();
        let (eb, reply) = respond(&b, &allow_b, &mut HelloGuard::default(), &hello).unwrap();
        ((), (), init.finish(&reply).unwrap(), eb)
    };
    let msg = vec![1u8; 89];
    let t = per_op(50_000, &mut || {
        let m = at_a.channel.seal(&msg).unwrap();
        std::hint::black_box(at_b.channel.open(&m).unwrap());
    });
    println!("\npair channel (key announcements, 89 B): {:.0} messages/s, overhead {} B", 1.0 / t, at_a.channel.seal(&msg).unwrap().len() - msg.len());
}
