//! Counters every stage updates: what was read, produced, sent, dropped and why, where the
//! reader is in the WAL, and the few milestones readiness depends on.
//!
//! Plain atomics, cheap enough for the per-sample path; the only locks guard the example names
//! of dropped series, taken when a series fails to resolve, never per sample. This module only
//! counts; it must never decide anything. `observe` renders the counts for `/metrics` and
//! `/statusz`, and a periodic log line (see [`Stats::log_summary`]) makes them visible in logs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_wal::WalPosition;

/// Upper bounds, in seconds, of the request-duration histogram: the Go client's default
/// buckets, which the original's `sent_batch_duration_seconds` used.
pub const SEND_DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// gRPC status codes run from 0 (OK) to 16 (UNAUTHENTICATED).
pub const GRPC_CODES: usize = 17;

/// Example series names kept per drop reason (the most recent ones).
pub const DROPPED_EXAMPLES: usize = 5;

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
    /// Not selected by `--include`/`--filter`.
    Filtered,
    /// A histogram bucket whose `le` label is not a number.
    InvalidBucketBound,
}

impl DropReason {
    /// All reasons, in display order.
    pub const ALL: [DropReason; 7] = [
        DropReason::TargetNotFound,
        DropReason::UnknownResource,
        DropReason::TooManyLabels,
        DropReason::MetadataNotFound,
        DropReason::UnsupportedType,
        DropReason::Filtered,
        DropReason::InvalidBucketBound,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TargetNotFound => "target_not_found",
            DropReason::UnknownResource => "unknown_resource",
            DropReason::TooManyLabels => "too_many_labels",
            DropReason::MetadataNotFound => "metadata_not_found",
            DropReason::UnsupportedType => "unsupported_type",
            DropReason::Filtered => "filtered",
            DropReason::InvalidBucketBound => "invalid_bucket_bound",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why one histogram point was not sent: Cloud Monitoring would refuse the distribution (and,
/// with it, the whole request), so it is dropped alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistogramDrop {
    /// No `_count` sample came with the buckets.
    MissingCount,
    /// No bucket with a finite `le` bound (only `+Inf`, or no buckets at all).
    NoFiniteBounds,
    /// Two buckets with the same bound (`le="1"` and `le="1.0"`).
    DuplicateBounds,
    /// A bucket's cumulative count is below the previous bucket's.
    DecreasingBuckets,
    /// The bucket counts do not add up to the `_count` value.
    CountMismatch,
}

impl HistogramDrop {
    /// All reasons, in display order.
    pub const ALL: [HistogramDrop; 5] = [
        HistogramDrop::MissingCount,
        HistogramDrop::NoFiniteBounds,
        HistogramDrop::DuplicateBounds,
        HistogramDrop::DecreasingBuckets,
        HistogramDrop::CountMismatch,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HistogramDrop::MissingCount => "missing_count",
            HistogramDrop::NoFiniteBounds => "no_finite_bounds",
            HistogramDrop::DuplicateBounds => "duplicate_bounds",
            HistogramDrop::DecreasingBuckets => "decreasing_buckets",
            HistogramDrop::CountMismatch => "count_mismatch",
        }
    }
}

/// Most distinct metric names tracked for dropped series; later names are counted under
/// [`OTHER_METRICS`] so a flood of names cannot grow memory without bound.
pub const MAX_DROPPED_METRIC_NAMES: usize = 10_000;

/// The name dropped series are counted under once [`MAX_DROPPED_METRIC_NAMES`] is reached.
pub const OTHER_METRICS: &str = "_other_";

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
    /// Samples a previous run already delivered, or older than the start position.
    pub samples_already_delivered: AtomicU64,
    /// Samples of series not selected by `--include`/`--filter`.
    pub samples_filtered: AtomicU64,
    /// WAL records that could not be decoded.
    pub records_undecodable: AtomicU64,
    /// What the WAL follower skipped or recovered from (truncations, torn tails, corruption);
    /// shared with the follower through its options.
    pub wal_follow: std::sync::Arc<prometheus_wal::FollowCounters>,
    /// Series not exported, by reason; a series is counted once per reason it gets, not per
    /// attempt.
    series_dropped: [AtomicU64; DropReason::ALL.len()],
    /// The same, by reason and metric name (`__name__`).
    series_dropped_by_metric: Mutex<HashMap<(DropReason, String), u64>>,
    /// Histogram points not sent because the API would refuse them, by reason.
    histograms_dropped: [AtomicU64; HistogramDrop::ALL.len()],
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
    /// Points the export stage gave up, by reason (local validation, retry budget, refusals).
    pub export_drops: crate::export::drops::ExportDrops,
    /// Total time spent in requests, in microseconds.
    pub send_micros: AtomicU64,
    /// Points in all request attempts (with `send_micros`, the cost of sending a point).
    pub points_attempted: AtomicU64,
    /// Shards sending now.
    pub shards: AtomicU64,
    /// Time the reader spent waiting on full shard queues, in microseconds.
    pub reader_blocked_micros: AtomicU64,
    /// Requests per duration bucket ([`SEND_DURATION_BUCKETS`], then +Inf); not cumulative.
    send_duration_buckets: [AtomicU64; SEND_DURATION_BUCKETS.len() + 1],
    /// Points by the gRPC status the API gave them (the original's `point_count{status}`).
    point_status: [AtomicU64; GRPC_CODES],
    /// When the API last accepted points, in milliseconds since the Unix epoch (0: never).
    last_success_unix_ms: AtomicU64,
    /// Segment of the last WAL record the reader took.
    wal_segment: AtomicU64,
    /// Offset just after that record in its segment.
    wal_offset: AtomicU64,
    /// Bytes of WAL read (record ends' progress through the segments).
    pub wal_bytes_read: AtomicU64,
    /// Newest sample timestamp read from the WAL, in milliseconds (0: none yet).
    newest_sample_ms: AtomicI64,
    /// Bytes of WAL segments not read yet, as last measured.
    pub wal_lag_bytes: AtomicU64,
    /// Total bytes of WAL segments, as last measured.
    pub wal_size_bytes: AtomicU64,
    /// How far the reader is behind in time, in milliseconds, as last measured.
    pub wal_lag_ms: AtomicU64,
    /// The WAL directory was opened.
    wal_open: AtomicBool,
    /// Prometheus answered `/-/ready` and reading has begun.
    prometheus_ready: AtomicBool,
    /// Recent example series per drop reason, newest last.
    dropped_examples: Mutex<[VecDeque<String>; DropReason::ALL.len()]>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Stats {
    /// Counts a failed series resolution.
    pub fn series_dropped(&self, reason: DropReason) {
        self.series_dropped[reason.index()].fetch_add(1, Relaxed);
    }

    /// Series dropped for `reason` so far.
    pub fn series_dropped_count(&self, reason: DropReason) -> u64 {
        self.series_dropped[reason.index()].load(Relaxed)
    }

    /// Counts a series of metric `metric` not exported for `reason` (once per series and
    /// reason), by reason and by metric name.
    pub fn series_dropped_metric(&self, reason: DropReason, metric: &str) {
        self.series_dropped(reason);
        let Ok(mut by_metric) = self.series_dropped_by_metric.lock() else {
            return;
        };
        if let Some(n) = by_metric.get_mut(&(reason, metric.to_string())) {
            *n += 1;
            return;
        }
        let name = if by_metric.len() < MAX_DROPPED_METRIC_NAMES {
            metric
        } else {
            OTHER_METRICS
        };
        *by_metric.entry((reason, name.to_string())).or_insert(0) += 1;
    }

    /// Dropped series by reason and metric name, sorted by reason then name.
    pub fn series_dropped_by_metric(&self) -> Vec<(DropReason, String, u64)> {
        let mut out: Vec<(DropReason, String, u64)> = self
            .series_dropped_by_metric
            .lock()
            .map(|m| m.iter().map(|((r, n), c)| (*r, n.clone(), *c)).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        out
    }

    /// Counts a histogram point that was not sent.
    pub fn histogram_dropped(&self, reason: HistogramDrop) {
        self.histograms_dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Histogram points not sent for `reason` so far.
    pub fn histograms_dropped_count(&self, reason: HistogramDrop) -> u64 {
        self.histograms_dropped[reason as usize].load(Relaxed)
    }

    /// The export stage now runs `shards` shards.
    pub fn set_shards(&self, shards: usize) {
        self.shards.store(shards as u64, Relaxed);
    }

    /// A point entered a queue.
    pub fn queued(&self) {
        self.samples_produced.fetch_add(1, Relaxed);
        self.queue_length.fetch_add(1, Relaxed);
    }

    /// A shard took `n` points from its queue.
    pub fn queue_taken(&self, n: u64) {
        self.queue_length.fetch_sub(n, Relaxed);
    }

    /// Records one request attempt's duration and the points it carried.
    pub fn observe_send(&self, took: Duration, points: u64) {
        self.requests.fetch_add(1, Relaxed);
        self.points_attempted.fetch_add(points, Relaxed);
        self.send_micros.fetch_add(took.as_micros() as u64, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = SEND_DURATION_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(SEND_DURATION_BUCKETS.len());
        self.send_duration_buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Requests per duration bucket, cumulative as Prometheus histograms are: one count per
    /// bound of [`SEND_DURATION_BUCKETS`], then the total (+Inf).
    pub fn send_duration_cumulative(&self) -> [u64; SEND_DURATION_BUCKETS.len() + 1] {
        let mut out = [0; SEND_DURATION_BUCKETS.len() + 1];
        let mut total = 0;
        for (slot, bucket) in out.iter_mut().zip(&self.send_duration_buckets) {
            total += bucket.load(Relaxed);
            *slot = total;
        }
        out
    }

    /// Points accepted by the API.
    pub fn points_sent(&self, n: u64) {
        self.points_sent.fetch_add(n, Relaxed);
        if n > 0 {
            self.last_success_unix_ms
                .fetch_max(unix_millis(SystemTime::now()), Relaxed);
        }
    }

    /// When the API last accepted points (`None`: never).
    pub fn last_success(&self) -> Option<SystemTime> {
        match self.last_success_unix_ms.load(Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// `n` points got gRPC status `code` from the API (0 for accepted points). Codes outside
    /// the gRPC range are counted as UNKNOWN (2).
    pub fn point_status(&self, code: i32, n: u64) {
        let index = usize::try_from(code)
            .ok()
            .filter(|c| *c < GRPC_CODES)
            .unwrap_or(2);
        self.point_status[index].fetch_add(n, Relaxed);
    }

    /// Points counted under each gRPC status code, indexed by code.
    pub fn point_status_counts(&self) -> [u64; GRPC_CODES] {
        std::array::from_fn(|i| self.point_status[i].load(Relaxed))
    }

    /// The reader took a WAL record ending at `position`.
    pub fn wal_record_read(&self, position: WalPosition) {
        // Only the reader thread calls this, so the previous position is its own.
        let (segment, offset) = (
            self.wal_segment.load(Relaxed),
            self.wal_offset.load(Relaxed),
        );
        let advanced = if position.segment == segment {
            position.offset.saturating_sub(offset)
        } else if position.segment > segment {
            position.offset
        } else {
            0
        };
        self.wal_bytes_read.fetch_add(advanced, Relaxed);
        self.wal_segment.store(position.segment, Relaxed);
        self.wal_offset.store(position.offset, Relaxed);
    }

    /// The reader read samples as new as `timestamp_ms`.
    pub fn samples_read_until(&self, timestamp_ms: i64) {
        self.newest_sample_ms.fetch_max(timestamp_ms, Relaxed);
    }

    /// Where the reader is in the WAL (the end of the last record it took).
    pub fn wal_position(&self) -> WalPosition {
        WalPosition {
            segment: self.wal_segment.load(Relaxed),
            offset: self.wal_offset.load(Relaxed),
        }
    }

    /// Newest sample timestamp read, in milliseconds since the epoch (`None` before the first).
    pub fn newest_sample_ms(&self) -> Option<i64> {
        Some(self.newest_sample_ms.load(Relaxed)).filter(|t| *t != 0)
    }

    /// The WAL directory is open.
    pub fn mark_wal_open(&self) {
        self.wal_open.store(true, Relaxed);
    }

    /// Whether the WAL directory is open.
    pub fn wal_open(&self) -> bool {
        self.wal_open.load(Relaxed)
    }

    /// Prometheus answered `/-/ready`; the reader starts.
    pub fn mark_prometheus_ready(&self) {
        self.prometheus_ready.store(true, Relaxed);
    }

    /// Whether Prometheus was found ready and reading has begun.
    pub fn prometheus_ready(&self) -> bool {
        self.prometheus_ready.load(Relaxed)
    }

    /// Keeps `series` (its display name) as a recent example of `reason`. Called when a series
    /// fails to resolve, not per sample.
    pub fn remember_dropped_example(&self, reason: DropReason, series: String) {
        let Ok(mut examples) = self.dropped_examples.lock() else {
            return;
        };
        let list = &mut examples[reason.index()];
        list.retain(|s| *s != series);
        if list.len() >= DROPPED_EXAMPLES {
            list.pop_front();
        }
        list.push_back(series);
    }

    /// Recent example series of `reason`, oldest first.
    pub fn dropped_examples(&self, reason: DropReason) -> Vec<String> {
        self.dropped_examples
            .lock()
            .map(|e| e[reason.index()].iter().cloned().collect())
            .unwrap_or_default()
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
