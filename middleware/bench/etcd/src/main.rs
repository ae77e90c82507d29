//! `spook-bench-etcd`: one task claim, done by Spook and by etcd in the same run, on loopback
//! clusters of three. Spook: `spook_agents::claims` through `spook-client` on a local `spookd`
//! of three (a serial group). etcd 3.4: a compare-and-swap transaction (the key's
//! create_revision is 0, then put it with a lease), and the lock API. Measured: a claim's
//! latency from request to committed (p50, p99), claims per second with four contenders on
//! the same tasks, and both again while one member of three is stopped (SIGSTOP). Printed as
//! Spook / etcd ratios. Outside CI: `run.sh` beside this crate installs etcd and builds what
//! it needs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client as Etcd, Compare, CompareOp, LockOptions, PutOptions, Txn, TxnOp};
use spook_agents::claims::{ClaimError, Claims};
use spook_client::Client;
use spook_core::RegisterId;

/// Child processes, killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    anyhow::ensure!(Command::new("kill").args([sig, &pid.to_string()]).status()?.success(), "kill {sig} {pid}");
    Ok(())
}

/// Three etcd members on loopback; their client endpoints.
fn etcd_cluster(dir: &Path) -> anyhow::Result<(Procs, Vec<String>)> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
    let initial: Vec<String> = ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
    let mut procs = Procs(Vec::new());
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("etcd-{i}.log")))?;
        let child = Command::new("etcd")
            .args(["--name", &format!("e{i}"), "--data-dir"])
            .arg(dir.join(format!("etcd-{i}")))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}"), "--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}"), "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new", "--initial-cluster-token", "spook-bench"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("etcd (apt install etcd-server)")?;
        procs.0.push(child);
    }
    Ok((procs, ports.iter().map(|(c, _)| format!("127.0.0.1:{c}")).collect()))
}

/// A string field of a `spook` CLI call's JSON answer.
fn spook(bin: &Path, cfg: &Path, args: &[&str], field: &str) -> anyhow::Result<Option<String>> {
    let out = Command::new(bin).arg("--config").arg(cfg).arg("--json").args(args).output()?;
    if !out.status.success() {
        bail!("spook {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v[field].as_str().map(str::to_string))
}

/// Three `spookd` on loopback with a serial group `tasks`; their control sockets and pids.
fn spook_cluster(dir: &Path, bin_dir: &Path, digest_ms: u64) -> anyhow::Result<(Procs, Vec<PathBuf>)> {
    let (spookd, cli) = (bin_dir.join("spookd"), bin_dir.join("spook"));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let mut cfgs = Vec::new();
    for i in 0..3 {
        let connect: Vec<String> = ports[..i].iter().map(|p| format!("\"tcp/127.0.0.1:{p}\"")).collect();
        let cfg = dir.join(format!("n{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[node]\nledger = \"{d}/n{i}.spookdb\"\ndomain = \"bench\"\ncontrol = \"{d}/n{i}.sock\"\nlog = \"warn\"\n\n[zenoh]\nlisten = [\"tcp/127.0.0.1:{}\"]\nconnect = [{}]\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[timing]\ndigest_interval_ms = {digest_ms}\n",
                ports[i],
                connect.join(", "),
                d = dir.display()
            ),
        )?;
        cfgs.push(cfg);
    }
    let first = spook(&cli, &cfgs[0], &["init"], "id")?.context("init: no id")?;
    let key = spook(&cli, &cfgs[0], &["domain-key"], "token")?.context("no domain key")?;
    let mut ids = vec![first];
    for cfg in &cfgs[1..] {
        ids.push(spook(&cli, cfg, &["init", "--domain-key", &key], "id")?.context("init: no id")?);
    }
    for (i, cfg) in cfgs.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                spook(&cli, cfg, &["allow", id], "")?;
            }
        }
    }
    let mut procs = Procs(Vec::new());
    for cfg in &cfgs {
        let mut child = Command::new(&spookd).arg("--config").arg(cfg).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        anyhow::ensure!(line.contains(" up;"), "spookd: {line}");
        procs.0.push(child);
    }
    let invite = spook(&cli, &cfgs[0], &["group", "create", "tasks", "--member", &ids[1], "--member", &ids[2], "--serial"], "invite")?.context("no invite")?;
    for cfg in &cfgs[1..] {
        spook(&cli, cfg, &["group", "join", &invite], "")?;
    }
    Ok((procs, (0..3).map(|i| dir.join(format!("n{i}.sock"))).collect()))
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Sequential claims of fresh tasks from one session: each claim's latency.
async fn spook_latency(socket: &Path, n: u32, first_task: u32) -> anyhow::Result<Vec<Duration>> {
    let client = Client::local(socket).await?;
    let g = client.group("tasks");
    let claims = Claims::new(&g, "owner").lease_ms(600_000).deadline_ms(30_000);
    let mut out = Vec::new();
    for t in first_task..first_task + n {
        let start = Instant::now();
        claims.claim(RegisterId(t)).await.map_err(|e| anyhow::anyhow!("claim {t}: {e}"))?;
        out.push(start.elapsed());
    }
    Ok(out)
}

