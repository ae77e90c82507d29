//! Task claims with leases. A claim is a serial transaction: it commits only if the task's
//! cell holds no lease, or its lease ended before the claim's turn in the group's total order
//! (never by a local clock), and it leases the cell for `lease_ms`. Every member evaluates the
//! same transactions in the same order, so at most one claim of a free task commits, with no
//! leader and no lock server. A holder renews before its lease ends; a holder that vanishes
//! (decoheres, crashes, stops) loses the task when its lease ends, and the next claim takes it
//! over.
//!
//! The claim's commit stamp is a **fencing token**: a resource that [`FenceGate::admit`]s only
//! tokens at least as new as the newest it has seen refuses a stale holder, one whose lease
//! ended while it was paused (a skewed clock, a resumed process), even if it does not know
//! that yet.
//!
//! ```
//! use spook_agents::claims::{ClaimError, Claims};
//! use spook_core::{GroupKind, RegisterId, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig::default(), Schema::fleet(), GroupKind::Serial, 2);
//! let (a, b) = (net.session(0), net.session(1));
//! net.spawn(0, async move {
//!     let claims = Claims::new(&a, "owner").lease_ms(5_000);
//!     let c = claims.claim(RegisterId(3)).await.unwrap();
//!     let c = claims.renew(&c).await.unwrap();
//!     claims.release(c).await.unwrap();
//! });
//! net.run_for(5_000);
//! net.spawn(1, async move {
//!     let claims = Claims::new(&b, "owner");
//!     assert!(claims.claim(RegisterId(3)).await.is_ok(), "released: free to take");
//!     assert!(matches!(claims.claim(RegisterId(3)).await, Err(ClaimError::Held(_))), "now held");
//! });
//! net.run_for(5_000);
//! assert_eq!(net.agents(), 0);
//! ```

use spook_core::api::{GroupApi, Test, TxSpec};
use spook_core::{RegisterId, Value};

use crate::txn::{self, Done};

/// A task this agent holds: until its lease ends, unless renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task: RegisterId,
    /// The commit stamp of the claim (or its last renewal): the fencing token.
    pub fence: u64,
    /// The lease it took (ms after the commit).
    pub lease_ms: u64,
}

/// Why a claim operation did not take effect. Nothing was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError<E> {
    /// Another agent holds the task (its lease has not ended).
    #[error("task {0} is held by another agent")]
    Held(RegisterId),
    /// This agent does not hold the task (never did, released it, or lost it when its lease
    /// ended and another agent claimed it).
    #[error("this agent does not hold task {0}")]
    NotHolder(RegisterId),
    /// The deadline passed with the outcome unknown here: ask again later.
    #[error("the outcome on task {0} is not known yet")]
    Unknown(RegisterId),
    /// No such task was posted ([`Claims::posted_in`]).
    #[error("no task {0} was posted")]
    Missing(RegisterId),
    /// The group failed (node lost, bad value for the schema, ...).
    #[error(transparent)]
    Group(E),
}

/// The claims of one session on one group's tasks, whose owner is the cell `field` of each
/// task's register (a field of the group's schema that holds a string).
pub struct Claims<'g, G> {
    group: &'g G,
    field: String,
    lease_ms: u64,
    deadline_ms: u64,
    /// A field every task's register holds once the task is posted (`Claims::posted_in`).
    posted: Option<String>,
}

impl<'g, G: GroupApi> Claims<'g, G> {
    /// Claims on `group`, owners in `field`; leases of 10 s, deadlines of 5 s.
    pub fn new(group: &'g G, field: &str) -> Claims<'g, G> {
        Claims { group, field: field.to_string(), lease_ms: 10_000, deadline_ms: 5_000, posted: None }
    }

    /// Tasks are posted: a task exists once its register's `field` holds a value (its
    /// description, say), and claiming one that does not is [`ClaimError::Missing`]. Tasks
    /// are never unposted, so the check is made on the committed view before the claim.
    #[must_use]
    pub fn posted_in(mut self, field: &str) -> Claims<'g, G> {
        self.posted = Some(field.to_string());
        self
    }

