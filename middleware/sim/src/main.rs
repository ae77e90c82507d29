//! `spook-sim`: run many seeded simulations of a Spook group and print a summary.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use spook_sim::{run, Outcome, SimConfig};

const HELP: &str = "\
spook-sim: seeded deterministic simulation of a Spook group

Runs N replicas of one convergent group on a virtual clock with loss, duplication,
reordering, partitions, crash/restart and clock skew, then stops the faults and checks that
every replica converges to the merge of every durable delta and commits it.

USAGE:
    spook-sim [OPTIONS]
    spook-sim mc [--nodes N] [--claimants N] [--depth N] [--crashes N] [--ticks N] [--losses N]
                 [--max-states N] [--max-leaves N] [--convergent 1] [--digest-broadcast 1]
                 [--prompt-ack-ms MS]
        bounded exhaustive model check of a serial group racing for one task: every
        interleaving of delivery, loss, time steps and crashes up to the depth; with
        --convergent 1, a convergent group under DESIGN.md's membership rule instead

OPTIONS:
    --nodes N          replicas (default 5)
    --seeds N          how many seeds to run (default 100)
    --seed S           first seed (default 1); with --seeds 1 prints the run in detail
    --loss P           frame loss probability during faults (default 0.1)
    --dup P            duplication probability (default 0.05)
    --reorder P        probability a frame is held back behind later ones (default 0.1)
    --delay MIN-MAX    one-way delay in ms (default 1-30)
    --partitions N     partitions during the fault phase (default 1)
    --crashes N        crash/restart events (default 1)
    --skew MS          clock skew bound, ± ms (default 200)
    --fault-ms MS      length of the fault phase (default 10000)
    --settle-ms MS     bound on convergence after faults stop (default 60000)
    --write-every MS   mean time between writes per node (default 200)
    --registers N      registers (entities) written (default 20)
    --split K[,K..]    fixed sides for every partition: the first sides' sizes in node order,
                       the rest the last side (2 is 2 | 3 of five, 2,2 is 2 | 2 | 1)
    --compact N        compact a node's disk to a snapshot after 1 in N persisted batches
                       (0: never; default 8)
    --digest-broadcast 1
                       each digest round goes to every member as one frame, as over a
                       radio's multicast group (default 0: round robin to two peers)
    --prompt-ack-ms MS least time between two prompt acks, sent as soon as a replica's ack
                       moves over a delta (default 1; 0: acks ride the digests only)
    --tasks N          task-claim race: 30% of writes are serial claims on N tasks;
                       each task must end with exactly one owner everywhere (default 0)
    --threads N        worker threads (default: available cores)
    -h, --help         this text

EXIT STATUS: 0 if every seed converged, 1 otherwise (each failing seed prints the command
that reproduces it).";

struct Args {
    cfg: SimConfig,
    seeds: u64,
    threads: usize,
    line: Vec<String>,
}

