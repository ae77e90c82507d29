//! The commit log in front of redb: one pre-written file, overwritten from the start after
//! every checkpoint.
//!
//! A redb commit with `Durability::Immediate` rewrites B-tree pages, the allocator state and
//! the header, and syncs them: measured at about 3.5× a bare `fdatasync` of one small write on
//! these machines. The hot path therefore makes a batch durable by writing it here, at the
//! current offset, and syncing the data of this one file; the records reach redb at the next
//! checkpoint, in one ordinary durable transaction that also raises the log's generation.
//!
//! The file is written out in full when created, so that a later write only replaces bytes
//! and `fdatasync` has no file size or block allocation to record. Frames carry the
//! generation they were written in and the ledger's log id (random per ledger, so a log left
//! from another ledger file is never replayed); recovery reads the current generation's frames
//! from the start and stops at the first frame that is not one (older generations' bytes,
//! zeros, or the torn tail of a crash). Each frame is synced before the next is written, so a
//! whole frame of the current generation anywhere after that point means damage at rest (a
//! flipped bit in a header or body), not a tail: that is corruption, reported.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes the log file is written out to when created; a checkpoint is due before a frame
/// would pass this offset (a single larger frame still fits: the file then grows).
pub(crate) const SEGMENT: u64 = 1 << 20;

const MAGIC: u32 = 0x5350_4b4c; // "SPKL"
/// magic, body length, generation, log id, checksum.
const HEADER: usize = 4 + 4 + 8 + 8 + 8;

/// One group's part of a frame: where its records start in the group's log, the roster when it
/// changed, and the records, each exactly as stored in redb (sealed with its own checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) group: [u8; 16],
    pub(crate) start: u64,
    pub(crate) roster: Option<Vec<u8>>,
    pub(crate) records: Vec<Vec<u8>>,
}

/// The open log file.
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    /// Frames of other generations are not ours to replay.
    pub(crate) gen: u64,
    /// The ledger's log id: frames of another ledger's log are not ours either.
    id: u64,
    /// Where the next frame goes.
    offset: u64,
}

/// Why a log could not be read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    /// A damaged frame with a whole frame of the same generation after it.
    Corrupt(String),
}

impl Wal {
    /// Open the log at `path` (creating and writing it out when missing) and read back the
    /// frames of generation `gen` of log `id`. The returned log writes after them.
    pub(crate) fn open(path: &Path, gen: u64, id: u64) -> Result<(Wal, Vec<Entry>), ReadError> {
        let created = !path.exists();
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut file = o.open(path).map_err(ReadError::Io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(ReadError::Io)?;
        let (entries, end) = read_frames(&bytes, gen, id)?;
        let len = bytes.len() as u64;
        if len < SEGMENT {
            // Written out once, so that frames overwrite allocated blocks.
            file.write_all_at(&vec![0; (SEGMENT - len) as usize], len).map_err(ReadError::Io)?;
            file.sync_all().map_err(ReadError::Io)?;
        }
        if created {
            // The new name must survive a power loss too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(ReadError::Io)?;
            }
        }
        Ok((Wal { file, path: path.to_path_buf(), gen, id, offset: end as u64 }, entries))
    }

    /// The log file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a frame of `body_len` bytes fits before the segment ends.
    pub(crate) fn is_empty(&self) -> bool {
        self.offset == 0
    }

    pub(crate) fn fits(&self, body_len: usize) -> bool {
        self.offset + (HEADER + body_len) as u64 <= SEGMENT
    }

    /// Write a frame and sync it: durable when this returns `Ok`.
    pub(crate) fn append(&mut self, body: &[u8]) -> std::io::Result<()> {
        let frame = frame(self.gen, self.id, body);
        self.file.write_all_at(&frame, self.offset)?;
        self.file.sync_data()?;
        self.offset += frame.len() as u64;
        Ok(())
    }

