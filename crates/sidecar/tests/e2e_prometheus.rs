//! End to end with the real parts: Debian's Prometheus scraping itself and the node exporter every
//! 6 seconds (the API takes at most one point per series every 5 s, and scrape times jitter by a
//! few milliseconds), the sidecar binary following Prometheus's WAL, and the Cloud Monitoring emulator
//! receiving the points. What arrived is compared with what Prometheus itself answers through its
//! query API at each point's end time.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH (`scripts/install-deps.sh`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::{TimeSeries, typed_value};

const PREFIX: &str = "external.googleapis.com/prometheus/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_wal_reaches_the_emulator_with_prometheus_values() {
    let prometheus = require_binary("prometheus");
    let node_exporter = require_binary("prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (prom_port, node_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 6s\n  evaluation_interval: 6s\nscrape_configs:\n\
             \x20 - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n\
             \x20 - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
        ),
    )
    .unwrap();
    let _node = Child::spawn(
        &node_exporter,
        &[&format!("--web.listen-address=127.0.0.1:{node_port}")],
        &dir.path().join("node.log"),
    );
    let _prom = Child::spawn(
        &prometheus,
        &[
            &format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let emulator = common::start_emulator().await;
    let wal = dir.path().join("data/wal");
    common::wait_for(Duration::from_secs(30), || wal.is_dir()).await;

    let mut sidecar = Child::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=e2e",
            &format!(
                "--stackdriver.api-address=http://{}/?auth=false",
                emulator.addr
            ),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=e2e",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address=http://127.0.0.1:{prom_port}/"),
            "--log.level=debug",
        ],
        &dir.path().join("sidecar.log"),
    );

    // Wait until enough node gauges and counters have several points each.
    let client = common::EmulatorClient::connect(emulator.addr, "e2e").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (gauges, counters) = loop {
        let all = client.all_series().await;
        let pick = |kind: MetricKind| -> Vec<TimeSeries> {
            all.iter()
                .filter(|ts| ts.metric_kind == kind as i32)
                .filter(|ts| ts.value_type == ValueType::Double as i32)
                .filter(|ts| ts.points.len() >= 3)
                .filter(|ts| resource_label(ts, "job") == "node")
                .cloned()
                .collect()
        };
        let (g, c) = (pick(MetricKind::Gauge), pick(MetricKind::Cumulative));
        if g.len() >= 20 && c.len() >= 10 {
            break (g, c);
        }
        assert!(
            Instant::now() < deadline,
            "only {} gauges and {} counters of the node job arrived with 3+ points; sidecar log:\n{}",
            g.len(),
            c.len(),
            sidecar.log_tail(60)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };

    let prom = format!("http://127.0.0.1:{prom_port}");
    let mut checked_points = 0;
    for ts in gauges.iter().take(25) {
        for point in ts.points.iter().take(4) {
            let end = point.interval.unwrap().end_time.unwrap();
            let expected = query_at(&prom, ts, end).await;
            assert_eq!(double(point), expected, "gauge {} at {end:?}", describe(ts));
            checked_points += 1;
        }
    }
    assert!(
        checked_points >= 60,
        "checked {checked_points} gauge points"
    );

    for ts in counters.iter().take(15) {
        for point in ts.points.iter().take(4) {
            let interval = point.interval.unwrap();
            let (start, end) = (interval.start_time.unwrap(), interval.end_time.unwrap());
            assert!(
                (start.seconds, start.nanos) < (end.seconds, end.nanos),
                "counter {} start {start:?} not before end {end:?}",
                describe(ts)
            );
            let baseline = query_at(&prom, ts, start).await;
            let now = query_at(&prom, ts, end).await;
            assert_eq!(
                double(point),
                now - baseline,
                "counter {} at {end:?} (baseline at {start:?})",
                describe(ts)
            );
        }
    }

    let stats = emulator.emulator.store().stats();
    assert_eq!(
        stats.points_rejected,
        0,
        "the emulator refused points: {}; sidecar log:\n{}",
        stats.summary_line(),
        sidecar.log_tail(40)
    );

    sidecar.terminate();
    let status = sidecar.wait(Duration::from_secs(30));
    assert_eq!(status, Some(0), "sidecar log:\n{}", sidecar.log_tail(40));
}

fn resource_label<'a>(ts: &'a TimeSeries, name: &str) -> &'a str {
    ts.resource
        .as_ref()
        .and_then(|r| r.labels.get(name))
        .map(String::as_str)
        .unwrap_or("")
}

fn double(point: &gcm_api::monitoring::Point) -> f64 {
    match point.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::DoubleValue(v)) => *v,
        other => panic!("not a double value: {other:?}"),
    }
}

fn describe(ts: &TimeSeries) -> String {
    let metric = ts.metric.as_ref().unwrap();
    let labels: BTreeMap<_, _> = metric.labels.iter().collect();
    format!("{}{labels:?}", metric.r#type)
}

/// The value Prometheus answers for the series of `ts` at `at`.
async fn query_at(prom: &str, ts: &TimeSeries, at: prost_types::Timestamp) -> f64 {
    let metric = ts.metric.as_ref().unwrap();
    let name = metric.r#type.strip_prefix(PREFIX).unwrap();
    let mut matchers = vec![
        format!("__name__={:?}", name),
        format!("job={:?}", resource_label(ts, "job")),
        format!("instance={:?}", resource_label(ts, "task_id")),
    ];
    for (k, v) in &metric.labels {
        matchers.push(format!("{k}={v:?}"));
    }
    let query = format!("{{{}}}", matchers.join(","));
    let time = format!("{}.{:03}", at.seconds, at.nanos / 1_000_000);
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query.as_str()), ("time", time.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(result.len(), 1, "{query} at {time}: {body}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}
