//! Helpers shared by the integration tests: an emulator on loopback, a generated client, and
//! builders for the series the sidecar sends.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use gcm_api::api::distribution::BucketOptions;
use gcm_api::api::distribution::bucket_options::{Explicit, Options};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::api::{Distribution, Metric, MonitoredResource};
use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_api::monitoring::typed_value::Value;
use gcm_api::monitoring::{
    CreateTimeSeriesRequest, CreateTimeSeriesSummary, Point, TimeInterval, TimeSeries, TypedValue,
};
use gcm_emulator::RejectReason;
use gcm_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub const PROJECT: &str = "test-project";

pub struct Harness {
    pub emulator: Emulator,
    pub running: RunningEmulator,
    pub client: MetricServiceClient<Channel>,
}

/// Default rules, without the periodic log.
pub fn config() -> EmulatorConfig {
    EmulatorConfig {
        summary_interval: None,
        ..Default::default()
    }
}

pub async fn start(config: EmulatorConfig) -> Harness {
    let emulator = Emulator::new(config);
    let running = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(running.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Harness {
        emulator,
        running,
        client: MetricServiceClient::new(channel),
    }
}

impl Harness {
    pub async fn create(&mut self, series: Vec<TimeSeries>) -> Result<(), Status> {
        self.client
            .create_time_series(request(series))
            .await
            .map(|r| r.into_inner())
    }

    pub fn points(&self, metric_type: &str) -> usize {
        self.emulator
            .store()
            .series(PROJECT, metric_type)
            .iter()
            .map(|s| s.points.len())
            .sum()
    }
}

pub fn request(series: Vec<TimeSeries>) -> CreateTimeSeriesRequest {
    CreateTimeSeriesRequest {
        name: format!("projects/{PROJECT}"),
        time_series: series,
    }
}

/// A timestamp `offset` seconds after a base one hour ago (so ±1 h stays within the API's
/// accepted window).
pub fn at(offset: i64) -> Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Timestamp {
        seconds: (now - 3600) / 60 * 60 + offset,
        nanos: 0,
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn resource() -> MonitoredResource {
    MonitoredResource {
        r#type: "global".into(),
        labels: labels(&[("project_id", PROJECT)]),
    }
}

fn series(
    metric_type: &str,
    metric_labels: &[(&str, &str)],
    kind: MetricKind,
    value_type: ValueType,
    start: Option<Timestamp>,
    end: Timestamp,
    value: Value,
) -> TimeSeries {
    TimeSeries {
        metric: Some(Metric {
            r#type: metric_type.into(),
            labels: labels(metric_labels),
        }),
        resource: Some(resource()),
        metric_kind: kind as i32,
        value_type: value_type as i32,
        points: vec![Point {
            interval: Some(TimeInterval {
                start_time: start,
                end_time: Some(end),
            }),
            value: Some(TypedValue { value: Some(value) }),
        }],
        ..Default::default()
    }
}

/// A GAUGE DOUBLE series with one point at `end`.
pub fn gauge(
    metric_type: &str,
    metric_labels: &[(&str, &str)],
    end: Timestamp,
    value: f64,
) -> TimeSeries {
    series(
        metric_type,
        metric_labels,
        MetricKind::Gauge,
        ValueType::Double,
        None,
        end,
        Value::DoubleValue(value),
    )
}

/// A CUMULATIVE INT64 series with one point over `(start, end]`.
pub fn counter(
    metric_type: &str,
    metric_labels: &[(&str, &str)],
    start: Timestamp,
    end: Timestamp,
    value: i64,
) -> TimeSeries {
    series(
        metric_type,
        metric_labels,
        MetricKind::Cumulative,
        ValueType::Int64,
        Some(start),
        end,
        Value::Int64Value(value),
    )
}

/// A CUMULATIVE DISTRIBUTION series built like the sidecar builds histograms.
pub fn histogram(
    metric_type: &str,
    start: Timestamp,
    end: Timestamp,
    bounds: &[f64],
    counts: &[i64],
) -> TimeSeries {
    let count = counts.iter().sum();
    let d = Distribution {
        count,
        mean: if count > 0 { 1.0 } else { 0.0 },
        bucket_options: Some(BucketOptions {
            options: Some(Options::ExplicitBuckets(Explicit {
                bounds: bounds.to_vec(),
            })),
        }),
        bucket_counts: counts.to_vec(),
        ..Default::default()
    };
    series(
        metric_type,
        &[],
        MetricKind::Cumulative,
        ValueType::Distribution,
        Some(start),
        end,
        Value::DistributionValue(d),
    )
}

/// Asserts `status` is a partial-failure answer and returns its summary, whatever its counts.
#[track_caller]
pub fn partial_failure_summary(status: &Status) -> CreateTimeSeriesSummary {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("One or more TimeSeries could not be written: "),
        "{}",
        status.message()
    );
    gcm_api::summary_from_status(status).expect("a CreateTimeSeriesSummary in the details")
}

/// Asserts `status` is the partial-failure answer with these counts and returns its summary.
#[track_caller]
pub fn partial_failure(status: &Status, total: i32, success: i32) -> CreateTimeSeriesSummary {
    let summary = partial_failure_summary(status);
    assert_eq!(summary.total_point_count, total, "total points");
    assert_eq!(summary.success_point_count, success, "written points");
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(
        summary.errors[0].point_count,
        total - success,
        "failed points"
    );
    assert_eq!(
        summary.errors[0].status.as_ref().map(|s| s.code),
        Some(Code::InvalidArgument as i32)
    );
    summary
}

/// Asserts the message names `timeSeries[index]` and `metric_type`, and contains `needle`.
#[track_caller]
pub fn names_series(status: &Status, index: &str, metric_type: &str, needle: &str) {
    let message = status.message();
    let naming = format!("timeSeries[{index}] (");
    assert!(message.contains(&naming), "no {naming:?} in {message}");
    assert!(
        message.contains(&format!("metric.type=\"{metric_type}\"")),
        "no {metric_type} in {message}"
    );
    assert!(message.contains(needle), "no {needle:?} in {message}");
}

pub const GOOD: &str = "custom.googleapis.com/good";

/// Sends `[good gauge, bad]`, checks the partial-failure answer, that the good series was
/// written and the bad one was not, and that the rejection was counted under `reason`.
pub async fn refused_beside_a_good_one(
    h: &mut Harness,
    bad: TimeSeries,
    reason: RejectReason,
) -> Status {
    let bad_type = bad
        .metric
        .as_ref()
        .map(|m| m.r#type.clone())
        .unwrap_or_default();
    let bad_points = bad.points.len() as i32;
    let before = h.emulator.store().stats();
    let good_before = h.points(GOOD);
    let status = h
        .create(vec![
            gauge(GOOD, &[("n", &good_before.to_string())], at(0), 1.0),
            bad,
        ])
        .await
        .unwrap_err();
    partial_failure(&status, 1 + bad_points, 1);
    assert_eq!(
        h.points(GOOD),
        good_before + 1,
        "the good series is written"
    );
    if !bad_type.is_empty() && bad_type != GOOD {
        assert_eq!(h.points(&bad_type), 0, "the bad series is not written");
    }
    let after = h.emulator.store().stats();
    assert_eq!(
        after.requests_partially_rejected,
        before.requests_partially_rejected + 1
    );
    let counted = |s: &gcm_emulator::Stats| s.rejected_by_reason.get(&reason).copied().unwrap_or(0);
    assert_eq!(
        counted(&after),
        counted(&before) + bad_points as u64,
        "counted as {reason}"
    );
    status
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `gcm-emulator` binary serving gRPC on a free loopback port; killed when dropped.
pub struct EmulatorProcess {
    child: std::process::Child,
    /// `127.0.0.1:<port>` of its gRPC server.
    pub addr: String,
    /// A client connected to it.
    pub client: MetricServiceClient<Channel>,
}

impl EmulatorProcess {
    /// Starts the binary with `args` (besides `--listen-address`) and waits until it answers.
    pub async fn start(args: &[&str]) -> EmulatorProcess {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gcm-emulator"))
            .args(["--listen-address", &addr, "--log.level", "error"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => panic!("gcm-emulator {args:?} never listened on {addr}: {e}"),
            }
        };
        EmulatorProcess {
            child,
            addr,
            client: MetricServiceClient::new(channel),
        }
    }

    /// Sends `series` in one `CreateTimeSeries` call.
    pub async fn create(&mut self, series: Vec<TimeSeries>) -> Result<(), Status> {
        self.client
            .create_time_series(request(series))
            .await
            .map(|r| r.into_inner())
    }

    /// The series of `metric_type` it holds, read back through `ListTimeSeries`.
    pub async fn list(&mut self, metric_type: &str) -> Vec<TimeSeries> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        self.client
            .list_time_series(gcm_api::monitoring::ListTimeSeriesRequest {
                name: format!("projects/{PROJECT}"),
                filter: format!("metric.type = \"{metric_type}\""),
                interval: Some(TimeInterval {
                    start_time: Some(Timestamp {
                        seconds: now - 86_400,
                        nanos: 0,
                    }),
                    end_time: Some(Timestamp {
                        seconds: now + 3600,
                        nanos: 0,
                    }),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .time_series
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
