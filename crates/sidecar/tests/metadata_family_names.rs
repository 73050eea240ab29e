//! The metadata cache against real Prometheus 2.42 answers, asked the way the series resolver
//! asks: full series name first, then the name with one suffix stripped. Covers the OpenMetrics
//! case (series `walstudy_requests_total`, family `walstudy_requests`), classic histograms
//! (`_bucket` series, family without suffix) and a node exporter batch.

use std::time::Duration;

use stackdriver_prometheus_sidecar::metadata::{
    MetadataCache, MetricMetadata, MetricType, ValueType, strip_suffix,
};
use stackdriver_prometheus_sidecar::promapi::PromApi;
use url::Url;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OM_BATCH_WALSTUDY: &str =
    include_str!("fixtures/promapi/openmetrics_targets_metadata_walstudy.json");
const OM_FAMILY: &str = include_str!("fixtures/promapi/openmetrics_targets_metadata_family.json");
const OM_FAMILY_TOTAL: &str =
    include_str!("fixtures/promapi/openmetrics_targets_metadata_family_total.json");
const HISTOGRAM_FAMILY: &str =
    include_str!("fixtures/promapi/targets_metadata_counter_suffix.json");
const HISTOGRAM_BUCKET_NAME: &str =
    include_str!("fixtures/promapi/targets_metadata_histogram_bucket_name.json");
const NODE_BATCH: &str = include_str!("fixtures/promapi/targets_metadata_match_instance_node.json");
const EMPTY: &str = include_str!("fixtures/promapi/targets_metadata_unknown_metric.json");
const SYNTHETIC_SERIES: &str = include_str!("fixtures/promapi/targets_metadata_metric_only.json");

const METADATA_PATH: &str = "/api/v1/targets/metadata";

