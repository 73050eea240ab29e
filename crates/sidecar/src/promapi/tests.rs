use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::fake_prometheus::*;
use super::*;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// A URL nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{address}/")
}

#[test]
fn base_without_trailing_slash_is_treated_as_a_directory() {
    let api = client_with_base("http://prometheus:9090/prefix");
    assert_eq!(api.base().as_str(), "http://prometheus:9090/prefix/");
    assert_eq!(
        api.endpoint(TARGETS_PATH).expect("joins").as_str(),
        "http://prometheus:9090/prefix/api/v1/targets"
    );
    assert_eq!(
        api.endpoint(READY_PATH).expect("joins").as_str(),
        "http://prometheus:9090/prefix/-/ready"
    );
}

#[test]
fn base_with_trailing_slash_and_bare_host_are_kept() {
    assert_eq!(
        client_with_base("http://prometheus:9090/prefix/")
            .base()
            .as_str(),
        "http://prometheus:9090/prefix/"
    );
    assert_eq!(
        client_with_base("http://prometheus:9090").base().as_str(),
        "http://prometheus:9090/"
    );
}

#[tokio::test]
async fn requests_go_below_a_path_prefix_without_trailing_slash() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/prom/api/v1/targets"))
        .respond_with(json(TARGETS))
        .expect(1)
        .mount(&server)
        .await;
    let api = client_with_base(&format!("{}/prom", server.uri()));
    let targets = api.targets().await.expect("targets below the prefix");
    assert_eq!(targets.len(), 3);
}

