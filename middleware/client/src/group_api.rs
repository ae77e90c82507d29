//! The client's group as a [`GroupApi`]: the same operations a simulated replica offers, so
//! code written over the trait (the agent patterns, the fleet twin) runs against real nodes.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use spook_core::api::{Fields, GroupApi, Outcome, Test, TxSpec, WatchStream};
use spook_core::{Cmp, EndpointId, RegisterId, Schema, View};

use crate::error::Error;
use crate::tx::{Cond, Tx};
use crate::{Event, Group, Watch};

fn cond(c: spook_core::api::Condition) -> Cond {
    let (r, f) = (c.register, c.field.as_str());
    match c.test {
        Test::Equals(v) => Cond::equals(r, f, v),
        Test::Absent => Cond::absent(r, f),
        Test::Version(n) => Cond::version(r, f, n),
        Test::LeaseExpired => Cond::lease_expired(r, f),
        Test::LeaseHeld => Cond::lease_held(r, f),
        Test::Compare(cmp, v) => {
            let op = match cmp {
                Cmp::Lt => "<",
                Cmp::Le => "<=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
                Cmp::Ne => "!=",
            };
            Cond::compare(r, f, op, v)
        }
    }
}

impl Group {
    /// The client's transaction for a [`TxSpec`].
    fn tx_of(&self, spec: TxSpec) -> Tx<'_> {
        let mut tx = self.tx();
        for c in spec.conditions {
            tx = tx.when(cond(c));
        }
        for (r, f, v) in spec.sets {
            tx = tx.set(r, &f, v);
        }
        for seq in spec.after {
            tx = tx.after(seq);
        }
        if let Some(ms) = spec.lease_ms {
            tx = tx.lease_ms(ms);
        }
        if let Some(ms) = spec.deadline_ms {
            tx = tx.deadline_ms(ms);
        }
        if let Some(seq) = spec.seq {
            tx = tx.seq(seq);
        }
        tx
    }
}

impl WatchStream for Watch {
    type Error = Error;

    fn next(&mut self) -> impl Future<Output = Option<Result<Event, Error>>> + Send {
        Watch::next(self)
    }
}

impl GroupApi for Group {
    type Error = Error;
    type Watch = Watch;

    fn id(&self) -> EndpointId {
        self.client().session_id()
    }

    /// The system clock, as the node's.
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep_ms(&self, ms: u64) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(std::time::Duration::from_millis(ms))
    }

    fn schema(&self) -> impl Future<Output = Result<Schema, Error>> + Send {
        Group::schema(self)
    }

    fn read(&self, register: RegisterId, view: View) -> impl Future<Output = Result<Fields, Error>> + Send {
        self.get(register, view)
    }

    fn write(&self, register: RegisterId, fields: Fields) -> impl Future<Output = Result<u64, Error>> + Send {
        Group::write(self, register, fields)
    }

    async fn submit(&self, tx: TxSpec) -> Result<u64, Error> {
        Ok(self.tx_of(tx).no_wait().submit().await?.seq())
    }

    fn outcome(&self, seq: u64) -> impl Future<Output = Result<Option<Outcome>, Error>> + Send {
        Group::outcome(self, seq)
    }

    fn members(&self) -> impl Future<Output = Result<Vec<EndpointId>, Error>> + Send {
        Group::members(self)
    }

    fn watch(&self, view: View) -> impl Future<Output = Result<Watch, Error>> + Send {
        Group::watch(self, view)
    }

    /// The node waits for the outcome (one request, not a poll).
    fn transact(&self, tx: TxSpec) -> impl Future<Output = Result<Outcome, Error>> + Send {
        self.tx_of(tx).submit()
    }
}
