//! `spook-ledger` (SpookDB): the node's embedded store, one [redb](https://docs.rs/redb) file
//! and its commit log. It owns the durable half of a node: the identity key, the allow-list of peers, group
//! configurations, each group's record log (the core's [`Record`]s, written in the core's
//! record codec) with the roster needed to decode it, and the sender keys other members
//! handed over. It implements the core's persistence contract: a [`PersistRequest`] is
//! durable (fsynced) before [`Replica::handle_persisted`] is called, which is what lets the
//! core ack received deltas and send its own. A batch is durable once it is in the commit
//! log (`<ledger>.log`: one write and one `fdatasync`); the log is moved into redb at each
//! checkpoint, in one durable transaction, and replayed on open after a crash.
//!
//! It must not depend on networking, async runtimes or the crypto crate: identities, peers and
//! keys are opaque bytes here, so the store can be tested and benchmarked on its own.
//!
//! Failure is explicit. Every value carries a checksum that is verified on read; a damaged
//! file is reported by [`LedgerError::Corrupt`], never silently skipped. After an I/O error
//! (a full disk, typically) redb refuses further use of the handle, so the ledger marks
//! itself failed, refuses writes with a typed error and must be [`Ledger::reopen`]ed;
//! [`GroupStore`] keeps the unwritten batches in memory meanwhile and writes them after.

mod store;
mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use spook_core::{codec, EndpointId, GroupConfig, GroupId, PersistRequest, Record};

pub use store::{GroupStore, LocalWriteError};

#[cfg(doc)]
use spook_core::Replica;

/// Format of the ledger file this build writes. Format 1 stored each record in a row of its
/// own; format 2 stores each durable batch as one row (`batches-<group hex>`, keyed by the
/// index of its first record), which a checkpoint inserts once instead of once per record.
/// A format-1 file is read as it is (its rows stay where they are) and marked format 2 when
/// opened, so that an older build refuses it rather than missing the batches.
pub const FORMAT: u32 = 2;
const MAGIC: &[u8] = b"spookdb";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The commit log's generation: its frames of this generation are not in redb yet.
const WAL_GEN: &str = "wal-gen";
/// The commit log's id, random per ledger.
const WAL_ID: &str = "wal-id";
const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
const GROUPS: TableDefinition<u128, &[u8]> = TableDefinition::new("groups");
const ROSTERS: TableDefinition<u128, &[u8]> = TableDefinition::new("rosters");
/// Each group's log is its own table, `log-<group hex>`, so compaction drops a whole table
/// instead of deleting a million rows in one copy-on-write transaction.
type LogTable<'a> = TableDefinition<'a, u64, &'static [u8]>;
const LOG_PREFIX: &str = "log-";

fn log_name(g: &GroupId) -> String {
    format!("{LOG_PREFIX}{}", hex(&g.0))
}
/// Each group's batches (format 2): one row per durable batch, keyed by its first record's
/// index; the value is the batch's records (each sealed, so each carries its checksum), each
/// after its length (u32, little endian).
const BATCH_PREFIX: &str = "batches-";

fn batch_name(g: &GroupId) -> String {
    format!("{BATCH_PREFIX}{}", hex(&g.0))
}

fn batch_row(records: &[Vec<u8>]) -> Vec<u8> {
    let mut row = Vec::with_capacity(records.iter().map(|r| r.len() + 4).sum());
    for r in records {
        row.extend_from_slice(&(r.len() as u32).to_le_bytes());
        row.extend_from_slice(r);
    }
    row
}

/// The sealed records of a batch row, in order.
fn split_row<'a>(path: &Path, where_: &dyn Fn() -> String, mut row: &'a [u8]) -> Result<Vec<&'a [u8]>, LedgerError> {
    let mut out = Vec::new();
    while !row.is_empty() {
        let corrupt = || LedgerError::Corrupt { path: path.to_path_buf(), detail: format!("{} is cut short", where_()) };
        let (len, rest) = row.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt());
        }
        out.push(&rest[..len]);
        row = &rest[len..];
    }
    Ok(out)
}
const SENDER_KEYS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("sender_keys");

