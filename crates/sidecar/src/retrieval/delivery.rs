//! The reader's delivery bookkeeping: what a previous run delivered (so it is skipped, not sent
//! again), each queued point's identity in the WAL (its mark), which lanes every record's
//! points went to (so the watermark only passes records whose points are all delivered), and
//! each series' delivery state once it resolves. It must never queue, convert or drop a point;
//! the reader asks it and acts.

use ahash::AHashMap;
use prometheus_wal::{RecordSource, WalPosition};

use super::convert::CounterState;
use super::series::{CompactLabels, SeriesEntry, SeriesState};
use crate::model::lanes::{LANES, lane_of};
use crate::progress::{DeliveryTracker, Mark, Resume, SavedHistogram};
use std::sync::Arc;

/// Where delivery stands: what a previous run delivered, and what this run has queued.
pub struct ReaderProgress {
    /// Tracks deliveries of this run.
    pub tracker: Arc<DeliveryTracker>,
    /// What a previous run delivered.
    pub resume: Resume,
    /// On a first start, samples older than this (ms since the epoch) are not sent.
    pub start_after_ms: Option<i64>,
}

/// How often (in WAL records) the delivery tracker is pruned.
const PRUNE_EVERY_RECORDS: u32 = 32;

/// The reader's side of delivery tracking.
pub(super) struct Bookkeeping {
    progress: ReaderProgress,
    /// Tracked points pushed to each lane so far.
    pushed: Vec<u64>,
    /// Lanes the current record pushed tracked points to, with their totals, for the tracker.
    touched: Vec<(usize, u64)>,
    /// Whether a lane is in `touched`, by lane.
    in_touched: Vec<bool>,
    /// Per histogram restored from a previous run, the end time of its last delivered point.
    histogram_resume: AHashMap<u64, i64>,
    /// Records announced since the tracker was last pruned.
    records_since_prune: u32,
    /// Sample records skipped because a previous run delivered them.
    skipped_records: u64,
    /// The checkpoint being read, and how many of its records were read.
    checkpoint_read: Option<u64>,
    checkpoint_ordinal: u64,
    /// Added to sample indices in marks: the record's ordinal in its checkpoint, shifted into
    /// the high bits (0 for segment records).
    index_base: u64,
}

impl Bookkeeping {
    pub(super) fn new(progress: ReaderProgress) -> Bookkeeping {
        Bookkeeping {
            progress,
            pushed: vec![0; LANES],
            touched: Vec::new(),
            in_touched: vec![false; LANES],
            histogram_resume: AHashMap::new(),
            records_since_prune: 0,
            skipped_records: 0,
            checkpoint_read: None,
            checkpoint_ordinal: 0,
            index_base: 0,
        }
    }

    /// The tracker of this run's deliveries.
    pub(super) fn tracker(&self) -> &DeliveryTracker {
        &self.progress.tracker
    }

    /// A record read at `position` from `source` begins. Returns whether a previous run
    /// delivered its samples.
    pub(super) fn begin_record(&mut self, source: RecordSource, position: WalPosition) -> bool {
        // Every record of a checkpoint has the same position (the start of the segment after
        // it), so within a checkpoint a point's identity also needs the record's ordinal: it
        // goes into the high bits of the mark index (the same on every read of that
        // checkpoint). A watermark equal to that position does not cover them either.
        let in_checkpoint = match source {
            RecordSource::Checkpoint(i) => {
                if self.checkpoint_read != Some(i) {
                    self.checkpoint_read = Some(i);
                    self.checkpoint_ordinal = 0;
                }
                self.checkpoint_ordinal += 1;
                self.index_base = self.checkpoint_ordinal << 32;
                true
            }
            RecordSource::Segment(_) => {
                self.index_base = 0;
                false
            }
        };
        let resume = self.progress.resume.position;
        position < resume || (position == resume && !in_checkpoint)
    }

    /// A samples record a previous run delivered was skipped.
    pub(super) fn skipped_delivered_record(&mut self) {
        self.skipped_records += 1;
    }

    /// A samples record is about to be converted: says once where reading resumed.
    pub(super) fn converting_record(&mut self) {
        if self.skipped_records > 0 {
            tracing::info!(
                skipped_records = self.skipped_records,
                resume_position = %self.progress.resume.position,
                "resuming after what was delivered before the restart"
            );
            self.skipped_records = 0;
        }
    }

    /// The identity of sample `index` of the record at `position`.
    pub(super) fn mark(&self, position: WalPosition, index: usize) -> Mark {
        Mark {
            position,
            index: self.index_base | index as u64,
        }
    }

    /// Whether a sample at `t` of `entry` is not to be sent: a previous run delivered it, or it
    /// is older than where a first start begins.
    pub(super) fn sample_delivered(&self, entry: &SeriesEntry, t: i64) -> bool {
        t <= entry.resume_after_t || self.progress.start_after_ms.is_some_and(|s| t < s)
    }

    /// Whether a previous run acknowledged the point `mark` of the series with identity `hash`.
    pub(super) fn acknowledged(&self, hash: u64, mark: Mark) -> bool {
        self.progress.resume.delivered(lane_of(hash), mark)
    }

    /// The state a previous run saved for the histogram `hash`, the first time it is asked.
    pub(super) fn take_histogram(&mut self, hash: u64) -> Option<SavedHistogram> {
        let saved = self.progress.resume.take_histogram(hash)?;
        self.histogram_resume.insert(hash, saved.last_t);
        Some(saved)
    }

    /// Whether a previous run delivered the histogram `hash`'s point at `t`.
    pub(super) fn histogram_delivered(&self, hash: u64, t: i64) -> bool {
        self.histogram_resume
            .get(&hash)
            .is_some_and(|last| t <= *last)
    }

    /// A tracked point was queued in `lane`.
    pub(super) fn pushed_to(&mut self, lane: usize) {
        self.pushed[lane] += 1;
        if !self.in_touched[lane] {
            self.in_touched[lane] = true;
            self.touched.push((lane, 0));
        }
    }

    /// The record ending at `position` is fully queued: tell the tracker.
    pub(super) fn record_done(&mut self, position: WalPosition) {
        for (lane, total) in &mut self.touched {
            *total = self.pushed[*lane];
            self.in_touched[*lane] = false;
        }
        self.progress.tracker.record_queued(position, &self.touched);
        self.touched.clear();
        // Advancing the watermark also forgets what is delivered: doing it often keeps the
        // tracker's memory to the records in flight rather than to those of a save interval.
        self.records_since_prune += 1;
        if self.records_since_prune >= PRUNE_EVERY_RECORDS {
            self.records_since_prune = 0;
            self.progress.tracker.watermark();
        }
    }

    /// A series just resolved: give it its delivery state, continuing what a previous run
    /// saved.
    pub(super) fn restore(&mut self, series_ref: u64, entry: &mut SeriesEntry) {
        let hash = entry.labels_hash;
        // Nothing needs the labels of a resolved series any more.
        entry.labels = CompactLabels::default();
        let saved = self.progress.resume.take(series_ref, hash);
        if let (Some(saved), SeriesState::Resolved { counter, .. }) = (&saved, &mut entry.state) {
            entry.resume_after_t = saved.last_t;
            if let Some(baseline) = saved.baseline {
                *counter = CounterState::restored(baseline);
            }
        }
        entry.delivery = self.progress.tracker.ack_for(series_ref, hash);
    }
}
