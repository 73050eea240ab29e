//! The export stage: shard queues, request assembly and the `CreateTimeSeries` client.
//!
//! Owns everything between a converted point and the API's answer. It must never convert
//! samples or look series up; it receives ready points with their encoded series prototype.

pub mod autoscale;
pub mod client;
mod coalesce;
pub mod drops;
pub mod encode;
pub mod files;
pub mod lanes;
mod point_bytes;
mod resources;
pub mod router;
pub mod shard;
pub mod validate;

pub use autoscale::ShardBounds;
pub use client::{GrpcSink, SendError, TimeSeriesSink};
pub use drops::{ExportDrop, ExportDrops};
pub use encode::{
    Distribution, Point, PointKind, PointValue, RequestBuilder, SeriesPrototype, SharedPrototype,
};
pub use files::FileSink;
pub use router::{ExportClosed, ExportHandle, Exporter, Resharder};
pub use shard::{DEFAULT_RETRY_BUDGET, Delivery, ExportConfig, QueuedPoint, RetryPolicy};
