//! Delivery marks: per lane (see `model::lanes`), the WAL position of the last point
//! the backend acknowledged, written to `stackdriver_sidecar.marks` after every completed
//! request, so that a restart skips exactly the points that were acknowledged, not just those
//! covered by the last periodic save.
//!
//! Owns that file's layout, writing and reading. Must never decide what was delivered; it
//! stores what it is told.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use memmap2::MmapMut;
use prometheus_wal::WalPosition;

use crate::model::lanes::LANES;

/// The marks file in the WAL directory.
pub const MARKS_FILE: &str = "stackdriver_sidecar.marks";

// Format version 4: two slots per lane, each covering a range of lanes from its own. Files of
// other versions are not read: the progress file still gives the resume point.
const MAGIC: &[u8; 8] = b"SDSCMRK4";
const SLOTS_PER_LANE: usize = 2;
const HEADER_LEN: u64 = 16;
// Segment, offset, sample index, sequence number, end of the lane range, CRC-32C of the rest.
const SLOT_LEN: usize = 8 + 8 + 8 + 8 + 4 + 4;
const CRC_AT: usize = SLOT_LEN - 4;

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

/// Reads the marks left by a previous run; `None` when there is no usable file. A lane's mark is
/// the one of the newest readable slot covering it, so slots left under an earlier shard count
/// are outranked as soon as the lane's new owner writes.
pub fn load(dir: &Path) -> Option<LoadedMarks> {
    let bytes = std::fs::read(dir.join(MARKS_FILE)).ok()?;
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return None;
    }
    let lanes = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let body = &bytes[HEADER_LEN as usize..];
    if lanes != LANES || body.len() != LANES * SLOTS_PER_LANE * SLOT_LEN {
        return None;
    }
    // Each lane takes the newest readable slot covering it (a damaged slot is skipped alone).
    let mut marks: Vec<Option<(u64, Mark)>> = vec![None; LANES];
    for (i, slot) in body.chunks_exact(SLOT_LEN).enumerate() {
        let Some(slot) = decode_slot(slot) else {
            continue;
        };
        let first = i / SLOTS_PER_LANE;
        let end = (slot.end as usize).min(LANES);
        for lane in marks.get_mut(first..end).into_iter().flatten() {
            if lane.is_none_or(|(seq, _)| slot.seq > seq) {
                *lane = Some((slot.seq, slot.mark));
            }
        }
    }
    Some(LoadedMarks {
        marks: marks.into_iter().map(|m| m.map(|(_, mark)| mark)).collect(),
    })
}

/// One decoded slot: `mark` holds for the lanes from the slot's own to `end` (exclusive).
#[derive(Debug, Clone, Copy)]
struct Slot {
    mark: Mark,
    seq: u64,
    end: u32,
}

fn encode_slot(Slot { mark, seq, end }: Slot) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[0..8].copy_from_slice(&mark.position.segment.to_le_bytes());
    slot[8..16].copy_from_slice(&mark.position.offset.to_le_bytes());
    slot[16..24].copy_from_slice(&mark.index.to_le_bytes());
    slot[24..32].copy_from_slice(&seq.to_le_bytes());
    slot[32..36].copy_from_slice(&end.to_le_bytes());
    let crc = crc32c::crc32c(&slot[..CRC_AT]);
    slot[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_slot(slot: &[u8]) -> Option<Slot> {
    let crc = u32::from_le_bytes(slot.get(CRC_AT..)?.try_into().ok()?);
    if crc != crc32c::crc32c(&slot[..CRC_AT]) || slot.iter().all(|b| *b == 0) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().unwrap_or_default());
    Some(Slot {
        mark: Mark {
            position: WalPosition {
                segment: word(0),
                offset: word(8),
            },
            index: word(16),
        },
        seq: word(24),
        end: u32::from_le_bytes(slot[32..36].try_into().unwrap_or_default()),
    })
}

/// The marks file of the running process.
///
/// Each lane has two slots, written in turn, so a write cut short leaves the previous mark
/// readable. The file is mapped into memory: a write is a store into the kernel's page cache,
/// with no system call, and survives a `kill -9` of the sidecar (a power loss can lose the last
/// marks; [`DeliveryMarks::sync`] flushes them with every periodic save).
#[derive(Debug)]
pub struct DeliveryMarks {
    /// Synced without the lock: `fdatasync` also writes back what was stored through the map.
    file: File,
    io: Mutex<Io>,
}

