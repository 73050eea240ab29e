//! The production [`SeriesSources`]: the Prometheus targets and metadata caches.
//!
//! A thin adapter; it must never add caching or policy of its own.

use std::sync::Arc;

use prometheus_wal::Label;

use super::resolve::SeriesSources;
use crate::metadata::{MetadataCache, MetricMetadata};
use crate::targets::{Target, TargetsCache};

/// Targets and metadata from the running Prometheus.
pub struct PrometheusSources {
    /// The targets cache.
    pub targets: Arc<TargetsCache>,
    /// The metadata cache.
    pub metadata: Arc<MetadataCache>,
}

impl SeriesSources for PrometheusSources {
    async fn target(&self, series: &[Label]) -> Result<Option<Arc<Target>>, String> {
        match self.targets.get(series).await {
            Ok(None) if self.targets.active_targets().await == 0 => {
                // Right after Prometheus (re)starts it reports no targets for a moment: not an
                // answer about this series yet.
                Err("Prometheus reports no active targets yet".into())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    async fn metadata(
        &self,
        job: &str,
        instance: &str,
        metric: &str,
    ) -> Result<Option<MetricMetadata>, String> {
        self.metadata
            .get(job, instance, metric)
            .await
            .map_err(|e| e.to_string())
    }

    fn has_static_metadata(&self, metric: &str) -> bool {
        self.metadata.is_static(metric)
    }
}
