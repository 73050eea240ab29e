//! `CreateTimeSeries`: what is accepted and stored, and the request-level rules that refuse a
//! whole request.

mod common;

use common::*;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::CreateTimeSeriesRequest;
use gcm_emulator::RejectReason;
use tonic::Code;

#[tokio::test]
async fn valid_request_of_every_shape_the_sidecar_sends_is_accepted_and_stored() {
    let mut h = start(config()).await;
    let mut bool_gauge = gauge("custom.googleapis.com/up", &[], at(0), 0.0);
    bool_gauge.value_type = ValueType::Bool as i32;
    bool_gauge.points[0].value = Some(gcm_api::monitoring::TypedValue {
        value: Some(gcm_api::monitoring::typed_value::Value::BoolValue(true)),
    });
    let mut gauge_with_start = gauge("custom.googleapis.com/temp", &[("room", "b")], at(0), 20.5);
    gauge_with_start.points[0]
        .interval
        .as_mut()
        .unwrap()
        .start_time = Some(at(0));

    h.create(vec![
        gauge(
            "external.googleapis.com/prometheus/temp",
            &[("room", "a")],
            at(0),
            21.5,
        ),
        gauge_with_start,
        counter(
            "external.googleapis.com/prometheus/requests_total",
            &[("code", "200")],
            at(-60),
            at(0),
            7,
        ),
        histogram(
            "external.googleapis.com/prometheus/latency",
            at(-60),
            at(0),
            &[0.1, 1.0],
            &[1, 2, 3],
        ),
        bool_gauge,
    ])
    .await
    .expect("accepted");

    let store = h.emulator.store();
    let temp = store.series(PROJECT, "external.googleapis.com/prometheus/temp");
    assert_eq!(temp.len(), 1);
    assert_eq!(temp[0].metric_kind, MetricKind::Gauge);
    assert_eq!(temp[0].value_type, ValueType::Double);
    assert_eq!(temp[0].resource, resource());
    assert_eq!(temp[0].points.len(), 1);
    let requests = store.series(PROJECT, "external.googleapis.com/prometheus/requests_total");
    assert_eq!(requests[0].metric_kind, MetricKind::Cumulative);
    assert_eq!(requests[0].value_type, ValueType::Int64);
    let latency = store.series(PROJECT, "external.googleapis.com/prometheus/latency");
    assert_eq!(latency[0].value_type, ValueType::Distribution);

    let stats = store.stats();
    assert_eq!(stats.create_requests, 1);
    assert_eq!(stats.points_accepted, 5);
    assert_eq!(stats.points_rejected, 0);
    assert_eq!(stats.series_stored, 5);
    assert_eq!(stats.metric_types, 5);
}

#[tokio::test]
async fn first_write_auto_creates_the_metric_descriptor() {
    let mut h = start(config()).await;
    h.create(vec![counter(
        "custom.googleapis.com/c",
        &[("b", "1"), ("a", "2")],
        at(-60),
        at(0),
        1,
    )])
    .await
    .unwrap();

    let d = h
        .emulator
        .store()
        .metric_descriptor(PROJECT, "custom.googleapis.com/c")
        .expect("created");
    assert_eq!(
        d.name,
        format!("projects/{PROJECT}/metricDescriptors/custom.googleapis.com/c")
    );
    assert_eq!(d.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(d.value_type, ValueType::Int64 as i32);
    let keys: Vec<_> = d.labels.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test]
async fn unspecified_kind_and_value_type_default_to_gauge_and_the_points_type() {
    let mut h = start(config()).await;
    let mut ts = gauge("custom.googleapis.com/g", &[], at(0), 1.0);
    ts.metric_kind = 0;
    ts.value_type = 0;
    h.create(vec![ts]).await.unwrap();
    let d = h
        .emulator
        .store()
        .metric_descriptor(PROJECT, "custom.googleapis.com/g")
        .unwrap();
    assert_eq!(d.metric_kind, MetricKind::Gauge as i32);
    assert_eq!(d.value_type, ValueType::Double as i32);
}

#[tokio::test]
async fn two_hundred_series_are_accepted() {
    let mut h = start(config()).await;
    let values: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let series = values
        .iter()
        .map(|v| gauge("custom.googleapis.com/many", &[("i", v)], at(0), 1.0))
        .collect();
    h.create(series)
        .await
        .expect("200 is the limit, not beyond it");
    assert_eq!(
        h.emulator
            .store()
            .series(PROJECT, "custom.googleapis.com/many")
            .len(),
        200
    );
}

#[tokio::test]
async fn more_than_two_hundred_series_refuse_the_whole_request() {
    let mut h = start(config()).await;
    let values: Vec<String> = (0..201).map(|i| i.to_string()).collect();
    let series = values
        .iter()
        .map(|v| gauge("custom.googleapis.com/many", &[("i", v)], at(0), 1.0))
        .collect();

    let status = h.create(series).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("at most 200"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("timeSeries[200]"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("custom.googleapis.com/many"),
        "{}",
        status.message()
    );
    assert!(gcm_api::summary_from_status(&status).is_none());
    assert_eq!(h.points("custom.googleapis.com/many"), 0, "nothing written");
    let stats = h.emulator.store().stats();
    assert_eq!(stats.requests_rejected, 1);
    assert_eq!(
        stats.rejected_by_reason.get(&RejectReason::TooManySeries),
        Some(&201)
    );
}

#[tokio::test]
async fn name_must_be_projects_slash_id() {
    let mut h = start(config()).await;
    for name in [
        "",
        "test-project",
        "projects/",
        "projects/a/b",
        "organizations/1",
    ] {
        let status = h
            .client
            .create_time_series(CreateTimeSeriesRequest {
                name: name.into(),
                time_series: vec![gauge("custom.googleapis.com/g", &[], at(0), 1.0)],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        assert!(
            status.message().contains("Field name"),
            "{}",
            status.message()
        );
    }
    assert_eq!(h.emulator.store().stats().points_accepted, 0);
    assert_eq!(
        h.emulator
            .store()
            .stats()
            .rejected_by_reason
            .get(&RejectReason::InvalidName),
        Some(&5)
    );
}

#[tokio::test]
async fn a_request_without_series_is_refused() {
    let mut h = start(config()).await;
    let status = h.create(vec![]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("timeSeries"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn projects_are_kept_apart() {
    let mut h = start(config()).await;
    h.client
        .create_time_series(CreateTimeSeriesRequest {
            name: "projects/other".into(),
            time_series: vec![gauge("custom.googleapis.com/g", &[], at(0), 1.0)],
        })
        .await
        .unwrap();
    assert_eq!(h.emulator.store().projects(), ["other"]);
    assert!(h.emulator.store().all_series(PROJECT).is_empty());
    assert_eq!(h.emulator.store().all_series("other").len(), 1);
}
