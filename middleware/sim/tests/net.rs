//! The simulated group that hosts application code (`spook_sim::net`): determinism, watches
//! with bounded memory, crashes and bad input, through the `GroupApi` agents use.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use spook_core::api::{Event, Fields, GroupApi, WatchStream};
use spook_core::{GroupKind, RegisterId, Schema, Value, View};
use spook_sim::net::{NetConfig, SimError, SimNet, WATCH_QUEUE};

/// A last-writer-wins field of the fleet schema.
const X: &str = "pose.translation.x";

fn fields(x: f64) -> Fields {
    Fields::from([(X.to_string(), Value::F64(x))])
}

/// Each member writes its position every 50 ms for 2 s, under faults.
fn writers(seed: u64) -> SimNet {
    let cfg = NetConfig { seed, loss: 0.2, dup: 0.1, reorder: 0.2, delay_ms: (1, 60), skew_ms: 150, step_ms: 1, persist_ms: (1, 5) };
    let mut net = SimNet::new(cfg, Schema::fleet(), GroupKind::Convergent, 4);
    for i in 0..4 {
        let g = net.group(i);
        net.spawn(i, async move {
            for k in 0..40u32 {
                g.write(RegisterId(i as u32), fields(f64::from(k))).await.unwrap();
                g.sleep_ms(50).await;
            }
        });
    }
    net
}

#[test]
fn a_run_is_a_pure_function_of_its_seed() {
    let run = |seed| {
        let mut net = writers(seed);
        assert!(net.run_until(120_000, |n| n.agents() == 0 && n.converged()), "seed {seed}: no convergence");
        (net.with_replica(0, |r| r.state_hash()).unwrap(), net.stats(), net.now_ms())
    };
    for seed in [1, 2, 3] {
        println!("seed {seed}");
        let (a, b) = (run(seed), run(seed));
        assert_eq!(a, b, "seed {seed}: two runs differ");
    }
    assert_ne!(run(1).1, run(2).1, "different seeds draw different faults");
}

#[test]
fn a_watch_that_is_not_read_lags_with_bounded_memory_then_shows_each_register_as_it_is() {
    let mut net = SimNet::new(NetConfig::default(), Schema::fleet(), GroupKind::Convergent, 2);
    let (writer, reader) = (net.group(0), net.group(1));
    let seen: Arc<Mutex<Vec<Event>>> = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let regs = 40u32;
    let rounds = (WATCH_QUEUE as u32 / regs) * 3;
    net.spawn(1, async move {
        let mut w = reader.watch(View::Pending).await.unwrap();
        // Not read while the writer runs.
        reader.sleep_ms(u64::from(rounds) * 10 + 2_000).await;
        while let Some(e) = w.next().await {
            let e = e.unwrap();
            let stop = matches!(&e, Event::Change(c) if c.snapshot && c.register == RegisterId(regs - 1));
            out.lock().unwrap().push(e);
            if stop {
                return;
            }
        }
    });
    net.spawn(0, async move {
        for k in 0..rounds {
            for r in 0..regs {
                writer.write(RegisterId(r), fields(f64::from(k * 1000 + r))).await.unwrap();
            }
            writer.sleep_ms(10).await;
        }
    });
    assert!(net.run_until(60_000, |n| n.agents() == 0), "the reader did not finish");
    let seen = seen.lock().unwrap();
    let lag = seen.iter().position(|e| matches!(e, Event::Lagged(_))).expect("a Lagged event");
    assert!(lag <= WATCH_QUEUE, "at most a queue's worth before the lag notice: {lag}");
    let Event::Lagged(missed) = seen[lag] else { unreachable!() };
    assert!(missed > 0);
    let snapshots: Vec<_> = seen[lag + 1..].iter().filter_map(|e| if let Event::Change(c) = e { Some(c) } else { None }).collect();
    assert_eq!(snapshots.len(), regs as usize, "each register once after the lag");
    for c in snapshots {
        assert!(c.snapshot);
        assert_eq!(c.fields[X], Value::F64(f64::from((rounds - 1) * 1000 + c.register.0)), "the newest value");
    }
}

