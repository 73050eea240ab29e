//! Server side of `google.monitoring.v3.MetricService`, written by hand.
//!
//! The generated crate only ships a client. This module owns the equivalent of what `tonic-build`
//! generates for a server: the [`MetricService`] trait an implementation fills in, and the
//! [`MetricServiceServer`] tower service that decodes each gRPC call, routes it by path to the
//! trait method and encodes the answer with the prost codec.
//!
//! It must never decide anything about the calls themselves: every method the implementer does
//! not override answers `UNIMPLEMENTED`, and a path that names no method of the service answers
//! `UNIMPLEMENTED` too, as a gRPC server generated from the `.proto` would.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::{Request, Response, Status};

use crate::api;
use crate::monitoring::{
    CreateMetricDescriptorRequest, CreateTimeSeriesRequest, DeleteMetricDescriptorRequest,
    GetMetricDescriptorRequest, GetMonitoredResourceDescriptorRequest,
    ListMetricDescriptorsRequest, ListMetricDescriptorsResponse,
    ListMonitoredResourceDescriptorsRequest, ListMonitoredResourceDescriptorsResponse,
    ListTimeSeriesRequest, ListTimeSeriesResponse,
};

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "google.monitoring.v3.MetricService";

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "{SERVICE_NAME}/{method} is not implemented by this server"
    ))
}

/// The methods of `google.monitoring.v3.MetricService`.
///
/// Every method has a default body answering `UNIMPLEMENTED`, so an implementation overrides only
/// what it serves. Methods whose protobuf answer is `google.protobuf.Empty` return `()`, matching
/// the generated client.
#[tonic::async_trait]
pub trait MetricService: Send + Sync + 'static {
    /// `ListMonitoredResourceDescriptors`.
    async fn list_monitored_resource_descriptors(
        &self,
        _request: Request<ListMonitoredResourceDescriptorsRequest>,
    ) -> Result<Response<ListMonitoredResourceDescriptorsResponse>, Status> {
        Err(unimplemented("ListMonitoredResourceDescriptors"))
    }

    /// `GetMonitoredResourceDescriptor`.
    async fn get_monitored_resource_descriptor(
        &self,
        _request: Request<GetMonitoredResourceDescriptorRequest>,
    ) -> Result<Response<api::MonitoredResourceDescriptor>, Status> {
        Err(unimplemented("GetMonitoredResourceDescriptor"))
    }

    /// `ListMetricDescriptors`.
    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    /// `GetMetricDescriptor`.
    async fn get_metric_descriptor(
        &self,
        _request: Request<GetMetricDescriptorRequest>,
    ) -> Result<Response<api::MetricDescriptor>, Status> {
        Err(unimplemented("GetMetricDescriptor"))
    }

    /// `CreateMetricDescriptor`.
    async fn create_metric_descriptor(
        &self,
        _request: Request<CreateMetricDescriptorRequest>,
    ) -> Result<Response<api::MetricDescriptor>, Status> {
        Err(unimplemented("CreateMetricDescriptor"))
    }

    /// `DeleteMetricDescriptor`.
    async fn delete_metric_descriptor(
        &self,
        _request: Request<DeleteMetricDescriptorRequest>,
    ) -> Result<Response<()>, Status> {
        Err(unimplemented("DeleteMetricDescriptor"))
    }

    /// `ListTimeSeries`.
    async fn list_time_series(
        &self,
        _request: Request<ListTimeSeriesRequest>,
    ) -> Result<Response<ListTimeSeriesResponse>, Status> {
        Err(unimplemented("ListTimeSeries"))
    }

    /// `CreateTimeSeries`.
    async fn create_time_series(
        &self,
        _request: Request<CreateTimeSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        Err(unimplemented("CreateTimeSeries"))
    }

    /// `CreateServiceTimeSeries`.
    async fn create_service_time_series(
        &self,
        _request: Request<CreateTimeSeriesRequest>,
    ) -> Result<Response<()>, Status> {
        Err(unimplemented("CreateServiceTimeSeries"))
    }
}

