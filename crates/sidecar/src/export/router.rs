//! The router: hands the reader's points to the shard owning their lane, and changes the shard
//! count without reordering or losing a point.
//!
//! The reader is the only producer, so resharding is done on its thread, between two points: it
//! closes every shard's queue, waits until each shard has sent (or given up, counted) everything
//! it holds, then starts the new shards. No point of a series is ever queued in two shards at
//! once, so each series' points still reach the API in WAL order. Lanes
//! ([`crate::model::lanes`]) do not move between restarts or reshards; only their owner does. This
//! module never batches, sends or converts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use super::client::TimeSeriesSink;
use super::queue::{CHUNK_BYTES, CHUNK_POINTS, Chunk, ChunkPool, QueuedPoint};
use super::settings::ExportConfig;
use super::shard::{ShardParts, spawn_shard};
use crate::model::lanes::{LANES, lane_of, shard_of_lane};
use crate::progress::DeliveryTracker;
use crate::stats::{ExportStats, ReaderStats, Stats};

type Spawner = dyn Fn(usize, usize) -> (mpsc::Sender<Chunk>, JoinHandle<()>) + Send + Sync;

/// State shared by the exporter, the reader's handle and the autoscaler.
struct Shared {
    /// The running shards' tasks; `None` once the exporter is finishing.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
    /// The queues of the shards started with the exporter, until the handle takes them.
    initial: std::sync::Mutex<Option<Vec<mpsc::Sender<Chunk>>>>,
    spawn: Box<Spawner>,
    /// Shard count asked for and not yet applied (0: none).
    requested: AtomicUsize,
    /// Shards running.
    current: AtomicUsize,
    /// A reshard is under way.
    resharding: AtomicBool,
    runtime: Handle,
    stats: Arc<ExportStats>,
    /// Chunk buffers coming back from the shards.
    pool: Arc<ChunkPool>,
}

/// The running export stage.
pub struct Exporter {
    shared: Arc<Shared>,
}

/// Where the reader hands points over. There is one per exporter: the reader is the only
/// producer, which is what lets it reshard between two points. Points are gathered per shard
/// and handed over in chunks: when a chunk is full, and at [`ExportHandle::flush_blocking`]
/// (the reader calls it after every WAL record, so points never wait for more to come).
pub struct ExportHandle {
    shared: Arc<Shared>,
    senders: Vec<mpsc::Sender<Chunk>>,
    /// Points gathered for each shard, not handed over yet.
    pending: Vec<Chunk>,
    /// Bytes of the points in `pending` (see [`QueuedPoint::queued_bytes`]).
    pending_bytes: Vec<usize>,
}

/// Asks the export stage for another shard count; cheap to clone.
#[derive(Clone)]
pub struct Resharder {
    shared: Arc<Shared>,
}

/// The export stage has shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportClosed;

impl Exporter {
    /// Starts `config.shards` shard tasks on the current tokio runtime. They count into
    /// `stats.export`; how much WAL the reader has read (`stats.reader`) tells them when it is
    /// idle. Completed tracked points are reported to `tracker`.
    pub fn start<S: TimeSeriesSink>(
        sink: Arc<S>,
        config: ExportConfig,
        stats: &Stats,
        tracker: Option<Arc<DeliveryTracker>>,
    ) -> Exporter {
        let (stats, reader) = (stats.export.clone(), stats.reader.clone());
        let runtime = Handle::current();
        let shards = config.shards.clamp(1, LANES);
        let (idle_tx, idle) = tokio::sync::watch::channel(0);
        let pool = Arc::new(ChunkPool::default());
        let parts = ShardParts {
            sink,
            config,
            stats: stats.clone(),
            tracker,
            idle,
            pool: pool.clone(),
            refused: Arc::default(),
        };
        let spawn_on = runtime.clone();
        let spawn: Box<Spawner> =
            Box::new(move |index, count| spawn_shard(&spawn_on, &parts, index, count));
        let (senders, tasks): (Vec<_>, Vec<_>) = (0..shards).map(|i| spawn(i, shards)).unzip();
        stats.set_shards(shards);
        let shared = Arc::new(Shared {
            tasks: Mutex::new(Some(tasks)),
            initial: std::sync::Mutex::new(Some(senders)),
            spawn,
            requested: AtomicUsize::new(0),
            current: AtomicUsize::new(shards),
            resharding: AtomicBool::new(false),
            runtime,
            stats: stats.clone(),
            pool,
        });
        tokio::spawn(watch_idle(Arc::downgrade(&shared), reader, idle_tx));
        Exporter { shared }
    }

