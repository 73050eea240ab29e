//! The retrieval stage: from WAL records to converted points.
//!
//! Owns the series cache, series resolution (targets, resources, metadata, naming), sample
//! conversion and the reader loop that ties them together. It must never talk to the Monitoring
//! API; converted points leave through the export stage's queues.

pub mod aggregator;
pub mod convert;
mod delivery;
pub mod exemplars;
pub(crate) mod gc;
pub mod histogram;
mod lookup;
pub mod native;
mod output;
pub(crate) mod reader;
pub mod resolve;
pub(crate) mod resource;
pub mod series;
mod sources;

pub use delivery::ReaderProgress;
pub use reader::{Reader, ReaderExit};
pub use resolve::{Resolution, ResolvedSeries, Resolver, SeriesSources};
pub use sources::PrometheusSources;
