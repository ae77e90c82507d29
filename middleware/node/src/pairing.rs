//! The pairing ceremony over zenoh (`spook pair`): two nodes whose operators opened a window
//! meet on the domain's pairing key, run Noise XX, and each shows a six-digit code; each
//! operator types the code the other node shows, and only then is the peer allowed.
//!
//! Messages on `spook/<domain>/pairing` are `sender session (4 B LE) | target session (4 B,
//! 0 for a beacon) | XX message`. Both sides beacon message 1 once a second; to keep one
//! handshake per pair, a node answers a beacon only from a session id larger than its own.

use spook_secure::{Identity, Pairing, PairingError, PairingWindow, PeerEntry, PAIR1, PAIR2, PAIR3};

/// One open pairing window of this node.
pub struct PairingRt {
    sid: u32,
    window: PairingWindow,
    name: String,
    /// Our beacon (we as initiator), until a handshake completes.
    beacon: Option<(Pairing, Vec<u8>)>,
    /// A handshake we answered: the initiator's session and our responder state.
    answering: Option<(u32, Pairing)>,
    /// The completed handshake, waiting for the operator's confirmation.
    done: Option<Pairing>,
    last_beacon_ms: Option<u64>,
}

/// What the node should do after a pairing message.
pub enum Step {
    /// Nothing (not for us, or a duplicate).
    Nothing,
    /// Publish this on the pairing key.
    Send(Vec<u8>),
}

fn frame(from: u32, to: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + body.len());
    m.extend_from_slice(&from.to_le_bytes());
    m.extend_from_slice(&to.to_le_bytes());
    m.extend_from_slice(body);
    m
}

impl PairingRt {
    /// Open a window of `duration_ms` as `name`.
    ///
    /// # Errors
    /// The XX handshake cannot start (a window that is already closed).
    pub fn open(me: &Identity, name: &str, sid: u32, now_ms: u64, duration_ms: u64) -> Result<PairingRt, PairingError> {
        let window = PairingWindow::open_for(now_ms, duration_ms);
        let beacon = Pairing::initiate(me, name, window, now_ms)?;
        Ok(PairingRt { sid: sid.max(1), window, name: name.to_string(), beacon: Some(beacon), answering: None, done: None, last_beacon_ms: None })
    }

    /// Whether the window is still open.
    #[must_use]
    pub fn is_open(&self, now_ms: u64) -> bool {
        self.window.contains(now_ms)
    }

    /// The code to compare, once a handshake completed.
    #[must_use]
    pub fn code(&self) -> Option<String> {
        self.done.as_ref().and_then(Pairing::challenge)
    }

    /// The beacon to publish now, if one is due.
    pub fn beacon(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self.done.is_some() || self.last_beacon_ms.is_some_and(|t| now_ms.saturating_sub(t) < 1_000) {
            return None;
        }
        let (_, m1) = self.beacon.as_ref()?;
        self.last_beacon_ms = Some(now_ms);
        Some(frame(self.sid, 0, m1))
    }

    /// Handle a message from the pairing key.
    ///
    /// # Errors
    /// A malformed or failing handshake message meant for this session.
    pub fn handle(&mut self, me: &Identity, msg: &[u8], now_ms: u64) -> Result<Step, PairingError> {
        if msg.len() < 9 || self.done.is_some() {
            return Ok(Step::Nothing);
        }
        let from = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let to = u32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
        let body = &msg[8..];
        if from == self.sid {
            return Ok(Step::Nothing);
        }
        match body[0] {
            PAIR1 if to == 0 && from > self.sid && self.answering.is_none() => {
                let (p, m2) = Pairing::respond(me, &self.name, self.window, now_ms, body)?;
                self.answering = Some((from, p));
                Ok(Step::Send(frame(self.sid, from, &m2)))
            }
            PAIR2 if to == self.sid => {
                let Some((mut p, m1)) = self.beacon.take() else { return Ok(Step::Nothing) };
                match p.handle(body, now_ms) {
                    Ok(m3) => {
                        self.done = Some(p);
                        Ok(m3.map_or(Step::Nothing, |m3| Step::Send(frame(self.sid, from, &m3))))
                    }
                    Err(e) => {
                        // A forged or broken answer does not end our beacon.
                        self.beacon = Some((p, m1));
                        Err(e)
                    }
                }
            }
            PAIR3 if to == self.sid && self.answering.as_ref().is_some_and(|(s, _)| *s == from) => {
                let Some((s, mut p)) = self.answering.take() else { return Ok(Step::Nothing) };
                if let Err(e) = p.handle(body, now_ms) {
                    self.answering = Some((s, p));
                    return Err(e);
                }
                self.done = Some(p);
                Ok(Step::Nothing)
            }
            _ => Ok(Step::Nothing),
        }
    }

    /// The operator typed the code the other node shows: the peer's allow-list entry.
    ///
    /// # Errors
    /// No handshake completed yet, the window closed, or the codes differ (then the pairing
    /// is over: someone may be in the middle).
    pub fn confirm(&mut self, code_shown_by_peer: &str, now_ms: u64) -> Result<PeerEntry, PairingError> {
        let p = self.done.take().ok_or(PairingError::NotComplete)?;
        p.confirm(code_shown_by_peer, now_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deliver(to: &mut PairingRt, me: &Identity, s: Step, now: u64) -> Step {
        match s {
            Step::Send(m) => to.handle(me, &m, now).unwrap(),
            Step::Nothing => Step::Nothing,
        }
    }

    #[test]
    fn two_open_windows_pair_once_and_agree_on_the_code() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let mut pa = PairingRt::open(&a, "a", 5, 0, 60_000).unwrap();
        let mut pb = PairingRt::open(&b, "b", 9, 0, 60_000).unwrap();
        // Both beacon; B ignores A's beacon (lower session), A answers B's.
        let (ba, bb) = (pa.beacon(10).unwrap(), pb.beacon(10).unwrap());
        assert!(matches!(pb.handle(&b, &ba, 11).unwrap(), Step::Nothing));
        let m2 = pa.handle(&a, &bb, 11).unwrap();
        let m3 = deliver(&mut pb, &b, m2, 12);
        assert!(matches!(deliver(&mut pa, &a, m3, 13), Step::Nothing));
        let (ca, cb) = (pa.code().unwrap(), pb.code().unwrap());
        assert_eq!(ca, cb);
        assert!(pa.beacon(5_000).is_none() && pb.beacon(5_000).is_none(), "no beacons once paired");
        assert_eq!(pa.confirm(&cb, 20).unwrap().id, b.id());
        let wrong = if cb == "000000" { "000001" } else { "000000" };
        assert_eq!(pb.confirm(wrong, 20).unwrap_err(), PairingError::ChallengeMismatch);
    }

    #[test]
    fn garbage_and_foreign_targets_change_nothing() {
        let a = Identity::generate();
        let mut pa = PairingRt::open(&a, "a", 5, 0, 60_000).unwrap();
        for junk in [vec![], vec![0u8; 8], vec![9u8; 40], frame(7, 99, &[PAIR2, 1, 2, 3])] {
            assert!(matches!(pa.handle(&a, &junk, 1), Ok(Step::Nothing)));
        }
        assert!(pa.handle(&a, &frame(7, 5, &[PAIR2, 1, 2, 3]), 1).is_err(), "a broken message 2 for us is an error");
        assert!(pa.code().is_none());
        assert!(pa.beacon(2_000).is_some(), "and the beacon goes on");
    }
}
