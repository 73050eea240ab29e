//! One shard: the loop that takes chunks from its queue, gathers them into batches and sends
//! each batch, checking, retrying and splitting as [`super::retry`] decides.
//!
//! Must never have more than one request in flight (a series' points reach the API in WAL
//! order), nor lose a point: every point taken from the queue ends accepted or counted under one
//! [`ExportDrop`].

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::batch::{Batch, Entry};
use super::client::{SendError, TimeSeriesSink};
use super::deliveries::Deliveries;
use super::queue::{CHUNK_POINTS, Chunk, ChunkPool, QueuedPoint, chunks_per_queue, queue_points};
use super::refused::{self, RefusedSeries};
use super::request::RequestBuilder;
use super::retry::{Jitter, NextStep, Retries, WarnEvery};
use super::settings::ExportConfig;
use crate::model::lanes::lanes_of_shard;
use crate::model::validate::{self, Invalid};
use crate::progress::DeliveryTracker;
use crate::stats::ExportDrop;
use crate::stats::ExportStats;

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
    let shard = Shard {
        pool: parts.pool.clone(),
        ahead: Vec::with_capacity(CHUNK_POINTS),
        idle: parts.idle.clone(),
        idle_open: true,
        index,
        deliveries: Deliveries::new(parts.tracker.clone(), lanes_of_shard(index, count)),
        rx,
        sink: parts.sink.clone(),
        config: config.clone(),
        stats: parts.stats.clone(),
        builder: RequestBuilder::default(),
        batch: Batch::with_capacity(config.max_batch),
        jitter: Jitter::new(index),
        retry_warning: WarnEvery::default(),
        refused: parts.refused.clone(),
    };
    (tx, runtime.spawn(shard.run()))
}

/// What every shard is made from.
pub(super) struct ShardParts<S> {
    pub sink: Arc<S>,
    pub config: ExportConfig,
    pub stats: Arc<ExportStats>,
    pub tracker: Option<Arc<DeliveryTracker>>,
    /// Changes when the reader has found nothing new in the WAL for a while.
    pub idle: tokio::sync::watch::Receiver<u64>,
    /// Where emptied chunks go back to.
    pub pool: Arc<ChunkPool>,
    /// Series the API refused lately, shared by every shard (a reshard moves series).
    pub refused: Arc<RefusedSeries>,
}

/// A shard's state. A batch holds at most `max_batch` distinct series and never two points of
/// one series; it leaves when full, on such a repeat, at its deadline, or when the reader goes
/// idle. Points the API would refuse are dropped alone before sending, a partial failure drops
/// only the points it names, and a request refused as a whole is split until the bad points are
/// isolated. The shard ends when its queue closes, after sending what it holds.
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
    deliveries: Deliveries,
    rx: mpsc::Receiver<Chunk>,
    sink: Arc<S>,
    config: ExportConfig,
    stats: Arc<ExportStats>,
    builder: RequestBuilder,
    /// The batch being assembled, in queue order.
    batch: Batch,
    jitter: Jitter,
    /// Limits warnings about retried requests.
    retry_warning: WarnEvery,
    refused: Arc<RefusedSeries>,
}

