//! Shared by the node tests: real `spookd` processes driven by the real `spook` CLI.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part; tests fail loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub(crate) const SPOOKD: &str = env!("CARGO_BIN_EXE_spookd");
pub(crate) const SPOOK: &str = env!("CARGO_BIN_EXE_spook");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Fast digests; decoherence off (tests that need it give their own).
pub(crate) const TIMING: &str = "digest_interval_ms = 100\ndecohere_after_ms = 60000\nrejoin_after_ms = 3000\n";

pub(crate) struct Node {
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
    pub(crate) config: PathBuf,
    /// Its zenoh listen locator (where a remote client connects).
    pub(crate) listen: String,
    /// Its metrics port, as its last start said (the node picks a free one: a port chosen
    /// here could be taken by another test before the node binds it).
    pub(crate) metrics: u16,
    /// Runs spookd inside this (e.g. `ip netns exec ns`).
    pub(crate) wrapper: Vec<String>,
    pub(crate) child: Option<Child>,
}

impl Node {
    /// A node on loopback TCP: listening on `listen`, connecting to `connect`.
    pub(crate) fn new(dir: &Path, name: &str, domain: &str, listen: u16, connect: &[u16]) -> Node {
        let connect: Vec<String> = connect.iter().map(|p| format!("tcp/127.0.0.1:{p}")).collect();
        Node::with(dir, name, domain, &format!("tcp/127.0.0.1:{listen}"), &connect, TIMING, &[])
    }

    /// Any locators and `[timing]` section; `spookd` runs inside `wrapper` (e.g. `ip netns exec
    /// ns`).
    pub(crate) fn with(dir: &Path, name: &str, domain: &str, listen: &str, connect: &[String], timing: &str, wrapper: &[&str]) -> Node {
        let config = dir.join(format!("{name}.toml"));
        let connect: Vec<String> = connect.iter().map(|c| format!("\"{c}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "[node]\nledger = \"{d}/{name}.spookdb\"\ndomain = \"{domain}\"\ncontrol = \"{d}/{name}.sock\"\nlog = \"warn\"\n\n[zenoh]\nlisten = [\"{listen}\"]\nconnect = [{}]\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[timing]\n{timing}",
                connect.join(", "),
                d = dir.display()
            ),
        )
        .unwrap();
        Node { dir: dir.to_path_buf(), name: name.into(), config, listen: listen.to_string(), metrics: 0, wrapper: wrapper.iter().map(ToString::to_string).collect(), child: None }
    }

    pub(crate) fn spook(&self, args: &[&str]) -> Result<Json, String> {
        let out = Command::new(SPOOK).arg("--config").arg(&self.config).arg("--json").args(args).output().unwrap();
        if !out.status.success() {
            // stdout too: `tx` prints its JSON answer and exits 3 when it aborted.
            return Err(format!("{}{}", String::from_utf8_lossy(&out.stderr).trim(), String::from_utf8_lossy(&out.stdout).trim()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    pub(crate) fn start(&mut self) {
        let mut cmd = match self.wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(SPOOKD);
                c
            }
            None => Command::new(SPOOKD),
        };
        // SPOOK_NODE_LOGS=DIR: each node's log in DIR/<name>.log (appended), for a run to study.
        let stderr = match std::env::var_os("SPOOK_NODE_LOGS") {
            Some(d) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&d).join(format!("{}.log", self.name))).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = cmd.arg("--config").arg(&self.config).stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(" up;"), "{}: {line}", self.name);
        if let Some(port) = line.split("metrics http://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok()) {
            self.metrics = port;
        }
        self.child = Some(child);
    }

    pub(crate) fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let _ = std::fs::remove_file(self.dir.join(format!("{}.sock", self.name)));
    }

    pub(crate) fn metrics(&self) -> String {
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

/// The lines `child` prints on its piped stdout, as they come (read on a thread of their own).
pub(crate) fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Send `sig` (e.g. `-STOP`) to process `pid`.
pub(crate) fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success(), "kill {sig} {pid}");
}

pub(crate) fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {within:?}: {what}");
}

pub(crate) fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spook-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.split_whitespace().last()).and_then(|v| v.parse().ok()).unwrap_or(0)
}


/// Record a skipped real-part test; under `CI=true` a skip is a failure.
pub(crate) fn skip(test: &str, why: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test} cannot run under CI=true: {why}");
    eprintln!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("SPOOK_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// Give every node an identity, allow each other, start them all: their endpoint ids.
/// `n` nodes on loopback TCP named n0, n1, …; each dials the ones before it. `timing(i)` is
/// node i's `[timing]` section (and anything after it).
pub(crate) fn loopback_chain(dir: &Path, domain: &str, n: usize, timing: impl Fn(usize) -> String) -> Vec<Node> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let loc = |p: u16| format!("tcp/127.0.0.1:{p}");
    (0..n)
        .map(|i| {
            let connect: Vec<String> = ports[..i].iter().map(|p| loc(*p)).collect();
            Node::with(dir, &format!("n{i}"), domain, &loc(ports[i]), &connect, &timing(i), &[])
        })
        .collect()
}

/// The domain key's token of `node` (`spook domain-key`).
pub(crate) fn domain_key(node: &Node) -> String {
    node.spook(&["domain-key"]).unwrap()["token"].as_str().unwrap().to_string()
}

/// `spook init` on every node, all in the domain of the first (its domain key).
pub(crate) fn init_domain(nodes: &[&Node]) -> Vec<String> {
    let first = nodes[0].spook(&["init"]).unwrap()["id"].as_str().unwrap().to_string();
    let key = domain_key(nodes[0]);
    let rest = nodes[1..].iter().map(|n| n.spook(&["init", "--domain-key", &key]).unwrap()["id"].as_str().unwrap().to_string());
    std::iter::once(first).chain(rest).collect()
}

pub(crate) fn start_domain(nodes: &mut [Node]) -> Vec<String> {
    let ids = init_domain(&nodes.iter().collect::<Vec<_>>());
    for (i, n) in nodes.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                n.spook(&["allow", id]).unwrap();
            }
        }
    }
    for n in nodes.iter_mut() {
        n.start();
    }
    ids
}

/// Node 0 creates group `name` of all the nodes; the others join with its invite.
pub(crate) fn form_group(nodes: &[Node], ids: &[String], name: &str, serial: bool) {
    form_group_with(nodes, ids, name, if serial { &["--serial"] } else { &[] });
}

/// As [`form_group`], with further `group create` options (`--serial`, `--trusted-members`).
pub(crate) fn form_group_with(nodes: &[Node], ids: &[String], name: &str, options: &[&str]) {
    let mut args = vec!["group", "create", name];
    for id in &ids[1..] {
        args.extend(["--member", id.as_str()]);
    }
    args.extend(options);
    let created = nodes[0].spook(&args).unwrap();
    for n in &nodes[1..] {
        n.spook(&["group", "join", created["invite"].as_str().unwrap()]).unwrap();
    }
}
