//! Series that can never be written, decided once per series through the real binary: a
//! recording rule's name (with colons) under a prefix outside `prometheus.googleapis.com` is a
//! series-level drop, counted by reason and metric on `/metrics` and explained at warning level,
//! not a point refused one by one; and a series the API refuses for its own fields (here its
//! kind, against the metric's descriptor) is refused once, then dropped before sending.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::{
    Child, SidecarSetup, TestEmulator, free_port, http_get, scrape_value, start_quiet_emulator,
    wait_for,
};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::api::{Metric, MonitoredResource};
use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_api::monitoring::{
    CreateTimeSeriesRequest, Point, TimeInterval, TimeSeries, TypedValue, typed_value,
};

const RULE: &str = "job:requests:rate5m";

const PROJECT: &str = "drops";

fn sidecar(dir: &Path, wal: &Path, prometheus: &str, api: &TestEmulator, web: &str) -> Child {
    let setup = SidecarSetup::new(PROJECT, api, wal, prometheus, web);
    setup.spawn(&[], &dir.join("sidecar.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_rule_name_with_colons_is_a_series_drop_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, RULE, 3, 4, now_ms() - 600_000);
    let prometheus = fake_prometheus::serve_api(&[RULE]).await;
    let api = start_quiet_emulator().await;
    let web = format!("127.0.0.1:{}", free_port());
    let child = sidecar(dir.path(), &wal, &prometheus.uri(), &api, &web);
    let dropped = r#"prometheus_sidecar_dropped_series{reason="invalid_metric_name"}"#;
    wait_for(Duration::from_secs(30), || {
        scrape_value(&web, "prometheus_sidecar_samples_processed") == Some(12.0)
    })
    .await;
    assert_eq!(
        scrape_value(&web, dropped),
        Some(3.0),
        "{}",
        child.log_tail(20)
    );
    let by_metric = format!(
        r#"prometheus_sidecar_dropped_series_by_metric{{reason="invalid_metric_name",metric="{RULE}"}}"#
    );
    assert_eq!(scrape_value(&web, &by_metric), Some(3.0));
    let (_, statusz) = http_get(&web, "/statusz").unwrap();
    assert!(statusz.contains("invalid_metric_name"), "{statusz}");
    assert!(statusz.contains(RULE), "{statusz}");
    // Not one point was made only to be refused.
    let refused = r#"prometheus_sidecar_export_points_dropped_total{reason="invalid_metric_type"}"#;
    assert!(scrape_value(&web, refused).unwrap_or(0.0) == 0.0);
    assert_eq!(api.emulator.store().stats().create_requests, 0);
    let log = child.log_tail(50);
    let warning = log
        .lines()
        .find(|l| l.contains("level=warn") && l.contains("invalid_metric_name"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("metric_renames"), "{warning}");
    assert!(warning.contains(RULE), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_refused_for_its_kind_is_refused_once_then_dropped_before_sending() {
    const CLASH: &str = "kind_clash";
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let t0 = now_ms() - 600_000;
    // Three gauge series, ten scrapes: ten requests of three points.
    write_gauge_wal(&wal, CLASH, 3, 10, t0);
    let prometheus = fake_prometheus::serve_api(&[CLASH]).await;
    let api = start_quiet_emulator().await;
    // Someone wrote the metric as a counter before: its descriptor says CUMULATIVE.
    let metric_type = format!("external.googleapis.com/prometheus/{CLASH}");
    write_cumulative_point(&api, &metric_type, t0 - 60_000).await;

    let web = format!("127.0.0.1:{}", free_port());
    let child = sidecar(dir.path(), &wal, &prometheus.uri(), &api, &web);
    let refused = r#"prometheus_sidecar_export_points_dropped_total{reason="series_refused"}"#;
    let rejected = r#"prometheus_sidecar_export_points_dropped_total{reason="rejected"}"#;
    wait_for(Duration::from_secs(30), || {
        scrape_value(&web, refused).unwrap_or(0.0) + scrape_value(&web, rejected).unwrap_or(0.0)
            >= 30.0
    })
    .await;
    let stats = api.emulator.store().stats();
    // Each series is refused once by the API (the first request holding it), not ten times.
    assert_eq!(
        stats.points_rejected,
        3,
        "{stats:?}\n{}",
        child.log_tail(20)
    );
    assert_eq!(scrape_value(&web, rejected), Some(3.0));
    assert_eq!(scrape_value(&web, refused), Some(27.0));
    let log = child.log_tail(100);
    assert!(log.contains("refused a series for its own fields"), "{log}");
}

/// Writes one CUMULATIVE point of `metric_type` ending at `end_ms`, creating its descriptor.
async fn write_cumulative_point(api: &TestEmulator, metric_type: &str, end_ms: i64) {
    let time = |ms: i64| prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: 0,
    };
    let resource_labels = [
        ("project_id", PROJECT),
        ("location", "here"),
        ("namespace", "drops"),
        ("job", "other"),
        ("task_id", "elsewhere"),
    ];
    let series = TimeSeries {
        metric: Some(Metric {
            r#type: metric_type.into(),
            labels: Default::default(),
        }),
        resource: Some(MonitoredResource {
            r#type: "generic_task".into(),
            labels: resource_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
        metric_kind: MetricKind::Cumulative as i32,
        value_type: ValueType::Double as i32,
        points: vec![Point {
            interval: Some(TimeInterval {
                start_time: Some(time(end_ms - 60_000)),
                end_time: Some(time(end_ms)),
            }),
            value: Some(TypedValue {
                value: Some(typed_value::Value::DoubleValue(1.0)),
            }),
        }],
        ..Default::default()
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", api.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = MetricServiceClient::new(channel);
    client
        .create_time_series(CreateTimeSeriesRequest {
            name: format!("projects/{PROJECT}"),
            time_series: vec![series],
        })
        .await
        .unwrap();
}
