//! Series that can never be written, decided once per series through the real binary: a
//! recording rule's name (with colons) under a prefix outside `prometheus.googleapis.com` is a
//! series-level drop, counted by reason and metric on `/metrics` and explained at warning level,
//! not a point refused one by one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::{Child, free_port, http_get, scrape_value, start_emulator_with, wait_for};
use gcm_emulator::EmulatorConfig;

const RULE: &str = "job:requests:rate5m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_rule_name_with_colons_is_a_series_drop_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, RULE, 3, 4, now_ms() - 600_000);
    let prometheus = fake_prometheus::serve_api(&[RULE]).await;
    let api = start_emulator_with(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    })
    .await;
    let web = format!("127.0.0.1:{}", free_port());
    let child = Child::spawn(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=drops",
            &format!("--stackdriver.api-address=http://{}/?auth=false", api.addr),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=drops",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address={}/", prometheus.uri()),
            &format!("--web.listen-address={web}"),
        ],
        &dir.path().join("sidecar.log"),
    );
    let dropped = r#"prometheus_sidecar_dropped_series{reason="invalid_metric_name"}"#;
    wait_for(Duration::from_secs(30), || {
        scrape_value(&web, "prometheus_sidecar_samples_processed") == Some(12.0)
    })
    .await;
    assert_eq!(
        scrape_value(&web, dropped),
        Some(3.0),
        "{}",
        child.log_tail(20)
    );
    let by_metric = format!(
        r#"prometheus_sidecar_dropped_series_by_metric{{reason="invalid_metric_name",metric="{RULE}"}}"#
    );
    assert_eq!(scrape_value(&web, &by_metric), Some(3.0));
    let (_, statusz) = http_get(&web, "/statusz").unwrap();
    assert!(statusz.contains("invalid_metric_name"), "{statusz}");
    assert!(statusz.contains(RULE), "{statusz}");
    // Not one point was made only to be refused.
    let refused = r#"prometheus_sidecar_export_points_dropped_total{reason="invalid_metric_type"}"#;
    assert!(scrape_value(&web, refused).unwrap_or(0.0) == 0.0);
    assert_eq!(api.emulator.store().stats().create_requests, 0);
    let log = child.log_tail(50);
    let warning = log
        .lines()
        .find(|l| l.contains("level=warn") && l.contains("invalid_metric_name"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("metric_renames"), "{warning}");
    assert!(warning.contains(RULE), "{warning}");
}
