//! Two processes of the binary on one WAL directory, as an overlapping rolling update makes
//! them: the second waits for the first's lock (saying who holds it, in its log and on
//! `/-/ready`), and when the first exits it takes over from what the first saved: every point
//! arrives exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_prometheus::{self, gauge_series, now_ms, write_gauge_segment};
use common::{
    Child, SidecarSetup, TestEmulator, free_port, http_get, start_quiet_emulator, wait_for,
};
use prometheus_wal::RefSeries;

const PROJECT: &str = "onewal";
const METRIC: &str = "lock_gauge";
const SERIES: usize = 20;
const ROUNDS_PER_SEGMENT: usize = 3;

/// Writes segment `index`: the series first in segment 0, then three scrapes 10 s apart.
fn segment(wal: &Path, index: usize, series: &[RefSeries], t0: i64) {
    let rounds = index * ROUNDS_PER_SEGMENT..(index + 1) * ROUNDS_PER_SEGMENT;
    write_gauge_segment(wal, index as u64, series, rounds, t0, index == 0);
}

fn sidecar(dir: &Path, name: &str, prometheus: &str, api: &TestEmulator, web: &str) -> Child {
    let wal = dir.join("wal");
    let setup = SidecarSetup::new(PROJECT, api, &wal, prometheus, web);
    setup.spawn(&[], &dir.join(format!("{name}.log")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sidecar_waits_for_the_first_and_takes_over_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let series = gauge_series(METRIC, SERIES);
    let t0 = now_ms() - 3_600_000;
    segment(&wal, 0, &series, t0);
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let api = start_quiet_emulator().await;
    let accepted = || api.emulator.store().stats().points_accepted;
    let per_segment = (SERIES * ROUNDS_PER_SEGMENT) as u64;

    let web_a = format!("127.0.0.1:{}", free_port());
    let mut first = sidecar(dir.path(), "first", &prometheus.uri(), &api, &web_a);
    wait_for(Duration::from_secs(30), || accepted() == per_segment).await;

    let web_b = format!("127.0.0.1:{}", free_port());
    let mut second = sidecar(dir.path(), "second", &prometheus.uri(), &api, &web_b);
    wait_for(Duration::from_secs(30), || {
        second
            .log_tail(50)
            .contains("another sidecar is using this WAL directory")
    })
    .await;
    let holder = format!("pid {}", first.id());
    assert!(
        second.log_tail(50).contains(&holder),
        "{}",
        second.log_tail(20)
    );
    let (status, body) = http_get(&web_b, "/-/ready").expect("the second serves /-/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&holder), "{body}");

    // The first goes on alone while the second waits.
    segment(&wal, 1, &series, t0);
    wait_for(Duration::from_secs(30), || accepted() == 2 * per_segment).await;
    assert!(
        !second.log_tail(200).contains("reading the WAL"),
        "the second must not read while the first runs:\n{}",
        second.log_tail(30)
    );

    // The first exits (a rolling update's SIGTERM); the second takes over from its progress.
    first.stop_gracefully();
    segment(&wal, 2, &series, t0);
    wait_for(Duration::from_secs(30), || accepted() >= 3 * per_segment).await;
    wait_for(Duration::from_secs(10), || {
        http_get(&web_b, "/-/ready").is_some_and(|(status, _)| status == 200)
    })
    .await;
    // Anything sent twice would arrive within a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = api.emulator.store().stats();
    assert_eq!(
        stats.points_accepted,
        3 * per_segment,
        "{}",
        second.log_tail(30)
    );
    assert!(
        stats.rejected_by_reason.is_empty(),
        "{:?}\n{}",
        stats.rejected_by_reason,
        second.log_tail(30)
    );
    for ts in api.emulator.store().all_series(PROJECT) {
        assert_eq!(ts.points.len(), 3 * ROUNDS_PER_SEGMENT, "{:?}", ts.metric);
    }
    assert!(
        second
            .log_tail(200)
            .contains("resuming where delivery stopped"),
        "{}",
        second.log_tail(30)
    );
    second.terminate();
    assert_eq!(second.wait(Duration::from_secs(20)), Some(0));
}
