use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

use super::*;
use crate::promapi::fake_prometheus::*;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs.iter().map(|(n, v)| label(n, v)).collect();
    labels.sort();
    labels
}

fn cache(server: &MockServer) -> TargetsCache {
    TargetsCache::new(client(server), Vec::new())
}

async fn refreshes(server: &MockServer) -> usize {
    requests_to(server, TARGETS_URL_PATH).await.len()
}

/// A series of the `prometheus` target of run A.
fn prometheus_series() -> Labels {
    labels(&[
        ("__name__", "prometheus_http_requests_total"),
        ("code", "200"),
        ("env", "walstudy"),
        ("handler", "/metrics"),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ])
}

/// Two targets sharing job and instance, told apart by `port` (synthetic; the real answers
/// never have two).
const TWO_TARGETS_ONE_KEY: &str = r#"{"status":"success","data":{"activeTargets":[
  {"discoveredLabels":{"__address__":"h:1","job":"app"},"labels":{"instance":"h","job":"app","port":"1"}},
  {"discoveredLabels":{"__address__":"h:2","job":"app"},"labels":{"instance":"h","job":"app","port":"2"}}
],"droppedTargets":[]}}"#;

#[tokio::test]
async fn first_lookup_refreshes_and_later_lookups_use_the_index() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server);
    let target = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("the prometheus target");
    assert_eq!(
        target.labels,
        labels(&[
            ("env", "walstudy"),
            ("instance", "127.0.0.1:9090"),
            ("job", "prometheus"),
        ])
    );
    assert_eq!(refreshes(&server).await, 1);

    let node = cache
        .get(&labels(&[
            ("__name__", "node_load1"),
            ("instance", "127.0.0.1:9100"),
            ("job", "node"),
        ]))
        .await
        .expect("ok")
        .expect("the node target");
    assert!(node.labels.contains(&label("job", "node")));
    let again = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("cached");
    assert!(Arc::ptr_eq(&target, &again));
    assert_eq!(refreshes(&server).await, 1, "known keys need no refresh");
}

#[tokio::test]
async fn unknown_job_and_instance_is_none_and_remembered() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server);
    let series = labels(&[
        ("__name__", "x"),
        ("instance", "10.0.0.1:80"),
        ("job", "gone"),
    ]);
    for _ in 0..5 {
        assert_eq!(cache.get(&series).await.expect("ok"), None);
    }
    assert_eq!(
        refreshes(&server).await,
        1,
        "a negative key is not re-checked while the last refresh is recent"
    );
}

#[tokio::test]
async fn series_without_job_and_instance_match_no_target() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server);
    assert_eq!(
        cache
            .get(&labels(&[("__name__", "job:up:sum")]))
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        cache
            .get(&labels(&[("__name__", "job:up:sum"), ("job", "node")]))
            .await
            .expect("ok"),
        None,
        "a recording rule that kept job but not instance has no target"
    );
}

#[tokio::test]
async fn negative_key_is_rechecked_when_the_last_refresh_is_old() {
    let server = MockServer::start().await;
    // Prometheus starts scraping a new target between the first and second refresh.
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    serve_targets(&server, TWO_TARGETS_ONE_KEY).await;
    let cache = cache(&server).with_negative_recheck_after(Duration::from_millis(300));
    let series = labels(&[("instance", "h"), ("job", "app"), ("port", "2")]);

    assert_eq!(cache.get(&series).await.expect("ok"), None);
    assert_eq!(cache.get(&series).await.expect("ok"), None);
    assert_eq!(refreshes(&server).await, 1, "rate limited");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let target = cache
        .get(&series)
        .await
        .expect("ok")
        .expect("found on re-check");
    assert!(target.labels.contains(&label("port", "2")));
    assert_eq!(refreshes(&server).await, 2);
}

#[tokio::test]
async fn a_flood_of_lookups_of_a_negative_key_causes_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS).set_delay(Duration::from_millis(100)))
        .mount(&server)
        .await;
    let cache = cache(&server).with_negative_recheck_after(Duration::from_millis(200));
    let series = labels(&[("instance", "new:80"), ("job", "new")]);
    assert_eq!(cache.get(&series).await.expect("ok"), None);
    tokio::time::sleep(Duration::from_millis(250)).await;

    let lookups: Vec<_> = (0..20).map(|_| cache.get(&series)).collect();
    for outcome in futures::future::join_all(lookups).await {
        assert_eq!(outcome.expect("ok"), None);
    }
    assert_eq!(refreshes(&server).await, 2);
}