async fn etcd_txn_claim(c: &mut Etcd, key: &str, me: &str, lease: i64) -> anyhow::Result<bool> {
    let txn = Txn::new().when([Compare::create_revision(key, CompareOp::Equal, 0)]).and_then([TxnOp::put(key, me, Some(PutOptions::new().with_lease(lease)))]);
    Ok(c.txn(txn).await?.succeeded())
}

async fn etcd_latency(endpoint: &str, n: u32, prefix: &str) -> anyhow::Result<Vec<Duration>> {
    let mut c = Etcd::connect([endpoint], None).await?;
    let lease = c.lease_grant(600, None).await?.id();
    let mut out = Vec::new();
    for t in 0..n {
        let start = Instant::now();
        anyhow::ensure!(etcd_txn_claim(&mut c, &format!("{prefix}/{t}"), "me", lease).await?, "etcd claim {t} failed");
        out.push(start.elapsed());
    }
    Ok(out)
}

async fn etcd_lock_latency(endpoint: &str, n: u32) -> anyhow::Result<Vec<Duration>> {
    let mut c = Etcd::connect([endpoint], None).await?;
    let lease = c.lease_grant(600, None).await?.id();
    let mut out = Vec::new();
    for t in 0..n {
        let start = Instant::now();
        let key = c.lock(format!("locks/{t}"), Some(LockOptions::new().with_lease(lease))).await?.key().to_vec();
        out.push(start.elapsed());
        c.unlock(key).await?;
    }
    Ok(out)
}

/// `contenders` sessions race for `tasks` tasks, each going through all of them from its own
/// starting point: claims per second until every task is held, and the claims that won.
async fn spook_contention(sockets: &[PathBuf], contenders: u32, tasks: u32, first_task: u32) -> anyhow::Result<(f64, u32)> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for k in 0..contenders {
        let socket = sockets[k as usize % sockets.len()].clone();
        handles.push(tokio::spawn(async move {
            let client = Client::local(&socket).await?;
            let g = client.group("tasks");
            let claims = Claims::new(&g, "owner").lease_ms(600_000).deadline_ms(30_000);
            let mut won = 0u32;
            for i in 0..tasks {
                let t = first_task + (i + k * tasks / contenders) % tasks;
                match claims.claim(RegisterId(t)).await {
                    Ok(_) => won += 1,
                    Err(ClaimError::Held(_)) => {}
                    Err(e) => anyhow::bail!("claim {t}: {e}"),
                }
            }
            anyhow::Ok(won)
        }));
    }
    let mut won = 0;
    for h in handles {
        won += h.await??;
    }
    Ok((f64::from(tasks) / start.elapsed().as_secs_f64(), won))
}

async fn etcd_contention(endpoints: &[String], contenders: u32, tasks: u32, prefix: &str) -> anyhow::Result<(f64, u32)> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for k in 0..contenders {
        let (endpoint, prefix) = (endpoints[k as usize % endpoints.len()].clone(), prefix.to_string());
        handles.push(tokio::spawn(async move {
            let mut c = Etcd::connect([endpoint], None).await?;
            let lease = c.lease_grant(600, None).await?.id();
            let mut won = 0u32;
            for i in 0..tasks {
                let t = (i + k * tasks / contenders) % tasks;
                won += u32::from(etcd_txn_claim(&mut c, &format!("{prefix}/{t}"), &format!("c{k}"), lease).await?);
            }
            anyhow::Ok(won)
        }));
    }
    let mut won = 0;
    for h in handles {
        won += h.await??;
    }
    Ok((f64::from(tasks) / start.elapsed().as_secs_f64(), won))
}

