//! The shell: a UDP proxy on std threads that applies a [`Schedule`] in each direction.
//!
//! Threads: one listener on the listen socket (client → upstream), one per client on that
//! client's upstream socket (upstream → client), one sender that sends held datagrams when
//! they fall due. Every blocking call wakes at least every [`POLL`] to see the stop flag.

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::impairment::Impairment;
use crate::schedule::{Schedule, Verdict};

/// The largest datagram relayed, in bytes: the receive buffer size. (IPv4 and IPv6 UDP
/// payloads are smaller, so nothing is ever truncated.)
pub const MAX_DATAGRAM: usize = 65_535;

/// How long a thread blocks before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(50);

/// Pause after an unexpected socket error, so a broken socket cannot spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Bounds on what a relay holds in memory. Datagrams beyond them are dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most datagrams held for later delivery, both directions together.
    pub max_held_datagrams: usize,
    /// Most payload bytes held for later delivery, both directions together.
    pub max_held_bytes: usize,
    /// Most clients (source addresses), each with its own socket and thread; datagrams from
    /// further clients are refused. Clients are never forgotten while the relay runs.
    pub max_clients: usize,
}

impl Default for Limits {
    /// 100 000 datagrams, 64 MiB, 1024 clients.
    fn default() -> Self {
        Self { max_held_datagrams: 100_000, max_held_bytes: 64 << 20, max_clients: 1024 }
    }
}

/// Starts relays. It holds no state; see [`Relay::spawn`].
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds `listen` and relays, until [`RelayHandle::stop`] or drop, between every client
    /// that sends to it and `upstream`, impairing both directions with `imp`.
    ///
    /// Each client source address gets a socket of its own, bound to an ephemeral port on
    /// `listen`'s IP and connected to `upstream`: its datagrams go out through it, and what
    /// upstream sends back to it returns to the client from `listen`. Client k (from 0, in
    /// order of first datagram) is impaired by [`Schedule::for_stream`] `2k` on the way up
    /// and `2k + 1` on the way back, so one client's traffic is reproducible from the seed.
    ///
    /// Fails if `imp` is invalid ([`ErrorKind::InvalidInput`], wrapping the
    /// [`ImpairmentError`](crate::ImpairmentError)), if `listen` cannot be bound, or if a
    /// thread cannot be started.
    pub fn spawn(listen: SocketAddr, upstream: SocketAddr, imp: Impairment) -> io::Result<RelayHandle> {
        Self::spawn_with_limits(listen, upstream, imp, Limits::default())
    }

    /// [`Relay::spawn`] with other memory bounds than [`Limits::default`].
    pub fn spawn_with_limits(
        listen: SocketAddr,
        upstream: SocketAddr,
        imp: Impairment,
        limits: Limits,
    ) -> io::Result<RelayHandle> {
        imp.validate().map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
        let socket = UdpSocket::bind(listen)?;
        socket.set_read_timeout(Some(POLL))?;
        let local_addr = socket.local_addr()?;
        let listen_socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            queue: Mutex::new(Queue { heap: BinaryHeap::new(), bytes: 0, next_seq: 0 }),
            wake: Condvar::new(),
            counters: Counters::default(),
            limits,
            epoch: Instant::now(),
        });
        // Threads join on drop, so an early return below stops those already running.
        let mut handle = RelayHandle { local_addr, upstream, imp, shared: Arc::clone(&shared), threads: Vec::new() };
        let sender = {
            let (shared, listen_socket) = (Arc::clone(&shared), Arc::clone(&listen_socket));
            thread::Builder::new().name("spook-relay-send".into()).spawn(move || run_sender(&shared, &listen_socket))?
        };
        handle.threads.push(sender);
        let listener = thread::Builder::new()
            .name("spook-relay-listen".into())
            .spawn(move || run_listener(&shared, &listen_socket, upstream, imp))?;
        handle.threads.push(listener);
        Ok(handle)
    }
}

