//! Aggregated counters across a restart of the real binary, while Prometheus truncates the WAL
//! the first run read: the second run continues the totals and the start time the first saved,
//! instead of starting from zero (and swallowing the first increase as a new baseline).

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_prometheus::{self, gauge_series, now_ms, write_gauge_segment};
use common::{
    Child, SidecarSetup, TestEmulator, free_port, scrape_value, start_quiet_emulator, wait_for,
};
use gcm_api::monitoring::typed_value::Value;
use prometheus_wal::record::encode::encode_series;
use prometheus_wal::writer::SegmentWriter;

const METRIC: &str = "hits_total";
const AGGREGATE: &str = "all_hits";

fn sidecar(dir: &Path, name: &str, prometheus: &str, api: &TestEmulator, web: &str) -> Child {
    let wal = dir.join("wal");
    let setup = SidecarSetup::new("agg", api, &wal, prometheus, web);
    let config = format!("--config-file={}", dir.join("sidecar.yml").display());
    setup.spawn(&[&config], &dir.join(format!("{name}.log")))
}

/// `(start ms, end ms, value)` of every point of the aggregate, in order.
fn aggregate_points(api: &TestEmulator) -> Vec<(i64, i64, f64)> {
    let ms = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000;
    api.emulator
        .store()
        .series(
            "agg",
            &format!("custom.googleapis.com/opencensus/{AGGREGATE}"),
        )
        .iter()
        .flat_map(|ts| ts.points.clone())
        .map(|p| {
            let interval = p.interval.unwrap();
            let value = match p.value.and_then(|v| v.value) {
                Some(Value::DoubleValue(v)) => v,
                other => panic!("{other:?}"),
            };
            (
                ms(&interval.start_time.unwrap()),
                ms(&interval.end_time.unwrap()),
                value,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_counters_continue_their_totals_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    std::fs::write(
        dir.path().join("sidecar.yml"),
        format!("aggregated_counters:\n  - metric: {AGGREGATE}\n    help: All hits\n    filters: ['{METRIC}']\n"),
    )
    .unwrap();
    // Three series counting up by one every 10 s: the aggregate grows by 3 per scrape.
    let series = gauge_series(METRIC, 3);
    let t0 = now_ms() - 3_600_000;
    write_gauge_segment(&wal, 0, &series, 0..7, t0, true);
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let api = start_quiet_emulator().await;

    // Run 1: after 60 s of WAL time (scrape 6), one point: 6 increases of 3.
    let web = format!("127.0.0.1:{}", free_port());
    let mut first = sidecar(dir.path(), "first", &prometheus.uri(), &api, &web);
    wait_for(Duration::from_secs(30), || {
        !aggregate_points(&api).is_empty()
    })
    .await;
    assert_eq!(aggregate_points(&api), vec![(t0, t0 + 60_000, 18.0)]);
    first.stop_gracefully();

    // Prometheus truncates segment 0 (its checkpoint keeps the series, and no sample of these
    // old scrapes) and goes on counting in segment 1.
    let checkpoint = wal.join("checkpoint.00000000");
    std::fs::create_dir(&checkpoint).unwrap();
    let mut w = SegmentWriter::new(
        std::fs::File::create(checkpoint.join("00000000")).unwrap(),
        prometheus_wal::Codec::Snappy,
    );
    let mut buf = Vec::new();
    encode_series(&series, &mut buf);
    w.log(&buf).unwrap();
    w.close().unwrap();
    std::fs::remove_file(wal.join("00000000")).unwrap();
    write_gauge_segment(&wal, 1, &series, 7..13, t0, false);

    // Run 2: at scrape 12 the next point, with every increase since scrape 0 and the same start.
    let web = format!("127.0.0.1:{}", free_port());
    let second = sidecar(dir.path(), "second", &prometheus.uri(), &api, &web);
    wait_for(Duration::from_secs(30), || {
        aggregate_points(&api).len() >= 2
    })
    .await;
    assert_eq!(
        aggregate_points(&api),
        vec![(t0, t0 + 60_000, 18.0), (t0, t0 + 120_000, 36.0)],
        "{}",
        second.log_tail(30)
    );
    let exposed = format!("{AGGREGATE} ");
    assert_eq!(scrape_value(&web, exposed.trim_end()), Some(36.0));
    assert!(
        second
            .log_tail(100)
            .contains("continue from their saved totals")
    );
}
