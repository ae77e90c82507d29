//! `spook-core`: the sans-IO engine of Spook. It owns clocks (HLC), values, the group schema,
//! deltas, causal contexts, field merge policies, the group replica with its pending and
//! committed views, anti-entropy (digests, wants, state with dots), the persistence contract
//! (`poll_persist` / `handle_persisted`) and the wire codec.
//!
//! It must not depend on tokio, zenoh, sockets, the system clock or a random source: time
//! comes in as an argument (milliseconds), frames come in as bytes, and it returns frames to
//! send, records to persist and the next wake-up. Start reading at [`Replica`].
//!
//! [`api::GroupApi`] is the group operations as one trait, which a client's group and a
//! simulated replica both implement, so that code over it runs against either.

pub mod api;
mod causal;
mod clock;
pub mod codec;
mod delta;
pub mod field;
mod id;
mod membership;
mod replica;
mod schema;
pub mod serial;
mod silence;
mod state;
mod value;

pub use causal::{CausalContext, IntervalSet};
pub use clock::{Clock, Hlc, TooFarAhead};
pub use codec::{DecodeError, Frame, FrameKind, Limits};
pub use delta::{Action, Cmp, Delta, Op, OpId, Precondition, Txn, TxnWrite};
pub use id::{Dot, EndpointId, FieldId, GroupId, PairId, ParseIdError, RegisterId};
pub use replica::{Dest, Event, GroupConfig, GroupKind, PersistRequest, Record, Replica, Stats, Transmit, TxnState, View, WriteError};
pub use schema::{FieldDef, MergePolicy, Schema, SchemaError};
pub use serial::{AbortReason, SerialCell, SerialState, TxnOutcome};
pub use silence::{SilenceDetector, SILENCE_WINDOW_MS};
pub use membership::{removal_is_backed, Removal};
pub use state::{SetHash, StateBlock};
pub use value::{canonical_f64, Value, ValueError, ValueKind};
