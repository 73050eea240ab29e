//! Counters every stage updates: what was read, produced, sent, dropped and why.
//!
//! Plain atomics, cheap enough for the per-sample path. This module only counts; it must never
//! decide anything. A periodic log line (see [`Stats::log_summary`]) makes the counts visible.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a series is not exported (the original's `dropped_series` reasons, plus ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No scrape target has the series' job and instance.
    TargetNotFound,
    /// No monitored resource type matches the target's labels.
    UnknownResource,
    /// More than 10 metric labels remain.
    TooManyLabels,
    /// Prometheus has no metadata (type) for the metric.
    MetadataNotFound,
    /// The metric's type is not converted (yet).
    UnsupportedType,
}

impl DropReason {
    /// All reasons, in display order.
    pub const ALL: [DropReason; 5] = [
        DropReason::TargetNotFound,
        DropReason::UnknownResource,
        DropReason::TooManyLabels,
        DropReason::MetadataNotFound,
        DropReason::UnsupportedType,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TargetNotFound => "target_not_found",
            DropReason::UnknownResource => "unknown_resource",
            DropReason::TooManyLabels => "too_many_labels",
            DropReason::MetadataNotFound => "metadata_not_found",
            DropReason::UnsupportedType => "unsupported_type",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples found in WAL sample records.
    pub samples_processed: AtomicU64,
    /// Sample records read.
    pub batches_processed: AtomicU64,
    /// Points handed to the export queues.
    pub samples_produced: AtomicU64,
    /// Samples not converted: NaN and stale markers.
    pub samples_nan: AtomicU64,
    /// Samples of series that are not (yet) resolved.
    pub samples_unresolved_series: AtomicU64,
    /// Samples whose series ref was never seen in a series record.
    pub samples_unknown_ref: AtomicU64,
    /// Samples dropped by the ordering guard (duplicate or older timestamp).
    pub samples_out_of_order: AtomicU64,
    /// Counter samples used as a baseline rather than sent.
    pub samples_baseline: AtomicU64,
    /// WAL records that could not be decoded.
    pub records_undecodable: AtomicU64,
    /// Series resolution attempts that failed, by reason.
    series_dropped: [AtomicU64; DropReason::ALL.len()],
    /// Points in the queues.
    pub queue_length: AtomicU64,
    /// Points the API accepted.
    pub points_sent: AtomicU64,
    /// Points dropped after the API refused them or the retry budget ran out.
    pub points_failed: AtomicU64,
    /// Requests sent (attempts).
    pub requests: AtomicU64,
    /// Requests retried after a transient failure.
    pub retries: AtomicU64,
    /// Total time spent in requests, in microseconds.
    pub send_micros: AtomicU64,
}

impl Stats {
    /// Counts a failed series resolution.
    pub fn series_dropped(&self, reason: DropReason) {
        self.series_dropped[reason.index()].fetch_add(1, Relaxed);
    }

    /// Failed series resolutions for `reason` so far.
    pub fn series_dropped_count(&self, reason: DropReason) -> u64 {
        self.series_dropped[reason.index()].load(Relaxed)
    }

    /// A point entered a queue.
    pub fn queued(&self) {
        self.samples_produced.fetch_add(1, Relaxed);
        self.queue_length.fetch_add(1, Relaxed);
    }

    /// A shard took a point from its queue.
    pub fn queue_taken(&self) {
        self.queue_length.fetch_sub(1, Relaxed);
    }

    /// Records one request attempt's duration.
    pub fn observe_send(&self, took: Duration) {
        self.requests.fetch_add(1, Relaxed);
        self.send_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Points accepted by the API.
    pub fn points_sent(&self, n: u64) {
        self.points_sent.fetch_add(n, Relaxed);
    }

    /// Points given up.
    pub fn points_failed(&self, n: u64) {
        self.points_failed.fetch_add(n, Relaxed);
    }

    /// A request is sent again.
    pub fn send_retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// Logs one line with the main counters.
    pub fn log_summary(&self) {
        let dropped: Vec<String> = DropReason::ALL
            .iter()
            .map(|r| (r, self.series_dropped_count(*r)))
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        tracing::info!(
            samples_processed = self.samples_processed.load(Relaxed),
            samples_produced = self.samples_produced.load(Relaxed),
            points_sent = self.points_sent.load(Relaxed),
            points_failed = self.points_failed.load(Relaxed),
            queue_length = self.queue_length.load(Relaxed),
            requests = self.requests.load(Relaxed),
            retries = self.retries.load(Relaxed),
            unresolved_series_samples = self.samples_unresolved_series.load(Relaxed),
            series_resolution_failures = %dropped.join(","),
            "progress"
        );
    }
}
