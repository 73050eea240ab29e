//! The reader's output: converting resolved samples and histogram runs into points, queueing
//! them on their shards, and recording each tracked point's delivery identity. Distribution
//! points (classic and native histograms) are tracked under their output series. It must never
//! read the WAL or resolve series beyond asking the resolver for one that is due.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;

use ahash::AHashMap;
use std::time::Instant;

use prometheus_wal::WalPosition;
use prometheus_wal::record::{RefExemplar, RefSample};
use tokio::runtime::Handle;

use super::convert::{Converter, Skipped};
use super::delivery::Bookkeeping;
use super::exemplars;
use super::histogram::{HistogramRun, RunCollector};
use super::lookup::{count_dropped, resolve_entry};
use super::resolve::{HistogramPart, Resolver, SeriesSources};
use super::series::{SeriesEntry, SeriesState};
use crate::export::{Delivery, ExportClosed, ExportHandle, QueuedPoint};
use crate::model::{Point, SharedPrototype};
use crate::progress::{Mark, PointAck, SavedHistogramState};
use crate::stats::{DropReason, ExemplarDrop, ReaderStats, SampleSkip};

/// Where converted points go, and what is recorded about them.
pub(super) struct Output {
    pub(super) converter: Converter,
    pub(super) export: ExportHandle,
    pub(super) stats: Arc<ReaderStats>,
    pub(super) delivery: Bookkeeping,
    /// Histogram samples gathered until their run ends.
    pub(super) runs: RunCollector,
    /// Index in its record of the last sample added to the open histogram run.
    pub(super) run_index: usize,
    /// Distribution points of the current commit, held until its exemplars are read, each with
    /// whether it is tracked for delivery.
    pub(super) held: Vec<(QueuedPoint, bool)>,
    /// Records that ended while points were held: announced once those are queued.
    pub(super) deferred: Vec<WalPosition>,
    /// Exemplars read before their point (Prometheus up to 2.4x writes a commit's exemplars
    /// before its histograms), by output series, until the commit ends.
    pub(super) waiting: AHashMap<u64, Vec<RefExemplar>>,
}

/// Most distribution points held for exemplars; more are released without waiting.
const MAX_HELD: usize = 50_000;

impl Output {
    /// The record ending at `position` is done: announced to the delivery tracker now, or after
    /// the held points when there are some (so the watermark never passes a held point).
    pub(super) fn record_done(&mut self, position: WalPosition) {
        if self.held.is_empty() && self.deferred.is_empty() {
            self.delivery.record_done(position);
        } else {
            self.deferred.push(position);
        }
    }

    /// Queues the held distribution points and announces the records that waited for them.
    pub(super) fn release(&mut self) -> Result<(), ExportClosed> {
        let mut held = std::mem::take(&mut self.held);
        for (item, tracked) in held.drain(..) {
            let lane = self.export.push_blocking(item)?;
            if tracked {
                self.delivery.pushed_to(lane);
            }
        }
        self.held = held;
        self.export.flush_blocking()?;
        for position in self.deferred.drain(..) {
            self.delivery.record_done(position);
        }
        Ok(())
    }

    /// Attaches a record's exemplars to the held points: each `(series, exemplar)` names the
    /// output series hash of the exemplar's series, or why it has none. An exemplar no held
    /// point covers waits for its point until the commit ends ([`Output::commit_ends`]).
    pub(super) fn attach_exemplars<'a>(
        &mut self,
        exemplars: impl Iterator<Item = (Result<u64, ExemplarDrop>, &'a RefExemplar)>,
    ) {
        let mut by_series: AHashMap<u64, Vec<usize>> = AHashMap::new();
        for (i, (item, _)) in self.held.iter().enumerate() {
            by_series.entry(item.series.hash).or_default().push(i);
        }
        for (series, e) in exemplars {
            let hash = match series {
                Ok(hash) => hash,
                Err(reason) => {
                    self.stats.exemplar_dropped(reason);
                    continue;
                }
            };
            // The earliest held point of the series that covers the exemplar's time.
            let at = by_series.get(&hash).and_then(|points| {
                points
                    .iter()
                    .copied()
                    .filter(|i| exemplars::covers(&self.held[*i].0.point, e.t))
                    .min_by_key(|i| self.held[*i].0.point.end_ms)
            });
            match at {
                Some(at) => {
                    let outcome =
                        exemplars::attach(&mut self.held[at].0.point, e.v, e.t, &e.labels);
                    self.count_exemplar(outcome);
                }
                None => self.waiting.entry(hash).or_default().push(e.clone()),
            }
        }
    }

