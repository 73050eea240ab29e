//! The export stage against an emulator that misbehaves as the real API can: a share of calls
//! failing with UNAVAILABLE, an outage, and partial failures, all at once. Every point must end
//! accepted exactly once or counted under a reason, and nothing may stall.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gcm_emulator::{Emulator, EmulatorConfig, Outage, RejectReason};
use prometheus_wal::WalPosition;
use stackdriver_prometheus_sidecar::config::ApiAddress;
use stackdriver_prometheus_sidecar::export::{
    ExportConfig, ExportDrop, Exporter, GrpcSink, QueuedPoint,
};
use stackdriver_prometheus_sidecar::model::{Point, PointKind, PointValue, SeriesPrototype};
use stackdriver_prometheus_sidecar::stats::Stats;

const SERIES: usize = 40;

/// Feeds `rounds` points per series, one round every `every`, through an exporter sending to an
/// emulator failing 30% of calls, refusing 5% of series, and down during `outage`; then checks
/// the outcome.
async fn survive(outage: Outage, rounds: usize, every: Duration) {
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        fault_ratio: 0.3,
        fault_code: tonic::Code::Unavailable,
        partial_failure_ratio: 0.05,
        outage: Some(outage),
        fault_seed: 7,
        ..EmulatorConfig::default()
    });
    let running = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let sink = GrpcSink::new(
        &ApiAddress {
            url: format!("http://{}/?auth=false", running.addr),
            host: running.addr.ip().to_string(),
            port: running.addr.port(),
            auth: false,
            restricted_ips: false,
        },
        Duration::from_secs(10),
        2,
    )
    .unwrap();
    let mut config = ExportConfig::new("proj", 4);
    config.batch_deadline = Duration::from_millis(200);
    let stats = Arc::new(Stats::default());
    let exporter = Exporter::start(Arc::new(sink), config, &stats, None);

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Well within the API's 25 hours, 10 s apart (the sampling period is 5 s).
    let t0 = now_ms - 3 * 3_600_000;
    let series: Vec<Arc<SeriesPrototype>> = (0..SERIES)
        .map(|i| {
            Arc::new(SeriesPrototype::new(
                "external.googleapis.com/prometheus/fault_test".into(),
                &[("series".into(), i.to_string())],
                "generic_task",
                &[("job", "faults".into()), ("task_id", "1".into())],
                PointKind::GaugeDouble,
            ))
        })
        .collect();
    let mut handle = exporter.handle();
    let started = Instant::now();
    let feeder = tokio::task::spawn_blocking(move || {
        for round in 0..rounds {
            for s in &series {
                let point = QueuedPoint {
                    series: s.clone(),
                    point: Point {
                        start_ms: None,
                        end_ms: t0 + round as i64 * 10_000,
                        value: PointValue::Double(round as f64),
                    },
                    position: WalPosition::default(),
                    delivery: None,
                };
                handle.push_blocking(point).unwrap();
            }
            std::thread::sleep(every);
        }
    });
    feeder.await.unwrap();
    exporter.finish().await;
    let took = started.elapsed();
    let fed = (rounds * SERIES) as u64;
    let feeding = every * rounds as u32;
    assert!(
        took < feeding.max(outage.after + outage.duration) + Duration::from_secs(60),
        "export took {took:?}: something stalled"
    );

    // Every point taken by the shards is accepted or counted under one reason.
    let sent = stats.export.points_sent.load(Relaxed);
    let rejected = stats.export.export_drops.count(ExportDrop::Rejected);
    assert_eq!(
        sent + stats.export.export_drops.total(),
        fed,
        "sent {sent} + dropped must be what was fed"
    );
    assert_eq!(
        stats
            .export
            .export_drops
            .count(ExportDrop::RetryBudgetExhausted),
        0
    );
    assert!(rejected > 0, "the injected partial failures were counted");
    assert_eq!(
        rejected,
        stats.export.export_drops.total(),
        "only partial failures lose points"
    );
    assert!(stats.export.retries.load(Relaxed) > 0);

    // What the emulator holds is exactly what the sidecar counts as sent, each point once, in
    // order: a point sent twice or late would have been refused as out of order.
    let store = emulator.store();
    let held = store.all_series("proj");
    let mut points = HashSet::new();
    for s in &held {
        for p in &s.points {
            let end = p.interval.unwrap().end_time.unwrap();
            assert!(points.insert((s.metric.labels["series"].clone(), end.seconds)));
        }
    }
    assert_eq!(points.len() as u64, sent);
    let emulator_stats = store.stats();
    assert_eq!(emulator_stats.points_accepted, sent);
    let other_refusals: Vec<_> = emulator_stats
        .rejected_by_reason
        .iter()
        .filter(|(reason, _)| **reason != RejectReason::InjectedFault)
        .collect();
    assert!(
        other_refusals.is_empty(),
        "refused for real: {other_refusals:?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_point_arrives_once_or_is_counted_through_failures_and_a_short_outage() {
    let outage = Outage {
        after: Duration::from_secs(2),
        duration: Duration::from_secs(6),
    };
    survive(outage, 30, Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_point_arrives_once_or_is_counted_through_a_two_minute_outage() {
    let outage = Outage {
        after: Duration::from_secs(3),
        duration: Duration::from_secs(120),
    };
    survive(outage, 62, Duration::from_secs(2)).await;
}
