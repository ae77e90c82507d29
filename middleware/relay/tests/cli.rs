//! The `spook-relay` binary: its startup line, a datagram through it and back, its stats
//! lines, and exit status 2 on bad arguments. All sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spook-relay");

/// Kills the child on drop, so a failing test leaves no relay behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prints_its_address_relays_and_reports() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    upstream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let to = upstream.local_addr().unwrap();
    let child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--to", &to.to_string(), "--delay-ms=30", "--jitter-ms", "10"])
        .args(["--seed", "7", "--stats-every-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let first = lines.recv_timeout(Duration::from_secs(5)).expect("no startup line within 5 s");
    let prefix = "spook-relay: listening on ";
    let rest = first.strip_prefix(prefix).unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let (listen, tail) = rest.split_once(" -> ").unwrap();
    assert_eq!(tail, format!("{to} (loss 0%, dup 0%, delay 30±10 ms, seed 7)"));
    let listen: SocketAddr = listen.parse().unwrap();
    assert_eq!(listen.ip().to_string(), "127.0.0.1");
    assert_ne!(listen.port(), 0, "the line shows the bound port");

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let sent = Instant::now();
    client.send_to(b"ping", listen).unwrap();
    let mut buf = [0u8; 64];
    let (len, via) = upstream.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"ping");
    assert!(sent.elapsed() >= Duration::from_millis(20), "one way took only {:?}", sent.elapsed());
    upstream.send_to(b"pong", via).unwrap();
    let (len, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..len], from), (&b"pong"[..], listen));
    assert!(sent.elapsed() >= Duration::from_millis(40), "round trip took only {:?}", sent.elapsed());

    let deadline = Instant::now() + Duration::from_secs(3);
    let stats = loop {
        let line = lines.recv_timeout(Duration::from_secs(1)).expect("no stats line");
        if line.contains("down received=1 ") || Instant::now() > deadline {
            break line;
        }
    };
    assert!(stats.starts_with("spook-relay: stats up received=1 dropped=0 duplicated=0 overflowed=0 delivered=1 "), "{stats}");
    assert!(stats.contains("clients=1 "), "{stats}");
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    for (args, reason) in [
        (&[][..], "--listen ADDR is required"),
        (&["--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--loss", "120"][..], "loss percentage 120 is outside 0..=100"),
        (&["--listen", "127.0.0.1:0", "--to", "nowhere"][..], "--to 'nowhere': expected an IP:PORT address"),
        (&["--bogus"][..], "unknown argument '--bogus'"),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: spook-relay --listen ADDR --to ADDR"), "{stderr}");
    }
}

#[test]
fn help_explains_every_option_with_its_default() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for option in ["--listen", "--to", "--loss", "--dup", "--delay-ms", "--jitter-ms", "--seed", "--stats-every-ms"] {
        assert!(stdout.contains(&format!("  {option} ")), "--help lacks {option}");
    }
    assert_eq!(stdout.matches("[default: 0]").count(), 6);
}

#[test]
fn a_busy_port_exits_1() {
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = run(&["--listen", &busy_addr, "--to", "127.0.0.1:9"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.starts_with(&format!("spook-relay: cannot relay {busy_addr} -> 127.0.0.1:9: ")), "{stderr}");
}
