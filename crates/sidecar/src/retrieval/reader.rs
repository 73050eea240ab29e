//! The reader loop: WAL records in, queued points out. Runs on its own thread.
//!
//! Series records fill the series cache; each sample of a samples record is looked up by ref,
//! resolved on first use (blocking on the async Prometheus lookups, which is allowed because this
//! is not a runtime thread), converted and queued on its shard, blocking while the shard is full.
//! Shutdown is observed through the follower: it returns `None` once the stop flag is set, and
//! dropping the reader drops its export handle so the shards can drain.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use prometheus_wal::record::{
    RecordType, RefSample, RefSeries, decode_samples, decode_series, record_type,
};
use prometheus_wal::{Follower, RecordSource, WalError, WalPosition};
use tokio::runtime::Handle;

use super::convert::{Converter, CounterState, Skipped};
use super::resolve::{Resolution, Resolver, SeriesSources};
use super::series::{SeriesCache, SeriesEntry, SeriesState};
use crate::export::{ExportHandle, QueuedPoint};
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
    ) -> Reader<S> {
        Reader {
            cache: SeriesCache::default(),
            resolver,
            converter: Converter::default(),
            export,
            stats,
            runtime,
            series_buf: Vec::new(),
            samples_buf: Vec::new(),
        }
    }

    /// Follows the WAL until stopped. Errors are those the follower cannot recover from.
    pub fn run(mut self, follower: &mut Follower) -> Result<ReaderExit, WalError> {
        while let Some(record) = follower.next_record()? {
            let segment = match record.source {
                RecordSource::Checkpoint(i) | RecordSource::Segment(i) => i,
            };
            let position = record.position;
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
                RecordType::Samples => {
                    if let Err(e) = decode_samples(record.data, &mut self.samples_buf) {
                        self.undecodable(&e, position);
                        continue;
                    }
                    let samples = std::mem::take(&mut self.samples_buf);
                    let ok = self.on_samples(&samples, position);
                    self.samples_buf = samples;
                    if !ok {
                        return Ok(ReaderExit::ExportClosed);
                    }
                }
                // Other record types are not converted yet; the WAL library decodes them.
                _ => {}
            }
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
        let mut now = Instant::now();
        for sample in samples {
            if sample.v.is_nan() {
                // Stale markers and NaN values have no Cloud Monitoring representation.
                self.stats.samples_nan.fetch_add(1, Relaxed);
                continue;
            }
            let Some(entry) = self.cache.get_mut(sample.series_ref) else {
                self.stats.samples_unknown_ref.fetch_add(1, Relaxed);
                continue;
            };
            if entry.needs_resolution(now) {
                resolve_entry(&self.resolver, &self.runtime, &self.stats, entry, now);
                now = Instant::now();
            }
            let SeriesState::Resolved { series, counter } = &mut entry.state else {
                self.stats.samples_unresolved_series.fetch_add(1, Relaxed);
                continue;
            };
            match self.converter.convert(series, counter, sample.t, sample.v) {
                Ok(point) => {
                    let item = QueuedPoint {
                        series: series.prototype.clone(),
                        point,
                        position,
                    };
                    self.stats.queued();
                    if self.export.push_blocking(item).is_err() {
                        return false;
                    }
                }
                Err(Skipped::Baseline) => {
                    self.stats.samples_baseline.fetch_add(1, Relaxed);
                }
                Err(Skipped::OutOfOrder) => {
                    self.stats.samples_out_of_order.fetch_add(1, Relaxed);
                }
            }
        }
        true
    }
}

fn resolve_entry<S: SeriesSources>(
    resolver: &Resolver<S>,
    runtime: &Handle,
    stats: &Stats,
    entry: &mut SeriesEntry,
    now: Instant,
) {
    match runtime.block_on(resolver.resolve(&entry.labels)) {
        Ok(Resolution::Resolved(series)) => {
            entry.state = SeriesState::Resolved {
                series,
                counter: CounterState::default(),
            };
        }
        Ok(Resolution::Dropped(reason)) => {
            if entry.mark_unresolved(Some(reason), now) {
                stats.series_dropped(reason);
                log_dropped_example(stats, reason, entry);
            }
        }
        Err(err) => {
            entry.mark_unresolved(None, now);
            tracing::warn!(
                series = %display_labels(&entry.labels),
                error = %err,
                "looking up a series' target or metadata failed; will retry"
            );
        }
    }
}

fn log_dropped_example(stats: &Stats, reason: DropReason, entry: &SeriesEntry) {
    let n = stats.series_dropped_count(reason);
    if n <= EXAMPLES_PER_REASON {
        tracing::info!(
            reason = reason.as_str(),
            series = %display_labels(&entry.labels),
            example = n,
            "series not exported (retried later; only the first few examples per reason are logged)"
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
