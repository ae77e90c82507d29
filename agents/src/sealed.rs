//! Sealed-bid auctions: nobody sees a bid before bidding has ended. A bidder first seals its
//! bid: it commits a hash of (auction, bidder, amount, nonce) and joins the auction's list of
//! bidders, while the sealing window (a lease on the auction's `state` cell) runs. Once it has
//! ended in the group's total order, the first bidder to reveal opens the reveal window (a
//! second lease), and each bidder writes its amount and nonce. Whoever asks for the result
//! after that window closes it; every member then checks each revealed bid against its seal
//! and computes the same winner: the best valid bid, ties to the smaller bidder id. A bid
//! that is not revealed, or does not match its seal, does not count. The opener may vanish.
//!
//! ```
//! use spook_agents::sealed::{SealedAuctions, SealedError};
//! use spook_agents::auctions::Rule;
//! use spook_core::{api::GroupApi, GroupKind, RegisterId, Schema};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let mut net = SimNet::new(NetConfig::default(), spook_agents::schema(Schema::new()), GroupKind::Serial, 3);
//! let job = RegisterId(6);
//! let a = net.group(0);
//! net.spawn(0, async move { SealedAuctions::new(&a).open(job, Rule::Highest, 0.0, 3_000, 3_000).await.unwrap(); });
//! net.run_for(1_000);
//! for (i, amount) in [(1, 30.0), (2, 50.0)] {
//!     let g = net.group(i);
//!     net.spawn(i, async move {
//!         let auctions = SealedAuctions::new(&g);
//!         auctions.seal(job, amount, i as u64).await.unwrap();
//!         g.sleep_ms(3_000).await; // sealing ends
//!         auctions.reveal(job, amount, i as u64).await.unwrap();
//!     });
//! }
//! net.run_for(5_000);
//! let (g, winner) = (net.group(0), net.group(2).id().to_string());
//! net.spawn(0, async move {
//!     g.sleep_ms(3_000).await; // revealing ends
//!     let r = SealedAuctions::new(&g).result(job).await.unwrap();
//!     assert_eq!((r.winner, r.amount), (Some(winner), 50.0));
//! });
//! net.run_for(10_000);
//! assert_eq!(net.agents(), 0);
//! ```

use spook_core::api::{GroupApi, Test, TxSpec};
use spook_core::{RegisterId, Schema, Value, View};

use crate::auctions::{AuctionResult, Rule};
use crate::txn::{self, Done};
use crate::window::{self, Closing};

/// Why a sealed-bid operation did not take effect. Nothing was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SealedError<E> {
    /// An auction was opened on this register before.
    #[error("auction {0} exists already")]
    Exists(RegisterId),
    /// Nobody opened a sealed-bid auction on this register.
    #[error("no sealed-bid auction {0} was opened")]
    NotOpen(RegisterId),
    /// Sealing has ended: no more bids.
    #[error("sealing bids on auction {0} has ended")]
    SealingEnded(RegisterId),
    /// Sealing still runs: nothing can be revealed yet.
    #[error("sealing bids on auction {0} still runs")]
    StillSealing(RegisterId),
    /// Revealing still runs: no result yet.
    #[error("revealing bids on auction {0} still runs")]
    StillRevealing(RegisterId),
    /// Revealing has ended: this bid will not count.
    #[error("revealing bids on auction {0} has ended")]
    RevealEnded(RegisterId),
    /// The amount and nonce do not match this bidder's seal (or it sealed nothing).
    #[error("the revealed bid does not match the seal on auction {0}")]
    NotSealed(RegisterId),
    /// An amount that is not a finite number.
    #[error("{0} is not a finite amount")]
    BadAmount(f64),
    /// The outcome is not known here by the deadline: ask again later.
    #[error("the outcome on auction {0} is not known yet")]
    Unknown(RegisterId),
    /// The group failed.
    #[error(transparent)]
    Group(E),
}

/// The sealed-bid auctions of one session on one group. Fields: `state` (the windows),
/// `bidders` (who sealed), and in each bidder's own register `seal` and `bid`.
pub struct SealedAuctions<'g, G> {
    group: &'g G,
    deadline_ms: u64,
}

const SEALING: &str = "sealing";
const REVEALING: &str = "revealing";

/// The rule and reveal length, as the `state` cell spells them.
fn spell(phase: &str, rule: Rule, reveal_ms: u64) -> String {
    let rule = match rule {
        Rule::Highest => "highest",
        Rule::Lowest => "lowest",
    };
    format!("{phase}: {rule} wins, reveal {reveal_ms} ms")
}

/// (phase, rule, reveal ms) from the `state` cell.
fn parse(state: &str) -> Option<(&str, Rule, u64)> {
    let (phase, rest) = window::opened_as(state).split_once(": ")?;
    let (rule, rest) = rest.split_once(" wins, reveal ")?;
    let rule = match rule {
        "highest" => Rule::Highest,
        "lowest" => Rule::Lowest,
        _ => return None,
    };
    Some((phase, rule, rest.strip_suffix(" ms")?.parse().ok()?))
}

