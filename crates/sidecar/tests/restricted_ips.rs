//! `--stackdriver.use-restricted-ips` through the real binary: with the default API address
//! (`monitoring.googleapis.com`, which does not resolve here), the sidecar dials the restricted
//! VIP addresses instead (replaced for the test by a local TLS server, after one address that
//! refuses connections) and still checks the server's certificate for the API host's name: the
//! test certificate is valid for `monitoring.googleapis.com` only.
//!
//! Needs the `openssl` command (`scripts/install-deps.sh`) to make the keys and certificates.

mod common;

use std::path::Path;

use common::fake_prometheus::{self, now_ms, write_gauge_wal};
use common::tls::{
    ROUNDS, SERIES, home_dir, make_ca_for, make_service_account, no_credentials, serve_tls,
    wait_for_all_points,
};
use common::{Child, free_port};
use gcm_emulator::{Emulator, EmulatorConfig};
use stackdriver_prometheus_sidecar::export::client::restricted::VIPS_OVERRIDE_ENV;

const METRIC: &str = "restricted_gauge";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_ips_are_dialled_with_the_api_hosts_tls_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca_for(dir.path(), "DNS:monitoring.googleapis.com");
    let (key, _) = make_service_account(dir.path());
    let emulator = Emulator::new(EmulatorConfig {
        summary_interval: None,
        ..EmulatorConfig::default()
    });
    let (addr, calls) = serve_tls(&emulator, &ca).await;
    let prometheus = fake_prometheus::serve_api(&[METRIC]).await;
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, METRIC, SERIES, ROUNDS, now_ms() - 600_000);

    let home = home_dir(dir.path()).to_str().unwrap().to_string();
    let vips = format!("127.0.0.1:1,{addr}");
    let mut env = no_credentials(&home);
    env.extend([
        ("SSL_CERT_FILE", ca.ca.to_str()),
        ("SSL_CERT_DIR", None),
        ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str()),
        (VIPS_OVERRIDE_ENV, Some(vips.as_str())),
    ]);
    let mut child = Child::spawn_with_env(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=tls-test",
            "--stackdriver.use-restricted-ips",
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=restricted",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address={}/", prometheus.uri()),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        &env,
        &dir.path().join("sidecar.log"),
    );
    wait_for_all_points(&emulator, &mut child).await;
    assert!(!calls.lock().unwrap().is_empty());
    let log = child.log_tail(100);
    assert!(log.contains("restricted VIP addresses"), "{log}");
    assert!(log.contains(&vips.replace(',', ", ")), "{log}");
}
