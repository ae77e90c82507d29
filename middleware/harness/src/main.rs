//! `spook-harness`: one Spook endpoint (a replica of a two-member group, its SpookDB ledger, an
//! IK pair channel and group sender keys) talking to one peer over a Unix socket. It exists so
//! the secure channel and the ledger can be tested as real processes (SIGKILL, restarts,
//! captures) before the zenoh node does; it is not a product binary.
//!
//! Stdout is line-oriented for tests: `restored own <n> hash <h>`, `durable <seq>`,
//! `hash <h> own <n> peer <m>`, `silent <reason>`, `writes-done`, `final hash <h> ...`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use spook_core::{EndpointId, GroupConfig, GroupId, RegisterId, Replica, Schema, Value};
use spook_ledger::{GroupStore, Ledger, LocalWriteError};
use spook_secure::{AllowList, GroupCrypto, GroupKeys, HelloGuard, Identity, Initiator, KeyAnnouncement, PairChannel, PeerEntry};

const USAGE: &str = "\
spook-harness: a Spook endpoint over a Unix socket, for two-process tests

USAGE:
    spook-harness init  --ledger PATH              create an identity; prints `id <hex>`
    spook-harness id    --ledger PATH              print `id <hex>`
    spook-harness allow --ledger PATH --peer HEX   add a peer to the allow-list
    spook-harness run   --ledger PATH --peer HEX (--listen SOCK | --connect SOCK) [options]
    spook-harness probe --connect SOCK --peer HEX [--garbage] [--wait-ms N]
                        send a hello from a fresh, unknown identity (or garbage) and report
                        whether anything came back

RUN OPTIONS:
    --write-every-ms N   write one value every N ms (default 5)
    --writes N           stop writing after N writes (default: never)
    --run-ms N           exit after N ms, printing `final hash ...` (default: never)
    --capture FILE       append every received frame's clear header and bytes to FILE
    --compact-every N    compact the ledger after every N durable batches (default 200)
";