#[tokio::test]
async fn concurrent_lookups_of_an_unknown_key_share_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    let cache = cache(&server);
    let series = prometheus_series();
    let lookups: Vec<_> = (0..10).map(|_| cache.get(&series)).collect();
    for outcome in futures::future::join_all(lookups).await {
        assert!(outcome.expect("ok").is_some());
    }
    assert_eq!(refreshes(&server).await, 1);
}

#[tokio::test]
async fn failed_refresh_for_an_unknown_key_is_an_error_and_caches_nothing() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(503, READY_503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server);

    let error = cache.get(&prometheus_series()).await.expect_err("503");
    assert!(
        error.to_string().starts_with("target refresh failed"),
        "{error}"
    );
    assert!(matches!(
        error,
        TargetsError::Refresh {
            source: PromApiError::UnexpectedResponse { status: 503, .. }
        }
    ));

    assert!(cache.get(&prometheus_series()).await.expect("ok").is_some());
    assert_eq!(refreshes(&server).await, 2);
}

#[tokio::test]
async fn failed_recheck_of_a_negative_key_keeps_it_negative() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(503, READY_503))
        .mount(&server)
        .await;
    let cache = cache(&server).with_negative_recheck_after(Duration::ZERO);
    let series = labels(&[("instance", "new:80"), ("job", "new")]);
    assert_eq!(cache.get(&series).await.expect("ok"), None);
    assert_eq!(cache.get(&series).await.expect("not an error"), None);
    assert_eq!(refreshes(&server).await, 2);
}

#[tokio::test]
async fn negative_entries_survive_a_refresh() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server).with_negative_recheck_after(Duration::from_secs(3600));
    let series = labels(&[("instance", "new:80"), ("job", "new")]);
    assert_eq!(cache.get(&series).await.expect("ok"), None);
    cache.refresh().await.expect("refreshes");
    assert_eq!(cache.get(&series).await.expect("ok"), None);
    assert_eq!(
        refreshes(&server).await,
        2,
        "the lookup after the refresh needed no refresh of its own"
    );
}

#[tokio::test]
async fn failed_refresh_keeps_the_previous_index() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(text(503, READY_503))
        .mount(&server)
        .await;
    let cache = cache(&server);
    let before = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("found");
    cache.refresh().await.expect_err("503");
    let after = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("still found");
    assert!(Arc::ptr_eq(&before, &after));
}

#[tokio::test]
async fn refresh_keeps_unchanged_targets_and_drops_vanished_ones() {
    let server = MockServer::start().await;
    Mock::given(path(TARGETS_URL_PATH))
        .respond_with(json(TARGETS))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    // The second answer has the prometheus target with one more label, and no node target.
    let changed = TARGETS
        .replace(
            r#""env":"walstudy","instance":"127.0.0.1:9090""#,
            r#""env":"prod","instance":"127.0.0.1:9090""#,
        )
        .replace(
            r#""labels":{"instance":"127.0.0.1:9100","job":"node"}"#,
            r#""labels":{"instance":"127.0.0.1:9100","job":"node_renamed"}"#,
        );
    assert_ne!(changed, TARGETS);
    serve_targets(&server, &changed).await;
    let cache = cache(&server);
    let walstudy_series = labels(&[("instance", "127.0.0.1:9101"), ("job", "walstudy")]);
    let node_series = labels(&[("instance", "127.0.0.1:9100"), ("job", "node")]);

    let walstudy = cache
        .get(&walstudy_series)
        .await
        .expect("ok")
        .expect("found");
    let prometheus = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("found");
    assert!(cache.get(&node_series).await.expect("ok").is_some());
    cache.refresh().await.expect("refreshes");

    let walstudy_after = cache
        .get(&walstudy_series)
        .await
        .expect("ok")
        .expect("found");
    assert!(
        Arc::ptr_eq(&walstudy, &walstudy_after),
        "unchanged target keeps its Arc"
    );
    let prometheus_series_prod = labels(&[
        ("env", "prod"),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ]);
    let prometheus_after = cache
        .get(&prometheus_series_prod)
        .await
        .expect("ok")
        .expect("found");
    assert!(!Arc::ptr_eq(&prometheus, &prometheus_after));
    assert!(prometheus_after.labels.contains(&label("env", "prod")));
    assert_eq!(
        cache.get(&prometheus_series()).await.expect("ok"),
        None,
        "env=walstudy no longer matches the target's env=prod"
    );
    assert_eq!(
        cache.get(&node_series).await.expect("ok"),
        None,
        "the node job was renamed"
    );
}

