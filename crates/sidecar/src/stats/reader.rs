//! What the reader counts: records and samples read, what became of each sample that was not
//! queued, series not exported and why (with examples), histogram points not sent, and where
//! in the WAL it is. Only the reader thread writes here; it must never decide anything.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use prometheus_wal::WalPosition;

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
    /// The metric type made of the prefix and the metric name is one Cloud Monitoring refuses
    /// (a recording rule's colon outside `prometheus.googleapis.com`).
    InvalidMetricName,
}

impl DropReason {
    /// All reasons, in display order.
    pub const ALL: [DropReason; 8] = [
        DropReason::TargetNotFound,
        DropReason::UnknownResource,
        DropReason::TooManyLabels,
        DropReason::MetadataNotFound,
        DropReason::UnsupportedType,
        DropReason::Filtered,
        DropReason::InvalidBucketBound,
        DropReason::InvalidMetricName,
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
            DropReason::InvalidMetricName => "invalid_metric_name",
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
    /// A native histogram whose spans do not match its buckets, or with a negative count.
    InvalidSpans,
    /// A native histogram schema Prometheus does not define.
    UnsupportedSchema,
    /// Bounds or moments beyond what a double holds (a bucket near the float range's ends).
    Unrepresentable,
    /// A native histogram sample in a series whose metadata is not a native histogram's, or a
    /// plain sample in a native histogram's series.
    KindMismatch,
}

impl HistogramDrop {
    /// All reasons, in display order.
    pub const ALL: [HistogramDrop; 9] = [
        HistogramDrop::MissingCount,
        HistogramDrop::NoFiniteBounds,
        HistogramDrop::DuplicateBounds,
        HistogramDrop::DecreasingBuckets,
        HistogramDrop::CountMismatch,
        HistogramDrop::InvalidSpans,
        HistogramDrop::UnsupportedSchema,
        HistogramDrop::Unrepresentable,
        HistogramDrop::KindMismatch,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HistogramDrop::MissingCount => "missing_count",
            HistogramDrop::NoFiniteBounds => "no_finite_bounds",
            HistogramDrop::DuplicateBounds => "duplicate_bounds",
            HistogramDrop::DecreasingBuckets => "decreasing_buckets",
            HistogramDrop::CountMismatch => "count_mismatch",
            HistogramDrop::InvalidSpans => "invalid_spans",
            HistogramDrop::UnsupportedSchema => "unsupported_schema",
            HistogramDrop::Unrepresentable => "unrepresentable",
            HistogramDrop::KindMismatch => "kind_mismatch",
        }
    }
}

/// Why an exemplar read from the WAL was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExemplarDrop {
    /// Its series ref was never seen in a series record.
    UnknownSeries,
    /// Its series is not exported (filtered, dropped, or not resolved yet).
    SeriesNotExported,
    /// Its series is not a histogram's: only distribution points hold exemplars.
    NotAHistogram,
    /// No point of its series covers its time (the sample was a baseline, delivered before,
    /// or not sent).
    NoPoint,
    /// Its point already has a newer exemplar in the same bucket, or one of the same value.
    BucketTaken,
    /// Its value is not a finite number.
    InvalidValue,
}

impl ExemplarDrop {
    /// All reasons, in display order.
    pub const ALL: [ExemplarDrop; 6] = [
        ExemplarDrop::UnknownSeries,
        ExemplarDrop::SeriesNotExported,
        ExemplarDrop::NotAHistogram,
        ExemplarDrop::NoPoint,
        ExemplarDrop::BucketTaken,
        ExemplarDrop::InvalidValue,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExemplarDrop::UnknownSeries => "unknown_series",
            ExemplarDrop::SeriesNotExported => "series_not_exported",
            ExemplarDrop::NotAHistogram => "not_a_histogram",
            ExemplarDrop::NoPoint => "no_point",
            ExemplarDrop::BucketTaken => "bucket_taken",
            ExemplarDrop::InvalidValue => "invalid_value",
        }
    }
}

/// Why a sample read from the WAL was not queued (other than its series being dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleSkip {
    /// NaN values and stale markers: Cloud Monitoring has no representation for them.
    Nan,
    /// Its series is not selected by `--include`/`--filter`.
    Filtered,
    /// A previous run delivered it, or it is older than the start position.
    AlreadyDelivered,
    /// Its series ref was never seen in a series record.
    UnknownRef,
    /// Its series is not (yet) resolved.
    UnresolvedSeries,
    /// The ordering guard refused it (a duplicate or older timestamp).
    OutOfOrder,
    /// A counter's first sample: the baseline later points are measured from.
    Baseline,
}