    /// How long a claim or renewal holds the task.
    #[must_use]
    pub fn lease_ms(mut self, ms: u64) -> Claims<'g, G> {
        self.lease_ms = ms;
        self
    }

    /// How long a claim may wait for its turn before it aborts.
    #[must_use]
    pub fn deadline_ms(mut self, ms: u64) -> Claims<'g, G> {
        self.deadline_ms = ms;
        self
    }

    fn me(&self) -> Value {
        Value::Str(self.group.id().to_string())
    }

    async fn run(&self, task: RegisterId, tx: TxSpec, lost: ClaimError<G::Error>) -> Result<u64, ClaimError<G::Error>> {
        match txn::run(self.group, tx, self.deadline_ms).await.map_err(ClaimError::Group)? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(_) => Err(lost),
            Done::Unknown => Err(ClaimError::Unknown(task)),
        }
    }

    /// Take `task` if nobody holds it.
    ///
    /// # Errors
    /// [`ClaimError::Held`] if another agent's lease runs; [`ClaimError::Unknown`] if the
    /// outcome is not known by the deadline; [`ClaimError::Missing`] for a task not posted
    /// (with [`Claims::posted_in`]).
    pub async fn claim(&self, task: RegisterId) -> Result<Claim, ClaimError<G::Error>> {
        if let Some(f) = &self.posted {
            if !self.group.read(task, spook_core::View::Committed).await.map_err(ClaimError::Group)?.contains_key(f) {
                return Err(ClaimError::Missing(task));
            }
        }
        let tx = TxSpec::new().when(task, &self.field, Test::LeaseExpired).set(task, &self.field, self.me()).lease_ms(self.lease_ms);
        let fence = self.run(task, tx, ClaimError::Held(task)).await?;
        Ok(Claim { task, fence, lease_ms: self.lease_ms })
    }

    /// Extend a held task's lease; returns the claim with its new fencing token.
    ///
    /// # Errors
    /// [`ClaimError::NotHolder`] if another agent took it (or it was released).
    pub async fn renew(&self, c: &Claim) -> Result<Claim, ClaimError<G::Error>> {
        let tx = TxSpec::new().when(c.task, &self.field, Test::Equals(self.me())).set(c.task, &self.field, self.me()).lease_ms(self.lease_ms);
        let fence = self.run(c.task, tx, ClaimError::NotHolder(c.task)).await?;
        Ok(Claim { task: c.task, fence, lease_ms: self.lease_ms })
    }

    /// Give a held task back at once: its owner becomes empty and its lease ends now.
    ///
    /// # Errors
    /// [`ClaimError::NotHolder`] if this agent does not hold it (a second release, say).
    pub async fn release(&self, c: Claim) -> Result<(), ClaimError<G::Error>> {
        let tx = TxSpec::new().when(c.task, &self.field, Test::Equals(self.me())).set(c.task, &self.field, "").lease_ms(1);
        self.run(c.task, tx, ClaimError::NotHolder(c.task)).await.map(|_| ())
    }
}

/// The check a resource makes of a claim's fencing token: only tokens at least as new as the
/// newest it has admitted pass, so a holder that lost its lease while paused is refused.
///
/// ```
/// use spook_agents::claims::FenceGate;
/// let mut gate = FenceGate::default();
/// assert!(gate.admit(10).is_ok());
/// assert!(gate.admit(12).is_ok());
/// assert_eq!(gate.admit(10), Err(spook_agents::claims::StaleToken { token: 10, newest: 12 }));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FenceGate {
    newest: u64,
}

/// A token older than one the resource already admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fencing token {token} is older than {newest}: the lease it stands for has been taken over")]
pub struct StaleToken {
    /// The token offered.
    pub token: u64,
    /// The newest admitted.
    pub newest: u64,
}

impl FenceGate {
    /// The newest token admitted (0 before any): what a resource keeps between checks.
    ///
    /// ```
    /// let mut gate = spook_agents::claims::FenceGate::default();
    /// gate.admit(7).unwrap();
    /// assert_eq!(gate.newest(), 7);
    /// ```
    #[must_use]
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Admit `token` if it is at least as new as every token admitted before.
    ///
    /// # Errors
    /// [`StaleToken`] for an older one.
    pub fn admit(&mut self, token: u64) -> Result<(), StaleToken> {
        if token < self.newest {
            return Err(StaleToken { token, newest: self.newest });
        }
        self.newest = token;
        Ok(())
    }
}
