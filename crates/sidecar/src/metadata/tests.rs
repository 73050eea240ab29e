use std::time::{Duration, Instant};

use wiremock::matchers::{path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer};

use super::*;
use crate::promapi::fake_prometheus::*;

const WALSTUDY: &str = "walstudy";
const WALSTUDY_INSTANCE: &str = "127.0.0.1:9101";
const PROMETHEUS: &str = "prometheus";
const PROMETHEUS_INSTANCE: &str = "127.0.0.1:9090";

fn cache(server: &MockServer) -> MetadataCache {
    MetadataCache::new(client(server), Vec::new())
}

fn static_entry(metric: &str, metric_type: MetricType, value_type: ValueType) -> MetricMetadata {
    MetricMetadata {
        metric: metric.to_owned(),
        metric_type,
        value_type,
        help: format!("static {metric_type}"),
    }
}

/// `(job, metric parameter)` of every metadata request, in order.
async fn asked(server: &MockServer) -> Vec<(String, Option<String>)> {
    metadata_requests(server).await
}

fn batch(job: &str) -> (String, Option<String>) {
    (job.to_owned(), None)
}

fn single(job: &str, metric: &str) -> (String, Option<String>) {
    (job.to_owned(), Some(metric.to_owned()))
}

#[tokio::test]
async fn static_metadata_wins_without_asking_prometheus() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, WALSTUDY, METADATA_WALSTUDY_BATCH).await;
    let cache = MetadataCache::new(
        client(&server),
        vec![static_entry(
            "walstudy_requests_total",
            MetricType::Gauge,
            ValueType::Int64,
        )],
    );
    let md = cache
        .get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_requests_total")
        .await
        .expect("no error")
        .expect("static");
    assert_eq!(md.metric_type, MetricType::Gauge);
    assert_eq!(md.value_type, ValueType::Int64);
    assert!(asked(&server).await.is_empty());
}

#[tokio::test]
async fn static_metadata_last_duplicate_wins() {
    let server = MockServer::start().await;
    let cache = MetadataCache::new(
        client(&server),
        vec![
            static_entry(
                "job:requests:rate5m",
                MetricType::Counter,
                ValueType::Double,
            ),
            static_entry("job:requests:rate5m", MetricType::Gauge, ValueType::Int64),
        ],
    );
    let md = cache
        .get("any", "any", "job:requests:rate5m")
        .await
        .expect("no error")
        .expect("static");
    assert_eq!(
        (md.metric_type, md.value_type),
        (MetricType::Gauge, ValueType::Int64)
    );
}

#[tokio::test]
async fn scrape_series_have_builtin_gauge_metadata_including_scrape_series_added() {
    let server = MockServer::start().await;
    let cache = cache(&server);
    for name in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let md = cache
            .get("node", "127.0.0.1:9100", name)
            .await
            .expect("no error")
            .unwrap_or_else(|| panic!("built-in metadata for {name}"));
        assert_eq!(md.metric, name);
        assert_eq!(md.metric_type, MetricType::Gauge, "{name}");
        assert_eq!(md.value_type, ValueType::Double, "{name}");
        assert!(!md.help.is_empty(), "{name}");
    }
    assert!(asked(&server).await.is_empty(), "built-ins need no request");
}

#[tokio::test]
async fn static_metadata_beats_builtin() {
    let server = MockServer::start().await;
    let cache = MetadataCache::new(
        client(&server),
        vec![static_entry("up", MetricType::Gauge, ValueType::Int64)],
    );
    let md = cache
        .get("node", "i", "up")
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(md.value_type, ValueType::Int64);
}

#[tokio::test]
async fn first_lookup_of_a_job_fetches_its_batch_once() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, WALSTUDY, METADATA_WALSTUDY_BATCH).await;
    let cache = cache(&server);
    let md = cache
        .get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_ooo_gauge")
        .await
        .expect("no error")
        .expect("in the batch");
    assert_eq!(
        md,
        MetricMetadata {
            metric: "walstudy_ooo_gauge".to_owned(),
            metric_type: MetricType::Gauge,
            value_type: ValueType::Unspecified,
            help: "Gauge with explicit, sometimes out-of-order, timestamps.".to_owned(),
        }
    );
    for (name, metric_type) in [
        ("walstudy_requests_total", MetricType::Counter),
        ("walstudy_request_duration_seconds", MetricType::Histogram),
        ("walstudy_queue_size_gauge_hist", MetricType::GaugeHistogram),
    ] {
        let md = cache
            .get(WALSTUDY, WALSTUDY_INSTANCE, name)
            .await
            .expect("no error")
            .expect("cached from the batch");
        assert_eq!(md.metric_type, metric_type, "{name}");
    }
    assert_eq!(asked(&server).await, vec![batch(WALSTUDY)]);
    let request = &requests_to(&server, METADATA_URL_PATH).await[0];
    assert_eq!(
        query_value(request, "match_target").as_deref(),
        Some(r#"{job="walstudy",instance="127.0.0.1:9101"}"#)
    );
}

