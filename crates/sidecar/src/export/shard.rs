//! Shards: the queues between the WAL reader and the API, and the batching, checking, retrying
//! and splitting of sends.
//!
//! Each series is assigned to one shard by its hash, and each shard has one request in flight,
//! so a series' points reach the API in WAL order. Queues are bounded: when the API is slow the
//! reader blocks on a full queue and the WAL on disk is the buffer; nothing is dropped because a
//! queue was full. A batch holds at most `max_batch` distinct series (the API's limit is 200); a
//! second point of a series already in the batch closes the batch first, so a request never
//! holds two points of one series. A batch goes out when full, on such a repeat, or when its
//! deadline passes. Shutdown is observed when every sender is dropped: the shard drains its queue,
//! sends the last batch and ends.
//!
//! A shard never stalls on one batch: points the API would refuse are dropped alone before
//! sending ([`super::validate`]); transient failures are retried with jittered exponential
//! backoff only within the retry budget, and points that grew too old meanwhile are dropped; a
//! partial failure (the API's `CreateTimeSeriesSummary`) drops only the points it names; a
//! request refused as a whole with INVALID_ARGUMENT is split in halves until the bad points are
//! isolated, so the good ones still arrive. Every point taken from the queue ends accepted or
//! counted under one reason of [`ExportDrop`].

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashSet;
use bytes::Bytes;
use prometheus_wal::WalPosition;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;

use super::client::{SendError, TimeSeriesSink};
use super::drops::ExportDrop;
use super::encode::{Distribution, Point, PointValue, RequestBuilder, SharedPrototype};
use super::lanes::{lane_of, lanes_of_shard};
use super::validate::{self, TimeLimits};
use crate::progress::{DeliveryTracker, Mark, PointAck};
use crate::stats::Stats;

/// One point waiting to be sent, with the WAL position it was read at.
#[derive(Debug, Clone)]
pub struct QueuedPoint {
    /// The series the point belongs to.
    pub series: SharedPrototype,
    /// The point.
    pub point: Point,
    /// Where in the WAL the sample was read.
    pub position: WalPosition,
    /// Delivery tracking of points read from the WAL (`None` for points made by the sidecar).
    pub delivery: Option<Delivery>,
}

impl QueuedPoint {
    /// Bytes the point holds while queued: its own, and a distribution's buckets (in the point
    /// and, for a tracked histogram, in the state recorded once it is delivered).
    pub fn queued_bytes(&self) -> usize {
        let f64s = |n: usize| n * std::mem::size_of::<f64>();
        let value = match &self.point.value {
            PointValue::Distribution(d) => {
                std::mem::size_of::<Distribution>()
                    + f64s(d.bounds.capacity() + d.bucket_counts.capacity())
            }
            PointValue::Double(_) | PointValue::Int64(_) => 0,
        };
        let state = match self.delivery.as_ref().map(|d| &d.ack) {
            Some(PointAck::Histogram(_, state)) => {
                std::mem::size_of::<crate::progress::SavedHistogramState>()
                    + f64s(2 * (state.base.buckets.capacity() + state.previous.buckets.capacity()))
            }
            _ => 0,
        };
        std::mem::size_of::<QueuedPoint>() + value + state
    }
}

/// What to record once a tracked point's request has completed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The series' delivery state and what to record in it.
    pub ack: PointAck,
    /// Index of the (last) sample in its WAL record (with the position, the point's identity).
    pub index: u64,
}

/// How long a failing request is retried before its points are given up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First wait after a transient failure.
    pub min_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Total time a batch may spend retrying before its points are dropped (counted), so that
    /// one bad batch can never stall a shard for ever.
    pub budget: Duration,
}

/// Least time between two warnings about retried requests, per shard.
const RETRY_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Default of `--stackdriver.retry-budget`: long enough to ride out a short outage of the API
/// without losing points, short enough that a shard is never stuck for long.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// Shape of the export stage.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `projects/<id>`.
    pub project_name: String,
    /// Number of shards at start (the autoscaler may change it while running).
    pub shards: usize,
    /// Points each shard's queue holds before the reader blocks.
    pub capacity_per_shard: usize,
    /// Most distinct series per request.
    pub max_batch: usize,
    /// Longest time a point waits in a partial batch.
    pub batch_deadline: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// The API's time window; points outside it are dropped before sending.
    pub time_limits: TimeLimits,
}