/// Kinds of harness messages on the socket (each is u32-BE-length framed).
const GROUP_FRAME: u8 = 0x20;
/// Kinds of plaintext inside the pair channel.
const KEY_ANNOUNCEMENT: u8 = b'K';

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let cmd = args.remove(0);
    let mut opts: BTreeMap<String, String> = BTreeMap::new();
    let mut it = args.into_iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else { bail!("unexpected argument '{k}'\n\n{USAGE}") };
        if name == "garbage" {
            opts.insert(name.into(), String::new());
            continue;
        }
        let v = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
        opts.insert(name.into(), v);
    }
    let get = |k: &str| opts.get(k).cloned().ok_or_else(|| anyhow!("--{k} is required\n\n{USAGE}"));
    let num = |k: &str, d: u64| -> Result<u64> { opts.get(k).map_or(Ok(d), |v| v.parse().with_context(|| format!("--{k}: '{v}' is not a number"))) };
    match cmd.as_str() {
        "init" => {
            let mut l = Ledger::open(get("ledger")?)?;
            if l.identity()?.is_some() {
                bail!("{} already has an identity", l.path().display());
            }
            let id = Identity::generate();
            l.set_identity(&id.to_bytes())?;
            println!("id {}", hex(&id.id().0));
            Ok(())
        }
        "id" => {
            let l = Ledger::open(get("ledger")?)?;
            println!("id {}", hex(&load_identity(&l)?.id().0));
            Ok(())
        }
        "allow" => {
            let mut l = Ledger::open(get("ledger")?)?;
            let peer = parse_id(&get("peer")?)?;
            l.put_peer(&peer, &PeerEntry { id: peer, signing: None, name: String::new() }.to_stored())?;
            println!("allowed {}", hex(&peer.0));
            Ok(())
        }
        "run" => run(RunOpts {
            ledger: get("ledger")?.into(),
            listen: opts.get("listen").map(PathBuf::from),
            connect: opts.get("connect").map(PathBuf::from),
            peer: parse_id(&get("peer")?)?,
            write_every_ms: num("write-every-ms", 5)?.max(1),
            writes: num("writes", u64::MAX)?,
            run_ms: num("run-ms", u64::MAX)?,
            capture: opts.get("capture").map(PathBuf::from),
            compact_every: num("compact-every", 200)?.max(1),
        }),
        "probe" => probe(Path::new(&get("connect")?), parse_id(&get("peer")?)?, opts.contains_key("garbage"), num("wait-ms", 1000)?),
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

struct RunOpts {
    ledger: PathBuf,
    listen: Option<PathBuf>,
    connect: Option<PathBuf>,
    peer: EndpointId,
    write_every_ms: u64,
    writes: u64,
    run_ms: u64,
    capture: Option<PathBuf>,
    compact_every: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_id(s: &str) -> Result<EndpointId> {
    let b = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| anyhow!("'{s}' is not an endpoint id (64 hex digits)"))?;
    let mut id = [0u8; 32];
    id.copy_from_slice(&b);
    Ok(EndpointId(id))
}

fn load_identity(l: &Ledger) -> Result<Identity> {
    let b = l.identity()?.ok_or_else(|| anyhow!("{} has no identity: run `spook-harness init` first", l.path().display()))?;
    Ok(Identity::from_bytes(&b)?)
}

/// The group both harness processes share: two members, the fleet schema, a fixed genesis.
fn group_config(a: EndpointId, b: EndpointId) -> GroupConfig {
    let mut members = vec![a, b];
    members.sort();
    GroupConfig::new(GroupId(*b"spook-harness-g1"), Schema::fleet(), 1_700_000_000_000, members)
}

// ---------------------------------------------------------------- socket plumbing

enum Incoming {
    Conn(u64, UnixStream),
    Msg(u64, Vec<u8>),
    Closed(u64),
}

fn send(out: &mut UnixStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(msg.len()).map_err(|_| std::io::Error::other("message too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(msg)
}

const MAX_MESSAGE: usize = 4 << 20;

fn reader(conn: u64, mut s: UnixStream, tx: Sender<Incoming>) {
    std::thread::spawn(move || {
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                break;
            }
            let n = u32::from_be_bytes(len) as usize;
            if n > MAX_MESSAGE {
                break;
            }
            let mut buf = vec![0u8; n];
            if s.read_exact(&mut buf).is_err() || tx.send(Incoming::Msg(conn, buf)).is_err() {
                break;
            }
        }
        let _ = tx.send(Incoming::Closed(conn));
    });
}

fn listen(path: &Path, tx: Sender<Incoming>) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(s) = s else { continue };
            let Ok(r) = s.try_clone() else { continue };
            // The connection is announced before its reader starts, so no message of it can
            // arrive before it.
            if tx.send(Incoming::Conn(n as u64, s)).is_err() {
                break;
            }
            reader(n as u64, r, tx.clone());
        }
    });
    Ok(())
}

fn connect(path: &Path, conn: u64, tx: &Sender<Incoming>) -> Option<UnixStream> {
    let s = UnixStream::connect(path).ok()?;
    let r = s.try_clone().ok()?;
    reader(conn, r, tx.clone());
    Some(s)
}

// ---------------------------------------------------------------- the endpoint

enum LinkState {
    AwaitHello,
    AwaitReply(Box<Initiator>),
    Up(Box<PairChannel>),
}

struct Link {
    conn: u64,
    out: UnixStream,
    state: LinkState,
}

struct Endpoint {
    me: Identity,
    cfg: GroupConfig,
    ledger: Ledger,
    store: GroupStore,
    replica: Replica,
    keys: GroupKeys,
    allow: AllowList,
    guard: HelloGuard,
    link: Option<Link>,
    capture: Option<std::fs::File>,
    silent: u64,
    rejected: u64,
    /// Print every frame sent and received (SPOOK_HARNESS_TRACE=1).
    trace: bool,
}

impl Endpoint {
    fn send_group(&mut self, frame: &[u8]) {
        if self.trace {
            println!("tx kind {} bytes {} link {}", frame.get(1).copied().unwrap_or(0), frame.len(), self.link.as_ref().is_some_and(|l| matches!(l.state, LinkState::Up(_))));
        }
        let Some(link) = self.link.as_mut() else { return };
        if !matches!(link.state, LinkState::Up(_)) {
            return;
        }
        let Ok(ct) = self.keys.seal(&self.me, frame) else { return };
        let mut msg = Vec::with_capacity(ct.len() + 1);
        msg.push(GROUP_FRAME);
        msg.extend_from_slice(&ct);
        if send(&mut link.out, &msg).is_err() {
            self.link = None;
        }
    }

