//! The fault-injection flags of the `gcm-emulator` binary, seen from a gRPC client: added
//! latency, a share of failed calls with a chosen code, partial failures with their
//! `CreateTimeSeriesSummary`, an outage window, and the seed that makes a run repeatable.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gcm_api::monitoring::ListMetricDescriptorsRequest;
use tonic::Code;

const METRIC: &str = "custom.googleapis.com/faults";

/// A gauge of its own series (label `n`), so that calls never conflict with each other.
fn one(n: usize) -> Vec<gcm_api::monitoring::TimeSeries> {
    vec![gauge(METRIC, &[("n", &n.to_string())], at(0), 1.0)]
}

#[tokio::test]
async fn added_latency_delays_every_create_and_only_creates() {
    let mut emulator = EmulatorProcess::start(&["--create-latency", "400ms"]).await;
    for n in 0..2 {
        let started = Instant::now();
        emulator.create(one(n)).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "CreateTimeSeries took {took:?}"
        );
    }
    let started = Instant::now();
    emulator
        .client
        .list_metric_descriptors(ListMetricDescriptorsRequest {
            name: format!("projects/{PROJECT}"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "reads are not delayed"
    );
}

#[tokio::test]
async fn every_fault_code_is_answered_as_chosen_and_nothing_is_written() {
    for (flag, code) in [
        ("unavailable", Code::Unavailable),
        ("internal", Code::Internal),
        ("deadline-exceeded", Code::DeadlineExceeded),
        ("resource-exhausted", Code::ResourceExhausted),
        ("aborted", Code::Aborted),
        ("invalid-argument", Code::InvalidArgument),
        ("permission-denied", Code::PermissionDenied),
    ] {
        let mut emulator =
            EmulatorProcess::start(&["--fault-ratio", "1", "--fault-code", flag]).await;
        for n in 0..3 {
            let status = emulator.create(one(n)).await.unwrap_err();
            assert_eq!(status.code(), code, "--fault-code {flag}: {status:?}");
            assert!(status.message().contains("injected"), "{status:?}");
            assert!(
                gcm_api::summary_from_status(&status).is_none(),
                "a failed call carries no summary"
            );
        }
        assert!(
            emulator.list(METRIC).await.is_empty(),
            "--fault-code {flag}"
        );
    }
}

/// Which of `calls` creates fail with `--fault-ratio 0.5 --fault-seed seed`; checks that each
/// failure is UNAVAILABLE (the default code) and that exactly the others were written.
async fn failed_calls(seed: &str, calls: usize) -> Vec<bool> {
    let mut emulator =
        EmulatorProcess::start(&["--fault-ratio", "0.5", "--fault-seed", seed]).await;
    let mut failed = Vec::new();
    for n in 0..calls {
        match emulator.create(one(n)).await {
            Ok(()) => failed.push(false),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                failed.push(true);
            }
        }
    }
    let written = written_labels(&mut emulator).await;
    let succeeded: Vec<usize> = (0..calls).filter(|&n| !failed[n]).collect();
    assert_eq!(written, succeeded, "exactly the calls that succeeded wrote");
    failed
}

#[tokio::test]
async fn a_fault_ratio_fails_that_share_of_calls_and_a_seed_repeats_the_run() {
    let first = failed_calls("42", 80).await;
    let again = failed_calls("42", 80).await;
    let other = failed_calls("43", 80).await;
    let share = first.iter().filter(|f| **f).count();
    assert!((20..=60).contains(&share), "{share} of 80 calls failed");
    assert_eq!(first, again, "the same seed fails the same calls");
    assert_ne!(first, other, "another seed fails other calls");
}

/// Sends 60 series in one request with `--partial-failure-ratio 0.3 --fault-seed seed`, checks
/// the answer and returns the `n` labels of the series written.
async fn partially_written(seed: &str) -> Vec<usize> {
    let mut emulator =
        EmulatorProcess::start(&["--partial-failure-ratio", "0.3", "--fault-seed", seed]).await;
    let series: Vec<_> = (0..60).flat_map(one).collect();
    let status = emulator.create(series).await.unwrap_err();
    let summary = partial_failure_summary(&status);
    assert!(
        status.message().contains("Injected partial failure"),
        "{}",
        status.message()
    );
    assert_eq!(summary.total_point_count, 60);
    let refused = 60 - summary.success_point_count;
    assert!(
        (6..=30).contains(&refused),
        "{refused} of 60 series refused"
    );
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.errors[0].point_count, refused);
    assert_eq!(
        summary.errors[0].status.as_ref().map(|s| s.code),
        Some(Code::InvalidArgument as i32)
    );

    let written = written_labels(&mut emulator).await;
    assert_eq!(
        written.len() as i32,
        summary.success_point_count,
        "the summary counts what was written"
    );
    written
}

#[tokio::test]
async fn a_partial_failure_ratio_refuses_a_share_of_series_with_a_summary() {
    let first = partially_written("5").await;
    assert_eq!(
        first,
        partially_written("5").await,
        "the seed repeats the run"
    );
    assert_ne!(first, partially_written("6").await);
}

#[tokio::test]
async fn an_outage_answers_unavailable_for_its_duration_then_recovers() {
    let mut emulator =
        EmulatorProcess::start(&["--outage-after", "2s", "--outage-duration", "2s"]).await;
    let started = Instant::now();
    emulator.create(one(0)).await.expect("before the outage");

    let mut outage: Option<(Instant, Instant)> = None;
    let mut n = 1;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the outage did not begin and end: {outage:?}"
        );
        let result = emulator.create(one(n)).await;
        n += 1;
        let now = Instant::now();
        match (result, &mut outage) {
            (Err(status), None) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(status.message().contains("outage"), "{status:?}");
                outage = Some((now, now));
            }
            (Err(status), Some((_, last))) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                *last = now;
            }
            (Ok(()), Some(_)) => break,
            (Ok(()), None) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (begun, ended) = outage.unwrap();
    let length = ended - begun;
    assert!(
        length > Duration::from_millis(1500) && length <= Duration::from_millis(2100),
        "the outage lasted {length:?}"
    );
    assert!(
        begun - started < Duration::from_millis(2100),
        "it began {:?} after the first call",
        begun - started
    );
}

#[test]
fn fault_flags_out_of_range_exit_2_naming_the_flag() {
    for (arg, flag) in [
        ("--fault-ratio=1.5", "--fault-ratio"),
        ("--partial-failure-ratio=-0.1", "--partial-failure-ratio"),
        ("--fault-code=teapot", "--fault-code"),
        ("--create-latency=soon", "--create-latency"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gcm-emulator"))
            .args([&format!("--listen-address=127.0.0.1:{}", free_port()), arg])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A flag wrongly accepted would leave the emulator serving: do not wait for ever.
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert!(stderr.contains(flag), "{arg}: {stderr}");
    }
}

/// The `n` labels of the series of `METRIC` the emulator holds, sorted.
async fn written_labels(emulator: &mut EmulatorProcess) -> Vec<usize> {
    let mut written: Vec<usize> = emulator
        .list(METRIC)
        .await
        .iter()
        .map(|ts| ts.metric.as_ref().unwrap().labels["n"].parse().unwrap())
        .collect();
    written.sort();
    written
}
