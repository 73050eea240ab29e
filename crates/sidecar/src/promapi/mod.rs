//! HTTP client for the Prometheus server the sidecar runs next to: readiness (`/-/ready`), the
//! active scrape targets (`/api/v1/targets`) and per-target metric metadata
//! (`/api/v1/targets/metadata`).
//!
//! Owns request URLs, timeouts, and decoding Prometheus's JSON envelope (`status`, `data`,
//! `errorType`, `error`) into typed answers; every error names its URL and what failed. Must
//! never cache answers, retry on its own (only [`PromApi::wait_ready`] polls), or interpret
//! answers beyond decoding: what a missing target or empty metadata means is for the caches.

#[cfg(test)]
pub(crate) mod fake_prometheus;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use prometheus_wal::{Label, Labels};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

mod metric_type;

pub use metric_type::{MetricType, ParseMetricTypeError};

/// Path of the readiness endpoint, relative to the base URL.
const READY_PATH: &str = "-/ready";
/// Path of the active targets endpoint, relative to the base URL.
const TARGETS_PATH: &str = "api/v1/targets";
/// Path of the per-target metadata endpoint, relative to the base URL.
const TARGETS_METADATA_PATH: &str = "api/v1/targets/metadata";

/// Delay before the second readiness poll; it doubles after every failed poll.
const FIRST_READY_POLL_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two readiness polls (the original polled every 3 s).
const MAX_READY_POLL_DELAY: Duration = Duration::from_secs(3);
/// At most one "not ready" warning per this interval, so a long WAL replay does not flood logs.
const READY_WARNING_INTERVAL: Duration = Duration::from_secs(5);

/// How much of an unexpected (non-JSON) body an error quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// The `errorType` Prometheus uses when the thing asked for does not exist.
pub const ERROR_TYPE_NOT_FOUND: &str = "not_found";

/// A client for one Prometheus server. Cheap to clone: clones share the connection pool.
/// Prometheus 2.x and 3.x answer alike for everything used here (see the captured 2.42 answers
/// in `tests/fixtures/promapi/`).
#[derive(Debug, Clone)]
pub struct PromApi {
    /// Shared HTTP client, carrying the per-request timeout.
    client: reqwest::Client,
    /// Base URL in directory form: its path always ends with `/`.
    base: Url,
}

/// One active scrape target, as `/api/v1/targets` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Final target labels (after relabelling), sorted by name: exactly the labels the scrape
    /// attaches to every series of the target, so the join key between a series and its target.
    pub labels: Labels,
    /// Labels from service discovery before relabelling (including `__` meta labels), sorted by
    /// name. The monitored-resource mapping reads these.
    pub discovered_labels: Labels,
}

/// One entry of `/api/v1/targets/metadata`: the metadata of one metric family on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataItem {
    /// Metric family name; empty when the API omitted it (it does when the request named the
    /// metric).
    pub metric: String,
    /// Family type from the `# TYPE` line (`untyped` and unrecognised types decode as
    /// [`MetricType::Unknown`]).
    pub metric_type: MetricType,
    /// Help text from the `# HELP` line, possibly empty.
    pub help: String,
    /// Unit from the OpenMetrics `# UNIT` line, usually empty.
    pub unit: String,
}

