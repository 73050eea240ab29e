//! The `CreateTimeSeries` client: one gRPC channel, requests sent as pre-assembled bytes.
//!
//! Owns the connection to the Monitoring API (plaintext for `?auth=false`, otherwise TLS with the
//! system's roots, or those of `SSL_CERT_FILE`/`SSL_CERT_DIR`, and the bundled ones, and Google
//! credentials with the `monitoring.write` scope), the per-call timeout, and the classification
//! of answers into "retry" and "give up". It must never batch, reorder or drop points itself:
//! that is the shards' job.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use google_cloud_auth::credentials::{
    Builder as CredentialsBuilder, CacheableResource, Credentials,
};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::Extensions;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

mod coalesce;
pub mod restricted;

use coalesce::CoalescingIo;
use restricted::Addresses;

/// Where and how to reach the Cloud Monitoring API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAddress {
    /// The URL as given, used as the `queue` label of the export metrics.
    pub url: String,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port; 443 when the URL has none.
    pub port: u16,
    /// `false` when the URL carries `?auth=false`: plaintext, no credentials.
    pub auth: bool,
    /// `--stackdriver.use-restricted-ips`: connect to the restricted VIP addresses instead of
    /// resolving `host` (see [`restricted`]).
    pub restricted_ips: bool,
}

const CREATE_TIME_SERIES_PATH: &str = "/google.monitoring.v3.MetricService/CreateTimeSeries";

/// The OAuth scope that allows writing metrics.
pub const MONITORING_WRITE_SCOPE: &str = "https://www.googleapis.com/auth/monitoring.write";

/// The user agent of every call.
pub fn user_agent() -> String {
    format!("stackdriver-prometheus-sidecar/{}", crate::VERSION)
}

/// What went wrong with one request.
#[derive(Debug, Clone)]
pub struct SendError {
    /// The gRPC status code (`Unavailable` for transport failures).
    pub code: Code,
    /// The server's or transport's message.
    pub message: String,
    /// Whether sending the same request again may succeed.
    pub retryable: bool,
    /// Points the server reported as written despite the error (partial success).
    pub succeeded_points: Option<u64>,
    /// Points the server reported as refused, by gRPC code (empty without a summary).
    pub failed_points: Vec<(i32, u64)>,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl SendError {
    /// A failure without a gRPC status from the server (connection, credentials, local I/O).
    pub fn local(code: Code, message: String, retryable: bool) -> SendError {
        SendError {
            code,
            message,
            retryable,
            succeeded_points: None,
            failed_points: Vec::new(),
        }
    }

    /// Whether the server said, in a `CreateTimeSeriesSummary`, which points it wrote: the
    /// request was handled series by series, so sending it again cannot help.
    pub fn has_summary(&self) -> bool {
        self.succeeded_points.is_some()
    }

    /// The error a status from the server (or from the transport) stands for.
    pub fn from_status(status: &Status) -> SendError {
        let summary = gcm_api::summary_from_status(status);
        SendError {
            code: status.code(),
            message: status.message().to_string(),
            retryable: is_retryable(status.code()),
            succeeded_points: summary.as_ref().map(|s| s.success_point_count as u64),
            failed_points: summary
                .iter()
                .flat_map(|s| &s.errors)
                .map(|e| {
                    let code = e.status.as_ref().map_or(Code::Unknown as i32, |s| s.code);
                    (code, e.point_count as u64)
                })
                .collect(),
        }
    }

    /// How the `points` of the failed request count by gRPC status, for the original's
    /// `point_count{status}`: the server's summary when it sent one (0 for the points it
    /// wrote), otherwise all of them under the request's code.
    pub fn point_statuses(&self, points: u64) -> Vec<(i32, u64)> {
        match self.succeeded_points {
            Some(ok) => std::iter::once((Code::Ok as i32, ok))
                .chain(self.failed_points.iter().copied())
                .filter(|(_, n)| *n > 0)
                .collect(),
            None => vec![(self.code as i32, points)],
        }
    }
}

/// Transient failures: the request may succeed if sent again. Connection failures surface as
/// UNAVAILABLE; INTERNAL is what the API answers when one of its backends hiccups.
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
    )
}