/// A running relay. Dropping it stops it too.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    imp: Impairment,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl RelayHandle {
    /// The address clients send to (with the port chosen if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where datagrams go.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The impairment applied in each direction.
    pub fn impairment(&self) -> Impairment {
        self.imp
    }

    /// A snapshot of the counters. Read while traffic flows, the fields may be a few
    /// datagrams apart; once quiet, for each direction
    /// `received - dropped + duplicated == overflowed + delivered + send_errors + (held)`.
    pub fn stats(&self) -> RelayStats {
        self.shared.counters.snapshot()
    }

    /// Stops every thread (within about 50 ms), discards what is still held and returns the
    /// final counters.
    pub fn stop(mut self) -> RelayStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _queue = self.shared.lock_queue();
            self.shared.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            // A panicked relay thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams lost by the schedule.
    pub dropped: u64,
    /// Datagrams the schedule duplicated.
    pub duplicated: u64,
    /// Copies dropped because the [`Limits`] on held datagrams were reached.
    pub overflowed: u64,
    /// Copies sent.
    pub delivered: u64,
    /// Copies whose send failed.
    pub send_errors: u64,
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Client → upstream.
    pub to_upstream: DirectionStats,
    /// Upstream → client.
    pub to_client: DirectionStats,
    /// Clients seen (each with its own upstream socket).
    pub clients: u64,
    /// Datagrams refused from new clients: [`Limits::max_clients`] reached, or their
    /// socket or thread could not be set up.
    pub rejected: u64,
    /// Copies held for later delivery right now.
    pub held: u64,
    /// Receive errors (such as ICMP port unreachable from upstream), other than timeouts.
    pub recv_errors: u64,
}

/// One line: `up received=… dropped=… duplicated=… overflowed=… delivered=… send_errors=… |
/// down … | clients=… rejected=… held=… recv_errors=…`.
impl fmt::Display for RelayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, d) in [("up", &self.to_upstream), ("down", &self.to_client)] {
            write!(
                f,
                "{name} received={} dropped={} duplicated={} overflowed={} delivered={} send_errors={} | ",
                d.received, d.dropped, d.duplicated, d.overflowed, d.delivered, d.send_errors
            )?;
        }
        write!(f, "clients={} rejected={} held={} recv_errors={}", self.clients, self.rejected, self.held, self.recv_errors)
    }
}

#[derive(Debug, Default)]
struct DirectionCounters {
    received: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    overflowed: AtomicU64,
    delivered: AtomicU64,
    send_errors: AtomicU64,
}

impl DirectionCounters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    to_upstream: DirectionCounters,
    to_client: DirectionCounters,
    clients: AtomicU64,
    rejected: AtomicU64,
    held: AtomicU64,
    recv_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            to_upstream: self.to_upstream.snapshot(),
            to_client: self.to_client.snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            recv_errors: self.recv_errors.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// State shared by a relay's threads.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    queue: Mutex<Queue>,
    /// Signalled when a datagram becomes the earliest held one, and on stop.
    wake: Condvar,
    counters: Counters,
    limits: Limits,
    /// Zero of the millisecond clock handed to the schedules.
    epoch: Instant,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The queue, even if a thread panicked holding it (its state stays consistent: every
    /// mutation is a single push or pop with its byte count).
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `verdict` to a datagram received at `arrival` (`now_ms` on the schedule's
    /// clock): counts it and holds each copy until its delivery time.
    fn admit(&self, dir: Direction, verdict: Verdict, arrival: Instant, now_ms: u64, payload: &[u8], route: Route) {
        let counters = self.direction(dir);
        bump(&counters.received);
        if verdict.is_dropped() {
            bump(&counters.dropped);
            return;
        }
        if verdict.is_duplicated() {
            bump(&counters.duplicated);
        }
        let mut queue = self.lock_queue();
        for &at in &verdict {
            // From the arrival instant, not from `now_ms`: no rounding to whole milliseconds.
            let due = arrival + Duration::from_millis(at.saturating_sub(now_ms));
            if queue.heap.len() >= self.limits.max_held_datagrams
                || queue.bytes.saturating_add(payload.len()) > self.limits.max_held_bytes
            {
                bump(&counters.overflowed);
                continue;
            }
            let earliest = queue.heap.peek().is_none_or(|top| due < top.due);
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.bytes += payload.len();
            queue.heap.push(Held { due, seq, payload: payload.to_vec(), route: route.clone() });
            self.counters.held.store(queue.heap.len() as u64, Ordering::Relaxed);
            if earliest {
                self.wake.notify_one();
            }
        }
    }

    fn direction(&self, dir: Direction) -> &DirectionCounters {
        match dir {
            Direction::ToUpstream => &self.counters.to_upstream,
            Direction::ToClient => &self.counters.to_client,
        }
    }

    /// Milliseconds from the epoch to `at`.
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// Where a held datagram goes.
#[derive(Debug, Clone)]
enum Route {
    /// Through a client's socket connected to upstream.
    Upstream(Arc<UdpSocket>),
    /// From the listen socket to a client.
    Client(SocketAddr),
}

#[derive(Debug)]
struct Queue {
    heap: BinaryHeap<Held>,
    bytes: usize,
    next_seq: u64,
}

/// A datagram copy waiting for its time. Ordered so the max-heap pops the earliest `due`
/// first and, at equal `due`, the first admitted.
#[derive(Debug)]
struct Held {
    due: Instant,
    seq: u64,
    payload: Vec<u8>,
    route: Route,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Whether a receive error is the read timeout (or a spurious wake), not a failure.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// Counts a receive error other than a timeout, and backs off unless the error is a
/// one-off report such as an ICMP port unreachable.
fn on_recv_error(shared: &Shared, e: &io::Error) {
    if is_timeout(e) {
        return;
    }
    bump(&shared.counters.recv_errors);
    if !matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) {
        thread::sleep(ERROR_BACKOFF);
    }
}

/// One client: its socket towards upstream, its upward schedule and its reply thread.
struct Client {
    socket: Arc<UdpSocket>,
    up: Schedule,
    thread: JoinHandle<()>,
}

/// Receives from clients and admits their datagrams towards upstream.
fn run_listener(shared: &Arc<Shared>, listen: &UdpSocket, upstream: SocketAddr, imp: Impairment) {
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let listen_ip = listen.local_addr().map(|a| a.ip());
    while !shared.stopping() {
        let (len, source) = match listen.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) => {
                on_recv_error(shared, &e);
                continue;
            }
        };
        let arrival = Instant::now();
        let known = clients.len();
        let client = match clients.entry(source) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let opened = match &listen_ip {
                    Ok(ip) if known < shared.limits.max_clients => {
                        open_client(shared, *ip, upstream, source, imp, known as u64)
                    }
                    Ok(_) => Err(io::Error::other("client limit reached")),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                match opened {
                    Ok(client) => {
                        bump(&shared.counters.clients);
                        entry.insert(client)
                    }
                    Err(_) => {
                        bump(&shared.counters.rejected);
                        continue;
                    }
                }
            }
        };
        let now_ms = shared.millis(arrival);
        let verdict = client.up.on_datagram(now_ms);
        let route = Route::Upstream(Arc::clone(&client.socket));
        shared.admit(Direction::ToUpstream, verdict, arrival, now_ms, &buf[..len], route);
    }
    for (_, client) in clients.drain() {
        let _ = client.thread.join();
    }
}

