//! A worker process that takes tasks with `spook_agents::claims` through a local `spookd`,
//! and does them at a resource that checks fencing tokens: a directory shared by the workers,
//! one file of newest admitted token and one of completions per task, each read and written
//! under a lock. Used by the real-process test (`tests/agents.rs`): several of these,
//! on three nodes, one node `kill -9`ed, one worker SIGSTOPped past its lease.
//!
//! ```text
//! claim_worker SOCKET GROUP RESOURCE_DIR LANE LEASE_MS WORK_MS
//! ```
//!
//! It prints `started TASK FENCE` when the resource admits its token for a task, and exits
//! once the resource has every task done. With `SPOOK_NO_FENCE=1` the resource admits any
//! token (the negative control: a stale holder then completes a task twice).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use spook_agents::claims::{Claims, FenceGate};
use spook_client::Client;
use spook_core::RegisterId;

const TASKS: u32 = 10;

/// The resource: tasks done at most once, guarded by fencing tokens.
struct Resource {
    dir: PathBuf,
    check_fences: bool,
}

enum Start {
    Go,
    Stale,
    Done,
}

impl Resource {
    /// Run `f` on task `t`'s newest token and completions, under the task's lock.
    fn locked<T>(&self, t: u32, f: impl FnOnce(&mut FenceGate, &mut File) -> anyhow::Result<T>) -> anyhow::Result<T> {
        // A directory as the task's lock: creating one is atomic, and nobody holds it while
        // paused (it is held only here, for a few file operations).
        let lock = self.dir.join(format!("task-{t}.lock"));
        let mut tries = 0;
        while std::fs::create_dir(&lock).is_err() {
            tries += 1;
            anyhow::ensure!(tries < 10_000, "{} stays locked", lock.display());
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = self.with_lock(t, f);
        std::fs::remove_dir(&lock)?;
        out
    }

    fn with_lock<T>(&self, t: u32, f: impl FnOnce(&mut FenceGate, &mut File) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let fence_path = self.dir.join(format!("task-{t}.fence"));
        let newest: u64 = std::fs::read_to_string(&fence_path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut gate = FenceGate::default();
        gate.admit(newest).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut done = OpenOptions::new().create(true).truncate(false).read(true).append(true).open(self.dir.join(format!("task-{t}.done")))?;
        let out = f(&mut gate, &mut done)?;
        std::fs::write(&fence_path, gate.newest().to_string())?;
        Ok(out)
    }

    fn admit(&self, gate: &mut FenceGate, fence: u64) -> bool {
        !self.check_fences || gate.admit(fence).is_ok()
    }

    fn start(&self, t: u32, fence: u64) -> anyhow::Result<Start> {
        self.locked(t, |gate, done| {
            if !self.admit(gate, fence) {
                return Ok(Start::Stale);
            }
            let mut s = String::new();
            done.rewind()?;
            done.read_to_string(&mut s)?;
            Ok(if s.is_empty() { Start::Go } else { Start::Done })
        })
    }

    /// Complete task `t` with `fence`; false if the token is stale (recorded as refused).
    fn complete(&self, t: u32, fence: u64, me: &str) -> anyhow::Result<bool> {
        let ok = self.locked(t, |gate, done| {
            if !self.admit(gate, fence) {
                return Ok(false);
            }
            writeln!(done, "{me} {fence}")?;
            Ok(true)
        })?;
        if !ok {
            let mut f = OpenOptions::new().create(true).append(true).open(self.dir.join("refused.log"))?;
            writeln!(f, "{me} task {t} token {fence}")?;
        }
        Ok(ok)
    }

    fn all_done(&self) -> bool {
        (0..TASKS).all(|t| std::fs::metadata(self.dir.join(format!("task-{t}.done"))).is_ok_and(|m| m.len() > 0))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, group, dir, lane, lease_ms, work_ms] = args.as_slice() else {
        anyhow::bail!("usage: claim_worker SOCKET GROUP RESOURCE_DIR LANE LEASE_MS WORK_MS");
    };
    let (lane, lease_ms, work_ms): (u32, u64, u64) = (lane.parse()?, lease_ms.parse()?, work_ms.parse()?);
    let resource = Resource { dir: PathBuf::from(dir), check_fences: std::env::var("SPOOK_NO_FENCE").is_err() };
    let client = connect(Path::new(socket)).await?;
    let me = client.session_id().to_string();
    let tasks = client.group(group);
    let claims = Claims::new(&tasks, "owner").lease_ms(lease_ms).deadline_ms(3_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut round = 0u32;
    while !resource.all_done() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "{me}: tasks still open after 150 s");
        let t = (lane * 5 + round) % TASKS;
        round += 1;
        // A claim that fails (held, the node down, ...) moves on to the next task.
        let Ok(c) = claims.claim(RegisterId(t)).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match resource.start(t, c.fence)? {
            Start::Go => {
                println!("started {t} {}", c.fence);
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
                if resource.complete(t, c.fence, &me)? {
                    println!("done {t} {}", c.fence);
                } else {
                    println!("refused {t} {}", c.fence);
                }
            }
            Start::Stale | Start::Done => {}
        }
        let _ = claims.release(c).await;
    }
    Ok(())
}

/// Attach to the node, waiting while it restarts.
async fn connect(socket: &Path) -> anyhow::Result<Client> {
    for _ in 0..100 {
        if let Ok(c) = Client::local(socket).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Client::local(socket).await.with_context(|| format!("no spookd at {}", socket.display()))
}
