//! The queues between the reader and the shards: what a queued point carries, the chunks points
//! travel in, and how many a queue holds. Queues are bounded in points and in bytes, so that a
//! slow API makes the reader wait (the WAL on disk is the buffer) instead of growing memory.
//! This module only sizes and carries; it must never send, convert or drop a point.

use prometheus_wal::WalPosition;

use crate::model::{Distribution, Exemplar, Point, PointValue, SharedPrototype};
use crate::progress::{PointAck, SavedHistogramState};

/// One point waiting to be sent, with the WAL position it was read at.
#[derive(Debug, Clone)]
pub struct QueuedPoint {
    /// The series the point belongs to.
    pub series: SharedPrototype,
    /// The point.
    pub point: Point,
    /// Where in the WAL the sample was read.
    pub position: WalPosition,
    /// Delivery tracking of points read from the WAL (`None` for points made by the sidecar).
    pub delivery: Option<Delivery>,
}

impl QueuedPoint {
    /// Bytes the point holds while queued: its own, and a distribution's buckets (in the point
    /// and, for a tracked histogram, in the state recorded once it is delivered).
    pub fn queued_bytes(&self) -> usize {
        let f64s = |n: usize| n * std::mem::size_of::<f64>();
        let value = match &self.point.value {
            PointValue::Distribution(d) => {
                std::mem::size_of::<Distribution>()
                    + d.buckets.heap_bytes()
                    + f64s(d.bucket_counts.capacity())
                    + d.exemplars.iter().map(exemplar_bytes).sum::<usize>()
            }
            PointValue::Double(_) | PointValue::Int64(_) => 0,
        };
        let state = match self.delivery.as_ref().map(|d| &d.ack) {
            Some(PointAck::Histogram(_, state)) => {
                std::mem::size_of::<SavedHistogramState>() + state.heap_bytes()
            }
            _ => 0,
        };
        std::mem::size_of::<QueuedPoint>() + value + state
    }
}

/// Bytes an exemplar holds: its own and its labels'.
fn exemplar_bytes(e: &Exemplar) -> usize {
    let trace = e.trace.as_ref().map_or(0, |(t, s)| t.len() + s.len());
    let labels: usize = e.dropped.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    std::mem::size_of::<Exemplar>() + trace + e.project.as_ref().map_or(0, String::len) + labels
}

/// What to record once a tracked point's request has completed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The series' delivery state and what to record in it.
    pub ack: PointAck,
    /// Index of the (last) sample in its WAL record (with the position, the point's identity).
    pub index: u64,
}

/// Points handed to a shard at once: the reader gathers a record's points per shard and hands
/// them over together, so the queue's synchronisation and the shard's wake-up are paid per
/// record rather than per point.
pub type Chunk = Vec<QueuedPoint>;

/// Most points in one chunk.
pub const CHUNK_POINTS: usize = 128;

/// Most bytes of points in one chunk (by [`QueuedPoint::queued_bytes`]), give or take its last
/// point: as many as [`CHUNK_POINTS`] plain points take, so that a queue of chunks is bounded in
/// bytes whatever the points are (distributions of many buckets fill a chunk sooner).
pub const CHUNK_BYTES: usize = CHUNK_POINTS * std::mem::size_of::<QueuedPoint>();

// README: chunks of at most 14 KiB of points.
const _: () = assert!(CHUNK_BYTES <= 14 * 1024);

/// Emptied chunks on their way back from the shards to the reader: a chunk's buffer is made
/// once and reused, instead of being allocated on the reader's thread and freed on a shard's
/// (the costliest pattern for the allocator).
#[derive(Debug, Default)]
pub struct ChunkPool {
    free: std::sync::Mutex<Vec<Chunk>>,
}

/// Most emptied chunks the pool keeps.
const POOL_CHUNKS: usize = 256;

impl ChunkPool {
    /// An empty chunk with room for [`CHUNK_POINTS`] points.
    pub fn take(&self) -> Chunk {
        self.free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_POINTS))
    }

    /// Keeps an emptied chunk for reuse (dropped when the pool is full).
    pub fn give_back(&self, chunk: Chunk) {
        debug_assert!(chunk.is_empty());
        if chunk.capacity() < CHUNK_POINTS {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < POOL_CHUNKS
        {
            free.push(chunk);
        }
    }
}

/// Points queued for all shards together, at least: with few shards (the steady state, where
/// the autoscaler keeps one or two) each queue then holds a whole scrape's record, so the reader
/// hands a record over without waiting for the shard, and waking it, once per chunk.
pub const MIN_TOTAL_QUEUE_POINTS: usize = 4096;

/// Points one shard's queue holds when `shards` shards run: `capacity_per_shard`, or more when
/// they are few (see [`MIN_TOTAL_QUEUE_POINTS`]).
pub fn queue_points(capacity_per_shard: usize, shards: usize) -> usize {
    capacity_per_shard.max(MIN_TOTAL_QUEUE_POINTS / shards.max(1))
}

/// Queue length in chunks for a queue of `capacity` points: chunks may be partly filled, so the
/// queue holds at least `capacity` points in full chunks and at most a few chunks when they are
/// small (never fewer than 4 chunks, so a shard sending keeps some work waiting).
pub fn chunks_per_queue(capacity: usize) -> usize {
    capacity.div_ceil(CHUNK_POINTS).max(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_bounded_in_bytes_as_documented() {
        // README: 460 KiB for one shard's queue, 70 KiB for a 600-point queue (give or take a
        // chunk's last point).
        assert!(chunks_per_queue(queue_points(600, 1)) * CHUNK_BYTES <= 460 * 1024);
        assert!(chunks_per_queue(queue_points(600, 16)) * CHUNK_BYTES <= 70 * 1024);
    }

    #[test]
    fn few_shards_get_room_for_a_whole_record() {
        // One shard holds a 3000-sample scrape; many keep the configured capacity.
        assert_eq!(queue_points(600, 1), MIN_TOTAL_QUEUE_POINTS);
        assert_eq!(queue_points(600, 2), MIN_TOTAL_QUEUE_POINTS / 2);
        assert_eq!(queue_points(600, 16), 600);
        assert_eq!(queue_points(600, 0), MIN_TOTAL_QUEUE_POINTS);
        assert_eq!(chunks_per_queue(queue_points(600, 1)), 32);
        assert_eq!(chunks_per_queue(queue_points(600, 16)), 5);
    }
}
