//! A `CreateTimeSeries` endpoint that does as little as possible: it counts the `time_series`
//! entries of each request by walking the top-level protobuf fields (each entry holds one point)
//! and answers OK, so the benchmark measures the sidecar, not the backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Request, Response, Status};

/// What the sink received.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Time series (one point each) received.
    pub points: AtomicU64,
    /// Bytes of the encoded requests (gRPC message bodies).
    pub bytes: AtomicU64,
    /// When the first and the latest points arrived.
    pub times: Mutex<Option<(Instant, Instant)>>,
}

/// Starts the sink on `127.0.0.1:0`; returns its address and counts.
pub async fn serve() -> anyhow::Result<(SocketAddr, Arc<SinkCounts>)> {
    let counts = Arc::new(SinkCounts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let svc = Sink {
        counts: counts.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    Ok((addr, counts))
}

#[derive(Clone)]
struct Sink {
    counts: Arc<SinkCounts>,
}

impl tonic::server::NamedService for Sink {
    const NAME: &'static str = "google.monitoring.v3.MetricService";
}

impl tonic::server::UnaryService<(u64, u64)> for Sink {
    type Response = ();
    type Future = BoxFuture<Response<()>, Status>;

    fn call(&mut self, request: Request<(u64, u64)>) -> Self::Future {
        let (n, bytes) = request.into_inner();
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        self.counts.points.fetch_add(n, Ordering::Relaxed);
        self.counts.bytes.fetch_add(bytes, Ordering::Relaxed);
        let now = Instant::now();
        if let Ok(mut t) = self.counts.times.lock() {
            *t = Some(t.map_or((now, now), |(first, _)| (first, now)));
        }
        Box::pin(async { Ok(Response::new(())) })
    }
}

impl<B> Service<http::Request<B>> for Sink
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(CountingCodec)
                .apply_max_message_size_config(Some(64 << 20), None);
            Ok(grpc.unary(svc, req).await)
        })
    }
}

/// Decodes a `CreateTimeSeriesRequest` into the number of its `time_series` entries and its size.
#[derive(Clone, Copy, Default)]
struct CountingCodec;

impl Codec for CountingCodec {
    type Encode = ();
    type Decode = (u64, u64);
    type Encoder = CountingCodec;
    type Decoder = CountingCodec;

    fn encoder(&mut self) -> Self::Encoder {
        CountingCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        CountingCodec
    }
}

impl Encoder for CountingCodec {
    type Item = ();
    type Error = Status;

    fn encode(&mut self, _: (), _dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

fn varint(buf: &mut DecodeBuf<'_>) -> Result<u64, Status> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(Status::invalid_argument("truncated varint"));
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Status::invalid_argument("varint too long"))
}

impl Decoder for CountingCodec {
    type Item = (u64, u64);
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<(u64, u64)>, Status> {
        let size = buf.remaining() as u64;
        let mut series = 0;
        while buf.has_remaining() {
            let key = varint(buf)?;
            let skip = match key & 7 {
                0 => {
                    varint(buf)?;
                    0
                }
                1 => 8,
                2 => varint(buf)? as usize,
                5 => 4,
                w => return Err(Status::invalid_argument(format!("wire type {w}"))),
            };
            if key >> 3 == 2 {
                series += 1;
            }
            if skip > buf.remaining() {
                return Err(Status::invalid_argument("truncated field"));
            }
            buf.advance(skip);
        }
        Ok(Some((series, size)))
    }
}