/// Errors of the ledger. Each names the file and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The disk is full. Writes are refused until space is freed and the ledger reopened.
    #[error("disk full writing ledger {path}: local writes are refused until space is freed and the ledger is reopened")]
    DiskFull {
        /// The ledger file.
        path: PathBuf,
    },
    /// An I/O error other than a full disk.
    #[error("I/O error on ledger {path}: {detail}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// What the system said.
        detail: String,
    },
    /// An earlier I/O error made redb refuse this handle: reopen the ledger.
    #[error("ledger {path} failed earlier ({cause}); reopen it once the cause is fixed")]
    NeedsReopen {
        /// The ledger file.
        path: PathBuf,
        /// The error that failed it.
        cause: String,
    },
    /// The file is damaged: a page or a record fails its checksum, or a record does not decode.
    #[error("ledger {path} is corrupt: {detail}; restore it from a backup or re-align from peers with a new ledger")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// Where.
        detail: String,
    },
    /// The file is a redb database but not a Spook ledger, or of another format version.
    #[error("{path} is not a Spook ledger of format {FORMAT}: {detail}")]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// Another process holds the ledger open.
    #[error("ledger {path} is already open in another process")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// A value is larger than the ledger stores.
    #[error("a record of {0} bytes is too large for the ledger")]
    TooLarge(usize),
}

/// The outcome of [`Ledger::compact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// Records in the group's log before.
    pub before: u64,
    /// Records after (the snapshot).
    pub after: u64,
}

/// The ledger: one redb file and its commit log. [`Ledger::persist`] appends to the log; every
/// other method that writes commits one durable redb transaction, which also checkpoints the
/// log.
///
/// ```
/// # use spook_core::{EndpointId, GroupConfig, GroupId, Replica, Schema, Value, RegisterId};
/// # use spook_ledger::Ledger;
/// let dir = std::env::temp_dir().join(format!("spook-ledger-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("node.spookdb");
/// let me = EndpointId::from_index(1);
/// let cfg = GroupConfig::new(GroupId([1; 16]), Schema::fleet(), 0, vec![me]);
/// let mut r = Replica::new(me, cfg.clone(), 0);
/// let battery = r.schema().field_id("battery").unwrap();
/// r.set(10, RegisterId(3), battery, Value::F64(0.8)).unwrap();
///
/// let mut ledger = Ledger::open(&path).unwrap();
/// let req = r.poll_persist().unwrap();
/// ledger.persist(&[(&cfg, r.roster(), &req)]).unwrap();   // fsynced
/// r.handle_persisted(req.id, 11);
/// drop(ledger);
///
/// let ledger = Ledger::open(&path).unwrap();              // recovery on open
/// let back = Replica::restore(me, cfg.clone(), &ledger.load(&cfg).unwrap(), 20);
/// assert_eq!(back.state_hash(), r.state_hash());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct Ledger {
    path: PathBuf,
    db: Option<Database>,
    failed: Option<String>,
    /// Next log index per group.
    next: BTreeMap<GroupId, u64>,
    /// Roster length last written per group (rosters only grow).
    roster_len: BTreeMap<GroupId, usize>,
    /// The commit log, once opened (after redb, which guards against a second process).
    wal: Option<wal::Wal>,
    /// Batches durable in the log but not yet in redb, by group: (index of the first record,
    /// the records' stored values).
    pending: BTreeMap<GroupId, Vec<(u64, Vec<Vec<u8>>)>>,
    /// Rosters durable in the log but not yet in redb (the newest per group).
    pending_rosters: BTreeMap<GroupId, Vec<u8>>,
    /// Checkpoints since open, for operators.
    checkpoints: u64,
}

/// A log id nobody else has: this crate takes no random source, and the time in nanoseconds,
/// the process and the path are unique enough to tell ledgers apart.
fn new_log_id(path: &Path) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(path.as_os_str().as_encoded_bytes());
    let mut b = [0; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn gkey(g: &GroupId) -> u128 {
    u128::from_be_bytes(g.0)
}

fn seal_value(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&blake3::hash(payload).as_bytes()[..8]);
    v.extend_from_slice(payload);
    v
}

