//! Helpers of the tests that make a real Prometheus (server or agent) truncate its WAL under the
//! sidecar: a one-second scrape configuration, an emulator that accepts one point per second,
//! the sidecar binary with its `/metrics`, and an API outage that leaves the reader behind a
//! truncation. Builds on `common` (processes, ports).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gcm_emulator::{Emulator, EmulatorConfig, RunningEmulator, StoredSeries};
use prometheus_wal::{WalPosition, list_segments, newest_checkpoint};
use stackdriver_prometheus_sidecar::progress::LoadedProgress;

use crate::common::{Child, free_port};

/// Metric type prefix of the exported series.
pub const PREFIX: &str = "external.googleapis.com/prometheus/";

/// Writes `prometheus.yml` in `dir`: scrape the node exporter every second, or nothing.
pub fn write_config(dir: &Path, node_port: Option<u16>) {
    let jobs = node_port.map_or(String::new(), |port| {
        format!(
            "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
    });
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\n{jobs}"),
    )
    .unwrap();
}

/// An emulator with the real API's rules except the 5-second minimum between points (the
/// scrapes are 1 s apart), serving on a free loopback port.
pub async fn start_emulator() -> (Emulator, RunningEmulator) {
    let emulator = Emulator::new(EmulatorConfig {
        sampling_period: Duration::ZERO,
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let running = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (emulator, running)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `done` every 250 ms, failing after `timeout` with `what`.
pub async fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The position up to which the sidecar saved delivery in `wal` (the default when none).
pub fn saved_position(wal: &Path) -> WalPosition {
    match stackdriver_prometheus_sidecar::progress::file::load(wal) {
        Ok(LoadedProgress::Exact(saved)) => saved.position,
        _ => WalPosition::default(),
    }
}

/// The sidecar binary following `wal`, sending to `api` under `project`.
pub struct Sidecar {
    pub child: Child,
    web_port: u16,
}

impl Sidecar {
    /// Starts run number `run` (its log is `sidecar-<run>.log` in `dir`).
    pub fn start(
        dir: &Path,
        run: usize,
        project: &str,
        api: SocketAddr,
        wal: &Path,
        prometheus_port: u16,
    ) -> Sidecar {
        let web_port = free_port();
        let child = Child::spawn(
            Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
            &[
                &format!("--stackdriver.project-id={project}"),
                &format!("--stackdriver.api-address=http://{api}/?auth=false"),
                "--stackdriver.generic.location=here",
                &format!("--stackdriver.generic.namespace={project}"),
                &format!("--prometheus.wal-directory={}", wal.display()),
                &format!("--prometheus.api-address=http://127.0.0.1:{prometheus_port}/"),
                &format!("--web.listen-address=127.0.0.1:{web_port}"),
            ],
            &dir.join(format!("sidecar-{run}.log")),
        );
        Sidecar { child, web_port }
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }

    /// The value of an unlabelled metric on its `/metrics`; fails if it exited.
    pub async fn metric(&mut self, name: &str) -> f64 {
        if let Some(status) = self.child.wait(Duration::ZERO) {
            panic!("the sidecar exited ({status}):\n{}", self.log_tail(30));
        }
        let url = format!("http://127.0.0.1:{}/metrics", self.web_port);
        let text = match reqwest::get(&url).await {
            Ok(resp) => resp.text().await.unwrap(),
            Err(e) => panic!("{url}: {e}\n{}", self.log_tail(30)),
        };
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
            .parse()
            .unwrap()
    }

    /// Stops it with SIGTERM and expects a clean exit.
    pub fn stop(mut self) {
        self.child.terminate();
        assert_eq!(
            self.child.wait(Duration::from_secs(30)),
            Some(0),
            "{}",
            self.log_tail(30)
        );
    }
}

/// Takes the API away (the emulator stops serving) until the reader, stuck in its segment with
/// full queues, has fallen behind a truncation: Prometheus wrote a checkpoint past that segment,
/// so the next one is gone. Brings the API back on the same address and waits until the reader
/// has moved past the deleted segments. Returns the serving emulator, when the outage began and
/// when the reader was past it (ms since the epoch).
pub async fn stall_behind_truncation(
    emulator: &Emulator,
    running: RunningEmulator,
    wal: &Path,
    sidecar: &mut Sidecar,
) -> (RunningEmulator, i64, i64) {
    let api = running.addr;
    let outage_ms = now_ms();
    tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("the emulator did not stop")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let stalled_in = loop {
        let reading = sidecar.metric("prometheus_sidecar_wal_segment").await as u64;
        if newest_checkpoint(wal)
            .unwrap()
            .is_some_and(|cp| cp.index > reading)
        {
            break reading;
        }
        assert!(
            Instant::now() < deadline,
            "the reader did not fall behind a truncation (in segment {reading}, WAL {:?}):\n{}",
            segments(wal),
            sidecar.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let running = emulator.serve(api).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Past the checkpoint, which is beyond the segment after `stalled_in`.
    while sidecar.metric("prometheus_sidecar_wal_segment").await as u64 <= stalled_in + 1 {
        assert!(
            Instant::now() < deadline,
            "the reader did not move on from segment {stalled_in}:\n{}",
            sidecar.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (running, outage_ms, now_ms())
}

/// Indexes of the segments in `wal`.
pub fn segments(wal: &Path) -> Vec<u64> {
    list_segments(wal)
        .unwrap()
        .iter()
        .map(|s| s.index)
        .collect()
}

/// Everything the emulator holds for `project` once no more points arrive.
pub async fn settled(emulator: &Emulator, project: &str, sidecar: &Sidecar) -> Vec<StoredSeries> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_total = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let all = emulator.store().all_series(project);
        let total: usize = all.iter().map(|ts| ts.points.len()).sum();
        if total == last_total && total > 0 {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not settle:\n{}",
            sidecar.log_tail(30)
        );
        last_total = total;
    }
}

/// End time of a point, ms since the epoch.
pub fn end_ms(p: &gcm_api::monitoring::Point) -> i64 {
    let e = p.interval.unwrap().end_time.unwrap();
    e.seconds * 1000 + i64::from(e.nanos / 1_000_000)
}

/// Start time of a point, ms since the epoch.
pub fn start_ms(p: &gcm_api::monitoring::Point) -> i64 {
    let s = p.interval.unwrap().start_time.unwrap();
    s.seconds * 1000 + i64::from(s.nanos / 1_000_000)
}

/// The emulator refused nothing, except at most the one request per `kill -9` that was in
/// flight when the process died: the API had stored it, the sidecar had not recorded it yet, so
/// it is sent again after the restart and refused as out of order (what the issue allows).
pub fn assert_nothing_refused_but_in_flight_requests(
    stats: &gcm_emulator::Stats,
    kills: u64,
    log: &str,
) {
    let out_of_order = stats
        .rejected_by_reason
        .iter()
        .filter(|(reason, _)| reason.to_string() == "out_of_order")
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert!(
        stats.points_rejected == out_of_order
            && stats.requests_rejected + stats.requests_partially_rejected <= kills
            && out_of_order <= 200 * kills,
        "the emulator refused more than the requests in flight at {kills} kill(s): {}\n{log}",
        stats.summary_line(),
    );
}
