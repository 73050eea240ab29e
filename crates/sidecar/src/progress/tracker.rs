//! Delivery tracking: which WAL records are fully delivered, and each series' last delivered point.
//!
//! The reader announces every record it has finished queuing, with how many tracked points it
//! has pushed to each shard so far. Shards count, per shard, the tracked points whose request has
//! completed (accepted, or dropped for good) after recording each point's series state. A record
//! is delivered once every shard has completed at least as many points as had been pushed to it
//! when the record was announced; the watermark is the end of the last such record, and it only
//! moves forward. Per-series state (last delivered end time, counter baseline) lets a restart skip
//! exactly what was delivered. This module never does I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ahash::AHashMap;
use prometheus_wal::WalPosition;

use super::file::{SavedBaseline, SavedProgress, SavedSeries};
use super::marks::{DeliveryMarks, Mark};

/// Delivery state of one WAL series, shared by the reader (which creates it) and the shard that
/// sends the series' points.
#[derive(Debug)]
pub struct SeriesAck {
    series_ref: u64,
    labels_hash: u64,
    state: Mutex<Delivered>,
}

#[derive(Debug, Clone, Copy)]
struct Delivered {
    last_t: i64,
    baseline: Option<SavedBaseline>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: every update is one store.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SeriesAck {
    /// State for a series, starting from what a previous run saved for it, if anything.
    pub fn new(series_ref: u64, labels_hash: u64, restored: Option<&SavedSeries>) -> SeriesAck {
        SeriesAck {
            series_ref,
            labels_hash,
            state: Mutex::new(Delivered {
                last_t: restored.map_or(i64::MIN, |s| s.last_t),
                baseline: restored.and_then(|s| s.baseline),
            }),
        }
    }

    /// Records that the point ending at `t` was handled for good (sent, dropped, or used as the
    /// baseline), with the counter baseline it was measured from.
    pub fn delivered(&self, t: i64, baseline: Option<SavedBaseline>) {
        let mut s = lock(&self.state);
        if t >= s.last_t {
            s.last_t = t;
            if baseline.is_some() {
                s.baseline = baseline;
            }
        }
    }

    fn snapshot(&self) -> SavedSeries {
        let s = *lock(&self.state);
        SavedSeries {
            series_ref: self.series_ref,
            labels_hash: self.labels_hash,
            last_t: s.last_t,
            baseline: s.baseline,
        }
    }
}

/// The reader's announcements not yet known to be delivered: per record, its end position and
/// the per-shard pushed counts, stored flat (`stride` = 2 + shards) to avoid an allocation per
/// record.
#[derive(Debug, Default)]
struct Pending {
    flat: VecDeque<u64>,
    watermark: WalPosition,
}

/// Shared between the reader, the shards and the progress keeper.
#[derive(Debug)]
pub struct DeliveryTracker {
    completed: Vec<AtomicU64>,
    pending: Mutex<Pending>,
    series: Mutex<AHashMap<u64, Arc<SeriesAck>>>,
    marks: Option<DeliveryMarks>,
}

impl DeliveryTracker {
    /// A tracker for `shards` shards, starting at `start` (everything before it is delivered).
    pub fn new(shards: usize, start: WalPosition) -> DeliveryTracker {
        DeliveryTracker {
            completed: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            pending: Mutex::new(Pending {
                flat: VecDeque::new(),
                watermark: start,
            }),
            series: Mutex::new(AHashMap::new()),
            marks: None,
        }
    }

    /// Also records each shard's last delivered point in `marks` after every request.
    pub fn with_marks(mut self, marks: DeliveryMarks) -> DeliveryTracker {
        self.marks = Some(marks);
        self
    }

    /// Makes the delivery marks durable.
    pub fn sync_marks(&self) -> std::io::Result<()> {
        self.marks.as_ref().map_or(Ok(()), DeliveryMarks::sync)
    }

    /// Number of shards tracked.
    pub fn shards(&self) -> usize {
        self.completed.len()
    }

    /// Reader: the record ending at `position` is fully queued; `pushed[s]` tracked points have
    /// been pushed to shard `s` since the start.
    pub fn record_queued(&self, position: WalPosition, pushed: &[u64]) {
        debug_assert_eq!(pushed.len(), self.completed.len());
        let mut p = lock(&self.pending);
        p.flat.push_back(position.segment);
        p.flat.push_back(position.offset);
        p.flat.extend(pushed.iter().copied());
    }

    /// Shard `shard`: `n` more tracked points are completed (their series states recorded
    /// first), the last of them being `last`.
    pub fn points_completed(&self, shard: usize, n: u64, last: Option<Mark>) {
        if let (Some(marks), Some(last)) = (&self.marks, last)
            && let Err(err) = marks.mark(shard, last)
        {
            tracing::warn!(error = %err, shard, "recording a delivery mark failed");
        }
        self.completed[shard].fetch_add(n, Ordering::Release);
    }