/// Why a request to Prometheus failed. Every variant names the URL (password redacted).
#[derive(Debug, thiserror::Error)]
pub enum PromApiError {
    /// The base URL cannot have paths joined to it (e.g. `mailto:x`).
    #[error("Prometheus API address {base} cannot be used as a base URL: {reason}")]
    InvalidBase {
        /// The base URL as configured.
        base: String,
        /// Why joining a path to it failed.
        reason: String,
    },
    /// No HTTP answer: connection refused, DNS failure, timeout, reset...
    #[error("query Prometheus at {url} failed: {detail}")]
    Transport {
        /// The requested URL.
        url: String,
        /// The transport error with its whole cause chain.
        detail: String,
    },
    /// An answer that is not the JSON API envelope, e.g. the plain-text `503 Service
    /// Unavailable` during WAL replay or `404 page not found` for a wrong path prefix.
    #[error("Prometheus at {url} answered HTTP {status} with an unexpected body: {body_excerpt:?}")]
    UnexpectedResponse {
        /// The requested URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The first characters of the body.
        body_excerpt: String,
    },
    /// A JSON answer whose shape is not what the endpoint documents.
    #[error("decoding the answer of Prometheus at {url} (HTTP {status}) failed: {detail}")]
    Decode {
        /// The requested URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// What did not decode.
        detail: String,
    },
    /// Prometheus answered with its error envelope.
    #[error("Prometheus at {url} answered HTTP {status} with API error {error_type}: {error}")]
    Api {
        /// The requested URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// `errorType`, e.g. `bad_data`, `not_found`, `internal`.
        error_type: String,
        /// `error`, the human-readable message.
        error: String,
    },
    /// [`PromApi::wait_ready`] was cancelled before Prometheus became ready.
    #[error("cancelled while waiting for Prometheus to become ready")]
    Cancelled,
}

impl PromApiError {
    /// Whether Prometheus answered with `errorType` `not_found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PromApiError::Api { error_type, .. } if error_type == ERROR_TYPE_NOT_FOUND)
    }
}

impl PromApi {
    /// A client for the Prometheus server at `base` (e.g. `http://127.0.0.1:9090/`), giving up
    /// on any request after `request_timeout`.
    ///
    /// The base path is treated as a directory: `http://h:9090/prefix` and
    /// `http://h:9090/prefix/` both lead to `http://h:9090/prefix/api/v1/targets` (not
    /// resolved RFC-3986 style, which would drop `prefix` when the slash is missing).
    pub fn new(base: Url, request_timeout: Duration) -> Self {
        // reqwest is built with rustls without a provider (the credentials crate asks for it):
        // building a client panics unless a process-wide provider is installed first.
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder().timeout(request_timeout);
        // Like Go's ProxyFromEnvironment (which the original used): never send requests for a
        // loopback Prometheus through HTTP_PROXY.
        if is_loopback_host(&base) {
            builder = builder.no_proxy();
        }
        // Invariant: `build` fails only for an invalid option (this sets just a timeout and
        // `no_proxy`) or a TLS backend that cannot start; its crypto provider is installed above.
        let client = builder
            .build()
            .expect("reqwest client with a timeout and an installed TLS provider builds");
        Self {
            client,
            base: directory_form(base),
        }
    }

    /// The base URL in directory form (its path ends with `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Whether Prometheus reports itself ready (`GET <base>/-/ready` answers 2xx). A non-2xx
    /// answer (`503` while the TSDB opens and replays its WAL) is `Ok(false)`; no answer at all
    /// is an error.
    pub async fn is_ready(&self) -> Result<bool, PromApiError> {
        Ok(self.ready_status().await?.is_success())
    }

