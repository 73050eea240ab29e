//! Delivery tracking: which WAL records are fully delivered, and each series' last delivered point.
//!
//! Owns the rule that decides when a record is delivered, kept per lane
//! ([`crate::model::lanes`]) so that it does not depend on the shard count, and the per-series
//! states a restart resumes from. Must never do I/O (the marks file aside, which it is handed).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ahash::AHashMap;
use prometheus_wal::WalPosition;

use super::aggregates::AggregatesSlot;
use super::file::{
    SavedBaseline, SavedHistogram, SavedHistogramState, SavedProgress, SavedSeries, save_streamed,
};
use super::marks::{DeliveryMarks, Mark};
use super::slab::{AckId, AckSlab};
use crate::model::lanes::LANES;

/// How many series ahead a save loads their delivery states.
const SAVE_AHEAD: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: every update is one store.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// A point of one WAL series (its state in the tracker's slab), with the counter baseline
    /// it was measured from.
    Series(AckId, Option<SavedBaseline>),
    /// A histogram point, with the histogram's state after it.
    Histogram(Arc<HistogramAck>, Box<SavedHistogramState>),
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
///
/// The reader announces every record it has finished queuing, with, for each lane the record
/// put points in, how many tracked points it has pushed to that lane so far. Shards count, per
/// lane, the tracked points whose request has completed (accepted, or dropped for good) after
/// recording each point's series state; a lane is sent by one shard at a time, in order. A
/// record is delivered once every lane has completed at least as many points as had been pushed
/// to it when the record (or any later one touching the lane) was announced; the watermark is
/// the end of the last such record, and it only moves forward. Per-series state (last delivered
/// end time, counter baseline) lets a restart skip exactly what was delivered.
#[derive(Debug)]
pub struct DeliveryTracker {
    completed: Vec<AtomicU64>,
    pending: Mutex<Pending>,
    /// Every record numbered below this is delivered (set by [`DeliveryTracker::watermark`]).
    delivered_before: AtomicU64,
    /// Registered series: ref → state in `acks`.
    series: Mutex<AHashMap<u64, AckId>>,
    acks: AckSlab,
    histograms: Mutex<AHashMap<u64, Arc<HistogramAck>>>,
    marks: Option<DeliveryMarks>,
    /// The aggregated counters' state to save next.
    aggregates: AggregatesSlot,
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
            delivered_before: AtomicU64::new(0),
            series: Mutex::new(AHashMap::new()),
            acks: AckSlab::default(),
            histograms: Mutex::new(AHashMap::new()),
            marks: None,
            aggregates: AggregatesSlot::default(),
        }
    }

    /// Also records each lane's last delivered point in `marks` after every request.
    pub fn with_marks(mut self, marks: DeliveryMarks) -> DeliveryTracker {
        self.marks = Some(marks);
        self
    }

    /// Where the reader leaves the aggregated counters' state for the next save.
    pub fn aggregates(&self) -> &AggregatesSlot {
        &self.aggregates
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

    /// Reader: registers the state a previous run saved for a series, kept until the series
    /// shows up again (or is forgotten).
    pub fn register(&self, saved: &SavedSeries) {
        let before = self.delivered_before.load(Ordering::Acquire);
        let Some(id) = self.acks.allocate(before, saved.labels_hash, Some(saved)) else {
            return;
        };
        if let Some(old) = lock(&self.series).insert(saved.series_ref, id) {
            self.acks.release(old, self.next_record_bound());
        }
    }

    /// Reader: the delivery state of a series that just resolved: the one registered for its ref
    /// (from a previous run's save) when the labels match, else a fresh one. `None` only if the
    /// slab is full (4 billion series): the series' points are then not tracked.
    pub fn ack_for(&self, series_ref: u64, labels_hash: u64) -> Option<AckId> {
        let mut series = lock(&self.series);
        let old = match series.get(&series_ref) {
            Some(id) if self.acks.labels_hash(*id) == Some(labels_hash) => return Some(*id),
            other => other.copied(),
        };
        let before = self.delivered_before.load(Ordering::Acquire);
        let id = self.acks.allocate(before, labels_hash, None);
        match id {
            Some(id) => series.insert(series_ref, id),
            None => series.remove(&series_ref),
        };
        drop(series);
        if let Some(old) = old {
            // The ref now names another series; points of the old one may still be queued.
            self.acks.release(old, self.next_record_bound());
        }
        id
    }

    /// Records that a series' point ending at `t` was handled for good (sent, dropped, or used
    /// as the baseline), with the counter baseline it was measured from.
    pub fn series_delivered(&self, id: AckId, t: i64, baseline: Option<SavedBaseline>) {
        self.acks.delivered(id, t, baseline);
    }

    /// Records that the tracked point ending at `t` was handled for good.
    pub fn delivered(&self, ack: PointAck, t: i64) {
        match ack {
            PointAck::Series(id, baseline) => self.acks.delivered(id, t, baseline),
            PointAck::Histogram(ack, state) => ack.delivered(t, state),
        }
    }

    /// Asks the CPU to load the delivery state a point will record into, ready to be written.
    #[inline]
    pub fn prefetch(&self, ack: &PointAck) {
        if let PointAck::Series(id, _) = ack {
            self.acks.prefetch(*id);
        }
    }

    /// No record numbered this or higher can hold a point queued before now (the record being
    /// read may, so it is counted as before).
    fn next_record_bound(&self) -> u64 {
        lock(&self.pending).next_record + 1
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

    /// Reader: a series left the cache. Its state's slot is reused once the points already
    /// queued for it are delivered.
    pub fn forget(&self, series_ref: u64) {
        let removed = lock(&self.series).remove(&series_ref);
        if let Some(id) = removed {
            self.acks.release(id, self.next_record_bound());
        }
    }

    /// Delivery states in use (registered series, and released ones whose points may still be
    /// in flight are not counted).
    #[cfg(test)]
    fn series_states(&self) -> usize {
        self.acks.in_use()
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
        let delivered_before = p.records.front().map_or(p.next_record, |(r, _)| *r);
        self.delivered_before
            .store(delivered_before, Ordering::Release);
        p.watermark
    }

    /// What to save now: the watermark and every registered series' state.
    pub fn snapshot(&self) -> SavedProgress {
        let (position, histograms) = self.position_and_histograms();
        let series = lock(&self.series)
            .iter()
            .filter_map(|(r, id)| self.acks.snapshot(*id, *r))
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
            // In the map's order: the file's order means nothing (it is loaded into a map). The
            // slots lie far apart in the slab: each is loaded `SAVE_AHEAD` series before it is
            // read, so that the loads overlap instead of waiting on memory one by one.
            let mut entries = series.iter();
            let mut ahead: VecDeque<(u64, AckId)> = VecDeque::with_capacity(SAVE_AHEAD);
            let mut snapshots = std::iter::from_fn(|| {
                loop {
                    while ahead.len() < SAVE_AHEAD {
                        let Some((r, id)) = entries.next() else { break };
                        self.acks.prefetch(*id);
                        ahead.push_back((*r, *id));
                    }
                    let (r, id) = ahead.pop_front()?;
                    if let Some(saved) = self.acks.snapshot(id, r) {
                        return Some(saved);
                    }
                }
            });
            write(series.len(), &mut snapshots)
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
        let t = DeliveryTracker::new(pos(0, 0));
        let id = t.ack_for(7, 42).unwrap();
        let b1 = SavedBaseline {
            reset_ts: 10,
            reset_value: 5.0,
            previous: 5.0,
        };
        t.series_delivered(id, 10, Some(b1));
        t.delivered(
            PointAck::Series(
                id,
                Some(SavedBaseline {
                    previous: 9.0,
                    ..b1
                }),
            ),
            20,
        );
        // An older completion (another request of the same shard finishing late) changes nothing.
        t.series_delivered(
            id,
            15,
            Some(SavedBaseline {
                previous: 1.0,
                ..b1
            }),
        );
        let snap = t.snapshot();
        assert_eq!(snap.series.len(), 1);
        assert_eq!(snap.series[0].last_t, 20);
        assert_eq!(snap.series[0].baseline.unwrap().previous, 9.0);
        assert_eq!(t.ack_for(7, 42), Some(id), "same series, same state");
        t.forget(7);
        assert!(t.snapshot().series.is_empty());
    }

    #[test]
    fn a_forgotten_series_state_is_reused_only_after_its_points_are_delivered() {
        let t = DeliveryTracker::new(pos(0, 0));
        let old = t.ack_for(1, 10).unwrap();
        // Record 0 queued a point of series 1 in lane 0; then the series goes away.
        t.record_queued(pos(1, 100), &[(0, 1)]);
        t.forget(1);
        let other = t.ack_for(2, 20).unwrap();
        assert_ne!(other, old, "the point of record 0 may still record into it");
        t.points_completed(0..1, [(0, 1)], None);
        t.record_queued(pos(1, 200), &[]);
        assert_eq!(t.watermark(), pos(1, 200));
        let reused = t.ack_for(3, 30).unwrap();
        assert_eq!(reused, old);
        // A ref now naming other labels gets a new state too.
        let renamed = t.ack_for(3, 31).unwrap();
        assert_ne!(renamed, reused);
        assert_eq!(t.series_states(), 2);
    }

    #[test]
    fn a_streamed_save_loads_back_as_the_snapshot() {
        let t = DeliveryTracker::new(pos(3, 40));
        for r in 0..1000u64 {
            let id = t.ack_for(r, r * 7).unwrap();
            t.series_delivered(
                id,
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
        let t = DeliveryTracker::new(pos(0, 0));
        t.register(&saved);
        assert_eq!(t.snapshot().series, [saved]);
        let id = t.ack_for(1, 2).unwrap();
        t.series_delivered(id, 900, None);
        assert_eq!(t.snapshot().series[0].last_t, 1000);
        // Other labels under the same ref: a fresh state.
        t.ack_for(1, 3).unwrap();
        assert_eq!(t.snapshot().series[0].last_t, i64::MIN);
    }
}
