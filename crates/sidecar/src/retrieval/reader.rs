//! The reader loop: WAL records in, queued points out. Runs on its own thread.
//!
//! Series records fill the series cache; each sample of a samples or native histogram record is
//! looked up by ref, resolved on first use ([`super::lookup`]), converted and queued on its shard
//! ([`super::output`]), blocking while the shard is full. What a previous run delivered is skipped ([`super::delivery`]). It must
//! never send or save anything itself. Shutdown is observed through the follower: it returns
//! `None` once the stop flag is set, and dropping the reader drops its export handle so the
//! shards can drain.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use prometheus_wal::record::{
    CounterResetHint, DecodeError, RecordType, RefExemplar, RefFloatHistogramSample,
    RefHistogramSample, RefMetadata, RefSample, RefSampleSt, RefSeries, decode_exemplars,
    decode_float_histogram_samples, decode_histogram_samples, decode_metadata, decode_samples,
    decode_samples_st, decode_series, is_stale_marker, record_type,
};
use prometheus_wal::{Follower, Next, RecordSource, WalError, WalPosition};
use tokio::runtime::Handle;

use super::aggregator::{CounterAggregator, ExportSchedule};
use super::convert::{Converter, Skipped};
use super::delivery::{Bookkeeping, ReaderProgress};
use super::gc::{GC_INTERVAL, SeriesGc};
use super::histogram::RunCollector;
use super::native::{HistogramValues, NativeRecordSample};
use super::output::Output;
use super::resolve::{Conversion, Resolver, SeriesSources};
use super::series::{SeriesCache, SeriesState};
use crate::export::{Delivery, ExportClosed, ExportHandle, QueuedPoint};
use crate::filter::SeriesFilter;
use crate::metadata::MetricType;
use crate::model::PointKind;
use crate::progress::PointAck;
use crate::stats::{ExemplarDrop, HistogramDrop, ReaderStats, SampleSkip};

/// How long the WAL must be quiet for the records read to be taken as a whole commit.
const COMMIT_QUIET: Duration = Duration::from_millis(200);

/// How many samples ahead the reader asks the CPU to load series prototypes.
const PREFETCH_AHEAD: usize = 8;

/// Reads WAL records, converts their samples and queues the points.
pub struct Reader<S> {
    cache: SeriesCache,
    resolver: Resolver<S>,
    runtime: Handle,
    series_buf: Vec<RefSeries>,
    samples_buf: Vec<RefSample>,
    /// Start times of the samples in `samples_buf` (empty for records without them).
    starts_buf: Vec<i64>,
    samples_st_buf: Vec<RefSampleSt>,
    metadata_buf: Vec<RefMetadata>,
    exemplars_buf: Vec<RefExemplar>,
    histograms_buf: Vec<RefHistogramSample>,
    float_histograms_buf: Vec<RefFloatHistogramSample>,
    /// Conversion and queueing of points.
    out: Output,
    /// Aggregated counters, if configured, and when their points are next due.
    aggregates: Option<(Arc<CounterAggregator>, ExportSchedule)>,
    /// Set at shutdown; the reader then stops waiting for Prometheus.
    stop: Option<Arc<AtomicBool>>,
    /// How often the series cache is checked against Prometheus's newest checkpoint.
    gc_interval: Duration,
    /// When the aggregated counters' state was last handed to the progress saver.
    aggregates_saved: Instant,
}