#[tokio::test]
async fn name_missing_from_batch_is_none_then_single_fetched_then_negatively_cached() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, WALSTUDY, METADATA_WALSTUDY_BATCH).await;
    serve_single_metadata(
        &server,
        WALSTUDY,
        "walstudy_requests_created",
        METADATA_EMPTY,
    )
    .await;
    let cache = cache(&server);
    let name = "walstudy_requests_created";

    assert_eq!(
        cache
            .get(WALSTUDY, WALSTUDY_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(asked(&server).await, vec![batch(WALSTUDY)]);

    assert_eq!(
        cache
            .get(WALSTUDY, WALSTUDY_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        asked(&server).await,
        vec![batch(WALSTUDY), single(WALSTUDY, name)]
    );

    // Within the re-check interval (30 s by default) the negative answer is believed.
    assert_eq!(
        cache
            .get(WALSTUDY, WALSTUDY_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(asked(&server).await.len(), 2);
}

#[tokio::test]
async fn negative_answers_are_rechecked_once_the_interval_passed() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    let name = "prometheus_http_requests_total";
    // Empty at first (the target was not scraped yet), then the real answer.
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param("metric", name))
        .respond_with(json(METADATA_EMPTY))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    serve_single_metadata(&server, PROMETHEUS, name, METADATA_PROMETHEUS_HTTP_REQUESTS).await;
    let cache = cache(&server).with_not_found_recheck_after(Duration::from_millis(300));

    assert_eq!(
        cache
            .get(PROMETHEUS, PROMETHEUS_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        cache
            .get(PROMETHEUS, PROMETHEUS_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        cache
            .get(PROMETHEUS, PROMETHEUS_INSTANCE, name)
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        asked(&server).await,
        vec![batch(PROMETHEUS), single(PROMETHEUS, name)],
        "the negative answer is believed within the interval"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let md = cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, name)
        .await
        .expect("ok")
        .expect("found on re-check");
    assert_eq!(md.metric_type, MetricType::Counter);
    assert_eq!(
        md.metric, name,
        "single answers carry no name: the asked name is used"
    );
    assert_eq!(md.help, "Counter of HTTP requests.");

    // Found entries are never asked again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, name)
        .await
        .expect("ok")
        .expect("cached");
    assert_eq!(asked(&server).await.len(), 3);
}

#[tokio::test]
async fn zero_recheck_interval_asks_every_time() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    serve_single_metadata(&server, PROMETHEUS, "missing", METADATA_EMPTY).await;
    let cache = cache(&server).with_not_found_recheck_after(Duration::ZERO);
    for _ in 0..4 {
        assert_eq!(
            cache
                .get(PROMETHEUS, PROMETHEUS_INSTANCE, "missing")
                .await
                .expect("ok"),
            None
        );
    }
    assert_eq!(
        asked(&server).await,
        vec![
            batch(PROMETHEUS),
            single(PROMETHEUS, "missing"),
            single(PROMETHEUS, "missing"),
            single(PROMETHEUS, "missing"),
        ]
    );
}

#[tokio::test]
async fn single_fetch_uses_the_family_answer_as_prometheus_gives_it() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    serve_single_metadata(
        &server,
        PROMETHEUS,
        "prometheus_http_request_duration_seconds",
        METADATA_PROMETHEUS_HTTP_DURATION,
    )
    .await;
    let cache = cache(&server);
    cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, "warm_up_the_batch")
        .await
        .expect("ok");
    let md = cache
        .get(
            PROMETHEUS,
            PROMETHEUS_INSTANCE,
            "prometheus_http_request_duration_seconds",
        )
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(md.metric_type, MetricType::Histogram);
    assert_eq!(md.help, "Histogram of latencies for HTTP requests.");
}

#[tokio::test]
async fn not_found_batch_is_not_an_error_and_later_lookups_fetch_single_names() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .respond_with(json_with_status(404, METADATA_NOT_FOUND))
        .mount(&server)
        .await;
    let cache = cache(&server);
    assert_eq!(
        cache
            .get("node", "127.0.0.1:9100", "node_load1")
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        cache
            .get("node", "127.0.0.1:9100", "node_load1")
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        cache
            .get("node", "127.0.0.1:9100", "node_load1")
            .await
            .expect("ok"),
        None
    );
    assert_eq!(
        asked(&server).await,
        vec![batch("node"), single("node", "node_load1")],
        "a not_found single answer is cached as negative"
    );
}

