//! Exact resume with the real parts: the sidecar is killed with SIGKILL three times while a real
//! Prometheus scrapes the node exporter, and restarted each time; Prometheus itself restarts twice
//! in between. Afterwards the emulator must
//! hold every sample Prometheus recorded for each series (the raw samples, read back through
//! Prometheus's query API), none twice and none missing; counters keep one start time.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH (`scripts/install-deps.sh`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};
use gcm_api::api::metric_descriptor::MetricKind;
use gcm_api::monitoring::TimeSeries;

const PREFIX: &str = "external.googleapis.com/prometheus/";

fn prometheus_config(dir: &Path, node_port: u16, scrape: bool) {
    let jobs = if scrape {
        format!(
            "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n"
        )
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 6s\n{jobs}"),
    )
    .unwrap();
}

fn start_sidecar(dir: &Path, emulator: &str, wal: &Path, prom_port: u16, n: usize) -> Child {
    Child::spawn(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=resume",
            &format!("--stackdriver.api-address=http://{emulator}/?auth=false"),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=resume",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address=http://127.0.0.1:{prom_port}/"),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        &dir.join(format!("sidecar-{n}.log")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_loses_nothing_and_sends_nothing_twice() {
    // reqwest is built with rustls and no provider (for Google credentials): pick one first.
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let prometheus = require_binary("prometheus");
    let node_exporter = require_binary("prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (prom_port, node_port) = (free_port(), free_port());
    prometheus_config(dir.path(), node_port, true);
    let _node = Child::spawn(
        &node_exporter,
        &[&format!("--web.listen-address=127.0.0.1:{node_port}")],
        &dir.path().join("node.log"),
    );
    let start_prometheus = |n: usize| {
        Child::spawn(
            &prometheus,
            &[
                &format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ),
                &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ],
            &dir.path().join(format!("prometheus-{n}.log")),
        )
    };
    let mut prom = start_prometheus(0);
    let emulator = common::start_emulator().await;
    let emulator_addr = emulator.addr.to_string();
    let wal = dir.path().join("data/wal");
    common::wait_for(Duration::from_secs(30), || wal.is_dir()).await;

    // Three runs killed at different moments, then a last one that stays. Prometheus itself is
    // restarted (clean shutdown, new segment, stale markers) after the first two kills.
    for (n, after) in [(0, 14), (1, 9), (2, 17)] {
        let mut sidecar = start_sidecar(dir.path(), &emulator_addr, &wal, prom_port, n);
        tokio::time::sleep(Duration::from_secs(after)).await;
        sidecar.kill();
        assert!(
            wal.join("stackdriver_sidecar.state").exists() || n == 0,
            "no progress saved by run {n}:\n{}",
            sidecar.log_tail(30)
        );
        if n < 2 {
            prom.terminate();
            assert_eq!(
                prom.wait(Duration::from_secs(30)),
                Some(0),
                "Prometheus did not stop"
            );
            prom = start_prometheus(n + 1);
        }
    }
    let mut sidecar = start_sidecar(dir.path(), &emulator_addr, &wal, prom_port, 3);
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Stop scraping (config reload), so Prometheus records nothing more; then let the sidecar
    // deliver the rest.
    prometheus_config(dir.path(), node_port, false);
    prom.signal("HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = common::EmulatorClient::connect(emulator.addr, "resume").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_total = 0;
    let series = loop {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let all = client.all_series().await;
        let total: usize = all.iter().map(|ts| ts.points.len()).sum();
        if total == last_total && total > 0 {
            break all;
        }
        assert!(Instant::now() < deadline, "delivery did not settle");
        last_total = total;
    };

    let stats = emulator.emulator.store().stats();
    assert_eq!(
        stats.points_rejected,
        0,
        "points refused (sent twice or out of order?): {}\n{}",
        stats.summary_line(),
        sidecar.log_tail(40)
    );

    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for ts in series
        .iter()
        .filter(|ts| resource_label(ts, "job") == "node")
        .take(60)
    {
        let arrived: Vec<i64> = ts.points.iter().map(end_ms).collect();
        let unique: BTreeSet<i64> = arrived.iter().copied().collect();
        assert_eq!(
            unique.len(),
            arrived.len(),
            "{} has a point twice",
            describe(ts)
        );
        let recorded = recorded_timestamps(&prom_url, ts).await;
        let mut expected: BTreeSet<i64> = recorded.iter().copied().collect();
        if ts.metric_kind == MetricKind::Cumulative as i32 {
            // The first sample of a counter is its baseline, never sent.
            let first = *expected.iter().next().unwrap();
            expected.remove(&first);
            let starts: BTreeSet<i64> = ts
                .points
                .iter()
                .map(|p| {
                    let s = p.interval.unwrap().start_time.unwrap();
                    s.seconds * 1000 + i64::from(s.nanos / 1_000_000)
                })
                .collect();
            assert_eq!(
                starts.len(),
                1,
                "{} changed its start time: {starts:?}",
                describe(ts)
            );
        }
        if unique != expected {
            mismatches.push(format!(
                "{}: missing {:?}, extra {:?}",
                describe(ts),
                expected.difference(&unique).collect::<Vec<_>>(),
                unique.difference(&expected).collect::<Vec<_>>()
            ));
        }
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} node series arrived");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    sidecar.terminate();
    assert_eq!(sidecar.wait(Duration::from_secs(30)), Some(0));
}

fn resource_label<'a>(ts: &'a TimeSeries, name: &str) -> &'a str {
    ts.resource
        .as_ref()
        .and_then(|r| r.labels.get(name))
        .map(String::as_str)
        .unwrap_or("")
}

fn end_ms(p: &gcm_api::monitoring::Point) -> i64 {
    let e = p.interval.unwrap().end_time.unwrap();
    e.seconds * 1000 + i64::from(e.nanos / 1_000_000)
}

fn describe(ts: &TimeSeries) -> String {
    let metric = ts.metric.as_ref().unwrap();
    let labels: BTreeMap<_, _> = metric.labels.iter().collect();
    format!("{}{labels:?}", metric.r#type)
}

/// Timestamps (ms) of every non-NaN sample Prometheus holds for the series of `ts`.
async fn recorded_timestamps(prom: &str, ts: &TimeSeries) -> Vec<i64> {
    let metric = ts.metric.as_ref().unwrap();
    let name = metric.r#type.strip_prefix(PREFIX).unwrap();
    let mut matchers = vec![
        format!("__name__={name:?}"),
        format!("job={:?}", resource_label(ts, "job")),
        format!("instance={:?}", resource_label(ts, "task_id")),
    ];
    for (k, v) in &metric.labels {
        matchers.push(format!("{k}={v:?}"));
    }
    common::prometheus_sample_times(prom, &matchers).await
}