struct Args {
    bin_dir: PathBuf,
    claims: u32,
    digest_ms: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { bin_dir: PathBuf::from("target/debug"), claims: 200, digest_ms: 250 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--bin-dir" => a.bin_dir = PathBuf::from(v()?),
            "--claims" => a.claims = v()?.parse()?,
            "--digest-ms" => a.digest_ms = v()?.parse()?,
            "-h" | "--help" => {
                println!("spook-bench-etcd [--bin-dir DIR (spookd, spook; target/debug)] [--claims N (200)] [--digest-ms MS (250, the node's default)]");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {k} (--help)"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = std::env::temp_dir().join(format!("spook-bench-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (etcd, endpoints) = etcd_cluster(&dir)?;
    let (spookd, sockets) = spook_cluster(&dir, &a.bin_dir, a.digest_ms)?;
    // Both ready: one claim each (not measured).
    let t0 = Instant::now();
    loop {
        let ready = async { anyhow::Ok(Etcd::connect([endpoints[0].as_str()], None).await?.member_list().await?.members().len() == 3) }.await.unwrap_or(false);
        if ready {
            break;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "etcd did not come up (see {})", dir.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    spook_latency(&sockets[0], 1, 999_999).await?;
    etcd_latency(&endpoints[0], 1, "warm").await?;
    println!("# task claims, {} sequential from one client; digest interval {} ms", a.claims, a.digest_ms);
    let mut s = spook_latency(&sockets[0], a.claims, 0).await?;
    let mut e = etcd_latency(&endpoints[0], a.claims, "tasks").await?;
    let mut l = etcd_lock_latency(&endpoints[0], a.claims).await?;
    let (s50, s99, e50, e99, l50, l99) = (pct(&mut s, 0.5), pct(&mut s, 0.99), pct(&mut e, 0.5), pct(&mut e, 0.99), pct(&mut l, 0.5), pct(&mut l, 0.99));
    println!("latency ms      p50      p99");
    println!("spook      {s50:8.2} {s99:8.2}");
    println!("etcd txn   {e50:8.2} {e99:8.2}   spook/etcd: {:.1}x p50, {:.1}x p99", s50 / e50, s99 / e99);
    println!("etcd lock  {l50:8.2} {l99:8.2}   spook/lock: {:.1}x p50, {:.1}x p99", s50 / l50, s99 / l99);
    let tasks = 100;
    let (st, sw) = spook_contention(&sockets, 4, tasks, 10_000).await?;
    let (et, ew) = etcd_contention(&endpoints, 4, tasks, "contended").await?;
    anyhow::ensure!(sw == tasks && ew == tasks, "each task must be won once: spook {sw}, etcd {ew} of {tasks}");
    println!("4 contenders, {tasks} tasks: spook {st:.1} claims/s, etcd {et:.1} claims/s: spook/etcd {:.2}x", st / et);
    // One member of three stopped: the two others still decide. Spook's serial group waits
    // for the stopped member to decohere and be pruned; etcd's waits for a new leader if it
    // stopped the leader (it stops member 2, whichever role it has).
    signal(spookd.0[2].id(), "-STOP")?;
    signal(etcd.0[2].id(), "-STOP")?;
    let cut = Instant::now();
    let mut s = spook_latency(&sockets[0], 20, 20_000).await?;
    let spook_first = s[0];
    let mut e = etcd_latency(&endpoints[0], 20, "cut").await?;
    let etcd_first = e[0];
    println!(
        "one member of three stopped: first claim after the cut: spook {:.0} ms, etcd {:.0} ms; then p50 spook {:.2} ms, etcd {:.2} ms ({:.1}x); {:.1} s in all",
        spook_first.as_secs_f64() * 1e3,
        etcd_first.as_secs_f64() * 1e3,
        pct(&mut s, 0.5),
        pct(&mut e, 0.5),
        pct(&mut s, 0.5) / pct(&mut e, 0.5),
        cut.elapsed().as_secs_f64()
    );
    signal(spookd.0[2].id(), "-CONT")?;
    signal(etcd.0[2].id(), "-CONT")?;
    drop((spookd, etcd));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