    /// Polls [`PromApi::is_ready`] until it is true: first after 100 ms, the delay doubling up
    /// to 3 s. Failures are logged as warnings naming the URL, at most every 5 s. Returns
    /// `Err(PromApiError::Cancelled)` as soon as `cancel` fires.
    ///
    /// Deliberately no fixed wait afterwards: metadata that is not there yet is re-checked by
    /// the metadata cache.
    pub async fn wait_ready(&self, shutdown: &Shutdown) -> Result<(), PromApiError> {
        let ready_url = self.endpoint(READY_PATH)?;
        let mut delay = FIRST_READY_POLL_DELAY;
        let mut failed_polls: u32 = 0;
        let mut last_warning: Option<Instant> = None;
        loop {
            let outcome = tokio::select! {
                biased;
                () = shutdown.triggered() => return Err(PromApiError::Cancelled),
                outcome = self.ready_status() => outcome,
            };
            let problem = match outcome {
                Ok(status) if status.is_success() => {
                    if failed_polls > 0 {
                        tracing::info!(url = %redacted(&ready_url), failed_polls, "Prometheus is ready");
                    }
                    return Ok(());
                }
                Ok(status) => format!("answered HTTP {status}"),
                Err(error) => error.to_string(),
            };
            failed_polls = failed_polls.saturating_add(1);
            if last_warning.is_none_or(|at| at.elapsed() >= READY_WARNING_INTERVAL) {
                tracing::warn!(
                    url = %redacted(&ready_url),
                    failed_polls,
                    "Prometheus is not ready yet: {problem}"
                );
                last_warning = Some(Instant::now());
            }
            tokio::select! {
                biased;
                () = shutdown.triggered() => return Err(PromApiError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_READY_POLL_DELAY);
        }
    }

    /// The active targets (`GET <base>/api/v1/targets`, `data.activeTargets`), labels sorted by
    /// name. Dropped targets are not returned.
    pub async fn targets(&self) -> Result<Vec<Target>, PromApiError> {
        let url = self.endpoint(TARGETS_PATH)?;
        let data: Option<TargetsData> = self.get_json(&url).await?;
        let active = data.and_then(|d| d.active_targets).unwrap_or_default();
        Ok(active
            .into_iter()
            .map(|t| Target {
                labels: sorted_labels(t.labels.unwrap_or_default()),
                discovered_labels: sorted_labels(t.discovered_labels.unwrap_or_default()),
            })
            .collect())
    }

    /// Metadata of the targets whose labels include `job` and `instance`
    /// (`GET <base>/api/v1/targets/metadata?match_target={job="…",instance="…"}`), for one
    /// metric family when `metric` is given, else for every family of those targets.
    ///
    /// `Ok(None)` when Prometheus answers `errorType` `not_found` (older servers do that when
    /// nothing matched; 2.42 answers an empty list instead) or the body is JSON `null`, as the
    /// original treated both. Items come in the server's order.
    pub async fn targets_metadata(
        &self,
        job: &str,
        instance: &str,
        metric: Option<&str>,
    ) -> Result<Option<Vec<MetadataItem>>, PromApiError> {
        let mut url = self.endpoint(TARGETS_METADATA_PATH)?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("match_target", &match_target_selector(job, instance));
            if let Some(metric) = metric {
                query.append_pair("metric", metric);
            }
        }
        let items: Option<Vec<WireMetadataItem>> = match self.get_json(&url).await {
            Ok(items) => items,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(items) = items else {
            return Ok(None);
        };
        Ok(Some(
            items
                .into_iter()
                .map(|item| MetadataItem {
                    metric: item.metric.unwrap_or_default(),
                    metric_type: item
                        .metric_type
                        .as_deref()
                        .map(decode_metric_type)
                        .unwrap_or(MetricType::Unknown),
                    help: item.help.unwrap_or_default(),
                    unit: item.unit.unwrap_or_default(),
                })
                .collect(),
        ))
    }

    /// The HTTP status of `GET <base>/-/ready`.
    async fn ready_status(&self) -> Result<StatusCode, PromApiError> {
        let url = self.endpoint(READY_PATH)?;
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport_error(&url, e))?;
        Ok(response.status())
    }

    /// `path` (relative, no leading slash) below the base directory.
    fn endpoint(&self, path: &str) -> Result<Url, PromApiError> {
        self.base.join(path).map_err(|e| PromApiError::InvalidBase {
            base: redacted(&self.base),
            reason: e.to_string(),
        })
    }

    /// GETs `url` and decodes the API envelope: `Ok(Some(data))` on success, `Ok(None)` when the
    /// body or `data` is JSON `null`, `Err(Api)` for the error envelope.
    async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<Option<T>, PromApiError> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport_error(url, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, e))?;
        decode_envelope(url, status, &body)
    }
}