/// Something that accepts encoded `CreateTimeSeriesRequest`s. The gRPC client in production;
/// tests substitute their own.
pub trait TimeSeriesSink: Send + Sync + 'static {
    /// Sends one request (its protobuf bytes).
    fn create_time_series(
        &self,
        request: Bytes,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send;

    /// Sends one request on behalf of shard `shard`; sinks that keep per-shard state (one file
    /// per shard) override this.
    fn create_time_series_from(
        &self,
        shard: usize,
        request: Bytes,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send {
        let _ = shard;
        self.create_time_series(request)
    }
}

/// Shards one connection carries at most: a shard has one request in flight, which is one HTTP/2
/// stream, and servers cap the streams of a connection (Google's front ends at 100).
const SHARDS_PER_CONNECTION: usize = 50;

/// Fewest connections: a connection is driven by one task, which frames every request and
/// answer on it; with one only, that task is what a catch-up waits for, while with a few the
/// cores share the work.
pub const MIN_CONNECTIONS: usize = 4;

/// Connections for at most `max_shards` shards: [`MIN_CONNECTIONS`], or more so that none
/// carries more than `SHARDS_PER_CONNECTION` shards. Shard `i` sends on connection
/// `i % connections`, so few shards (the steady state) open few connections.
pub fn connections_for(max_shards: usize) -> usize {
    max_shards
        .div_ceil(SHARDS_PER_CONNECTION)
        .max(MIN_CONNECTIONS)
}

/// gRPC client for the Monitoring API.
#[derive(Debug, Clone)]
pub struct GrpcSink {
    /// The connections, shared out among the shards.
    channels: Arc<[Channel]>,
    timeout: Duration,
    /// Google credentials; `None` with `?auth=false`.
    credentials: Option<Credentials>,
}

impl GrpcSink {
    /// Prepares a lazily connecting channel to the API address: plaintext and no credentials
    /// with `?auth=false`, otherwise TLS and Application Default Credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud user credentials, or the metadata server).
    /// Fails when the credentials cannot be loaded; see [`GrpcSink::check_credentials`] for
    /// credentials that only fail when a token is asked for. `connections` HTTP/2 connections
    /// are opened as shards first use them (see [`connections_for`]).
    pub fn new(
        api: &ApiAddress,
        timeout: Duration,
        connections: usize,
    ) -> Result<GrpcSink, String> {
        let host = if api.host.contains(':') {
            format!("[{}]", api.host)
        } else {
            api.host.clone()
        };
        let scheme = if api.auth { "https" } else { "http" };
        let uri = format!("{scheme}://{host}:{}", api.port);
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("{}: invalid endpoint {uri}: {e}", api.url))?
            .user_agent(user_agent())
            .map_err(|e| format!("user agent: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let credentials = if api.auth {
            crate::install_crypto_provider();
            let tls = ClientTlsConfig::new()
                .with_native_roots()
                .with_webpki_roots()
                .domain_name(api.host.clone());
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("{}: TLS: {e}", api.url))?;
            let credentials = CredentialsBuilder::default()
                .with_scopes([MONITORING_WRITE_SCOPE])
                .build()
                .map_err(|e| {
                    format!(
                        "loading Google credentials from {}: {}",
                        credentials_source(),
                        with_sources(&e)
                    )
                })?;
            Some(credentials)
        } else {
            None
        };
        let fixed = if api.restricted_ips {
            let addresses = Addresses::restricted()?;
            tracing::info!(
                api = %api.host,
                addresses = %addresses.describe(),
                "--stackdriver.use-restricted-ips: connecting to the restricted VIP addresses \
                 (TLS still checks the API host's name)"
            );
            Some(addresses)
        } else {
            None
        };
        Ok(GrpcSink {
            channels: (0..connections.max(1))
                .map(|_| {
                    endpoint
                        .clone()
                        .connect_with_connector_lazy(coalescing_connector(fixed.clone()))
                })
                .collect(),
            timeout,
            credentials,
        })
    }

    /// Obtains a first access token, so that credentials that cannot work (a metadata server
    /// that does not answer, a refused key) are reported at start-up rather than on every send.
    pub async fn check_credentials(&self, timeout: Duration) -> Result<(), String> {
        if self.credentials.is_none() {
            return Ok(());
        }
        match tokio::time::timeout(timeout, self.auth_headers()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("{}: {}", credentials_source(), err.message)),
            Err(_) => Err(format!(
                "no access token after {timeout:?} (is the metadata server reachable?)"
            )),
        }
    }

    /// The authorization headers of the next call (none without credentials).
    async fn auth_headers(&self) -> Result<MetadataMap, SendError> {
        let Some(credentials) = &self.credentials else {
            return Ok(MetadataMap::new());
        };
        match credentials.headers(Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => Ok(MetadataMap::from_headers(data)),
            Ok(CacheableResource::NotModified) => Err(SendError::local(
                Code::Unauthenticated,
                "the credentials returned no headers".to_string(),
                true,
            )),
            Err(err) => Err(SendError::local(
                Code::Unauthenticated,
                format!("obtaining an access token: {}", with_sources(&err)),
                err.is_transient(),
            )),
        }
    }
}

