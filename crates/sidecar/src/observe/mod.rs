//! The sidecar watching itself: metrics rendering, process figures, WAL lag, health and
//! readiness rules, and the recent warnings shown on `/statusz`.
//!
//! Everything here reads what the pipeline recorded in [`crate::stats::Stats`] (plus `/proc` and
//! the WAL directory's file sizes); it must never slow the pipeline down or change what it
//! does. The HTTP server serving it is the `web` module's.

pub(crate) mod exposition;
pub mod health;
pub mod lag;
pub(crate) mod process;
pub mod recent;
pub mod self_export;

use std::time::SystemTime;

/// Facts about this process that do not change while it runs.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The sidecar's version.
    pub version: &'static str,
    /// Source revision the binary was built from (`SIDECAR_REVISION` at build time).
    pub revision: &'static str,
    /// Source branch (`SIDECAR_BRANCH` at build time).
    pub branch: &'static str,
    /// What built it; fills the `goversion` label the original's build info had.
    pub toolchain: &'static str,
    /// The `queue` label of the export metrics: the Monitoring API address as given.
    pub queue: String,
    /// Fewest and most shards (the running count is in the stats).
    pub shard_limits: (usize, usize),
    /// Points each shard's queue holds.
    pub capacity_per_shard: usize,
    /// When the process started.
    pub started: SystemTime,
}

impl RuntimeInfo {
    /// Build facts, with the export shape left empty for the caller to fill in.
    pub fn new(started: SystemTime) -> RuntimeInfo {
        RuntimeInfo {
            version: crate::VERSION,
            revision: option_env!("SIDECAR_REVISION").unwrap_or("unknown"),
            branch: option_env!("SIDECAR_BRANCH").unwrap_or("unknown"),
            toolchain: "rust",
            queue: String::new(),
            shard_limits: (0, 0),
            capacity_per_shard: 0,
            started,
        }
    }

    /// Points each shard's queue holds when `shards` shards run.
    pub fn queue_points(&self, shards: usize) -> usize {
        crate::export::queue::queue_points(self.capacity_per_shard, shards)
    }
}
