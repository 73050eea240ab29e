//! Delivery tracking: which WAL records are fully delivered, and each series' last delivered point.
//!
//! Tracking is kept per lane ([`crate::export::lanes`]), the fixed partition of series that
//! does not change when the shard count does. The reader announces every record it has finished
//! queuing, with, for each lane the record put points in, how many tracked points it has pushed
//! to that lane so far. Shards count, per lane, the tracked points whose request has completed
//! (accepted, or dropped for good) after recording each point's series state; a lane is sent by
//! one shard at a time, in order. A record is delivered once every lane has completed at least
//! as many points as had been pushed to it when the record (or any later one touching the lane)
//! was announced; the watermark is the end of the last such record, and it only moves forward.
//! Per-series state (last delivered end time, counter baseline) lets a restart skip exactly what
//! was delivered. This module never does I/O (the marks file aside, which it is handed).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ahash::AHashMap;
use prometheus_wal::WalPosition;

use super::file::{
    SavedBaseline, SavedHistogram, SavedHistogramState, SavedProgress, SavedSeries, save_streamed,
};
use super::marks::{DeliveryMarks, Mark};
use crate::export::lanes::LANES;

/// Delivery state of one WAL series, shared by the reader (which creates it) and the shard that
/// sends the series' points. Kept small (one 64-byte allocation): there is one per series; the
/// registry's key is its series ref.
#[derive(Debug)]
pub struct SeriesAck {
    labels_hash: u64,
    state: Mutex<Delivered>,
}

// One 64-byte allocation with the reference counts.
const _: () = assert!(std::mem::size_of::<SeriesAck>() <= 48);

/// The last delivered point's time and the counter baseline it was measured from; a NaN
/// `reset_value` means no baseline (NaN samples are never converted, so no baseline has one).
#[derive(Debug, Clone, Copy)]
struct Delivered {
    last_t: i64,
    reset_ts: i64,
    reset_value: f64,
    previous: f64,
}

impl Delivered {
    fn baseline(&self) -> Option<SavedBaseline> {
        (!self.reset_value.is_nan()).then_some(SavedBaseline {
            reset_ts: self.reset_ts,
            reset_value: self.reset_value,
            previous: self.previous,
        })
    }

