//! The retrieval stage: from WAL records to converted points.
//!
//! Owns the series cache, series resolution (targets, resources, metadata, naming), sample
//! conversion and the reader loop that ties them together. It must never talk to the Monitoring
//! API; converted points leave through the export stage's queues.

pub mod aggregator;
pub mod convert;
pub mod filter;
pub mod gc;
pub mod histogram;
pub mod reader;
pub mod resolve;
pub mod resource;
pub mod series;
mod sources;

pub use reader::{Reader, ReaderExit, ReaderProgress};
pub use resolve::{Resolution, ResolvedSeries, Resolver, SeriesSources};
pub use sources::PrometheusSources;
