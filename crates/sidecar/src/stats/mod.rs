//! Counters of every stage, kept apart per stage: the reader's ([`ReaderStats`]), the export
//! stage's ([`ExportStats`]), the WAL lag measurements ([`LagStats`]), the follower's, and the
//! milestones readiness depends on. A stage is handed the parts it writes and, explicitly, the
//! parts it reads.
//!
//! Plain atomics, cheap enough for the per-sample path; the only locks guard the example names
//! of dropped series, taken when a series fails to resolve, never per sample. This module only
//! counts; it must never decide anything. `observe` renders the counts for `/metrics` and
//! `/statusz`, and a periodic log line (see [`Stats::log_summary`]) makes them visible in logs.

mod drops;
mod export;
mod reader;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

pub use drops::{ExportDrop, ExportDrops};
pub use export::{ExportStats, GRPC_CODES, SEND_DURATION_BUCKETS};
pub use reader::{
    DROPPED_EXAMPLES, DropReason, ExemplarDrop, HistogramDrop, MAX_DROPPED_METRIC_NAMES,
    OTHER_METRICS, ReaderStats, SampleSkip,
};

/// How far the reader is behind, as the lag monitor last measured it.
#[derive(Debug, Default)]
pub struct LagStats {
    /// Bytes of WAL segments not read yet.
    pub wal_lag_bytes: AtomicU64,
    /// Total bytes of WAL segments.
    pub wal_size_bytes: AtomicU64,
    /// How far the reader is behind in time, in milliseconds.
    pub wal_lag_ms: AtomicU64,
}

/// The milestones of start-up that readiness depends on.
#[derive(Debug, Default)]
pub struct Milestones {
    /// Who holds the WAL directory's lock while this process waits for it.
    lock_holder: std::sync::Mutex<Option<String>>,
    /// The WAL directory was opened.
    wal_open: AtomicBool,
    /// Prometheus answered `/-/ready` and reading has begun.
    prometheus_ready: AtomicBool,
}

impl Milestones {
    /// This process waits for the WAL directory's lock, held by `holder`; `None` once it has it.
    pub fn waiting_for_lock(&self, holder: Option<String>) {
        if let Ok(mut h) = self.lock_holder.lock() {
            *h = holder;
        }
    }

    /// Who holds the WAL directory's lock while this process waits for it.
    pub fn lock_holder(&self) -> Option<String> {
        self.lock_holder.lock().ok().and_then(|h| h.clone())
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
}

/// Every stage's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// The reader's.
    pub reader: Arc<ReaderStats>,
    /// The export stage's.
    pub export: Arc<ExportStats>,
    /// The lag monitor's.
    pub lag: Arc<LagStats>,
    /// What the WAL follower skipped or recovered from (truncations, torn tails, corruption);
    /// shared with the follower through its options.
    pub wal_follow: Arc<prometheus_wal::FollowCounters>,
    /// Start-up milestones.
    pub milestones: Milestones,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Stats {
    /// Logs one line with the main counters.
    pub fn log_summary(&self) {
        let (reader, export) = (&self.reader, &self.export);
        let dropped: Vec<String> = DropReason::ALL
            .iter()
            .map(|r| (r, reader.series_dropped_count(*r)))
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        tracing::info!(
            samples_processed = reader.samples_processed.load(Relaxed),
            samples_produced = export.samples_produced.load(Relaxed),
            points_sent = export.points_sent.load(Relaxed),
            points_failed = export.points_failed.load(Relaxed),
            queue_length = export.queue_length.load(Relaxed),
            requests = export.requests.load(Relaxed),
            retries = export.retries.load(Relaxed),
            unresolved_series_samples = reader.skipped_count(SampleSkip::UnresolvedSeries),
            series_resolution_failures = %dropped.join(","),
            "progress"
        );
    }
}
