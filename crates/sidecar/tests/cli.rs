//! The command line as an operator meets it: help, version, and the exit status and message of
//! every kind of bad invocation.

use std::process::{Command, Output};

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
        "--prometheus.wal-directory",
        "--prometheus.api-address",
        "--log.level",
        "--log.format",
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
fn missing_wal_directory_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("no-such-wal");
    let out = sidecar(&[
        "--stackdriver.project-id=p",
        "--stackdriver.api-address=http://127.0.0.1:1/?auth=false",
        &format!("--prometheus.wal-directory={}", wal.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-wal"), "{}", stderr(&out));
}

#[test]
fn authenticated_api_address_is_refused_until_supported() {
    let out = sidecar(&["--stackdriver.project-id=p"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--stackdriver.api-address"),
        "{}",
        stderr(&out)
    );
}