/// Where Application Default Credentials come from, for error messages, in the credentials
/// library's order: the key file named by `GOOGLE_APPLICATION_CREDENTIALS` when it is set, else
/// the file `gcloud auth application-default login` writes when it exists, else the metadata
/// server (`GCE_METADATA_HOST` or `metadata.google.internal`).
fn credentials_source() -> String {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        && !path.is_empty()
    {
        return format!(
            "the key file {} (GOOGLE_APPLICATION_CREDENTIALS)",
            std::path::Path::new(&path).display()
        );
    }
    if let Some(home) = std::env::var_os("HOME") {
        let gcloud =
            std::path::Path::new(&home).join(".config/gcloud/application_default_credentials.json");
        if gcloud.exists() {
            return format!("the gcloud credentials file {}", gcloud.display());
        }
    }
    match std::env::var("GCE_METADATA_HOST") {
        Ok(host) => format!("the metadata server at {host} (GCE_METADATA_HOST)"),
        Err(_) => "the metadata server at metadata.google.internal".to_string(),
    }
}

/// `err` followed by its causes: the credentials library keeps the useful part (which field,
/// which key) in the source chain.
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// The TCP connector tonic would use (no delay; tonic adds the connect timeout), with each
/// connection's writes gathered by [`CoalescingIo`] under TLS and HTTP/2; with `fixed`, it dials
/// those addresses instead of the URI's host (restricted VIPs).
fn coalescing_connector(
    fixed: Option<Addresses>,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<CoalescingIo<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<CoalescingIo<tokio::net::TcpStream>>>> + Send,
> + Clone
+ Send
+ 'static {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    tower::service_fn(move |uri: http::Uri| {
        let mut http = http.clone();
        let fixed = fixed.clone();
        async move {
            let tcp = match fixed {
                // The URI's host is only the TLS name and the authority: dial the fixed
                // addresses, in turn, instead of resolving it.
                Some(addresses) => {
                    let mut failure = None;
                    let mut connected = None;
                    for addr in addresses.in_turn() {
                        match tokio::net::TcpStream::connect(addr).await {
                            Ok(tcp) => {
                                connected = Some(tcp);
                                break;
                            }
                            Err(e) => {
                                failure = Some(std::io::Error::new(
                                    e.kind(),
                                    format!("connecting to {addr}: {e}"),
                                ));
                            }
                        }
                    }
                    let tcp = connected.ok_or_else(|| {
                        failure.unwrap_or_else(|| std::io::Error::other("no address to dial"))
                    })?;
                    tcp.set_nodelay(true)?;
                    tcp
                }
                None => tower::Service::call(&mut http, uri)
                    .await
                    .map_err(std::io::Error::other)?
                    .into_inner(),
            };
            Ok(TokioIo::new(CoalescingIo::new(tcp)))
        }
    })
}