    fn link_up(&mut self, chan: PairChannel) -> Result<()> {
        let Some(link) = self.link.as_mut() else { return Ok(()) };
        link.state = LinkState::Up(Box::new(chan));
        // Hand our sender key over the pair channel, first thing.
        let mut pt = vec![KEY_ANNOUNCEMENT];
        pt.extend_from_slice(&self.keys.announcement().encode());
        if let LinkState::Up(chan) = &mut link.state {
            let msg = chan.seal(&pt)?;
            if send(&mut link.out, &msg).is_err() {
                self.link = None;
            }
        }
        Ok(())
    }

    /// A handshake finished (either side): pin the peer's signing key, bring the link up.
    fn established(&mut self, est: spook_secure::Established) -> Result<()> {
        self.remember_signing(est.peer, est.peer_signing)?;
        self.link_up(est.channel)
    }

    fn remember_signing(&mut self, peer: EndpointId, signing: [u8; 32]) -> Result<()> {
        if self.allow.get(&peer).is_some_and(|e| e.signing.is_none()) {
            let mut e = self.allow.get(&peer).cloned().ok_or_else(|| anyhow!("peer vanished from the allow-list"))?;
            e.signing = Some(signing);
            self.ledger.put_peer(&peer, &e.to_stored())?;
            self.allow.allow(e);
        }
        Ok(())
    }