#[test]
fn a_crash_stops_the_members_agents_and_watches_and_a_restart_recovers_from_its_disk() {
    let mut net = SimNet::new(NetConfig { seed: 5, loss: 0.1, ..NetConfig::default() }, Schema::fleet(), GroupKind::Convergent, 3);
    let g = net.group(2);
    let ended = Arc::new(Mutex::new(None));
    let (out, w_group) = (ended.clone(), net.group(2));
    net.spawn(2, async move {
        for k in 0..1_000u32 {
            g.write(RegisterId(9), fields(f64::from(k))).await.unwrap();
            g.sleep_ms(10).await;
        }
    });
    // A watch held outside the member's agents (as a test holds it) ends when it crashes.
    net.spawn(0, async move {
        let mut w = w_group.watch(View::Pending).await.unwrap();
        let end = loop {
            match w.next().await {
                Some(Ok(_)) => {}
                end => break end,
            }
        };
        // The end says why, once, and then the watch is over.
        *out.lock().unwrap() = Some(matches!(end, Some(Err(SimError::Down(2)))) && w.next().await.is_none());
    });
    net.run_for(2_000);
    net.crash(2);
    assert_eq!(net.agents(), 1, "the writer on member 2 is gone, the watcher on member 0 is not");
    net.run_for(10);
    assert_eq!(*ended.lock().unwrap(), Some(true), "the watch on the crashed member ended with Down(2), then None");
    let down = net.group(2);
    let probe = Arc::new(Mutex::new(None));
    let p = probe.clone();
    net.spawn(0, async move {
        *p.lock().unwrap() = Some(down.read(RegisterId(9), View::Pending).await);
    });
    net.run_for(10);
    assert_eq!(probe.lock().unwrap().take(), Some(Err(SimError::Down(2))));
    net.run_for(1_000);
    net.restart(2);
    assert!(net.run_until(60_000, SimNet::converged), "the restarted member catches up");
    let v = net.with_replica(2, |r| r.get(View::Committed, RegisterId(9), r.schema().field_id(X).unwrap())).unwrap();
    assert!(matches!(v, Some(Value::F64(x)) if x >= 150.0), "its own durable writes survived: {v:?}");
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_writes_nothing() {
    let mut net = SimNet::new(NetConfig::default(), Schema::fleet(), GroupKind::Convergent, 2);
    let g = net.group(0);
    let results = Arc::new(Mutex::new(Vec::new()));
    let out = results.clone();
    net.spawn(0, async move {
        let before = g.read(RegisterId(1), View::Pending).await.unwrap();
        let r = vec![
            g.write(RegisterId(1), Fields::from([("colour".to_string(), Value::Str("red".into()))])).await,
            g.write(RegisterId(1), Fields::from([("battery".to_string(), Value::Str("full".into()))])).await,
            g.write(RegisterId(1), Fields::from([("pose.rotation".to_string(), Value::Quat([2.0, 0.0, 0.0, 0.0]))])).await,
            g.write(RegisterId(1), Fields::new()).await,
            g.submit(spook_core::api::TxSpec::new().set(RegisterId(1), "owner", "me")).await,
        ];
        let after = g.read(RegisterId(1), View::Pending).await.unwrap();
        out.lock().unwrap().push((r, before == after));
    });
    net.run_for(10);
    let results = results.lock().unwrap();
    let (r, unchanged) = &results[0];
    assert!(matches!(&r[0], Err(SimError::BadValue(e)) if e.field == "colour"), "{:?}", r[0]);
    assert!(matches!(&r[1], Err(SimError::BadValue(e)) if e.field == "battery"), "{:?}", r[1]);
    assert!(matches!(&r[2], Err(SimError::BadValue(e)) if e.expected.contains("unit quaternion")), "{:?}", r[2]);
    assert!(matches!(&r[3], Err(SimError::Write(spook_core::WriteError::Empty))), "{:?}", r[3]);
    assert!(matches!(&r[4], Err(SimError::Write(spook_core::WriteError::NotSerial))), "a transaction in a convergent group: {:?}", r[4]);
    assert!(unchanged, "nothing was written");
}

#[test]
fn each_member_reads_its_own_skewed_clock() {
    let net = SimNet::new(NetConfig { seed: 3, skew_ms: 500, ..NetConfig::default() }, Schema::fleet(), GroupKind::Convergent, 5);
    let clocks: Vec<u64> = (0..5).map(|i| net.group(i).now_ms()).collect();
    let now = net.now_ms();
    assert!(clocks.iter().all(|&c| c.abs_diff(now) <= 500), "{clocks:?} vs {now}");
    assert!(clocks.iter().any(|&c| c != now), "some member is skewed: {clocks:?}");
}

#[test]
fn sessions_on_one_member_are_apart_and_a_call_acts_only_when_awaited() {
    use spook_core::api::{Outcome, Test, TxSpec};
    let mut net = SimNet::new(NetConfig { seed: 11, ..NetConfig::default() }, Schema::fleet(), GroupKind::Serial, 3);
    let won = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        // Three agents on member 0, each in its own session, race for one task.
        let (g, out) = (net.session(0), won.clone());
        net.spawn(0, async move {
            let me = g.id().to_string();
            let tx = TxSpec::new().when(RegisterId(5), "owner", Test::Absent).set(RegisterId(5), "owner", me.clone()).seq(1);
            let o = g.transact(tx).await.unwrap();
            out.lock().unwrap().push((me, matches!(o, Outcome::Committed { resent: false, .. })));
        });
    }
    // A write made but dropped before it is awaited does nothing.
    let g = net.group(1);
    drop(g.write(RegisterId(6), fields(1.0)));
    assert!(net.run_until(30_000, |n| n.agents() == 0 && n.converged()));
    let won = won.lock().unwrap();
    assert_eq!(won.iter().filter(|(_, w)| *w).count(), 1, "one session of three wins, though all used seq 1: {won:?}");
    let x = net.with_replica(1, |r| r.get(View::Pending, RegisterId(6), r.schema().field_id(X).unwrap())).unwrap();
    assert_eq!(x, None, "the dropped write was never made");
}

