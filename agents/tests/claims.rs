//! Task claims under faults, on simulated replicas: ten agents on five members contend for ten
//! tasks over lossy, duplicating, reordering links with skewed clocks, and one member crashes
//! (its agents die with it) and restarts. Checked: every task is done exactly once, by an
//! agent whose fencing token the resource admitted; no two agents hold a task at once in the
//! committed history; bad use gets typed errors. Seeds: `SPOOK_SEEDS` (default 1..=30),
//! each printed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use spook_agents::claims::{ClaimError, Claims, FenceGate};
use spook_core::api::GroupApi;
use spook_core::{GroupKind, Hlc, RegisterId, Schema};
use spook_sim::net::{NetConfig, SimNet};

const TASKS: u32 = 10;
const LEASE_MS: u64 = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Claim,
    Renew,
    Release,
}

/// The external resource the tasks are done on: it checks fencing tokens.
#[derive(Default)]
struct Resource {
    gates: BTreeMap<u32, FenceGate>,
    done: BTreeMap<u32, Vec<String>>,
    refused: u64,
}

#[derive(Default)]
struct World {
    resource: Resource,
    /// Every committed claim operation: (task, agent, op, fence).
    history: Vec<(u32, String, Op, u64)>,
}

/// One agent: goes through the tasks in its lane's order (five agents share each lane, so
/// they contend), claims one, starts it at the resource with its token, works (renewing once),
/// completes it with its token, releases it. Agent 0 pauses for six leases after it starts
/// (a stopped process): by then another agent has taken its task over, and the resource must
/// refuse its stale token.
async fn agent<G: GroupApi>(g: G, k: u32, world: Arc<Mutex<World>>) {
    let claims = Claims::new(&g, "owner").lease_ms(LEASE_MS).deadline_ms(3_000);
    let me = g.id().to_string();
    let log = |task: u32, op: Op, fence: u64| world.lock().unwrap().history.push((task, me.clone(), op, fence));
    let mut paused = k != 0;
    for round in 0..400u32 {
        let task = ((k % 2) * 5 + round) % TASKS;
        if world.lock().unwrap().resource.done.len() == TASKS as usize {
            return;
        }
        if world.lock().unwrap().resource.done.contains_key(&task) {
            g.sleep_ms(20).await;
            continue;
        }
        let Ok(c) = claims.claim(RegisterId(task)).await else {
            g.sleep_ms(50).await;
            continue;
        };
        log(task, Op::Claim, c.fence);
        // Start: the resource sees the token (and says if the task is done meanwhile).
        let started = {
            let mut w = world.lock().unwrap();
            let r = &mut w.resource;
            r.gates.entry(task).or_default().admit(c.fence).is_ok() && !r.done.contains_key(&task)
        };
        if !started {
            let _ = claims.release(c).await;
            continue;
        }
        let c = if paused {
            g.sleep_ms(300).await; // work
            let Ok(c) = claims.renew(&c).await else { continue };
            log(task, Op::Renew, c.fence);
            g.sleep_ms(300).await; // more work
            c
        } else {
            paused = true;
            g.sleep_ms(6 * LEASE_MS).await; // stopped, well past its lease
            c
        };
        {
            let mut w = world.lock().unwrap();
            let r = &mut w.resource;
            match r.gates.entry(task).or_default().admit(c.fence) {
                Ok(()) => r.done.entry(task).or_default().push(me.clone()),
                Err(_) => r.refused += 1,
            }
        }
        if claims.release(c.clone()).await.is_ok() {
            log(task, Op::Release, c.fence);
        }
    }
}

/// No claim committed while another agent's lease on the task ran (released leases end at
/// the release).
fn no_overlap(history: &[(u32, String, Op, u64)]) -> Result<(), String> {
    let mut by_task: BTreeMap<u32, Vec<&(u32, String, Op, u64)>> = BTreeMap::new();
    for h in history {
        by_task.entry(h.0).or_default().push(h);
    }
    for (task, mut ops) in by_task {
        ops.sort_by_key(|h| h.3);
        let mut holder: Option<(&str, u64)> = None; // (agent, lease end ms)
        for (_, who, op, fence) in ops {
            let at = Hlc(*fence).ms();
            match op {
                Op::Claim => {
                    if let Some((h, until)) = holder {
                        if h != who && at < until {
                            return Err(format!("task {task}: {who} claimed at {at} ms while {h} held it until {until} ms"));
                        }
                    }
                    holder = Some((who, at + LEASE_MS));
                }
                Op::Renew => holder = Some((who, at + LEASE_MS)),
                Op::Release => holder = None,
            }
        }
    }
    Ok(())
}