    fn set_baseline(&mut self, b: SavedBaseline) {
        (self.reset_ts, self.reset_value, self.previous) = (b.reset_ts, b.reset_value, b.previous);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: every update is one store.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SeriesAck {
    /// State for a series, starting from what a previous run saved for it, if anything.
    pub fn new(labels_hash: u64, restored: Option<&SavedSeries>) -> SeriesAck {
        let mut state = Delivered {
            last_t: restored.map_or(i64::MIN, |s| s.last_t),
            reset_ts: 0,
            reset_value: f64::NAN,
            previous: 0.0,
        };
        if let Some(b) = restored.and_then(|s| s.baseline) {
            state.set_baseline(b);
        }
        SeriesAck {
            labels_hash,
            state: Mutex::new(state),
        }
    }

    /// Records that the point ending at `t` was handled for good (sent, dropped, or used as the
    /// baseline), with the counter baseline it was measured from.
    pub fn delivered(&self, t: i64, baseline: Option<SavedBaseline>) {
        let mut s = lock(&self.state);
        if t >= s.last_t {
            s.last_t = t;
            if let Some(b) = baseline {
                s.set_baseline(b);
            }
        }
    }

    fn snapshot(&self, series_ref: u64) -> SavedSeries {
        let s = *lock(&self.state);
        SavedSeries {
            series_ref,
            labels_hash: self.labels_hash,
            last_t: s.last_t,
            baseline: s.baseline(),
        }
    }
}

/// Delivery state of one histogram output series (several WAL series make one point).
#[derive(Debug)]
pub struct HistogramAck {
    hash: u64,
    state: Mutex<Option<(i64, Box<SavedHistogramState>)>>,
}

impl HistogramAck {
    /// State for a histogram, starting from what a previous run saved for it, if anything.
    pub fn new(hash: u64, restored: Option<&SavedHistogram>) -> HistogramAck {
        HistogramAck {
            hash,
            state: Mutex::new(restored.map(|h| (h.last_t, Box::new(h.state.clone())))),
        }
    }

    /// Records that the point ending at `t` was handled for good, with the state after it.
    pub fn delivered(&self, t: i64, state: Box<SavedHistogramState>) {
        let mut s = lock(&self.state);
        if s.as_ref().is_none_or(|(last, _)| t >= *last) {
            *s = Some((t, state));
        }
    }

    fn snapshot(&self) -> Option<SavedHistogram> {
        lock(&self.state)
            .as_ref()
            .map(|(last_t, state)| SavedHistogram {
                hash: self.hash,
                last_t: *last_t,
                state: (**state).clone(),
            })
    }
}

/// What a tracked point records once its request is done with.
#[derive(Debug, Clone)]
pub enum PointAck {
    /// A point of one WAL series, with the counter baseline it was measured from.
    Series(Arc<SeriesAck>, Option<SavedBaseline>),
    /// A histogram point, with the histogram's state after it.
    Histogram(Arc<HistogramAck>, Box<SavedHistogramState>),
}

impl PointAck {
    /// Records that the point ending at `t` was handled for good.
    pub fn delivered(self, t: i64) {
        match self {
            PointAck::Series(ack, baseline) => ack.delivered(t, baseline),
            PointAck::Histogram(ack, state) => ack.delivered(t, state),
        }
    }
}

/// The reader's announcements not yet known to be delivered. Records get sequence numbers;
/// `lanes[l]` holds `(record, pushed)` for the records that put points in lane `l`, so memory
/// follows the points in flight, not the lane count; `records` holds the end positions of the
/// records not yet delivered (consecutive records with nothing of their own share one entry).
#[derive(Debug)]
struct Pending {
    next_record: u64,
    records: VecDeque<(u64, WalPosition)>,
    lanes: Vec<VecDeque<(u64, u64)>>,
    watermark: WalPosition,
}

/// Shared between the reader, the shards and the progress keeper.
#[derive(Debug)]
pub struct DeliveryTracker {
    completed: Vec<AtomicU64>,
    pending: Mutex<Pending>,
    series: Mutex<AHashMap<u64, Arc<SeriesAck>>>,
    histograms: Mutex<AHashMap<u64, Arc<HistogramAck>>>,
    marks: Option<DeliveryMarks>,
}

impl DeliveryTracker {
    /// A tracker starting at `start` (everything before it is delivered).
    pub fn new(start: WalPosition) -> DeliveryTracker {
        DeliveryTracker {
            completed: (0..LANES).map(|_| AtomicU64::new(0)).collect(),
            pending: Mutex::new(Pending {
                next_record: 0,
                records: VecDeque::new(),
                lanes: (0..LANES).map(|_| VecDeque::new()).collect(),
                watermark: start,
            }),
            series: Mutex::new(AHashMap::new()),
            histograms: Mutex::new(AHashMap::new()),
            marks: None,
        }
    }

    /// Also records each lane's last delivered point in `marks` after every request.
    pub fn with_marks(mut self, marks: DeliveryMarks) -> DeliveryTracker {
        self.marks = Some(marks);
        self
    }

    /// Makes the delivery marks durable.
    pub fn sync_marks(&self) -> std::io::Result<()> {
        self.marks.as_ref().map_or(Ok(()), DeliveryMarks::sync)
    }

    /// Reader: the record ending at `position` is fully queued; `touched` lists, for each lane
    /// it pushed tracked points to, the lane and the total tracked points pushed to that lane
    /// since the start.
    pub fn record_queued(&self, position: WalPosition, touched: &[(usize, u64)]) {
        let mut p = lock(&self.pending);
        let record = p.next_record;
        p.next_record += 1;
        if touched.is_empty() {
            match p.records.back_mut() {
                // Delivered when the records before it are.
                Some(last) => last.1 = position,
                None => p.watermark = p.watermark.max(position),
            }
            return;
        }
        for &(lane, pushed) in touched {
            if let Some(queue) = p.lanes.get_mut(lane) {
                queue.push_back((record, pushed));
            }
        }
        p.records.push_back((record, position));
    }

    /// Shard: one request is done with; `lanes` are the lanes the shard owns, `completed` the
    /// tracked points of that request per lane (their series states recorded first), the last
    /// of them being `last`.
    pub fn points_completed(
        &self,
        lanes: Range<usize>,
        completed: impl IntoIterator<Item = (usize, u64)>,
        last: Option<Mark>,
    ) {
        if let (Some(marks), Some(last)) = (&self.marks, last)
            && let Err(err) = marks.mark(lanes.clone(), last)
        {
            tracing::warn!(error = %err, ?lanes, "recording a delivery mark failed");
        }
        for (lane, n) in completed {
            if let Some(c) = self.completed.get(lane) {
                c.fetch_add(n, Ordering::Release);
            }
        }
    }

    /// Reader: a series resolved, with its delivery state.
    pub fn register(&self, series_ref: u64, ack: Arc<SeriesAck>) {
        lock(&self.series).insert(series_ref, ack);
    }

    /// Reader: the delivery state of a series that just resolved: the one registered for its ref
    /// (from a previous run's save) when the labels match, else a fresh one.
    pub fn ack_for(&self, series_ref: u64, labels_hash: u64) -> Arc<SeriesAck> {
        let mut series = lock(&self.series);
        match series.get(&series_ref) {
            Some(ack) if ack.labels_hash == labels_hash => ack.clone(),
            _ => {
                let ack = Arc::new(SeriesAck::new(labels_hash, None));
                series.insert(series_ref, ack.clone());
                ack
            }
        }
    }

    /// Reader: the delivery state of a histogram output series (created on first use).
    pub fn histogram_ack(&self, hash: u64) -> Arc<HistogramAck> {
        lock(&self.histograms)
            .entry(hash)
            .or_insert_with(|| Arc::new(HistogramAck::new(hash, None)))
            .clone()
    }

    /// Reader: a histogram's state from a previous run, kept until it shows up again.
    pub fn register_histogram(&self, ack: Arc<HistogramAck>) {
        lock(&self.histograms).insert(ack.hash, ack);
    }

    /// Reader: a series left the cache.
    pub fn forget(&self, series_ref: u64) {
        lock(&self.series).remove(&series_ref);
    }

    /// The position below which everything is delivered, advanced as far as possible.
    pub fn watermark(&self) -> WalPosition {
        let mut guard = lock(&self.pending);
        let p = &mut *guard;
        // The first record some lane still waits for.
        let mut blocked_at = u64::MAX;
        for (lane, queue) in p.lanes.iter_mut().enumerate() {
            let done = self.completed[lane].load(Ordering::Acquire);
            while queue.front().is_some_and(|(_, pushed)| *pushed <= done) {
                queue.pop_front();
            }
            if let Some((record, _)) = queue.front() {
                blocked_at = blocked_at.min(*record);
            }
        }
        while let Some(&(record, position)) = p.records.front() {
            if record >= blocked_at {
                break;
            }
            p.watermark = p.watermark.max(position);
            p.records.pop_front();
        }
        p.watermark
    }

    /// What to save now: the watermark and every registered series' state.
    pub fn snapshot(&self) -> SavedProgress {
        let (position, histograms) = self.position_and_histograms();
        let series = lock(&self.series)
            .iter()
            .map(|(r, a)| a.snapshot(*r))
            .collect();
        SavedProgress {
            position,
            series,
            histograms,
        }
    }

    /// Saves the snapshot in `dir` without collecting it: every series' state is written
    /// straight from the registry (which stays locked meanwhile; the reader only needs it when
    /// a series appears or leaves). Returns the saved position.
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<WalPosition> {
        let (position, histograms) = self.position_and_histograms();
        save_streamed(dir, position, &histograms, |write| {
            let series = lock(&self.series);
            // In the map's order: the file's order means nothing (it is loaded into a map).
            write(
                series.len(),
                &mut series.iter().map(|(r, a)| a.snapshot(*r)),
            )
        })?;
        Ok(position)
    }

    fn position_and_histograms(&self) -> (WalPosition, Vec<SavedHistogram>) {
        let position = self.watermark();
        let mut histograms: Vec<SavedHistogram> = lock(&self.histograms)
            .values()
            .filter_map(|a| a.snapshot())
            .collect();
        histograms.sort_unstable_by_key(|h| h.hash);
        (position, histograms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u64, offset: u64) -> WalPosition {
        WalPosition { segment, offset }
    }

    #[test]
    fn watermark_waits_for_every_lane() {
        let t = DeliveryTracker::new(pos(0, 0));
        t.record_queued(pos(1, 100), &[(0, 2)]);
        t.record_queued(pos(1, 200), &[(0, 2), (5, 1)]);
        t.record_queued(pos(1, 300), &[]);
        assert_eq!(t.watermark(), pos(0, 0));
        t.points_completed(0..1, [(0, 1)], None);
        assert_eq!(t.watermark(), pos(0, 0));
        t.points_completed(0..1, [(0, 1)], None);
        assert_eq!(t.watermark(), pos(1, 100));
        t.points_completed(4..8, [(5, 1)], None);
        // Record 3 pushed nothing: delivered together with record 2.
        assert_eq!(t.watermark(), pos(1, 300));
        t.record_queued(pos(1, 400), &[(5, 3)]);
        t.record_queued(pos(2, 50), &[(7, 1)]);
        t.points_completed(4..8, [(7, 1)], None);
        assert_eq!(t.watermark(), pos(1, 300), "lane 5 holds record 4 back");
        t.points_completed(4..8, [(5, 2)], None);
        assert_eq!(t.watermark(), pos(2, 50));
    }

    #[test]
    fn records_without_points_are_delivered_at_once() {
        let t = DeliveryTracker::new(pos(2, 0));
        t.record_queued(pos(2, 50), &[]);
        assert_eq!(t.watermark(), pos(2, 50));
        assert_eq!(t.watermark(), pos(2, 50));
    }

    #[test]
    fn pending_state_follows_points_in_flight() {
        let t = DeliveryTracker::new(pos(0, 0));
        for i in 0..10_000u64 {
            t.record_queued(pos(1, i + 1), &[((i % 3) as usize, i / 3 + 1)]);
            t.points_completed(0..3, [((i % 3) as usize, 1)], None);
        }
        assert_eq!(t.watermark(), pos(1, 10_000));
        let p = lock(&t.pending);
        assert!(p.records.is_empty());
        assert!(p.lanes.iter().all(VecDeque::is_empty));
    }

    #[test]
    fn series_state_keeps_the_latest_delivery_and_baseline() {
        let ack = SeriesAck::new(42, None);
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
        let t = DeliveryTracker::new(pos(0, 0));
        t.register(7, Arc::new(ack));
        let snap = t.snapshot();
        assert_eq!(snap.series.len(), 1);
        assert_eq!(snap.series[0].last_t, 20);
        assert_eq!(snap.series[0].baseline.unwrap().previous, 9.0);
        t.forget(7);
        assert!(t.snapshot().series.is_empty());
    }

    #[test]
    fn a_streamed_save_loads_back_as_the_snapshot() {
        let t = DeliveryTracker::new(pos(3, 40));
        for r in 0..1000u64 {
            let ack = t.ack_for(r, r * 7);
            ack.delivered(
                r as i64 * 10,
                (r % 3 == 0).then_some(SavedBaseline {
                    reset_ts: r as i64,
                    reset_value: 1.5,
                    previous: r as f64,
                }),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(t.save(dir.path()).unwrap(), pos(3, 40));
        let super::super::file::LoadedProgress::Exact(loaded) =
            super::super::file::load(dir.path()).unwrap()
        else {
            panic!("not the exact format");
        };
        let mut expected = t.snapshot();
        expected.series.sort_unstable_by_key(|s| s.series_ref);
        let mut got = loaded;
        got.series.sort_unstable_by_key(|s| s.series_ref);
        assert_eq!(got, expected);
    }

    #[test]
    fn restored_state_is_kept_until_new_deliveries() {
        let saved = SavedSeries {
            series_ref: 1,
            labels_hash: 2,
            last_t: 1000,
            baseline: None,
        };
        let ack = SeriesAck::new(2, Some(&saved));
        assert_eq!(ack.snapshot(1), saved);
        ack.delivered(900, None);
        assert_eq!(ack.snapshot(1).last_t, 1000);
    }
}