impl ExportConfig {
    /// The original's queue settings (200 series per request, 600 points per shard, 5 s
    /// deadline), with `shards` fixed shards.
    pub fn new(project_id: &str, shards: usize) -> ExportConfig {
        ExportConfig {
            project_name: format!("projects/{project_id}"),
            shards: shards.clamp(1, super::lanes::LANES),
            capacity_per_shard: 600,
            max_batch: 200,
            batch_deadline: Duration::from_secs(5),
            retry: RetryPolicy {
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                budget: DEFAULT_RETRY_BUDGET,
            },
            time_limits: TimeLimits::default(),
        }
    }

    /// The same, accepting points of any age or time (for replaying recorded data in tests).
    pub fn without_time_limits(mut self) -> ExportConfig {
        self.time_limits = TimeLimits {
            max_age: None,
            max_future: None,
        };
        self
    }
}

/// Starts one shard task on `runtime`: shard `index` of `count`, owning the lanes
/// [`lanes_of_shard`] gives. Returns its queue and its task.
pub(super) fn spawn_shard<S: TimeSeriesSink>(
    runtime: &tokio::runtime::Handle,
    parts: &ShardParts<S>,
    index: usize,
    count: usize,
) -> (mpsc::Sender<Chunk>, JoinHandle<()>) {
    let config = &parts.config;
    let (tx, rx) = mpsc::channel(chunks_per_queue(queue_points(
        config.capacity_per_shard,
        count,
    )));
    let lanes = lanes_of_shard(index, count);
    let shard = Shard {
        pool: parts.pool.clone(),
        ahead: Vec::with_capacity(CHUNK_POINTS),
        idle: parts.idle.clone(),
        idle_open: true,
        index,
        completed_by_lane: vec![0; lanes.len()],
        lanes,
        rx,
        sink: parts.sink.clone(),
        config: config.clone(),
        stats: parts.stats.clone(),
        builder: RequestBuilder::default(),
        batch: Vec::with_capacity(config.max_batch),
        in_batch: AHashSet::with_capacity(config.max_batch * 2),
        batch_deadline: None,
        tracker: parts.tracker.clone(),
        last_mark: None,
        jitter: Jitter::new(index),
        last_retry_warning: None,
    };
    (tx, runtime.spawn(shard.run()))
}

/// Points handed to a shard at once: the reader gathers a record's points per shard and hands
/// them over together, so the queue's synchronisation and the shard's wake-up are paid per
/// record rather than per point.
pub type Chunk = Vec<QueuedPoint>;

/// Most points in one chunk.
pub const CHUNK_POINTS: usize = 128;

/// Most bytes of points in one chunk (by [`QueuedPoint::queued_bytes`]), give or take its last
/// point: as many as [`CHUNK_POINTS`] plain points take, so that a queue of chunks is bounded in
/// bytes whatever the points are (distributions of many buckets fill a chunk sooner).
pub const CHUNK_BYTES: usize = CHUNK_POINTS * std::mem::size_of::<QueuedPoint>();

// README: chunks of at most 14 KiB of points.
const _: () = assert!(CHUNK_BYTES <= 14 * 1024);

/// Emptied chunks on their way back from the shards to the reader: a chunk's buffer is made
/// once and reused, instead of being allocated on the reader's thread and freed on a shard's
/// (the costliest pattern for the allocator).
#[derive(Debug, Default)]
pub struct ChunkPool {
    free: std::sync::Mutex<Vec<Chunk>>,
}

/// Most emptied chunks the pool keeps.
const POOL_CHUNKS: usize = 256;

impl ChunkPool {
    /// An empty chunk with room for [`CHUNK_POINTS`] points.
    pub fn take(&self) -> Chunk {
        self.free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_POINTS))
    }

    /// Keeps an emptied chunk for reuse (dropped when the pool is full).
    pub fn give_back(&self, chunk: Chunk) {
        debug_assert!(chunk.is_empty());
        if chunk.capacity() < CHUNK_POINTS {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < POOL_CHUNKS
        {
            free.push(chunk);
        }
    }
}

/// Points queued for all shards together, at least: with few shards (the steady state, where
/// the autoscaler keeps one or two) each queue then holds a whole scrape's record, so the reader
/// hands a record over without waiting for the shard, and waking it, once per chunk.
pub const MIN_TOTAL_QUEUE_POINTS: usize = 4096;

/// Points one shard's queue holds when `shards` shards run: `capacity_per_shard`, or more when
/// they are few (see [`MIN_TOTAL_QUEUE_POINTS`]).
pub fn queue_points(capacity_per_shard: usize, shards: usize) -> usize {
    capacity_per_shard.max(MIN_TOTAL_QUEUE_POINTS / shards.max(1))
}