#[tokio::test]
async fn failed_batch_is_an_error_caches_nothing_and_is_retried() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param_is_missing("metric"))
        .respond_with(text(503, READY_503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    serve_batch_metadata(&server, WALSTUDY, METADATA_WALSTUDY_BATCH).await;
    let cache = cache(&server);

    let error = cache
        .get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_ooo_gauge")
        .await
        .expect_err("503 during WAL replay");
    assert!(matches!(error, MetadataError::Batch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("walstudy") && message.contains("503"),
        "{message}"
    );

    let md = cache
        .get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_ooo_gauge")
        .await
        .expect("retried")
        .expect("found");
    assert_eq!(md.metric_type, MetricType::Gauge);
    assert_eq!(asked(&server).await, vec![batch(WALSTUDY), batch(WALSTUDY)]);
}

#[tokio::test]
async fn failed_single_fetch_is_an_error_and_is_retried() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param("metric", "m"))
        .respond_with(json_with_status(400, METADATA_BAD_MATCHER))
        .mount(&server)
        .await;
    let cache = cache(&server);
    cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, "first")
        .await
        .expect("batch ok");
    for _ in 0..2 {
        let error = cache
            .get(PROMETHEUS, PROMETHEUS_INSTANCE, "m")
            .await
            .expect_err("bad_data");
        assert!(
            matches!(&error, MetadataError::Single { metric, source: PromApiError::Api { error_type, .. }, .. } if metric == "m" && error_type == "bad_data"),
            "{error:?}"
        );
    }
    assert_eq!(
        asked(&server).await,
        vec![
            batch(PROMETHEUS),
            single(PROMETHEUS, "m"),
            single(PROMETHEUS, "m")
        ]
    );
}

#[tokio::test]
async fn unreachable_prometheus_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/", listener.local_addr().expect("address"));
    drop(listener);
    let cache = MetadataCache::new(client_with_base(&base), Vec::new());
    let error = cache
        .get("node", "i", "node_load1")
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            MetadataError::Batch {
                source: PromApiError::Transport { .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn recording_rule_names_become_gauges_when_prometheus_has_nothing() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    serve_single_metadata(&server, PROMETHEUS, "no_colon", METADATA_EMPTY).await;
    let cache = cache(&server);
    let md = cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, "job:up:sum")
        .await
        .expect("ok")
        .expect("synthesized");
    assert_eq!(
        md,
        MetricMetadata {
            metric: "job:up:sum".to_owned(),
            metric_type: MetricType::Gauge,
            value_type: ValueType::Unspecified,
            help: String::new(),
        }
    );
    assert_eq!(
        cache
            .get(PROMETHEUS, PROMETHEUS_INSTANCE, "no_colon")
            .await
            .expect("ok"),
        None
    );
}

#[tokio::test]
async fn recording_rule_names_with_metadata_keep_it() {
    let server = MockServer::start().await;
    serve_batch_metadata(&server, PROMETHEUS, METADATA_EMPTY).await;
    serve_single_metadata(
        &server,
        PROMETHEUS,
        "odd:counter",
        METADATA_PROMETHEUS_HTTP_REQUESTS,
    )
    .await;
    let cache = cache(&server);
    cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, "first")
        .await
        .expect("batch");
    let md = cache
        .get(PROMETHEUS, PROMETHEUS_INSTANCE, "odd:counter")
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(md.metric_type, MetricType::Counter);
}

#[tokio::test]
async fn metadata_is_kept_per_job_so_a_name_can_differ_between_jobs() {
    let server = MockServer::start().await;
    serve_batch_metadata(
        &server,
        "app_a",
        r#"{"status":"success","data":[{"target":{"instance":"a:80","job":"app_a"},"metric":"queue_depth","type":"counter","help":"A's","unit":""}]}"#,
    )
    .await;
    serve_batch_metadata(
        &server,
        "app_b",
        r#"{"status":"success","data":[{"target":{"instance":"b:80","job":"app_b"},"metric":"queue_depth","type":"gauge","help":"B's","unit":""}]}"#,
    )
    .await;
    let cache = cache(&server);
    let a = cache
        .get("app_a", "a:80", "queue_depth")
        .await
        .expect("ok")
        .expect("a");
    let b = cache
        .get("app_b", "b:80", "queue_depth")
        .await
        .expect("ok")
        .expect("b");
    assert_eq!(
        (a.metric_type, a.help.as_str()),
        (MetricType::Counter, "A's")
    );
    assert_eq!((b.metric_type, b.help.as_str()), (MetricType::Gauge, "B's"));
    assert_eq!(asked(&server).await, vec![batch("app_a"), batch("app_b")]);
}