fn parse() -> Result<Option<Args>, String> {
    let mut cfg = SimConfig::default();
    let mut seeds = 100;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut line = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Ok(None);
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value (see --help)"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{a}: '{v}' is not a whole number"));
        let prob = |v: &str| match v.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(format!("{a}: '{v}' is not a probability between 0 and 1")),
        };
        match a.as_str() {
            "--nodes" => cfg.nodes = num(&v)?.clamp(1, 1000) as usize,
            "--seeds" => seeds = num(&v)?,
            "--seed" => cfg.seed = num(&v)?,
            "--loss" => cfg.loss = prob(&v)?,
            "--dup" => cfg.dup = prob(&v)?,
            "--reorder" => cfg.reorder = prob(&v)?,
            "--delay" => {
                let (lo, hi) = v.split_once('-').ok_or_else(|| format!("--delay: expected MIN-MAX, got '{v}'"))?;
                cfg.delay_ms = (num(lo)?, num(hi)?.max(num(lo)?));
            }
            "--partitions" => cfg.partitions = num(&v)? as usize,
            "--crashes" => cfg.crashes = num(&v)? as usize,
            "--skew" => cfg.skew_ms = num(&v)?,
            "--fault-ms" => cfg.fault_ms = num(&v)?.max(1),
            "--settle-ms" => cfg.settle_ms = num(&v)?,
            "--write-every" => cfg.write_every_ms = num(&v)?.max(1),
            "--split" => cfg.split = Some(v.split(',').map(|k| num(k).map(|k| k as usize)).collect::<Result<_, _>>()?),
            "--compact" => cfg.compact_one_in = num(&v)?,
            "--digest-broadcast" => cfg.digest_broadcast = num(&v)? == 1,
            "--prompt-ack-ms" => cfg.prompt_ack_ms = num(&v)?,
            "--tasks" => cfg.tasks = num(&v)?.min(1 << 20) as u32,
            "--registers" => cfg.registers = num(&v)?.clamp(1, u64::from(u32::MAX)) as u32,
            "--threads" => threads = num(&v)?.max(1) as usize,
            _ => return Err(format!("unknown option {a} (see --help)")),
        }
        if !matches!(a.as_str(), "--seeds" | "--seed" | "--threads") {
            line.push(format!("{a} {v}"));
        }
    }
    Ok(Some(Args { cfg, seeds, threads, line }))
}

fn bar(done: u64, total: u64, failed: u64) {
    let width = 40usize;
    let filled = (done * width as u64).checked_div(total).map_or(width, |f| f as usize);
    let mut e = std::io::stderr();
    let _ = write!(e, "\r[{}{}] {done}/{total} seeds, {failed} failed", "#".repeat(filled), " ".repeat(width - filled));
    let _ = e.flush();
}

