//! `--monitoring.backend=stackdriver` through the real binary: the sidecar's own metrics arrive
//! in the (emulated) Monitoring API under the original's OpenCensus metric types, as CUMULATIVE
//! INT64 series on a `generic_task` resource naming the sidecar, and no longer only on
//! `/metrics`. A graceful shutdown sends them one last time.

mod common;

use std::time::Duration;

use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::{SidecarSetup, free_port, scrape_value, start_quiet_emulator, wait_for};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::typed_value::Value;

const METRIC: &str = "self_gauge";
const PREFIX: &str = "custom.googleapis.com/opencensus/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_own_metrics_are_sent_with_the_stackdriver_backend() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let samples = write_gauge_wal(&wal, METRIC, 4, 5, now_ms() - 600_000) as f64;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let api = start_quiet_emulator().await;
    let web = format!("127.0.0.1:{}", free_port());
    let uri = prometheus.uri();
    let setup = SidecarSetup::new("selfmetrics", &api, &wal, &uri, &web);
    let mut child = setup.spawn(
        &[
            "--monitoring.backend=prometheus",
            "--monitoring.backend=stackdriver",
        ],
        &dir.path().join("sidecar.log"),
    );
    wait_for(Duration::from_secs(30), || {
        scrape_value(&web, "prometheus_sidecar_samples_produced") == Some(samples)
    })
    .await;
    child.stop_gracefully();

    let store = api.emulator.store();
    let one = |name: &str| {
        let all = store.series("selfmetrics", &format!("{PREFIX}{name}"));
        assert_eq!(all.len(), 1, "{name}: {all:?}\n{}", child.log_tail(20));
        all.into_iter().next().unwrap()
    };
    let last_value = |ts: &gcm_emulator::StoredSeries| match ts.points.last().unwrap().value {
        Some(ref v) => match v.value {
            Some(Value::Int64Value(n)) => n,
            ref other => panic!("{other:?}"),
        },
        None => panic!("no value"),
    };
    let processed = one("prometheus_sidecar/samples_processed");
    assert_eq!(last_value(&processed), samples as i64);
    assert_eq!(processed.metric_kind, MetricKind::Cumulative);
    assert_eq!(processed.value_type, ValueType::Int64);
    assert_eq!(processed.resource.r#type, "generic_task");
    assert_eq!(
        processed.resource.labels.get("job").map(String::as_str),
        Some("stackdriver-prometheus-sidecar")
    );
    assert_eq!(
        last_value(&one("prometheus_sidecar/samples_produced")),
        samples as i64
    );
    let uptime = one("agent.googleapis.com/agent/uptime");
    assert!(uptime.metric.labels["version"].starts_with("stackdriver-prometheus-sidecar/"));
    let sent = store.series(
        "selfmetrics",
        &format!("{PREFIX}agent.googleapis.com/agent/monitoring/point_count"),
    );
    assert!(
        sent.iter().any(|ts| ts.metric.labels["status"] == "0"),
        "{sent:?}"
    );
    assert!(
        store.stats().rejected_by_reason.is_empty(),
        "{:?}",
        store.stats()
    );
}
