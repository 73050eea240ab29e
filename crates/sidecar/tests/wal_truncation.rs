//! WAL truncation the sidecar did not keep up with, on a WAL written by the real Prometheus 2.42
//! (4-second blocks, so it compacts its head, writes `checkpoint.N` and deletes old segments
//! every few seconds). Two ways of falling behind, one after the other:
//!
//! 1. *Stopped*: the sidecar is killed with SIGKILL and stays down until Prometheus has deleted
//!    the segment its saved position is in. Started again, it must carry on from the newest
//!    checkpoint and the first segment left, and count the skipped segments.
//! 2. *Slow*: the Monitoring API goes away (the emulator stops serving), the queues fill and the
//!    reader stops in its segment while Prometheus deletes the ones after it. When the API comes
//!    back, the reader finishes its open segment and goes on from the newest checkpoint.
//!
//! Both times the process keeps running, the skip shows in `/metrics` and the log, and every
//! sample of the node exporter's gauges that Prometheus recorded once the sidecar was reading
//! again arrives exactly once, as Prometheus's query API reports it; the emulator refuses nothing.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH (`scripts/install-deps.sh`).

mod common;
mod wal_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_emulator::{Emulator, StoredSeries};
use prometheus_wal::{WalPosition, newest_checkpoint};
use wal_common::{PREFIX, Sidecar, end_ms, now_ms, saved_position, segments, wait_until};

const PROJECT: &str = "trunc";
const TRUNCATIONS: &str = "prometheus_sidecar_wal_truncations_total";
const SKIPPED: &str = "prometheus_sidecar_wal_segments_skipped_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_truncated_while_stopped_or_stalled_are_skipped_and_counted() {
    // reqwest is built with rustls and no provider (for Google credentials): pick one first.
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let prometheus = require_binary("prometheus");
    let node_exporter = require_binary("prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (prom_port, node_port) = (free_port(), free_port());
    wal_common::write_config(dir.path(), Some(node_port));
    let _node = Child::spawn(
        &node_exporter,
        &[&format!("--web.listen-address=127.0.0.1:{node_port}")],
        &dir.path().join("node.log"),
    );
    let mut prom = Child::spawn(
        &prometheus,
        &[
            &format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            // Hidden flags: a head compaction, and with it a WAL truncation, every 4 s.
            "--storage.tsdb.min-block-duration=4s",
            "--storage.tsdb.max-block-duration=4s",
        ],
        &dir.path().join("prometheus.log"),
    );
    let (emulator, running) = wal_common::start_emulator().await;
    let api = running.addr;
    let wal = dir.path().join("data/wal");
    wait_until(Duration::from_secs(30), "the WAL directory", || {
        wal.is_dir()
    })
    .await;

    // Run 1 delivers for a while, saves its progress, then dies without a word.
    let mut sidecar = Sidecar::start(dir.path(), 1, PROJECT, api, &wal, prom_port);
    wait_for_gauges(&emulator, &sidecar, 0).await;
    wait_until(Duration::from_secs(20), "delivery to be saved", || {
        saved_position(&wal) != WalPosition::default()
    })
    .await;
    sidecar.child.kill();
    let saved = saved_position(&wal).segment;

    // Prometheus checkpoints past the saved position and deletes its segment.
    wait_until(
        Duration::from_secs(90),
        "the saved segment to be deleted",
        || {
            newest_checkpoint(&wal)
                .unwrap()
                .is_some_and(|cp| cp.index >= saved)
                && !segments(&wal).contains(&saved)
        },
    )
    .await;
    let restarted_ms = now_ms();
    let mut sidecar = Sidecar::start(dir.path(), 2, PROJECT, api, &wal, prom_port);
    wait_for_gauges(&emulator, &sidecar, restarted_ms).await;
    let truncations = sidecar.metric(TRUNCATIONS).await;
    let skipped = sidecar.metric(SKIPPED).await;
    assert!(truncations >= 1.0, "{}", sidecar.log_tail(30));
    assert!(skipped >= 1.0, "{}", sidecar.log_tail(30));
    assert!(
        sidecar
            .log_tail(100)
            .contains("were deleted while not running"),
        "no warning about the deleted segments:\n{}",
        sidecar.log_tail(30)
    );

    // The API goes away while Prometheus goes on truncating, and comes back.
    let (_running, outage_ms, caught_up_ms) =
        wal_common::stall_behind_truncation(&emulator, running, &wal, &mut sidecar).await;
    assert!(
        sidecar.metric(TRUNCATIONS).await > truncations,
        "{}",
        sidecar.log_tail(30)
    );
    assert!(
        sidecar.metric(SKIPPED).await > skipped,
        "{}",
        sidecar.log_tail(30)
    );
    assert!(
        sidecar
            .log_tail(100)
            .contains("reader fell behind a truncation"),
        "no warning about the deleted segments:\n{}",
        sidecar.log_tail(30)
    );
    wait_for_gauges(&emulator, &sidecar, caught_up_ms + 3_000).await;

    // Stop scraping, let the sidecar deliver the rest, and compare.
    wal_common::write_config(dir.path(), None);
    prom.signal("HUP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = wal_common::settled(&emulator, PROJECT, &sidecar).await;
    let stats = emulator.store().stats();
    // One kill -9 of the sidecar.
    wal_common::assert_nothing_refused_but_in_flight_requests(&stats, 1, &sidecar.log_tail(40));
    // Everything Prometheus recorded from the restart until the outage, and once the reader was
    // past the deleted segments, arrived once; what only the deleted segments held did not.
    let windows = [(restarted_ms, outage_ms), (caught_up_ms + 1_000, i64::MAX)];
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let (mut compared, mut lost) = (0, 0);
    let mut mismatches = Vec::new();
    for ts in series.iter().filter(|ts| {
        ts.resource.labels.get("job").map(String::as_str) == Some("node")
            && ts.metric_kind == MetricKind::Gauge
            && ts.value_type == ValueType::Double
    }) {
        let arrived: Vec<i64> = ts.points.iter().map(end_ms).collect();
        let unique: BTreeSet<i64> = arrived.iter().copied().collect();
        assert_eq!(unique.len(), arrived.len(), "{} twice", describe(ts));
        if compared == 30 {
            continue;
        }
        let recorded = recorded_timestamps(&prom_url, ts).await;
        for (from, to) in windows {
            let within = |t: &&i64| (from..to).contains(*t);
            let expected: BTreeSet<i64> = recorded.iter().filter(within).copied().collect();
            let got: BTreeSet<i64> = unique.iter().filter(within).copied().collect();
            if expected.is_empty() || got != expected {
                mismatches.push(format!(
                    "{} in [{from}, {to}): missing {:?}, extra {:?}",
                    describe(ts),
                    expected.difference(&got).collect::<Vec<_>>(),
                    got.difference(&expected).collect::<Vec<_>>()
                ));
            }
        }
        lost += recorded.iter().filter(|t| !unique.contains(t)).count();
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} node gauges arrived");
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        mismatches.join("\n"),
        sidecar.log_tail(30)
    );
    assert!(lost > 0, "the truncations lost nothing?");
    sidecar.stop();
}

