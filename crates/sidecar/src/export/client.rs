//! The `CreateTimeSeries` client: one gRPC channel, requests sent as pre-assembled bytes.
//!
//! Owns the connection to the Monitoring API and the classification of its answers into
//! "retry" and "give up". It must never batch, reorder or drop points itself: that is the
//! shards' job.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::config::ApiAddress;

const CREATE_TIME_SERIES_PATH: &str = "/google.monitoring.v3.MetricService/CreateTimeSeries";

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
    fn from_status(status: &Status) -> SendError {
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

/// Transient failures: the request may succeed if sent again.
fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
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
}

/// gRPC client for the Monitoring API (plaintext, no credentials: `?auth=false`).
#[derive(Debug, Clone)]
pub struct GrpcSink {
    channel: Channel,
    timeout: Duration,
}

impl GrpcSink {
    /// Prepares a lazily connecting, plaintext channel to the API address (the configuration
    /// refuses addresses that need credentials).
    pub fn new(api: &ApiAddress, timeout: Duration) -> Result<GrpcSink, String> {
        let host = if api.host.contains(':') {
            format!("[{}]", api.host)
        } else {
            api.host.clone()
        };
        let uri = format!("http://{host}:{}", api.port);
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("{}: invalid endpoint {uri}: {e}", api.url))?
            .user_agent(format!(
                "stackdriver-prometheus-sidecar/{}",
                crate::config::flags::VERSION
            ))
            .map_err(|e| format!("user agent: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        Ok(GrpcSink {
            channel: endpoint.connect_lazy(),
            timeout,
        })
    }
}

impl TimeSeriesSink for GrpcSink {
    async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| SendError {
            code: Code::Unavailable,
            message: format!("connecting: {e}"),
            retryable: true,
            succeeded_points: None,
            failed_points: Vec::new(),
        })?;
        let mut req = tonic::Request::new(request);
        req.set_timeout(self.timeout);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(CREATE_TIME_SERIES_PATH);
        grpc.unary::<Bytes, (), RawCodec>(req, path, RawCodec)
            .await
            .map(|_| ())
            .map_err(|s| SendError::from_status(&s))
    }
}

/// A codec that writes pre-encoded request bytes and ignores the (empty) response.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
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
    fn point_statuses_without_a_summary_count_every_point_under_the_call_code() {
        let err = SendError::from_status(&Status::unavailable("down"));
        assert_eq!(err.point_statuses(7), vec![(14, 7)]);
    }
}