/// Queue length in chunks for a queue of `capacity` points: chunks may be partly filled, so the
/// queue holds at least `capacity` points in full chunks and at most a few chunks when they are
/// small (never fewer than 4 chunks, so a shard sending keeps some work waiting).
pub fn chunks_per_queue(capacity: usize) -> usize {
    capacity.div_ceil(CHUNK_POINTS).max(4)
}

/// What every shard is made from.
pub(super) struct ShardParts<S> {
    pub sink: Arc<S>,
    pub config: ExportConfig,
    pub stats: Arc<Stats>,
    pub tracker: Option<Arc<DeliveryTracker>>,
    /// Changes when the reader has found nothing new in the WAL for a while.
    pub idle: tokio::sync::watch::Receiver<u64>,
    /// Where emptied chunks go back to.
    pub pool: Arc<ChunkPool>,
}

/// One point of the batch being assembled.
struct Entry {
    series: SharedPrototype,
    point: Point,
    /// What to record once the point is done with (tracked points).
    delivery: Option<PointAck>,
}

struct Shard<S> {
    pool: Arc<ChunkPool>,
    /// The prototypes' addresses of the chunk being taken (reused buffer).
    ahead: Vec<usize>,
    /// Changes when the reader has been idle a while: a partial batch then goes out at once
    /// instead of waiting for its deadline, since no more points are coming soon.
    idle: tokio::sync::watch::Receiver<u64>,
    /// Whether `idle` can still change (its sender lives).
    idle_open: bool,
    index: usize,
    /// The lanes this shard sends (their delivery marks are this shard's to write).
    lanes: Range<usize>,
    /// Tracked points of the current request per lane (indexed from `lanes.start`).
    completed_by_lane: Vec<u64>,
    rx: mpsc::Receiver<Chunk>,
    sink: Arc<S>,
    config: ExportConfig,
    stats: Arc<Stats>,
    builder: RequestBuilder,
    /// The batch being assembled, in queue order.
    batch: Vec<Entry>,
    /// Hashes of the series in `batch`.
    in_batch: AHashSet<u64>,
    batch_deadline: Option<Instant>,
    tracker: Option<Arc<DeliveryTracker>>,
    /// Identity of the last tracked point of the current batch.
    last_mark: Option<Mark>,
    jitter: Jitter,
    /// When a failed attempt was last logged at warning level.
    last_retry_warning: Option<Instant>,
}

impl<S: TimeSeriesSink> Shard<S> {
    async fn run(mut self) {
        loop {
            let deadline = self.batch_deadline;
            let idle_armed = self.idle_open && !self.batch.is_empty();
            tokio::select! {
                // Queued points first: an idle reader's signal only flushes an empty queue.
                biased;
                chunk = self.rx.recv() => match chunk {
                    Some(mut chunk) => {
                        self.stats.queue_taken(chunk.len() as u64);
                        // Where each item's prototype lies (a separate allocation, far from the
                        // others), so that its load can be started a few items ahead. Plain
                        // addresses, so that they can be kept across the awaits. (Delivery
                        // states are loaded once the request is done, in `record_deliveries`.)
                        let mut ahead = std::mem::take(&mut self.ahead);
                        ahead.clear();
                        ahead.extend(chunk.iter().map(|item| Arc::as_ptr(&item.series) as usize));
                        for (i, item) in chunk.drain(..).enumerate() {
                            prefetch_ahead(&ahead, i, crate::prefetch::prefetch::<u8>);
                            self.add(item).await;
                        }
                        self.ahead = ahead;
                        self.pool.give_back(chunk);
                    }
                    None => break,
                },
                _ = sleep_until_opt(deadline) => self.flush().await,
                changed = self.idle.changed(), if idle_armed => match changed {
                    Ok(()) => self.flush().await,
                    Err(_) => self.idle_open = false,
                },
            }
        }
        self.flush().await;
    }