#[tokio::test]
async fn ready_is_true_on_200_and_false_on_the_replay_503() {
    let server = MockServer::start().await;
    Mock::given(path("/-/ready"))
        .respond_with(text(503, READY_503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/-/ready"))
        .respond_with(text(200, READY))
        .mount(&server)
        .await;
    let api = client(&server);
    assert!(!api.is_ready().await.expect("an answer"));
    assert!(api.is_ready().await.expect("an answer"));
}

#[tokio::test]
async fn ready_without_server_is_a_transport_error_naming_the_url() {
    let base = closed_port_url();
    let api = client_with_base(&base);
    let error = api.is_ready().await.expect_err("nothing listens");
    assert!(matches!(error, PromApiError::Transport { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("{base}-/ready")), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
}

#[tokio::test]
async fn wait_ready_polls_fast_until_ready() {
    let server = MockServer::start().await;
    Mock::given(path("/-/ready"))
        .respond_with(text(503, READY_503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/-/ready"))
        .respond_with(text(200, READY))
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .wait_ready(&Shutdown::new())
        .await
        .expect("becomes ready");
    // 100 ms + 200 ms of back-off; the original's 3 s poll period (or a fixed sleep after
    // readiness) would take far longer.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests_to(&server, "/-/ready").await.len(), 3);
}

#[tokio::test]
async fn wait_ready_returns_at_once_when_ready() {
    let server = MockServer::start().await;
    Mock::given(path("/-/ready"))
        .respond_with(text(200, READY))
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server)
        .wait_ready(&Shutdown::new())
        .await
        .expect("ready");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(requests_to(&server, "/-/ready").await.len(), 1);
}

#[tokio::test]
async fn wait_ready_keeps_polling_through_connection_refused_and_stops_on_cancel() {
    let api = client_with_base(&closed_port_url());
    let cancel = Shutdown::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            cancel.trigger();
        })
    };
    let started = Instant::now();
    let outcome = api.wait_ready(&cancel).await;
    assert!(
        matches!(outcome, Err(PromApiError::Cancelled)),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    canceller.await.expect("canceller ran");
}

#[tokio::test]
async fn wait_ready_cancelled_while_prometheus_replays_its_wal() {
    let server = MockServer::start().await;
    Mock::given(path("/-/ready"))
        .respond_with(text(503, READY_503))
        .mount(&server)
        .await;
    let cancel = Shutdown::new();
    cancel.trigger();
    let outcome = client(&server).wait_ready(&cancel).await;
    assert!(
        matches!(outcome, Err(PromApiError::Cancelled)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn targets_decode_the_real_answer_with_sorted_labels() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let targets = client(&server).targets().await.expect("decodes");
    assert_eq!(targets.len(), 3);
    let prometheus = targets
        .iter()
        .find(|t| t.labels.contains(&label("job", "prometheus")))
        .expect("the prometheus target");
    assert_eq!(
        prometheus.labels,
        vec![
            label("env", "walstudy"),
            label("instance", "127.0.0.1:9090"),
            label("job", "prometheus"),
        ]
    );
    assert_eq!(
        prometheus.discovered_labels,
        vec![
            label("__address__", "127.0.0.1:9090"),
            label("__metrics_path__", "/metrics"),
            label("__scheme__", "http"),
            label("__scrape_interval__", "1s"),
            label("__scrape_timeout__", "1s"),
            label("env", "walstudy"),
            label("job", "prometheus"),
        ]
    );
    for target in &targets {
        assert!(target.labels.is_sorted_by(|a, b| a.name < b.name));
        assert!(
            target
                .discovered_labels
                .is_sorted_by(|a, b| a.name < b.name)
        );
    }
}

#[tokio::test]
async fn targets_with_null_lists_decode_as_empty() {
    let server = MockServer::start().await;
    serve_targets(
        &server,
        r#"{"status":"success","data":{"activeTargets":null,"droppedTargets":null}}"#,
    )
    .await;
    assert_eq!(client(&server).targets().await.expect("decodes"), vec![]);
}

#[tokio::test]
async fn targets_during_wal_replay_report_status_and_body() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(503, READY_503))
        .mount(&server)
        .await;
    let error = client(&server).targets().await.expect_err("503 plain text");
    match &error {
        PromApiError::UnexpectedResponse {
            url,
            status,
            body_excerpt,
        } => {
            assert_eq!(*status, 503);
            assert_eq!(body_excerpt, "Service Unavailable");
            assert!(url.ends_with("/api/v1/targets"), "{url}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("503"), "{error}");
}

#[tokio::test]
async fn wrong_prefix_404_page_is_an_unexpected_response() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(404, NOT_FOUND_PAGE))
        .mount(&server)
        .await;
    let error = client(&server).targets().await.expect_err("404 plain text");
    assert!(
        matches!(&error, PromApiError::UnexpectedResponse { status: 404, body_excerpt, .. } if body_excerpt == "404 page not found"),
        "{error:?}"
    );
}

#[tokio::test]
async fn garbage_with_200_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(200, "<html>not the API</html>"))
        .mount(&server)
        .await;
    let error = client(&server).targets().await.expect_err("not JSON");
    assert!(
        matches!(error, PromApiError::Decode { status: 200, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn long_unexpected_bodies_are_cut_in_errors() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(502, &"x".repeat(10_000)))
        .mount(&server)
        .await;
    let error = client(&server).targets().await.expect_err("502");
    let PromApiError::UnexpectedResponse { body_excerpt, .. } = error else {
        panic!("unexpected error {error:?}");
    };
    assert!(body_excerpt.chars().count() <= BODY_EXCERPT_CHARS + 1);
}

#[tokio::test]
async fn api_error_envelope_keeps_error_type_and_message() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .respond_with(json_with_status(400, METADATA_BAD_MATCHER))
        .mount(&server)
        .await;
    let error = client(&server)
        .targets_metadata("prometheus", "127.0.0.1:9090", None)
        .await
        .expect_err("bad_data");
    match &error {
        PromApiError::Api {
            status,
            error_type,
            error,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type, "bad_data");
            assert!(error.contains("match_target"), "{error}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!error.is_not_found());
}

#[tokio::test]
async fn metadata_request_carries_the_escaped_match_target_and_metric() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param(
            "match_target",
            r#"{job="we\"ird\\job\n",instance="127.0.0.1:9090"}"#,
        ))
        .and(query_param("metric", "prometheus_http_requests_total"))
        .respond_with(json(METADATA_PROMETHEUS_HTTP_REQUESTS))
        .expect(1)
        .mount(&server)
        .await;
    let items = client(&server)
        .targets_metadata(
            "we\"ird\\job\n",
            "127.0.0.1:9090",
            Some("prometheus_http_requests_total"),
        )
        .await
        .expect("an answer")
        .expect("found");
    assert_eq!(
        items,
        vec![MetadataItem {
            metric: String::new(),
            metric_type: MetricType::Counter,
            help: "Counter of HTTP requests.".to_owned(),
            unit: String::new(),
        }]
    );
}

#[tokio::test]
async fn batch_metadata_has_every_family_with_its_type() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, "walstudy", METADATA_WALSTUDY_BATCH).await;
    let items = client(&server)
        .targets_metadata("walstudy", "127.0.0.1:9101", None)
        .await
        .expect("an answer")
        .expect("found");
    let types: Vec<(&str, MetricType)> = items
        .iter()
        .map(|i| (i.metric.as_str(), i.metric_type))
        .collect();
    assert_eq!(
        types,
        vec![
            ("walstudy_requests_total", MetricType::Counter),
            ("walstudy_request_duration_seconds", MetricType::Histogram),
            ("walstudy_queue_size_gauge_hist", MetricType::GaugeHistogram),
            ("walstudy_ooo_gauge", MetricType::Gauge),
            ("walstudy_churn_gauge", MetricType::Gauge),
        ]
    );
    let requests = requests_to(&server, METADATA_URL_PATH).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(query_value(&requests[0], "metric"), None);
}

#[tokio::test]
async fn metadata_not_found_error_and_null_body_are_none() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param("metric", "gone"))
        .respond_with(json_with_status(404, METADATA_NOT_FOUND))
        .mount(&server)
        .await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param("metric", "null_body"))
        .respond_with(json("null"))
        .mount(&server)
        .await;
    let api = client(&server);
    assert_eq!(
        api.targets_metadata("node", "127.0.0.1:9100", Some("gone"))
            .await
            .expect("not an error"),
        None
    );
    assert_eq!(
        api.targets_metadata("node", "127.0.0.1:9100", Some("null_body"))
            .await
            .expect("not an error"),
        None
    );
}