#[test]
fn every_task_is_done_once_and_no_two_agents_hold_a_task_at_once() {
    for seed in spook_sim::seeds(1..=30) {
        println!("seed {seed}");
        let cfg = NetConfig { seed, loss: 0.1, dup: 0.05, reorder: 0.1, delay_ms: (1, 30), skew_ms: 50, step_ms: 2, persist_ms: (1, 5) };
        let mut net = SimNet::new(cfg, Schema::fleet(), GroupKind::Serial, 5);
        let world = Arc::new(Mutex::new(World::default()));
        for k in 0..10u32 {
            let member = (k % 5) as usize;
            let (g, w) = (net.session(member), world.clone());
            net.spawn(member, agent(g, k, w));
        }
        net.run_for(1_000);
        net.crash(2);
        net.run_for(3_000);
        net.restart(2);
        // Until every task is done and every agent has ended (the paused one wakes last).
        let done = net.run_until(120_000, |n| n.agents() == 0 && world.lock().unwrap().resource.done.len() == TASKS as usize);
        let w = world.lock().unwrap();
        assert!(done, "seed {seed}: tasks done {:?}", w.resource.done.keys().collect::<Vec<_>>());
        for (task, by) in &w.resource.done {
            assert_eq!(by.len(), 1, "seed {seed}: task {task} done by {by:?}");
        }
        no_overlap(&w.history).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(w.resource.refused >= 1, "seed {seed}: the paused agent's stale token was not refused");
        println!("seed {seed}: {} committed claim operations, {} stale tokens refused, {:?}", w.history.len(), w.resource.refused, net.stats());
    }
}

#[test]
fn bad_use_gets_typed_errors_and_commits_nothing() {
    let mut net = SimNet::new(NetConfig { seed: 4, ..NetConfig::default() }, Schema::fleet(), GroupKind::Serial, 2);
    let (a, b) = (net.session(0), net.session(1));
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    net.spawn(0, async move {
        let (ca, cb) = (Claims::new(&a, "owner"), Claims::new(&b, "owner"));
        let c = ca.claim(RegisterId(1)).await.unwrap();
        // b renews and releases a task it does not hold; a releases twice.
        let not_mine = spook_agents::claims::Claim { task: RegisterId(1), fence: c.fence, lease_ms: 10_000 };
        let mut r = Vec::new();
        r.push(matches!(cb.renew(&not_mine).await, Err(ClaimError::NotHolder(_))));
        r.push(matches!(cb.release(not_mine).await, Err(ClaimError::NotHolder(_))));
        r.push(matches!(cb.claim(RegisterId(1)).await, Err(ClaimError::Held(_))));
        ca.release(c.clone()).await.unwrap();
        r.push(matches!(ca.release(c).await, Err(ClaimError::NotHolder(_))));
        // A field the schema lacks is the group's error.
        r.push(matches!(Claims::new(&a, "colour").claim(RegisterId(2)).await, Err(ClaimError::Group(_))));
        // A task that was never posted (no `battery` here) is missing; once posted, claimable.
        let posted = Claims::new(&a, "owner").posted_in("battery");
        r.push(matches!(posted.claim(RegisterId(5)).await, Err(ClaimError::Missing(_))));
        a.write(RegisterId(5), [("battery".to_string(), spook_core::Value::F64(0.9))].into()).await.unwrap();
        a.sleep_ms(2_000).await;
        r.push(posted.claim(RegisterId(5)).await.is_ok());
        *o.lock().unwrap() = r;
    });
    assert!(net.run_until(60_000, |n| n.agents() == 0));
    assert_eq!(*out.lock().unwrap(), vec![true; 7]);
    // Nothing of the refused operations committed: the cell is a's release (empty owner).
    let owner = net.with_replica(0, |r| r.serial().cell(RegisterId(1), r.schema().field_id("owner").unwrap()).map(|c| (c.value.clone(), c.version))).unwrap();
    assert_eq!(owner, Some((spook_core::Value::Str(String::new()), 2)), "claim and release only");
}
