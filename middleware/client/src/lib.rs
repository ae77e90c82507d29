//! `spook-client`: the one typed async API to a Spook domain, for applications, the Python
//! bindings, the ROS 2 bridge, the agent patterns and the Bevy twin. A [`Client`] reaches a
//! domain one of three ways (a node embedded in this process, a local `spookd` over its
//! control socket, or nodes over zenoh with a Noise-proven client key and failover) and offers
//! the same calls, types and errors whichever it took: [`Group`] reads, writes, transactions
//! and [`Watch`] streams. [`Group`] implements [`GroupApi`], the trait a simulated replica
//! implements too, so code written over it runs against real nodes and in simulation.
//!
//! It owns the protocol's requests ([`proto`]), the key names ([`keys`]), the domain key
//! token ([`domain_key`]) and the remote attach ([`remote`]); `spook-node` serves them. It
//! depends on the core's types and the secure channel, never on the node (an embedded node
//! plugs in through [`Embedded`]), and holds no protocol logic of its own.
//!
//! ```no_run
//! # async fn f() -> Result<(), spook_client::Error> {
//! use spook_client::{Client, Event, View};
//! let client = Client::local("/run/spook/control.sock").await?;
//! let fleet = client.group("fleet");
//! let mut changes = fleet.watch(View::Committed).await?;
//! fleet.write(7, [("battery", spook_client::Value::F64(0.8))]).await?;
//! while let Some(Ok(Event::Change(c))) = changes.next().await {
//!     println!("register {} now {:?}", c.register, c.fields);
//! }
//! # Ok(()) }
//! ```

mod admin;
mod client;
pub mod domain_key;
mod error;
mod failover;
mod group;
mod group_api;
pub mod identity;
pub mod keys;
mod local;
pub mod proto;
pub mod remote;
pub mod schema;
mod tx;
mod watch;

pub use admin::GroupSpec;
pub use client::{BoxFuture, Client, Embedded, Mode};
pub use error::Error;
pub use failover::RemoteOptions;
pub use group::{Group, GroupStatus, WatchOptions};
pub use proto::Reg;
pub use spook_core::{EndpointId, Schema, Value, View};
pub use spook_core::api::{Change, Event, Fields, GroupApi, Outcome, Test, TxSpec, WatchStream};
pub use tx::{Cond, Tx};
pub use watch::{Watch, WATCH_QUEUE};

/// `docs/client.md`, whose examples run as doctests so that the guide stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/client.md")]
pub struct ClientGuide;
