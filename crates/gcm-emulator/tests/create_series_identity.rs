//! `CreateTimeSeries`: the rules on what identifies a series — no duplicates in a request,
//! metric type and label syntax, a monitored resource. Each refused series is reported by index
//! and metric type while the valid series of the same request are written, with a
//! `CreateTimeSeriesSummary` in the status details.

mod common;

use common::*;
use gcm_emulator::RejectReason;

#[tokio::test]
async fn the_same_series_twice_in_one_request_keeps_the_first() {
    let mut h = start(config()).await;
    let status = h
        .create(vec![
            gauge("custom.googleapis.com/d", &[("a", "1")], at(0), 1.0),
            gauge("custom.googleapis.com/other", &[], at(0), 1.0),
            gauge("custom.googleapis.com/d", &[("a", "1")], at(30), 2.0),
        ])
        .await
        .unwrap_err();
    partial_failure(&status, 3, 2);
    names_series(
        &status,
        "2",
        "custom.googleapis.com/d",
        "Duplicate TimeSeries encountered",
    );
    let stored = h
        .emulator
        .store()
        .series(PROJECT, "custom.googleapis.com/d");
    assert_eq!(stored[0].points.len(), 1);
    assert_eq!(
        stored[0].points[0].interval.as_ref().unwrap().end_time,
        Some(at(0))
    );
}

#[tokio::test]
async fn same_metric_with_other_labels_or_resource_is_not_a_duplicate() {
    let mut h = start(config()).await;
    let mut other_resource = gauge("custom.googleapis.com/d", &[("a", "1")], at(0), 1.0);
    other_resource
        .resource
        .as_mut()
        .unwrap()
        .labels
        .insert("zone".into(), "b".into());
    h.create(vec![
        gauge("custom.googleapis.com/d", &[("a", "1")], at(0), 1.0),
        gauge("custom.googleapis.com/d", &[("a", "2")], at(0), 1.0),
        other_resource,
    ])
    .await
    .expect("three distinct series");
    assert_eq!(
        h.emulator
            .store()
            .series(PROJECT, "custom.googleapis.com/d")
            .len(),
        3
    );
}

#[tokio::test]
async fn metric_types_must_be_url_like_under_a_writable_domain() {
    let mut h = start(config()).await;
    for bad in [
        "external.googleapis.com/prometheus/job:requests:rate5m",
        "custom.googleapis.com",
        "custom.googleapis.com/",
        "compute.googleapis.com/instance/cpu/utilization",
        "custom.googleapis.com/with space",
    ] {
        let status = refused_beside_a_good_one(
            &mut h,
            gauge(bad, &[], at(0), 1.0),
            RejectReason::InvalidMetricType,
        )
        .await;
        names_series(&status, "1", bad, "Field metric.type had an invalid value");
    }
    h.create(vec![
        gauge(
            "prometheus.googleapis.com/job:requests:rate5m/gauge",
            &[],
            at(0),
            1.0,
        ),
        gauge("workload.googleapis.com/a.b-c/d_e", &[], at(0), 1.0),
    ])
    .await
    .expect("colons are fine under prometheus.googleapis.com; dots and dashes in paths");
}

#[tokio::test]
async fn a_series_without_metric_is_refused() {
    let mut h = start(config()).await;
    let mut bad = gauge("custom.googleapis.com/x", &[], at(0), 1.0);
    bad.metric = None;
    let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidMetricType).await;
    names_series(
        &status,
        "1",
        "",
        "metric type must be a URL-formatted string",
    );
}

#[tokio::test]
async fn label_keys_must_be_word_characters_starting_with_a_letter() {
    let mut h = start(config()).await;
    for key in ["a:b", "_private", "9lives", "dash-ed"] {
        let bad = gauge("custom.googleapis.com/l", &[(key, "v")], at(0), 1.0);
        let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidLabel).await;
        names_series(&status, "1", "custom.googleapis.com/l", key);
    }
    h.create(vec![gauge(
        "custom.googleapis.com/l",
        &[("statusCode", "200"), ("le_2", "x")],
        at(0),
        1.0,
    )])
    .await
    .expect("letters, digits and underscores are fine");
}

#[tokio::test]
async fn label_values_longer_than_1024_characters_are_refused() {
    let mut h = start(config()).await;
    let long = "v".repeat(1025);
    let bad = gauge("custom.googleapis.com/l", &[("k", &long)], at(0), 1.0);
    let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidLabel).await;
    names_series(&status, "1", "custom.googleapis.com/l", "at most 1024");
    let fits = "v".repeat(1024);
    h.create(vec![gauge(
        "custom.googleapis.com/l",
        &[("k", &fits)],
        at(0),
        1.0,
    )])
    .await
    .unwrap();
}

#[tokio::test]
async fn a_series_needs_a_monitored_resource_type() {
    let mut h = start(config()).await;
    let mut bad = gauge("custom.googleapis.com/r", &[], at(0), 1.0);
    bad.resource = None;
    let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidResource).await;
    names_series(&status, "1", "custom.googleapis.com/r", "resource.type");
}
