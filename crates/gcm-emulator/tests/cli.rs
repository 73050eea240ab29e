//! The `gcm-emulator` binary: flags, serving until SIGTERM with periodic summaries, and `top`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gcm_api::monitoring::metric_service_client::MetricServiceClient;

const BIN: &str = env!("CARGO_BIN_EXE_gcm-emulator");

#[test]
fn bad_flags_exit_2_with_clap_message() {
    let out = Command::new(BIN).arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));

    let out = Command::new(BIN).args(["top"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--project is required");

    let out = Command::new(BIN)
        .args(["--summary-interval", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_address_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen-address", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen-address"));
}

#[tokio::test]
async fn serves_logs_summaries_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--listen-address",
            &format!("127.0.0.1:{port}"),
            "--summary-interval",
            "200ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("emulator never listened: {e}"),
        }
    };
    MetricServiceClient::new(channel)
        .create_time_series(request(vec![gauge(
            "custom.googleapis.com/cli",
            &[],
            at(3600),
            1.0,
        )]))
        .await
        .expect("accepted by the binary");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    assert!(
        out.0.success(),
        "clean exit on SIGTERM: {:?}\n{}",
        out.0,
        out.1
    );
    assert!(
        out.1.contains("points_accepted=1"),
        "summary line in stderr:\n{}",
        out.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_prints_plain_tables_when_not_on_a_terminal() {
    let mut h = start(config()).await;
    h.create(vec![
        gauge("custom.googleapis.com/top", &[("i", "1")], at(0), 1.0),
        gauge("custom.googleapis.com/top", &[("i", "2")], at(0), 1.0),
    ])
    .await
    .unwrap();
    let address = h.running.addr.to_string();

    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "top",
                "--address",
                &address,
                "--project",
                PROJECT,
                "--interval",
                "100ms",
                "--duration",
                "500ms",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains('\x1b'), "no screen clearing when piped");
    let tables = stdout.matches("METRIC TYPE").count();
    assert!((2..=6).contains(&tables), "{tables} tables in:\n{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("custom.googleapis.com/top"))
        .expect("a row for the metric");
    let cells: Vec<_> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["custom.googleapis.com/top", "GAUGE", "DOUBLE", "2", "2"]
    );
}

#[test]
fn top_without_an_emulator_exits_1() {
    let address = format!("127.0.0.1:{}", free_port());
    let out = Command::new(BIN)
        .args([
            "top",
            "--address",
            &address,
            "--project",
            "p",
            "--interval",
            "100ms",
            "--duration",
            "250ms",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never reached"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
