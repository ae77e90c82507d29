//! Auctions with no auctioneer at the end. Whoever opens an auction writes its rule and
//! reserve and leases its `state` cell for the bidding period. A bid is a serial transaction
//! that commits only while that lease runs at the bid's turn in the group's total order and
//! only if it beats the best bid so far; it then becomes the best bid. So the best bid, and
//! its bidder, are the same on every member, and once any member has closed the auction
//! (a transaction that commits only after the lease ended), they are final: every member
//! reads the same winner. The opener may vanish at any point; anyone can close.
//!
//! Bids are open: each sees the best so far (an English auction; for a cost, a reverse one
//! with [`Rule::Lowest`]). Equal bids: the first in the total order stays best.
//!
//! ```
//! use spook_agents::auctions::{AuctionError, Auctions, Rule};
//! use spook_core::{api::GroupApi, GroupKind, RegisterId, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig::default(), spook_agents::schema(Schema::new()), GroupKind::Serial, 3);
//! let (a, b, c) = (net.group(0), net.group(1), net.group(2));
//! let (job, bidder) = (RegisterId(5), b.id().to_string());
//! net.spawn(0, async move {
//!     // Delivery job 5: the lowest cost wins; bids for 5 s.
//!     Auctions::new(&a).open(job, Rule::Lowest, 100.0, 5_000).await.unwrap();
//! });
//! net.run_for(1_000);
//! net.spawn(1, async move { Auctions::new(&b).bid(job, 42.0).await.unwrap(); });
//! net.run_for(1_000);
//! net.spawn(2, async move {
//!     let auctions = Auctions::new(&c);
//!     let r = auctions.bid(job, 50.0).await;
//!     assert!(matches!(r, Err(AuctionError::Outbid { best, .. }) if best == 42.0), "{r:?}");
//!     c.sleep_ms(5_000).await;
//!     let result = auctions.result(job).await.unwrap();
//!     assert_eq!((result.winner, result.amount), (Some(bidder), 42.0));
//! });
//! net.run_for(8_000);
//! assert_eq!(net.agents(), 0);
//! ```

use spook_core::api::{GroupApi, Test, TxSpec};
use spook_core::{Cmp, RegisterId, Value, View};

use crate::txn::{self, Done};
use crate::window::{self, Closing};

/// Which bid wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The highest (a price).
    Highest,
    /// The lowest (a cost, a time to arrive).
    Lowest,
}

impl Rule {
    /// The `state` cell's value while the auction runs.
    fn state(self) -> &'static str {
        match self {
            Rule::Highest => "bidding: highest wins",
            Rule::Lowest => "bidding: lowest wins",
        }
    }

    fn of(state: &str) -> Option<Rule> {
        [Rule::Highest, Rule::Lowest].into_iter().find(|r| r.state() == state)
    }

    /// How the best bid so far must compare with a new bid for the new one to beat it.
    fn beaten_by(self) -> Cmp {
        match self {
            Rule::Highest => Cmp::Lt,
            Rule::Lowest => Cmp::Gt,
        }
    }
}

/// A closed auction's outcome, the same on every member.
#[derive(Clone, Debug, PartialEq)]
pub struct AuctionResult {
    /// The winning bidder (its session id), or `None` if nobody bid.
    pub winner: Option<String>,
    /// The winning bid, or the reserve if nobody bid.
    pub amount: f64,
}

/// Why an auction operation did not take effect. Nothing was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuctionError<E> {
    /// An auction was opened on this register before.
    #[error("auction {0} exists already")]
    Exists(RegisterId),
    /// Nobody opened an auction on this register.
    #[error("no auction {0} was opened")]
    NotOpen(RegisterId),
    /// Bidding has ended (in the group's order: the bid's turn came after the deadline).
    #[error("bidding on auction {0} has ended")]
    Closed(RegisterId),
    /// The bid does not beat the best one.
    #[error("a bid on auction {auction} does not beat the best, {best}")]
    Outbid {
        /// The auction.
        auction: RegisterId,
        /// The best bid so far.
        best: f64,
    },
    /// Bidding still runs: no result yet.
    #[error("bidding on auction {0} still runs")]
    StillOpen(RegisterId),
    /// An amount that is not a finite number.
    #[error("{0} is not a finite amount")]
    BadAmount(f64),
    /// The outcome is not known here by the deadline: ask again later.
    #[error("the outcome on auction {0} is not known yet")]
    Unknown(RegisterId),
    /// The group failed (node lost, the schema lacks a field, ...).
    #[error(transparent)]
    Group(E),
}

/// The auctions of one session on one group. The fields used are `state` (the bidding
/// window), `best` and `leader` (see [`crate::schema`]).
pub struct Auctions<'g, G> {
    group: &'g G,
    deadline_ms: u64,
}

