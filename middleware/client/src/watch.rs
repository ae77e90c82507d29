//! Watches as streams: a group's changes in this replica's order, and its events, as a
//! [`futures_core::Stream`] of [`Event`]s.
//!
//! A pump task per watch reads what the node sends as it comes, so a slow consumer never holds
//! up the node, the socket or zenoh; it hands events on through a bounded queue. When the
//! queue is full the pump keeps only the newest change of each register (memory bounded by
//! the registers, not by time) and counts what the consumer missed; once there is room it
//! yields [`Event::Lagged`] and then those registers as snapshot changes.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value as Json;
use spook_core::api::{Change, Event};
use spook_core::{RegisterId, View};
use tokio::sync::mpsc;

use crate::error::Error;

/// How many events wait for a consumer before the watch counts it as lagging.
///
/// ```
/// assert!(spook_client::WATCH_QUEUE >= 64);
/// ```
pub const WATCH_QUEUE: usize = 256;

/// Read an event line a node sends; `None` for a line of a kind this client does not know
/// (a newer node's).
pub(crate) fn parse_event(j: &Json, typed: bool) -> Result<Option<Event>, Error> {
    let bad = |what: &str| Error::Protocol(format!("watch event {what}: {j}"));
    let member = || j.get("member").and_then(Json::as_str).and_then(|m| m.parse().ok()).ok_or_else(|| bad("without a member"));
    match j.get("event").and_then(Json::as_str) {
        None => {
            let register = j.get("register").and_then(Json::as_u64).and_then(|r| u32::try_from(r).ok()).map(RegisterId).ok_or_else(|| bad("without a register"))?;
            let view = match j.get("view").and_then(Json::as_str) {
                Some("committed") => View::Committed,
                _ => View::Pending,
            };
            let fields = crate::group::fields_from(j.get("fields").unwrap_or(&Json::Null), typed)?;
            let snapshot = j.get("snapshot") == Some(&Json::Bool(true));
            Ok(Some(Event::Change(Change { register, view, fields, snapshot })))
        }
        Some("lagged") => Ok(Some(Event::Lagged(j.get("missed").and_then(Json::as_u64).unwrap_or(0)))),
        Some("committed") => Ok(Some(Event::Committed { frontier_ms: j.get("frontier_ms").and_then(Json::as_u64).unwrap_or(0) })),
        Some("decohered") => Ok(Some(Event::Decohered(member()?))),
        Some("member_joined") => Ok(Some(Event::MemberJoined(member()?))),
        Some("member_left") => Ok(Some(Event::MemberLeft(member()?))),
        Some("re_entangled") => {
            let registers = j.get("registers").and_then(Json::as_array).map(|a| a.iter().filter_map(|r| r.as_u64().and_then(|r| u32::try_from(r).ok()).map(RegisterId)).collect()).unwrap_or_default();
            Ok(Some(Event::ReEntangled { registers }))
        }
        Some(_) => Ok(None),
    }
}

/// Aborts its task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A watch: a `Stream` of events; dropping it ends the watch on the node.
///
/// Cancel-safe: an event is either yielded or still queued.
///
/// ```no_run
/// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
/// use spook_client::{Event, View};
/// let mut w = client.group("fleet").watch(View::Committed).await?;
/// while let Some(ev) = w.next().await {
///     if let Event::Lagged(n) = ev? {
///         println!("missed {n}; the registers that changed follow as snapshots");
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Watch {
    rx: mpsc::Receiver<Result<Event, Error>>,
    _tasks: Vec<AbortOnDrop>,
}

impl Watch {
    /// The next event; `None` once the watch has ended (after an error saying why).
    ///
    /// ```no_run
    /// # async fn f(client: spook_client::Client) -> Result<(), spook_client::Error> {
    /// let mut w = client.group("fleet").watch(spook_client::View::Pending).await?;
    /// let first = tokio::time::timeout(std::time::Duration::from_secs(1), w.next()).await;
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        self.rx.recv().await
    }

    /// Start the pump over `source` (each item a line the node sent).
    pub(crate) fn pump(mut source: mpsc::Receiver<Result<Json, Error>>, typed: bool, mut tasks: Vec<AbortOnDrop>) -> Watch {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let pump = tokio::spawn(async move {
            let mut lag = Lag::default();
            // The source has ended (or failed): what is owed is flushed, then the pump stops.
            let mut done = false;
            loop {
                if done && lag.missed == 0 {
                    return;
                }
                tokio::select! {
                    item = source.recv(), if !done => {
                        let ev = match item {
                            None => {
                                done = true;
                                continue;
                            }
                            Some(Err(e)) => Err(e),
                            Some(Ok(j)) => match parse_event(&j, typed) {
                                Ok(None) => continue,
                                Ok(Some(ev)) => Ok(ev),
                                Err(e) => Err(e),
                            },
                        };
                        done = ev.is_err();
                        if lag.missed > 0 {
                            lag.add(ev);
                        } else {
                            match tx.try_send(ev) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(ev)) => lag.add(ev),
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                            }
                        }
                    }
                    permit = tx.reserve(), if lag.missed > 0 => {
                        let Ok(permit) = permit else { return };
                        if !lag.flush_one(permit) {
                            return;
                        }
                    }
                }
            }
        });
        tasks.push(AbortOnDrop(pump));
        Watch { rx, _tasks: tasks }
    }
}

/// What a consumer that fell behind missed: a count, the newest change of each register, and
/// the error that ended the watch meanwhile, if one did.
#[derive(Default)]
struct Lag {
    missed: u64,
    announced: bool,
    latest: BTreeMap<RegisterId, Change>,
    end: Option<Error>,
}

impl Lag {
    fn add(&mut self, ev: Result<Event, Error>) {
        self.missed += 1;
        match ev {
            Ok(Event::Change(mut c)) => {
                c.snapshot = true;
                self.latest.insert(c.register, c);
            }
            Ok(_) => {}
            Err(e) => self.end = Some(e),
        }
    }

    /// Hand on the next thing owed: the lag notice, a register, then the end. False once
    /// the watch is over.
    fn flush_one(&mut self, permit: mpsc::Permit<'_, Result<Event, Error>>) -> bool {
        if !self.announced {
            self.announced = true;
            permit.send(Ok(Event::Lagged(self.missed)));
        } else if let Some((_, c)) = self.latest.pop_first() {
            permit.send(Ok(Event::Change(c)));
        } else if let Some(e) = self.end.take() {
            permit.send(Err(e));
            return false;
        }
        if self.announced && self.latest.is_empty() && self.end.is_none() {
            *self = Lag::default();
        }
        true
    }
}

impl futures_core::Stream for Watch {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
