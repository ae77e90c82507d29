//! A blackboard: entries that agents post, each in its own register, each with an owner.
//! Posting takes a free register (one nobody holds) and makes the poster its owner; only the
//! owner updates or removes the entry. All three are serial transactions, so two agents that
//! post on one register at once get one owner between them, the same on every member. Entries
//! are typed ([`Entry`]: to and from a register's fields, checked by the group's schema) and
//! watched by a [`Selector`] (some keys, or entries whose field has some value).
//!
//! ```
//! use spook_agents::blackboard::{Blackboard, BoardError, Selector};
//! use spook_core::api::Fields;
//! use spook_core::{GroupKind, MergePolicy, RegisterId, Schema, Value, ValueKind};
//! use spook_sim::net::{NetConfig, SimNet};
//!
//! let schema = spook_agents::schema(Schema::new().field("kind", ValueKind::Str, MergePolicy::LastWriterWins));
//! let mut net = SimNet::new(NetConfig::default(), schema, GroupKind::Serial, 2);
//! let (a, b) = (net.group(0), net.group(1));
//! net.spawn(1, async move {
//!     let board = Blackboard::new(&b);
//!     let mut obstacles = board.watch::<Fields>(Selector::equals("kind", "obstacle")).await.unwrap();
//!     let seen = obstacles.next().await.unwrap().unwrap();
//!     assert_eq!((seen.key, seen.entry.map(|e| e["kind"].clone())), (RegisterId(4), Some(Value::from("obstacle"))));
//! });
//! net.spawn(0, async move {
//!     let board = Blackboard::new(&a);
//!     let entry = Fields::from([("kind".to_string(), Value::from("obstacle"))]);
//!     board.post(RegisterId(4), &entry).await.unwrap();
//!     assert!(matches!(board.post(RegisterId(4), &entry).await, Err(BoardError::Taken { .. })), "taken, by a itself");
//! });
//! net.run_for(3_000);
//! assert_eq!(net.agents(), 0);
//! ```

use std::collections::BTreeSet;

use spook_core::api::{Change, Event, Fields, GroupApi, Test, TxSpec, WatchStream};
use spook_core::{RegisterId, Value, View};

use crate::txn::{self, Done};

/// An entry's type: to and from the fields of its register. [`Fields`] is an entry too.
pub trait Entry: Sized {
    /// The fields to write (the owner field is the board's own and is left out).
    fn to_fields(&self) -> Fields;
    /// The entry the fields hold, if they hold one of this type.
    fn from_fields(fields: &Fields) -> Option<Self>;
}

impl Entry for Fields {
    fn to_fields(&self) -> Fields {
        self.clone()
    }

    fn from_fields(fields: &Fields) -> Option<Fields> {
        Some(fields.clone())
    }
}

/// Which entries a watch reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// Every entry.
    All,
    /// The entries in these registers.
    Keys(BTreeSet<RegisterId>),
    /// The entries whose field holds this value.
    Equals(String, Value),
}

impl Selector {
    /// The entries whose `field` holds `value`.
    pub fn equals(field: &str, value: impl Into<Value>) -> Selector {
        Selector::Equals(field.to_string(), value.into())
    }

    /// Whether an entry in `key` with `fields` is selected.
    #[must_use]
    pub fn selects(&self, key: RegisterId, fields: &Fields) -> bool {
        match self {
            Selector::All => true,
            Selector::Keys(k) => k.contains(&key),
            Selector::Equals(f, v) => fields.get(f) == Some(v),
        }
    }
}

/// An entry as read or watched.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted<E> {
    /// Its register.
    pub key: RegisterId,
    /// Its owner (a session id); empty once removed.
    pub owner: String,
    /// The entry; `None` once removed (or if the fields are not an `E`).
    pub entry: Option<E>,
}

/// Why a blackboard operation did not take effect. Nothing was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoardError<E> {
    /// Another agent (or this one) holds the register.
    #[error("entry {key} is held by {owner}")]
    Taken {
        /// The register.
        key: RegisterId,
        /// Its owner.
        owner: String,
    },
    /// This session does not own the entry.
    #[error("this agent does not own entry {0}")]
    NotOwner(RegisterId),
    /// The outcome is not known here by the deadline: ask again later.
    #[error("the outcome on entry {0} is not known yet")]
    Unknown(RegisterId),
    /// The group failed (a value that does not fit the schema, node lost, ...).
    #[error(transparent)]
    Group(E),
}

/// One session's blackboard on a serial group; owners in the `owner` field.
pub struct Blackboard<'g, G> {
    group: &'g G,
    deadline_ms: u64,
}

const OWNER: &str = "owner";

