//! Shutdown of the real binary on signals: one SIGTERM stops reading, sends what is queued and
//! saves progress, then exits 0; when the API is down and that flush cannot finish, a second
//! SIGTERM or SIGINT ends the process at once with 128 + the signal.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::{Child, TestEmulator, free_port, scrape_value, start_emulator_with, wait_for};
use gcm_emulator::{EmulatorConfig, Outage};
use prometheus_wal::WalPosition;
use stackdriver_prometheus_sidecar::progress::{self, LoadedProgress};

const METRIC: &str = "shutdown_gauge";
const SERIES: usize = 40;
const ROUNDS: usize = 5;

/// An emulator in this process with `config` (without its periodic log line).
async fn emulator(config: EmulatorConfig) -> TestEmulator {
    start_emulator_with(EmulatorConfig {
        summary_interval: None,
        ..config
    })
    .await
}

/// The sidecar reading `wal` (40 gauge series, 5 scrapes) described by `prometheus`, sending to
/// `emulator`, its web server on `web`.
fn sidecar(dir: &Path, wal: &Path, prometheus: &str, emulator: &TestEmulator, web: &str) -> Child {
    Child::spawn(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=shutdown",
            &format!(
                "--stackdriver.api-address=http://{}/?auth=false",
                emulator.addr
            ),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=shutdown",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address={prometheus}/"),
            &format!("--web.listen-address={web}"),
        ],
        &dir.join("sidecar.log"),
    )
}

/// A WAL of 40 series × 5 scrapes ending a few minutes ago, in `dir/wal`.
fn wal(dir: &Path) -> std::path::PathBuf {
    let wal = dir.join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, METRIC, SERIES, ROUNDS, now_ms() - 600_000);
    wal
}

/// Starts the sidecar against an emulator that is down for an hour, waits until it is
/// retrying, sends SIGTERM, checks that it is still flushing a moment later, then sends
/// `second` and returns the exit status and how long the exit took.
async fn second_signal_during_a_stuck_flush(second: &str) -> (Option<i32>, Duration, String) {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path());
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let api = emulator(EmulatorConfig {
        outage: Some(Outage {
            after: Duration::ZERO,
            duration: Duration::from_secs(3600),
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let web = format!("127.0.0.1:{}", free_port());
    let mut child = sidecar(dir.path(), &wal, &prometheus.uri(), &api, &web);
    wait_for(Duration::from_secs(30), || {
        api.emulator.store().stats().create_requests >= 2
    })
    .await;

    child.terminate();
    // The graceful shutdown waits for the queued points, which cannot be sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        child.wait(Duration::ZERO),
        None,
        "the first SIGTERM must start a graceful flush, not end the process:\n{}",
        child.log_tail(30)
    );
    assert!(
        child.log_tail(200).contains("exiting gracefully"),
        "{}",
        child.log_tail(30)
    );
    assert_eq!(api.emulator.store().stats().points_accepted, 0);

    child.signal(second);
    let signalled = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait(Duration::from_secs(10));
        (status, child.log_tail(30))
    })
    .await
    .unwrap();
    (status.0, signalled.elapsed(), status.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_a_stuck_flush_exits_at_once_with_143() {
    let (status, took, log) = second_signal_during_a_stuck_flush("TERM").await;
    assert_eq!(status, Some(143), "{log}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}:\n{log}");
    assert!(log.contains("second signal"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigint_after_sigterm_during_a_stuck_flush_exits_at_once_with_130() {
    let (status, took, log) = second_signal_during_a_stuck_flush("INT").await;
    assert_eq!(status, Some(130), "{log}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sigterm_sends_what_is_queued_saves_progress_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path());
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    // A slow API keeps points queued when the signal comes.
    let api = emulator(EmulatorConfig {
        create_latency: Duration::from_millis(700),
        ..EmulatorConfig::default()
    })
    .await;
    let web = format!("127.0.0.1:{}", free_port());
    let mut child = sidecar(dir.path(), &wal, &prometheus.uri(), &api, &web);
    let total = (SERIES * ROUNDS) as u64;
    // The whole WAL is read (and queued) before the signal, so all of it must be sent.
    let samples = "prometheus_sidecar_samples_processed";
    wait_for(Duration::from_secs(30), || {
        scrape_value(&web, samples) == Some(total as f64)
    })
    .await;
    assert!(
        api.emulator.store().stats().points_accepted < total,
        "points must still be queued when the signal comes"
    );

    child.terminate();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait(Duration::from_secs(25));
        (status, child.log_tail(40))
    })
    .await
    .unwrap();
    let (status, log) = status;
    assert_eq!(status, Some(0), "{log}");

    // Everything read before the signal was sent before the exit: here, the whole WAL.
    let stats = api.emulator.store().stats();
    assert_eq!(stats.points_accepted, total, "{log}");
    assert!(stats.rejected_by_reason.is_empty(), "{stats:?}");
    assert!(log.contains("progress saved"), "{log}");
    for file in ["stackdriver_sidecar.state", "stackdriver_sidecar.json"] {
        assert!(wal.join(file).is_file(), "{file} was not saved:\n{log}");
    }
    let segment_size = std::fs::metadata(wal.join("00000000")).unwrap().len();
    match progress::file::load(&wal).unwrap() {
        LoadedProgress::Exact(saved) => {
            assert_eq!(
                saved.position,
                WalPosition {
                    segment: 0,
                    offset: segment_size
                },
                "the saved position is the end of the WAL, all of it delivered"
            );
            assert_eq!(saved.series.len(), SERIES, "every series' state is saved");
        }
        other => panic!("no exact progress saved: {other:?}"),
    }
}
