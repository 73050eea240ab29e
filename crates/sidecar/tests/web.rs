//! The HTTP endpoints as a scraper, a probe or a person meets them: `/metrics`, `/-/healthy`,
//! `/-/ready` and `/statusz`, served by the library's router on a loopback port with counters and
//! health observations set by the test.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use prometheus_wal::WalPosition;
use stackdriver_prometheus_sidecar::config::{Config, Flags};
use stackdriver_prometheus_sidecar::observe::RuntimeInfo;
use stackdriver_prometheus_sidecar::observe::health::{HealthMonitor, Snapshot};
use stackdriver_prometheus_sidecar::observe::recent::RecentErrors;
use stackdriver_prometheus_sidecar::shutdown::Shutdown;
use stackdriver_prometheus_sidecar::stats::Stats;
use stackdriver_prometheus_sidecar::web::{self, StatusPage, WebState};

struct Server {
    base: String,
    state: WebState,
    _stop: stackdriver_prometheus_sidecar::shutdown::TriggerOnDrop,
}

async fn serve(stall_after: Duration, statusz: bool) -> Server {
    let config = Config::from_flags(
        &Flags::try_parse_from([
            "sidecar",
            "--stackdriver.project-id=proj",
            "--stackdriver.api-address=http://127.0.0.1:9092/?auth=false",
        ])
        .unwrap(),
    )
    .unwrap();
    let state = WebState {
        stats: Arc::new(Stats::default()),
        info: Arc::new(RuntimeInfo {
            queue: config.api.url.clone(),
            shard_limits: (1, 200),
            capacity_per_shard: 600,
            ..RuntimeInfo::new(SystemTime::now())
        }),
        health: Arc::new(HealthMonitor::new(stall_after)),
        recent: RecentErrors::default(),
        status_page: statusz.then(|| Arc::new(StatusPage::new(&config, |_| None))),
        aggregates: Default::default(),
    };
    let listener = web::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = Shutdown::new();
    tokio::spawn(web::serve(listener, state.clone(), cancel.clone()));
    Server {
        base,
        state,
        _stop: cancel.trigger_on_drop(),
    }
}

/// `GET url` over plain HTTP/1.1 (no client library): status, content type and body.
async fn get(url: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (address, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
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

#[tokio::test]
async fn metrics_are_served_in_the_text_format_with_the_original_names() {
    let s = serve(Duration::from_secs(300), true).await;
    s.state
        .stats
        .reader
        .samples_processed
        .fetch_add(42, Relaxed);
    s.state.stats.export.points_sent(40);
    let (status, content_type, body) = get(&format!("{}/metrics", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        body.contains("\nprometheus_sidecar_samples_processed 42\n"),
        "{body}"
    );
    assert!(
        body.contains(
            "prometheus_remote_storage_succeeded_samples_total{queue=\"http://127.0.0.1:9092/?auth=false\"} 40\n"
        ),
        "{body}"
    );
    assert!(body.contains("\nprocess_resident_memory_bytes "), "{body}");
    assert!(body.contains("\nprometheus_sidecar_last_successful_send_timestamp_seconds 1"));
}

#[tokio::test]
async fn healthy_answers_200_while_progressing_and_503_with_the_reason_when_stuck() {
    let s = serve(Duration::from_secs(1), true).await;
    let url = format!("{}/-/healthy", s.base);
    let (status, content_type, body) = get(&url).await;
    assert_eq!((status, body.as_str()), (200, "starting\n"));
    assert_eq!(content_type, "text/plain; charset=utf-8");

    let stuck = Snapshot {
        reading: true,
        position: WalPosition {
            segment: 7,
            offset: 4096,
        },
        lag_bytes: 1_000_000,
        ..Snapshot::default()
    };
    let now = Instant::now();
    s.state.health.observe(now - Duration::from_secs(5), stuck);
    s.state.health.observe(now, stuck);
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("WAL reader stuck"), "{body}");
    assert!(body.contains("segment 7 offset 4096"), "{body}");

    let moved = Snapshot {
        position: WalPosition {
            segment: 7,
            offset: 8192,
        },
        ..stuck
    };
    s.state.health.observe(Instant::now(), moved);
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ok: reading segment 7 offset 8192"),
        "{body}"
    );
}

#[tokio::test]
async fn ready_answers_503_until_prometheus_is_ready_and_a_batch_was_accepted() {
    let s = serve(Duration::from_secs(300), true).await;
    let url = format!("{}/-/ready", s.base);
    let stats = &s.state.stats;
    stats.milestones.mark_wal_open();
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 503);
    assert!(body.contains("waiting for Prometheus"), "{body}");
    stats.milestones.mark_prometheus_ready();
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 503);
    assert!(body.contains("has not accepted a batch"), "{body}");
    stats.export.points_sent(200);
    assert_eq!(get(&url).await.0, 200);
}

#[tokio::test]
async fn statusz_is_html_and_can_be_turned_off() {
    let s = serve(Duration::from_secs(300), true).await;
    let (status, content_type, body) = get(&format!("{}/statusz", s.base)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(body.contains("<tr><th>Project ID resource</th><td>projects/proj</td></tr>"));

    let off = serve(Duration::from_secs(300), false).await;
    assert_eq!(get(&format!("{}/statusz", off.base)).await.0, 404);
    let (status, _, index) = get(&format!("{}/", off.base)).await;
    assert_eq!(status, 200);
    assert!(
        index.contains("/-/healthy") && !index.contains("/statusz"),
        "{index}"
    );
}