/// Opens client `ordinal`'s socket towards upstream and starts its reply thread.
fn open_client(
    shared: &Arc<Shared>,
    ip: std::net::IpAddr,
    upstream: SocketAddr,
    client_addr: SocketAddr,
    imp: Impairment,
    ordinal: u64,
) -> io::Result<Client> {
    let invalid = |e| io::Error::new(ErrorKind::InvalidInput, e);
    let up = Schedule::for_stream(imp, 2 * ordinal).map_err(invalid)?;
    let down = Schedule::for_stream(imp, 2 * ordinal + 1).map_err(invalid)?;
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.connect(upstream)?;
    socket.set_read_timeout(Some(POLL))?;
    let socket = Arc::new(socket);
    let thread = {
        let (shared, socket) = (Arc::clone(shared), Arc::clone(&socket));
        thread::Builder::new()
            .name(format!("spook-relay-client-{ordinal}"))
            .spawn(move || run_client(&shared, &socket, client_addr, down))?
    };
    Ok(Client { socket, up, thread })
}

/// Receives upstream's replies on one client's socket and admits them towards the client.
fn run_client(shared: &Shared, socket: &UdpSocket, client_addr: SocketAddr, mut down: Schedule) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        match socket.recv(&mut buf) {
            Ok(len) => {
                let arrival = Instant::now();
                let now_ms = shared.millis(arrival);
                let verdict = down.on_datagram(now_ms);
                shared.admit(Direction::ToClient, verdict, arrival, now_ms, &buf[..len], Route::Client(client_addr));
            }
            Err(e) => on_recv_error(shared, &e),
        }
    }
}

/// Sends each held datagram when it falls due.
fn run_sender(shared: &Shared, listen: &UdpSocket) {
    let mut queue = shared.lock_queue();
    while !shared.stopping() {
        let now = Instant::now();
        let wait = match queue.heap.peek() {
            Some(top) if top.due <= now => None,
            Some(top) => Some((top.due - now).min(POLL)),
            None => Some(POLL),
        };
        if let Some(wait) = wait {
            queue = shared.wake.wait_timeout(queue, wait).unwrap_or_else(PoisonError::into_inner).0;
            continue;
        }
        let Some(held) = queue.heap.pop() else { continue };
        queue.bytes -= held.payload.len();
        shared.counters.held.store(queue.heap.len() as u64, Ordering::Relaxed);
        drop(queue);
        let (sent, counters) = match &held.route {
            Route::Upstream(socket) => (socket.send(&held.payload), &shared.counters.to_upstream),
            Route::Client(addr) => (listen.send_to(&held.payload, addr), &shared.counters.to_client),
        };
        bump(if sent.is_ok() { &counters.delivered } else { &counters.send_errors });
        queue = shared.lock_queue();
    }
}
