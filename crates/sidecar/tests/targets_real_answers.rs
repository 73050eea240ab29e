//! The targets cache against the real `/api/v1/targets` answer of a Prometheus 2.42 that scraped
//! one node exporter under five jobs (`node`…`node5`), itself (with `env="walstudy"`) and a test
//! exporter: the join of WAL series to targets as the series resolver does it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_wal::{Label, Labels};
use stackdriver_prometheus_sidecar::promapi::PromApi;
use stackdriver_prometheus_sidecar::targets::{TargetsCache, drop_target_labels};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TARGETS_RUN_C: &str = include_str!("fixtures/promapi/targets_C_with_extra_jobs.json");

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs
        .iter()
        .map(|(name, value)| Label {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    labels.sort();
    labels
}

async fn fake_prometheus() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/targets"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(TARGETS_RUN_C.as_bytes().to_vec(), "application/json"),
        )
        .mount(&server)
        .await;
    server
}

fn targets_cache(server: &MockServer, static_labels: Labels) -> TargetsCache {
    let api = PromApi::new(
        Url::parse(&server.uri()).expect("mock server URL parses"),
        Duration::from_secs(5),
    );
    TargetsCache::new(api, static_labels)
}

fn node_cpu_series(job: &str) -> Labels {
    labels(&[
        ("__name__", "node_cpu_seconds_total"),
        ("cpu", "0"),
        ("instance", "127.0.0.1:9100"),
        ("job", job),
        ("mode", "idle"),
    ])
}

async fn target_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .expect("requests are recorded")
        .len()
}

#[tokio::test]
async fn one_exporter_scraped_by_five_jobs_gives_five_distinct_targets() {
    let server = fake_prometheus().await;
    let cache = targets_cache(&server, Vec::new());
    let mut seen = Vec::new();
    for job in ["node", "node2", "node3", "node4", "node5"] {
        let target = cache
            .get(&node_cpu_series(job))
            .await
            .expect("no error")
            .unwrap_or_else(|| panic!("a target for job {job}"));
        assert_eq!(
            target.labels,
            labels(&[("instance", "127.0.0.1:9100"), ("job", job)])
        );
        assert!(
            target.discovered_labels.contains(&Label {
                name: "job".to_owned(),
                value: job.to_owned(),
            }),
            "{:?}",
            target.discovered_labels
        );
        assert!(!seen.iter().any(|t| Arc::ptr_eq(t, &target)));
        seen.push(target);
    }
    assert_eq!(
        target_requests(&server).await,
        1,
        "one refresh served every job"
    );
}

#[tokio::test]
async fn series_of_a_job_prometheus_does_not_scrape_has_no_target() {
    let server = fake_prometheus().await;
    let cache = targets_cache(&server, Vec::new());
    assert_eq!(
        cache.get(&node_cpu_series("node6")).await.expect("ok"),
        None
    );
    assert_eq!(
        cache.get(&node_cpu_series("node6")).await.expect("ok"),
        None
    );
    assert_eq!(target_requests(&server).await, 1);
}

#[tokio::test]
async fn self_scrape_series_join_their_target_and_lose_its_labels() {
    let server = fake_prometheus().await;
    let cache = targets_cache(
        &server,
        labels(&[
            ("_stackdriver_project_id", "my-project"),
            ("_generic_location", "europe-west1"),
            ("_generic_namespace", "walstudy"),
        ]),
    );
    let series = labels(&[
        ("__name__", "prometheus_http_requests_total"),
        ("code", "200"),
        ("env", "walstudy"),
        ("handler", "/api/v1/targets"),
        ("instance", "127.0.0.1:9092"),
        ("job", "prometheus"),
    ]);
    let target = cache
        .get(&series)
        .await
        .expect("ok")
        .expect("the self-scrape target");
    assert_eq!(
        target.discovered_labels,
        labels(&[
            ("__address__", "127.0.0.1:9092"),
            ("__metrics_path__", "/metrics"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "1s"),
            ("__scrape_timeout__", "1s"),
            ("_generic_location", "europe-west1"),
            ("_generic_namespace", "walstudy"),
            ("_stackdriver_project_id", "my-project"),
            ("env", "walstudy"),
            ("job", "prometheus"),
        ])
    );
    assert_eq!(
        drop_target_labels(&series, &target),
        labels(&[
            ("__name__", "prometheus_http_requests_total"),
            ("code", "200"),
            ("handler", "/api/v1/targets"),
        ])
    );
}

#[tokio::test]
async fn the_run_a_instance_is_not_a_run_c_target() {
    let server = fake_prometheus().await;
    let cache = targets_cache(&server, Vec::new());
    let series = labels(&[
        ("__name__", "up"),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ]);
    assert_eq!(cache.get(&series).await.expect("ok"), None);
}
