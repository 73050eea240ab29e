//! The summary the `gcm-emulator` binary serves over HTTP with `--http-address`: plain text for
//! scripts and terminals, an HTML table for a browser, both telling what was accepted and
//! refused, per metric type.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `GET /` on `address` with `accept`: (status, content type, body), retried until the server
/// answers.
fn get(address: &str, accept: &str) -> (u16, String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let attempt = std::net::TcpStream::connect(address).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                stream,
                "GET / HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        });
        match attempt {
            Ok(response) => break response,
            Err(e) if Instant::now() > deadline => panic!("{address} never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// An emulator with its summary on a free port, holding two gauge series of one type (one of
/// them with two points), a counter, and one refused point.
async fn emulator_with_data() -> (EmulatorProcess, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let mut emulator = EmulatorProcess::start(&["--http-address", &http]).await;
    emulator
        .create(vec![
            gauge("custom.googleapis.com/http/g", &[("i", "1")], at(0), 1.0),
            gauge("custom.googleapis.com/http/g", &[("i", "2")], at(0), 1.0),
            counter("custom.googleapis.com/http/c", &[], at(-60), at(0), 5),
        ])
        .await
        .unwrap();
    emulator
        .create(vec![
            gauge("custom.googleapis.com/http/g", &[("i", "1")], at(60), 2.0),
            gauge("custom.googleapis.com/http/g", &[("i", "2")], at(-60), 2.0),
        ])
        .await
        .unwrap_err();
    (emulator, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_text_summary_counts_requests_and_lists_each_metric_type() {
    let (_emulator, http) = emulator_with_data().await;
    let (status, content_type, body) = tokio::task::spawn_blocking(move || get(&http, "*/*"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let first = body.lines().next().unwrap();
    for part in [
        "requests=2",
        "requests_partially_rejected=1",
        "series=3",
        "points_accepted=4",
        "points_rejected=1",
        "rejected_by_reason=out_of_order=1",
        "metric_types=2",
    ] {
        assert!(first.contains(part), "{part} missing from {first:?}");
    }
    assert!(body.contains(&format!("\nprojects/{PROJECT}\n")), "{body}");
    let row = |metric: &str| -> Vec<String> {
        body.lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("no row for {metric} in:\n{body}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("custom.googleapis.com/http/g"),
        ["custom.googleapis.com/http/g", "GAUGE", "DOUBLE", "2", "3"]
    );
    assert_eq!(
        row("custom.googleapis.com/http/c"),
        [
            "custom.googleapis.com/http/c",
            "CUMULATIVE",
            "INT64",
            "1",
            "1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_summary_as_an_html_table() {
    let (_emulator, http) = emulator_with_data().await;
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, content_type, body) =
        tokio::task::spawn_blocking(move || get(&http, browser_accept))
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(body.trim_end().ends_with("</html>"), "{body}");
    assert!(body.contains("points_accepted=4"), "{body}");
    assert!(
        body.contains(&format!("<h2>projects/{PROJECT}</h2>")),
        "{body}"
    );
    assert_eq!(body.matches("<table>").count(), 1, "{body}");
    assert_eq!(body.matches("</table>").count(), 1, "{body}");
    for row in [
        "<tr><td>custom.googleapis.com/http/c</td><td>CUMULATIVE</td><td>INT64</td>\
         <td class=\"n\">1</td><td class=\"n\">1</td></tr>",
        "<tr><td>custom.googleapis.com/http/g</td><td>GAUGE</td><td>DOUBLE</td>\
         <td class=\"n\">2</td><td class=\"n\">3</td></tr>",
    ] {
        assert!(body.contains(row), "no {row} in:\n{body}");
    }
}

#[test]
fn an_unusable_http_address_exits_1_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for http in [
        "nonsense".to_string(),
        taken.local_addr().unwrap().to_string(),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gcm-emulator"))
            .args([
                "--listen-address",
                &format!("127.0.0.1:{}", free_port()),
                "--http-address",
                &http,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{http}: {stderr}");
        assert!(stderr.contains("--http-address"), "{http}: {stderr}");
    }
}