#[tokio::test]
async fn first_item_wins_when_targets_share_job_and_instance() {
    let server = MockServer::start().await;
    serve_batch_metadata(
        &server,
        "shared",
        r#"{"status":"success","data":[
            {"target":{"instance":"h","job":"shared","port":"1"},"metric":"m","type":"counter","help":"first","unit":""},
            {"target":{"instance":"h","job":"shared","port":"2"},"metric":"m","type":"gauge","help":"second","unit":""}]}"#,
    )
    .await;
    let cache = cache(&server);
    let md = cache
        .get("shared", "h", "m")
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(
        (md.metric_type, md.help.as_str()),
        (MetricType::Counter, "first")
    );
}

#[tokio::test]
async fn concurrent_first_lookups_of_a_job_share_one_batch() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .respond_with(json(METADATA_WALSTUDY_BATCH).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    let cache = cache(&server);
    let (a, b) = tokio::join!(
        cache.get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_ooo_gauge"),
        cache.get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_churn_gauge"),
    );
    assert!(a.expect("ok").is_some() && b.expect("ok").is_some());
    assert_eq!(asked(&server).await, vec![batch(WALSTUDY)]);
}

#[tokio::test]
async fn a_slow_job_does_not_hold_up_other_jobs() {
    let server = MockServer::start().await;
    Mock::given(path(METADATA_URL_PATH))
        .and(query_param_is_missing("metric"))
        .and(query_param("match_target", r#"{job="slow",instance="s"}"#))
        .respond_with(json(METADATA_EMPTY).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    serve_batch_metadata(&server, WALSTUDY, METADATA_WALSTUDY_BATCH).await;
    let cache = cache(&server);
    let slow = cache.get("slow", "s", "anything");
    let fast = async {
        // Let the slow lookup take its job's lock and send its request first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let md = cache
            .get(WALSTUDY, WALSTUDY_INSTANCE, "walstudy_ooo_gauge")
            .await
            .expect("ok");
        (md, started.elapsed())
    };
    let (slow, (fast_md, fast_took)) = tokio::join!(slow, fast);
    slow.expect("slow ok");
    assert!(fast_md.is_some());
    assert!(fast_took < Duration::from_millis(1500), "{fast_took:?}");
}

#[test]
fn strip_suffix_strips_one_known_suffix() {
    assert_eq!(
        strip_suffix("http_duration_bucket"),
        Some(("http_duration", "_bucket"))
    );
    assert_eq!(
        strip_suffix("http_duration_count"),
        Some(("http_duration", "_count"))
    );
    assert_eq!(
        strip_suffix("http_duration_sum"),
        Some(("http_duration", "_sum"))
    );
    assert_eq!(strip_suffix("requests_total"), Some(("requests", "_total")));
    assert_eq!(
        strip_suffix("requests_total_sum"),
        Some(("requests_total", "_sum"))
    );
    assert_eq!(strip_suffix("requests_created"), None);
    assert_eq!(strip_suffix("node_load1"), None);
    assert_eq!(strip_suffix("_total"), None);
}

#[test]
fn metric_types_parse_and_print_as_prometheus_names() {
    for (name, metric_type) in [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("gaugehistogram", MetricType::GaugeHistogram),
        ("summary", MetricType::Summary),
        ("info", MetricType::Info),
        ("stateset", MetricType::StateSet),
        ("unknown", MetricType::Unknown),
    ] {
        assert_eq!(name.parse::<MetricType>(), Ok(metric_type));
        assert_eq!(metric_type.to_string(), name);
    }
    assert_eq!("untyped".parse::<MetricType>(), Ok(MetricType::Unknown));
    let error = "Counter".parse::<MetricType>().expect_err("case matters");
    assert_eq!(error.to_string(), r#"invalid metric type "Counter""#);
}

#[test]
fn value_types_parse_config_names() {
    assert_eq!("".parse::<ValueType>(), Ok(ValueType::Unspecified));
    assert_eq!("double".parse::<ValueType>(), Ok(ValueType::Double));
    assert_eq!("int64".parse::<ValueType>(), Ok(ValueType::Int64));
    let error = "float".parse::<ValueType>().expect_err("not a value type");
    assert_eq!(error.to_string(), r#"invalid value type "float""#);
    assert_eq!(ValueType::default(), ValueType::Unspecified);
}

#[test]
fn cache_and_its_lookups_can_move_between_threads() {
    fn shared_across_threads<T: Send + Sync>(_: &T) {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let cache = MetadataCache::new(client_with_base("http://127.0.0.1:9/"), Vec::new());
    shared_across_threads(&cache);
    spawnable(cache.get("job", "instance", "metric"));
}