    async fn add(&mut self, item: QueuedPoint) {
        if self.in_batch.contains(&item.series.hash) {
            self.flush().await;
        }
        if self.batch.is_empty() {
            // Only an idle signal given after the batch began flushes it.
            self.idle.borrow_and_update();
            // The deadline counts from the first point of a batch (the original's timer was not
            // reset then, so a batch could leave almost empty; quirk fixed).
            self.batch_deadline = Some(Instant::now() + self.config.batch_deadline);
        }
        self.in_batch.insert(item.series.hash);
        if let Some(d) = &item.delivery {
            self.last_mark = Some(Mark {
                position: item.position,
                index: d.index,
            });
        }
        self.batch.push(Entry {
            series: item.series,
            point: item.point,
            delivery: item.delivery.map(|d| d.ack),
        });
        if self.batch.len() >= self.config.max_batch {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        self.batch_deadline = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.in_batch.clear();
        let now = now_ms();
        let mut valid = Vec::with_capacity(batch.len());
        for (i, entry) in batch.iter().enumerate() {
            let checked = match entry.series.invalid {
                Some(invalid) => Err(invalid),
                None => validate::check_point(
                    entry.series.kind,
                    &entry.point,
                    now,
                    self.config.time_limits,
                ),
            };
            match checked {
                Ok(()) => valid.push(i),
                Err(invalid) => {
                    tracing::debug!(
                        shard = self.index,
                        metric = %entry.series.metric_type(),
                        reason = invalid.as_str(),
                        "point not sent: the API would refuse it"
                    );
                    self.drop_points(ExportDrop::Invalid(invalid), 1);
                }
            }
        }
        self.deliver(&batch, valid).await;
        self.record_deliveries(batch);
    }

    /// The batch is done with (accepted, or dropped for good): record each tracked point's series
    /// state, then let the watermark pass them.
    fn record_deliveries(&mut self, mut batch: Vec<Entry>) {
        if let Some(tracker) = &self.tracker {
            // The delivery states lie far apart: start loading them a few points ahead, ready
            // to be written.
            for entry in batch.iter().take(PREFETCH_AHEAD) {
                if let Some(ack) = &entry.delivery {
                    tracker.prefetch(ack);
                }
            }
            for i in 0..batch.len() {
                if let Some(ack) = batch
                    .get(i + PREFETCH_AHEAD)
                    .and_then(|e| e.delivery.as_ref())
                {
                    tracker.prefetch(ack);
                }
                let entry = &mut batch[i];
                if let Some(ack) = entry.delivery.take() {
                    tracker.delivered(ack, entry.point.end_ms);
                    let lane = lane_of(entry.series.hash);
                    if let Some(n) = self
                        .completed_by_lane
                        .get_mut(lane.wrapping_sub(self.lanes.start))
                    {
                        *n += 1;
                    }
                }
            }
        }
        if let Some(tracker) = &self.tracker {
            let start = self.lanes.start;
            let completed = self
                .completed_by_lane
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (start + i, *n));
            tracker.points_completed(self.lanes.clone(), completed, self.last_mark.take());
        }
        self.completed_by_lane.fill(0);
    }

    fn drop_points(&self, reason: ExportDrop, n: u64) {
        self.stats.export_drops.add(reason, n);
        if !matches!(reason, ExportDrop::Invalid(_)) {
            self.stats.points_failed(n);
        }
    }

    /// Sends the points `indices` of `batch` (in that order), retrying and splitting as needed,
    /// within one retry budget for the whole batch.
    async fn deliver(&mut self, batch: &[Entry], indices: Vec<usize>) {
        let started = Instant::now();
        // Groups still to send, the next one last; halves of a split go back on top, first half
        // last, so points keep their order.
        let mut pending = vec![indices];
        while let Some(mut group) = pending.pop() {
            let mut backoff = self.config.retry.min_backoff;
            let mut attempt = 0u32;
            loop {
                if attempt > 0 {
                    self.drop_expired(batch, &mut group);
                }
                if group.is_empty() {
                    break;
                }
                attempt += 1;
                let points = group.len() as u64;
                let request = self.encode(batch, &group);
                let sent_at = Instant::now();
                let result = self.sink.create_time_series_from(self.index, request).await;
                self.stats.observe_send(sent_at.elapsed(), points);
                let err = match result {
                    Ok(()) => {
                        self.stats.point_status(0, points);
                        self.stats.points_sent(points);
                        break;
                    }
                    Err(err) => err,
                };
                if err.retryable {
                    let wait = self.jitter.spread(backoff);
                    if started.elapsed() + wait <= self.config.retry.budget {
                        self.stats.send_retried();
                        // Visible at the default level, at most once a minute per shard: a
                        // backend that keeps failing (TLS, credentials, outage) is noticed long
                        // before the retry budget runs out.
                        let now = Instant::now();
                        if self
                            .last_retry_warning
                            .is_none_or(|at| now.duration_since(at) >= RETRY_WARNING_EVERY)
                        {
                            self.last_retry_warning = Some(now);
                            tracing::warn!(
                                shard = self.index,
                                code = ?err.code,
                                error = %err.message,
                                points,
                                "sending failed; retrying (logged at most once a minute per shard)"
                            );
                        } else {
                            tracing::debug!(shard = self.index, error = %err, wait = ?wait, "retrying request");
                        }
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(self.config.retry.max_backoff);
                        continue;
                    }
                    self.stats.point_status(err.code as i32, points);
                    self.drop_points(ExportDrop::RetryBudgetExhausted, points);
                    tracing::warn!(
                        shard = self.index,
                        code = ?err.code,
                        error = %err.message,
                        points,
                        retried_for = ?started.elapsed(),
                        "points dropped: the Monitoring API kept failing for longer than the retry budget"
                    );
                } else if err.has_summary() {
                    self.partial_failure(&err, points);
                } else if err.code == Code::InvalidArgument && group.len() > 1 {
                    tracing::debug!(
                        shard = self.index,
                        points,
                        error = %err.message,
                        "request refused as a whole; splitting it to isolate the bad points"
                    );
                    let second = group.split_off(group.len() / 2);
                    pending.push(second);
                    pending.push(group);
                } else {
                    self.stats.point_status(err.code as i32, points);
                    self.drop_points(ExportDrop::Rejected, points);
                    let metric = group
                        .first()
                        .map(|i| batch[*i].series.metric_type())
                        .unwrap_or_default();
                    tracing::warn!(
                        shard = self.index,
                        code = ?err.code,
                        error = %err.message,
                        points,
                        metric,
                        "points refused by the Monitoring API were dropped"
                    );
                }
                break;
            }
        }
    }

