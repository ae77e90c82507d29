//! A group's watchers, with bounded memory: each has a queue of [`WATCHER_QUEUE`] lines. A
//! watcher whose consumer falls behind is not queued for without limit: the node notes the
//! registers that changed meanwhile (at most one entry per register) and how many events it
//! missed, and once the queue has room sends `{"event": "lagged", "missed": n}` and then
//! those registers' current values as snapshot lines. A change during a watch's initial
//! snapshot is owed the same way, so that a snapshot line never hides a change unannounced.

use std::collections::BTreeSet;

use serde_json::{json, Value as Json};
use spook_core::{RegisterId, View};
use tokio::sync::mpsc;

/// Lines a watcher's queue holds.
pub(crate) const WATCHER_QUEUE: usize = 1_024;

/// What a watcher that fell behind is owed.
struct Behind {
    missed: u64,
    /// The lag notice went out (or none is owed: an initial snapshot).
    announced: bool,
    dirty: BTreeSet<RegisterId>,
}

/// One watch of one view of a group.
pub(crate) struct Watcher {
    pub(crate) view: View,
    /// Values as serde `Value`s rather than schema-typed JSON.
    pub(crate) typed: bool,
    tx: mpsc::Sender<Json>,
    behind: Option<Behind>,
}

impl Watcher {
    pub(crate) fn new(view: View, typed: bool, tx: mpsc::Sender<Json>) -> Watcher {
        Watcher { view, typed, tx, behind: None }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// `reg` changed; `line` makes the change's line.
    pub(crate) fn change(&mut self, reg: RegisterId, line: impl FnOnce() -> Json) {
        if let Some(b) = &mut self.behind {
            // A change while it catches up (a lag, or its initial snapshot) is owed as a lag:
            // a notice, then the register's value then, so that no change passes as part of
            // a snapshot unannounced.
            b.missed += 1;
            b.announced = false;
            b.dirty.insert(reg);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(line()) {
            self.behind = Some(Behind { missed: 1, announced: false, dirty: BTreeSet::from([reg]) });
        }
    }

    /// An event that is not a register's change (a member decohered, say): dropped, and
    /// counted, when the watcher is behind.
    pub(crate) fn event(&mut self, line: &Json) {
        if let Some(b) = &mut self.behind {
            b.missed += 1;
            b.announced = false;
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(line.clone()) {
            self.behind = Some(Behind { missed: 1, announced: false, dirty: BTreeSet::new() });
        }
    }

    /// Owe it `regs`' current values as snapshot lines (the snapshot at a watch's start).
    pub(crate) fn snapshot(&mut self, regs: impl IntoIterator<Item = RegisterId>) {
        let b = self.behind.get_or_insert(Behind { missed: 0, announced: true, dirty: BTreeSet::new() });
        b.dirty.extend(regs);
    }

    /// Send what it is owed while its queue has room; `line` makes a register's snapshot line.
    pub(crate) fn catch_up(&mut self, line: impl Fn(RegisterId) -> Json) {
        let Some(b) = &mut self.behind else { return };
        if !b.announced {
            if self.tx.try_send(json!({"event": "lagged", "missed": b.missed})).is_err() {
                return;
            }
            b.announced = true;
            b.missed = 0;
        }
        while let Some(&reg) = b.dirty.first() {
            let mut l = line(reg);
            l["snapshot"] = json!(true);
            if self.tx.try_send(l).is_err() {
                return;
            }
            b.dirty.remove(&reg);
        }
        self.behind = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_that_falls_behind_gets_a_lag_notice_then_each_changed_register_once() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut w = Watcher::new(View::Pending, false, tx);
        for i in 0..10u32 {
            w.change(RegisterId(i % 3), || json!({"register": i % 3, "n": i}));
        }
        // Two fitted; eight were missed, over registers 2, 0 and 1.
        assert_eq!(rx.try_recv().unwrap()["n"], 0);
        assert_eq!(rx.try_recv().unwrap()["n"], 1);
        let snap = |r: RegisterId| json!({"register": r.0, "now": true});
        w.catch_up(snap);
        assert_eq!(rx.try_recv().unwrap(), json!({"event": "lagged", "missed": 8}));
        assert_eq!(rx.try_recv().unwrap(), json!({"register": 0, "now": true, "snapshot": true}));
        w.catch_up(snap);
        assert_eq!(rx.try_recv().unwrap()["register"], 1);
        assert_eq!(rx.try_recv().unwrap()["register"], 2);
        w.catch_up(snap);
        assert!(rx.try_recv().is_err(), "nothing more is owed");
        w.change(RegisterId(5), || json!({"register": 5}));
        assert_eq!(rx.try_recv().unwrap(), json!({"register": 5}), "back to live changes");
    }

    #[test]
    fn a_change_during_the_initial_snapshot_is_announced_as_a_lag() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut w = Watcher::new(View::Pending, false, tx);
        let snap = |r: RegisterId| json!({"register": r.0});
        w.snapshot([RegisterId(1), RegisterId(2)]);
        w.catch_up(snap);
        assert_eq!(rx.try_recv().unwrap(), json!({"register": 1, "snapshot": true}));
        w.change(RegisterId(2), || json!({"register": 2, "live": true}));
        w.catch_up(snap);
        assert_eq!(rx.try_recv().unwrap(), json!({"event": "lagged", "missed": 1}));
        w.catch_up(snap);
        assert_eq!(rx.try_recv().unwrap(), json!({"register": 2, "snapshot": true}));
    }
}