#[tokio::test]
async fn target_labels_absent_or_empty_in_the_series_still_match() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = cache(&server);
    let without_env = labels(&[("instance", "127.0.0.1:9090"), ("job", "prometheus")]);
    let empty_env = labels(&[
        ("env", ""),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ]);
    let other_env = labels(&[
        ("env", "prod"),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ]);
    assert!(cache.get(&without_env).await.expect("ok").is_some());
    assert!(cache.get(&empty_env).await.expect("ok").is_some());
    assert_eq!(cache.get(&other_env).await.expect("ok"), None);
}

#[tokio::test]
async fn first_matching_target_among_several_with_the_same_key() {
    let server = MockServer::start().await;
    serve_targets(&server, TWO_TARGETS_ONE_KEY).await;
    let cache = cache(&server);
    let port_of = |target: Arc<Target>| {
        target
            .labels
            .iter()
            .find(|l| l.name == "port")
            .map(|l| l.value.clone())
    };
    let second = cache
        .get(&labels(&[("instance", "h"), ("job", "app"), ("port", "2")]))
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(port_of(second).as_deref(), Some("2"));
    let first = cache
        .get(&labels(&[("instance", "h"), ("job", "app")]))
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(port_of(first).as_deref(), Some("1"));
    assert_eq!(
        cache
            .get(&labels(&[("instance", "h"), ("job", "app"), ("port", "3")]))
            .await
            .expect("ok"),
        None
    );
}

#[tokio::test]
async fn static_labels_are_added_to_discovered_labels_sorted() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = TargetsCache::new(
        client(&server),
        vec![
            label("_stackdriver_project_id", "my-project"),
            label("_kubernetes_location", "europe-west1-b"),
            label("_generic_namespace", ""),
        ],
    );
    let target = cache
        .get(&prometheus_series())
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(
        target.discovered_labels,
        vec![
            label("__address__", "127.0.0.1:9090"),
            label("__metrics_path__", "/metrics"),
            label("__scheme__", "http"),
            label("__scrape_interval__", "1s"),
            label("__scrape_timeout__", "1s"),
            label("_kubernetes_location", "europe-west1-b"),
            label("_stackdriver_project_id", "my-project"),
            label("env", "walstudy"),
            label("job", "prometheus"),
        ]
    );
    assert_eq!(
        target.labels,
        labels(&[
            ("env", "walstudy"),
            ("instance", "127.0.0.1:9090"),
            ("job", "prometheus")
        ]),
        "target labels are untouched"
    );
}

#[test]
fn static_labels_replace_discovered_labels_of_the_same_name() {
    let merged = with_static_labels(
        labels(&[
            ("__address__", "a"),
            ("_stackdriver_project_id", "from-discovery"),
        ]),
        &labels(&[("_stackdriver_project_id", "from-flag")]),
    );
    assert_eq!(
        merged,
        labels(&[
            ("__address__", "a"),
            ("_stackdriver_project_id", "from-flag")
        ])
    );
}

#[test]
fn dropping_target_labels_keeps_same_name_with_other_value() {
    let target = Target {
        labels: labels(&[
            ("env", "walstudy"),
            ("instance", "127.0.0.1:9090"),
            ("job", "prometheus"),
        ]),
        discovered_labels: Vec::new(),
    };
    let series = labels(&[
        ("__name__", "prometheus_http_requests_total"),
        ("code", "200"),
        ("env", "other"),
        ("instance", "127.0.0.1:9090"),
        ("job", "prometheus"),
    ]);
    assert_eq!(
        drop_target_labels(&series, &target),
        labels(&[
            ("__name__", "prometheus_http_requests_total"),
            ("code", "200"),
            ("env", "other"),
        ])
    );
}

#[tokio::test]
async fn refresher_refreshes_periodically_and_stops_on_cancel() {
    let server = MockServer::start().await;
    serve_targets(&server, TARGETS).await;
    let cache = Arc::new(cache(&server));
    let cancel = Shutdown::new();
    let refresher =
        tokio::spawn(Arc::clone(&cache).run_refresher(Duration::from_millis(150), cancel.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(refreshes(&server).await, 0, "no refresh at start");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(refreshes(&server).await >= 2);
    cancel.trigger();
    tokio::time::timeout(Duration::from_secs(1), refresher)
        .await
        .expect("stops promptly")
        .expect("did not panic");
    let after_cancel = refreshes(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refreshes(&server).await, after_cancel);
    assert!(cache.get(&prometheus_series()).await.expect("ok").is_some());
}

#[test]
fn cache_and_its_lookups_can_move_between_threads() {
    fn shared_across_threads<T: Send + Sync>(_: &T) {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let cache = TargetsCache::new(client_with_base("http://127.0.0.1:9/"), Vec::new());
    shared_across_threads(&cache);
    let series = prometheus_series();
    spawnable(cache.get(&series));
    spawnable(cache.refresh());
}