impl Ledger {
    /// Open the ledger at `path`, creating it (mode 0600: it holds the identity key) if it does
    /// not exist. Recovery happens here: redb rolls back to the last durable commit, and the
    /// format marker is checked.
    pub fn open(path: impl AsRef<Path>) -> Result<Ledger, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let db = Self::open_db(&path)?;
        let mut l = Ledger {
            path,
            db: Some(db),
            failed: None,
            next: BTreeMap::new(),
            roster_len: BTreeMap::new(),
            wal: None,
            pending: BTreeMap::new(),
            pending_rosters: BTreeMap::new(),
            checkpoints: 0,
        };
        l.init()?;
        Ok(l)
    }

    fn open_db(path: &Path) -> Result<Database, LedgerError> {
        let exists = path.exists();
        let res = if exists {
            Database::open(path)
        } else {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let file = o.open(path).map_err(|e| io_error(path, &e))?;
            Database::builder().create_file(file)
        };
        res.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Locked { path: path.to_path_buf() },
            redb::DatabaseError::Storage(s) => storage_error(path, s),
            other => LedgerError::NotALedger { path: path.to_path_buf(), detail: other.to_string() },
        })
    }

    fn init(&mut self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| self.fail(e))?;
        let replayed;
        {
            let mut meta = txn.open_table(META).map_err(|e| fail_on(&path, e))?;
            let found = meta.get("format").map_err(|e| fail_on(&path, e))?.map(|v| v.value().to_vec());
            match found {
                None => {
                    let is_empty = meta.len().map_err(|e| fail_on(&path, e))? == 0;
                    if !is_empty {
                        return Err(LedgerError::NotALedger { path, detail: "no format marker".into() });
                    }
                    let mut v = MAGIC.to_vec();
                    v.extend_from_slice(&FORMAT.to_le_bytes());
                    meta.insert("format", v.as_slice()).map_err(|e| fail_on(&path, e))?;
                }
                Some(v) => {
                    if v.len() != MAGIC.len() + 4 || &v[..MAGIC.len()] != MAGIC {
                        return Err(LedgerError::NotALedger { path, detail: "the format marker is not Spook's".into() });
                    }
                    let mut f = [0u8; 4];
                    f.copy_from_slice(&v[MAGIC.len()..]);
                    let f = u32::from_le_bytes(f);
                    match f {
                        FORMAT => {}
                        1 => {
                            tracing::info!(path = %path.display(), "ledger format 1: its records stay as they are; new batches are stored whole (format 2)");
                            let mut v = MAGIC.to_vec();
                            v.extend_from_slice(&FORMAT.to_le_bytes());
                            meta.insert("format", v.as_slice()).map_err(|e| fail_on(&path, e))?;
                        }
                        _ => return Err(LedgerError::NotALedger { path, detail: format!("format {f} (this build reads 1 and {FORMAT})") }),
                    }
                }
            }
            txn.open_table(PEERS).map_err(|e| fail_on(&path, e))?;
            txn.open_table(GROUPS).map_err(|e| fail_on(&path, e))?;
            txn.open_table(ROSTERS).map_err(|e| fail_on(&path, e))?;
            txn.open_table(SENDER_KEYS).map_err(|e| fail_on(&path, e))?;
            // Next index per group: one past the last key of each group's table.
            let mut next = BTreeMap::new();
            let names: Vec<String> = txn.list_tables().map_err(|e| fail_on(&path, e))?.map(|h| h.name().to_string()).collect();
            for name in names.iter().filter(|n| n.starts_with(LOG_PREFIX)) {
                let Some(g) = parse_group(&name[LOG_PREFIX.len()..]) else {
                    return Err(LedgerError::Corrupt { path, detail: format!("table {name} is not named for a group") });
                };
                let log = txn.open_table(LogTable::new(name)).map_err(|e| fail_on(&path, e))?;
                let last = log.last().map_err(|e| fail_on(&path, e))?.map(|(k, _)| k.value());
                next.insert(g, last.map_or(0, |k| k + 1));
            }
            for name in names.iter().filter(|n| n.starts_with(BATCH_PREFIX)) {
                let Some(g) = parse_group(&name[BATCH_PREFIX.len()..]) else {
                    return Err(LedgerError::Corrupt { path, detail: format!("table {name} is not named for a group") });
                };
                let t = txn.open_table(LogTable::new(name)).map_err(|e| fail_on(&path, e))?;
                let last = t.last().map_err(|e| fail_on(&path, e))?;
                if let Some((k, v)) = last {
                    let n = split_row(&path, &|| format!("the last row of {name}"), v.value())?.len() as u64;
                    let e = next.entry(g).or_insert(0);
                    *e = (*e).max(k.value() + n);
                }
            }
            self.next = next;
            // Replay the commit log: the batches made durable since the last checkpoint.
            let read_u64 = |key: &str| -> Result<Option<u64>, LedgerError> {
                let Some(v) = meta.get(key).map_err(|e| fail_on(&path, e))? else { return Ok(None) };
                let b = open_value(&path, &format!("meta/{key}"), v.value())?;
                let b: [u8; 8] = b.as_slice().try_into().map_err(|_| LedgerError::Corrupt { path: path.clone(), detail: format!("meta/{key} is not a u64") })?;
                Ok(Some(u64::from_le_bytes(b)))
            };
            let gen = read_u64(WAL_GEN)?.unwrap_or(0);
            // A ledger's own log id, made when it is first opened: a log file left beside it by
            // another ledger (one deleted and created anew, say) is then never replayed.
            let id = match read_u64(WAL_ID)? {
                Some(id) => id,
                None => {
                    let id = new_log_id(&path);
                    meta.insert(WAL_ID, seal_value(&id.to_le_bytes()).as_slice()).map_err(|e| fail_on(&path, e))?;
                    id
                }
            };
            drop(meta);
            let wal_path = self.wal_path();
            let (w, entries) = wal::Wal::open(&wal_path, gen, id).map_err(|e| match e {
                wal::ReadError::Io(e) => io_error(&wal_path, &e),
                wal::ReadError::Corrupt(detail) => LedgerError::Corrupt { path: wal_path.clone(), detail },
            })?;
            self.wal = Some(w);
            replayed = !entries.is_empty();
            if replayed {
                tracing::info!(log = %wal_path.display(), entries = entries.len(), "replaying the commit log");
                for e in entries {
                    // Batches follow each other in a group's log: anything else is not ours.
                    let expected = self.next.get(&GroupId(e.group)).copied().unwrap_or(0);
                    if e.start != expected {
                        return Err(LedgerError::Corrupt {
                            path: wal_path,
                            detail: format!("a batch of group {} starts at record {} where {expected} was next", hex(&e.group), e.start),
                        });
                    }
                    self.take_entry(e);
                }
                flush_pending(&txn, &path, &self.pending, &self.pending_rosters, gen + 1)?;
            }
        }
        txn.commit().map_err(|e| fail_on(&path, e))?;
        if replayed {
            self.checkpointed();
        }
        Ok(())
    }

    /// The commit log's file: the ledger's path with `.log` appended.
    #[must_use]
    pub fn wal_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".log");
        PathBuf::from(p)
    }

    /// Hold a log entry as pending (it is durable in the log) and advance the group's index.
    fn take_entry(&mut self, e: wal::Entry) {
        let g = GroupId(e.group);
        let n = e.records.len() as u64;
        if let Some(r) = e.roster {
            self.pending_rosters.insert(g, r);
        }
        self.pending.entry(g).or_default().push((e.start, e.records));
        let next = self.next.entry(g).or_insert(0);
        *next = (*next).max(e.start + n);
    }

    /// After a durable commit that flushed the pending records: the log starts over.
    fn checkpointed(&mut self) {
        self.checkpoints += 1;
        self.pending.clear();
        self.pending_rosters.clear();
        if let Some(w) = &mut self.wal {
            let gen = w.gen + 1;
            w.restart(gen);
        }
    }

    /// Checkpoints of the commit log into redb since the ledger was opened (every durable
    /// redb transaction is one).
    #[must_use]
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Move the commit log into redb now (one durable transaction). It happens by itself when
    /// the log is full and with every other write; a node calls it on a clean shutdown.
    pub fn checkpoint(&mut self) -> Result<(), LedgerError> {
        self.write(|_, _| Ok(()))
    }

    /// The ledger file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the ledger accepts writes (no I/O error since it was opened).
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.failed.is_none() && self.db.is_some()
    }

    /// Close and open the file again: the way back after an I/O error, once its cause (a full
    /// disk) is fixed. Recovery runs as on [`Ledger::open`].
    pub fn reopen(&mut self) -> Result<(), LedgerError> {
        self.db = None;
        self.wal = None;
        self.pending.clear();
        self.pending_rosters.clear();
        let db = Self::open_db(&self.path)?;
        self.db = Some(db);
        self.failed = None;
        self.roster_len.clear();
        // Replaying the commit log writes to redb: on a disk still full that fails, and the
        // handle stays failed with that cause.
        self.init().inspect_err(|e| self.failed = Some(e.to_string()))
    }

    fn db(&self) -> Result<&Database, LedgerError> {
        if let Some(cause) = &self.failed {
            return Err(LedgerError::NeedsReopen { path: self.path.clone(), cause: cause.clone() });
        }
        self.db.as_ref().ok_or_else(|| LedgerError::NeedsReopen { path: self.path.clone(), cause: "closed".into() })
    }

    /// Record a failure of the handle (redb refuses further use after an I/O error).
    fn fail(&self, e: impl Into<redb::Error>) -> LedgerError {
        fail_on(&self.path, e)
    }

    fn note(&mut self, e: LedgerError) -> LedgerError {
        // NeedsReopen from redb (an I/O error it saw earlier, on a read say) fails the handle
        // too, so that the node reopens it.
        if matches!(e, LedgerError::DiskFull { .. } | LedgerError::Io { .. }) || (matches!(e, LedgerError::NeedsReopen { .. }) && self.failed.is_none()) {
            self.failed = Some(e.to_string());
        }
        e
    }

    /// Run one durable write transaction; it checkpoints the commit log too.
    fn write<T>(&mut self, f: impl FnOnce(&redb::WriteTransaction, &Path) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let r = (|| {
            let db = self.db()?;
            // The generation must only rise: without the log (never the case while the
            // handle is healthy) there is no generation to go on from.
            let gen = self.wal.as_ref().map(|w| w.gen).ok_or_else(|| LedgerError::NeedsReopen { path: self.path.clone(), cause: "the commit log is closed".into() })?;
            let mut txn = db.begin_write().map_err(|e| self.fail(e))?;
            txn.set_durability(Durability::Immediate);
            flush_pending(&txn, &self.path, &self.pending, &self.pending_rosters, gen + 1)?;
            let out = f(&txn, &self.path)?;
            txn.commit().map_err(|e| self.fail(e))?;
            Ok(out)
        })();
        match r {
            Ok(out) => {
                self.checkpointed();
                Ok(out)
            }
            Err(e) => Err(self.note(e)),
        }
    }

    // ------------------------------------------------------------ identity, peers, groups

    /// The stored identity (opaque bytes: the crypto crate's key material), if any.
    pub fn identity(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get_meta("identity")
    }

    /// Store the identity. It is written once: a second call fails rather than replace a key.
    pub fn set_identity(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        if self.identity()?.is_some() {
            return Err(LedgerError::NotALedger { path: self.path.clone(), detail: "an identity exists already; refusing to replace it".into() });
        }
        let v = seal_value(bytes);
        self.write(|txn, path| {
            txn.open_table(META).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert("identity", v.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e)))
        })
    }

    /// The domain key (opaque bytes: the node's encoding of generation and secret), if any.
    pub fn domain_key(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get_meta("domain-key")
    }

    /// Store the domain key, replacing the one before (a rotation, or joining a domain).
    pub fn set_domain_key(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        let v = seal_value(bytes);
        self.write(|txn, path| {
            txn.open_table(META).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert("domain-key", v.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e)))
        })
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        let t = txn.open_table(META).map_err(|e| self.fail(e))?;
        let v = t.get(key).map_err(|e| self.fail(e))?;
        v.map(|v| open_value(&self.path, &format!("meta/{key}"), v.value())).transpose()
    }

    /// Add or replace a peer entry (opaque bytes, keyed by the peer's id).
    pub fn put_peer(&mut self, id: &EndpointId, entry: &[u8]) -> Result<(), LedgerError> {
        let v = seal_value(entry);
        self.write(|txn, path| txn.open_table(PEERS).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert(id.0.as_slice(), v.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e))))
    }

    /// Remove a peer entry; whether it was there.
    pub fn remove_peer(&mut self, id: &EndpointId) -> Result<bool, LedgerError> {
        self.write(|txn, path| txn.open_table(PEERS).map_err(|e| fail_on(path, e)).and_then(|mut t| t.remove(id.0.as_slice()).map(|v| v.is_some()).map_err(|e| fail_on(path, e))))
    }

    /// Every peer entry.
    pub fn peers(&self) -> Result<Vec<(EndpointId, Vec<u8>)>, LedgerError> {
        self.scan(PEERS, "peers", |k: &[u8]| {
            let mut id = [0u8; 32];
            (k.len() == 32).then(|| {
                id.copy_from_slice(k);
                EndpointId(id)
            })
        })
    }

    /// Store a group's configuration (opaque bytes encoded by the node).
    pub fn put_group(&mut self, group: &GroupId, config: &[u8]) -> Result<(), LedgerError> {
        let v = seal_value(config);
        self.write(|txn, path| txn.open_table(GROUPS).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert(gkey(group), v.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e))))
    }

    /// Forget a group for good, in one durable transaction: its configuration, roster, record
    /// log and the sender keys stored for it (leaving a group). The commit log is moved into
    /// redb in the same transaction, so no replay can bring the group's records back. Returns
    /// whether the group was stored.
    pub fn remove_group(&mut self, group: &GroupId) -> Result<bool, LedgerError> {
        let g = gkey(group);
        let existed = self.write(|txn, path| {
            let existed = txn.open_table(GROUPS).and_then(|mut t| Ok(t.remove(g)?.is_some())).map_err(|e| fail_on(path, e))?;
            txn.open_table(ROSTERS).and_then(|mut t| Ok(t.remove(g).map(|_| ())?)).map_err(|e| fail_on(path, e))?;
            txn.delete_table(LogTable::new(&log_name(group))).map_err(|e| fail_on(path, e))?;
            txn.delete_table(LogTable::new(&batch_name(group))).map_err(|e| fail_on(path, e))?;
            let mut keys = txn.open_table(SENDER_KEYS).map_err(|e| fail_on(path, e))?;
            keys.retain_in((g, 0)..=(g, u32::MAX), |_, _| false).map_err(|e| fail_on(path, e))?;
            Ok(existed)
        })?;
        self.next.remove(group);
        self.roster_len.remove(group);
        Ok(existed)
    }

    /// Every stored group configuration.
    pub fn groups(&self) -> Result<Vec<(GroupId, Vec<u8>)>, LedgerError> {
        self.scan(GROUPS, "groups", |k: u128| Some(GroupId(k.to_be_bytes())))
    }

    /// Store a sender key another member handed over (opaque bytes). An endpoint's own sending
    /// key is never stored: it is fresh at every start, so no nonce is ever reused.
    pub fn put_sender_key(&mut self, group: &GroupId, key_id: u32, key: &[u8]) -> Result<(), LedgerError> {
        let v = seal_value(key);
        self.write(|txn, path| txn.open_table(SENDER_KEYS).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert((gkey(group), key_id), v.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e))))
    }

    /// The sender keys stored for a group.
    pub fn sender_keys(&self, group: &GroupId) -> Result<Vec<(u32, Vec<u8>)>, LedgerError> {
        let g = gkey(group);
        self.scan(SENDER_KEYS, "sender_keys", |k: (u128, u32)| (k.0 == g).then_some(k.1))
    }

    fn scan<K: redb::Key + 'static, O>(
        &self,
        def: TableDefinition<K, &'static [u8]>,
        name: &str,
        key: impl Fn(K::SelfType<'_>) -> Option<O>,
    ) -> Result<Vec<(O, Vec<u8>)>, LedgerError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        let t = txn.open_table(def).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.fail(e))? {
            let (k, v) = item.map_err(|e| self.fail(e))?;
            if let Some(o) = key(k.value()) {
                out.push((o, open_value(&self.path, name, v.value())?));
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------ records

    /// Write batches of records durably, in one transaction (group commit): when this returns
    /// `Ok`, every batch is on disk and may be reported with `handle_persisted`. Each batch
    /// comes with its group's configuration (to encode it) and roster (stored beside the log,
    /// to decode it later).
    pub fn persist(&mut self, batches: &[(&GroupConfig, &BTreeMap<u64, EndpointId>, &PersistRequest)]) -> Result<(), LedgerError> {
        self.db()?;
        let mut next = self.next.clone();
        let mut roster_len = self.roster_len.clone();
        let mut entries = Vec::with_capacity(batches.len());
        for (cfg, roster, req) in batches {
            let records: Vec<Vec<u8>> = req.records.iter().map(|r| seal_value(&codec::encode_record(&cfg.schema, cfg.genesis_ms, r))).collect();
            let start = next.entry(cfg.group).or_insert(0);
            let changed = roster_len.get(&cfg.group) != Some(&roster.len());
            entries.push(wal::Entry { group: cfg.group.0, start: *start, roster: changed.then(|| roster_bytes(roster)), records });
            *start += req.records.len() as u64;
            roster_len.insert(cfg.group, roster.len());
        }
        let body = wal::encode(&entries);
        if body.len() > wal::MAX_BODY {
            return Err(LedgerError::TooLarge(body.len()));
        }
        // A full log is moved into redb first; an empty one takes even a write larger than
        // its segment (the file grows) rather than a checkpoint of nothing.
        if self.wal.as_ref().is_some_and(|w| !w.is_empty() && !w.fits(body.len())) {
            self.checkpoint()?;
        }
        let Some(w) = self.wal.as_mut() else {
            return Err(LedgerError::NeedsReopen { path: self.path.clone(), cause: "the commit log is closed".into() });
        };
        if let Err(e) = w.append(&body) {
            let e = io_error(w.path(), &e);
            return Err(self.note(e));
        }
        for e in entries {
            self.take_entry(e);
        }
        self.roster_len = roster_len;
        Ok(())
    }

    /// Every durable record of a group, in the order written: what `Replica::restore` takes.
    pub fn load(&self, cfg: &GroupConfig) -> Result<Vec<Record>, LedgerError> {
        let g = gkey(&cfg.group);
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        // The newest roster: one still only in the commit log, else redb's.
        let stored = match self.pending_rosters.get(&cfg.group) {
            Some(b) => Some(b.clone()),
            None => txn.open_table(ROSTERS).and_then(|t| Ok(t.get(g)?.map(|v| v.value().to_vec()))).map_err(|e| self.fail(e))?,
        };
        let roster = match stored {
            Some(b) => parse_roster(&self.path, &open_value(&self.path, "rosters", &b)?)?,
            None => BTreeMap::new(),
        };
        let view = codec::GroupView { schema: &cfg.schema, genesis_ms: cfg.genesis_ms, roster: &roster, limits: codec::Limits::default() };
        let decode = |where_: String, v: &[u8]| -> Result<Record, LedgerError> {
            let bytes = open_value(&self.path, &where_, v)?;
            codec::decode_record(&view, &bytes).map_err(|e| LedgerError::Corrupt { path: self.path.clone(), detail: format!("{where_} does not decode: {e}") })
        };
        let pending = self.pending.get(&cfg.group).map_or(&[][..], Vec::as_slice);
        let mut out = Vec::new();
        let gh = hex(&cfg.group.0);
        // Format 1's rows first: every one of them precedes every batch row.
        match txn.open_table(LogTable::new(&log_name(&cfg.group))) {
            Ok(log) => {
                for item in log.iter().map_err(|e| self.fail(e))? {
                    let (k, v) = item.map_err(|e| self.fail(e))?;
                    out.push(decode(format!("log record {} of group {gh}", k.value()), v.value())?);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.fail(e)),
        }
        match txn.open_table(LogTable::new(&batch_name(&cfg.group))) {
            Ok(t) => {
                for item in t.iter().map_err(|e| self.fail(e))? {
                    let (k, v) = item.map_err(|e| self.fail(e))?;
                    let start = k.value();
                    for (i, r) in split_row(&self.path, &|| format!("batch {start} of group {gh}"), v.value())?.into_iter().enumerate() {
                        out.push(decode(format!("record {} of group {gh}", start + i as u64), r)?);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.fail(e)),
        }
        for (start, recs) in pending {
            for (i, v) in recs.iter().enumerate() {
                out.push(decode(format!("commit log record {} of group {gh}", *start + i as u64), v)?);
            }
        }
        Ok(out)
    }

    /// Records in a group's log.
    pub fn record_count(&self, group: &GroupId) -> Result<u64, LedgerError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.fail(e))?;
        let mut n = self.pending.get(group).map_or(0, |p| p.iter().map(|(_, r)| r.len() as u64).sum());
        match txn.open_table(LogTable::new(&log_name(group))) {
            Ok(t) => n += t.len().map_err(|e| self.fail(e))?,
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.fail(e)),
        }
        let name = batch_name(group);
        match txn.open_table(LogTable::new(&name)) {
            Ok(t) => {
                for item in t.iter().map_err(|e| self.fail(e))? {
                    let (k, v) = item.map_err(|e| self.fail(e))?;
                    n += split_row(&self.path, &|| format!("batch {} of {name}", k.value()), v.value())?.len() as u64;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.fail(e)),
        }
        Ok(n)
    }

    /// Replace a group's log by a snapshot ([`Replica::snapshot`]) in one durable
    /// transaction: a crash leaves either the old log or the snapshot, never a mix. Call it
    /// only when no batch of the group is waiting to be written.
    pub fn compact(&mut self, cfg: &GroupConfig, roster: &BTreeMap<u64, EndpointId>, snapshot: &[Record]) -> Result<Compaction, LedgerError> {
        let g = gkey(&cfg.group);
        let recs: Vec<Vec<u8>> = snapshot.iter().map(|r| seal_value(&codec::encode_record(&cfg.schema, cfg.genesis_ms, r))).collect();
        let start = self.next.get(&cfg.group).copied().unwrap_or(0);
        let rbytes = roster_bytes(roster);
        let before = self.record_count(&cfg.group)?;
        self.write(|txn, path| {
            txn.delete_table(LogTable::new(&log_name(&cfg.group))).map_err(|e| fail_on(path, e))?;
            let name = batch_name(&cfg.group);
            txn.delete_table(LogTable::new(&name)).map_err(|e| fail_on(path, e))?;
            if !recs.is_empty() {
                let mut t = txn.open_table(LogTable::new(&name)).map_err(|e| fail_on(path, e))?;
                t.insert(start, batch_row(&recs).as_slice()).map_err(|e| fail_on(path, e))?;
            }
            txn.open_table(ROSTERS).map_err(|e| fail_on(path, e)).and_then(|mut t| t.insert(g, rbytes.as_slice()).map(|_| ()).map_err(|e| fail_on(path, e)))
        })?;
        self.next.insert(cfg.group, start + recs.len() as u64);
        self.roster_len.insert(cfg.group, roster.len());
        Ok(Compaction { before, after: recs.len() as u64 })
    }

    /// Give freed pages back to the file system (redb's compaction of the file itself).
    pub fn shrink(&mut self) -> Result<bool, LedgerError> {
        let path = self.path.clone();
        let db = self.db.as_mut().ok_or_else(|| LedgerError::NeedsReopen { path: path.clone(), cause: "closed".into() })?;
        db.compact().map_err(|e| fail_on(&path, e))
    }

    /// Size of the ledger file in bytes.
    pub fn file_size(&self) -> Result<u64, LedgerError> {
        std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| io_error(&self.path, &e))
    }
}

/// Write the commit log's pending records and rosters into `txn`, and the generation the log
/// goes on with once `txn` is durable.
fn flush_pending(
    txn: &redb::WriteTransaction,
    path: &Path,
    pending: &BTreeMap<GroupId, Vec<(u64, Vec<Vec<u8>>)>>,
    rosters: &BTreeMap<GroupId, Vec<u8>>,
    next_gen: u64,
) -> Result<(), LedgerError> {
    // One row per batch: a checkpoint of 1,000-delta batches inserts one row for each, not
    // 1,000 (redb's insert, ~2 µs, was what bounded batched writes).
    for (g, batches) in pending {
        let mut t = txn.open_table(LogTable::new(&batch_name(g))).map_err(|e| fail_on(path, e))?;
        for (start, recs) in batches {
            t.insert(*start, batch_row(recs).as_slice()).map_err(|e| fail_on(path, e))?;
        }
    }
    let mut rt = txn.open_table(ROSTERS).map_err(|e| fail_on(path, e))?;
    for (g, bytes) in rosters {
        rt.insert(gkey(g), bytes.as_slice()).map_err(|e| fail_on(path, e))?;
    }
    let gen = seal_value(&next_gen.to_le_bytes());
    txn.open_table(META).map_err(|e| fail_on(path, e))?.insert(WAL_GEN, gen.as_slice()).map_err(|e| fail_on(path, e))?;
    Ok(())
}

fn roster_bytes(roster: &BTreeMap<u64, EndpointId>) -> Vec<u8> {
    seal_value(&roster.values().flat_map(|id| id.0).collect::<Vec<u8>>())
}

fn parse_roster(path: &Path, b: &[u8]) -> Result<BTreeMap<u64, EndpointId>, LedgerError> {
    if b.len() % 32 != 0 {
        return Err(LedgerError::Corrupt { path: path.to_path_buf(), detail: "a roster is not a list of 32-byte ids".into() });
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            let id = EndpointId(id);
            (id.short(), id)
        })
        .collect())
}