    /// Attaches the waiting exemplars of `point`'s series that it covers.
    fn attach_waiting(&mut self, hash: u64, point: &mut Point) {
        let Some(waiting) = self.waiting.get_mut(&hash) else {
            return;
        };
        let mut outcomes = Vec::new();
        waiting.retain(|e| {
            if !exemplars::covers(point, e.t) {
                return true;
            }
            outcomes.push(exemplars::attach(point, e.v, e.t, &e.labels));
            false
        });
        if waiting.is_empty() {
            self.waiting.remove(&hash);
        }
        for outcome in outcomes {
            self.count_exemplar(outcome);
        }
    }

    fn count_exemplar(&self, outcome: Result<(), ExemplarDrop>) {
        match outcome {
            Ok(()) => {
                self.stats.exemplars_attached.fetch_add(1, Relaxed);
            }
            Err(reason) => self.stats.exemplar_dropped(reason),
        }
    }

    /// A commit ended (the next one begins, or the WAL is quiet): its held points are queued,
    /// and exemplars still waiting have no point.
    pub(super) fn commit_ends(&mut self) -> Result<(), ExportClosed> {
        let left: usize = self.waiting.values().map(Vec::len).sum();
        for _ in 0..left {
            self.stats.exemplar_dropped(ExemplarDrop::NoPoint);
        }
        self.waiting.clear();
        self.release()
    }

    /// Whether points or exemplars wait for the end of a commit.
    pub(super) fn holding(&self) -> bool {
        !self.held.is_empty() || !self.waiting.is_empty()
    }

    /// Whether a sample at `t` of `entry` (series `series_ref`) goes on to conversion: its
    /// series is selected and a previous run did not deliver it. A series due for resolution is
    /// resolved first (`now` is then renewed). A sample that does not go on is counted.
    pub(super) fn admit<S: SeriesSources>(
        &mut self,
        entry: &mut SeriesEntry,
        series_ref: u64,
        t: i64,
        now: &mut Instant,
        (resolver, runtime, stop): (&Resolver<S>, &Handle, Option<&AtomicBool>),
    ) -> bool {
        if let Some(first) = entry.filtered_sample() {
            if first {
                count_dropped(&self.stats, DropReason::Filtered, entry);
            }
            self.stats.skipped(SampleSkip::Filtered, 1);
            return false;
        }
        self.resolve_if_due(entry, series_ref, now, (resolver, runtime, stop));
        if self.delivery.sample_delivered(entry, t) {
            self.stats.skipped(SampleSkip::AlreadyDelivered, 1);
            return false;
        }
        true
    }

    /// Resolves `entry` (series `series_ref`) if an attempt is due (`now` is then renewed).
    pub(super) fn resolve_if_due<S: SeriesSources>(
        &mut self,
        entry: &mut SeriesEntry,
        series_ref: u64,
        now: &mut Instant,
        (resolver, runtime, stop): (&Resolver<S>, &Handle, Option<&AtomicBool>),
    ) {
        if entry.needs_resolution(*now) {
            resolve_entry(resolver, runtime, &self.stats, entry, stop);
            if matches!(entry.state, SeriesState::Resolved { .. }) {
                self.delivery.restore(series_ref, entry);
            }
            *now = Instant::now();
        }
    }

