//! Shards: the queues between the WAL reader and the API, and the batching and retrying of sends.
//!
//! Each series is assigned to one shard by its hash, and each shard has one request in flight,
//! so a series' points reach the API in WAL order. Queues are bounded: when the API is slow the
//! reader blocks on a full queue and the WAL on disk is the buffer; nothing is dropped because a
//! queue was full. A batch holds at most `max_batch` distinct series (the API's limit is 200); a
//! second point of a series already in the batch closes the batch first, so a request never
//! holds two points of one series. A batch goes out when full, on such a repeat, or when its
//! deadline passes. Shutdown is observed when every sender is dropped: the shard drains its queue,
//! sends the last batch and ends.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashSet;
use bytes::Bytes;
use prometheus_wal::WalPosition;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{SendError, TimeSeriesSink};
use super::encode::{Point, RequestBuilder, SharedPrototype};
use crate::progress::{DeliveryTracker, Mark, SavedBaseline, SeriesAck};
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

/// What to record once a tracked point's request has completed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The series' delivery state.
    pub ack: Arc<SeriesAck>,
    /// The counter baseline the point was measured from (cumulative series).
    pub baseline: Option<SavedBaseline>,
    /// Index of the sample in its WAL record (with the position, the point's identity).
    pub index: u64,
}

/// How long a failing request is retried before its points are given up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First wait after a transient failure.
    pub min_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Total time a request may spend retrying before it is dropped (counted), so that one bad
    /// batch can never stall a shard for ever.
    pub budget: Duration,
}

/// Shape of the export stage.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `projects/<id>`.
    pub project_name: String,
    /// Number of shards.
    pub shards: usize,
    /// Points each shard's queue holds before the reader blocks.
    pub capacity_per_shard: usize,
    /// Most distinct series per request.
    pub max_batch: usize,
    /// Longest time a point waits in a partial batch.
    pub batch_deadline: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
}

impl ExportConfig {
    /// The original's queue settings (200 series per request, 600 points per shard, 5 s
    /// deadline), with `shards` fixed shards.
    pub fn new(project_id: &str, shards: usize) -> ExportConfig {
        ExportConfig {
            project_name: format!("projects/{project_id}"),
            shards: shards.max(1),
            capacity_per_shard: 600,
            max_batch: 200,
            batch_deadline: Duration::from_secs(5),
            retry: RetryPolicy {
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                budget: Duration::from_secs(120),
            },
        }
    }
}

/// The running shards.
pub struct Exporter {
    senders: Vec<mpsc::Sender<QueuedPoint>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Where the reader hands points over; cheap to clone. Blocking, for the reader's own thread.
#[derive(Clone)]
pub struct ExportHandle {
    senders: Vec<mpsc::Sender<QueuedPoint>>,
}

/// The export stage has shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportClosed;

impl ExportHandle {
    /// Queues a point on its series' shard, blocking while that shard's queue is full, and
    /// returns the shard's index. Must not be called from an async task.
    pub fn push_blocking(&self, item: QueuedPoint) -> Result<usize, ExportClosed> {
        let shard = self.shard_for(item.series.hash);
        self.senders[shard]
            .blocking_send(item)
            .map_err(|_| ExportClosed)?;
        Ok(shard)
    }

    /// The shard a series (by hash) is sent by.
    pub fn shard_for(&self, hash: u64) -> usize {
        (hash % self.senders.len() as u64) as usize
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }
}

impl Exporter {
    /// Starts `config.shards` shard tasks on the current tokio runtime. Completed tracked points
    /// are reported to `tracker`, which must track `config.shards` shards.
    pub fn start<S: TimeSeriesSink>(
        sink: Arc<S>,
        config: ExportConfig,
        stats: Arc<Stats>,
        tracker: Option<Arc<DeliveryTracker>>,
    ) -> Exporter {
        let mut senders = Vec::with_capacity(config.shards);
        let mut tasks = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let (tx, rx) = mpsc::channel(config.capacity_per_shard);
            senders.push(tx);
            let shard = Shard {
                index,
                rx,
                sink: sink.clone(),
                config: config.clone(),
                stats: stats.clone(),
                builder: RequestBuilder::default(),
                in_batch: AHashSet::with_capacity(config.max_batch * 2),
                batch_deadline: None,
                tracker: tracker.clone(),
                deliveries: Vec::with_capacity(config.max_batch),
                last_mark: None,
            };
            tasks.push(tokio::spawn(shard.run()));
        }
        Exporter { senders, tasks }
    }