    /// Start generation `gen` from the beginning: everything written before is in redb.
    pub(crate) fn restart(&mut self, gen: u64) {
        self.gen = gen;
        self.offset = 0;
    }
}

fn checksum(len: u32, gen: u64, id: u64, body: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&gen.to_le_bytes());
    h.update(&id.to_le_bytes());
    h.update(body);
    let mut out = [0; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// Bodies longer than a frame can say: `persist` refuses them before writing.
pub(crate) const MAX_BODY: usize = u32::MAX as usize;

fn frame(gen: u64, id: u64, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut f = Vec::with_capacity(HEADER + body.len());
    f.extend_from_slice(&MAGIC.to_le_bytes());
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&gen.to_le_bytes());
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(&checksum(len, gen, id, body));
    f.extend_from_slice(body);
    f
}

/// A frame at `at` of generation `gen` of log `id`: `Ok(Some(body, next offset))` when
/// whole, `Ok(None)` when there is no frame of ours there, `Err(())` when its header says it
/// is one but it is cut short or fails its checksum.
fn frame_at(bytes: &[u8], at: usize, gen: u64, id: u64) -> Result<Option<(&[u8], usize)>, ()> {
    let Some(h) = bytes.get(at..at + HEADER) else { return Ok(None) };
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let long = |i: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if word(0) != MAGIC || long(8) != gen || long(16) != id {
        return Ok(None);
    }
    let len = word(4);
    let end = at + HEADER + len as usize;
    match bytes.get(at + HEADER..end) {
        Some(body) if h[24..32] == checksum(len, gen, id, body) => Ok(Some((body, end))),
        _ => Err(()),
    }
}

/// The entries of every whole frame of generation `gen` of log `id` from the start, and where
/// they end.
fn read_frames(bytes: &[u8], gen: u64, id: u64) -> Result<(Vec<Entry>, usize), ReadError> {
    let mut at = 0;
    let mut out = Vec::new();
    // Ends at the first position without a whole frame of ours: zeros, another generation, or
    // the torn tail of a crash (a frame being written, so never reported durable).
    while let Ok(Some((body, next))) = frame_at(bytes, at, gen, id) {
        let entries = decode(body).ok_or_else(|| ReadError::Corrupt(format!("the frame at offset {at} passes its checksum but does not decode")))?;
        out.extend(entries);
        at = next;
    }
    // Unless a whole frame of ours lies further on: then bytes were damaged at rest.
    let magic = MAGIC.to_le_bytes();
    if let Some(later) = (at + 1..bytes.len().saturating_sub(HEADER)).find(|&i| bytes[i..i + 4] == magic && matches!(frame_at(bytes, i, gen, id), Ok(Some(_)))) {
        return Err(ReadError::Corrupt(format!("the log ends at offset {at} with a damaged frame, but a whole frame of the same generation follows at offset {later}")));
    }
    Ok((out, at))
}

/// The body of a frame: entry count, then per entry group, start, roster (length 0 for none)
/// and records, every length a u32.
pub(crate) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::new();
    let put32 = |b: &mut Vec<u8>, n: usize| b.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    put32(&mut b, entries.len());
    for e in entries {
        b.extend_from_slice(&e.group);
        b.extend_from_slice(&e.start.to_le_bytes());
        let roster = e.roster.as_deref().unwrap_or_default();
        put32(&mut b, roster.len());
        b.extend_from_slice(roster);
        put32(&mut b, e.records.len());
        for r in &e.records {
            put32(&mut b, r.len());
            b.extend_from_slice(r);
        }
    }
    b
}

