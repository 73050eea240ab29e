//! `CreateTimeSeries`: the rules on a series' point — exactly one, a value of the right type,
//! distributions, the interval against the metric kind, and the point's age — and how refusals
//! are worded. Each refused series is reported by index and metric type while the valid series
//! of the same request are written, with a `CreateTimeSeriesSummary` in the status details.

mod common;

use std::time::Duration;

use common::*;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::typed_value::Value;
use gcm_emulator::{EmulatorConfig, RejectReason};
use prost_types::Timestamp;

#[tokio::test]
async fn exactly_one_point_per_series() {
    let mut h = start(config()).await;
    let mut none = gauge("custom.googleapis.com/p", &[], at(0), 1.0);
    none.points.clear();
    let status = refused_beside_a_good_one(&mut h, none, RejectReason::PointCount).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/p",
        "Only one point can be written",
    );

    let mut two = gauge("custom.googleapis.com/p", &[], at(0), 1.0);
    let later = gauge("custom.googleapis.com/p", &[], at(30), 2.0)
        .points
        .remove(0);
    two.points.push(later);
    let status = refused_beside_a_good_one(&mut h, two, RejectReason::PointCount).await;
    names_series(&status, "1", "custom.googleapis.com/p", "this series has 2");
}

#[tokio::test]
async fn the_value_must_be_set_and_match_the_declared_value_type() {
    let mut h = start(config()).await;
    let mut missing = gauge("custom.googleapis.com/v", &[], at(0), 1.0);
    missing.points[0].value = None;
    let status = refused_beside_a_good_one(&mut h, missing, RejectReason::InvalidValue).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/v",
        "points[0].value is required",
    );

    let mut mismatch = gauge("custom.googleapis.com/v", &[], at(0), 1.0);
    mismatch.value_type = ValueType::Int64 as i32;
    let status = refused_beside_a_good_one(&mut h, mismatch, RejectReason::InvalidValue).await;
    names_series(&status, "1", "custom.googleapis.com/v", "INT64");

    let mut text = gauge("custom.googleapis.com/v", &[], at(0), 1.0);
    text.value_type = 0;
    text.points[0].value.as_mut().unwrap().value = Some(Value::StringValue("x".into()));
    let status = refused_beside_a_good_one(&mut h, text, RejectReason::InvalidValue).await;
    names_series(&status, "1", "custom.googleapis.com/v", "STRING");
}

#[tokio::test]
async fn delta_metrics_cannot_be_auto_created() {
    let mut h = start(config()).await;
    let mut delta = counter("custom.googleapis.com/delta", &[], at(-60), at(0), 1);
    delta.metric_kind = MetricKind::Delta as i32;
    let status = refused_beside_a_good_one(&mut h, delta, RejectReason::InvalidKind).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/delta",
        "GAUGE or CUMULATIVE",
    );
}

#[tokio::test]
async fn gauge_start_time_must_equal_the_end_time() {
    let mut h = start(config()).await;
    for start_offset in [-1, 1] {
        let mut bad = gauge("custom.googleapis.com/g", &[], at(0), 1.0);
        bad.points[0].interval.as_mut().unwrap().start_time = Some(at(start_offset));
        let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidInterval).await;
        names_series(
            &status,
            "1",
            "custom.googleapis.com/g",
            "must be equal to the end time",
        );
        assert!(
            status
                .message()
                .contains("for the gauge metric 'custom.googleapis.com/g'")
        );
    }
}

#[tokio::test]
async fn cumulative_start_time_must_be_before_the_end_time() {
    let mut h = start(config()).await;
    for (start_offset, needle) in [
        (0, "must be before the end time"),
        (10, "must be before the end time"),
    ] {
        let bad = counter("custom.googleapis.com/c", &[], at(start_offset), at(0), 1);
        let status = refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidInterval).await;
        names_series(&status, "1", "custom.googleapis.com/c", needle);
        assert!(
            status.message().contains("non-gauge metric"),
            "{}",
            status.message()
        );
    }
    let mut no_start = counter("custom.googleapis.com/c", &[], at(-1), at(0), 1);
    no_start.points[0].interval.as_mut().unwrap().start_time = None;
    let status = refused_beside_a_good_one(&mut h, no_start, RejectReason::InvalidInterval).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/c",
        "start_time is required",
    );

    h.create(vec![counter(
        "custom.googleapis.com/c",
        &[],
        at(-1),
        at(0),
        1,
    )])
    .await
    .expect("1 s before the end is fine");
}

#[tokio::test]
async fn end_time_must_be_present_and_valid() {
    let mut h = start(config()).await;
    let mut missing = gauge("custom.googleapis.com/t", &[], at(0), 1.0);
    missing.points[0].interval = None;
    let status = refused_beside_a_good_one(&mut h, missing, RejectReason::InvalidInterval).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/t",
        "end_time is required",
    );

    let bad_nanos = gauge(
        "custom.googleapis.com/t",
        &[],
        Timestamp {
            seconds: at(0).seconds,
            nanos: -5,
        },
        1.0,
    );
    let status = refused_beside_a_good_one(&mut h, bad_nanos, RejectReason::InvalidInterval).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/t",
        "not a valid timestamp",
    );
}

