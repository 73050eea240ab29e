//! The command line as an operator meets it: help, version, and the exit status and message of
//! every kind of bad invocation.

mod common;

use std::process::{Command, Output};

use common::http_get;

fn sidecar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let out = sidecar(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--stackdriver.project-id",
        "--stackdriver.api-address",
        "--stackdriver.kubernetes.location",
        "--stackdriver.kubernetes.cluster-name",
        "--stackdriver.generic.location",
        "--stackdriver.generic.namespace",
        "--stackdriver.metrics-prefix",
        "--stackdriver.use-gke-resource",
        "--stackdriver.use-restricted-ips",
        "--stackdriver.retry-budget",
        "--stackdriver.min-shards",
        "--stackdriver.max-shards",
        "--stackdriver.store-in-files-directory",
        "--prometheus.wal-directory",
        "--prometheus.api-address",
        "--log.level",
        "--log.format",
        "--monitoring.backend",
    ] {
        assert!(text.contains(flag), "--help does not list {flag}:\n{text}");
    }
}

#[test]
fn version_exits_0() {
    let out = sidecar(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_project_id_exits_2_naming_the_flag() {
    let out = sidecar(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--stackdriver.project-id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn empty_project_id_exits_2_naming_the_flag() {
    let out = sidecar(&["--stackdriver.project-id="]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--stackdriver.project-id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_flag_exits_2_naming_it() {
    let out = sidecar(&[
        "--stackdriver.project-id=p",
        "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
        "--web.enable-lifecycle",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--web.enable-lifecycle"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_values_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--log.format=xml"][..], "--log.format"),
        (&["--log.level=loud"][..], "--log.level"),
        (
            &["--stackdriver.use-gke-resource=maybe"][..],
            "--stackdriver.use-gke-resource",
        ),
        (
            &["--stackdriver.api-address=::"][..],
            "--stackdriver.api-address",
        ),
        (
            &["--prometheus.api-address=localhost:9090"][..],
            "--prometheus.api-address",
        ),
        (
            &["--stackdriver.min-shards=0"][..],
            "--stackdriver.min-shards",
        ),
        (
            &["--stackdriver.max-shards=5000"][..],
            "--stackdriver.max-shards",
        ),
        (
            &["--stackdriver.min-shards=8", "--stackdriver.max-shards=4"][..],
            "--stackdriver.max-shards",
        ),
        (
            &["--stackdriver.max-shards=many"][..],
            "--stackdriver.max-shards",
        ),
        (&["--monitoring.backend=influx"][..], "--monitoring.backend"),
        // Every point would be refused: a domain clients cannot write, a malformed path.
        (
            &["--stackdriver.metrics-prefix=test.googleapis.com/prometheus"][..],
            "--stackdriver.metrics-prefix",
        ),
        (
            &["--stackdriver.metrics-prefix=custom.googleapis.com/prom/"][..],
            "--stackdriver.metrics-prefix",
        ),
    ] {
        let mut all = vec!["--stackdriver.project-id=p"];
        if !args[0].starts_with("--stackdriver.api-address") {
            all.push("--stackdriver.api-address=http://127.0.0.1:1/?auth=false");
        }
        all.extend_from_slice(args);
        let out = sidecar(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn selector_and_config_file_errors_exit_2_naming_the_flag_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.yml");
    std::fs::write(
        &file,
        "metric_renames:\n  - from: a\n    to: b\nstatic_metadata:\n  - metric: m\n    type: timer\n",
    )
    .unwrap();
    let config = format!("--config-file={}", file.display());
    for (arg, expected) in [
        (r#"--include={a-b="c"}"#, "--include"),
        ("--filter=job=node", "--filter"),
        (config.as_str(), "line 6:"),
    ] {
        let out = sidecar(&[
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
            arg,
        ]);
        assert_eq!(out.status.code(), Some(2), "{arg}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{arg}: {}", stderr(&out));
    }
}

#[test]
fn missing_wal_directory_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("no-such-wal");
    let out = sidecar(&[
        "--stackdriver.project-id=p",
        "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
        &format!("--prometheus.wal-directory={}", wal.display()),
        "--web.listen-address=127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-wal"), "{}", stderr(&out));
}

/// Runs the sidecar against the real API address with `env`, in a fresh WAL directory.
fn sidecar_with_credentials_env(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar"));
    cmd.args([
        "--stackdriver.project-id=p",
        &format!("--prometheus.wal-directory={}", dir.path().display()),
        "--web.listen-address=127.0.0.1:0",
        "--prometheus.api-address=http://127.0.0.1:1/",
    ]);
    // Never pick up the machine's own credentials.
    cmd.env("HOME", dir.path())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    cmd.env("GCE_METADATA_HOST", "127.0.0.1:1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_missing_credentials_file_exits_1_naming_the_problem() {
    let out = sidecar_with_credentials_env(&[(
        "GOOGLE_APPLICATION_CREDENTIALS",
        "/nonexistent/key.json",
    )]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("credentials"), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(err.contains("/nonexistent/key.json"), "{err}");
}

/// Runs the sidecar with `GOOGLE_APPLICATION_CREDENTIALS` naming `name` in a fresh directory,
/// made by `make`; checks that it exits 1 at start-up naming the file and saying `why`.
fn bad_credentials_file_exits_1(name: &str, make: impl FnOnce(&std::path::Path), why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(name);
    make(&key);
    let started = std::time::Instant::now();
    let out =
        sidecar_with_credentials_env(&[("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap())]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("credentials"), "{err}");
    assert!(
        err.contains(&format!("key file {}", key.display())),
        "the file is named: {err}"
    );
    assert!(err.contains(why), "{why:?} missing from: {err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_malformed_service_account_key_exits_1() {
    bad_credentials_file_exits_1(
        "key.json",
        |key| std::fs::write(key, r#"{"type": "service_account", "client_email": "x"}"#).unwrap(),
        "private_key_id",
    );
}

#[test]
fn a_credentials_file_that_is_not_json_exits_1_naming_it() {
    bad_credentials_file_exits_1(
        "key.json",
        |key| std::fs::write(key, "not json at all\n").unwrap(),
        "cannot parse",
    );
}

#[test]
fn an_unreadable_credentials_file_exits_1_naming_it() {
    // A directory: unreadable as a file even for root, who may read any file.
    bad_credentials_file_exits_1(
        "key.json",
        |key| std::fs::create_dir(key).unwrap(),
        "Is a directory",
    );
}

#[test]
fn a_service_account_key_without_a_usable_private_key_exits_1_naming_it() {
    // Well-formed JSON whose key only fails when the first token is signed.
    bad_credentials_file_exits_1(
        "key.json",
        |key| {
            let file = serde_json::json!({
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "k1",
                "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "client_email": "sidecar@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token"
            });
            std::fs::write(key, file.to_string()).unwrap();
        },
        "private key",
    );
}

#[test]
fn an_unreachable_metadata_server_exits_1_instead_of_retrying_for_ever() {
    let started = std::time::Instant::now();
    let out = sidecar_with_credentials_env(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("credentials"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn help_lists_the_web_flags() {
    let out = sidecar(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--web.listen-address", "--web.enable-statusz"] {
        assert!(text.contains(flag), "--help does not list {flag}:\n{text}");
    }
}

#[test]
fn invalid_listen_address_exits_2_naming_the_flag() {
    let out = sidecar(&[
        "--stackdriver.project-id=p",
        "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
        "--web.listen-address=9091",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--web.listen-address"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn listen_address_in_use_exits_1_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = sidecar(&[
        "--stackdriver.project-id=p",
        "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
        &format!("--prometheus.wal-directory={}", dir.path().display()),
        &format!("--web.listen-address={address}"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("--web.listen-address={address}")),
        "{}",
        stderr(&out)
    );
}

/// A stand-in for Prometheus that answers every request with 200 and an empty body: ready, and
/// with no targets or metadata.
fn always_ready_prometheus() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                // One request per connection is enough for this test.
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    address
}

#[test]
fn wal_directory_removed_while_running_is_fatal_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let prometheus = always_ready_prometheus();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar"))
        .args([
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address=http://{prometheus}/"),
            &format!("--web.listen-address={web}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Reading has begun once readiness waits for the first batch rather than for Prometheus.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some((_, body)) = http_get(&web, "/-/ready")
            && body.contains("has not accepted a batch")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sidecar never started reading"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&wal).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar kept running after its WAL directory was removed");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("fatal error"), "{}", stderr(&out));
}