/// What the file's slots hold, where they are written, and the next sequence number.
#[derive(Debug)]
struct Io {
    /// For `pwrite` where the file is not mapped.
    file: File,
    /// The file mapped into memory (`None` where mapping failed: then each slot is written
    /// with `pwrite`).
    map: Option<MmapMut>,
    slots: Vec<[Option<Slot>; SLOTS_PER_LANE]>,
    next_seq: u64,
}

impl DeliveryMarks {
    /// Creates the file, starting from `initial` marks (those of the previous run, so they
    /// survive a crash before any new delivery).
    pub fn create(dir: &Path, initial: &[Option<Mark>]) -> io::Result<DeliveryMarks> {
        let path = dir.join(MARKS_FILE);
        let tmp = super::temporary_path(dir, MARKS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN as usize + LANES * SLOTS_PER_LANE * SLOT_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(LANES as u64).to_le_bytes());
        // Each lane's initial mark in its own slot, older than anything written from now on.
        let slots: Vec<[Option<Slot>; SLOTS_PER_LANE]> = (0..LANES)
            .map(|lane| {
                let first = initial.get(lane).copied().flatten().map(|mark| Slot {
                    mark,
                    seq: 0,
                    end: lane as u32 + 1,
                });
                [first, None]
            })
            .collect();
        for slot in slots.iter().flatten() {
            match slot {
                Some(slot) => bytes.extend_from_slice(&encode_slot(*slot)),
                None => bytes.extend_from_slice(&[0u8; SLOT_LEN]),
            }
        }
        file.write_all_at(&bytes, 0)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // SAFETY: the mapping is of a file this process just created under a temporary name of
        // its own, and only this process (the holder of the WAL directory's lock) writes or
        // resizes it while it runs; the length is fixed.
        let map = match unsafe { MmapMut::map_mut(&file) } {
            Ok(map) if map.len() == bytes.len() => Some(map),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(error = %err, "marks file not mapped; writing it with pwrite");
                None
            }
        };
        Ok(DeliveryMarks {
            file: file.try_clone()?,
            io: Mutex::new(Io {
                file,
                map,
                slots,
                next_seq: 1,
            }),
        })
    }

    /// Records `mark` as the last delivered point of every lane in `lanes` (the contiguous lanes
    /// of the shard that delivered it, which sends them all in WAL order, so what it delivered of
    /// each is everything up to this point), by writing one fixed-size slot at the first lane:
    /// the mark, the end of the lane range and a sequence number.
    pub fn mark(&self, lanes: std::ops::Range<usize>, mark: Mark) -> io::Result<()> {
        let lanes = lanes.start.min(LANES)..lanes.end.min(LANES);
        if lanes.is_empty() {
            return Ok(());
        }
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = io.next_seq;
        io.next_seq += 1;
        let slot = Slot {
            mark,
            seq,
            end: lanes.end as u32,
        };
        io.place(lanes.start, slot)
    }

    /// Makes the marks durable (called with every periodic save). Takes no lock: shards go on
    /// writing marks while the disk works.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Io {
    /// Writes `slot` into the older of lane `at`'s two slots. What that slot held may still be
    /// the newest mark of lanes past the new slot's range (the range of a shard before the
    /// shard count went up): that part moves to the lane where the new range ends, unless a
    /// newer slot covers it there (then past that one), and so on. Only a reshard makes this
    /// write more than once.
    fn place(&mut self, at: usize, slot: Slot) -> io::Result<()> {
        let Some(pair) = self.slots.get_mut(at) else {
            return Ok(());
        };
        // An empty slot first, else the older one.
        let k = match pair {
            [None, _] => 0,
            [_, None] => 1,
            [Some(a), Some(b)] => usize::from(b.seq < a.seq),
        };
        let old = pair[k].replace(slot);
        self.write(at * SLOTS_PER_LANE + k, slot)?;
        let Some(old) = old else {
            return Ok(());
        };
        let mut from = slot.end;
        while from < old.end {
            let newer_end = self
                .slots
                .get(from as usize)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|s| s.seq > old.seq)
                .map(|s| s.end)
                .max();
            match newer_end {
                Some(end) => from = end.max(from + 1),
                None => {
                    return self.place(
                        from as usize,
                        Slot {
                            end: old.end,
                            ..old
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, index: usize, slot: Slot) -> io::Result<()> {
        let offset = HEADER_LEN as usize + index * SLOT_LEN;
        let bytes = encode_slot(slot);
        match self
            .map
            .as_mut()
            .and_then(|m| m.get_mut(offset..offset + SLOT_LEN))
        {
            Some(target) => {
                target.copy_from_slice(&bytes);
                Ok(())
            }
            None => self.file.write_all_at(&bytes, offset as u64),
        }
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
        // Version 2: 1024 slots of 28 bytes.
        let mut bytes = b"SDSCMRK2".to_vec();
        bytes.extend_from_slice(&(LANES as u64).to_le_bytes());
        bytes.extend_from_slice(&vec![0u8; LANES * 28]);
        std::fs::write(dir.path().join(MARKS_FILE), &bytes).unwrap();
        assert_eq!(load(dir.path()), None);
        // Version 3: one 40-byte slot per lane.
        let mut bytes = b"SDSCMRK3".to_vec();
        bytes.extend_from_slice(&(LANES as u64).to_le_bytes());
        bytes.extend_from_slice(&vec![0u8; LANES * SLOT_LEN]);
        std::fs::write(dir.path().join(MARKS_FILE), &bytes).unwrap();
        assert_eq!(load(dir.path()), None);
    }

    /// Lane ranges of `shards` shards, as the router splits the lanes (contiguous, in order).
    fn layout(shards: usize) -> Vec<std::ops::Range<usize>> {
        (0..shards)
            .map(|i| i * LANES / shards..(i + 1) * LANES / shards)
            .collect()
    }

    #[test]
    fn each_lane_reads_back_the_last_mark_written_for_it_across_reshards() {
        // Shards of changing counts write marks in random order; after every write, the file
        // must give each lane the last mark written for a range holding it.
        let dir = tempfile::tempdir().unwrap();
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        let mut expected: Vec<Option<Mark>> = vec![None; LANES];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let counts = [1, 16, 3, 32, 19, 2, 64, 5, 1, 7];
        let mut written = 0u64;
        for (round, shards) in counts.iter().enumerate() {
            let ranges = layout(*shards);
            for _ in 0..40 {
                let lanes = ranges[next(ranges.len())].clone();
                written += 1;
                let m = mark(round as u64, written, 0);
                marks.mark(lanes.clone(), m).unwrap();
                expected[lanes].fill(Some(m));
                let loaded = load(dir.path()).unwrap();
                assert_eq!(
                    loaded.marks, expected,
                    "after write {written} ({shards} shards)"
                );
            }
        }
        // The next run starts from them, and writes over them the same way.
        drop(marks);
        let loaded = load(dir.path()).unwrap();
        let again = DeliveryMarks::create(dir.path(), &loaded.marks).unwrap();
        again.mark(0..LANES, mark(99, 0, 0)).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().marks,
            vec![Some(mark(99, 0, 0)); LANES]
        );
        again.mark(0..8, mark(100, 0, 0)).unwrap();
        let after = load(dir.path()).unwrap().marks;
        assert_eq!(after[..8], [Some(mark(100, 0, 0)); 8]);
        assert_eq!(after[8..], vec![Some(mark(99, 0, 0)); LANES - 8][..]);
    }

    #[test]
    fn one_request_writes_one_slot() {
        let dir = tempfile::tempdir().unwrap();
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        assert!(marks.io.lock().unwrap().map.is_some(), "mapped on Linux");
        marks.mark(0..LANES, mark(1, 2, 3)).unwrap();
        let bytes = std::fs::read(dir.path().join(MARKS_FILE)).unwrap();
        let body = &bytes[HEADER_LEN as usize..];
        assert!(body[SLOT_LEN..].iter().all(|b| *b == 0));
        assert_eq!(
            load(dir.path()).unwrap().marks,
            vec![Some(mark(1, 2, 3)); LANES]
        );
    }

    #[test]
    fn a_torn_write_leaves_the_previous_mark() {
        let dir = tempfile::tempdir().unwrap();
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        for i in 1..=5 {
            marks.mark(0..LANES, mark(1, i, 0)).unwrap();
        }
        marks.sync().unwrap();
        // Writes 1, 3 and 5 went to lane 0's first slot, 2 and 4 to its second.
        let path = dir.path().join(MARKS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(load(dir.path()).unwrap().marks[0], Some(mark(1, 5, 0)));
        bytes[HEADER_LEN as usize + 9] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().marks,
            vec![Some(mark(1, 4, 0)); LANES]
        );
    }

    #[test]
    fn marks_order_by_position_then_index() {
        assert!(mark(1, 100, 5) < mark(1, 101, 0));
        assert!(mark(1, 100, 5) < mark(1, 100, 6));
        assert!(mark(0, 999, 9) < mark(1, 0, 0));
    }
}