#[tokio::test]
async fn metadata_empty_answer_is_an_empty_list() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .respond_with(json(METADATA_EMPTY))
        .mount(&server)
        .await;
    assert_eq!(
        client(&server)
            .targets_metadata("node", "127.0.0.1:9100", Some("does_not_exist"))
            .await
            .expect("an answer"),
        Some(vec![])
    );
}

#[tokio::test]
async fn untyped_and_unrecognised_types_decode_as_unknown() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .respond_with(json(
            r#"{"status":"success","data":[
                {"target":{},"metric":"a","type":"untyped","help":"","unit":""},
                {"target":{},"metric":"b","type":"some_future_type","help":"","unit":""},
                {"target":{},"metric":"c","type":"stateset","help":"h","unit":"seconds"}]}"#,
        ))
        .mount(&server)
        .await;
    let items = client(&server)
        .targets_metadata("j", "i", None)
        .await
        .expect("an answer")
        .expect("found");
    let types: Vec<MetricType> = items.iter().map(|i| i.metric_type).collect();
    assert_eq!(
        types,
        vec![
            MetricType::Unknown,
            MetricType::Unknown,
            MetricType::StateSet
        ]
    );
    assert_eq!(items[2].unit, "seconds");
}

#[tokio::test]
async fn request_timeout_is_a_transport_error() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(TARGETS.as_bytes().to_vec(), "application/json")
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let api = PromApi::new(
        Url::parse(&server.uri()).expect("parses"),
        Duration::from_millis(200),
    );
    let error = api.targets().await.expect_err("times out");
    assert!(matches!(error, PromApiError::Transport { .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[test]
fn passwords_are_redacted_in_error_urls() {
    let url = Url::parse("http://user:secret@prometheus:9090/api/v1/targets").expect("parses");
    let shown = redacted(&url);
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("user"), "{shown}");
}

#[test]
fn loopback_hosts_are_recognised() {
    for loopback in [
        "http://127.0.0.1:9090/",
        "http://localhost:9090/",
        "http://[::1]:9090/",
    ] {
        assert!(
            is_loopback_host(&Url::parse(loopback).expect("parses")),
            "{loopback}"
        );
    }
    assert!(!is_loopback_host(
        &Url::parse("http://prometheus:9090/").expect("parses")
    ));
}
