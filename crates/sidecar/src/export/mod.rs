//! The export stage: shard queues, request assembly and the `CreateTimeSeries` client.
//!
//! Owns everything between a converted point and the API's answer. It must never convert
//! samples or look series up; it receives ready points with their encoded series prototype.

pub mod client;
pub mod encode;
pub mod shard;

pub use client::{GrpcSink, SendError, TimeSeriesSink};
pub use encode::{
    Distribution, Point, PointKind, PointValue, RequestBuilder, SeriesPrototype, SharedPrototype,
};
pub use shard::{
    Delivery, ExportClosed, ExportConfig, ExportHandle, Exporter, QueuedPoint, RetryPolicy,
};