impl<'g, G: GroupApi> Blackboard<'g, G> {
    /// The blackboard of `group`; operations wait up to 5 s for their turn.
    pub fn new(group: &'g G) -> Blackboard<'g, G> {
        Blackboard { group, deadline_ms: 5_000 }
    }

    fn me(&self) -> String {
        self.group.id().to_string()
    }

    async fn write(&self, key: RegisterId, condition: Test, fields: Fields) -> Result<Done, BoardError<G::Error>> {
        let tx = fields.into_iter().fold(TxSpec::new().when(key, OWNER, condition), |tx, (f, v)| tx.set(key, &f, v));
        txn::run(self.group, tx, self.deadline_ms).await.map_err(BoardError::Group)
    }

    async fn owner(&self, key: RegisterId) -> Result<Option<String>, BoardError<G::Error>> {
        crate::committed_str(self.group, key, OWNER).await.map_err(BoardError::Group)
    }

    /// Post `entry` in register `key`, which nobody holds; this session owns it.
    ///
    /// # Errors
    /// [`BoardError::Taken`] if someone holds it; [`BoardError::Group`] for fields the
    /// schema does not have or values that do not fit.
    pub async fn post<E: Entry>(&self, key: RegisterId, entry: &E) -> Result<u64, BoardError<G::Error>> {
        let free = match self.owner(key).await? {
            None => Test::Absent,
            Some(o) if o.is_empty() => Test::Equals(Value::from("")),
            Some(owner) => return Err(BoardError::Taken { key, owner }),
        };
        let mut fields = entry.to_fields();
        fields.insert(OWNER.into(), Value::Str(self.me()));
        match self.write(key, free, fields).await? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(Some(_)) => Err(BoardError::Taken { key, owner: self.owner(key).await?.unwrap_or_default() }),
            Done::Failed(None) | Done::Unknown => Err(BoardError::Unknown(key)),
        }
    }

    /// Replace the fields of the entry this session owns in `key`.
    ///
    /// # Errors
    /// [`BoardError::NotOwner`] if this session does not own it.
    pub async fn update<E: Entry>(&self, key: RegisterId, entry: &E) -> Result<u64, BoardError<G::Error>> {
        self.owned(key, entry.to_fields()).await
    }

    /// Remove the entry this session owns in `key`: the register is free to post again.
    ///
    /// # Errors
    /// [`BoardError::NotOwner`] if this session does not own it (a second remove, say).
    pub async fn remove(&self, key: RegisterId) -> Result<u64, BoardError<G::Error>> {
        self.owned(key, Fields::from([(OWNER.to_string(), Value::from(""))])).await
    }

    async fn owned(&self, key: RegisterId, fields: Fields) -> Result<u64, BoardError<G::Error>> {
        match self.write(key, Test::Equals(Value::Str(self.me())), fields).await? {
            Done::Committed(fence) => Ok(fence),
            Done::Failed(Some(_)) => Err(BoardError::NotOwner(key)),
            Done::Failed(None) | Done::Unknown => Err(BoardError::Unknown(key)),
        }
    }

    /// The entry in `key` as committed here, if one is posted.
    ///
    /// # Errors
    /// The group failed.
    pub async fn read<E: Entry>(&self, key: RegisterId) -> Result<Option<Posted<E>>, BoardError<G::Error>> {
        let fields = self.group.read(key, View::Committed).await.map_err(BoardError::Group)?;
        Ok(posted(key, &fields).filter(|p| !p.owner.is_empty()))
    }

    /// Watch the committed entries that `selector` selects: each post, update and removal
    /// (a removed entry once more, with no entry), in this member's commit order.
    ///
    /// # Errors
    /// The group failed.
    pub async fn watch<E: Entry>(&self, selector: Selector) -> Result<BoardWatch<G::Watch, E>, BoardError<G::Error>> {
        let inner = self.group.watch(View::Committed).await.map_err(BoardError::Group)?;
        Ok(BoardWatch { inner, selector, live: BTreeSet::new(), _entry: std::marker::PhantomData })
    }
}

fn posted<E: Entry>(key: RegisterId, fields: &Fields) -> Option<Posted<E>> {
    let owner = match fields.get(OWNER) {
        Some(Value::Str(s)) => s.clone(),
        _ => return None,
    };
    let entry = if owner.is_empty() { None } else { E::from_fields(fields) };
    Some(Posted { key, owner, entry })
}

/// A watch of blackboard entries ([`Blackboard::watch`]).
pub struct BoardWatch<W, E> {
    inner: W,
    selector: Selector,
    /// Selected entries reported and not removed since: a removal is reported for these.
    live: BTreeSet<RegisterId>,
    _entry: std::marker::PhantomData<fn() -> E>,
}

impl<W: WatchStream, E: Entry> BoardWatch<W, E> {
    /// The next change of a selected entry; `None` once the group's watch has ended.
    pub async fn next(&mut self) -> Option<Result<Posted<E>, W::Error>> {
        loop {
            let Change { register, fields, .. } = match self.inner.next().await? {
                Ok(Event::Change(c)) => c,
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            };
            let Some(p) = posted::<E>(register, &fields) else { continue };
            // A removed entry has no fields of its own to select by: it is reported if it
            // was selected before.
            let selected = if p.owner.is_empty() { self.live.remove(&register) } else { self.selector.selects(register, &fields) };
            if !selected {
                continue;
            }
            if !p.owner.is_empty() {
                self.live.insert(register);
            }
            return Some(Ok(p));
        }
    }
}
