//! The relay over real UDP sockets, all on 127.0.0.1: an echo server upstream, a client
//! sending numbered datagrams through the relay, and assertions on counts, order, replies and
//! delays. Every loop is bounded in count and time.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use spook_relay::{Impairment, Limits, Relay, RelayHandle, RelayStats};

const LOCALHOST: &str = "127.0.0.1:0";
const POLL: Duration = Duration::from_millis(20);

/// The seed of a randomized test: `SPOOK_SEED` if set, else fresh; printed either way.
fn test_seed() -> u64 {
    let seed = match std::env::var("SPOOK_SEED") {
        Ok(s) => s.parse().expect("SPOOK_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("seed {seed} (re-run with SPOOK_SEED={seed})");
    seed
}

fn localhost_socket() -> UdpSocket {
    let socket = UdpSocket::bind(LOCALHOST).unwrap();
    socket.set_read_timeout(Some(POLL)).unwrap();
    socket
}

/// A datagram: sequence number and send time (nanoseconds since the test's epoch), padded.
fn datagram(seq: u32, sent_ns: u64) -> [u8; 32] {
    let mut d = [0xA5; 32];
    d[..4].copy_from_slice(&seq.to_le_bytes());
    d[4..12].copy_from_slice(&sent_ns.to_le_bytes());
    d
}

fn decode(d: &[u8]) -> (u32, u64) {
    assert_eq!(d.len(), 32, "datagram changed size");
    (u32::from_le_bytes(d[..4].try_into().unwrap()), u64::from_le_bytes(d[4..12].try_into().unwrap()))
}

/// One received datagram: sequence number, time since it was sent, source.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    seq: u32,
    after: Duration,
    from: SocketAddr,
}

/// A thread receiving on `socket` until stopped, recording arrivals and echoing them if asked.
struct Receiver {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(socket: UdpSocket, epoch: Instant, echo: bool) -> Self {
        let addr = socket.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (arrivals, stop) = (Arc::clone(&arrivals), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
                    let (seq, sent_ns) = decode(&buf[..len]);
                    let after = epoch.elapsed().saturating_sub(Duration::from_nanos(sent_ns));
                    arrivals.lock().unwrap().push(Arrival { seq, after, from });
                    if echo {
                        socket.send_to(&buf[..len], from).unwrap();
                    }
                }
            })
        };
        Self { addr, arrivals, stop, thread: Some(thread) }
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    fn count(&self) -> u64 {
        self.arrivals.lock().unwrap().len() as u64
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An echo server upstream, a relay to it and a client socket with its receiver.
struct Setup {
    epoch: Instant,
    echo: Receiver,
    relay: RelayHandle,
    client: UdpSocket,
    replies: Receiver,
}

fn setup(imp: Impairment, limits: Limits) -> Setup {
    let epoch = Instant::now();
    let echo = Receiver::start(localhost_socket(), epoch, true);
    let relay = Relay::spawn_with_limits(LOCALHOST.parse().unwrap(), echo.addr, imp, limits).unwrap();
    assert_eq!(relay.local_addr().ip().to_string(), "127.0.0.1");
    let client = localhost_socket();
    let replies = Receiver::start(client.try_clone().unwrap(), epoch, false);
    Setup { epoch, echo, relay, client, replies }
}

impl Setup {
    /// Sends datagrams `0..n` to the relay in bursts of `burst`, one burst every `gap`.
    fn send(&self, n: u32, burst: u32, gap: Duration) {
        for seq in 0..n {
            if seq > 0 && seq % burst == 0 {
                thread::sleep(gap);
            }
            let sent_ns = self.epoch.elapsed().as_nanos() as u64;
            self.client.send_to(&datagram(seq, sent_ns), self.relay.local_addr()).unwrap();
        }
    }

    /// Waits (at most `limit`) until the relay received `n` from the client, holds nothing,
    /// and both ends saw everything it delivered. Returns the last counters either way.
    fn settle(&self, n: u64, limit: Duration) -> RelayStats {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.relay.stats();
            let quiet = s.to_upstream.received == n
                && s.held == 0
                && self.echo.count() == s.to_upstream.delivered
                && s.to_client.received == self.echo.count()
                && self.replies.count() == s.to_client.delivered;
            if quiet || Instant::now() > deadline {
                return s;
            }
            thread::sleep(POLL);
        }
    }
}

