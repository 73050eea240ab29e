//! What the export stage counts: points queued and in the queues, requests and their
//! durations, points accepted, failed and dropped by reason, status codes, shards, and how long
//! the reader waited on full queues. Written by the router and the shards; it must never decide
//! anything.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::drops::ExportDrops;
use super::unix_millis;

/// Upper bounds, in seconds, of the request-duration histogram: the Go client's default
/// buckets, which the original's `sent_batch_duration_seconds` used.
pub const SEND_DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// gRPC status codes run from 0 (OK) to 16 (UNAUTHENTICATED).
pub const GRPC_CODES: usize = 17;

/// The export stage's counters.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Points handed to the export queues.
    pub samples_produced: AtomicU64,
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
    pub export_drops: ExportDrops,
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
}

impl ExportStats {
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

    /// Points given up.
    pub fn points_failed(&self, n: u64) {
        self.points_failed.fetch_add(n, Relaxed);
    }

    /// A request is sent again.
    pub fn send_retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
}
