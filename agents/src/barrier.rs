//! A barrier (rendezvous) of a number of parties with a deadline. Whoever opens it names the
//! number of parties and leases the barrier's `state` cell for the wait. Arriving is a serial
//! transaction that adds the arriving session to the `arrived` cell while that lease runs at
//! its turn in the group's total order. The barrier is complete as soon as the committed
//! arrivals reach the number of parties; if they do not by the deadline, the first member to
//! close it fixes the arrivals, and every member reads the same outcome: timed out, with who
//! arrived. Nobody waits for a party that never comes, and nobody decides alone.
//!
//! ```
//! use spook_agents::barrier::{Barrier, BarrierOutcome};
//! use spook_core::{GroupKind, RegisterId, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig::default(), spook_agents::schema(Schema::new()), GroupKind::Serial, 3);
//! let meet = RegisterId(9);
//! let g = net.group(0);
//! net.spawn(0, async move { Barrier::new(&g, meet).open(2, 3_000).await.unwrap(); });
//! net.run_for(1_000);
//! for i in 0..2 {
//!     let g = net.group(i);
//!     net.spawn(i, async move {
//!         let barrier = Barrier::new(&g, meet);
//!         barrier.arrive().await.unwrap();
//!         assert!(matches!(barrier.wait().await.unwrap(), BarrierOutcome::Complete { .. }));
//!     });
//! }
//! net.run_for(3_000);
//! assert_eq!(net.agents(), 0);
//! ```

use spook_core::api::{GroupApi, Test, TxSpec};
use spook_core::{RegisterId, Value, View};

use crate::txn::{self, Done};
use crate::window::{self, Closing};

/// How a barrier ended, the same on every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// Every party arrived before the deadline.
    Complete {
        /// Who arrived (session ids), sorted.
        arrived: Vec<String>,
    },
    /// The deadline passed first.
    TimedOut {
        /// Who arrived in time (session ids), sorted.
        arrived: Vec<String>,
        /// How many were expected.
        parties: usize,
    },
}

/// Why a barrier operation did not take effect. Nothing was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BarrierError<E> {
    /// A barrier was opened on this register before.
    #[error("barrier {0} exists already")]
    Exists(RegisterId),
    /// Nobody opened a barrier on this register.
    #[error("no barrier {0} was opened")]
    NotOpen(RegisterId),
    /// Its deadline passed before this arrival's turn.
    #[error("barrier {0} has closed")]
    Closed(RegisterId),
    /// A barrier needs at least one party.
    #[error("a barrier needs at least one party")]
    NoParties,
    /// The outcome is not known here by the deadline: ask again later.
    #[error("the outcome on barrier {0} is not known yet")]
    Unknown(RegisterId),
    /// The group failed.
    #[error(transparent)]
    Group(E),
}

/// One session's view of the barrier on `register` (fields `state` and `arrived`).
pub struct Barrier<'g, G> {
    group: &'g G,
    register: RegisterId,
    deadline_ms: u64,
    poll_ms: u64,
}

/// What the cells say.
struct Seen {
    state: Option<String>,
    arrived: Vec<String>,
    raw_arrived: Option<String>,
}

impl<'g, G: GroupApi> Barrier<'g, G> {
    /// The barrier on `register` of `group`; operations wait up to 5 s for their turn, and
    /// [`Barrier::wait`] looks every 100 ms.
    pub fn new(group: &'g G, register: RegisterId) -> Barrier<'g, G> {
        Barrier { group, register, deadline_ms: 5_000, poll_ms: 100 }
    }

    /// How long an operation may wait for its turn before it aborts.
    #[must_use]
    pub fn deadline_ms(mut self, ms: u64) -> Barrier<'g, G> {
        self.deadline_ms = ms;
        self
    }

    async fn seen(&self) -> Result<Seen, BarrierError<G::Error>> {
        let mut f = self.group.read(self.register, View::Committed).await.map_err(BarrierError::Group)?;
        let state = match f.remove("state") {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        };
        let raw_arrived = match f.remove("arrived") {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        };
        let arrived = raw_arrived.as_deref().map(|s| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect()).unwrap_or_default();
        Ok(Seen { state, arrived, raw_arrived })
    }

