//! Counters, the summary line, injected faults and the `top` collector.

mod common;

use common::*;
use gcm_emulator::{RejectReason, top};
use tonic::{Code, Status};

#[tokio::test]
async fn counters_add_up_across_requests() {
    let mut h = start(config()).await;
    h.create(vec![
        gauge("custom.googleapis.com/a", &[], at(0), 1.0),
        gauge("custom.googleapis.com/b", &[], at(0), 1.0),
    ])
    .await
    .unwrap();
    h.create(vec![
        gauge("custom.googleapis.com/a", &[], at(0), 1.0),
        gauge("custom.googleapis.com/c", &[], at(0), 1.0),
    ])
    .await
    .unwrap_err();
    h.create(vec![gauge("custom.googleapis.com/a", &[], at(-10), 1.0)])
        .await
        .unwrap_err();
    h.client
        .create_time_series(gcm_api::monitoring::CreateTimeSeriesRequest {
            name: "bad".into(),
            time_series: vec![gauge("custom.googleapis.com/z", &[], at(0), 1.0)],
        })
        .await
        .unwrap_err();

    let stats = h.emulator.store().stats();
    assert_eq!(stats.create_requests, 4);
    assert_eq!(stats.requests_rejected, 2);
    assert_eq!(stats.requests_partially_rejected, 1);
    assert_eq!(stats.points_accepted, 3);
    assert_eq!(stats.points_rejected, 3);
    assert_eq!(
        stats.rejected_by_reason.get(&RejectReason::OutOfOrder),
        Some(&2)
    );
    assert_eq!(
        stats.rejected_by_reason.get(&RejectReason::InvalidName),
        Some(&1)
    );
    assert_eq!(stats.series_stored, 3);
    assert_eq!(stats.metric_types, 3);

    let line = stats.summary_line();
    for part in [
        "requests=4",
        "requests_rejected=2",
        "series=3",
        "points_accepted=3",
        "points_rejected=3",
        "rejected_by_reason=invalid_name=1,out_of_order=2",
        "metric_types=3",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}

#[tokio::test]
async fn injected_faults_answer_the_next_creates_then_stop() {
    let mut h = start(config()).await;
    h.emulator
        .fail_next_creates(2, Status::unavailable("try later"));

    for _ in 0..2 {
        let status = h
            .create(vec![gauge("custom.googleapis.com/f", &[], at(0), 1.0)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "try later");
    }
    h.create(vec![gauge("custom.googleapis.com/f", &[], at(0), 1.0)])
        .await
        .expect("faults used up");

    let stats = h.emulator.store().stats();
    assert_eq!(
        stats.rejected_by_reason.get(&RejectReason::InjectedFault),
        Some(&2)
    );
    assert_eq!(stats.points_accepted, 1);
}

#[tokio::test]
async fn top_collects_kind_value_type_series_and_points_per_metric() {
    let mut h = start(config()).await;
    h.create(vec![
        gauge("custom.googleapis.com/g", &[("i", "1")], at(0), 1.0),
        gauge("custom.googleapis.com/g", &[("i", "2")], at(0), 1.0),
        counter("custom.googleapis.com/c", &[], at(-60), at(0), 1),
    ])
    .await
    .unwrap();
    h.create(vec![gauge(
        "custom.googleapis.com/g",
        &[("i", "1")],
        at(30),
        2.0,
    )])
    .await
    .unwrap();

    let rows = top::collect(&mut h.client, PROJECT).await.unwrap();

    assert_eq!(
        rows,
        [
            top::MetricRow {
                metric_type: "custom.googleapis.com/c".into(),
                metric_kind: "CUMULATIVE".into(),
                value_type: "INT64".into(),
                series: 1,
                points: 1,
            },
            top::MetricRow {
                metric_type: "custom.googleapis.com/g".into(),
                metric_kind: "GAUGE".into(),
                value_type: "DOUBLE".into(),
                series: 2,
                points: 3,
            },
        ]
    );
    assert!(top::render(&rows).contains("TOTAL (2 metric types)"));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = start(config()).await;
    let endpoint = h.running.endpoint();
    h.running.shutdown().await.unwrap();
    let connected = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await;
    assert!(connected.is_err(), "nothing listens after shutdown");
}
