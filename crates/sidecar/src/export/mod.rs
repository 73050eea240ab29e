//! The export stage: shard queues, batching, request assembly, retries and the
//! `CreateTimeSeries` client.
//!
//! Owns everything between a converted point and the API's answer. It must never convert
//! samples or look series up; it receives ready points with their encoded series prototype.

pub mod autoscale;
mod batch;
pub mod client;
mod deliveries;
pub(crate) mod files;
pub(crate) mod queue;
mod refused;
pub(crate) mod request;
mod retry;
pub(crate) mod router;
mod settings;
mod shard;

pub use crate::stats::{ExportDrop, ExportDrops};
pub use autoscale::ShardBounds;
pub use client::{GrpcSink, SendError, TimeSeriesSink};
pub use files::FileSink;
pub use queue::{Delivery, QueuedPoint};
pub use request::RequestBuilder;
pub use retry::{DEFAULT_RETRY_BUDGET, RetryPolicy};
pub use router::{ExportClosed, ExportHandle, Exporter, Resharder};
pub use settings::ExportConfig;
