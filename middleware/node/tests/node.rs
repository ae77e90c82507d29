//! Real `spookd` processes over zenoh on loopback, driven by the real `spook` CLI.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const SPOOKD: &str = env!("CARGO_BIN_EXE_spookd");
const SPOOK: &str = env!("CARGO_BIN_EXE_spook");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Node {
    dir: PathBuf,
    name: String,
    config: PathBuf,
    metrics: u16,
    child: Option<Child>,
}

impl Node {
    fn new(dir: &Path, name: &str, domain: &str, listen: u16, connect: &[u16]) -> Node {
        let metrics = free_port();
        let config = dir.join(format!("{name}.toml"));
        let connect: Vec<String> = connect.iter().map(|p| format!("\"tcp/127.0.0.1:{p}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "[node]\nledger = \"{d}/{name}.spookdb\"\ndomain = \"{domain}\"\ncontrol = \"{d}/{name}.sock\"\nlog = \"warn\"\n\n[zenoh]\nlisten = [\"tcp/127.0.0.1:{listen}\"]\nconnect = [{}]\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[timing]\ndigest_interval_ms = 100\ndecohere_after_ms = 60000\nrejoin_after_ms = 3000\n",
                connect.join(", "),
                d = dir.display()
            ),
        )
        .unwrap();
        Node { dir: dir.to_path_buf(), name: name.into(), config, metrics, child: None }
    }

    fn spook(&self, args: &[&str]) -> Result<Json, String> {
        let out = Command::new(SPOOK).arg("--config").arg(&self.config).arg("--json").args(args).output().unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    fn start(&mut self) {
        let mut child = Command::new(SPOOKD).arg("--config").arg(&self.config).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(" up;"), "{}: {line}", self.name);
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let _ = std::fs::remove_file(self.dir.join(format!("{}.sock", self.name)));
    }

    fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {within:?}: {what}");
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spook-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.split_whitespace().last()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn battery(n: &Node, reg: &str) -> Option<f64> {
    n.spook(&["get", "fleet", reg, "battery"]).ok().and_then(|j| j["value"].as_f64())
}

#[test]
fn two_nodes_converge_and_a_killed_node_recovers_from_its_ledger() {
    let d = dir("pair");
    let domain = format!("t{}", std::process::id());
    let (pa, pb) = (free_port(), free_port());
    let mut a = Node::new(&d, "a", &domain, pa, &[]);
    let mut b = Node::new(&d, "b", &domain, pb, &[pa]);
    let ida = a.spook(&["init"]).unwrap()["id"].as_str().unwrap().to_string();
    let idb = b.spook(&["init"]).unwrap()["id"].as_str().unwrap().to_string();
    a.spook(&["allow", &idb, "--name", "b"]).unwrap();
    b.spook(&["allow", &ida, "--name", "a"]).unwrap();
    a.start();
    b.start();
    // Pair first (through another group), so A hands over its "fleet" key before B has
    // joined "fleet": B must still get it once it joins.
    let warm = a.spook(&["group", "create", "warmup", "--member", &idb]).unwrap();
    b.spook(&["group", "join", warm["invite"].as_str().unwrap()]).unwrap();
    eventually("A and B paired", Duration::from_secs(15), || metric(&a.metrics(), "spook_handshakes_total") > 0);
    let created = a.spook(&["group", "create", "fleet", "--member", &idb]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let invite = created["invite"].as_str().unwrap().to_string();
    b.spook(&["group", "join", &invite]).unwrap();
    a.spook(&["set", "fleet", "1", "battery", "0.5"]).unwrap();
    eventually("B sees A's write", Duration::from_secs(15), || battery(&b, "1") == Some(0.5));

    // kill -9 B; A keeps writing; B comes back from its ledger and gets only what it missed.
    b.kill9();
    for r in 2..=6 {
        a.spook(&["set", "fleet", &r.to_string(), "battery", &format!("0.{r}")]).unwrap();
    }
    b.start();
    assert_eq!(battery(&b, "1"), Some(0.5), "B's state survived SIGKILL in its ledger");
    eventually("B re-aligns", Duration::from_secs(15), || battery(&b, "6") == Some(0.6));
    eventually("equal state hashes", Duration::from_secs(15), || {
        let (sa, sb) = (a.spook(&["status"]).unwrap(), b.spook(&["status"]).unwrap());
        sa["groups"][0]["state_hash"] == sb["groups"][0]["state_hash"]
    });
    // A committed view: both members acknowledged.
    eventually("committed at B", Duration::from_secs(15), || {
        b.spook(&["get", "fleet", "6", "battery", "--committed"]).ok().and_then(|j| j["value"].as_f64()) == Some(0.6)
    });
    let m = a.metrics();
    assert!(metric(&m, "spook_frames_out_total") > 0, "{m}");
    assert!(metric(&m, "spook_handshakes_total") > 0, "{m}");
    assert!(m.contains("spook_commit_latency_ms_bucket"), "{m}");
    let mb = b.metrics();
    assert!(metric(&mb, "spook_realignments_total") + metric(&mb, "spook_deltas_in_total") > 0, "{mb}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_input_is_refused_clearly_and_the_node_keeps_running() {
    let d = dir("bad");
    let domain = format!("b{}", std::process::id());
    let pa = free_port();
    let mut a = Node::new(&d, "a", &domain, pa, &[]);
    a.spook(&["init"]).unwrap();
    // A member that never runs, so A publishes its frames on the group's key.
    let ghost = spook_core::EndpointId([9; 32]).to_string();
    a.spook(&["allow", &ghost]).unwrap();
    a.start();
    a.spook(&["group", "create", "fleet", "--member", &ghost]).unwrap();

    // Malformed CLI input: clear errors.
    let e = a.spook(&["set", "fleet", "1", "battery", "full"]).unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    let e = a.spook(&["set", "fleet", "1", "battery", "\"full\""]).unwrap_err();
    assert!(e.contains("battery") && e.contains("expected a number"), "{e}");
    let e = a.spook(&["set", "fleet", "1", "batery", "0.5"]).unwrap_err();
    assert!(e.contains("no field") && e.contains("battery"), "{e}");
    let e = a.spook(&["set", "nope", "1", "battery", "0.5"]).unwrap_err();
    assert!(e.contains("no group"), "{e}");
    let big = format!("\"{}\"", "x".repeat(100_000));
    let e = a.spook(&["set", "fleet", "1", "owner", &big]).unwrap_err();
    assert!(e.contains("exceeds") || e.contains("large"), "an oversized value is refused: {e}");

    // A malformed line on the control socket gets an error; the connection and node go on.
    let mut s = std::os::unix::net::UnixStream::connect(d.join("a.sock")).unwrap();
    s.write_all(b"{not json\n{\"op\":\"id\"}\n").unwrap();
    let mut r = BufReader::new(s);
    let mut l1 = String::new();
    r.read_line(&mut l1).unwrap();
    assert!(l1.contains("\"ok\":false") && l1.contains("bad request"), "{l1}");
    let mut l2 = String::new();
    r.read_line(&mut l2).unwrap();
    assert!(l2.contains("\"ok\":true"), "{l2}");

    // Garbage on the group's key expression and on A's pair key, from a zenoh peer.
    let mut cfg = zenoh::Config::default();
    cfg.insert_json5("mode", "\"peer\"").unwrap();
    cfg.insert_json5("connect/endpoints", &format!("[\"tcp/127.0.0.1:{pa}\"]")).unwrap();
    cfg.insert_json5("listen/endpoints", "[\"tcp/127.0.0.1:0\"]").unwrap();
    cfg.insert_json5("scouting/multicast/enabled", "false").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let z = zenoh::open(cfg).await.unwrap();
        let sub = z.declare_subscriber(format!("spook/{domain}/g/**")).await.unwrap();
        a.spook(&["set", "fleet", "1", "battery", "0.5"]).unwrap();
        let sample = tokio::time::timeout(Duration::from_secs(10), sub.recv_async()).await.expect("A publishes on its group key").unwrap();
        let key = sample.key_expr().as_str().to_string();
        let payload = sample.payload().to_bytes().to_vec();
        // The frame on the wire carries no plaintext value or field name.
        assert!(!payload.windows(7).any(|w| w == b"battery"));
        for junk in [vec![], vec![0u8; 3], vec![0xff; 200], payload.clone()] {
            z.put(&key, junk).await.unwrap();
        }
        let mut flipped = payload.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        z.put(&key, flipped).await.unwrap();
        z.put(format!("spook/{domain}/p/0000000000000000"), vec![1u8; 64]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        z.close().await.unwrap();
    });
    let st = a.spook(&["status"]).unwrap();
    let rejected: u64 = st["rejected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(rejected >= 5, "garbage, a replay and a tampered frame are counted: {st}");
    // Still running, still writing.
    a.spook(&["set", "fleet", "2", "battery", "0.25"]).unwrap();
    assert_eq!(battery(&a, "2"), Some(0.25));
    assert!(a.metrics().contains("spook_rejected_total{reason="));

    // A bad config: a clear error and a non-zero exit.
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[node]\nledgr = \"x\"\n").unwrap();
    let out = Command::new(SPOOKD).arg("--config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("ledgr"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