#[tokio::test]
async fn points_older_than_25_hours_or_more_than_5_minutes_ahead_are_refused() {
    let mut h = start(config()).await;
    let old = gauge("custom.googleapis.com/age", &[], at(-25 * 3600), 1.0);
    let status = refused_beside_a_good_one(&mut h, old, RejectReason::PointTooOld).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/age",
        "more than 25h in the past",
    );

    let future = gauge("custom.googleapis.com/age", &[], at(3600 + 600), 1.0);
    let status = refused_beside_a_good_one(&mut h, future, RejectReason::PointInFuture).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/age",
        "more than 5m in the future",
    );

    h.create(vec![gauge(
        "custom.googleapis.com/age",
        &[],
        at(-23 * 3600),
        1.0,
    )])
    .await
    .expect("24 h old is still accepted");
}

#[tokio::test]
async fn age_limits_can_be_lifted_to_replay_recorded_data() {
    let mut h = start(EmulatorConfig {
        max_point_age: None,
        max_future_skew: None,
        ..config()
    })
    .await;
    h.create(vec![
        gauge(
            "custom.googleapis.com/old",
            &[],
            Timestamp {
                seconds: 1_600_000_000,
                nanos: 0,
            },
            1.0,
        ),
        gauge("custom.googleapis.com/future", &[], at(30 * 24 * 3600), 1.0),
    ])
    .await
    .expect("no age limits");
}

#[tokio::test]
async fn distributions_follow_the_distribution_rules() {
    let mut h = start(config()).await;
    let cases: [(&[f64], &[i64], &str); 4] = [
        (&[], &[3], "does not have at least one entry"),
        (&[1.0, 1.0], &[1, 1, 1], "strictly increasing"),
        (&[1.0], &[1, 1, 1], "3 |bucket_counts| fields"),
        (&[2.0, 1.0], &[1, 1, 1], "strictly increasing"),
    ];
    for (bounds, counts, needle) in cases {
        let bad = histogram("custom.googleapis.com/h", at(-60), at(0), bounds, counts);
        let status =
            refused_beside_a_good_one(&mut h, bad, RejectReason::InvalidDistribution).await;
        names_series(&status, "1", "custom.googleapis.com/h", needle);
        assert!(
            status
                .message()
                .contains("distributionValue had an invalid value")
        );
    }
    let mut wrong_count = histogram("custom.googleapis.com/h", at(-60), at(0), &[1.0], &[1, 2]);
    if let Some(Value::DistributionValue(d)) =
        wrong_count.points[0].value.as_mut().unwrap().value.as_mut()
    {
        d.count = 4;
    }
    let status =
        refused_beside_a_good_one(&mut h, wrong_count, RejectReason::InvalidDistribution).await;
    names_series(
        &status,
        "1",
        "custom.googleapis.com/h",
        "does not equal the sum",
    );

    h.create(vec![
        histogram(
            "custom.googleapis.com/h",
            at(-60),
            at(0),
            &[0.5, 1.0],
            &[1, 2, 3],
        ),
        histogram(
            "custom.googleapis.com/h2",
            at(-60),
            at(0),
            &[0.5, 1.0],
            &[1, 2],
        ),
    ])
    .await
    .expect("N bounds with N+1 counts, or fewer counts (trailing zeros), are fine");
}

#[tokio::test]
async fn every_refused_series_is_named_and_counted() {
    let mut h = start(config()).await;
    let status = h
        .create(vec![
            gauge("custom.googleapis.com/ok", &[], at(0), 1.0),
            gauge("external.googleapis.com/a:b", &[], at(0), 1.0),
            counter("custom.googleapis.com/c", &[], at(0), at(0), 1),
            gauge("custom.googleapis.com/ok2", &[], at(0), 1.0),
        ])
        .await
        .unwrap_err();
    partial_failure(&status, 4, 2);
    names_series(&status, "1", "external.googleapis.com/a:b", "metric.type");
    names_series(
        &status,
        "2",
        "custom.googleapis.com/c",
        "start time must be before",
    );
}

#[tokio::test]
async fn identical_problems_are_grouped_and_long_messages_capped() {
    let mut h = start(config()).await;
    let values: Vec<String> = (0..200).map(|i| format!("{i:0>40}")).collect();
    let series = values
        .iter()
        .map(|v| gauge("custom.googleapis.com/x", &[("bad:key", v)], at(0), 1.0))
        .collect();

    let status = h.create(series).await.unwrap_err();

    partial_failure(&status, 200, 0);
    names_series(
        &status,
        "0-199",
        "custom.googleapis.com/x",
        "example metric.type",
    );
    assert!(
        status.message().len() <= 5 * 1024,
        "{} bytes",
        status.message().len()
    );

    // Problems whose text differs per series are listed one by one, within the same cap.
    let series = (0..200)
        .map(|i| {
            counter(
                "custom.googleapis.com/y",
                &[("i", &i.to_string())],
                at(i),
                at(i),
                1,
            )
        })
        .collect();
    let status = h.create(series).await.unwrap_err();
    partial_failure(&status, 200, 0);
    assert!(
        status.message().contains("more failed TimeSeries"),
        "{}",
        status.message()
    );
    assert!(
        status.message().len() <= 5 * 1024,
        "{} bytes",
        status.message().len()
    );
}

#[tokio::test]
async fn a_slow_api_can_be_imitated() {
    let mut h = start(EmulatorConfig {
        create_latency: Duration::from_millis(200),
        ..config()
    })
    .await;
    let begun = std::time::Instant::now();
    h.create(vec![gauge("custom.googleapis.com/slow", &[], at(0), 1.0)])
        .await
        .unwrap();
    assert!(begun.elapsed() >= Duration::from_millis(200));
}
