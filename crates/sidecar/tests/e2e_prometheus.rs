//! End to end with the real parts: Debian's Prometheus scraping itself and the node exporter every
//! 6 seconds (the API takes at most one point per series every 5 s, and scrape times jitter by a
//! few milliseconds), the sidecar binary following Prometheus's WAL, and the Cloud Monitoring emulator
//! receiving the points. What arrived is compared with what Prometheus itself answers through its
//! query API at each point's end time: gauges, counters, a histogram (as a distribution), a
//! summary, and a recording rule renamed by the sidecar's config file; an `--include` selector
//! keeps one family of the node exporter out.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH (`scripts/install-deps.sh`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::{TimeSeries, typed_value};

const PREFIX: &str = "external.googleapis.com/prometheus/";
/// Prometheus's own request latency histogram; `/metrics` is requested at every scrape.
const HISTOGRAM: &str = "prometheus_http_request_duration_seconds";
/// A summary of every Go program.
const SUMMARY: &str = "go_gc_duration_seconds";
/// The recording rule, and the name the sidecar's config file gives it.
const RULE: &str = "instance:go_goroutines:max";
const RULE_RENAMED: &str = "instance_go_goroutines_max";
/// A node exporter family the `--include` selector leaves out.
const EXCLUDED: &str = "node_scrape_collector_";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_wal_reaches_the_emulator_with_prometheus_values() {
    // reqwest is built with rustls and no provider (for Google credentials): pick one first.
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let prometheus = require_binary("prometheus");
    let node_exporter = require_binary("prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (prom_port, node_port) = (free_port(), free_port());
    let sidecar_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 6s\n  evaluation_interval: 6s\nrule_files: [rules.yml]\n\
             scrape_configs:\n\
             \x20 - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{prom_port}']\n\
             \x20 - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n\
             \x20 - job_name: sidecar\n    static_configs:\n      - targets: ['127.0.0.1:{sidecar_port}']\n"
        ),
    )
    .unwrap();
    // A recording rule keeping `job` and `instance`, so it joins the Prometheus target; its
    // colon name is not a valid metric type and is renamed by the sidecar's config file.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: e2e\n    rules:\n      - record: instance:go_goroutines:max\n\
         \x20       expr: max by (job, instance) (go_goroutines)\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sidecar.yml"),
        format!("metric_renames:\n  - from: {RULE}\n    to: {RULE_RENAMED}\n"),
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
            &format!("--web.listen-address=127.0.0.1:{sidecar_port}"),
            &format!("--config-file={}", dir.path().join("sidecar.yml").display()),
            &format!("--include={{job=~\"node|prometheus\",__name__!~\"{EXCLUDED}.*\"}}"),
            "--log.level=debug",
        ],
        &dir.path().join("sidecar.log"),
    );

    // Wait until enough node gauges and counters have several points each.
    let client = common::EmulatorClient::connect(emulator.addr, "e2e").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (gauges, counters, all) = loop {
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
        let others = [
            find(&all, HISTOGRAM, Some(("handler", "/metrics"))),
            find(&all, &format!("{SUMMARY}_count"), None),
            find(&all, SUMMARY, Some(("quantile", "0.5"))),
            find(&all, RULE_RENAMED, None),
        ];
        let others_ready = others
            .iter()
            .all(|ts| ts.is_some_and(|ts| ts.points.len() >= 3));
        if g.len() >= 20 && c.len() >= 10 && others_ready {
            break (g, c, all);
        }
        assert!(
            Instant::now() < deadline,
            "only {} gauges and {} counters of the node job arrived with 3+ points, histogram, \
             summary count and quantile, rule: {:?}; sidecar log:\n{}",
            g.len(),
            c.len(),
            others.map(|ts| ts.map(|ts| ts.points.len())),
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

    check_histogram(
        &prom,
        find(&all, HISTOGRAM, Some(("handler", "/metrics"))).unwrap(),
    )
    .await;

    // The summary: `_count` is a CUMULATIVE INT64 of increases, quantiles are gauges.
    let count = find(&all, &format!("{SUMMARY}_count"), None).unwrap();
    assert_eq!(count.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(count.value_type, ValueType::Int64 as i32);
    for point in count.points.iter().take(3) {
        let interval = point.interval.unwrap();
        let (start, end) = (interval.start_time.unwrap(), interval.end_time.unwrap());
        let increase = query_at(&prom, count, end).await - query_at(&prom, count, start).await;
        assert_eq!(
            int64(point) as f64,
            increase,
            "{} at {end:?}",
            describe(count)
        );
    }
    let quantile = find(&all, SUMMARY, Some(("quantile", "0.5"))).unwrap();
    assert_eq!(quantile.metric_kind, MetricKind::Gauge as i32);
    for point in quantile.points.iter().take(3) {
        let end = point.interval.unwrap().end_time.unwrap();
        assert_eq!(double(point), query_at(&prom, quantile, end).await);
    }

    // The recording rule, renamed: a gauge with Prometheus's values under its original name.
    let rule = find(&all, RULE_RENAMED, None).unwrap();
    assert_eq!(rule.metric_kind, MetricKind::Gauge as i32);
    for point in rule.points.iter().take(3) {
        let end = point.interval.unwrap().end_time.unwrap();
        assert_eq!(double(point), query_named(&prom, RULE, rule, end).await);
    }
    assert!(find(&all, RULE, None).is_none());

    // The `--include` selector: the excluded family exists in Prometheus but never arrived.
    let excluded: serde_json::Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", format!("count({{__name__=~\"{EXCLUDED}.*\"}})"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        excluded["data"]["result"],
        serde_json::json!([]),
        "{excluded}"
    );
    let arrived: Vec<&str> = all
        .iter()
        .map(|ts| ts.metric.as_ref().unwrap().r#type.as_str())
        .filter(|t| t.starts_with(&format!("{PREFIX}{EXCLUDED}")))
        .collect();
    assert!(arrived.is_empty(), "filtered series arrived: {arrived:?}");

    let stats = emulator.emulator.store().stats();
    assert_eq!(
        stats.points_rejected,
        0,
        "the emulator refused points: {}; sidecar log:\n{}",
        stats.summary_line(),
        sidecar.log_tail(40)
    );

    check_self_metrics(&prom, &format!("http://127.0.0.1:{sidecar_port}"), &sidecar).await;

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

/// The first series of metric `name` (without prefix) having `label` if given.
fn find<'a>(
    all: &'a [TimeSeries],
    name: &str,
    label: Option<(&str, &str)>,
) -> Option<&'a TimeSeries> {
    all.iter().find(|ts| {
        let metric = ts.metric.as_ref().unwrap();
        metric.r#type.strip_prefix(PREFIX) == Some(name)
            && label.is_none_or(|(k, v)| metric.labels.get(k).map(String::as_str) == Some(v))
    })
}

/// Every point of a histogram against Prometheus's `_count`, `_sum` and `_bucket` series: the
/// distribution holds their increases between the point's start and end.
async fn check_histogram(prom: &str, ts: &TimeSeries) {
    assert_eq!(ts.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(ts.value_type, ValueType::Distribution as i32);
    assert!(!ts.metric.as_ref().unwrap().labels.contains_key("le"));
    for point in ts.points.iter().take(3) {
        let interval = point.interval.unwrap();
        let (start, end) = (interval.start_time.unwrap(), interval.end_time.unwrap());
        let Some(typed_value::Value::DistributionValue(d)) =
            point.value.as_ref().and_then(|v| v.value.as_ref())
        else {
            panic!("not a distribution: {point:?}");
        };
        let increase = |part: &'static str| async move {
            query_parts(prom, ts, part, end)
                .await
                .into_iter()
                .zip(query_parts(prom, ts, part, start).await)
                .map(|((le, now), (le0, then))| {
                    assert_eq!(le.to_bits(), le0.to_bits(), "same buckets at start and end");
                    (le, now - then)
                })
                .collect::<Vec<_>>()
        };
        let count = increase("_count").await[0].1;
        let sum = increase("_sum").await[0].1;
        assert_eq!(d.count as f64, count, "{} at {end:?}", describe(ts));
        let mean = if count > 0.0 { sum / count } else { 0.0 };
        assert_eq!(d.mean, mean, "{} at {end:?}", describe(ts));
        let buckets = increase("_bucket").await;
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
            .collect();
        let Some(gcm_api::api::distribution::bucket_options::Options::ExplicitBuckets(explicit)) =
            d.bucket_options.as_ref().and_then(|o| o.options.as_ref())
        else {
            panic!("no explicit buckets: {d:?}");
        };
        assert_eq!(explicit.bounds, bounds);
        let mut previous = 0.0;
        let per_bucket: Vec<i64> = buckets
            .iter()
            .map(|(_, cumulative)| {
                let n = cumulative - previous;
                previous = *cumulative;
                n as i64
            })
            .collect();
        assert_eq!(d.bucket_counts, per_bucket, "{} at {end:?}", describe(ts));
    }
}

/// The values of `<histogram><part>` for the series of `ts` at `at`, with their `le` (NaN for
/// parts without one), sorted by `le`.
async fn query_parts(
    prom: &str,
    ts: &TimeSeries,
    part: &str,
    at: prost_types::Timestamp,
) -> Vec<(f64, f64)> {
    let name = ts
        .metric
        .as_ref()
        .unwrap()
        .r#type
        .strip_prefix(PREFIX)
        .unwrap();
    let body = query(prom, &selector(&format!("{name}{part}"), ts), at).await;
    let mut out: Vec<(f64, f64)> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let le = r["metric"]["le"]
                .as_str()
                .map_or(f64::NAN, |le| le.parse().unwrap());
            (le, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn int64(point: &gcm_api::monitoring::Point) -> i64 {
    match point.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::Int64Value(v)) => *v,
        other => panic!("not an int64 value: {other:?}"),
    }
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
    let name = ts
        .metric
        .as_ref()
        .unwrap()
        .r#type
        .strip_prefix(PREFIX)
        .unwrap();
    query_named(prom, name, ts, at).await
}

/// The value Prometheus answers for metric `name` with the labels of `ts` at `at`.
async fn query_named(prom: &str, name: &str, ts: &TimeSeries, at: prost_types::Timestamp) -> f64 {
    let query_text = selector(name, ts);
    let body = query(prom, &query_text, at).await;
    let result = body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(result.len(), 1, "{query_text} at {at:?}: {body}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// `{__name__="<name>",job=…,instance=…,<metric labels>}` for the series of `ts`.
fn selector(name: &str, ts: &TimeSeries) -> String {
    let metric = ts.metric.as_ref().unwrap();
    let mut matchers = vec![
        format!("__name__={:?}", name),
        format!("job={:?}", resource_label(ts, "job")),
        format!("instance={:?}", resource_label(ts, "task_id")),
    ];
    for (k, v) in &metric.labels {
        matchers.push(format!("{k}={v:?}"));
    }
    format!("{{{}}}", matchers.join(","))
}

/// Prometheus's answer to an instant query at `at`.
async fn query(prom: &str, query: &str, at: prost_types::Timestamp) -> serde_json::Value {
    let time = format!("{}.{:03}", at.seconds, at.nanos / 1_000_000);
    reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query), ("time", time.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The sidecar's own endpoints during a real run, and its `/metrics` as Prometheus scraped them
/// (job `sidecar`) compared with what Prometheus says it appended to its WAL.
async fn check_self_metrics(prom: &str, web: &str, sidecar: &Child) {
    let get = |path: &str| {
        let url = format!("{web}{path}");
        async move {
            let resp = reqwest::get(&url).await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = get("/-/ready").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, body) = get("/-/healthy").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok: reading segment"), "{body}");
    let (status, body) = get("/statusz").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<tr><th>Listen address</th><td>127.0.0.1:"),
        "{body}"
    );

    // Wait for two scrapes of the sidecar that show points sent.
    let succeeded = "prometheus_remote_storage_succeeded_samples_total{job=\"sidecar\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_over_time(prom, succeeded).await < 2.0 {
        assert!(
            Instant::now() < deadline,
            "Prometheus has not scraped the sidecar's /metrics twice; sidecar log:\n{}",
            sidecar.log_tail(30)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Ask about a moment far enough in the past that Prometheus scraped itself after it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let at = now - 1.0;
    let processed = instant(
        prom,
        "prometheus_sidecar_samples_processed{job=\"sidecar\"}",
        at,
    )
    .await;
    let produced = instant(
        prom,
        "prometheus_sidecar_samples_produced{job=\"sidecar\"}",
        at,
    )
    .await;
    let sent = instant(prom, succeeded, at).await;
    let appended = "sum(prometheus_tsdb_head_samples_appended_total{job=\"prometheus\"})";
    let appended_after = instant(prom, appended, at + 7.0).await;
    let appended_before = instant(prom, appended, at - 30.0).await;
    let lag = instant(
        prom,
        "prometheus_sidecar_wal_lag_seconds{job=\"sidecar\"}",
        at,
    )
    .await;
    let summary = format!(
        "processed {processed}, produced {produced}, succeeded {sent}, appended {appended_before} \
         (30 s before) .. {appended_after} (after), lag {lag} s"
    );
    eprintln!("self-metrics as Prometheus scraped them: {summary}");
    // Everything read was appended first; and the sidecar keeps up within 30 seconds.
    assert!(processed <= appended_after, "{summary}");
    assert!(processed >= 0.9 * appended_before, "{summary}");
    assert!(
        0.0 < sent && sent <= produced && produced <= processed,
        "{summary}"
    );
    assert!(lag < 30.0, "{summary}");
}

/// The value of an instant query at `time` (Unix seconds); the query must give one series.
async fn instant(prom: &str, query: &str, time: f64) -> f64 {
    let time = format!("{time:.3}");
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query), ("time", time.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = body["data"]["result"].as_array();
    let value = result
        .filter(|r| r.len() == 1)
        .and_then(|r| r[0]["value"][1].as_str())
        .unwrap_or_else(|| panic!("{query} at {time}: {body}"));
    value.parse().unwrap()
}

/// How many samples of `series` Prometheus holds from the last minute (0 when none).
async fn count_over_time(prom: &str, series: &str) -> f64 {
    let body = common::prometheus_query(prom, &format!("count_over_time({series}[1m])")).await;
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