/// Waits until 20 gauges have two points ending at or after `after_ms`.
async fn wait_for_gauges(emulator: &Emulator, sidecar: &Sidecar, after_ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = emulator
            .store()
            .all_series(PROJECT)
            .iter()
            .filter(|ts| ts.metric_kind == MetricKind::Gauge)
            .filter(|ts| ts.points.iter().filter(|p| end_ms(p) >= after_ms).count() >= 2)
            .count();
        if ready >= 20 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} gauges with new points; sidecar log:\n{}",
            sidecar.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn describe(ts: &StoredSeries) -> String {
    let labels: BTreeMap<_, _> = ts.metric.labels.iter().collect();
    format!("{}{labels:?}", ts.metric.r#type)
}

/// Timestamps (ms) of every non-NaN sample Prometheus holds for the series of `ts`.
async fn recorded_timestamps(prom: &str, ts: &StoredSeries) -> Vec<i64> {
    let name = ts.metric.r#type.strip_prefix(PREFIX).unwrap();
    let resource = |k: &str| ts.resource.labels.get(k).cloned().unwrap_or_default();
    let mut matchers = vec![
        format!("__name__={name:?}"),
        format!("job={:?}", resource("job")),
        format!("instance={:?}", resource("task_id")),
    ];
    for (k, v) in &ts.metric.labels {
        matchers.push(format!("{k}={v:?}"));
    }
    common::prometheus_sample_times(prom, &matchers).await
}
