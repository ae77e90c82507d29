//! Task claims (`spook_agents::claims`) between real processes: three `spookd` on loopback
//! and six worker processes (`examples/claim_worker.rs`, two per node) contend for ten tasks
//! at a resource that checks fencing tokens. One node is `kill -9`ed and restarted while they
//! work; one worker is SIGSTOPped past its lease and resumes with its stale token. Every task
//! must be done exactly once, and the resource must refuse the stale token: without the check
//! (the negative control) the paused worker completes a task a second time.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dir;

const LEASE_MS: u64 = 3_000;
const WORKERS: usize = 6;

/// The worker binary: an example of this package, built with its tests (`cargo test` and
/// `cargo nextest` build examples).
fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("examples").join("claim_worker")).unwrap();
    assert!(bin.exists(), "{} is missing: `cargo build -p spook-node --examples` builds it", bin.display());
    bin
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} {}", child.id());
}

/// Completions per task, and the refused completions, after a run.
struct Run {
    done: Vec<Vec<String>>,
    refused: Vec<String>,
}

fn run(name: &str, check_fences: bool) -> Run {
    let d = dir(name);
    let resource = d.join("resource");
    std::fs::create_dir_all(&resource).unwrap();
    let mut nodes = common::loopback_chain(&d, &format!("{name}{}", std::process::id()), 3, |_| common::TIMING.to_string());
    let ids = common::start_domain(&mut nodes);
    common::form_group(&nodes, &ids, "tasks", true);
    let bin = worker_bin();
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|k| {
            let node = &nodes[k % 3];
            let socket = node.dir.join(format!("{}.sock", node.name));
            let mut cmd = Command::new(&bin);
            cmd.arg(&socket).arg("tasks").arg(&resource).arg((k % 2).to_string()).arg(LEASE_MS.to_string()).arg("400");
            if !check_fences {
                cmd.env("SPOOK_NO_FENCE", "1");
            }
            // Worker 0 is watched: it is paused right after its first start.
            let out = if k == 0 { Stdio::piped() } else { Stdio::from(std::fs::File::create(d.join(format!("worker-{k}.log"))).unwrap()) };
            cmd.stdout(out).stderr(Stdio::from(std::fs::File::create(d.join(format!("worker-{k}.err"))).unwrap())).spawn().unwrap()
        })
        .collect();
    // Worker 0's first start: pause it there, past its lease, with a node killed meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = workers[0].stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("worker 0: {line}");
            let _ = tx.send(line);
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("worker 0 started nothing: {e}"));
    assert!(started.starts_with("started "), "{started}");
    signal(&workers[0], "-STOP");
    nodes[1].kill9();
    std::thread::sleep(Duration::from_secs(3));
    nodes[1].start();
    std::thread::sleep(Duration::from_millis(3 * LEASE_MS));
    signal(&workers[0], "-CONT");
    // Every worker ends once every task is done (they give up after 150 s).
    let end = Instant::now() + Duration::from_secs(170);
    for (k, w) in workers.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = w.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = w.kill();
                panic!("worker {k} still runs: {}", std::fs::read_to_string(d.join(format!("worker-{k}.err"))).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "worker {k}: {status}: {}", std::fs::read_to_string(d.join(format!("worker-{k}.err"))).unwrap_or_default());
    }
    let lines = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    let done = (0..10).map(|t| lines(resource.join(format!("task-{t}.done")))).collect();
    Run { done, refused: lines(resource.join("refused.log")) }
}

#[test]
fn worker_processes_do_every_task_once_through_a_kill9_and_a_paused_holder_is_fenced_off() {
    let r = run("agents-fenced", true);
    for (t, by) in r.done.iter().enumerate() {
        assert_eq!(by.len(), 1, "task {t} done {} times: {by:?}", by.len());
    }
    assert!(!r.refused.is_empty(), "the paused worker's stale token was not refused");
    println!("every task done once; refused: {:?}", r.refused);
    // The negative control: the same run at a resource that admits any token.
    let r = run("agents-unfenced", false);
    let twice: Vec<usize> = r.done.iter().enumerate().filter(|(_, by)| by.len() > 1).map(|(t, _)| t).collect();
    assert!(!twice.is_empty(), "without the fence check the paused worker should have done a task again: {:?}", r.done);
    println!("without the check, done twice: tasks {twice:?}");
}