#[test]
#[should_panic(expected = "without waiting")]
fn an_agent_that_never_sleeps_is_stopped_with_a_clear_message() {
    let mut net = SimNet::new(NetConfig::default(), Schema::fleet(), GroupKind::Convergent, 2);
    let g = net.group(0);
    net.spawn(0, async move {
        // Waits for a value nobody writes, without sleeping: virtual time would stand still.
        while g.read(RegisterId(1), View::Committed).await.unwrap().is_empty() {}
    });
    net.run_for(10);
}

#[test]
fn what_a_transaction_wrote_is_read_and_watched_on_every_member() {
    use spook_core::api::{Outcome, Test, TxSpec};
    let mut net = SimNet::new(NetConfig::default(), Schema::fleet(), GroupKind::Serial, 3);
    let (a, b) = (net.group(0), net.group(1));
    let seen: Arc<Mutex<Vec<(View, RegisterId)>>> = Arc::new(Mutex::new(Vec::new()));
    for view in [View::Pending, View::Committed] {
        let (w, out) = (net.group(2), seen.clone());
        net.spawn(2, async move {
            let mut watch = w.watch(view).await.unwrap();
            while let Some(Ok(e)) = watch.next().await {
                if let Event::Change(c) = e {
                    if c.fields.get("owner") == Some(&Value::Str("a".into())) {
                        out.lock().unwrap().push((view, c.register));
                        return;
                    }
                }
            }
        });
    }
    net.spawn(0, async move {
        let tx = TxSpec::new().when(RegisterId(9), "owner", Test::Absent).set(RegisterId(9), "owner", "a").lease_ms(60_000);
        assert!(matches!(a.transact(tx).await.unwrap(), Outcome::Committed { .. }));
    });
    net.run_for(3_000);
    net.spawn(1, async move {
        for view in [View::Pending, View::Committed] {
            assert_eq!(b.read(RegisterId(9), view).await.unwrap().get("owner"), Some(&Value::Str("a".into())), "{view:?}");
        }
    });
    net.run_for(100);
    assert_eq!(net.agents(), 0, "every agent finished: the reads held and both watches saw the owner");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(v, _)| *v == View::Committed);
    assert_eq!(seen, vec![(View::Pending, RegisterId(9)), (View::Committed, RegisterId(9))]);
}