impl SampleSkip {
    /// Every reason, in display order.
    pub const ALL: [SampleSkip; 7] = [
        SampleSkip::Nan,
        SampleSkip::Filtered,
        SampleSkip::AlreadyDelivered,
        SampleSkip::UnknownRef,
        SampleSkip::UnresolvedSeries,
        SampleSkip::OutOfOrder,
        SampleSkip::Baseline,
    ];
}

/// Most distinct metric names tracked for dropped series; later names are counted under
/// [`OTHER_METRICS`] so a flood of names cannot grow memory without bound.
pub const MAX_DROPPED_METRIC_NAMES: usize = 10_000;

/// The name dropped series are counted under once [`MAX_DROPPED_METRIC_NAMES`] is reached.
pub const OTHER_METRICS: &str = "_other_";

/// The reader's counters.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Samples found in WAL sample records.
    pub samples_processed: AtomicU64,
    /// Sample records read.
    pub batches_processed: AtomicU64,
    /// Native histogram samples found in WAL histogram records (integer and float).
    pub native_histograms_read: AtomicU64,
    /// Native histogram points queued for sending.
    pub native_histogram_points: AtomicU64,
    /// Exemplars found in WAL exemplar records.
    pub exemplars_read: AtomicU64,
    /// Exemplars attached to a queued distribution point.
    pub exemplars_attached: AtomicU64,
    /// Exemplars not sent, by reason.
    exemplars_dropped: [AtomicU64; ExemplarDrop::ALL.len()],
    /// Entries of WAL metadata records read (Prometheus' `metadata-wal-records` feature).
    pub wal_metadata_read: AtomicU64,
    /// Samples not queued, by reason.
    skipped: [AtomicU64; SampleSkip::ALL.len()],
    /// WAL records that could not be decoded.
    pub records_undecodable: AtomicU64,
    /// Series in the reader's cache now (those Prometheus still has, as of its last checkpoint
    /// the cache was collected against, and any newer ones).
    pub series_cached: AtomicU64,
    /// Series not exported, by reason; a series is counted once per reason it gets, not per
    /// attempt.
    series_dropped: [AtomicU64; DropReason::ALL.len()],
    /// The same, by reason and metric name (`__name__`).
    series_dropped_by_metric: Mutex<HashMap<(DropReason, String), u64>>,
    /// Histogram points not sent because the API would refuse them, by reason.
    histograms_dropped: [AtomicU64; HistogramDrop::ALL.len()],
    /// Recent example series per drop reason, newest last.
    dropped_examples: Mutex<[VecDeque<String>; DropReason::ALL.len()]>,
    /// Segment of the last WAL record the reader took.
    wal_segment: AtomicU64,
    /// Offset just after that record in its segment.
    wal_offset: AtomicU64,
    /// Bytes of WAL read (record ends' progress through the segments).
    wal_bytes_read: AtomicU64,
    /// Newest sample timestamp read from the WAL, in milliseconds (0: none yet).
    newest_sample_ms: AtomicI64,
}

impl ReaderStats {
    /// Counts `n` samples not queued for `reason`.
    pub fn skipped(&self, reason: SampleSkip, n: u64) {
        self.skipped[reason as usize].fetch_add(n, Relaxed);
    }

    /// Samples not queued for `reason` so far.
    pub fn skipped_count(&self, reason: SampleSkip) -> u64 {
        self.skipped[reason as usize].load(Relaxed)
    }

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

    /// Counts an exemplar that was not sent.
    pub fn exemplar_dropped(&self, reason: ExemplarDrop) {
        self.exemplars_dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Exemplars not sent for `reason` so far.
    pub fn exemplars_dropped_count(&self, reason: ExemplarDrop) -> u64 {
        self.exemplars_dropped[reason as usize].load(Relaxed)
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

    /// Bytes of WAL read so far: what tells the export stage whether the reader is idle and
    /// the autoscaler how fast it reads.
    pub fn wal_bytes_read(&self) -> u64 {
        self.wal_bytes_read.load(Relaxed)
    }
}