/// How many arrivals come after one with a higher sequence number.
fn out_of_order(arrivals: &[Arrival]) -> usize {
    let mut highest = None;
    let mut count = 0;
    for a in arrivals {
        if highest.is_some_and(|h| a.seq < h) {
            count += 1;
        }
        highest = highest.max(Some(a.seq));
    }
    count
}

fn assert_fraction(what: &str, count: u64, of: u64, low: f64, high: f64) {
    let fraction = count as f64 / of as f64;
    assert!((low..=high).contains(&fraction), "{what}: {count} of {of} = {fraction:.3}, expected {low}..={high}");
}

#[test]
fn impairs_both_ways_and_relays_replies() {
    const N: u32 = 1000;
    let seed = test_seed();
    let imp = Impairment { loss_pct: 10.0, dup_pct: 5.0, delay_ms: 20, jitter_ms: 15, seed };
    let t = setup(imp, Limits::default());
    let started = Instant::now();
    t.send(N, 10, Duration::from_millis(10));
    let s = t.settle(u64::from(N), Duration::from_secs(3));
    println!("{s} after {:?}", started.elapsed());

    // Exact accounting: the relay saw everything sent, both ends saw everything it sent.
    assert_eq!(s.clients, 1);
    assert_eq!((s.rejected, s.held, s.recv_errors), (0, 0, 0));
    assert_eq!(s.to_upstream.received, u64::from(N));
    for (name, d) in [("up", s.to_upstream), ("down", s.to_client)] {
        assert_eq!((d.overflowed, d.send_errors), (0, 0), "{name}");
        assert_eq!(d.received - d.dropped + d.duplicated, d.delivered, "{name}");
    }
    let at_echo = t.echo.arrivals();
    let replies = t.replies.arrivals();
    assert_eq!(at_echo.len() as u64, s.to_upstream.delivered);
    assert_eq!(s.to_client.received, at_echo.len() as u64, "every echo reached the relay");
    assert_eq!(replies.len() as u64, s.to_client.delivered);

    // Rates: 10% loss, 5% duplicates among survivors, each way (bounds ~5 sigma).
    for (name, d) in [("up", s.to_upstream), ("down", s.to_client)] {
        assert_fraction(&format!("{name} dropped"), d.dropped, d.received, 0.05, 0.15);
        assert_fraction(&format!("{name} duplicated"), d.duplicated, d.received - d.dropped, 0.015, 0.09);
    }
    // Expected 0.9 * 1.05 twice over: 0.893 of what was sent comes back.
    assert_fraction("replies", replies.len() as u64, u64::from(N), 0.81, 0.975);
    let mut seqs: Vec<u32> = replies.iter().map(|a| a.seq).collect();
    seqs.sort_unstable();
    assert!(seqs.windows(2).any(|w| w[0] == w[1]), "some replies arrive twice");
    assert!(seqs.iter().all(|&seq| seq < N));

    // Replies come back from the relay's listen address; upstream sees the relay, not us.
    assert!(replies.iter().all(|a| a.from == t.relay.local_addr()));
    let via = at_echo[0].from;
    assert!(at_echo.iter().all(|a| a.from == via));
    assert_ne!(via, t.client.local_addr().unwrap());
    assert_ne!(via, t.relay.local_addr());
    assert_eq!(via.ip().to_string(), "127.0.0.1");

    // Jitter reorders.
    assert!(out_of_order(&at_echo) > 10, "only {} out of order upstream", out_of_order(&at_echo));
    assert!(out_of_order(&replies) > 10, "only {} out of order back", out_of_order(&replies));

    // Delay: never under delay - jitter one way (5 ms), twice that for a round trip.
    let one_way_min = at_echo.iter().map(|a| a.after).min().unwrap();
    let round_trip_min = replies.iter().map(|a| a.after).min().unwrap();
    assert!(one_way_min >= Duration::from_millis(5), "a datagram took only {one_way_min:?}");
    assert!(round_trip_min >= Duration::from_millis(10), "a round trip took only {round_trip_min:?}");
    let mean = at_echo.iter().map(|a| a.after).sum::<Duration>() / at_echo.len() as u32;
    assert!((Duration::from_millis(15)..=Duration::from_millis(40)).contains(&mean), "mean one-way delay {mean:?}, expected ~20 ms");

    let stop = Instant::now();
    let last = t.relay.stop();
    assert!(stop.elapsed() < Duration::from_secs(1), "stop took {:?}", stop.elapsed());
    assert_eq!(last.to_upstream, s.to_upstream);
}