fn decode(mut b: &[u8]) -> Option<Vec<Entry>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (h, t) = (b.get(..n)?, b.get(n..)?);
        *b = t;
        Some(h)
    }
    fn n32(b: &mut &[u8]) -> Option<usize> {
        let s = take(b, 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    let count = n32(&mut b)?;
    let mut out = Vec::new();
    for _ in 0..count {
        let mut group = [0; 16];
        group.copy_from_slice(take(&mut b, 16)?);
        let mut s = [0; 8];
        s.copy_from_slice(take(&mut b, 8)?);
        let rl = n32(&mut b)?;
        let roster = take(&mut b, rl)?;
        let n = n32(&mut b)?;
        let mut records = Vec::with_capacity(n.min(b.len() / 4));
        for _ in 0..n {
            let l = n32(&mut b)?;
            records.push(take(&mut b, l)?.to_vec());
        }
        out.push(Entry { group, start: u64::from_le_bytes(s), roster: (rl > 0).then(|| roster.to_vec()), records });
    }
    b.is_empty().then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    const ID: u64 = 0x5eed;

    fn entry(i: u8) -> Entry {
        Entry { group: [i; 16], start: u64::from(i) * 10, roster: (i % 2 == 0).then(|| vec![i; 32]), records: vec![vec![i; 3], vec![i; 40]] }
    }

    fn log(frames: &[(u64, Vec<Entry>)]) -> Vec<u8> {
        let mut b: Vec<u8> = frames.iter().flat_map(|(g, e)| frame(*g, ID, &encode(e))).collect();
        b.resize(b.len() + 100, 0);
        b
    }

    #[test]
    fn frames_of_the_generation_are_read_back_and_others_end_the_log() {
        let b = log(&[(3, vec![entry(1), entry(2)]), (3, vec![entry(3)]), (2, vec![entry(4)])]);
        let (got, end) = read_frames(&b, 3, ID).unwrap();
        assert_eq!(got, vec![entry(1), entry(2), entry(3)]);
        assert_eq!(read_frames(&b[end..], 2, ID).unwrap().0, vec![entry(4)], "an older generation's frame is where ours end");
        assert!(read_frames(&b, 4, ID).unwrap().0.is_empty());
    }

    #[test]
    fn a_torn_tail_is_dropped_but_damage_before_a_whole_frame_is_corruption() {
        let b = log(&[(1, vec![entry(1)]), (1, vec![entry(2)]), (1, vec![entry(3)])]);
        let second = frame(1, ID, &encode(&[entry(1)])).len();
        let third = second + frame(1, ID, &encode(&[entry(2)])).len();
        // Torn: the last frame cut short, or its last bytes never written.
        let mut torn = b.clone();
        let flen = frame(1, ID, &encode(&[entry(3)])).len();
        for x in &mut torn[third + flen - 5..third + flen] {
            *x = 0;
        }
        assert_eq!(read_frames(&torn, 1, ID).unwrap().0, vec![entry(1), entry(2)]);
        assert_eq!(read_frames(&b[..third + 30], 1, ID).unwrap().0, vec![entry(1), entry(2)]);
        // Damaged at rest: a flipped bit in the middle frame.
        let mut bad = b.clone();
        bad[second + HEADER + 20] ^= 1;
        assert!(matches!(read_frames(&bad, 1, ID), Err(ReadError::Corrupt(_))));
        // Damaged headers of the middle frame: its magic, length or generation.
        for byte in [second, second + 5, second + 8] {
            let mut bad = b.clone();
            bad[byte] ^= 0x10;
            assert!(matches!(read_frames(&bad, 1, ID), Err(ReadError::Corrupt(_))), "a flipped bit at header byte {}", byte - second);
        }
    }

    #[test]
    fn another_ledgers_log_is_not_replayed() {
        let b = log(&[(1, vec![entry(1)]), (1, vec![entry(2)])]);
        assert_eq!(read_frames(&b, 1, ID).unwrap().0.len(), 2);
        assert!(read_frames(&b, 1, ID + 1).unwrap().0.is_empty(), "same generation, other log id");
    }

    #[test]
    fn garbage_bodies_do_not_decode() {
        let good = encode(&[entry(1), entry(2)]);
        assert!(decode(&good).is_some());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).is_none(), "trailing bytes");
        assert!(decode(&[0xff; 64]).is_none());
    }
}