/// The JSON envelope of every `/api/v1` answer.
#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// `data` of `/api/v1/targets`. Fields are `Option` because Go encodes nil slices and maps as
/// `null`.
#[derive(Deserialize)]
struct TargetsData {
    #[serde(rename = "activeTargets")]
    active_targets: Option<Vec<WireTarget>>,
}

#[derive(Deserialize)]
struct WireTarget {
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "discoveredLabels")]
    discovered_labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct WireMetadataItem {
    metric: Option<String>,
    #[serde(rename = "type")]
    metric_type: Option<String>,
    help: Option<String>,
    unit: Option<String>,
}

/// Decodes an API answer. HTTP status codes matter only for bodies that are not the envelope.
fn decode_envelope<T: DeserializeOwned>(
    url: &Url,
    status: StatusCode,
    body: &[u8],
) -> Result<Option<T>, PromApiError> {
    let envelope: Option<Envelope<T>> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            // A body that is not even JSON, with an error status, is an answer from something
            // other than the API handler: the readiness gate, a 404 for a wrong prefix, a proxy.
            let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
            if !status.is_success() && !is_json {
                return Err(PromApiError::UnexpectedResponse {
                    url: redacted(url),
                    status: status.as_u16(),
                    body_excerpt: excerpt(body),
                });
            }
            return Err(PromApiError::Decode {
                url: redacted(url),
                status: status.as_u16(),
                detail: error.to_string(),
            });
        }
    };
    let Some(envelope) = envelope else {
        return Ok(None);
    };
    match envelope.status.as_str() {
        "success" if status.is_success() => Ok(envelope.data),
        "success" => Err(PromApiError::UnexpectedResponse {
            url: redacted(url),
            status: status.as_u16(),
            body_excerpt: excerpt(body),
        }),
        "error" => Err(PromApiError::Api {
            url: redacted(url),
            status: status.as_u16(),
            error_type: envelope.error_type.unwrap_or_default(),
            error: envelope.error.unwrap_or_default(),
        }),
        other => Err(PromApiError::Decode {
            url: redacted(url),
            status: status.as_u16(),
            detail: format!("unexpected \"status\": {other:?}"),
        }),
    }
}

/// Prometheus's type names; `untyped` (pre-2.x text format) and names this build does not know
/// become `Unknown`, so one odd family cannot fail a whole batch of metadata.
fn decode_metric_type(name: &str) -> MetricType {
    name.parse().unwrap_or(MetricType::Unknown)
}

/// `{job="…",instance="…"}` with the values escaped as PromQL string literals.
fn match_target_selector(job: &str, instance: &str) -> String {
    let mut selector = String::with_capacity(job.len() + instance.len() + 24);
    selector.push_str("{job=");
    push_promql_string(&mut selector, job);
    selector.push_str(",instance=");
    push_promql_string(&mut selector, instance);
    selector.push('}');
    selector
}

/// Appends `value` as a double-quoted PromQL string literal.
fn push_promql_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('"');
}

/// A label map (already ordered by name) as [`Labels`].
fn sorted_labels(map: BTreeMap<String, String>) -> Labels {
    map.into_iter()
        .map(|(name, value)| Label { name, value })
        .collect()
}

/// `base` with a path ending in `/`.
fn directory_form(mut base: Url) -> Url {
    if !base.cannot_be_a_base() && !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `url` as text with any password replaced, safe for logs and errors.
fn redacted(url: &Url) -> String {
    if url.password().is_some() {
        let mut shown = url.clone();
        // Only fails for URLs that cannot carry credentials, and this one carries a password.
        if shown.set_password(Some("xxxxx")).is_ok() {
            return shown.to_string();
        }
    }
    url.to_string()
}

/// A transport error with its cause chain: reqwest's own message alone ("error sending
/// request") does not say whether the connection was refused or timed out.
fn transport_error(url: &Url, error: reqwest::Error) -> PromApiError {
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let _ = write!(detail, ": {cause}");
        source = cause.source();
    }
    PromApiError::Transport {
        url: redacted(url),
        detail,
    }
}

/// The first characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests;
