//! A serial pair that split long enough for each side to promise, in a membership consensus,
//! to vouch no further for the other (and could not decide it without the other), then both
//! restart: once reconnected the open epoch must still be closed, so the stability frontier
//! moves again and transactions commit.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::*;
use spook_core::*;

#[test]
fn a_serial_pair_that_both_restart_with_an_open_epoch_commits_again() {
    let ids = origins(2);
    let cfg = serial_config(&ids);
    let mut now = GENESIS + 1_000;
    let mut disks = vec![Vec::new(), Vec::new()];
    let mut rs: Vec<Replica> = ids.iter().map(|i| Replica::new(*i, cfg.clone(), now)).collect();
    rs[0].submit(now, claim(ids[0], 1, 1, "a", now + 5_000)).unwrap();
    rs[1].submit(now, claim(ids[1], 1, 2, "b", now + 5_000)).unwrap();
    run_with_disks(&mut rs, Some(&mut disks), &mut now, 100, 20, &mut Vec::new());
    for r in &rs {
        assert!(r.serial().cell(RegisterId(1), OWNER).is_some(), "connected, the pair commits");
    }

    // Split: each side alone decoheres the other and promises to vouch no further for it;
    // with n = 2 nothing is decided.
    let (mut a, mut b) = (vec![rs.remove(0)], vec![rs.remove(0)]);
    let (mut da, mut db) = (vec![std::mem::take(&mut disks[0])], vec![std::mem::take(&mut disks[1])]);
    let mut now_b = now;
    for k in 0..5u32 {
        a[0].submit(now, claim(ids[0], 2 + u64::from(k), 10 + k, "a", now + 60_000)).unwrap();
        b[0].submit(now_b, claim(ids[1], 2 + u64::from(k), 20 + k, "b", now_b + 60_000)).unwrap();
        run_with_disks(&mut a, Some(&mut da), &mut now, 100, 20, &mut Vec::new());
        run_with_disks(&mut b, Some(&mut db), &mut now_b, 100, 20, &mut Vec::new());
    }
    assert_eq!(a[0].decisions().len(), 0, "a pair cannot decide a removal alone");

    // Both crash and restart from what was durable, then reconnect.
    now = now.max(now_b) + 100;
    let mut rs = vec![
        Replica::restore(ids[0], cfg.clone(), &da[0], now),
        Replica::restore(ids[1], cfg.clone(), &db[0], now),
    ];
    let mut disks = vec![da.remove(0), db.remove(0)];
    let late = claim(ids[0], 100, 99, "late", now + 120_000);
    rs[0].submit(now, late.clone()).unwrap();
    run_with_disks(&mut rs, Some(&mut disks), &mut now, 100, 600, &mut Vec::new());
    for r in &rs {
        assert!(
            matches!(r.serial().outcome(&late.id), Some(TxnOutcome::Committed { .. })),
            "after both restart and reconnect the pair commits again: {}",
            r.summary()
        );
        assert_eq!(r.serial().hash(), rs[0].serial().hash());
    }
}