    /// Reader: a series resolved, with its delivery state.
    pub fn register(&self, ack: Arc<SeriesAck>) {
        lock(&self.series).insert(ack.series_ref, ack);
    }

    /// Reader: the delivery state of a series that just resolved: the one registered for its ref
    /// (from a previous run's save) when the labels match, else a fresh one.
    pub fn ack_for(&self, series_ref: u64, labels_hash: u64) -> Arc<SeriesAck> {
        let mut series = lock(&self.series);
        match series.get(&series_ref) {
            Some(ack) if ack.labels_hash == labels_hash => ack.clone(),
            _ => {
                let ack = Arc::new(SeriesAck::new(series_ref, labels_hash, None));
                series.insert(series_ref, ack.clone());
                ack
            }
        }
    }

    /// Reader: a series left the cache.
    pub fn forget(&self, series_ref: u64) {
        lock(&self.series).remove(&series_ref);
    }

    /// The position below which everything is delivered, advanced as far as possible.
    pub fn watermark(&self) -> WalPosition {
        let completed: Vec<u64> = self
            .completed
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect();
        let stride = 2 + completed.len();
        let mut p = lock(&self.pending);
        while p.flat.len() >= stride {
            let delivered = (0..completed.len()).all(|s| p.flat[2 + s] <= completed[s]);
            if !delivered {
                break;
            }
            p.watermark = WalPosition {
                segment: p.flat[0],
                offset: p.flat[1],
            };
            p.flat.drain(..stride);
        }
        p.watermark
    }

    /// What to save now: the watermark and every registered series' state.
    pub fn snapshot(&self) -> SavedProgress {
        let position = self.watermark();
        let mut series: Vec<SavedSeries> =
            lock(&self.series).values().map(|a| a.snapshot()).collect();
        series.sort_by_key(|s| s.series_ref);
        SavedProgress { position, series }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u64, offset: u64) -> WalPosition {
        WalPosition { segment, offset }
    }

    #[test]
    fn watermark_waits_for_every_shard() {
        let t = DeliveryTracker::new(2, pos(0, 0));
        t.record_queued(pos(1, 100), &[2, 0]);
        t.record_queued(pos(1, 200), &[2, 1]);
        t.record_queued(pos(1, 300), &[2, 1]);
        assert_eq!(t.watermark(), pos(0, 0));
        t.points_completed(0, 1, None);
        assert_eq!(t.watermark(), pos(0, 0));
        t.points_completed(0, 1, None);
        assert_eq!(t.watermark(), pos(1, 100));
        t.points_completed(1, 1, None);
        // Record 3 pushed nothing new: delivered together with record 2.
        assert_eq!(t.watermark(), pos(1, 300));
    }

    #[test]
    fn records_without_points_are_delivered_at_once() {
        let t = DeliveryTracker::new(3, pos(2, 0));
        t.record_queued(pos(2, 50), &[0, 0, 0]);
        assert_eq!(t.watermark(), pos(2, 50));
        assert_eq!(t.watermark(), pos(2, 50));
    }

    #[test]
    fn series_state_keeps_the_latest_delivery_and_baseline() {
        let ack = SeriesAck::new(7, 42, None);
        let b1 = SavedBaseline {
            reset_ts: 10,
            reset_value: 5.0,
            previous: 5.0,
        };
        ack.delivered(10, Some(b1));
        ack.delivered(
            20,
            Some(SavedBaseline {
                previous: 9.0,
                ..b1
            }),
        );
        // An older completion (another request of the same shard finishing late) changes nothing.
        ack.delivered(
            15,
            Some(SavedBaseline {
                previous: 1.0,
                ..b1
            }),
        );
        let t = DeliveryTracker::new(1, pos(0, 0));
        t.register(Arc::new(ack));
        let snap = t.snapshot();
        assert_eq!(snap.series.len(), 1);
        assert_eq!(snap.series[0].last_t, 20);
        assert_eq!(snap.series[0].baseline.unwrap().previous, 9.0);
        t.forget(7);
        assert!(t.snapshot().series.is_empty());
    }

    #[test]
    fn restored_state_is_kept_until_new_deliveries() {
        let saved = SavedSeries {
            series_ref: 1,
            labels_hash: 2,
            last_t: 1000,
            baseline: None,
        };
        let ack = SeriesAck::new(1, 2, Some(&saved));
        assert_eq!(ack.snapshot(), saved);
        ack.delivered(900, None);
        assert_eq!(ack.snapshot().last_t, 1000);
    }
}
