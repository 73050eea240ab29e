//! Google Cloud Monitoring v3 API surface used by the sidecar and the emulator.
//!
//! The message types and the `MetricService` client are generated from Google's own protobuf
//! definitions (googleapis) and come from the `googleapis-tonic-google-monitoring-v3` crate; this
//! crate re-exports them under short paths and adds the server-side dispatcher that crate does not
//! generate. It holds no logic of its own: validation lives in the emulator, conversion in the
//! sidecar.

pub use googleapis_tonic_google_monitoring_v3::google::api;
pub use googleapis_tonic_google_monitoring_v3::google::monitoring::v3 as monitoring;
pub use googleapis_tonic_google_monitoring_v3::google::rpc;
