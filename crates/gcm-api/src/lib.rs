//! Google Cloud Monitoring v3 API surface used by the sidecar and the emulator.
//!
//! The message types and the `MetricService` client are generated from Google's own protobuf
//! definitions (googleapis) and come from the `googleapis-tonic-google-monitoring-v3` crate; this
//! crate re-exports them under short paths and adds the server-side dispatcher that crate does not
//! generate ([`server`]) and the packing of a `CreateTimeSeriesSummary` into gRPC status details
//! ([`summary`]). It holds no logic of its own: validation lives in the emulator, conversion in the
//! sidecar.
//!
//! ```no_run
//! use gcm_api::monitoring::metric_service_client::MetricServiceClient;
//! # async fn connect() -> Result<(), tonic::transport::Error> {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9092").connect().await?;
//! let _client = MetricServiceClient::new(channel);
//! # Ok(())
//! # }
//! ```

pub use googleapis_tonic_google_monitoring_v3::google::api;
pub use googleapis_tonic_google_monitoring_v3::google::monitoring::v3 as monitoring;
pub use googleapis_tonic_google_monitoring_v3::google::rpc;

pub mod server;
pub mod summary;

pub use server::{MetricService, MetricServiceServer};
pub use summary::{CREATE_TIME_SERIES_SUMMARY_TYPE_URL, status_with_summary, summary_from_status};