    /// Adds a histogram part (sample `index` of the record at `position`, start time `st`) to
    /// the open run; a part of another histogram or timestamp ends the open run first.
    pub(super) fn add_to_run(
        &mut self,
        prototype: &SharedPrototype,
        part: HistogramPart,
        sample: &RefSample,
        st: i64,
        index: usize,
        position: WalPosition,
    ) -> Result<(), ExportClosed> {
        let finished = self.runs.add(prototype, part, (st, sample.t), sample.v);
        // A run's last sample is its identity for delivery marks.
        let finished_index = std::mem::replace(&mut self.run_index, index);
        match finished {
            Some(run) => self.queue_run(run, position, finished_index),
            None => Ok(()),
        }
    }

    /// Converts and queues the open histogram run, if any.
    pub(super) fn end_run(&mut self, position: WalPosition) -> Result<(), ExportClosed> {
        match self.runs.finish() {
            Some(run) => self.queue_run(run, position, self.run_index),
            None => Ok(()),
        }
    }

    /// Queues a finished run whose last sample is sample `index` of the record at `position`.
    fn queue_run(
        &mut self,
        run: HistogramRun,
        position: WalPosition,
        index: usize,
    ) -> Result<(), ExportClosed> {
        let mark = self.delivery.mark(position, index);
        self.queue_histogram(run, mark)
    }

    /// Converts a finished histogram run and queues its point.
    fn queue_histogram(&mut self, run: HistogramRun, mark: Mark) -> Result<(), ExportClosed> {
        let (series, t) = (run.prototype.clone(), run.t);
        self.queue_distribution(series, t, mark, false, |c| c.convert_histogram(run))
            .map(|_| ())
    }

    /// Converts a distribution point at `t` of `series` with `convert` and queues it.
    /// Distribution points are tracked for delivery under the output series (a classic
    /// histogram's parts are several WAL series): a restart continues from the saved state, so
    /// the first sample after it is not swallowed as a new baseline and the start time stays the
    /// same. A gauge's state is only the time of its last point. True when a point was queued.
    pub(super) fn queue_distribution(
        &mut self,
        series: SharedPrototype,
        t: i64,
        mark: Mark,
        gauge: bool,
        convert: impl FnOnce(&mut Converter) -> Result<Point, Skipped>,
    ) -> Result<bool, ExportClosed> {
        let hash = series.hash;
        if let Some(saved) = self.delivery.take_histogram(hash) {
            self.converter.restore_histogram(hash, &saved.state);
        }
        if self.delivery.histogram_delivered(hash, t) {
            // Delivered before the restart; the restored state already includes it.
            self.stats.skipped(SampleSkip::AlreadyDelivered, 1);
            return Ok(false);
        }
        let result = convert(&mut self.converter);
        let ack = self.delivery.tracker().histogram_ack(hash);
        let state = match gauge {
            true => Some(SavedHistogramState::Gauge),
            false => self.converter.histogram_state(hash),
        }
        .map(Box::new);
        let record = |state: Option<Box<_>>| {
            if let Some(state) = state {
                ack.delivered(t, state);
            }
        };
        match result {
            Ok(point) => {
                if self.delivery.acknowledged(hash, mark) {
                    self.stats.skipped(SampleSkip::AlreadyDelivered, 1);
                    record(state);
                    return Ok(false);
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
                // Held until the commit's exemplars are read.
                let mut item = item;
                self.attach_waiting(hash, &mut item.point);
                self.held.push((item, tracked));
                if self.held.len() >= MAX_HELD {
                    self.release()?;
                }
                return Ok(true);
            }
            Err(Skipped::Baseline) => {
                self.stats.skipped(SampleSkip::Baseline, 1);
                // The baseline is part of what a restart must not lose.
                record(state);
            }
            Err(Skipped::OutOfOrder) => self.stats.skipped(SampleSkip::OutOfOrder, 1),
            Err(Skipped::InvalidHistogram(reason)) => {
                self.stats.histogram_dropped(reason);
                record(state);
                tracing::debug!(
                    metric = %series.metric_type(),
                    reason = reason.as_str(),
                    "histogram point not sent: Cloud Monitoring would refuse it"
                );
            }
            Err(Skipped::HistogramPart) => {}
        }
        Ok(false)
    }
}