#[test]
fn without_impairment_everything_passes_in_order_after_the_delay() {
    const N: u32 = 300;
    let imp = Impairment { delay_ms: 10, ..Impairment::default() };
    let t = setup(imp, Limits::default());
    t.send(N, 20, Duration::from_millis(5));
    let s = t.settle(u64::from(N), Duration::from_secs(2));
    println!("{s}");
    let in_order: Vec<u32> = (0..N).collect();
    let at_echo = t.echo.arrivals();
    assert_eq!(at_echo.iter().map(|a| a.seq).collect::<Vec<_>>(), in_order);
    assert_eq!(t.replies.arrivals().iter().map(|a| a.seq).collect::<Vec<_>>(), in_order);
    assert!(at_echo.iter().all(|a| a.after >= Duration::from_millis(10)));
    assert!(t.replies.arrivals().iter().all(|a| a.after >= Duration::from_millis(20)));
    assert_eq!((s.to_upstream.delivered, s.to_client.delivered), (u64::from(N), u64::from(N)));
}

#[test]
fn holds_no_more_than_the_limit() {
    let imp = Impairment { delay_ms: 300, ..Impairment::default() };
    let limits = Limits { max_held_datagrams: 10, ..Limits::default() };
    let t = setup(imp, limits);
    t.send(50, 50, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(1);
    while t.relay.stats().to_upstream.received < 50 && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    let s = t.relay.stats();
    assert_eq!((s.to_upstream.received, s.to_upstream.overflowed, s.held), (50, 40, 10), "{s}");
    assert_eq!(t.echo.count(), 0, "nothing before the delay");
    let s = t.settle(50, Duration::from_secs(2));
    assert_eq!(t.echo.arrivals().iter().map(|a| a.seq).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!((s.to_upstream.delivered, s.to_client.delivered, t.replies.count()), (10, 10, 10), "{s}");
}

#[test]
fn refuses_clients_beyond_the_limit_and_keeps_serving_the_first() {
    let limits = Limits { max_clients: 1, ..Limits::default() };
    let t = setup(Impairment::default(), limits);
    t.send(5, 5, Duration::ZERO);
    let other = localhost_socket();
    other.send_to(&datagram(99, 0), t.relay.local_addr()).unwrap();
    let s = t.settle(5, Duration::from_secs(1));
    assert_eq!((s.clients, s.rejected), (1, 1), "{s}");
    let mut buf = [0u8; 64];
    assert!(other.recv_from(&mut buf).is_err(), "the refused client got a reply");
    assert_eq!(t.replies.count(), 5);
}

#[test]
fn refuses_an_invalid_impairment() {
    let imp = Impairment { loss_pct: 150.0, ..Impairment::default() };
    let err = Relay::spawn(LOCALHOST.parse().unwrap(), "127.0.0.1:9".parse().unwrap(), imp).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "loss percentage 150 is outside 0..=100");
}

#[test]
fn stops_promptly_and_relays_nothing_after() {
    let t = setup(Impairment::default(), Limits::default());
    t.send(3, 3, Duration::ZERO);
    t.settle(3, Duration::from_secs(1));
    let Setup { relay, client, echo, .. } = t;
    let addr = relay.local_addr();
    let stopped = Instant::now();
    let stats = relay.stop();
    assert!(stopped.elapsed() < Duration::from_millis(500), "stop took {:?}", stopped.elapsed());
    assert_eq!(stats.to_upstream.delivered, 3);
    let _ = client.send_to(&datagram(7, 0), addr); // may fail with the port gone: fine
    thread::sleep(Duration::from_millis(100));
    assert_eq!(echo.count(), 3);
}
