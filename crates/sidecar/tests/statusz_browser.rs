//! `/statusz` of the real binary, looked at by a real browser: Debian's Chromium in headless mode
//! takes a screenshot (the page renders: right size, not blank) and dumps the DOM it built (the
//! configuration rows keep the original's exact form). The sidecar runs without a Prometheus to
//! talk to, as it does while waiting for one, which is when operators most need the page.
//!
//! Needs `chromium` on PATH (`scripts/install-deps.sh`).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;

/// Runs headless Chromium with the flags this machine needs and a fresh profile, killed after a
/// minute.
fn chromium(args: &[&str]) -> Output {
    let browser = require_binary("chromium");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut output = child.wait_with_output().unwrap();
    output.stdout = reader.join().unwrap();
    output
}

/// Whether `GET path` on `address` answers 200 (plain HTTP/1.1, no client library).
fn http_ok(address: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200 ")
}

/// Decodes a PNG to 8-bit RGBA: (width, height, pixels).
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 4]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..frame.buffer_size()];
    let pixels = match frame.color_type {
        png::ColorType::Rgba => bytes
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        png::ColorType::Rgb => bytes
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (frame.width, frame.height, pixels)
}

#[test]
fn statusz_renders_in_chromium_with_the_configuration_rows() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let (web_port, nothing_there) = (free_port(), free_port());
    let _sidecar = Child::spawn(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            "--stackdriver.project-id=statusz-test",
            "--stackdriver.api-address=http://127.0.0.1:9/?auth=false",
            "--stackdriver.kubernetes.location=europe-west1-b",
            "--stackdriver.kubernetes.cluster-name=prod",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address=http://user:hunter2@127.0.0.1:{nothing_there}/"),
            &format!("--web.listen-address=127.0.0.1:{web_port}"),
        ],
        &dir.path().join("sidecar.log"),
    );
    let url = format!("http://127.0.0.1:{web_port}/statusz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_ok(&format!("127.0.0.1:{web_port}"), "/statusz") {
        assert!(Instant::now() < deadline, "{url} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }

    let shot = dir.path().join("statusz.png");
    let out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        &format!("--window-size={WIDTH},{HEIGHT}"),
        &url,
    ]);
    assert!(
        shot.is_file(),
        "no screenshot; chromium said:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (width, height, pixels) = decode_png(&shot);
    assert_eq!((width, height), (WIDTH, HEIGHT));
    let background = pixels[0];
    let inked = pixels.iter().filter(|p| **p != background).count();
    let distinct: std::collections::HashSet<_> = pixels.iter().collect();
    assert!(
        inked > pixels.len() / 100 && distinct.len() > 16,
        "the page looks blank: {inked} of {} pixels differ from the background, {} colours",
        pixels.len(),
        distinct.len()
    );

    let out = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<title>Status for stackdriver-prometheus-sidecar</title>"),
        "{dom}"
    );
    for row in [
        format!("<tr><th>Listen address</th><td>127.0.0.1:{web_port}</td></tr>"),
        "<tr><th>Project ID resource</th><td>projects/statusz-test</td></tr>".into(),
        "<tr><th>Kubernetes labels: location</th><td>europe-west1-b</td></tr>".into(),
        "<tr><th>Kubernetes labels: cluster name</th><td>prod</td></tr>".into(),
        format!("<tr><th>WAL directory</th><td>{}</td></tr>", wal.display()),
        format!(
            "<tr><th>Prometheus URL</th><td>http://REDACTED@127.0.0.1:{nothing_there}/</td></tr>"
        ),
        "<tr><th>Use GKE resource</th><td>false</td></tr>".into(),
    ] {
        assert!(dom.contains(&row), "the DOM lacks {row}:\n{dom}");
    }
    assert!(
        dom.contains("waiting for Prometheus"),
        "readiness not shown:\n{dom}"
    );
    assert!(!dom.contains("hunter2"), "a password reached the page");
}