    fn capture_line(&mut self, line: &str) {
        if let Some(f) = self.capture.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    fn on_message(&mut self, msg: Vec<u8>, now: u64) -> Result<()> {
        let Some(&kind) = msg.first() else { return Ok(()) };
        match kind {
            spook_secure::HELLO => {
                match spook_secure::respond(&self.me, &self.allow, &mut self.guard, &msg) {
                    Ok((est, reply)) => {
                        if let Some(link) = self.link.as_mut() {
                            if send(&mut link.out, &reply).is_err() {
                                self.link = None;
                                return Ok(());
                            }
                        }
                        self.established(est)?;
                    }
                    Err(why) => {
                        // WireGuard's rule: no reply at all.
                        self.silent += 1;
                        println!("silent {why}");
                    }
                }
            }
            spook_secure::REPLY => {
                let Some(link) = self.link.as_mut() else { return Ok(()) };
                let init = match std::mem::replace(&mut link.state, LinkState::AwaitHello) {
                    LinkState::AwaitReply(init) => init,
                    other => {
                        link.state = other;
                        self.rejected += 1;
                        return Ok(());
                    }
                };
                match init.finish(&msg) {
                    Ok(est) => self.established(est)?,
                    Err(e) => {
                        self.rejected += 1;
                        println!("rejected handshake: {e}");
                    }
                }
            }
            spook_secure::DATA => {
                let Some(link) = self.link.as_mut() else { return Ok(()) };
                let LinkState::Up(chan) = &mut link.state else { return Ok(()) };
                let fp = hex(&chan.recv_fingerprint());
                let nonce = PairChannel::nonce_of(&msg).unwrap_or(u64::MAX);
                let opened = chan.open(&msg);
                self.capture_line(&format!("pair {fp} {nonce}"));
                match opened {
                    Ok(pt) if pt.first() == Some(&KEY_ANNOUNCEMENT) => {
                        let ann = KeyAnnouncement::decode(&pt[1..])?;
                        let peer = self.link_peer();
                        let signing = self.allow.get(&peer).and_then(|e| e.signing).ok_or_else(|| anyhow!("no signing key for the peer"))?;
                        self.keys.install(peer, ann.clone(), signing, now)?;
                        self.ledger.put_sender_key(&self.cfg.group, ann.key_id, &ann.encode())?;
                    }
                    Ok(_) => self.rejected += 1,
                    Err(e) => {
                        self.rejected += 1;
                        println!("rejected pair message: {e}");
                    }
                }
            }
            GROUP_FRAME => {
                let ct = &msg[1..];
                match self.keys.open(ct, now) {
                    Ok(o) => {
                        if self.trace {
                            println!("rx kind {} bytes {}", o.frame.get(1).copied().unwrap_or(0), o.frame.len());
                        }
                        self.capture_line(&format!("frame {} {} {} {}", hex(&o.key_fingerprint), o.header.salt, o.header.counter, hex(ct)));
                        self.replica.handle_frame(o.origin, &o.frame, now);
                    }
                    Err(e) => {
                        self.rejected += 1;
                        self.capture_line(&format!("rejected {e} {}", hex(ct)));
                    }
                }
            }
            _ => self.rejected += 1,
        }
        Ok(())
    }

    fn link_peer(&self) -> EndpointId {
        self.replica.config().members.iter().copied().find(|m| *m != self.me.id()).unwrap_or(self.me.id())
    }

    /// Persist, send, report: everything the replica asked for after an input.
    fn drain(&mut self, now: u64, durable_reported: &mut u64, batches: &mut u64, compact_every: u64) -> Result<()> {
        match self.store.pump(&mut self.ledger, &mut self.replica, now) {
            Ok(n) if n > 0 => {
                *batches += n as u64;
                let own = self.replica.context().of(&self.me.id()).map_or(0, spook_core::IntervalSet::max);
                if own > *durable_reported {
                    *durable_reported = own;
                    println!("durable {own}");
                }
                if *batches % compact_every < n as u64 {
                    self.store.compact(&mut self.ledger, &self.replica)?;
                }
            }
            Ok(_) => {}
            Err(e) => println!("ledger error: {e}"),
        }
        while let Some(t) = self.replica.poll_transmit() {
            self.send_group(&t.bytes);
        }
        while self.replica.poll_event().is_some() {}
        Ok(())
    }
}

fn run(o: RunOpts) -> Result<()> {
    let ledger = Ledger::open(&o.ledger)?;
    let me = load_identity(&ledger)?;
    let mut allow = AllowList::default();
    for (id, bytes) in ledger.peers()? {
        allow.allow(PeerEntry::from_stored(id, &bytes).ok_or_else(|| anyhow!("a stored peer entry is malformed"))?);
    }
    if !allow.contains(&o.peer) {
        bail!("peer {} is not on the allow-list of {}: run `spook-harness allow` first", hex(&o.peer.0), o.ledger.display());
    }
    let cfg = group_config(me.id(), o.peer);
    let start = Instant::now();
    let now = now_ms();
    let replica = Replica::restore(me.id(), cfg.clone(), &ledger.load(&cfg)?, now);
    let own = replica.context().of(&me.id()).map_or(0, spook_core::IntervalSet::max);
    println!("restored own {own} hash {}", hex(&replica.state_hash().short()));
    // A fresh sender key at every start: never resumed, so a restart cannot reuse a nonce.
    let keys = GroupKeys::new(cfg.group, me.id(), u32::try_from(now / 1000).unwrap_or(u32::MAX), GroupCrypto { trusted_members: false, grace_ms: 10_000 }, &mut rand_core::OsRng);
    let capture = match &o.capture {
        Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("cannot open capture file {}", p.display()))?),
        None => None,
    };
    let mut ep = Endpoint {
        store: GroupStore::new(cfg.clone()),
        cfg,
        ledger,
        replica,
        keys,
        allow,
        guard: HelloGuard::default(),
        link: None,
        capture,
        silent: 0,
        rejected: 0,
        trace: std::env::var_os("SPOOK_HARNESS_TRACE").is_some(),
        me,
    };
    let (tx, rx): (Sender<Incoming>, Receiver<Incoming>) = mpsc::channel();
    if let Some(p) = &o.listen {
        listen(p, tx.clone())?;
    } else if o.connect.is_none() {
        bail!("give --listen SOCK or --connect SOCK");
    }
    let mut next_conn = 1_000_000u64;
    let mut next_connect_at = 0u64;
    let mut next_write = now;
    let mut writes = 0u64;
    let mut durable_reported = own;
    let mut batches = 0u64;
    let mut last_hash = None;
    let mut next_hash_at = 0;
    let schema = ep.cfg.schema.clone();
    let battery = schema.field_id("battery").ok_or_else(|| anyhow!("schema has no battery"))?;
    let owner = schema.field_id("owner").ok_or_else(|| anyhow!("schema has no owner"))?;
    loop {
        let now = now_ms();
        if start.elapsed() >= Duration::from_millis(o.run_ms) {
            break;
        }
        // Connect (initiator side) when there is no link.
        if let (Some(p), None) = (&o.connect, &ep.link) {
            if now >= next_connect_at {
                next_connect_at = now + 50;
                next_conn += 1;
                if let Some(mut s) = connect(p, next_conn, &tx) {
                    let (init, hello) = Initiator::start(&ep.me, o.peer, now)?;
                    if send(&mut s, &hello).is_ok() {
                        ep.link = Some(Link { conn: next_conn, out: s, state: LinkState::AwaitReply(Box::new(init)) });
                    }
                }
            }
        }
        // Write.
        if writes < o.writes && now >= next_write {
            next_write = now + o.write_every_ms;
            writes += 1;
            let reg = RegisterId((writes % 16) as u32);
            let res = if writes % 2 == 0 {
                ep.store.set(&mut ep.replica, now, reg, battery, Value::F64(writes as f64 / 1000.0))
            } else {
                ep.store.set(&mut ep.replica, now, reg, owner, Value::Str(format!("SECRET-VALUE-{writes}")))
            };
            match res {
                Ok(_) => {}
                Err(LocalWriteError::StorageUnavailable(e)) => println!("write refused: {e}"),
                Err(e) => bail!("write refused: {e}"),
            }
            if writes == o.writes {
                println!("writes-done");
            }
        }
        let wake = ep.replica.poll_timeout().min(next_write).min(now + 20).max(now + 1);
        match rx.recv_timeout(Duration::from_millis(wake - now)) {
            Ok(Incoming::Conn(c, s)) => {
                // A listener keeps one link: the newest connection replaces an older one.
                ep.link = Some(Link { conn: c, out: s, state: LinkState::AwaitHello });
            }
            Ok(Incoming::Msg(c, m)) => {
                if ep.link.as_ref().is_some_and(|l| l.conn == c) {
                    ep.on_message(m, now_ms())?;
                }
            }
            Ok(Incoming::Closed(c)) => {
                if ep.link.as_ref().is_some_and(|l| l.conn == c) {
                    ep.link = None;
                }
            }
            Err(_) => {}
        }
        let now = now_ms();
        ep.replica.handle_timeout(now);
        ep.drain(now, &mut durable_reported, &mut batches, o.compact_every)?;
        if now >= next_hash_at {
            next_hash_at = now + 100;
            let h = ep.replica.state_hash().short();
            if last_hash != Some(h) {
                last_hash = Some(h);
                let peer = ep.replica.context().of(&o.peer).map_or(0, spook_core::IntervalSet::max);
                let own = ep.replica.context().of(&ep.me.id()).map_or(0, spook_core::IntervalSet::max);
                println!("hash {} own {own} peer {peer}", hex(&h));
            }
        }
        std::io::stdout().flush()?;
    }
    let own = ep.replica.context().of(&ep.me.id()).map_or(0, spook_core::IntervalSet::max);
    let peer = ep.replica.context().of(&o.peer).map_or(0, spook_core::IntervalSet::max);
    println!(
        "final hash {} own {own} peer {peer} silent {} rejected {}",
        hex(&ep.replica.state_hash().short()),
        ep.silent,
        ep.rejected
    );
    Ok(())
}

fn probe(path: &Path, peer: EndpointId, garbage: bool, wait_ms: u64) -> Result<()> {
    let mut s = UnixStream::connect(path).with_context(|| format!("cannot connect to {}", path.display()))?;
    let msg = if garbage {
        let mut m = vec![spook_secure::HELLO];
        m.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        m
    } else {
        let stranger = Identity::generate();
        Initiator::start(&stranger, peer, now_ms())?.1
    };
    send(&mut s, &msg)?;
    s.set_read_timeout(Some(Duration::from_millis(wait_ms)))?;
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(n) if n > 0 => println!("reply"),
        _ => println!("no reply"),
    }
    Ok(())
}
