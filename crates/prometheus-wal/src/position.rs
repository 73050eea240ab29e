//! Positions in the WAL: where a record ends, and whether it came from a checkpoint.
//!
//! Owns the ordering that resuming relies on: positions compare by segment, then by byte
//! offset, and a record's position is the offset *after* its last fragment, so "everything at
//! or below P was handled" is a complete description of progress. Never does I/O.

use std::fmt;

/// A point in the WAL: a byte offset in a numbered segment file.
///
/// For a record from a segment, `offset` is just after the record's last fragment. Records read
/// from `checkpoint.N` all carry `{segment: N + 1, offset: 0}`: a checkpoint holds what remains
/// of segments `<= N`, i.e. everything before the start of segment `N + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPosition {
    /// Segment index (the file name parsed as an integer).
    pub segment: u64,
    /// Byte offset in that segment file.
    pub offset: u64,
}

impl WalPosition {
    /// The position of every record of checkpoint `index` (the start of segment `index + 1`).
    pub fn after_checkpoint(index: u64) -> WalPosition {
        WalPosition {
            segment: index.saturating_add(1),
            offset: 0,
        }
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// Where a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordSource {
    /// From `checkpoint.N` (one of its segment files); the value is N.
    Checkpoint(u64),
    /// From WAL segment N.
    Segment(u64),
}

impl fmt::Display for RecordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordSource::Checkpoint(i) => write!(f, "checkpoint {i}"),
            RecordSource::Segment(i) => write!(f, "segment {i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_segment_then_offset() {
        let p = |segment, offset| WalPosition { segment, offset };
        assert!(p(1, 100) < p(2, 0));
        assert!(p(2, 0) < p(2, 1));
        // A checkpoint's records sort after all of segment N and before any record of N + 1.
        assert!(p(3, u64::MAX / 2) < WalPosition::after_checkpoint(3));
        assert!(WalPosition::after_checkpoint(3) < p(4, 7));
        assert_eq!(p(4, 7).to_string(), "segment 4 offset 7");
    }
}