impl TimeSeriesSink for GrpcSink {
    async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
        self.create_time_series_from(0, request).await
    }

    async fn create_time_series_from(&self, shard: usize, request: Bytes) -> Result<(), SendError> {
        let metadata = self.auth_headers().await?;
        let channel = &self.channels[shard % self.channels.len()];
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready()
            .await
            .map_err(|e| SendError::local(Code::Unavailable, format!("connecting: {e}"), true))?;
        let mut req = tonic::Request::new(request);
        *req.metadata_mut() = metadata;
        req.set_timeout(self.timeout);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(CREATE_TIME_SERIES_PATH);
        let codec = RawCodec {
            message_len: req.get_ref().len(),
        };
        grpc.unary::<Bytes, (), RawCodec>(req, path, codec)
            .await
            .map(|_| ())
            .map_err(|s| SendError::from_status(&s))
    }
}

/// A codec that writes pre-encoded request bytes and ignores the (empty) response.
#[derive(Debug, Clone, Copy)]
struct RawCodec {
    /// Length of the request: the encoding buffer is made that large (plus gRPC's 5-byte
    /// prefix) at once, instead of starting at 8 KiB and growing, copying, as it fills.
    message_len: usize,
}

/// gRPC's message prefix: a compression flag and a 4-byte length.
const GRPC_PREFIX_LEN: usize = 5;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        let size = self.message_len + GRPC_PREFIX_LEN;
        // Handed on as soon as it is encoded: the threshold is its length.
        BufferSettings::new(size, size)
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcm_api::monitoring::CreateTimeSeriesSummary;
    use gcm_api::monitoring::create_time_series_summary::Error as SummaryError;

    #[test]
    fn point_statuses_follow_the_summary_when_there_is_one() {
        let summary = CreateTimeSeriesSummary {
            total_point_count: 10,
            success_point_count: 6,
            errors: vec![SummaryError {
                status: Some(gcm_api::rpc::Status {
                    code: Code::InvalidArgument as i32,
                    message: String::new(),
                    details: vec![],
                }),
                point_count: 4,
            }],
        };
        let status = gcm_api::status_with_summary(Code::InvalidArgument, "bad", &summary);
        let err = SendError::from_status(&status);
        assert_eq!(err.point_statuses(10), vec![(0, 6), (3, 4)]);
    }

    #[test]
    fn transient_codes_are_retried_and_refusals_are_not() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
        ] {
            assert!(
                SendError::from_status(&Status::new(code, "x")).retryable,
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::NotFound,
            Code::Unauthenticated,
        ] {
            assert!(
                !SendError::from_status(&Status::new(code, "x")).retryable,
                "{code:?}"
            );
        }
    }

    #[test]
    fn connections_grow_with_the_most_shards_that_can_run() {
        assert_eq!(connections_for(1), MIN_CONNECTIONS);
        assert_eq!(connections_for(200), MIN_CONNECTIONS);
        assert_eq!(connections_for(201), 5);
        // The most shards there can be: none carries more than a server's stream limit.
        assert_eq!(connections_for(1024), 21);
        assert!(1024usize.div_ceil(connections_for(1024)) <= SHARDS_PER_CONNECTION);
    }

    #[test]
    fn point_statuses_without_a_summary_count_every_point_under_the_call_code() {
        let err = SendError::from_status(&Status::unavailable("down"));
        assert_eq!(err.point_statuses(7), vec![(14, 7)]);
    }
}