fn open_value(path: &Path, what: &str, v: &[u8]) -> Result<Vec<u8>, LedgerError> {
    let corrupt = |d: &str| LedgerError::Corrupt { path: path.to_path_buf(), detail: format!("{what}: {d}") };
    if v.len() < 8 {
        return Err(corrupt("shorter than its checksum"));
    }
    let (sum, payload) = v.split_at(8);
    if sum != &blake3::hash(payload).as_bytes()[..8] {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(payload.to_vec())
}

fn parse_group(h: &str) -> Option<GroupId> {
    let mut g = [0u8; 16];
    if h.len() != 32 {
        return None;
    }
    for (i, b) in g.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(GroupId(g))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io_error(path: &Path, e: &std::io::Error) -> LedgerError {
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        LedgerError::DiskFull { path: path.to_path_buf() }
    } else if e.kind() == std::io::ErrorKind::InvalidData {
        LedgerError::Corrupt { path: path.to_path_buf(), detail: e.to_string() }
    } else {
        LedgerError::Io { path: path.to_path_buf(), detail: e.to_string() }
    }
}

fn storage_error(path: &Path, e: redb::StorageError) -> LedgerError {
    match e {
        redb::StorageError::Io(io) => io_error(path, &io),
        redb::StorageError::Corrupted(d) => LedgerError::Corrupt { path: path.to_path_buf(), detail: d },
        redb::StorageError::ValueTooLarge(n) => LedgerError::TooLarge(n),
        redb::StorageError::PreviousIo => LedgerError::NeedsReopen { path: path.to_path_buf(), cause: "an earlier I/O error".into() },
        other => LedgerError::Io { path: path.to_path_buf(), detail: other.to_string() },
    }
}

fn fail_on(path: &Path, e: impl Into<redb::Error>) -> LedgerError {
    match e.into() {
        redb::Error::Io(io) => io_error(path, &io),
        redb::Error::Corrupted(d) => LedgerError::Corrupt { path: path.to_path_buf(), detail: d },
        redb::Error::ValueTooLarge(n) => LedgerError::TooLarge(n),
        redb::Error::PreviousIo => LedgerError::NeedsReopen { path: path.to_path_buf(), cause: "an earlier I/O error".into() },
        redb::Error::DatabaseAlreadyOpen => LedgerError::Locked { path: path.to_path_buf() },
        other => LedgerError::Io { path: path.to_path_buf(), detail: other.to_string() },
    }
}
