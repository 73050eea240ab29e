//! The batch a shard is assembling: its points in queue order, which series it holds (a request
//! never holds two points of one series) and when it must leave. It must never send or drop.

use ahash::AHashSet;
use tokio::time::Instant;

use crate::model::{Point, SharedPrototype};
use crate::progress::PointAck;

/// One point of the batch.
pub(super) struct Entry {
    pub(super) series: SharedPrototype,
    pub(super) point: Point,
    /// What to record once the point is done with (tracked points).
    pub(super) delivery: Option<PointAck>,
}

/// The points of the next request.
pub(super) struct Batch {
    entries: Vec<Entry>,
    /// Hashes of the series in `entries`.
    series: AHashSet<u64>,
    /// When the batch leaves even if not full (`None` while empty).
    pub(super) deadline: Option<Instant>,
}

impl Batch {
    /// An empty batch with room for `max` series.
    pub(super) fn with_capacity(max: usize) -> Batch {
        Batch {
            entries: Vec::with_capacity(max),
            series: AHashSet::with_capacity(max * 2),
            deadline: None,
        }
    }

    /// Whether the batch holds a point of the series with identity `hash`.
    pub(super) fn holds(&self, hash: u64) -> bool {
        self.series.contains(&hash)
    }

    /// Adds a point of a series the batch does not hold yet.
    pub(super) fn push(&mut self, entry: Entry) {
        self.series.insert(entry.series.hash);
        self.entries.push(entry);
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The points, leaving the batch empty and without a deadline.
    pub(super) fn take(&mut self) -> Vec<Entry> {
        self.series.clear();
        self.deadline = None;
        std::mem::take(&mut self.entries)
    }
}
