//! One group's link between its replica and the ledger: the persistence contract in practice.

use std::collections::VecDeque;

use spook_core::{Dot, GroupConfig, Op, PersistRequest, Replica};

use crate::{Ledger, LedgerError};

/// Why a local write was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalWriteError {
    /// The ledger cannot write (a full disk, an I/O error): nothing new is accepted locally
    /// until it is reopened. Reads are still served from memory.
    #[error("local writes are refused: {0}")]
    StorageUnavailable(LedgerError),
    /// The replica refused the write.
    #[error(transparent)]
    Invalid(#[from] spook_core::WriteError),
}

/// Drives one group's persistence: takes the replica's batches, writes them durably, reports
/// them back. While the ledger fails, batches wait here in memory in order (received deltas
/// are held, not acked; local writes are refused), and [`GroupStore::pump`] writes them all
/// once the ledger has been reopened.
///
/// ```
/// # use spook_core::{EndpointId, GroupConfig, GroupId, Replica, Schema, Value, RegisterId};
/// # use spook_ledger::{GroupStore, Ledger};
/// # let dir = std::env::temp_dir().join(format!("spook-store-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// # std::fs::create_dir_all(&dir).unwrap();
/// let me = EndpointId::from_index(1);
/// let cfg = GroupConfig::new(GroupId([2; 16]), Schema::fleet(), 0, vec![me]);
/// let mut ledger = Ledger::open(dir.join("a.spookdb")).unwrap();
/// let mut r = Replica::new(me, cfg.clone(), 0);
/// let mut store = GroupStore::new(cfg);
/// let battery = r.schema().field_id("battery").unwrap();
/// store.set(&mut r, 5, spook_core::RegisterId(1), battery, Value::F64(0.5)).unwrap();
/// assert_eq!(store.pump(&mut ledger, &mut r, 6).unwrap(), 1); // one batch made durable
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct GroupStore {
    cfg: GroupConfig,
    waiting: VecDeque<PersistRequest>,
    error: Option<LedgerError>,
}

impl GroupStore {
    /// A store for the group `cfg` describes.
    #[must_use]
    pub fn new(cfg: GroupConfig) -> Self {
        GroupStore { cfg, waiting: VecDeque::new(), error: None }
    }

    /// The last write error, while the ledger is failing.
    #[must_use]
    pub fn error(&self) -> Option<&LedgerError> {
        self.error.as_ref()
    }

    /// Batches waiting for the disk.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A local write, refused while the ledger cannot write.
    pub fn write(&mut self, replica: &mut Replica, now: u64, ops: Vec<Op>) -> Result<Dot, LocalWriteError> {
        if let Some(e) = &self.error {
            return Err(LocalWriteError::StorageUnavailable(e.clone()));
        }
        Ok(replica.write(now, ops)?)
    }

    /// A local write of one field, refused while the ledger cannot write.
    pub fn set(
        &mut self,
        replica: &mut Replica,
        now: u64,
        reg: spook_core::RegisterId,
        field: spook_core::FieldId,
        value: spook_core::Value,
    ) -> Result<Dot, LocalWriteError> {
        if let Some(e) = &self.error {
            return Err(LocalWriteError::StorageUnavailable(e.clone()));
        }
        Ok(replica.set(now, reg, field, value)?)
    }

    /// An operator's removal of `member` from the group ([`Replica::force_remove`]), refused
    /// while the ledger cannot write.
    pub fn force_remove(&mut self, replica: &mut Replica, now: u64, member: spook_core::EndpointId) -> Result<Dot, LocalWriteError> {
        if let Some(e) = &self.error {
            return Err(LocalWriteError::StorageUnavailable(e.clone()));
        }
        Ok(replica.force_remove(now, member)?)
    }

    /// A serial transaction, refused while the ledger cannot write.
    pub fn submit(&mut self, replica: &mut Replica, now: u64, txn: spook_core::Txn) -> Result<spook_core::OpId, LocalWriteError> {
        if let Some(e) = &self.error {
            return Err(LocalWriteError::StorageUnavailable(e.clone()));
        }
        Ok(replica.submit(now, txn)?)
    }

    /// Take the batches the replica asks to persist; true when some wait for [`Self::pump`].
    /// Touches no file: an async shell calls it to learn whether a blocking write is due.
    pub fn gather(&mut self, replica: &mut Replica) -> bool {
        while let Some(p) = replica.poll_persist() {
            self.waiting.push_back(p);
        }
        !self.waiting.is_empty()
    }

    /// Write every batch the replica has asked for, as one durable ledger write, and report
    /// them persisted. Returns how many batches became durable. On error, the batches stay
    /// here and the error is kept until a later call succeeds (after [`Ledger::reopen`]).
    pub fn pump(&mut self, ledger: &mut Ledger, replica: &mut Replica, now: u64) -> Result<usize, LedgerError> {
        if !self.gather(replica) {
            return Ok(0);
        }
        let roster = replica.roster().clone();
        let batches: Vec<_> = self.waiting.iter().map(|p| (&self.cfg, &roster, p)).collect();
        match ledger.persist(&batches) {
            Ok(()) => {
                let n = self.waiting.len();
                let last = self.waiting.back().map_or(0, |p| p.id);
                self.waiting.clear();
                self.error = None;
                replica.handle_persisted(last, now);
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Replace the group's log by the replica's snapshot when nothing is waiting: keeps the
    /// file bounded. Returns `None` when it is not the moment (batches waiting).
    pub fn compact(&mut self, ledger: &mut Ledger, replica: &Replica) -> Result<Option<crate::Compaction>, LedgerError> {
        if !self.waiting.is_empty() {
            return Ok(None);
        }
        let Some(snap) = replica.snapshot() else { return Ok(None) };
        ledger.compact(&self.cfg, replica.roster(), &snap).map(Some)
    }
}
