//! Delivery marks: per lane (see [`crate::export::lanes`]), the WAL position of the last point
//! the backend acknowledged, written after every completed request.
//!
//! A shard sends the points of its lanes in WAL order, so what it has delivered of each of its
//! lanes is everything up to its last acknowledged point. Marks are tiny fixed-size slots in
//! `stackdriver_sidecar.marks`, one per lane; a shard's lanes are contiguous, so they are
//! overwritten in place with one `pwrite` per request and no fsync: the bytes are in the kernel's page cache as soon as the call
//! returns, so a `kill -9` of the sidecar loses nothing (a power loss can lose the last marks;
//! they are fsynced with every periodic save). With them, a restart skips exactly the points that
//! were acknowledged, not just those covered by the last periodic save. This module never decides
//! what was delivered; it stores what it is told.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use prometheus_wal::WalPosition;

use crate::export::lanes::LANES;

/// The marks file in the WAL directory.
pub const MARKS_FILE: &str = "stackdriver_sidecar.marks";

// Version 2: one slot per lane. Files of version 1 (one slot per shard of a fixed shard count)
// are not read; the progress file still gives the resume point.
const MAGIC: &[u8; 8] = b"SDSCMRK2";
const HEADER_LEN: u64 = 16;
const SLOT_LEN: usize = 8 + 8 + 8 + 4;

/// The last delivered point of a lane: the record it came from and its sample index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// End position of the sample's record.
    pub position: WalPosition,
    /// Index of the sample in its record.
    pub index: u64,
}

/// The marks of a previous run, one per lane (`None`: nothing readable delivered in that lane).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedMarks {
    /// One per lane.
    pub marks: Vec<Option<Mark>>,
}

/// Reads the marks left by a previous run; `None` when there is no usable file.
pub fn load(dir: &Path) -> Option<LoadedMarks> {
    let bytes = std::fs::read(dir.join(MARKS_FILE)).ok()?;
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return None;
    }
    let lanes = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let body = &bytes[HEADER_LEN as usize..];
    if lanes != LANES || body.len() != LANES * SLOT_LEN {
        return None;
    }
    let marks = body.chunks_exact(SLOT_LEN).map(decode_slot).collect();
    Some(LoadedMarks { marks })
}

fn encode_slot(mark: Option<Mark>) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    if let Some(m) = mark {
        slot[0..8].copy_from_slice(&m.position.segment.to_le_bytes());
        slot[8..16].copy_from_slice(&m.position.offset.to_le_bytes());
        slot[16..24].copy_from_slice(&m.index.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..24]);
        slot[24..28].copy_from_slice(&crc.to_le_bytes());
    }
    slot
}

fn decode_slot(slot: &[u8]) -> Option<Mark> {
    let crc = u32::from_le_bytes(slot[24..28].try_into().ok()?);
    if crc != crc32c::crc32c(&slot[..24]) || slot.iter().all(|b| *b == 0) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().unwrap_or_default());
    Some(Mark {
        position: WalPosition {
            segment: word(0),
            offset: word(8),
        },
        index: word(16),
    })
}

/// The marks file of the running process.
#[derive(Debug)]
pub struct DeliveryMarks {
    file: File,
}

impl DeliveryMarks {
    /// Creates the file, starting from `initial` marks (those of the previous run, so they
    /// survive a crash before any new delivery).
    pub fn create(dir: &Path, initial: &[Option<Mark>]) -> io::Result<DeliveryMarks> {
        let path = dir.join(MARKS_FILE);
        let tmp = dir.join(format!("{MARKS_FILE}.tmp"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN as usize + LANES * SLOT_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(LANES as u64).to_le_bytes());
        for s in 0..LANES {
            bytes.extend_from_slice(&encode_slot(initial.get(s).copied().flatten()));
        }
        file.write_all_at(&bytes, 0)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(DeliveryMarks { file })
    }

    /// Records `mark` as the last delivered point of every lane in `lanes` (the lanes of the
    /// shard that delivered it, which sends them all in WAL order), with one write.
    pub fn mark(&self, lanes: std::ops::Range<usize>, mark: Mark) -> io::Result<()> {
        let lanes = lanes.start.min(LANES)..lanes.end.min(LANES);
        if lanes.is_empty() {
            return Ok(());
        }
        let slot = encode_slot(Some(mark));
        let mut bytes = Vec::with_capacity(lanes.len() * SLOT_LEN);
        for _ in lanes.clone() {
            bytes.extend_from_slice(&slot);
        }
        let at = HEADER_LEN + (lanes.start * SLOT_LEN) as u64;
        self.file.write_all_at(&bytes, at)
    }

    /// Makes the marks durable (called with every periodic save).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(segment: u64, offset: u64, index: u64) -> Mark {
        Mark {
            position: WalPosition { segment, offset },
            index,
        }
    }

    #[test]
    fn marks_written_are_read_back_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        marks.mark(0..1, mark(1, 100, 4)).unwrap();
        marks.mark(2..4, mark(1, 90, 0)).unwrap();
        marks.mark(0..1, mark(1, 200, 1)).unwrap();
        marks.mark(LANES - 1..LANES + 5, mark(3, 0, 0)).unwrap();
        drop(marks);
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.marks.len(), LANES);
        assert_eq!(
            loaded.marks[..5],
            [
                Some(mark(1, 200, 1)),
                None,
                Some(mark(1, 90, 0)),
                Some(mark(1, 90, 0)),
                None
            ]
        );
        assert_eq!(loaded.marks[LANES - 1], Some(mark(3, 0, 0)));
        // A new run starts from them.
        let again = DeliveryMarks::create(dir.path(), &loaded.marks).unwrap();
        drop(again);
        assert_eq!(load(dir.path()).unwrap(), loaded);
    }

    #[test]
    fn a_damaged_slot_is_ignored_alone() {
        let dir = tempfile::tempdir().unwrap();
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        marks.mark(0..1, mark(1, 1, 1)).unwrap();
        marks.mark(1..2, mark(2, 2, 2)).unwrap();
        drop(marks);
        let path = dir.path().join(MARKS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN as usize + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().marks[..3],
            [None, Some(mark(2, 2, 2)), None]
        );
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert_eq!(load(dir.path()), None);
    }

    #[test]
    fn marks_of_another_layout_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"SDSCMRK1".to_vec();
        bytes.extend_from_slice(&4u64.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4 * SLOT_LEN]);
        std::fs::write(dir.path().join(MARKS_FILE), &bytes).unwrap();
        assert_eq!(load(dir.path()), None);
    }

    #[test]
    fn marks_order_by_position_then_index() {
        assert!(mark(1, 100, 5) < mark(1, 101, 0));
        assert!(mark(1, 100, 5) < mark(1, 100, 6));
        assert!(mark(0, 999, 9) < mark(1, 0, 0));
    }
}