    /// A handle for the reader.
    pub fn handle(&self) -> ExportHandle {
        ExportHandle {
            senders: self.senders.clone(),
        }
    }

    /// Stops accepting points once every handle is dropped, then waits until every shard has
    /// sent what it holds.
    pub async fn finish(self) {
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Shard<S> {
    index: usize,
    rx: mpsc::Receiver<QueuedPoint>,
    sink: Arc<S>,
    config: ExportConfig,
    stats: Arc<Stats>,
    builder: RequestBuilder,
    in_batch: AHashSet<u64>,
    batch_deadline: Option<Instant>,
    tracker: Option<Arc<DeliveryTracker>>,
    /// Tracked points of the current batch: (series state, end time, baseline).
    deliveries: Vec<(Arc<SeriesAck>, i64, Option<SavedBaseline>)>,
    /// Identity of the last tracked point of the current batch.
    last_mark: Option<Mark>,
}

impl<S: TimeSeriesSink> Shard<S> {
    async fn run(mut self) {
        self.builder.start(&self.config.project_name);
        loop {
            let deadline = self.batch_deadline;
            tokio::select! {
                item = self.rx.recv() => match item {
                    Some(item) => self.add(item).await,
                    None => break,
                },
                _ = sleep_until_opt(deadline) => self.flush().await,
            }
        }
        self.flush().await;
    }

    async fn add(&mut self, item: QueuedPoint) {
        self.stats.queue_taken();
        if self.in_batch.contains(&item.series.hash) {
            self.flush().await;
        }
        if self.builder.is_empty() {
            // The deadline counts from the first point of a batch (the original's timer was not
            // reset then, so a batch could leave almost empty; quirk fixed).
            self.batch_deadline = Some(Instant::now() + self.config.batch_deadline);
        }
        self.in_batch.insert(item.series.hash);
        let end_ms = item.point.end_ms;
        self.builder.push(&item.series, item.point);
        if let Some(d) = item.delivery {
            self.deliveries.push((d.ack, end_ms, d.baseline));
            self.last_mark = Some(Mark {
                position: item.position,
                index: d.index,
            });
        }
        if self.builder.len() >= self.config.max_batch {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        self.batch_deadline = None;
        if self.builder.is_empty() {
            return;
        }
        let points = self.builder.len() as u64;
        let request = Bytes::copy_from_slice(self.builder.bytes());
        self.builder.start(&self.config.project_name);
        self.in_batch.clear();
        self.send_with_retries(request, points).await;
        self.record_deliveries();
    }

    /// The batch is done with (accepted, or dropped for good): record each tracked point's series
    /// state, then let the watermark pass them.
    fn record_deliveries(&mut self) {
        let n = self.deliveries.len() as u64;
        for (ack, t, baseline) in self.deliveries.drain(..) {
            ack.delivered(t, baseline);
        }
        if let Some(tracker) = &self.tracker {
            tracker.points_completed(self.index, n, self.last_mark.take());
        }
    }

    async fn send_with_retries(&mut self, request: Bytes, points: u64) {
        let started = Instant::now();
        let mut backoff = self.config.retry.min_backoff;
        loop {
            let attempt = Instant::now();
            let result = self.sink.create_time_series(request.clone()).await;
            self.stats.observe_send(attempt.elapsed());
            match &result {
                Ok(()) => self.stats.point_status(0, points),
                Err(err) => {
                    for (code, n) in err.point_statuses(points) {
                        self.stats.point_status(code, n);
                    }
                }
            }
            match result {
                Ok(()) => {
                    self.stats.points_sent(points);
                    return;
                }
                Err(err)
                    if err.retryable && started.elapsed() + backoff <= self.config.retry.budget =>
                {
                    self.stats.send_retried();
                    tracing::debug!(shard = self.index, error = %err, backoff = ?backoff, "retrying request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.retry.max_backoff);
                }
                Err(err) => {
                    self.give_up(&err, points, started.elapsed());
                    return;
                }
            }
        }
    }

    fn give_up(&self, err: &SendError, points: u64, spent: Duration) {
        let succeeded = err.succeeded_points.unwrap_or(0).min(points);
        self.stats.points_sent(succeeded);
        self.stats.points_failed(points - succeeded);
        tracing::warn!(
            shard = self.index,
            code = ?err.code,
            error = %err.message,
            points,
            succeeded,
            retried_for = ?spent,
            "points not accepted by the Monitoring API were dropped"
        );
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