impl<'g, G: GroupApi> Auctions<'g, G> {
    /// Auctions on `group`; each operation waits up to 5 s for its turn.
    pub fn new(group: &'g G) -> Auctions<'g, G> {
        Auctions { group, deadline_ms: 5_000 }
    }

    /// How long an operation may wait for its turn before it aborts.
    #[must_use]
    pub fn deadline_ms(mut self, ms: u64) -> Auctions<'g, G> {
        self.deadline_ms = ms;
        self
    }

    async fn fields(&self, auction: RegisterId) -> Result<spook_core::api::Fields, AuctionError<G::Error>> {
        self.group.read(auction, View::Committed).await.map_err(AuctionError::Group)
    }

    /// Open auction `auction`: bids by `rule`, none worse than `reserve`, for `bidding_ms`
    /// after the opening commits. Returns the opening's commit stamp.
    ///
    /// # Errors
    /// [`AuctionError::Exists`] if it was opened before.
    pub async fn open(&self, auction: RegisterId, rule: Rule, reserve: f64, bidding_ms: u64) -> Result<u64, AuctionError<G::Error>> {
        if !reserve.is_finite() {
            return Err(AuctionError::BadAmount(reserve));
        }
        let tx = TxSpec::new().when(auction, "state", Test::Absent).set(auction, "state", rule.state()).set(auction, "best", reserve).lease_ms(bidding_ms);
        match txn::run(self.group, tx, self.deadline_ms).await.map_err(AuctionError::Group)? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(Some(_)) => Err(AuctionError::Exists(auction)),
            Done::Failed(None) | Done::Unknown => Err(AuctionError::Unknown(auction)),
        }
    }

    /// Bid `amount` on `auction`; it becomes the best bid if it beats the best so far while
    /// bidding runs. Returns the bid's commit stamp.
    ///
    /// # Errors
    /// [`AuctionError::Outbid`] if it does not beat the best bid, [`AuctionError::Closed`]
    /// once bidding has ended, [`AuctionError::NotOpen`] for an auction nobody opened (within
    /// the operations' deadline).
    pub async fn bid(&self, auction: RegisterId, amount: f64) -> Result<u64, AuctionError<G::Error>> {
        if !amount.is_finite() {
            return Err(AuctionError::BadAmount(amount));
        }
        // A bidder may come before the opening has reached its member: it waits for it.
        let Some(state) = window::opened(self.group, auction, "state", self.deadline_ms).await.map_err(AuctionError::Group)? else {
            return Err(AuctionError::NotOpen(auction));
        };
        let Some(rule) = Rule::of(&state) else { return Err(AuctionError::Closed(auction)) };
        let tx = TxSpec::new()
            .when(auction, "state", Test::Equals(state.into()))
            .when(auction, "state", Test::LeaseHeld)
            .when(auction, "best", Test::Compare(rule.beaten_by(), amount.into()))
            .set(auction, "best", amount)
            .set(auction, "leader", self.group.id().to_string());
        match txn::run(self.group, tx, self.deadline_ms).await.map_err(AuctionError::Group)? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(Some(0 | 1)) => Err(AuctionError::Closed(auction)),
            Done::Failed(Some(_)) => {
                let best = match self.fields(auction).await?.remove("best") {
                    Some(Value::F64(b)) => b,
                    _ => f64::NAN,
                };
                Err(AuctionError::Outbid { auction, best })
            }
            Done::Failed(None) | Done::Unknown => Err(AuctionError::Unknown(auction)),
        }
    }

    /// The result of `auction`, once bidding has ended: closes it (any member may, and the
    /// first close counts), then reads the best bid, which no bid can change any more.
    ///
    /// # Errors
    /// [`AuctionError::StillOpen`] while bidding runs (ask again later),
    /// [`AuctionError::NotOpen`] for an auction nobody opened.
    pub async fn result(&self, auction: RegisterId) -> Result<AuctionResult, AuctionError<G::Error>> {
        match window::close(self.group, auction, "state", self.deadline_ms).await.map_err(AuctionError::Group)? {
            Closing::Closed => {}
            Closing::StillOpen => return Err(AuctionError::StillOpen(auction)),
            Closing::NeverOpened => return Err(AuctionError::NotOpen(auction)),
            Closing::Unknown => return Err(AuctionError::Unknown(auction)),
        }
        let mut f = self.fields(auction).await?;
        let winner = match f.remove("leader") {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        };
        let amount = match f.remove("best") {
            Some(Value::F64(b)) => b,
            _ => f64::NAN,
        };
        Ok(AuctionResult { winner, amount })
    }
}