fn model_check() -> ExitCode {
    let mut cfg = spook_sim::mc::McConfig::default();
    let mut it = std::env::args().skip(2);
    while let Some(a) = it.next() {
        let Some(v) = it.next().and_then(|v| v.parse::<usize>().ok()) else {
            eprintln!("error: {a} needs a whole number (see --help)");
            return ExitCode::from(2);
        };
        match a.as_str() {
            "--nodes" => cfg.nodes = v.clamp(2, 7),
            "--claimants" => cfg.claimants = v,
            "--depth" => cfg.depth = v,
            "--crashes" => cfg.crashes = v,
            "--ticks" => cfg.ticks = v,
            "--max-states" => cfg.max_states = v,
            "--losses" => cfg.losses = v,
            "--max-leaves" => cfg.max_leaves = v,
            "--convergent" => cfg.convergent = v != 0,
            "--digest-broadcast" => cfg.digest_broadcast = v != 0,
            "--prompt-ack-ms" => cfg.prompt_ack_ms = v as u64,
            _ => {
                eprintln!("error: unknown option {a} (see --help)");
                return ExitCode::from(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let r = spook_sim::mc::explore(cfg);
    println!("model check: {} group, {} nodes, depth {}, crashes {}, ticks {}, losses {}", if cfg.convergent { "convergent" } else { "serial" }, cfg.nodes, cfg.depth, cfg.crashes, cfg.ticks, cfg.losses);
    println!("states explored {}, deepest level {}, leaves healed and checked {}{}", r.states, r.max_depth, r.leaves_checked, if r.truncated { " (truncated at --max-states)" } else { "" });
    println!("leaves whose path proposed a removal {}", r.leaves_with_removals);
    println!("invariant violations {}", r.violations.len());
    for v in r.violations.iter().take(5) {
        println!("  {v}");
    }
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    if r.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("mc") {
        return model_check();
    }
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let first = args.cfg.seed;
    let next = AtomicU64::new(first);
    let results = Mutex::new(Vec::<Outcome>::new());
    let failed = AtomicU64::new(0);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + args.seeds {
                    break;
                }
                let out = run(&SimConfig { seed, ..args.cfg.clone() });
                if !out.converged {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut r) = results.lock() {
                    r.push(out);
                    let n = r.len() as u64;
                    if n == args.seeds || n % (args.seeds / 100).max(1) == 0 {
                        bar(r.len() as u64, args.seeds, failed.load(Ordering::Relaxed));
                    }
                }
            });
        }
    });
    eprintln!();
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|o| o.seed);
    let n = results.len().max(1) as f64;
    let ok: Vec<&Outcome> = results.iter().filter(|o| o.converged).collect();
    let sum = |f: &dyn Fn(&Outcome) -> f64| results.iter().map(f).sum::<f64>();
    let mut conv: Vec<u64> = ok.iter().map(|o| o.converge_ms).collect();
    conv.sort_unstable();
    let pct = |p: f64| conv.get(((conv.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    let realign: u64 = results.iter().map(|o| o.realign_bytes).sum();
    let diverged: u64 = results.iter().map(|o| o.diverged_bytes).sum();
    let f = |g: &dyn Fn(&Outcome) -> u64| results.iter().map(g).sum::<u64>();
    if args.seeds == 1 {
        if let Some(o) = results.first() {
            println!("seed {}  trace {}  state {}", o.seed, o.trace_hash, o.state_hash);
        }
    }
    println!("{:<44} {}", "seeds run", results.len());
    println!("{:<44} {}/{}", "converged (identical state hashes)", ok.len(), results.len());
    println!("{:<44} p50 {} ms, p99 {} ms, max {} ms", "simulated time to converge after last heal", pct(0.5), pct(0.99), conv.last().copied().unwrap_or(0));
    println!("{:<44} {:.1}", "deltas per run (durable at origin)", sum(&|o| o.deltas as f64) / n);
    println!("{:<44} {:.1}", "bytes per delta on the wire (Deltas frames)", sum(&|o| o.bytes_per_delta) / n);
    println!("{:<44} {:.0}", "bytes per run, all frames", sum(&|o| o.bytes_total as f64) / n);
    println!("{:<44} {:.0} (diverged state {:.0} B, {:.1} fields; ratio {:.2})", "bytes to re-align after last heal per run", realign as f64 / n, diverged as f64 / n,
        f(&|o| o.diverged_fields) as f64 / n, if diverged == 0 { 0.0 } else { realign as f64 / diverged as f64 });
    let kind = |k: usize| f(&|o| o.realign_by_kind[k]) as f64 / n;
    println!("{:<44} deltas {:.0}, digests {:.0}, wants {:.0}, state {:.0}, paxos {:.0}, acks {:.0}", "  of which (bytes per run)", kind(0), kind(1), kind(2), kind(3), kind(4), kind(5));
    println!("{:<44} drops {}, partition drops {}, dups {}, reorders {}, partitions {}, crashes {}, held {}", "faults injected (all seeds)",
        f(&|o| o.faults.drops), f(&|o| o.faults.partition_drops), f(&|o| o.faults.dups), f(&|o| o.faults.reorders),
        f(&|o| o.faults.partitions), f(&|o| o.faults.crashes), f(&|o| o.faults.held));
    println!("{:<44} prunes proposed {}, removals {}, not caused by a fault {}, re-adds {}, re-entanglements {}", "membership (all seeds)",
        f(&|o| o.faults.prunes), f(&|o| o.faults.removals), f(&|o| o.faults.spurious_removals), f(&|o| o.faults.readds), f(&|o| o.faults.reentangled));
    if args.cfg.tasks > 0 {
        println!("{:<44} {} claims durable, {} committed (never two per task)", "serial task claims (all seeds)", f(&|o| o.txns.0), f(&|o| o.txns.1));
    }
    println!("{:<44} {:.1} s", "wall time", started.elapsed().as_secs_f64());
    let extra = args.line.join(" ");
    for o in results.iter().filter(|o| !o.converged) {
        println!("FAILED seed {}: {}", o.seed, o.failure.as_deref().unwrap_or("?"));
        println!("  reproduce: cargo run --release -p spook-sim -- {extra} --seed {} --seeds 1", o.seed);
    }
    if ok.len() == results.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
