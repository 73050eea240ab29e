//! Reading the Prometheus TSDB write-ahead log.

mod labels;

pub use labels::{Label, Labels};