    /// Open the barrier for `parties`, waiting `wait_ms` after the opening commits.
    ///
    /// # Errors
    /// [`BarrierError::Exists`] if it was opened before.
    pub async fn open(&self, parties: usize, wait_ms: u64) -> Result<u64, BarrierError<G::Error>> {
        if parties == 0 {
            return Err(BarrierError::NoParties);
        }
        let r = self.register;
        let tx = TxSpec::new().when(r, "state", Test::Absent).set(r, "state", format!("waiting for {parties}")).lease_ms(wait_ms);
        match txn::run(self.group, tx, self.deadline_ms).await.map_err(BarrierError::Group)? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(Some(_)) => Err(BarrierError::Exists(r)),
            Done::Failed(None) | Done::Unknown => Err(BarrierError::Unknown(r)),
        }
    }

    /// The cells once the barrier is open here: a party may come before the opening has
    /// reached its member, so it waits for it, up to the operations' deadline.
    async fn seen_open(&self) -> Result<Seen, BarrierError<G::Error>> {
        if window::opened(self.group, self.register, "state", self.deadline_ms).await.map_err(BarrierError::Group)?.is_none() {
            return Err(BarrierError::NotOpen(self.register));
        }
        self.seen().await
    }

    /// Arrive: this session counts as arrived if its arrival's turn comes before the
    /// deadline. Arriving twice is arriving once.
    ///
    /// # Errors
    /// [`BarrierError::Closed`] after the deadline, [`BarrierError::NotOpen`] if nobody
    /// opened it (within the operations' deadline).
    pub async fn arrive(&self) -> Result<(), BarrierError<G::Error>> {
        let (r, me) = (self.register, self.group.id().to_string());
        // Arrivals that meet at one turn: one commits, the others read it and go again.
        loop {
            let seen = self.seen_open().await?;
            let state = match seen.state {
                None => return Err(BarrierError::NotOpen(r)),
                Some(s) if window::is_closed(&s) => return Err(BarrierError::Closed(r)),
                Some(s) => s,
            };
            if seen.arrived.contains(&me) {
                return Ok(());
            }
            let mut arrived = seen.arrived;
            arrived.push(me.clone());
            arrived.sort();
            let unchanged = match seen.raw_arrived {
                Some(a) => Test::Equals(a.into()),
                None => Test::Absent,
            };
            let tx = TxSpec::new().when(r, "state", Test::Equals(state.into())).when(r, "state", Test::LeaseHeld).when(r, "arrived", unchanged).set(r, "arrived", arrived.join(","));
            match txn::run(self.group, tx, self.deadline_ms).await.map_err(BarrierError::Group)? {
                Done::Committed(_) => return Ok(()),
                Done::Failed(Some(0 | 1)) => return Err(BarrierError::Closed(r)),
                Done::Failed(Some(_)) => {}
                Done::Failed(None) | Done::Unknown => return Err(BarrierError::Unknown(r)),
            }
        }
    }

    /// Wait until every party has arrived or the deadline has passed; the outcome is the
    /// same on every member.
    ///
    /// # Errors
    /// [`BarrierError::NotOpen`] if nobody opened it (within the operations' deadline).
    pub async fn wait(&self) -> Result<BarrierOutcome, BarrierError<G::Error>> {
        loop {
            let seen = self.seen_open().await?;
            let parties = match seen.state.as_deref() {
                None => return Err(BarrierError::NotOpen(self.register)),
                Some(s) => window::opened_as(s).strip_prefix("waiting for ").and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX),
            };
            if seen.arrived.len() >= parties {
                return Ok(BarrierOutcome::Complete { arrived: seen.arrived });
            }
            match window::close(self.group, self.register, "state", self.deadline_ms).await.map_err(BarrierError::Group)? {
                Closing::Closed => {
                    // Arrivals are final now.
                    let arrived = self.seen().await?.arrived;
                    return Ok(if arrived.len() >= parties { BarrierOutcome::Complete { arrived } } else { BarrierOutcome::TimedOut { arrived, parties } });
                }
                Closing::NeverOpened => return Err(BarrierError::NotOpen(self.register)),
                Closing::StillOpen | Closing::Unknown => self.group.sleep_ms(self.poll_ms).await,
            }
        }
    }
}
