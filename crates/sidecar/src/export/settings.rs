//! The shape of the export stage: project, shard count, queue and batch sizes, deadlines, the
//! retry policy and the API's time window. Plain settings; it must never start anything.

use std::time::Duration;

use super::retry::{DEFAULT_RETRY_BUDGET, RetryPolicy};
use crate::model::lanes::LANES;
use crate::model::validate::TimeLimits;

/// Shape of the export stage.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `projects/<id>`.
    pub project_name: String,
    /// Number of shards at start (the autoscaler may change it while running).
    pub shards: usize,
    /// Points each shard's queue holds before the reader blocks.
    pub capacity_per_shard: usize,
    /// Most distinct series per request.
    pub max_batch: usize,
    /// Longest time a point waits in a partial batch.
    pub batch_deadline: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// The API's time window; points outside it are dropped before sending.
    pub time_limits: TimeLimits,
}

impl ExportConfig {
    /// The original's queue settings (200 series per request, 600 points per shard, 5 s
    /// deadline), with `shards` fixed shards.
    pub fn new(project_id: &str, shards: usize) -> ExportConfig {
        ExportConfig {
            project_name: format!("projects/{project_id}"),
            shards: shards.clamp(1, LANES),
            capacity_per_shard: 600,
            max_batch: 200,
            batch_deadline: Duration::from_secs(5),
            retry: RetryPolicy {
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                budget: DEFAULT_RETRY_BUDGET,
            },
            time_limits: TimeLimits::default(),
        }
    }

    /// The same, accepting points of any age or time (for replaying recorded data in tests).
    pub fn without_time_limits(mut self) -> ExportConfig {
        self.time_limits = TimeLimits {
            max_age: None,
            max_future: None,
        };
        self
    }
}