    /// The API wrote some series of the request and refused others: only those are dropped,
    /// counted under the codes the summary gives.
    fn partial_failure(&self, err: &SendError, points: u64) {
        let succeeded = err.succeeded_points.unwrap_or(0).min(points);
        let failed = points - succeeded;
        for (code, n) in err.point_statuses(points) {
            self.stats.point_status(code, n);
        }
        self.stats.points_sent(succeeded);
        self.drop_points(ExportDrop::Rejected, failed);
        tracing::warn!(
            shard = self.index,
            code = ?err.code,
            error = %err.message,
            points,
            succeeded,
            "some points were refused by the Monitoring API and dropped"
        );
    }

    /// Drops the points of `group` that became too old to be accepted while retrying.
    fn drop_expired(&self, batch: &[Entry], group: &mut Vec<usize>) {
        let now = now_ms();
        let limits = self.config.time_limits;
        let before = group.len();
        group.retain(|i| validate::check_age(batch[*i].point.end_ms, now, limits).is_ok());
        let expired = (before - group.len()) as u64;
        if expired > 0 {
            self.drop_points(ExportDrop::Invalid(validate::Invalid::TooOld), expired);
        }
    }

    fn encode(&mut self, batch: &[Entry], group: &[usize]) -> Bytes {
        self.builder.start(&self.config.project_name);
        // Copying each prototype's bytes is the cost here, and they lie far apart: load the
        // prototypes well ahead and their bytes (found through them) a little less far ahead.
        let series_at = |n: usize| group.get(n).map(|i| &batch[*i].series);
        for n in 0..2 * PREFETCH_AHEAD {
            if let Some(s) = series_at(n) {
                crate::prefetch::prefetch(Arc::as_ptr(s));
            }
        }
        for (n, i) in group.iter().enumerate() {
            if let Some(s) = series_at(n + 2 * PREFETCH_AHEAD) {
                crate::prefetch::prefetch(Arc::as_ptr(s));
            }
            if let Some(s) = series_at(n + PREFETCH_AHEAD) {
                crate::prefetch::prefetch_slice(s.own_bytes());
                crate::prefetch::prefetch_slice(&s.resource);
            }
            let entry = &batch[*i];
            self.builder.push(&entry.series, entry.point.clone());
        }
        self.builder.take()
    }
}

/// How many items ahead a shard asks the CPU to load series data.
const PREFETCH_AHEAD: usize = 8;

/// Before handling item `i` of a run whose items lie at `addresses` (0: nothing to load), starts
/// loading, with `hint`, the item [`PREFETCH_AHEAD`] further on, and at the first item the
/// ones before it too.
fn prefetch_ahead(addresses: &[usize], i: usize, hint: fn(*const u8)) {
    let first = if i == 0 { 0 } else { i + PREFETCH_AHEAD };
    for &address in addresses
        .iter()
        .skip(first)
        .take(i + PREFETCH_AHEAD + 1 - first)
    {
        if address != 0 {
            hint(address as *const u8);
        }
    }
}

/// Milliseconds since the Unix epoch, by the wall clock (the API's limits are wall-clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Spreads retry waits so that shards failing together do not retry together: each wait is
/// drawn uniformly from half the backoff to the full backoff. A small xorshift generator is
/// enough; nothing depends on its quality.
struct Jitter {
    state: u64,
}

