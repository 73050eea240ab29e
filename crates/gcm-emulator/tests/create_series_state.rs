//! `CreateTimeSeries`: the rules that compare a point with what was written before — order,
//! sampling period, cumulative intervals, metric descriptor conflicts and label limits.

mod common;

use std::time::Duration;

use common::*;
use gcm_emulator::{EmulatorConfig, RejectReason};

fn counted(h: &Harness, reason: RejectReason) -> u64 {
    h.emulator
        .store()
        .stats()
        .rejected_by_reason
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn end_times_must_increase_per_series() {
    let mut h = start(config()).await;
    h.create(vec![gauge("custom.googleapis.com/o", &[], at(60), 1.0)])
        .await
        .unwrap();

    for end in [60, 30] {
        let status = h
            .create(vec![gauge("custom.googleapis.com/o", &[], at(end), 2.0)])
            .await
            .unwrap_err();
        partial_failure(&status, 1, 0);
        names_series(
            &status,
            "0",
            "custom.googleapis.com/o",
            "Points must be written in order",
        );
        assert!(
            status
                .message()
                .contains("older end time than the most recent point")
        );
    }
    assert_eq!(counted(&h, RejectReason::OutOfOrder), 2);

    h.create(vec![gauge("custom.googleapis.com/o", &[], at(70), 3.0)])
        .await
        .expect("later is fine");
    assert_eq!(h.points("custom.googleapis.com/o"), 2);
}

#[tokio::test]
async fn points_closer_than_the_sampling_period_are_refused() {
    let mut h = start(config()).await;
    h.create(vec![gauge("custom.googleapis.com/s", &[], at(0), 1.0)])
        .await
        .unwrap();

    let status = h
        .create(vec![gauge("custom.googleapis.com/s", &[], at(4), 2.0)])
        .await
        .unwrap_err();
    partial_failure(&status, 1, 0);
    names_series(
        &status,
        "0",
        "custom.googleapis.com/s",
        "more frequently than the maximum sampling period",
    );
    assert!(
        status.message().contains("Youngest Existing"),
        "{}",
        status.message()
    );
    assert_eq!(counted(&h, RejectReason::SamplingPeriod), 1);

    h.create(vec![gauge("custom.googleapis.com/s", &[], at(5), 2.0)])
        .await
        .expect("5 s later is allowed");
}

#[tokio::test]
async fn the_sampling_period_is_configurable() {
    let mut h = start(EmulatorConfig {
        sampling_period: Duration::ZERO,
        ..config()
    })
    .await;
    for offset in 0..3 {
        h.create(vec![gauge("custom.googleapis.com/s", &[], at(offset), 1.0)])
            .await
            .unwrap();
    }
    assert_eq!(h.points("custom.googleapis.com/s"), 3);
}

#[tokio::test]
async fn a_refused_point_leaves_the_series_as_it_was() {
    let mut h = start(config()).await;
    h.create(vec![gauge("custom.googleapis.com/s", &[], at(0), 1.0)])
        .await
        .unwrap();
    h.create(vec![gauge("custom.googleapis.com/s", &[], at(2), 2.0)])
        .await
        .unwrap_err();
    // Measured from the accepted point at 0, not from the refused one at 2.
    h.create(vec![gauge("custom.googleapis.com/s", &[], at(6), 3.0)])
        .await
        .expect("6 s after the last write");
}

#[tokio::test]
async fn cumulative_points_keep_their_start_or_begin_a_later_interval() {
    let mut h = start(config()).await;
    let c = "custom.googleapis.com/requests";
    h.create(vec![counter(c, &[], at(0), at(10), 1)])
        .await
        .unwrap();
    h.create(vec![counter(c, &[], at(0), at(20), 2)])
        .await
        .expect("same start, later end");
    h.create(vec![counter(c, &[], at(20), at(30), 1)])
        .await
        .expect("a reset starting at the previous end");
    h.create(vec![counter(c, &[], at(39), at(40), 1)])
        .await
        .expect("a reset starting after the previous end");

    let status = h
        .create(vec![counter(c, &[], at(30), at(50), 5)])
        .await
        .unwrap_err();
    names_series(
        &status,
        "0",
        c,
        "older start time than the most recent point",
    );

    let status = h.create(vec![counter(c, &[], at(39), at(50), 5)]).await;
    assert!(
        status.is_ok(),
        "same start again is the normal case: {status:?}"
    );

    let status = h
        .create(vec![counter(c, &[], at(45), at(60), 5)])
        .await
        .unwrap_err();
    names_series(&status, "0", c, "inside the most recent point's interval");
    assert_eq!(counted(&h, RejectReason::OutOfOrder), 2);
    assert_eq!(h.points(c), 5);
}

#[tokio::test]
async fn metric_kind_must_match_the_descriptor() {
    let mut h = start(config()).await;
    h.create(vec![gauge(
        "custom.googleapis.com/k",
        &[("a", "1")],
        at(0),
        1.0,
    )])
    .await
    .unwrap();

    let status = h
        .create(vec![counter(
            "custom.googleapis.com/k",
            &[("a", "2")],
            at(-60),
            at(0),
            1,
        )])
        .await
        .unwrap_err();
    partial_failure(&status, 1, 0);
    names_series(
        &status,
        "0",
        "custom.googleapis.com/k",
        "Metric kind for metric custom.googleapis.com/k must be GAUGE, but is CUMULATIVE.",
    );
    assert_eq!(counted(&h, RejectReason::KindConflict), 1);
}

#[tokio::test]
async fn kind_conflicts_inside_one_request_keep_the_first_kind() {
    let mut h = start(config()).await;
    let status = h
        .create(vec![
            counter("custom.googleapis.com/k", &[("a", "1")], at(-60), at(0), 1),
            gauge("custom.googleapis.com/k", &[("a", "2")], at(0), 1.0),
        ])
        .await
        .unwrap_err();
    partial_failure(&status, 2, 1);
    names_series(
        &status,
        "1",
        "custom.googleapis.com/k",
        "must be CUMULATIVE, but is GAUGE",
    );
}

#[tokio::test]
async fn value_type_must_match_the_descriptor() {
    let mut h = start(config()).await;
    h.create(vec![counter(
        "custom.googleapis.com/v",
        &[("a", "1")],
        at(-60),
        at(0),
        1,
    )])
    .await
    .unwrap();
    let mut double = counter("custom.googleapis.com/v", &[("a", "2")], at(-60), at(0), 1);
    double.value_type = gcm_api::api::metric_descriptor::ValueType::Double as i32;
    double.points[0].value.as_mut().unwrap().value =
        Some(gcm_api::monitoring::typed_value::Value::DoubleValue(1.0));

    let status = h.create(vec![double]).await.unwrap_err();
    names_series(
        &status,
        "0",
        "custom.googleapis.com/v",
        "Value type for metric custom.googleapis.com/v must be INT64, but is DOUBLE.",
    );
    assert_eq!(counted(&h, RejectReason::ValueTypeConflict), 1);
}

fn many_labels(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}"), "v".to_string()))
        .collect()
}

fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[tokio::test]
async fn a_metric_gathers_at_most_30_label_keys() {
    let mut h = start(config()).await;
    let thirty = many_labels("a", 30);
    h.create(vec![gauge(
        "custom.googleapis.com/l",
        &as_refs(&thirty),
        at(0),
        1.0,
    )])
    .await
    .expect("30 fit");

    let one_more = many_labels("b", 1);
    let status = h
        .create(vec![gauge(
            "custom.googleapis.com/l",
            &as_refs(&one_more),
            at(0),
            1.0,
        )])
        .await
        .unwrap_err();
    names_series(
        &status,
        "0",
        "custom.googleapis.com/l",
        "to have over 30 labels",
    );
    assert_eq!(counted(&h, RejectReason::TooManyLabels), 1);

    let thirty_one = many_labels("c", 31);
    let status = h
        .create(vec![gauge(
            "custom.googleapis.com/m",
            &as_refs(&thirty_one),
            at(0),
            1.0,
        )])
        .await
        .unwrap_err();
    names_series(
        &status,
        "0",
        "custom.googleapis.com/m",
        "to have over 30 labels",
    );
}

#[tokio::test]
async fn managed_prometheus_metrics_allow_100_label_keys() {
    let mut h = start(config()).await;
    let hundred = many_labels("a", 100);
    h.create(vec![gauge(
        "prometheus.googleapis.com/x/gauge",
        &as_refs(&hundred),
        at(0),
        1.0,
    )])
    .await
    .expect("100 fit");
    let status = h
        .create(vec![gauge(
            "prometheus.googleapis.com/y/gauge",
            &as_refs(&many_labels("a", 101)),
            at(0),
            1.0,
        )])
        .await
        .unwrap_err();
    names_series(
        &status,
        "0",
        "prometheus.googleapis.com/y/gauge",
        "over 100 labels",
    );
}

#[tokio::test]
async fn descriptor_label_keys_are_the_union_of_written_series() {
    let mut h = start(config()).await;
    h.create(vec![
        gauge("custom.googleapis.com/u", &[("a", "1")], at(0), 1.0),
        gauge("custom.googleapis.com/u", &[("b", "1")], at(0), 1.0),
    ])
    .await
    .unwrap();
    let d = h
        .emulator
        .store()
        .metric_descriptor(PROJECT, "custom.googleapis.com/u")
        .unwrap();
    let keys: Vec<_> = d.labels.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test]
async fn retention_keeps_the_newest_points_but_counts_all() {
    let mut h = start(EmulatorConfig {
        max_points_per_series: Some(2),
        ..config()
    })
    .await;
    for i in 0..4 {
        h.create(vec![gauge(
            "custom.googleapis.com/r",
            &[],
            at(i * 10),
            i as f64,
        )])
        .await
        .unwrap();
    }
    let stored = h
        .emulator
        .store()
        .series(PROJECT, "custom.googleapis.com/r");
    let ends: Vec<_> = stored[0]
        .points
        .iter()
        .map(|p| p.interval.as_ref().unwrap().end_time.unwrap())
        .collect();
    assert_eq!(ends, [at(20), at(30)]);
    assert_eq!(h.emulator.store().stats().points_accepted, 4);
}
