//! Samples that only a checkpoint holds, through the real binary. Prometheus's `checkpoint.N`
//! keeps every sample with `t >= mint` of the segments it replaces (`tsdb/wlog/checkpoint.go`
//! keeps samples by time, series by liveness), for a server as for an agent. Two ways a reader
//! meets a checkpoint it did not expect, on a WAL written here the way Prometheus writes it:
//!
//! 1. Prometheus truncates after the sidecar opened the WAL and before it read anything (it
//!    waits for Prometheus to be ready, and Prometheus truncates before it turns ready).
//! 2. Prometheus truncates while the sidecar is stopped (SIGSTOP) in the middle of the WAL.
//!
//! Both times every sample the checkpoint or a later segment holds arrives exactly once, and
//! only what lived solely in deleted segments is missing (and counted as skipped segments).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::fake_prometheus::{self, gauge_series, now_ms, scrape};
use common::{
    Child, SidecarSetup, TestEmulator, free_port, scrape_value, start_quiet_emulator, wait_for,
};
use prometheus_wal::record::encode::{encode_samples, encode_series};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, RefSeries};

const PROJECT: &str = "checkpoints";
const METRIC: &str = "cp_gauge";
const SERIES: usize = 5;
/// Scrapes per segment; scrape `r` is at `t0 + 10 s * r` with value `r`.
const ROUNDS_PER_SEGMENT: usize = 2;
const SKIPPED: &str = "prometheus_sidecar_wal_segments_skipped_total";

/// A WAL being written: segments of two scrapes each, the first starting with the series.
struct Wal {
    dir: PathBuf,
    series: Vec<RefSeries>,
    t0: i64,
}

impl Wal {
    fn new(dir: PathBuf) -> Wal {
        std::fs::create_dir_all(&dir).unwrap();
        Wal {
            dir,
            series: gauge_series(METRIC, SERIES),
            t0: now_ms() - 3_600_000,
        }
    }

    fn t(&self, round: usize) -> i64 {
        self.t0 + round as i64 * 10_000
    }

    /// Writes segment `index`; `closed` pads its last page as Prometheus does on rotation.
    fn segment(&self, index: usize, closed: bool) {
        let file = std::fs::File::create(self.dir.join(format!("{index:08}"))).unwrap();
        let mut w = SegmentWriter::new(file, Codec::Snappy);
        let mut buf = Vec::new();
        if index == 0 {
            encode_series(&self.series, &mut buf);
            w.log(&buf).unwrap();
        }
        for r in index * ROUNDS_PER_SEGMENT..(index + 1) * ROUNDS_PER_SEGMENT {
            buf.clear();
            encode_samples(&scrape(&self.series, self.t(r), r as f64), &mut buf);
            w.log(&buf).unwrap();
        }
        if closed {
            w.close().unwrap();
        }
    }

    /// Truncates as Prometheus does: `checkpoint.index` (every series, and the samples of
    /// segments `..=index` from scrape `from_round` on) written under a temporary name and
    /// renamed, then segments `..=index` deleted.
    fn truncate(&self, index: usize, from_round: usize) {
        let tmp = self.dir.join(format!("checkpoint.{index:08}.tmp"));
        std::fs::create_dir(&tmp).unwrap();
        let file = std::fs::File::create(tmp.join("00000000")).unwrap();
        let mut w = SegmentWriter::new(file, Codec::Snappy);
        let mut buf = Vec::new();
        encode_series(&self.series, &mut buf);
        w.log(&buf).unwrap();
        for r in from_round..(index + 1) * ROUNDS_PER_SEGMENT {
            buf.clear();
            encode_samples(&scrape(&self.series, self.t(r), r as f64), &mut buf);
            w.log(&buf).unwrap();
        }
        w.close().unwrap();
        std::fs::rename(&tmp, self.dir.join(format!("checkpoint.{index:08}"))).unwrap();
        for s in 0..=index {
            let _ = std::fs::remove_file(self.dir.join(format!("{s:08}")));
        }
        for older in 0..index {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("checkpoint.{older:08}")));
        }
    }
}

