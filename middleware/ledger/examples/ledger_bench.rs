//! Ledger benchmarks against a plain append-and-fdatasync file in the same run:
//! durable commit rate (unbatched and batched) and recovery time of a large log.
//!
//!     cargo run --release -p spook-ledger --example ledger_bench [-- DELTAS_FOR_RECOVERY]
//!
//! Writes into $SPOOK_BENCH_DIR (default: the system temp dir); the disk decides the numbers.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Instant;

use spook_core::{EndpointId, GroupConfig, GroupId, PersistRequest, RegisterId, Replica, Schema, Value};
use spook_ledger::Ledger;

fn main() {
    let recovery_n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let base = std::env::var_os("SPOOK_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into).join(format!("spook-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let me = EndpointId::from_index(1);
    let cfg = GroupConfig::new(GroupId([1; 16]), Schema::fleet(), 0, vec![me, EndpointId::from_index(2)]);
    let battery = cfg.schema.field_id("battery").unwrap();

    // Batches of `per` one-field deltas, made by a real replica.
    let make = |r: &mut Replica, t: &mut u64, per: usize| -> PersistRequest {
        for _ in 0..per {
            *t += 1;
            r.set(*t, RegisterId((*t % 1000) as u32), battery, Value::F64(*t as f64 / 1e3)).unwrap();
        }
        r.poll_persist().unwrap()
    };

    println!("{:<44} {:>14} {:>16} {:>8}", "durable commits", "spook-ledger", "append+fdatasync", "ratio");
    for (label, total, per) in [("unbatched (1 delta per commit)", 2_000u64, 1usize), ("batched (100 deltas per commit)", 200_000, 100), ("batched (1000 deltas per commit)", 500_000, 1000)] {
        let path = base.join(format!("commit-{per}.spookdb"));
        let mut l = Ledger::open(&path).unwrap();
        let mut r = Replica::new(me, cfg.clone(), 0);
        let mut t = 0;
        let reqs: Vec<PersistRequest> = (0..total / per as u64).map(|_| make(&mut r, &mut t, per)).collect();
        let start = Instant::now();
        for req in &reqs {
            l.persist(&[(&cfg, r.roster(), req)]).unwrap();
        }
        let spook = total as f64 / start.elapsed().as_secs_f64();
        // Baseline: the same encoded records appended to a file, one fdatasync per batch.
        let bytes: Vec<Vec<u8>> = reqs
            .iter()
            .map(|q| q.records.iter().flat_map(|rec| spook_core::codec::encode_record(&cfg.schema, cfg.genesis_ms, rec)).collect())
            .collect();
        let mut f = std::fs::File::create(base.join(format!("raw-{per}.log"))).unwrap();
        let start = Instant::now();
        for b in &bytes {
            f.write_all(b).unwrap();
            f.sync_data().unwrap();
        }
        let raw = total as f64 / start.elapsed().as_secs_f64();
        println!("{label:<44} {:>10.0} d/s {:>12.0} d/s {:>7.2}x", spook, raw, spook / raw);
    }

    // Recovery: a log of `recovery_n` deltas, written in batches of 10,000.
    let path = base.join("recovery.spookdb");
    let mut l = Ledger::open(&path).unwrap();
    let mut r = Replica::new(me, cfg.clone(), 0);
    let mut t = 0;
    let start = Instant::now();
    let mut done = 0;
    while done < recovery_n {
        let per = 10_000.min(recovery_n - done) as usize;
        let req = make(&mut r, &mut t, per);
        l.persist(&[(&cfg, r.roster(), &req)]).unwrap();
        r.handle_persisted(req.id, t);
        done += per as u64;
    }
    eprintln!("wrote {recovery_n} deltas in {:.1} s; file {} MB", start.elapsed().as_secs_f64(), l.file_size().unwrap() / 1_000_000);
    drop(l);
    let start = Instant::now();
    let l = Ledger::open(&path).unwrap();
    let opened = start.elapsed();
    let recs = l.load(&cfg).unwrap();
    let loaded = start.elapsed();
    let back = Replica::restore(me, cfg.clone(), &recs, t);
    let restored = start.elapsed();
    assert_eq!(back.state_hash(), r.state_hash());
    println!(
        "\nrecovery of {recovery_n} deltas: open {:.0} ms, read+decode {:.0} ms, replica restore {:.0} ms, total {:.2} s",
        opened.as_secs_f64() * 1e3,
        (loaded - opened).as_secs_f64() * 1e3,
        (restored - loaded).as_secs_f64() * 1e3,
        restored.as_secs_f64()
    );
    // Baseline: reading the same records from a flat file and decoding them.
    let raw_path = base.join("recovery.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw_path).unwrap());
        for rec in &recs {
            let b = spook_core::codec::encode_record(&cfg.schema, cfg.genesis_ms, rec);
            f.write_all(&(b.len() as u32).to_le_bytes()).unwrap();
            f.write_all(&b).unwrap();
        }
    }
    let start = Instant::now();
    let raw = std::fs::read(&raw_path).unwrap();
    let roster = r.roster().clone();
    let g = spook_core::codec::GroupView { schema: &cfg.schema, genesis_ms: cfg.genesis_ms, roster: &roster, limits: Default::default() };
    let mut pos = 0;
    let mut n = 0;
    while pos < raw.len() {
        let len = u32::from_le_bytes(raw[pos..pos + 4].try_into().unwrap()) as usize;
        spook_core::codec::decode_record(&g, &raw[pos + 4..pos + 4 + len]).unwrap();
        pos += 4 + len;
        n += 1;
    }
    let flat = start.elapsed();
    assert_eq!(n, recs.len());
    println!(
        "baseline: flat file read+decode {:.0} ms; ledger read+decode / flat = {:.2}x",
        flat.as_secs_f64() * 1e3,
        (loaded - opened).as_secs_f64() / flat.as_secs_f64()
    );
    // After compaction the same state recovers from a snapshot.
    let mut l = l;
    let snap = back.snapshot().unwrap();
    let c = l.compact(&cfg, back.roster(), &snap).unwrap();
    l.shrink().unwrap();
    let size = l.file_size().unwrap();
    drop(l);
    let start = Instant::now();
    let l = Ledger::open(&path).unwrap();
    let back2 = Replica::restore(me, cfg.clone(), &l.load(&cfg).unwrap(), t);
    assert_eq!(back2.state_hash(), r.state_hash());
    println!(
        "after compaction ({} -> {} records, file {} KB): recovery {:.1} ms",
        c.before,
        c.after,
        size / 1000,
        start.elapsed().as_secs_f64() * 1e3
    );
    std::fs::remove_dir_all(&base).unwrap();
}