fn answer(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

async fn serve_batch(server: &MockServer, job: &str, instance: &str, body: &str) {
    Mock::given(method("GET"))
        .and(path(METADATA_PATH))
        .and(query_param(
            "match_target",
            format!(r#"{{job="{job}",instance="{instance}"}}"#),
        ))
        .and(query_param_is_missing("metric"))
        .respond_with(answer(body))
        .mount(server)
        .await;
}

async fn serve_single(server: &MockServer, metric: &str, body: &str) {
    Mock::given(method("GET"))
        .and(path(METADATA_PATH))
        .and(query_param("metric", metric))
        .respond_with(answer(body))
        .mount(server)
        .await;
}

fn metadata_cache(server: &MockServer) -> MetadataCache {
    let api = PromApi::new(
        Url::parse(&server.uri()).expect("mock server URL parses"),
        Duration::from_secs(5),
    );
    MetadataCache::new(api, Vec::new())
}

/// What the series resolver does: the full name, else the name with one suffix stripped.
async fn resolve(
    cache: &MetadataCache,
    job: &str,
    instance: &str,
    series_name: &str,
) -> Option<(MetricMetadata, &'static str)> {
    if let Some(md) = cache
        .get(job, instance, series_name)
        .await
        .expect("no error")
    {
        return Some((md, ""));
    }
    let (base, suffix) = strip_suffix(series_name)?;
    let md = cache.get(job, instance, base).await.expect("no error")?;
    Some((md, suffix))
}

async fn metadata_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .expect("requests are recorded")
        .iter()
        .filter(|r| r.url.path() == METADATA_PATH)
        .count()
}

#[tokio::test]
async fn openmetrics_counter_is_found_under_its_family_name_from_the_batch() {
    let server = MockServer::start().await;
    serve_batch(&server, "walstudy", "127.0.0.1:9101", OM_BATCH_WALSTUDY).await;
    serve_single(&server, "walstudy_requests_total", OM_FAMILY_TOTAL).await;
    let cache = metadata_cache(&server);

    let (md, suffix) = resolve(
        &cache,
        "walstudy",
        "127.0.0.1:9101",
        "walstudy_requests_total",
    )
    .await
    .expect("found after stripping _total");
    assert_eq!(suffix, "_total");
    assert_eq!(
        md,
        MetricMetadata {
            metric: "walstudy_requests".to_owned(),
            metric_type: MetricType::Counter,
            value_type: ValueType::Unspecified,
            help: "Requests served (counter with exemplar).".to_owned(),
        }
    );
    assert_eq!(
        metadata_requests(&server).await,
        1,
        "the batch answered both names"
    );

    // A second series of the same name asks for the full name once (Prometheus answers `[]`),
    // then uses the cached family.
    let (md, suffix) = resolve(
        &cache,
        "walstudy",
        "127.0.0.1:9101",
        "walstudy_requests_total",
    )
    .await
    .expect("found");
    assert_eq!((md.metric_type, suffix), (MetricType::Counter, "_total"));
    assert_eq!(metadata_requests(&server).await, 2);
    resolve(
        &cache,
        "walstudy",
        "127.0.0.1:9101",
        "walstudy_requests_total",
    )
    .await
    .expect("found");
    assert_eq!(
        metadata_requests(&server).await,
        2,
        "the `[]` answer is cached"
    );
}

#[tokio::test]
async fn openmetrics_family_found_by_single_fetch_after_the_batch() {
    let server = MockServer::start().await;
    // The batch ran before the target's first scrape: nothing known yet.
    serve_batch(&server, "walstudy", "127.0.0.1:9101", EMPTY).await;
    serve_single(&server, "walstudy_requests_total", OM_FAMILY_TOTAL).await;
    serve_single(&server, "walstudy_requests", OM_FAMILY).await;
    let cache = metadata_cache(&server);

    let first = resolve(
        &cache,
        "walstudy",
        "127.0.0.1:9101",
        "walstudy_requests_total",
    )
    .await;
    // Full name: batch (empty). Base name: single fetch, found.
    let (md, suffix) = first.expect("found by the single fetch of the family name");
    assert_eq!(
        (md.metric.as_str(), md.metric_type, suffix),
        ("walstudy_requests", MetricType::Counter, "_total")
    );
    assert_eq!(metadata_requests(&server).await, 2);
}

#[tokio::test]
async fn classic_histogram_bucket_series_resolve_to_the_family() {
    let server = MockServer::start().await;
    serve_batch(&server, "prometheus", "127.0.0.1:9090", EMPTY).await;
    serve_single(
        &server,
        "prometheus_http_request_duration_seconds_bucket",
        HISTOGRAM_BUCKET_NAME,
    )
    .await;
    serve_single(
        &server,
        "prometheus_http_request_duration_seconds",
        HISTOGRAM_FAMILY,
    )
    .await;
    let cache = metadata_cache(&server);
    cache
        .get("prometheus", "127.0.0.1:9090", "prometheus_build_info")
        .await
        .expect("the batch");

    let (md, suffix) = resolve(
        &cache,
        "prometheus",
        "127.0.0.1:9090",
        "prometheus_http_request_duration_seconds_bucket",
    )
    .await
    .expect("found under the family name");
    assert_eq!(suffix, "_bucket");
    assert_eq!(md.metric, "prometheus_http_request_duration_seconds");
    assert_eq!(md.metric_type, MetricType::Histogram);
}

#[tokio::test]
async fn node_exporter_batch_answers_every_family_of_the_target() {
    let server = MockServer::start().await;
    serve_batch(&server, "node", "127.0.0.1:9100", NODE_BATCH).await;
    // 2.42 answers `[]` for series names that are not family names.
    serve_single(&server, "go_gc_duration_seconds_sum", EMPTY).await;
    serve_single(&server, "go_gc_duration_seconds_count", EMPTY).await;
    let cache = metadata_cache(&server);
    for (series_name, metric_type, suffix) in [
        ("node_cpu_seconds_total", MetricType::Counter, ""),
        ("node_load1", MetricType::Gauge, ""),
        ("go_gc_duration_seconds", MetricType::Summary, ""),
        ("go_gc_duration_seconds_sum", MetricType::Summary, "_sum"),
        (
            "go_gc_duration_seconds_count",
            MetricType::Summary,
            "_count",
        ),
    ] {
        let (md, found_suffix) = resolve(&cache, "node", "127.0.0.1:9100", series_name)
            .await
            .unwrap_or_else(|| panic!("metadata for {series_name}"));
        assert_eq!(
            (md.metric_type, found_suffix),
            (metric_type, suffix),
            "{series_name}"
        );
    }
    // One batch; `_sum` and `_count` are no family names, so each was asked once on its own.
    assert_eq!(metadata_requests(&server).await, 3);
}

#[tokio::test]
async fn synthetic_scrape_series_need_no_request_although_prometheus_has_none() {
    let server = MockServer::start().await;
    serve_batch(&server, "node", "127.0.0.1:9100", NODE_BATCH).await;
    serve_single(&server, "up", SYNTHETIC_SERIES).await;
    let cache = metadata_cache(&server);
    for name in ["up", "scrape_series_added", "scrape_duration_seconds"] {
        let (md, suffix) = resolve(&cache, "node", "127.0.0.1:9100", name)
            .await
            .unwrap_or_else(|| panic!("built-in metadata for {name}"));
        assert_eq!(
            (md.metric_type, md.value_type, suffix),
            (MetricType::Gauge, ValueType::Double, "")
        );
    }
    assert_eq!(metadata_requests(&server).await, 0);
}