/// Least wall time between two snapshots of the aggregated counters' state (each walks the
/// series cache; while catching up, their points are due far more often than progress is
/// saved). Every snapshot is consistent: one that lags only makes a restart feed more samples
/// again, which they ignore.
const AGGREGATES_SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

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
        stats: Arc<ReaderStats>,
        runtime: Handle,
        progress: ReaderProgress,
    ) -> Reader<S> {
        Reader {
            cache: SeriesCache::default(),
            resolver,
            runtime,
            series_buf: Vec::new(),
            samples_buf: Vec::new(),
            starts_buf: Vec::new(),
            samples_st_buf: Vec::new(),
            metadata_buf: Vec::new(),
            exemplars_buf: Vec::new(),
            histograms_buf: Vec::new(),
            float_histograms_buf: Vec::new(),
            out: Output {
                converter: Converter::default(),
                export,
                stats,
                delivery: Bookkeeping::new(progress),
                runs: RunCollector::default(),
                run_index: 0,
                held: Vec::new(),
                deferred: Vec::new(),
                waiting: Default::default(),
            },
            aggregates: None,
            stop: None,
            gc_interval: GC_INTERVAL,
            aggregates_saved: Instant::now(),
        }
    }

    /// Checks for a new checkpoint to collect the series cache against every `interval`
    /// instead of every minute.
    pub fn with_gc_interval(mut self, interval: Duration) -> Reader<S> {
        self.gc_interval = interval;
        self
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
            let schedule = aggregator.take_schedule();
            self.aggregates = Some((aggregator, schedule));
        }
        self
    }

    /// Follows the WAL until stopped. Errors are those the follower cannot recover from.
    pub fn run(mut self, follower: &mut Follower) -> Result<ReaderExit, WalError> {
        let mut gc = SeriesGc::new(follower.dir().to_path_buf(), self.gc_interval);
        loop {
            // A collection that is due runs while the WAL is quiet, and before the next
            // record's samples are resolved.
            // While points or exemplars wait for the end of a commit, a WAL quiet for a moment
            // ends it (Prometheus writes a commit's records in one burst, but not at once).
            let deadline = if self.out.holding() {
                gc.next_check().min(Instant::now() + COMMIT_QUIET)
            } else {
                gc.next_check()
            };
            let record = match follower.next_record_before(deadline)? {
                Next::Record(record) => record,
                Next::Idle => {
                    if self.out.commit_ends().is_err() {
                        return Ok(self.export_closed());
                    }
                    self.collect_garbage(&mut gc, follower.segment());
                    continue;
                }
                Next::End => break,
            };
            let kind = record_type(record.data);
            // Series and float samples records begin a commit: the distribution points held for
            // the previous one's exemplars go now. (Exemplars come before a commit's histograms
            // up to Prometheus 2.4x, after them since.)
            if matches!(
                kind,
                RecordType::Series | RecordType::Samples | RecordType::SamplesV2
            ) && self.out.commit_ends().is_err()
            {
                return Ok(self.export_closed());
            }
            let segment = match record.source {
                RecordSource::Checkpoint(i) | RecordSource::Segment(i) => i,
            };
            self.collect_garbage(&mut gc, segment);
            let position = record.position;
            self.out.stats.wal_record_read(position);
            let delivered_before = self.out.delivery.begin_record(record.source, position);
            match kind {
                RecordType::Series => {
                    if let Err(e) = decode_series(record.data, &mut self.series_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    for s in self.series_buf.drain(..) {
                        self.cache.insert(s.series_ref, s.labels, segment);
                    }
                    let cached = self.cache.len() as u64;
                    self.out.stats.series_cached.store(cached, Relaxed);
                }
                RecordType::Samples | RecordType::SamplesV2 if delivered_before => {
                    // Delivered by a previous run; its series records above are still read, and
                    // its samples still feed the aggregated counters (which ignore what they
                    // counted before the restart).
                    self.out.delivery.skipped_delivered_record();
                    if self.aggregates.is_some() {
                        if let Err(e) = self.decode_float_samples(record.data) {
                            self.undecodable(&e, position);
                            continue;
                        }
                        self.observe_only();
                    }
                }
                RecordType::Samples | RecordType::SamplesV2 => {
                    self.out.delivery.converting_record();
                    if let Err(e) = self.decode_float_samples(record.data) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    let samples = std::mem::take(&mut self.samples_buf);
                    let starts = std::mem::take(&mut self.starts_buf);
                    let queued = self
                        .on_samples(&samples, &starts, position)
                        .and_then(|()| self.out.export.flush_blocking());
                    self.samples_buf = samples;
                    self.starts_buf = starts;
                    if queued.is_err() {
                        self.snapshot_aggregates();
                        return Ok(ReaderExit::ExportClosed);
                    }
                }
                RecordType::HistogramSamples
                | RecordType::HistogramSamplesV2
                | RecordType::CustomBucketsHistogramSamples
                | RecordType::FloatHistogramSamples
                | RecordType::FloatHistogramSamplesV2
                | RecordType::CustomBucketsFloatHistogramSamples
                    if delivered_before =>
                {
                    self.out.delivery.skipped_delivered_record();
                }
                RecordType::HistogramSamples
                | RecordType::HistogramSamplesV2
                | RecordType::CustomBucketsHistogramSamples => {
                    self.out.delivery.converting_record();
                    if let Err(e) = decode_histogram_samples(record.data, &mut self.histograms_buf)
                    {
                        self.undecodable(&e, position);
                        continue;
                    }
                    let samples = std::mem::take(&mut self.histograms_buf);
                    let queued = self.on_histograms(&samples, position);
                    self.histograms_buf = samples;
                    if queued.is_err() {
                        self.snapshot_aggregates();
                        return Ok(ReaderExit::ExportClosed);
                    }
                }
                RecordType::FloatHistogramSamples
                | RecordType::FloatHistogramSamplesV2
                | RecordType::CustomBucketsFloatHistogramSamples => {
                    self.out.delivery.converting_record();
                    if let Err(e) =
                        decode_float_histogram_samples(record.data, &mut self.float_histograms_buf)
                    {
                        self.undecodable(&e, position);
                        continue;
                    }
                    let samples = std::mem::take(&mut self.float_histograms_buf);
                    let queued = self.on_histograms(&samples, position);
                    self.float_histograms_buf = samples;
                    if queued.is_err() {
                        self.snapshot_aggregates();
                        return Ok(ReaderExit::ExportClosed);
                    }
                }
                RecordType::Exemplars => {
                    if let Err(e) = decode_exemplars(record.data, &mut self.exemplars_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    self.on_exemplars();
                    if self.out.release().is_err() {
                        return Ok(self.export_closed());
                    }
                }
                RecordType::Metadata => {
                    if let Err(e) = decode_metadata(record.data, &mut self.metadata_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    self.learn_metadata();
                }
                // Other record types are not converted yet; the WAL library decodes them.
                _ => {}
            }
            self.out.record_done(position);
        }
        if self.out.commit_ends().is_err() {
            return Ok(self.export_closed());
        }
        self.snapshot_aggregates();
        Ok(ReaderExit::Stopped)
    }

    /// Decodes a float samples record (V1, or V2 with start times) into `samples_buf` and
    /// `starts_buf`.
    fn decode_float_samples(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        self.starts_buf.clear();
        if record_type(data) != RecordType::SamplesV2 {
            return decode_samples(data, &mut self.samples_buf);
        }
        decode_samples_st(data, &mut self.samples_st_buf)?;
        self.samples_buf.clear();
        self.samples_buf
            .extend(self.samples_st_buf.iter().map(|s| s.sample));
        self.starts_buf
            .extend(self.samples_st_buf.iter().map(|s| s.st));
        Ok(())
    }

    /// The export stage shut down first: what is known of the aggregated counters is saved.
    fn export_closed(&self) -> ReaderExit {
        self.snapshot_aggregates();
        ReaderExit::ExportClosed
    }

    /// Attaches the exemplars in `exemplars_buf` to the held distribution points of their
    /// series.
    fn on_exemplars(&mut self) {
        let stats = &self.out.stats;
        stats
            .exemplars_read
            .fetch_add(self.exemplars_buf.len() as u64, Relaxed);
        // A new series' exemplars can come before its first sample (Prometheus 2.42 writes a
        // commit's exemplars before its histograms): it is resolved now, as its sample would
        // have it.
        let mut now = Instant::now();
        let resolving = (&self.resolver, &self.runtime, self.stop.as_deref());
        for e in &self.exemplars_buf {
            if let Some(entry) = self.cache.get_mut(e.series_ref) {
                self.out
                    .resolve_if_due(entry, e.series_ref, &mut now, resolving);
            }
        }
        let cache = &mut self.cache;
        let found = self.exemplars_buf.iter().map(|e| {
            let series = match cache.get_mut(e.series_ref).map(|entry| &entry.state) {
                None => Err(ExemplarDrop::UnknownSeries),
                Some(SeriesState::Resolved { series, .. }) => match series.conversion {
                    Conversion::Histogram(_) | Conversion::Native => Ok(series.prototype.hash),
                    Conversion::Gauge | Conversion::Cumulative => Err(ExemplarDrop::NotAHistogram),
                },
                Some(_) => Err(ExemplarDrop::SeriesNotExported),
            };
            (series, e)
        });
        self.out.attach_exemplars(found);
    }

    /// Hands the metric types of the metadata record in `metadata_buf` to the resolver.
    fn learn_metadata(&mut self) {
        let stats = &self.out.stats;
        let n = self.metadata_buf.len() as u64;
        stats.wal_metadata_read.fetch_add(n, Relaxed);
        for m in self.metadata_buf.drain(..) {
            let Some(metric_type) = metric_type(m.metric_type) else {
                continue;
            };
            let Some(entry) = self.cache.get_mut(m.series_ref) else {
                continue;
            };
            if let (Some(name), Some(job)) = (entry.labels.get("__name__"), entry.labels.get("job"))
            {
                self.resolver.learn_metadata(job, name, metric_type);
            }
        }
    }

    /// Feeds the samples in `samples_buf` to the aggregated counters only.
    fn observe_only(&mut self) {
        let Some((aggregator, _)) = &self.aggregates else {
            return;
        };
        for sample in &self.samples_buf {
            if let Some(entry) = self.cache.get_mut(sample.series_ref)
                && let Some(tracker) = &mut entry.tracker
            {
                aggregator.observe(tracker, sample.t, sample.v);
            }
        }
    }

    /// Hands the aggregated counters' state to the next progress save.
    fn snapshot_aggregates(&self) {
        if let Some((aggregator, schedule)) = &self.aggregates {
            let state = aggregator.snapshot(schedule, self.cache.aggregate_inputs());
            self.out.delivery.tracker().aggregates().set(state);
        }
    }

    /// Drops the series Prometheus no longer has, if a check is due (the reader is in segment
    /// `reading`).
    fn collect_garbage(&mut self, gc: &mut SeriesGc, reading: u64) {
        let tracker = self.out.delivery.tracker();
        if gc.maybe_collect(&mut self.cache, tracker, Instant::now(), reading) > 0 {
            let cached = self.cache.len() as u64;
            self.out.stats.series_cached.store(cached, Relaxed);
        }
    }

    fn undecodable(&self, err: &dyn std::fmt::Display, position: WalPosition) {
        self.out.stats.records_undecodable.fetch_add(1, Relaxed);
        tracing::warn!(
            segment = position.segment,
            offset = position.offset,
            error = %err,
            "skipping a WAL record that cannot be decoded"
        );
    }

    /// Converts and queues one record's samples.
    /// `starts` holds the samples' start times (empty when the record has none).
    fn on_samples(
        &mut self,
        samples: &[RefSample],
        starts: &[i64],
        position: WalPosition,
    ) -> Result<(), ExportClosed> {
        let stats = &self.out.stats;
        stats.batches_processed.fetch_add(1, Relaxed);
        stats
            .samples_processed
            .fetch_add(samples.len() as u64, Relaxed);
        if let Some(newest) = samples.iter().map(|s| s.t).max() {
            stats.samples_read_until(newest);
        }
        let mut now = Instant::now();
        let mut newest = None;
        for (index, sample) in samples.iter().enumerate() {
            if let Some(ahead) = samples.get(index + PREFETCH_AHEAD) {
                self.cache.prefetch(ahead.series_ref);
            }
            if sample.v.is_nan() {
                // Stale markers and NaN values have no Cloud Monitoring representation.
                self.out.stats.skipped(SampleSkip::Nan, 1);
                continue;
            }
            newest = newest.max(Some(sample.t));
            let st = starts.get(index).copied().unwrap_or(0);
            self.on_sample(index, sample, st, position, &mut now)?;
        }
        // A record holds whole scrapes, so a run never continues in the next record.
        self.out.end_run(position)?;
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
                self.out.export.push_blocking(item)?;
            }
            if self.aggregates_saved.elapsed() >= AGGREGATES_SNAPSHOT_EVERY {
                self.aggregates_saved = Instant::now();
                self.snapshot_aggregates();
            }
        }
        Ok(())
    }

    /// Converts and queues sample `index` of the record at `position` (not a NaN), whose start
    /// time is `st` (0 when not known).
    fn on_sample(
        &mut self,
        index: usize,
        sample: &RefSample,
        st: i64,
        position: WalPosition,
        now: &mut Instant,
    ) -> Result<(), ExportClosed> {
        let out = &mut self.out;
        let Some(entry) = self.cache.get_mut(sample.series_ref) else {
            out.stats.skipped(SampleSkip::UnknownRef, 1);
            return Ok(());
        };
        if let (Some(tracker), Some((aggregator, _))) = (&mut entry.tracker, &self.aggregates) {
            aggregator.observe(tracker, sample.t, sample.v);
        }
        let resolving = (&self.resolver, &self.runtime, self.stop.as_deref());
        if !out.admit(entry, sample.series_ref, sample.t, now, resolving) {
            return Ok(());
        }
        let SeriesState::Resolved { series, counter } = &mut entry.state else {
            out.stats.skipped(SampleSkip::UnresolvedSeries, 1);
            return Ok(());
        };
        if let Conversion::Histogram(part) = series.conversion {
            return out.add_to_run(&series.prototype, part, sample, st, index, position);
        }
        // Any other sample ends a histogram's run: its parts must be adjacent.
        out.end_run(position)?;
        let hash = series.prototype.hash;
        match out
            .converter
            .convert_from(series, counter, st, sample.t, sample.v)
        {
            Ok(point) => {
                let mark = out.delivery.mark(position, index);
                if out.delivery.acknowledged(hash, mark) {
                    // Acknowledged before a restart: the counter state has moved on, the point
                    // is not sent again.
                    out.stats.skipped(SampleSkip::AlreadyDelivered, 1);
                    if let Some(ack) = entry.delivery {
                        let tracker = out.delivery.tracker();
                        tracker.series_delivered(ack, sample.t, counter.saved());
                    }
                    return Ok(());
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
                let lane = out.export.push_blocking(item)?;
                out.delivery.pushed_to(lane);
            }
            Err(Skipped::Baseline) => {
                out.stats.skipped(SampleSkip::Baseline, 1);
                // The baseline is part of what a restart must not lose.
                if let Some(ack) = entry.delivery {
                    let tracker = out.delivery.tracker();
                    tracker.series_delivered(ack, sample.t, counter.saved());
                }
            }
            Err(Skipped::OutOfOrder) => out.stats.skipped(SampleSkip::OutOfOrder, 1),
            // A plain sample in a native histogram's series.
            Err(Skipped::InvalidHistogram(reason)) => out.stats.histogram_dropped(reason),
            // Only histogram runs give this.
            Err(Skipped::HistogramPart) => {}
        }
        Ok(())
    }

    /// Converts and queues one record's native histograms (integer or float).
    fn on_histograms<H: NativeRecordSample>(
        &mut self,
        samples: &[H],
        position: WalPosition,
    ) -> Result<(), ExportClosed> {
        self.histogram_record_read(samples.iter().map(|s| s.t()), samples.len());
        let mut now = Instant::now();
        for (index, s) in samples.iter().enumerate() {
            let sample = NativeSample {
                series_ref: s.series_ref(),
                t: s.t(),
                st: s.st(),
                stale: is_stale_marker(s.sum()),
                hint: s.hint(),
            };
            self.on_native(index, sample, position, &mut now, || s.read())?;
        }
        self.out.export.flush_blocking()
    }

    /// Counts a histogram record of `n` samples at times `ts`.
    fn histogram_record_read(&self, ts: impl Iterator<Item = i64>, n: usize) {
        let stats = &self.out.stats;
        stats.batches_processed.fetch_add(1, Relaxed);
        stats.native_histograms_read.fetch_add(n as u64, Relaxed);
        if let Some(newest) = ts.max() {
            stats.samples_read_until(newest);
        }
    }

    /// Converts and queues native histogram sample `index` of the record at `position`, its
    /// values read by `read` once the series is known to be exported.
    fn on_native(
        &mut self,
        index: usize,
        sample: NativeSample,
        position: WalPosition,
        now: &mut Instant,
        read: impl FnOnce() -> Result<HistogramValues, HistogramDrop>,
    ) -> Result<(), ExportClosed> {
        let out = &mut self.out;
        if sample.stale {
            // A stale marker: the series ended; there is no point to send.
            out.stats.skipped(SampleSkip::Nan, 1);
            return Ok(());
        }
        let Some(entry) = self.cache.get_mut(sample.series_ref) else {
            out.stats.skipped(SampleSkip::UnknownRef, 1);
            return Ok(());
        };
        let resolving = (&self.resolver, &self.runtime, self.stop.as_deref());
        if !out.admit(entry, sample.series_ref, sample.t, now, resolving) {
            return Ok(());
        }
        let SeriesState::Resolved { series, .. } = &entry.state else {
            out.stats.skipped(SampleSkip::UnresolvedSeries, 1);
            return Ok(());
        };
        let values = match read() {
            Ok(values) => values,
            Err(reason) => {
                out.stats.histogram_dropped(reason);
                return Ok(());
            }
        };
        let mark = out.delivery.mark(position, index);
        let gauge = series.prototype.kind == PointKind::GaugeDistribution;
        let queued =
            out.queue_distribution(series.prototype.clone(), sample.t, mark, gauge, |c| {
                let times = (sample.st, sample.t);
                match values {
                    HistogramValues::Exponential(h) => {
                        c.convert_native(series, times, h, sample.hint)
                    }
                    HistogramValues::Custom(custom) => c.convert_custom(series, times, custom),
                }
            })?;
        if queued {
            out.stats.native_histogram_points.fetch_add(1, Relaxed);
        }
        Ok(())
    }
}

/// What the reader needs of a native histogram sample before reading its values.
struct NativeSample {
    series_ref: u64,
    t: i64,
    /// Start time (0 when not known).
    st: i64,
    stale: bool,
    hint: CounterResetHint,
}

/// The metadata type of a WAL metadata record's type byte (`None` for one no Prometheus defines).
fn metric_type(t: prometheus_wal::record::MetricType) -> Option<MetricType> {
    use prometheus_wal::record::MetricType as Wal;
    Some(match t {
        Wal::Unknown => MetricType::Unknown,
        Wal::Counter => MetricType::Counter,
        Wal::Gauge => MetricType::Gauge,
        Wal::Histogram => MetricType::Histogram,
        Wal::GaugeHistogram => MetricType::GaugeHistogram,
        Wal::Summary => MetricType::Summary,
        Wal::Info => MetricType::Info,
        Wal::Stateset => MetricType::StateSet,
        Wal::Other(_) => return None,
    })
}
