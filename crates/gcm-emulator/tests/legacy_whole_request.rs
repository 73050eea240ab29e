//! `field_errors_reject_request`: the older behaviour where a field error in any series refuses
//! the whole request, while state problems (order, conflicts, duplicates) stay per series.

mod common;

use common::*;
use gcm_emulator::{EmulatorConfig, RejectReason};
use tonic::Code;

fn legacy() -> EmulatorConfig {
    EmulatorConfig {
        field_errors_reject_request: true,
        ..config()
    }
}

#[tokio::test]
async fn a_field_error_refuses_the_whole_request_and_writes_nothing() {
    let mut h = start(legacy()).await;
    let status = h
        .create(vec![
            gauge("custom.googleapis.com/good", &[], at(0), 1.0),
            counter("custom.googleapis.com/bad", &[], at(5), at(0), 1),
        ])
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        !status.message().starts_with("One or more TimeSeries"),
        "{}",
        status.message()
    );
    names_series(
        &status,
        "1",
        "custom.googleapis.com/bad",
        "The start time must be before the end time",
    );
    assert!(
        gcm_api::summary_from_status(&status).is_none(),
        "no summary: nothing was written"
    );
    assert_eq!(h.points("custom.googleapis.com/good"), 0);
    let stats = h.emulator.store().stats();
    assert_eq!(stats.requests_rejected, 1);
    assert_eq!(
        stats.rejected_by_reason.get(&RejectReason::InvalidInterval),
        Some(&1)
    );
    assert_eq!(
        stats
            .rejected_by_reason
            .get(&RejectReason::RejectedWithRequest),
        Some(&1)
    );
}

#[tokio::test]
async fn state_problems_stay_partial() {
    let mut h = start(legacy()).await;
    h.create(vec![gauge("custom.googleapis.com/o", &[], at(60), 1.0)])
        .await
        .unwrap();
    let status = h
        .create(vec![
            gauge("custom.googleapis.com/o", &[], at(30), 1.0),
            gauge("custom.googleapis.com/fresh", &[], at(0), 1.0),
            gauge("external.googleapis.com/a:b", &[], at(0), 1.0),
        ])
        .await
        .unwrap_err();
    partial_failure(&status, 3, 1);
    names_series(
        &status,
        "0",
        "custom.googleapis.com/o",
        "Points must be written in order",
    );
    names_series(&status, "2", "external.googleapis.com/a:b", "metric.type");
    assert_eq!(h.points("custom.googleapis.com/fresh"), 1);
}

#[tokio::test]
async fn kinds_created_earlier_in_the_request_apply_to_later_series() {
    let mut h = start(legacy()).await;
    let mut unspecified = counter("custom.googleapis.com/c", &[("a", "2")], at(-60), at(0), 1);
    unspecified.metric_kind = 0;
    h.create(vec![
        counter("custom.googleapis.com/c", &[("a", "1")], at(-60), at(0), 1),
        unspecified,
    ])
    .await
    .expect("the second series is CUMULATIVE like the descriptor the first one creates");
    assert_eq!(
        h.emulator
            .store()
            .series(PROJECT, "custom.googleapis.com/c")
            .len(),
        2
    );
}
