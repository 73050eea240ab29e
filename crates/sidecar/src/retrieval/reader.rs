//! The reader loop: WAL records in, queued points out. Runs on its own thread.
//!
//! Series records fill the series cache; each sample of a samples record is looked up by ref,
//! resolved on first use (blocking on the async Prometheus lookups, which is allowed because this
//! is not a runtime thread), converted and queued on its shard, blocking while the shard is full.
//! Shutdown is observed through the follower: it returns `None` once the stop flag is set, and
//! dropping the reader drops its export handle so the shards can drain.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use prometheus_wal::record::{
    RecordType, RefSample, RefSeries, decode_samples, decode_series, record_type,
};
use prometheus_wal::{Follower, RecordSource, WalError, WalPosition};
use tokio::runtime::Handle;

use super::aggregator::{CounterAggregator, ExportSchedule};
use super::convert::{Converter, CounterState, Skipped};
use super::filter::SeriesFilter;
use super::gc::SeriesGc;
use super::histogram::{HistogramRun, RunCollector};
use super::resolve::{Conversion, Resolution, Resolver, SeriesSources};
use super::series::{CompactLabels, SeriesCache, SeriesEntry, SeriesState};
use crate::export::lanes::{LANES, lane_of};
use crate::export::{Delivery, ExportHandle, QueuedPoint};
use crate::progress::{DeliveryTracker, Mark, PointAck, Resume};
use crate::stats::{DropReason, Stats};

/// How many example series are logged per drop reason.
const EXAMPLES_PER_REASON: u64 = 5;

/// Reads WAL records, converts their samples and queues the points.
pub struct Reader<S> {
    cache: SeriesCache,
    resolver: Resolver<S>,
    converter: Converter,
    export: ExportHandle,
    stats: Arc<Stats>,
    runtime: Handle,
    series_buf: Vec<RefSeries>,
    samples_buf: Vec<RefSample>,
    delivery: DeliveryState,
    /// Histogram samples gathered until their run ends.
    runs: RunCollector,
    /// Index in its record of the last sample added to the open histogram run.
    run_index: u64,
    /// Added to sample indices in delivery marks: the record's ordinal in its checkpoint,
    /// shifted into the high bits (0 for segment records).
    index_base: u64,
    /// The checkpoint being read and how many of its records were read.
    checkpoint_read: Option<u64>,
    checkpoint_ordinal: u64,
    /// Aggregated counters, if configured, and when their points are next due.
    aggregates: Option<(Arc<CounterAggregator>, ExportSchedule)>,
    /// Set at shutdown; the reader then stops waiting for Prometheus.
    stop: Option<Arc<AtomicBool>>,
}

/// Where delivery stands: what a previous run delivered, and what this run has queued.
pub struct ReaderProgress {
    /// Tracks deliveries of this run.
    pub tracker: Arc<DeliveryTracker>,
    /// What a previous run delivered.
    pub resume: Resume,
    /// On a first start, samples older than this (ms since the epoch) are not sent.
    pub start_after_ms: Option<i64>,
}

/// How many samples ahead the reader asks the CPU to load series prototypes.
const PREFETCH_AHEAD: usize = 8;

/// How often (in WAL records) the reader prunes the delivery tracker.
const PRUNE_EVERY_RECORDS: u32 = 32;

struct DeliveryState {
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
}

/// Why the reader stopped.
#[derive(Debug)]
pub enum ReaderExit {
    /// The stop flag was set.
    Stopped,
    /// The export stage shut down first.
    ExportClosed,
}