fn sidecar(dir: &Path, wal: &Path, prometheus: &str, api: &TestEmulator, web: &str) -> Child {
    let setup = SidecarSetup::new(PROJECT, api, wal, prometheus, web);
    setup.spawn(&["--log.level=debug"], &dir.join("sidecar.log"))
}

/// The scrape rounds that arrived, per series (label `n`), in arrival order.
fn arrived(api: &TestEmulator, wal: &Wal) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for ts in api.emulator.store().all_series(PROJECT) {
        let n = ts.metric.labels.get("n").cloned().unwrap_or_default();
        let rounds = ts
            .points
            .iter()
            .map(|p| {
                let end = p.interval.as_ref().unwrap().end_time.as_ref().unwrap();
                let ms = end.seconds * 1000 + i64::from(end.nanos) / 1_000_000;
                ((ms - wal.t0) / 10_000) as usize
            })
            .collect();
        out.insert(n, rounds);
    }
    out
}

/// Waits until every series has `expected` rounds (or times out) and checks them.
async fn assert_arrived(
    api: &TestEmulator,
    wal: &Wal,
    expected: &[usize],
    log: impl Fn() -> String,
) {
    let count = expected.len() * SERIES;
    let total = || arrived(api, wal).values().map(Vec::len).sum::<usize>();
    wait_for(Duration::from_secs(30), || total() >= count).await;
    // Anything sent twice or late would show up within a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = arrived(api, wal);
    assert_eq!(got.len(), SERIES, "{got:?}\n{}", log());
    for (n, rounds) in &got {
        assert_eq!(rounds, expected, "series n={n}:\n{}", log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_before_the_first_read_delivers_the_checkpoints_samples() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::new(dir.path().join("wal"));
    for s in 0..4 {
        wal.segment(s, s < 3);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let prometheus = fake_prometheus::serve_api_ready_when(&[METRIC], ready.clone()).await;
    let api = start_quiet_emulator().await;
    let web = format!("127.0.0.1:{}", free_port());
    let child = sidecar(dir.path(), &wal.dir, &prometheus.uri(), &api, &web);
    wait_for(Duration::from_secs(30), || {
        child
            .log_tail(50)
            .contains("waiting for Prometheus to be ready")
    })
    .await;

    // Prometheus truncates segments 0 and 1 (keeping scrapes 1 on), then turns ready.
    wal.truncate(1, 1);
    ready.store(true, Ordering::SeqCst);
    assert_arrived(&api, &wal, &(1..8).collect::<Vec<_>>(), || {
        child.log_tail(40)
    })
    .await;
    assert_eq!(
        scrape_value(&web, SKIPPED),
        Some(2.0),
        "segments 0 and 1 were deleted unread:\n{}",
        child.log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_while_stopped_delivers_the_checkpoints_samples() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::new(dir.path().join("wal"));
    for s in 0..5 {
        wal.segment(s, s < 4);
    }
    // A server's WAL as the sidecar usually finds it: a checkpoint (scrapes 3 on of segments 0
    // and 1), then segments.
    wal.truncate(1, 3);
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let api = start_quiet_emulator().await;
    let web = format!("127.0.0.1:{}", free_port());
    let mut child = sidecar(dir.path(), &wal.dir, &prometheus.uri(), &api, &web);
    assert_arrived(&api, &wal, &(3..10).collect::<Vec<_>>(), || {
        child.log_tail(40)
    })
    .await;

    // Stopped in segment 4 while Prometheus writes segments 5 to 9 and truncates up to 6,
    // keeping scrapes 11 on (from checkpoint 1 and segments 2 to 6): scrape 10 lived only in
    // deleted segment 5.
    child.signal("STOP");
    for s in 5..10 {
        wal.segment(s, s < 9);
    }
    wal.truncate(6, 11);
    child.signal("CONT");
    let expected: Vec<usize> = (3..10).chain(11..20).collect();
    assert_arrived(&api, &wal, &expected, || child.log_tail(40)).await;
    assert!(
        scrape_value(&web, SKIPPED).is_some_and(|v| v >= 1.0),
        "{}",
        child.log_tail(40)
    );
}