    /// The reader's handle. Only the first call gets the queues; a later handle is closed.
    pub fn handle(&self) -> ExportHandle {
        let senders = self
            .shared
            .initial
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_default();
        ExportHandle {
            shared: self.shared.clone(),
            pending: senders.iter().map(|_| Vec::new()).collect(),
            pending_bytes: vec![0; senders.len()],
            senders,
        }
    }

    /// A way to ask for another shard count.
    pub fn resharder(&self) -> Resharder {
        Resharder {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting points once the handle is dropped, then waits until every shard has
    /// sent what it holds.
    pub async fn finish(self) {
        if let Ok(mut initial) = self.shared.initial.lock() {
            initial.take();
        }
        let tasks = self.shared.tasks.lock().await.take().unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// How long the reader must have read nothing before the shards send their partial batches
/// (rather than waiting up to the batch deadline for points that are not coming).
pub const IDLE_FLUSH_AFTER: Duration = Duration::from_millis(500);

/// Signals the shards once per quiet spell of the reader of at least [`IDLE_FLUSH_AFTER`];
/// ends with the export stage.
async fn watch_idle(shared: Weak<Shared>, reader: Arc<ReaderStats>, idle: watch::Sender<u64>) {
    let mut tick = tokio::time::interval(IDLE_FLUSH_AFTER / 4);
    let mut last = reader.wal_bytes_read();
    let mut read_at = tokio::time::Instant::now();
    let mut signalled = true;
    loop {
        tick.tick().await;
        if shared.strong_count() == 0 {
            return;
        }
        let now = reader.wal_bytes_read();
        if now != last {
            (last, read_at, signalled) = (now, tokio::time::Instant::now(), false);
        } else if !signalled && read_at.elapsed() >= IDLE_FLUSH_AFTER {
            idle.send_modify(|generation| *generation += 1);
            signalled = true;
        }
    }
}

impl Resharder {
    /// Asks for `shards` shards (clamped to 1..=`LANES`); the reader applies it before its
    /// next point.
    pub fn request(&self, shards: usize) {
        self.shared.requested.store(shards.clamp(1, LANES), Relaxed);
    }

    /// Shards running now.
    pub fn current(&self) -> usize {
        self.shared.current.load(Relaxed)
    }

    /// Whether a requested change has not been applied yet.
    pub fn busy(&self) -> bool {
        self.shared.requested.load(Relaxed) != 0 || self.shared.resharding.load(Relaxed)
    }
}

impl ExportHandle {
    /// Queues a point for the shard owning its lane and returns the lane; hands the shard a
    /// full chunk, blocking while its queue is full. Must not be called from an async task.
    pub fn push_blocking(&mut self, item: QueuedPoint) -> Result<usize, ExportClosed> {
        if self.shared.requested.load(Relaxed) != 0 {
            let wanted = self.shared.requested.swap(0, Relaxed);
            if wanted != 0 && wanted != self.senders.len() {
                self.reshard(wanted)?;
            }
        }
        self.shared.stats.queued();
        let lane = lane_of(item.series.hash);
        let shard = shard_of_lane(lane, self.senders.len());
        let chunk = self.pending.get_mut(shard).ok_or(ExportClosed)?;
        if chunk.capacity() == 0 {
            *chunk = self.shared.pool.take();
        }
        let bytes = &mut self.pending_bytes[shard];
        *bytes += item.queued_bytes();
        chunk.push(item);
        if chunk.len() >= CHUNK_POINTS || *bytes >= CHUNK_BYTES {
            self.hand_over(shard)?;
        }
        Ok(lane)
    }

    /// Hands every gathered point to its shard, blocking while a queue is full.
    pub fn flush_blocking(&mut self) -> Result<(), ExportClosed> {
        for shard in 0..self.pending.len() {
            if !self.pending[shard].is_empty() {
                self.hand_over(shard)?;
            }
        }
        Ok(())
    }

    fn hand_over(&mut self, shard: usize) -> Result<(), ExportClosed> {
        let chunk = std::mem::take(&mut self.pending[shard]);
        self.pending_bytes[shard] = 0;
        let sender = &self.senders[shard];
        match sender.try_send(chunk) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ExportClosed),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                // The shards are not keeping up: how long the reader waits is what tells the
                // autoscaler that more shards may help. It waits until half the queue is free,
                // not one chunk: it is then woken once for every few chunks the shard takes
                // instead of once per chunk (each wake-up a context switch on both threads),
                // and the shard still has the other half to send meanwhile.
                let started = std::time::Instant::now();
                let sent = send_when_half_free(&self.shared.runtime, sender, chunk);
                self.shared
                    .stats
                    .reader_blocked_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                sent
            }
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Drains every shard, then starts `shards` new ones. Blocks the reader meanwhile (the WAL
    /// is the buffer).
    pub fn reshard(&mut self, shards: usize) -> Result<(), ExportClosed> {
        let shards = shards.clamp(1, LANES);
        let shared = self.shared.clone();
        shared.resharding.store(true, Relaxed);
        let result = (|| {
            // What was gathered goes to the old shards, before their queues close.
            self.flush_blocking()?;
            let mut tasks = shared.tasks.blocking_lock();
            // Closing the queues is what makes the old shards drain and end.
            self.senders.clear();
            let Some(running) = tasks.as_mut() else {
                return Err(ExportClosed);
            };
            let from = running.len();
            let started = std::time::Instant::now();
            for task in running.drain(..) {
                let _ = shared.runtime.block_on(task);
            }
            let (senders, new_tasks): (Vec<_>, Vec<_>) =
                (0..shards).map(|i| (shared.spawn)(i, shards)).unzip();
            *running = new_tasks;
            self.pending = senders.iter().map(|_| Vec::new()).collect();
            self.pending_bytes = vec![0; senders.len()];
            self.senders = senders;
            shared.current.store(shards, Relaxed);
            shared.stats.set_shards(shards);
            tracing::info!(from, to = shards, drained_in = ?started.elapsed(), "resharded");
            Ok(())
        })();
        shared.resharding.store(false, Relaxed);
        result
    }
}

/// Sends `item` on the full queue `sender` once half of the queue is free (at least one slot).
fn send_when_half_free<T>(
    runtime: &Handle,
    sender: &mpsc::Sender<T>,
    item: T,
) -> Result<(), ExportClosed> {
    let room = (sender.max_capacity() / 2).max(1);
    let mut permits = runtime
        .block_on(sender.reserve_many(room))
        .map_err(|_| ExportClosed)?;
    if let Some(permit) = permits.next() {
        permit.send(item);
    }
    // The other permits go back to the queue, for the next items.
    Ok(())
}

impl Drop for ExportHandle {
    /// Hands over what is still gathered (the reader flushes after every record, so normally
    /// nothing is left).
    fn drop(&mut self) {
        if self.pending.iter().any(|c| !c.is_empty()) {
            let _ = self.flush_blocking();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::client::SendError;
    use crate::export::queue::Delivery;
    use crate::model::{Point, PointKind, PointValue, SeriesPrototype, SharedPrototype};
    use crate::progress::PointAck;
    use bytes::Bytes;
    use gcm_api::monitoring::CreateTimeSeriesRequest;
    use gcm_api::monitoring::typed_value::Value;
    use prometheus_wal::WalPosition;
    use prost::Message;
    use std::time::Duration;

    /// Accepts every request after a short wait (so points are in flight while resharding)
    /// and records which shard sent what.
    #[derive(Default)]
    struct SlowSink {
        requests: std::sync::Mutex<Vec<(usize, CreateTimeSeriesRequest)>>,
    }

    impl TimeSeriesSink for SlowSink {
        async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
            self.create_time_series_from(usize::MAX, request).await
        }

        async fn create_time_series_from(
            &self,
            shard: usize,
            request: Bytes,
        ) -> Result<(), SendError> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let request = CreateTimeSeriesRequest::decode(request).unwrap();
            self.requests.lock().unwrap().push((shard, request));
            Ok(())
        }
    }

    fn series(i: usize) -> SharedPrototype {
        Arc::new(SeriesPrototype::new(
            "external.googleapis.com/prometheus/m".into(),
            &[("i".to_string(), i.to_string())],
            "generic_task",
            &[("job", "j".to_string())],
            PointKind::GaugeDouble,
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_of_large_distributions_hold_fewer_points_so_queues_are_bounded_in_bytes() {
        use crate::model::{Buckets, Distribution};
        let sink = Arc::new(SlowSink::default());
        let stats = Arc::new(Stats::default());
        let config = ExportConfig::new("p", 1).without_time_limits();
        let exporter = Exporter::start(sink, config, &stats, None);
        let mut handle = exporter.handle();
        let point = |i: usize, buckets: usize| QueuedPoint {
            series: series(i),
            point: Point {
                start_ms: Some(0),
                end_ms: 1_000,
                value: PointValue::Distribution(Box::new(Distribution {
                    count: 0,
                    mean: 0.0,
                    sum_of_squared_deviation: 0.0,
                    buckets: Buckets::Explicit((0..buckets).map(|b| b as f64).collect()),
                    bucket_counts: vec![0; buckets + 1],
                    exemplars: Vec::new(),
                })),
            },
            position: WalPosition::default(),
            delivery: None,
        };
        let big = point(0, 100).queued_bytes();
        assert!(big > 5 * point(0, 1).queued_bytes(), "{big}");
        let handle = tokio::task::spawn_blocking(move || {
            for i in 0..40 {
                handle.push_blocking(point(i, 100)).unwrap();
                let bytes: usize = handle.pending[0].iter().map(|p| p.queued_bytes()).sum();
                assert_eq!(bytes, handle.pending_bytes[0]);
                assert!(bytes < CHUNK_BYTES, "a full chunk is handed over");
            }
            handle
        })
        .await
        .unwrap();
        assert!(handle.pending[0].len() < CHUNK_BYTES / big + 1);
        drop(handle);
        exporter.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_waiting_on_a_full_queue_is_woken_once_half_of_it_is_free() {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        for i in 0..4 {
            tx.try_send(i).unwrap();
        }
        let sent = Arc::new(AtomicBool::new(false));
        let (runtime, done) = (Handle::current(), sent.clone());
        let reader = std::thread::spawn(move || {
            send_when_half_free(&runtime, &tx, 4).unwrap();
            done.store(true, Relaxed);
            tx
        });
        assert_eq!(rx.recv().await, Some(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!sent.load(Relaxed), "woken with one slot free of four");
        assert_eq!(rx.recv().await, Some(1));
        let tx = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        assert!(sent.load(Relaxed));
        // The item went in behind the others, and the spare slot is free again.
        tx.try_send(5).unwrap();
        for expected in [2, 3, 4, 5] {
            assert_eq!(rx.recv().await, Some(expected));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_reader_makes_partial_batches_leave_before_their_deadline() {
        let sink = Arc::new(SlowSink::default());
        let stats = Arc::new(Stats::default());
        let mut config = ExportConfig::new("p", 2).without_time_limits();
        config.batch_deadline = Duration::from_secs(600);
        let exporter = Exporter::start(sink.clone(), config, &stats, None);
        let mut handle = exporter.handle();
        let points: Vec<QueuedPoint> = (0..10)
            .map(|i| QueuedPoint {
                series: series(i),
                point: Point {
                    start_ms: None,
                    end_ms: 1_000,
                    value: PointValue::Double(1.0),
                },
                position: WalPosition::default(),
                delivery: None,
            })
            .collect();
        // The export stage runs a moment (its idle watch takes a first look) before the reader
        // reads something, hands it over, and then finds nothing more. (The queues hold every
        // point, so the handle never blocks on this thread.)
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        stats.reader.wal_record_read(WalPosition {
            segment: 0,
            offset: 100,
        });
        for p in points {
            handle.push_blocking(p).unwrap();
        }
        handle.flush_blocking().unwrap();
        let count = || {
            sink.requests
                .lock()
                .unwrap()
                .iter()
                .map(|(_, r)| r.time_series.len())
                .sum::<usize>()
        };
        while count() < 10 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "partial batches still waiting for their deadline"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not before the reader has been quiet for a while.
        assert!(started.elapsed() >= IDLE_FLUSH_AFTER);
        drop(handle);
        exporter.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resharding_keeps_every_series_in_order_and_loses_nothing() {
        let sink = Arc::new(SlowSink::default());
        let stats = Arc::new(Stats::default());
        let tracker = Arc::new(DeliveryTracker::new(WalPosition::default()));
        let mut config = ExportConfig::new("p", 1).without_time_limits();
        config.batch_deadline = Duration::from_millis(5);
        config.capacity_per_shard = 50;
        let exporter = Exporter::start(sink.clone(), config, &stats, Some(tracker.clone()));
        let resharder = exporter.resharder();
        let mut handle = exporter.handle();
        let all: Vec<SharedPrototype> = (0..300).map(series).collect();
        let acks: Vec<_> = (0..300).map(|i| tracker.ack_for(i, i).unwrap()).collect();
        const ROUNDS: usize = 40;
        let reader_tracker = tracker.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let mut pushed = vec![0u64; LANES];
            let plan = [3, 7, 2, 1, 16, 5];
            for round in 0..ROUNDS {
                if round % 6 == 3 {
                    // Asked for by the autoscaler, applied before the next point.
                    resharder.request(plan[(round / 6) % plan.len()]);
                }
                let position = WalPosition {
                    segment: 1,
                    offset: round as u64 + 1,
                };
                let mut touched = Vec::new();
                for (i, s) in all.iter().enumerate() {
                    let lane = handle
                        .push_blocking(QueuedPoint {
                            series: s.clone(),
                            point: Point {
                                start_ms: None,
                                end_ms: 1_000 + round as i64 * 10_000,
                                value: PointValue::Double(round as f64),
                            },
                            position,
                            delivery: Some(Delivery {
                                ack: PointAck::Series(acks[i], None),
                                index: i as u64,
                            }),
                        })
                        .unwrap();
                    pushed[lane] += 1;
                    touched.push((lane, pushed[lane]));
                }
                reader_tracker.record_queued(position, &touched);
            }
            handle.shards()
        })
        .await
        .unwrap();
        exporter.finish().await;
        assert_ne!(pushed, 1, "the last reshard was applied");

        let requests = sink.requests.lock().unwrap();
        let shards_used: std::collections::HashSet<usize> =
            requests.iter().map(|(s, _)| *s).collect();
        assert!(shards_used.len() >= 7, "{shards_used:?}");
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); 300];
        for (_, r) in requests.iter() {
            assert!(r.time_series.len() <= 200);
            for ts in &r.time_series {
                let i: usize = ts.metric.as_ref().unwrap().labels["i"].parse().unwrap();
                let Some(Value::DoubleValue(v)) = ts.points[0].value.as_ref().unwrap().value else {
                    panic!("not a double")
                };
                values[i].push(v);
            }
        }
        let want: Vec<f64> = (0..ROUNDS).map(|r| r as f64).collect();
        for (i, got) in values.iter().enumerate() {
            assert_eq!(got, &want, "series {i}: lost, repeated or reordered points");
        }
        assert_eq!(
            tracker.watermark(),
            WalPosition {
                segment: 1,
                offset: ROUNDS as u64
            },
            "every record is delivered"
        );
    }

    #[tokio::test]
    async fn a_second_handle_is_closed_and_finish_ends_shards() {
        let exporter = Exporter::start(
            Arc::new(SlowSink::default()),
            ExportConfig::new("p", 2),
            &Stats::default(),
            None,
        );
        let first = exporter.handle();
        assert_eq!(first.shards(), 2);
        let mut second = exporter.handle();
        assert_eq!(second.shards(), 0);
        let s = series(1);
        let item = QueuedPoint {
            series: s,
            point: Point {
                start_ms: None,
                end_ms: 1,
                value: PointValue::Double(1.0),
            },
            position: WalPosition::default(),
            delivery: None,
        };
        assert_eq!(
            tokio::task::spawn_blocking(move || second.push_blocking(item))
                .await
                .unwrap(),
            Err(ExportClosed)
        );
        drop(first);
        exporter.finish().await;
    }
}