impl<S: SeriesSources> Reader<S> {
    /// A reader that resolves with `resolver` and queues on `export`.
    pub fn new(
        resolver: Resolver<S>,
        export: ExportHandle,
        stats: Arc<Stats>,
        runtime: Handle,
        progress: ReaderProgress,
    ) -> Reader<S> {
        Reader {
            delivery: DeliveryState {
                progress,
                pushed: vec![0; LANES],
                touched: Vec::new(),
                in_touched: vec![false; LANES],
                histogram_resume: AHashMap::new(),
                records_since_prune: 0,
                skipped_records: 0,
            },
            cache: SeriesCache::default(),
            resolver,
            converter: Converter::default(),
            export,
            stats,
            runtime,
            series_buf: Vec::new(),
            samples_buf: Vec::new(),
            runs: RunCollector::default(),
            run_index: 0,
            index_base: 0,
            checkpoint_read: None,
            checkpoint_ordinal: 0,
            aggregates: None,
            stop: None,
        }
    }

    /// Exports only the series `filter` selects (`--include`, `--filter`).
    pub fn with_filter(mut self, filter: SeriesFilter) -> Reader<S> {
        self.cache.set_filter(filter);
        self
    }

    /// Makes waits for Prometheus end when `stop` is set (the follower's stop flag).
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Reader<S> {
        self.stop = Some(stop);
        self
    }

    /// Feeds the aggregated counters from the series they select and sends their points.
    pub fn with_aggregator(mut self, aggregator: Arc<CounterAggregator>) -> Reader<S> {
        if !aggregator.is_empty() {
            self.cache.set_aggregator(aggregator.clone());
            self.aggregates = Some((aggregator, ExportSchedule::default()));
        }
        self
    }