/// The hash a bidder seals: of the auction, the bidder, the amount and a nonce, so nobody can
/// read the amount from it, and no other amount matches it.
#[must_use]
pub fn seal_of(auction: RegisterId, bidder: &str, amount: f64, nonce: u64) -> String {
    let mut h = blake3::Hasher::new_derive_key("spook sealed bid v1");
    h.update(&auction.0.to_le_bytes()).update(&(bidder.len() as u64).to_le_bytes()).update(bidder.as_bytes()).update(&amount.to_bits().to_le_bytes()).update(&nonce.to_le_bytes());
    h.finalize().to_hex().to_string()
}

impl<'g, G: GroupApi> SealedAuctions<'g, G> {
    /// Sealed-bid auctions on `group`; each operation waits up to 5 s for its turn.
    pub fn new(group: &'g G) -> SealedAuctions<'g, G> {
        SealedAuctions { group, deadline_ms: 5_000 }
    }

    /// The register of `bidder`'s seal and bid in `auction` (a hashed name).
    #[must_use]
    pub fn bid_register(auction: RegisterId, bidder: &str) -> RegisterId {
        Schema::new().resolve_register(&format!("sealed/{}/{bidder}", auction.0))
    }

    async fn str_field(&self, reg: RegisterId, field: &str) -> Result<Option<String>, SealedError<G::Error>> {
        crate::committed_str(self.group, reg, field).await.map_err(SealedError::Group)
    }

    async fn run(&self, auction: RegisterId, tx: TxSpec) -> Result<Done, SealedError<G::Error>> {
        match txn::run(self.group, tx, self.deadline_ms).await.map_err(SealedError::Group)? {
            Done::Failed(None) | Done::Unknown => Err(SealedError::Unknown(auction)),
            d => Ok(d),
        }
    }

    /// Open `auction`: seal bids for `sealing_ms` after the opening commits, then reveal for
    /// `reveal_ms`; bids worse than `reserve` do not count.
    ///
    /// # Errors
    /// [`SealedError::Exists`] if it was opened before.
    pub async fn open(&self, auction: RegisterId, rule: Rule, reserve: f64, sealing_ms: u64, reveal_ms: u64) -> Result<u64, SealedError<G::Error>> {
        if !reserve.is_finite() {
            return Err(SealedError::BadAmount(reserve));
        }
        let tx = TxSpec::new().when(auction, "state", Test::Absent).set(auction, "state", spell(SEALING, rule, reveal_ms)).set(auction, "best", reserve).lease_ms(sealing_ms);
        match self.run(auction, tx).await? {
            Done::Committed(fence) => Ok(fence),
            _ => Err(SealedError::Exists(auction)),
        }
    }

    /// Seal a bid of `amount` (and `nonce`, which the reveal repeats: draw it at random, so
    /// nobody can guess the amount from the seal). Sealing again replaces the seal.
    ///
    /// # Errors
    /// [`SealedError::SealingEnded`] once sealing has ended.
    pub async fn seal(&self, auction: RegisterId, amount: f64, nonce: u64) -> Result<u64, SealedError<G::Error>> {
        if !amount.is_finite() {
            return Err(SealedError::BadAmount(amount));
        }
        let me = self.group.id().to_string();
        let mine = Self::bid_register(auction, &me);
        let seal = seal_of(auction, &me, amount, nonce);
        // Bidders that join at one turn: one commits, the others read it and go again.
        loop {
            let state = window::opened(self.group, auction, "state", self.deadline_ms).await.map_err(SealedError::Group)?.ok_or(SealedError::NotOpen(auction))?;
            if parse(&state).is_none_or(|(phase, ..)| phase != SEALING || window::is_closed(&state)) {
                return Err(SealedError::SealingEnded(auction));
            }
            let raw = self.str_field(auction, "bidders").await?;
            let mut bidders: Vec<String> = raw.as_deref().map(|s| s.split(',').filter(|b| !b.is_empty()).map(str::to_string).collect()).unwrap_or_default();
            let mut tx = TxSpec::new().when(auction, "state", Test::Equals(state.into())).when(auction, "state", Test::LeaseHeld);
            if !bidders.contains(&me) {
                bidders.push(me.clone());
                bidders.sort();
                tx = tx.when(auction, "bidders", raw.map_or(Test::Absent, |r| Test::Equals(r.into()))).set(auction, "bidders", bidders.join(","));
            }
            match self.run(auction, tx.set(mine, "seal", seal.as_str())).await? {
                Done::Committed(fence) => return Ok(fence),
                Done::Failed(Some(0 | 1)) => return Err(SealedError::SealingEnded(auction)),
                _ => {}
            }
        }
    }

    /// Start revealing if sealing has ended: the first such transaction opens the reveal
    /// window; the state it leaves, or the error.
    async fn revealing(&self, auction: RegisterId) -> Result<String, SealedError<G::Error>> {
        let state = window::opened(self.group, auction, "state", self.deadline_ms).await.map_err(SealedError::Group)?.ok_or(SealedError::NotOpen(auction))?;
        let Some((phase, rule, reveal_ms)) = parse(&state) else { return Err(SealedError::NotOpen(auction)) };
        if phase != SEALING || window::is_closed(&state) {
            return Ok(state);
        }
        let next = spell(REVEALING, rule, reveal_ms);
        let tx = TxSpec::new().when(auction, "state", Test::Equals(state.into())).when(auction, "state", Test::LeaseExpired).set(auction, "state", next.as_str()).lease_ms(reveal_ms);
        match self.run(auction, tx).await? {
            Done::Committed(_) => Ok(next),
            Done::Failed(Some(1)) => Err(SealedError::StillSealing(auction)),
            // Another bidder opened the reveal window first.
            _ => self.str_field(auction, "state").await?.ok_or(SealedError::NotOpen(auction)),
        }
    }

    /// Reveal this session's sealed bid: `amount` and `nonce` as sealed.
    ///
    /// # Errors
    /// [`SealedError::StillSealing`] before sealing has ended, [`SealedError::RevealEnded`]
    /// after revealing has, [`SealedError::NotSealed`] if they do not match the seal.
    pub async fn reveal(&self, auction: RegisterId, amount: f64, nonce: u64) -> Result<u64, SealedError<G::Error>> {
        let me = self.group.id().to_string();
        let mine = Self::bid_register(auction, &me);
        if self.str_field(mine, "seal").await? != Some(seal_of(auction, &me, amount, nonce)) {
            return Err(SealedError::NotSealed(auction));
        }
        let state = self.revealing(auction).await?;
        if parse(&state).is_none_or(|(phase, ..)| phase != REVEALING) || window::is_closed(&state) {
            return Err(SealedError::RevealEnded(auction));
        }
        let tx = TxSpec::new().when(auction, "state", Test::Equals(state.into())).when(auction, "state", Test::LeaseHeld).set(mine, "bid", format!("{amount} {nonce}"));
        match self.run(auction, tx).await? {
            Done::Committed(fence) => Ok(fence),
            _ => Err(SealedError::RevealEnded(auction)),
        }
    }

    /// The result, once revealing has ended: closes the auction, then checks each revealed
    /// bid against its seal; the same on every member.
    ///
    /// # Errors
    /// [`SealedError::StillSealing`] or [`SealedError::StillRevealing`] before then.
    pub async fn result(&self, auction: RegisterId) -> Result<AuctionResult, SealedError<G::Error>> {
        let state = self.revealing(auction).await?;
        let Some((_, rule, _)) = parse(&state) else { return Err(SealedError::NotOpen(auction)) };
        match window::close(self.group, auction, "state", self.deadline_ms).await.map_err(SealedError::Group)? {
            Closing::Closed => {}
            Closing::StillOpen => return Err(SealedError::StillRevealing(auction)),
            Closing::NeverOpened => return Err(SealedError::NotOpen(auction)),
            Closing::Unknown => return Err(SealedError::Unknown(auction)),
        }
        let reserve = match self.group.read(auction, View::Committed).await.map_err(SealedError::Group)?.remove("best") {
            Some(Value::F64(r)) => r,
            _ => return Err(SealedError::NotOpen(auction)),
        };
        let bidders = self.str_field(auction, "bidders").await?.unwrap_or_default();
        let mut best: Option<(f64, String)> = None;
        for b in bidders.split(',').filter(|b| !b.is_empty()) {
            let reg = Self::bid_register(auction, b);
            let (Some(seal), Some(bid)) = (self.str_field(reg, "seal").await?, self.str_field(reg, "bid").await?) else { continue };
            let Some((amount, nonce)) = bid.split_once(' ').and_then(|(a, n)| Some((a.parse::<f64>().ok()?, n.parse::<u64>().ok()?))) else { continue };
            let beats = |x: f64, y: f64| match rule {
                Rule::Highest => x > y,
                Rule::Lowest => x < y,
            };
            if !amount.is_finite() || seal != seal_of(auction, b, amount, nonce) || beats(reserve, amount) {
                continue;
            }
            // Bidders come sorted: among equal bids the first (smaller id) stays.
            if best.as_ref().is_none_or(|(a, _)| beats(amount, *a)) {
                best = Some((amount, b.to_string()));
            }
        }
        Ok(match best {
            Some((amount, winner)) => AuctionResult { winner: Some(winner), amount },
            None => AuctionResult { winner: None, amount: reserve },
        })
    }
}