impl<S: TimeSeriesSink> Shard<S> {
    async fn run(mut self) {
        loop {
            let deadline = self.batch.deadline;
            let idle_armed = self.idle_open && !self.batch.is_empty();
            tokio::select! {
                // Queued points first: an idle reader's signal only flushes an empty queue.
                biased;
                chunk = self.rx.recv() => match chunk {
                    Some(chunk) => self.take(chunk).await,
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

    /// Adds a chunk's points to the batch, sending as the batch fills.
    async fn take(&mut self, mut chunk: Chunk) {
        self.stats.queue_taken(chunk.len() as u64);
        // Where each item's prototype lies (a separate allocation, far from the others), so
        // that its load can be started a few items ahead. Plain addresses, so that they can be
        // kept across the awaits. (Delivery states are loaded once the request is done.)
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

    async fn add(&mut self, item: QueuedPoint) {
        if self.batch.holds(item.series.hash) {
            self.flush().await;
        }
        if self.batch.is_empty() {
            // Only an idle signal given after the batch began flushes it.
            self.idle.borrow_and_update();
            // The deadline counts from the first point of a batch, so a batch never leaves
            // almost empty because an earlier one started the clock.
            self.batch.deadline = Some(Instant::now() + self.config.batch_deadline);
        }
        if let Some(d) = &item.delivery {
            self.deliveries.joined(item.position, d.index);
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
        if self.batch.is_empty() {
            self.batch.deadline = None;
            return;
        }
        let mut batch = self.batch.take();
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
        let refused = self.refused.refused_among(
            std::time::Instant::now(),
            valid.iter().map(|i| (*i, batch[*i].series.hash)),
        );
        if !refused.is_empty() {
            valid.retain(|i| !refused.contains(i));
            self.drop_points(ExportDrop::SeriesRefused, refused.len() as u64);
        }
        self.deliver(&batch, valid).await;
        self.deliveries.record(&mut batch);
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
        let mut retries = Retries::start(self.config.retry);
        // Groups still to send, the next one last; halves of a split go back on top, first half
        // last, so points keep their order.
        let mut pending = vec![indices];
        while let Some(mut group) = pending.pop() {
            retries.next_group();
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
                if err.code == tonic::Code::InvalidArgument {
                    self.remember_refused(batch, &group, &err.message);
                }
                match retries.after(&err, group.len(), &mut self.jitter) {
                    NextStep::Retry(wait) => {
                        self.stats.send_retried();
                        // Visible at the default level, at most once a minute per shard: a
                        // backend that keeps failing (TLS, credentials, outage) is noticed long
                        // before the retry budget runs out.
                        if self.retry_warning.ready() {
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
                        continue;
                    }
                    NextStep::BudgetExhausted => {
                        self.stats.point_status(err.code as i32, points);
                        self.drop_points(ExportDrop::RetryBudgetExhausted, points);
                        tracing::warn!(
                            shard = self.index,
                            code = ?err.code,
                            error = %err.message,
                            points,
                            retried_for = ?retries.elapsed(),
                            "points dropped: the Monitoring API kept failing for longer than the retry budget"
                        );
                    }
                    NextStep::PartialFailure => self.partial_failure(&err, points),
                    NextStep::Split => {
                        tracing::debug!(
                            shard = self.index,
                            points,
                            error = %err.message,
                            "request refused as a whole; splitting it to isolate the bad points"
                        );
                        let second = group.split_off(group.len() / 2);
                        pending.push(second);
                        pending.push(group);
                    }
                    NextStep::Rejected => {
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
                }
                break;
            }
        }
    }

    /// Remembers the series of the request `group` that `message` refuses for their own fields,
    /// so that their next points are dropped before sending rather than refused (and bisected)
    /// again.
    fn remember_refused(&self, batch: &[Entry], group: &[usize], message: &str) {
        let now = std::time::Instant::now();
        for position in refused::refused_positions(message, group.len()) {
            let series = &batch[group[position]].series;
            if !self.refused.remember(series.hash, now) {
                continue;
            }
            tracing::warn!(
                shard = self.index,
                metric = %series.metric_type(),
                error = %message,
                drop_for = ?refused::REMEMBER_FOR,
                "the Monitoring API refused a series for its own fields; its points are dropped \
                 without sending for a while (counted as series_refused)"
            );
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
            self.drop_points(ExportDrop::Invalid(Invalid::TooOld), expired);
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
    use crate::model::{Point, PointKind, PointValue, SeriesPrototype, SharedPrototype};
    use crate::stats::Stats;
    use gcm_api::monitoring::create_time_series_summary::Error as SummaryError;
    use gcm_api::monitoring::{CreateTimeSeriesRequest, CreateTimeSeriesSummary, TimeSeries};
    use prometheus_wal::WalPosition;
    use prost::Message;
    use std::sync::Mutex;
    use std::time::Duration;
    use tonic::Code;
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
        let exporter = Exporter::start(sink, config, &stats, None);
        let mut handle = exporter.handle();
        // The queue holds every point of these tests, so pushing never blocks: all of them are
        // queued before the shard first runs (on this thread), whatever the clock does.
        for p in points {
            handle.push_blocking(p).unwrap();
        }
        drop(handle);
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
        stats.export.export_drops.count(reason)
    }

    #[tokio::test(start_paused = true)]
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
            stats
                .export
                .points_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            450
        );
    }

    #[tokio::test(start_paused = true)]
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
        assert_eq!(
            stats
                .export
                .retries
                .load(std::sync::atomic::Ordering::Relaxed),
            4
        );
        assert_eq!(stats.export.export_drops.total(), 0);
    }

    #[tokio::test(start_paused = true)]
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
        let started = tokio::time::Instant::now();
        let stats = run(sink.clone(), config, points).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(drops(&stats, ExportDrop::RetryBudgetExhausted), 2);
        assert_eq!(
            stats.export.point_status_counts()[Code::Unavailable as usize],
            2
        );
        assert!(
            stats
                .export
                .retries
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2
        );
        let got: Vec<String> = sink.accepted_series().iter().map(label).collect();
        assert_eq!(got, ["fine"], "the shard moved on");
    }

    #[tokio::test(start_paused = true)]
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
            stats
                .export
                .points_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(drops(&stats, ExportDrop::Rejected), 2);
        let codes = stats.export.point_status_counts();
        assert_eq!((codes[0], codes[Code::InvalidArgument as usize]), (3, 2));
    }

    /// Ten scrapes of 20 good series and two bad ones, each request holding a bad one refused
    /// as a whole with `message`: returns the refused requests and the stats.
    async fn ten_scrapes_with_two_bad_series(message: fn(usize) -> String) -> (usize, Arc<Stats>) {
        let sink = ScriptedSink::new(move |r| {
            let failures: Vec<String> = (r.time_series.iter().enumerate())
                .filter(|(_, ts)| label(ts).starts_with("bad"))
                .map(|(i, _)| message(i))
                .collect();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(Status::invalid_argument(format!(
                    "One or more TimeSeries could not be written: {}",
                    failures.join("; ")
                )))
            }
        });
        let mut labels: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        labels.insert(5, "bad1".into());
        labels.insert(15, "bad2".into());
        let all: Vec<SharedPrototype> = labels.iter().map(|l| series("m", l)).collect();
        let t = now() - 100_000;
        let points = (0..10)
            .flat_map(|scrape| all.iter().map(move |s| point(s, t + scrape * 10_000, 1.0)))
            .collect();
        let stats = run(sink.clone(), config(), points).await;
        assert_eq!(
            sink.accepted_series().len(),
            200,
            "every good point arrives"
        );
        let refused = *sink.attempts.lock().unwrap() - sink.accepted.lock().unwrap().len();
        (refused, stats)
    }

    #[tokio::test(start_paused = true)]
    async fn a_series_refused_for_its_own_fields_is_not_bisected_again() {
        let (refused, stats) = ten_scrapes_with_two_bad_series(|i| {
            format!(
                "Field timeSeries[{i}].metric.labels[0] had an invalid value of \"bad\": Label \
                 value is invalid.: timeSeries[{i}]"
            )
        })
        .await;
        // The first scrape's request names both series; later scrapes drop their points before
        // sending.
        assert!(refused <= 10, "{refused} refused requests");
        assert_eq!(drops(&stats, ExportDrop::Rejected), 2);
        assert_eq!(drops(&stats, ExportDrop::SeriesRefused), 18);

        // A refusal of the point (its interval) says nothing of the next point: not remembered.
        let (refused, stats) = ten_scrapes_with_two_bad_series(|i| {
            format!("Field timeSeries[{i}].points[0].interval.end_time had an invalid value")
        })
        .await;
        assert!(refused > 50, "{refused} refused requests");
        assert_eq!(drops(&stats, ExportDrop::Rejected), 20);
        assert_eq!(drops(&stats, ExportDrop::SeriesRefused), 0);
    }

    #[tokio::test(start_paused = true)]
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
        let codes = stats.export.point_status_counts();
        assert_eq!((codes[0], codes[Code::InvalidArgument as usize]), (8, 2));
        assert_eq!(
            stats
                .export
                .retries
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[tokio::test(start_paused = true)]
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
        assert_eq!(stats.export.export_drops.total(), 3);
    }

    // Real time: the API's age limit is judged by the wall clock, which a paused clock
    // does not move.
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
}
