//! A fake Prometheus HTTP API for unit tests: a wiremock server answering with the real 2.42
//! answers captured in `tests/fixtures/promapi/`, and helpers to count what it was asked.
//!
//! Tests only; it must never decide anything the real server would decide differently from the
//! captured answers (each test mounts exactly the answers its case needs).

use std::time::Duration;

use url::Url;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::PromApi;

/// `GET /-/ready` once ready: 200 `Prometheus Server is Ready.`
pub(crate) const READY: &str = include_str!("../../tests/fixtures/promapi/ready.txt");
/// `GET /-/ready` during WAL replay: 503 `Service Unavailable`.
pub(crate) const READY_503: &str = include_str!("../../tests/fixtures/promapi/ready_503.txt");
/// A path the server does not serve: 404 `404 page not found`.
pub(crate) const NOT_FOUND_PAGE: &str =
    include_str!("../../tests/fixtures/promapi/not_found_endpoint.txt");
/// `/api/v1/targets` of run A: jobs `node`, `prometheus` (with `env="walstudy"`), `walstudy`.
pub(crate) const TARGETS: &str = include_str!("../../tests/fixtures/promapi/targets.json");
/// `/api/v1/targets/metadata?match_target={job="walstudy"}`: five families.
pub(crate) const METADATA_WALSTUDY_BATCH: &str =
    include_str!("../../tests/fixtures/promapi/targets_metadata_match_target_walstudy.json");
/// `…?match_target={job="prometheus"}&metric=prometheus_http_requests_total`: one counter, no
/// `metric` field.
pub(crate) const METADATA_PROMETHEUS_HTTP_REQUESTS: &str =
    include_str!("../../tests/fixtures/promapi/targets_metadata_match_target_and_metric.json");
/// `…&metric=prometheus_http_request_duration_seconds`: one histogram, no `metric` field.
pub(crate) const METADATA_PROMETHEUS_HTTP_DURATION: &str =
    include_str!("../../tests/fixtures/promapi/targets_metadata_counter_suffix.json");
/// An empty metadata answer (`?metric=does_not_exist`).
pub(crate) const METADATA_EMPTY: &str =
    include_str!("../../tests/fixtures/promapi/targets_metadata_unknown_metric.json");
/// 400 `bad_data` for a malformed `match_target`.
pub(crate) const METADATA_BAD_MATCHER: &str =
    include_str!("../../tests/fixtures/promapi/targets_metadata_bad_matcher.json");
/// The error envelope servers older than 2.42 answer when no metadata matched (written here; a
/// 2.42 server answers an empty list instead).
pub(crate) const METADATA_NOT_FOUND: &str =
    r#"{"status":"error","errorType":"not_found","error":"specified metadata not found"}"#;

/// Path of the targets endpoint on the fake.
pub(crate) const TARGETS_URL_PATH: &str = "/api/v1/targets";
/// Path of the metadata endpoint on the fake.
pub(crate) const METADATA_URL_PATH: &str = "/api/v1/targets/metadata";

/// A 200 answer with a JSON body.
pub(crate) fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// An answer with a JSON body and the given status.
pub(crate) fn json_with_status(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// A plain-text answer, as Prometheus's readiness gate and 404 handler give.
pub(crate) fn text(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_raw(body.as_bytes().to_vec(), "text/plain; charset=utf-8")
}

/// A client of `server` with a short timeout.
pub(crate) fn client(server: &MockServer) -> PromApi {
    client_with_base(&format!("{}/", server.uri()))
}

/// A client for an explicit base URL.
pub(crate) fn client_with_base(base: &str) -> PromApi {
    let base = Url::parse(base).expect("test base URL parses");
    PromApi::new(base, Duration::from_secs(5))
}

/// Serves `/api/v1/targets` with `body` (200, JSON).
pub(crate) async fn serve_targets(server: &MockServer, body: &str) {
    Mock::given(method("GET"))
        .and(path(TARGETS_URL_PATH))
        .respond_with(json(body))
        .mount(server)
        .await;
}

/// Serves the batch metadata request (no `metric`) for `job` with `body`.
pub(crate) async fn serve_batch_metadata(server: &MockServer, job: &str, body: &str) {
    Mock::given(method("GET"))
        .and(path(METADATA_URL_PATH))
        .and(query_param_is_missing("metric"))
        .and(MatchTargetJob(job.to_owned()))
        .respond_with(json(body))
        .mount(server)
        .await;
}

/// Serves the single-metric metadata request for `job` and `metric` with `body`.
pub(crate) async fn serve_single_metadata(
    server: &MockServer,
    job: &str,
    metric: &str,
    body: &str,
) {
    Mock::given(method("GET"))
        .and(path(METADATA_URL_PATH))
        .and(query_param("metric", metric))
        .and(MatchTargetJob(job.to_owned()))
        .respond_with(json(body))
        .mount(server)
        .await;
}

/// Requests the fake received on `path`.
pub(crate) async fn requests_to(server: &MockServer, request_path: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on by default")
        .into_iter()
        .filter(|r| r.url.path() == request_path)
        .collect()
}

/// Metadata requests received, as `(job in match_target, metric parameter)`.
pub(crate) async fn metadata_requests(server: &MockServer) -> Vec<(String, Option<String>)> {
    requests_to(server, METADATA_URL_PATH)
        .await
        .into_iter()
        .map(|r| {
            let job = match_target_job(&r).unwrap_or_default();
            let metric = query_value(&r, "metric");
            (job, metric)
        })
        .collect()
}

/// The value of query parameter `name`, decoded.
pub(crate) fn query_value(request: &wiremock::Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `job` value inside `match_target={job="…",instance="…"}` (no escapes in test jobs).
fn match_target_job(request: &wiremock::Request) -> Option<String> {
    let selector = query_value(request, "match_target")?;
    let rest = selector.strip_prefix("{job=\"")?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

/// Matches requests whose `match_target` names `job`.
struct MatchTargetJob(String);

impl wiremock::Match for MatchTargetJob {
    fn matches(&self, request: &wiremock::Request) -> bool {
        match_target_job(request).as_deref() == Some(self.0.as_str())
    }
}