    /// Follows the WAL until stopped. Errors are those the follower cannot recover from.
    pub fn run(mut self, follower: &mut Follower) -> Result<ReaderExit, WalError> {
        let mut gc = SeriesGc::new(follower.dir().to_path_buf());
        while let Some(record) = follower.next_record()? {
            let segment = match record.source {
                RecordSource::Checkpoint(i) | RecordSource::Segment(i) => i,
            };
            let position = record.position;
            self.stats.wal_record_read(position);
            // Every record of a checkpoint has the same position (the start of the segment
            // after it), so within a checkpoint a point's identity also needs the record's
            // ordinal: it goes into the high bits of the mark index (the same on every read of
            // that checkpoint). A watermark equal to that position does not cover them either.
            let in_checkpoint = match record.source {
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
            let resume = self.delivery.progress.resume.position;
            let delivered_before = position < resume || (position == resume && !in_checkpoint);
            match record_type(record.data) {
                RecordType::Series => {
                    if let Err(e) = decode_series(record.data, &mut self.series_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    for s in self.series_buf.drain(..) {
                        self.cache.insert(s.series_ref, s.labels, segment);
                    }
                }
                RecordType::Samples if delivered_before => {
                    // Delivered by a previous run; its series records above are still read.
                    self.delivery.skipped_records += 1;
                }
                RecordType::Samples => {
                    if self.delivery.skipped_records > 0 {
                        tracing::info!(
                            skipped_records = self.delivery.skipped_records,
                            resume_position = %self.delivery.progress.resume.position,
                            "resuming after what was delivered before the restart"
                        );
                        self.delivery.skipped_records = 0;
                    }
                    if let Err(e) = decode_samples(record.data, &mut self.samples_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    let samples = std::mem::take(&mut self.samples_buf);
                    let ok =
                        self.on_samples(&samples, position) && self.export.flush_blocking().is_ok();
                    self.samples_buf = samples;
                    if !ok {
                        return Ok(ReaderExit::ExportClosed);
                    }
                }
                // Other record types are not converted yet; the WAL library decodes them.
                _ => {}
            }
            self.delivery.record_done(position);
            gc.maybe_collect(
                &mut self.cache,
                &self.delivery.progress.tracker,
                Instant::now(),
            );
        }
        Ok(ReaderExit::Stopped)
    }

    fn undecodable(&self, err: &dyn std::fmt::Display, position: WalPosition) {
        self.stats.records_undecodable.fetch_add(1, Relaxed);
        tracing::warn!(
            segment = position.segment,
            offset = position.offset,
            error = %err,
            "skipping a WAL record that cannot be decoded"
        );
    }

    /// Converts and queues one record's samples; false when the export stage is gone.
    fn on_samples(&mut self, samples: &[RefSample], position: WalPosition) -> bool {
        self.stats.batches_processed.fetch_add(1, Relaxed);
        self.stats
            .samples_processed
            .fetch_add(samples.len() as u64, Relaxed);
        if let Some(newest) = samples.iter().map(|s| s.t).max() {
            self.stats.samples_read_until(newest);
        }
        let mut now = Instant::now();
        let mut newest = None;
        for (index, sample) in samples.iter().enumerate() {
            if let Some(ahead) = samples.get(index + PREFETCH_AHEAD) {
                self.cache.prefetch(ahead.series_ref);
            }
            if sample.v.is_nan() {
                // Stale markers and NaN values have no Cloud Monitoring representation.
                self.stats.samples_nan.fetch_add(1, Relaxed);
                continue;
            }
            newest = newest.max(Some(sample.t));
            let Some(entry) = self.cache.get_mut(sample.series_ref) else {
                self.stats.samples_unknown_ref.fetch_add(1, Relaxed);
                continue;
            };
            if let (Some(tracker), Some((aggregator, _))) = (&mut entry.tracker, &self.aggregates) {
                aggregator.observe(tracker, sample.t, sample.v);
            }
            if let Some(first) = entry.filtered_sample() {
                if first {
                    count_dropped(&self.stats, DropReason::Filtered, entry);
                }
                self.stats.samples_filtered.fetch_add(1, Relaxed);
                continue;
            }
            if entry.needs_resolution(now) {
                resolve_entry(
                    &self.resolver,
                    &self.runtime,
                    &self.stats,
                    entry,
                    self.stop.as_deref(),
                );
                if matches!(entry.state, SeriesState::Resolved { .. }) {
                    self.delivery.restore(sample.series_ref, entry);
                }
                now = Instant::now();
            }
            if sample.t <= entry.resume_after_t
                || self
                    .delivery
                    .progress
                    .start_after_ms
                    .is_some_and(|s| sample.t < s)
            {
                self.stats.samples_already_delivered.fetch_add(1, Relaxed);
                continue;
            }
            let SeriesState::Resolved { series, counter } = &mut entry.state else {
                self.stats.samples_unresolved_series.fetch_add(1, Relaxed);
                continue;
            };
            if let Conversion::Histogram(part) = series.conversion {
                let finished = self.runs.add(&series.prototype, part, sample.t, sample.v);
                // The run's last sample is its identity for delivery marks.
                let finished_index = std::mem::replace(&mut self.run_index, index as u64);
                if let Some(run) = finished
                    && !queue_histogram(
                        &mut self.converter,
                        &mut self.export,
                        &self.stats,
                        &mut self.delivery,
                        run,
                        Mark {
                            position,
                            index: self.index_base | finished_index,
                        },
                    )
                {
                    return false;
                }
                continue;
            }
            // Any other sample ends a histogram's run: its parts must be adjacent.
            if let Some(run) = self.runs.finish()
                && !queue_histogram(
                    &mut self.converter,
                    &mut self.export,
                    &self.stats,
                    &mut self.delivery,
                    run,
                    Mark {
                        position,
                        index: self.index_base | self.run_index,
                    },
                )
            {
                return false;
            }
            match self.converter.convert(series, counter, sample.t, sample.v) {
                Ok(point) => {
                    let mark = Mark {
                        position,
                        index: self.index_base | index as u64,
                    };
                    let lane = lane_of(series.prototype.hash);
                    if self.delivery.progress.resume.delivered(lane, mark) {
                        // Acknowledged before a restart: the counter state has moved on, the
                        // point is not sent again.
                        self.stats.samples_already_delivered.fetch_add(1, Relaxed);
                        if let Some(ack) = entry.delivery {
                            let tracker = &self.delivery.progress.tracker;
                            tracker.series_delivered(ack, sample.t, counter.saved());
                        }
                        continue;
                    }
                    let item = QueuedPoint {
                        series: series.prototype.clone(),
                        point,
                        position,
                        delivery: entry.delivery.map(|ack| Delivery {
                            ack: PointAck::Series(ack, counter.saved()),
                            index: mark.index,
                        }),
                    };
                    self.stats.queued();
                    match self.export.push_blocking(item) {
                        Ok(lane) => self.delivery.pushed_to(lane),
                        Err(_) => return false,
                    }
                }
                Err(Skipped::Baseline) => {
                    self.stats.samples_baseline.fetch_add(1, Relaxed);
                    // The baseline is part of what a restart must not lose.
                    if let Some(ack) = entry.delivery {
                        let tracker = &self.delivery.progress.tracker;
                        tracker.series_delivered(ack, sample.t, counter.saved());
                    }
                }
                Err(Skipped::OutOfOrder) => {
                    self.stats.samples_out_of_order.fetch_add(1, Relaxed);
                }
                // Only histogram runs give these.
                Err(Skipped::HistogramPart | Skipped::InvalidHistogram(_)) => {}
            }
        }
        // A record holds whole scrapes, so a run never continues in the next record.
        if let Some(run) = self.runs.finish()
            && !queue_histogram(
                &mut self.converter,
                &mut self.export,
                &self.stats,
                &mut self.delivery,
                run,
                Mark {
                    position,
                    index: self.index_base | self.run_index,
                },
            )
        {
            return false;
        }
        if let (Some(newest), Some((aggregator, schedule))) = (newest, &mut self.aggregates)
            && let Some((start, end)) = schedule.due(newest)
        {
            for (prototype, point) in aggregator.points(start, end) {
                let item = QueuedPoint {
                    series: prototype,
                    point,
                    position,
                    delivery: None,
                };
                self.stats.queued();
                if self.export.push_blocking(item).is_err() {
                    return false;
                }
            }
        }
        true
    }
}

/// Converts a finished histogram run and queues its point; false when the export stage is
/// gone. Histogram points are tracked for delivery like any series' points, under the output
/// series (their parts are several WAL series): a restart continues from the saved state, so the
/// first run after it is not swallowed as a new baseline and the start time stays the same.
fn queue_histogram(
    converter: &mut Converter,
    export: &mut ExportHandle,
    stats: &Stats,
    delivery: &mut DeliveryState,
    run: HistogramRun,
    mark: Mark,
) -> bool {
    let series = run.prototype.clone();
    let (hash, t) = (series.hash, run.t);
    if let Some(saved) = delivery.progress.resume.take_histogram(hash) {
        converter.restore_histogram(hash, &saved.state);
        delivery.histogram_resume.insert(hash, saved.last_t);
    }
    if delivery
        .histogram_resume
        .get(&hash)
        .is_some_and(|last| t <= *last)
    {
        // Delivered before the restart; the restored state already includes it.
        stats.samples_already_delivered.fetch_add(1, Relaxed);
        return true;
    }
    let result = converter.convert_histogram(run);
    let ack = delivery.progress.tracker.histogram_ack(hash);
    let state = converter.histogram_state(hash).map(Box::new);
    let record = |state: Option<Box<_>>| {
        if let Some(state) = state {
            ack.delivered(t, state);
        }
    };
    match result {
        Ok(point) => {
            if delivery.progress.resume.delivered(lane_of(hash), mark) {
                stats.samples_already_delivered.fetch_add(1, Relaxed);
                record(state);
                return true;
            }
            let tracked = state.is_some();
            let item = QueuedPoint {
                series,
                point,
                position: mark.position,
                delivery: state.map(|state| Delivery {
                    ack: PointAck::Histogram(ack.clone(), state),
                    index: mark.index,
                }),
            };
            stats.queued();
            match export.push_blocking(item) {
                Ok(lane) if tracked => delivery.pushed_to(lane),
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        Err(Skipped::Baseline) => {
            stats.samples_baseline.fetch_add(1, Relaxed);
            // The baseline is part of what a restart must not lose.
            record(state);
        }
        Err(Skipped::OutOfOrder) => {
            stats.samples_out_of_order.fetch_add(1, Relaxed);
        }
        Err(Skipped::InvalidHistogram(reason)) => {
            stats.histogram_dropped(reason);
            record(state);
            tracing::debug!(
                metric = %series.metric_type(),
                reason = reason.as_str(),
                "histogram point not sent: Cloud Monitoring would refuse it"
            );
        }
        Err(Skipped::HistogramPart) => {}
    }
    true
}

impl DeliveryState {
    /// A tracked point was queued in `lane`.
    fn pushed_to(&mut self, lane: usize) {
        self.pushed[lane] += 1;
        if !self.in_touched[lane] {
            self.in_touched[lane] = true;
            self.touched.push((lane, 0));
        }
    }

    /// The record ending at `position` is fully queued: tell the tracker.
    fn record_done(&mut self, position: WalPosition) {
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

    /// A series just resolved: give it its delivery state, continuing what a previous run saved.
    fn restore(&mut self, series_ref: u64, entry: &mut SeriesEntry) {
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

/// Resolves `entry`. While Prometheus cannot answer (unreachable, not ready, or listing no
/// targets yet after a restart) the reader waits and asks again rather than dropping samples:
/// the WAL on disk is the buffer. `stop` (set at shutdown) ends the wait.
fn resolve_entry<S: SeriesSources>(
    resolver: &Resolver<S>,
    runtime: &Handle,
    stats: &Stats,
    entry: &mut SeriesEntry,
    stop: Option<&AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    let outcome = loop {
        let labels = entry.labels.to_labels();
        let outcome = runtime.block_on(resolver.resolve(&labels));
        let transient = match &outcome {
            Err(err) => {
                if !warned {
                    tracing::warn!(
                        series = %display_labels(&labels),
                        error = %err,
                        "looking up a series' target or metadata failed; reading pauses until Prometheus answers"
                    );
                    warned = true;
                }
                true
            }
            Ok(_) => false,
        };
        let stopping = stop.is_some_and(|s| s.load(Relaxed));
        if !transient || stopping {
            break outcome;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    let now = Instant::now();
    match outcome {
        Ok(Resolution::Resolved(series)) => {
            entry.state = SeriesState::Resolved {
                series,
                counter: CounterState::default(),
            };
        }
        Ok(Resolution::Dropped(reason)) => {
            if entry.mark_unresolved(Some(reason), now) {
                count_dropped(stats, reason, entry);
            }
        }
        Err(err) => {
            // Only when shutting down.
            entry.mark_unresolved(None, now);
            tracing::debug!(error = %err, "series left unresolved at shutdown");
        }
    }
}

/// Counts a series not exported for `reason` (once per series and reason) by reason and metric
/// name, and logs it if it is one of the first few examples of the reason.
fn count_dropped(stats: &Stats, reason: DropReason, entry: &SeriesEntry) {
    let name = entry.labels.get("__name__").unwrap_or("");
    stats.series_dropped_metric(reason, name);
    let shown = display_labels(&entry.labels.to_labels());
    stats.remember_dropped_example(reason, shown.clone());
    let n = stats.series_dropped_count(reason);
    if n <= EXAMPLES_PER_REASON {
        tracing::info!(
            reason = reason.as_str(),
            series = %shown,
            example = n,
            retried = reason != DropReason::Filtered,
            "series not exported (only the first few examples per reason are logged)"
        );
    }
}

/// `name{a="b",…}` for log messages.
pub fn display_labels(labels: &[prometheus_wal::Label]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value.as_str())
        .unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}