impl Jitter {
    fn new(shard: usize) -> Jitter {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((shard as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Jitter { state: seed | 1 }
    }

    fn spread(&mut self, backoff: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let fraction = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        backoff.mul_f64(0.5 + 0.5 * fraction)
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Exporter;
    use crate::export::encode::{PointKind, PointValue, SeriesPrototype};
    use crate::export::validate::Invalid;
    use gcm_api::monitoring::create_time_series_summary::Error as SummaryError;
    use gcm_api::monitoring::{CreateTimeSeriesRequest, CreateTimeSeriesSummary, TimeSeries};
    use prost::Message;
    use std::sync::Mutex;

    #[test]
    fn a_queue_is_bounded_in_bytes_as_documented() {
        // README: 460 KiB for one shard's queue, 70 KiB for a 600-point queue (give or take a
        // chunk's last point).
        assert!(chunks_per_queue(queue_points(600, 1)) * CHUNK_BYTES <= 460 * 1024);
        assert!(chunks_per_queue(queue_points(600, 16)) * CHUNK_BYTES <= 70 * 1024);
    }

    #[test]
    fn few_shards_get_room_for_a_whole_record() {
        // One shard holds a 3000-sample scrape; many keep the configured capacity.
        assert_eq!(queue_points(600, 1), MIN_TOTAL_QUEUE_POINTS);
        assert_eq!(queue_points(600, 2), MIN_TOTAL_QUEUE_POINTS / 2);
        assert_eq!(queue_points(600, 16), 600);
        assert_eq!(queue_points(600, 0), MIN_TOTAL_QUEUE_POINTS);
        assert_eq!(chunks_per_queue(queue_points(600, 1)), 32);
        assert_eq!(chunks_per_queue(queue_points(600, 16)), 5);
    }
    use tonic::Status;

    type Script = Box<dyn FnMut(&CreateTimeSeriesRequest) -> Result<(), Status> + Send>;

    /// A sink that answers each request as `script` says and records the accepted ones.
    struct ScriptedSink {
        script: Mutex<Script>,
        accepted: Mutex<Vec<CreateTimeSeriesRequest>>,
        attempts: Mutex<usize>,
    }

    impl ScriptedSink {
        fn new(
            script: impl FnMut(&CreateTimeSeriesRequest) -> Result<(), Status> + Send + 'static,
        ) -> Arc<ScriptedSink> {
            Arc::new(ScriptedSink {
                script: Mutex::new(Box::new(script)),
                accepted: Mutex::new(Vec::new()),
                attempts: Mutex::new(0),
            })
        }

        fn accepted_series(&self) -> Vec<TimeSeries> {
            self.accepted
                .lock()
                .unwrap()
                .iter()
                .flat_map(|r| r.time_series.clone())
                .collect()
        }
    }

    impl TimeSeriesSink for ScriptedSink {
        async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
            let request = CreateTimeSeriesRequest::decode(request).unwrap();
            *self.attempts.lock().unwrap() += 1;
            let answer = (self.script.lock().unwrap())(&request);
            match answer {
                Ok(()) => {
                    self.accepted.lock().unwrap().push(request);
                    Ok(())
                }
                Err(status) => Err(SendError::from_status(&status)),
            }
        }
    }

    fn now() -> i64 {
        now_ms()
    }

    fn series(metric: &str, label: &str) -> SharedPrototype {
        Arc::new(SeriesPrototype::new(
            format!("external.googleapis.com/prometheus/{metric}"),
            &[("k".to_string(), label.to_string())],
            "generic_task",
            &[("job", "j".to_string())],
            PointKind::GaugeDouble,
        ))
    }

    fn point(series: &SharedPrototype, end_ms: i64, value: f64) -> QueuedPoint {
        QueuedPoint {
            series: series.clone(),
            point: Point {
                start_ms: None,
                end_ms,
                value: PointValue::Double(value),
            },
            position: WalPosition::default(),
            delivery: None,
        }
    }

    fn config() -> ExportConfig {
        let mut c = ExportConfig::new("p", 1);
        c.batch_deadline = Duration::from_millis(20);
        c.retry.min_backoff = Duration::from_millis(5);
        c.retry.max_backoff = Duration::from_millis(20);
        c
    }

    async fn run(
        sink: Arc<ScriptedSink>,
        config: ExportConfig,
        points: Vec<QueuedPoint>,
    ) -> Arc<Stats> {
        let stats = Arc::new(Stats::default());
        let exporter = Exporter::start(sink, config, stats.clone(), None);
        let mut handle = exporter.handle();
        tokio::task::spawn_blocking(move || {
            for p in points {
                handle.push_blocking(p).unwrap();
            }
        })
        .await
        .unwrap();
        exporter.finish().await;
        stats
    }

    fn label(ts: &TimeSeries) -> String {
        ts.metric.as_ref().unwrap().labels["k"].clone()
    }

    fn value(ts: &TimeSeries) -> f64 {
        match ts.points[0].value.as_ref().unwrap().value {
            Some(gcm_api::monitoring::typed_value::Value::DoubleValue(v)) => v,
            ref other => panic!("{other:?}"),
        }
    }

    fn drops(stats: &Stats, reason: ExportDrop) -> u64 {
        stats.export_drops.count(reason)
    }

    #[tokio::test]
    async fn no_request_holds_more_than_200_series_or_one_series_twice_and_order_is_kept() {
        let sink = ScriptedSink::new(|_| Ok(()));
        let t0 = now() - 60_000;
        let all: Vec<SharedPrototype> = (0..300).map(|i| series("m", &i.to_string())).collect();
        // Series 0..300 once, then series 0..150 again: 450 points.
        let mut points: Vec<QueuedPoint> = all.iter().map(|s| point(s, t0, 1.0)).collect();
        points.extend(all[..150].iter().map(|s| point(s, t0 + 10_000, 2.0)));
        let stats = run(sink.clone(), config(), points).await;
        let requests = sink.accepted.lock().unwrap().clone();
        for r in &requests {
            assert!(r.time_series.len() <= 200, "{}", r.time_series.len());
            let mut labels: Vec<String> = r.time_series.iter().map(label).collect();
            labels.sort();
            labels.dedup();
            assert_eq!(
                labels.len(),
                r.time_series.len(),
                "a series twice in one request"
            );
        }
        let accepted = sink.accepted_series();
        assert_eq!(accepted.len(), 450);
        for i in 0..150 {
            let values: Vec<f64> = accepted
                .iter()
                .filter(|ts| label(ts) == i.to_string())
                .map(value)
                .collect();
            assert_eq!(values, [1.0, 2.0], "series {i} out of order");
        }
        assert_eq!(
            stats.points_sent.load(std::sync::atomic::Ordering::Relaxed),
            450
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_accepted() {
        let mut failures = vec![
            Status::unavailable("down"),
            Status::internal("oops"),
            Status::deadline_exceeded("slow"),
            Status::resource_exhausted("quota"),
        ];
        let sink = ScriptedSink::new(move |_| match failures.pop() {
            Some(status) => Err(status),
            None => Ok(()),
        });
        let s = series("m", "a");
        let stats = run(sink.clone(), config(), vec![point(&s, now() - 1000, 1.0)]).await;
        assert_eq!(sink.accepted_series().len(), 1);
        assert_eq!(*sink.attempts.lock().unwrap(), 5);
        assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 4);
        assert_eq!(stats.export_drops.total(), 0);
    }

    #[tokio::test]
    async fn a_batch_failing_past_the_retry_budget_is_dropped_and_the_shard_moves_on() {
        let sink = ScriptedSink::new(|r| {
            if r.time_series.iter().any(|ts| label(ts) == "stuck") {
                Err(Status::unavailable("this batch never gets through"))
            } else {
                Ok(())
            }
        });
        let mut config = config();
        config.retry.budget = Duration::from_millis(200);
        // One point per request, so that the fine point travels alone after the stuck ones.
        config.max_batch = 1;
        let stuck = series("m", "stuck");
        let fine = series("m", "fine");
        let t = now() - 60_000;
        let points = vec![
            point(&stuck, t, 1.0),
            point(&stuck, t + 10_000, 2.0),
            point(&fine, t, 3.0),
        ];
        let started = std::time::Instant::now();
        let stats = run(sink.clone(), config, points).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(drops(&stats, ExportDrop::RetryBudgetExhausted), 2);
        assert_eq!(stats.point_status_counts()[Code::Unavailable as usize], 2);
        assert!(stats.retries.load(std::sync::atomic::Ordering::Relaxed) >= 2);
        let got: Vec<String> = sink.accepted_series().iter().map(label).collect();
        assert_eq!(got, ["fine"], "the shard moved on");
    }

    #[tokio::test]
    async fn a_partial_failure_drops_only_the_points_the_summary_names() {
        let sink = ScriptedSink::new(|r| {
            let summary = CreateTimeSeriesSummary {
                total_point_count: r.time_series.len() as i32,
                success_point_count: r.time_series.len() as i32 - 2,
                errors: vec![SummaryError {
                    status: Some(gcm_api::rpc::Status {
                        code: Code::InvalidArgument as i32,
                        ..Default::default()
                    }),
                    point_count: 2,
                }],
            };
            Err(gcm_api::status_with_summary(
                Code::InvalidArgument,
                "One or more TimeSeries could not be written",
                &summary,
            ))
        });
        let t = now() - 1000;
        let points = (0..5)
            .map(|i| point(&series("m", &i.to_string()), t, 1.0))
            .collect();
        let stats = run(sink.clone(), config(), points).await;
        assert_eq!(
            *sink.attempts.lock().unwrap(),
            1,
            "a partial failure is not retried"
        );
        assert_eq!(
            stats.points_sent.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(drops(&stats, ExportDrop::Rejected), 2);
        let codes = stats.point_status_counts();
        assert_eq!((codes[0], codes[Code::InvalidArgument as usize]), (3, 2));
    }

    #[tokio::test]
    async fn a_whole_request_rejection_is_split_until_the_bad_points_are_isolated() {
        let sink = ScriptedSink::new(|r| {
            if r.time_series.iter().any(|ts| label(ts).starts_with("bad")) {
                Err(Status::invalid_argument(
                    "Field timeSeries[3] had an invalid value",
                ))
            } else {
                Ok(())
            }
        });
        let t = now() - 1000;
        let labels = ["0", "1", "bad1", "2", "3", "4", "5", "bad2", "6", "7"];
        let points = labels
            .iter()
            .map(|l| point(&series("m", l), t, 1.0))
            .collect();
        let stats = run(sink.clone(), config(), points).await;
        let got: Vec<String> = sink.accepted_series().iter().map(label).collect();
        assert_eq!(
            got,
            ["0", "1", "2", "3", "4", "5", "6", "7"],
            "good points arrive, in order"
        );
        assert_eq!(drops(&stats, ExportDrop::Rejected), 2);
        let codes = stats.point_status_counts();
        assert_eq!((codes[0], codes[Code::InvalidArgument as usize]), (8, 2));
        assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn points_the_api_would_refuse_are_dropped_before_sending() {
        let sink = ScriptedSink::new(|_| Ok(()));
        let bad_type = Arc::new(SeriesPrototype::new(
            "external.googleapis.com/prometheus/job:rate".into(),
            &[],
            "generic_task",
            &[],
            PointKind::GaugeDouble,
        ));
        let good = series("m", "good");
        let now = now();
        let points = vec![
            point(&bad_type, now - 1000, 1.0),
            point(&series("m", "old"), now - 26 * 3_600_000, 1.0),
            point(&series("m", "future"), now + 3_600_000, 1.0),
            point(&good, now - 1000, 1.0),
        ];
        let stats = run(sink.clone(), config(), points).await;
        let got: Vec<String> = sink.accepted_series().iter().map(label).collect();
        assert_eq!(got, ["good"]);
        for reason in [Invalid::MetricType, Invalid::TooOld, Invalid::InFuture] {
            assert_eq!(
                drops(&stats, ExportDrop::Invalid(reason)),
                1,
                "{}",
                reason.as_str()
            );
        }
        assert_eq!(stats.export_drops.total(), 3);
    }

    #[tokio::test]
    async fn points_that_grow_too_old_while_retrying_are_dropped() {
        let mut failures = 3;
        let sink = ScriptedSink::new(move |_| {
            if failures > 0 {
                failures -= 1;
                Err(Status::unavailable("down"))
            } else {
                Ok(())
            }
        });
        let mut config = config();
        // Waits of at least 50 + 100 + 200 ms (jitter keeps half or more): the point ages past
        // the limit during the retries whatever the jitter draws.
        config.retry.min_backoff = Duration::from_millis(100);
        config.retry.max_backoff = Duration::from_millis(400);
        config.time_limits.max_age = Some(Duration::from_millis(1_000));
        let now = now();
        let points = vec![
            point(&series("m", "ageing"), now - 900, 1.0),
            point(&series("m", "young"), now + 60_000, 1.0),
        ];
        let stats = run(sink.clone(), config, points).await;
        let got: Vec<String> = sink.accepted_series().iter().map(label).collect();
        assert_eq!(got, ["young"]);
        assert_eq!(drops(&stats, ExportDrop::Invalid(Invalid::TooOld)), 1);
    }

    #[test]
    fn jitter_spreads_waits_between_half_and_all_of_the_backoff() {
        let mut j = Jitter::new(3);
        let waits: Vec<Duration> = (0..1000)
            .map(|_| j.spread(Duration::from_secs(1)))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(500) && *w <= Duration::from_secs(1))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 900);
    }
}