/// A tower service serving a [`MetricService`] implementation over gRPC.
///
/// Add it to a `tonic::transport::Server` with `add_service`. Cloning is cheap: clones share the
/// implementation.
#[derive(Debug)]
pub struct MetricServiceServer<T> {
    inner: Arc<T>,
    max_decoding_message_size: Option<usize>,
    max_encoding_message_size: Option<usize>,
}

impl<T> Clone for MetricServiceServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            max_decoding_message_size: self.max_decoding_message_size,
            max_encoding_message_size: self.max_encoding_message_size,
        }
    }
}

impl<T: MetricService> MetricServiceServer<T> {
    /// Serves `inner`.
    pub fn new(inner: T) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Serves an implementation that is shared with other owners.
    pub fn from_arc(inner: Arc<T>) -> Self {
        Self {
            inner,
            max_decoding_message_size: None,
            max_encoding_message_size: None,
        }
    }

    /// Limits the size of a decoded request (tonic's default is 4 MiB).
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }

    /// Limits the size of an encoded response (tonic's default is unlimited).
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl<T> tonic::server::NamedService for MetricServiceServer<T> {
    const NAME: &'static str = SERVICE_NAME;
}

/// A handler for one unary method: takes the shared implementation and the decoded request.
type Handler<T, Req, Resp> = fn(Arc<T>, Request<Req>) -> BoxFuture<Response<Resp>, Status>;

/// Adapts one trait method to tonic's `UnaryService`, which `Grpc::unary` drives.
struct UnaryMethod<T, Req, Resp> {
    inner: Arc<T>,
    handler: Handler<T, Req, Resp>,
}

impl<T, Req, Resp> tonic::server::UnaryService<Req> for UnaryMethod<T, Req, Resp> {
    type Response = Resp;
    type Future = BoxFuture<Response<Resp>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        (self.handler)(Arc::clone(&self.inner), request)
    }
}

impl<T: MetricService> MetricServiceServer<T> {
    /// Decodes `req`, runs `handler` and encodes its answer (or its status) as a gRPC response.
    fn unary<B, Req, Resp>(
        &self,
        req: http::Request<B>,
        handler: Handler<T, Req, Resp>,
    ) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
        Req: prost::Message + Default + Send + 'static,
        Resp: prost::Message + Send + 'static,
    {
        let method = UnaryMethod {
            inner: Arc::clone(&self.inner),
            handler,
        };
        let max_decoding = self.max_decoding_message_size;
        let max_encoding = self.max_encoding_message_size;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(max_decoding, max_encoding);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// The answer to a path that names no method of this service.
fn unimplemented_path() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        tonic::Status::GRPC_STATUS,
        http::HeaderValue::from(tonic::Code::Unimplemented as i32),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

impl<T, B> Service<http::Request<B>> for MetricServiceServer<T>
where
    T: MetricService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            "/google.monitoring.v3.MetricService/ListMonitoredResourceDescriptors" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.list_monitored_resource_descriptors(r).await })
                }),
            "/google.monitoring.v3.MetricService/GetMonitoredResourceDescriptor" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.get_monitored_resource_descriptor(r).await })
                }),
            "/google.monitoring.v3.MetricService/ListMetricDescriptors" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.list_metric_descriptors(r).await })
                }),
            "/google.monitoring.v3.MetricService/GetMetricDescriptor" => self.unary(req, |s, r| {
                Box::pin(async move { s.get_metric_descriptor(r).await })
            }),
            "/google.monitoring.v3.MetricService/CreateMetricDescriptor" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.create_metric_descriptor(r).await })
                }),
            "/google.monitoring.v3.MetricService/DeleteMetricDescriptor" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.delete_metric_descriptor(r).await })
                }),
            "/google.monitoring.v3.MetricService/ListTimeSeries" => self.unary(req, |s, r| {
                Box::pin(async move { s.list_time_series(r).await })
            }),
            "/google.monitoring.v3.MetricService/CreateTimeSeries" => self.unary(req, |s, r| {
                Box::pin(async move { s.create_time_series(r).await })
            }),
            "/google.monitoring.v3.MetricService/CreateServiceTimeSeries" => self
                .unary(req, |s, r| {
                    Box::pin(async move { s.create_service_time_series(r).await })
                }),
            _ => Box::pin(async move { Ok(unimplemented_path()) }),
        }
    }
}
