//! The metric metadata cache: the type (counter, gauge, histogram…), value type and help text of
//! a metric, as seen on a series' job and instance.
//!
//! Owns the lookup order (static metadata from the config, built-in metadata of Prometheus's
//! synthetic scrape series, cached answers, then `/api/v1/targets/metadata`), what is cached per
//! job, and when "no metadata" is asked again. Must never strip metric name suffixes on its own
//! (the series resolver decides, using [`strip_suffix`]), or turn an HTTP failure into "no
//! metadata" (failures are errors; the caller retries later).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::promapi::{MetadataItem, PromApi, PromApiError};
pub use crate::promapi::{MetricType, ParseMetricTypeError};

/// How long an answer of "no metadata" for a name is believed before the next lookup asks
/// Prometheus again (the original: 30 s).
pub const NOT_FOUND_RECHECK_AFTER: Duration = Duration::from_secs(30);

/// Suffixes the series resolver strips, in the original's order: the first one that matches is
/// the only one stripped.
const STRIPPABLE_SUFFIXES: [&str; 4] = ["_bucket", "_count", "_sum", "_total"];

/// Series Prometheus writes for every scrape that never have metadata, with their help texts.
/// `scrape_series_added` is not in the original's list (SD#272 reported its series dropped for
/// "metadata not found"); Prometheus 2.10+ writes it for every target.
const SCRAPE_SERIES: [(&str, &str); 5] = [
    (
        "up",
        "Up indicates whether the last target scrape was successful.",
    ),
    (
        "scrape_duration_seconds",
        "Duration of the last scrape of the target, in seconds.",
    ),
    (
        "scrape_samples_scraped",
        "Number of samples the target exposed in the last scrape.",
    ),
    (
        "scrape_samples_post_metric_relabeling",
        "Number of samples left after metric relabelling in the last scrape.",
    ),
    (
        "scrape_series_added",
        "Number of series in the last scrape that were not in the previous one.",
    ),
];

/// The value type a metric is exported with. Prometheus does not know it; only static metadata
/// from the config sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ValueType {
    /// Not set: the exporter picks (double for plain values).
    #[default]
    Unspecified,
    /// 64-bit floating point.
    Double,
    /// 64-bit integer (values are rounded).
    Int64,
}

impl ValueType {
    /// The config file's name for this value type (`""` for unspecified).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Unspecified => "",
            ValueType::Double => "double",
            ValueType::Int64 => "int64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Unspecified => f.write_str("unspecified"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A name that is not a value type of the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value type {0:?}")]
pub struct ParseValueTypeError(pub String);

impl FromStr for ValueType {
    type Err = ParseValueTypeError;

    /// The config file's names: `double`, `int64`, and `""` for unspecified.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "" => Ok(ValueType::Unspecified),
            "double" => Ok(ValueType::Double),
            "int64" => Ok(ValueType::Int64),
            other => Err(ParseValueTypeError(other.to_owned())),
        }
    }
}

/// What is known about one metric name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricMetadata {
    /// The metric name this metadata was asked for (for a single fetch: the requested name).
    pub metric: String,
    /// Family type.
    pub metric_type: MetricType,
    /// Value type; [`ValueType::Unspecified`] unless set by static metadata or built in.
    pub value_type: ValueType,
    /// Help text, possibly empty.
    pub help: String,
}

/// Why a metadata lookup failed. The lookup can be retried later.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The batch fetch of a job's metadata failed.
    #[error("fetching the metric metadata of job {job:?} (instance {instance:?}) failed: {source}")]
    Batch {
        /// The series' job.
        job: String,
        /// The series' instance, used to pick the target.
        instance: String,
        /// What went wrong talking to Prometheus.
        source: PromApiError,
    },
    /// The fetch of one metric's metadata failed.
    #[error(
        "fetching the metadata of metric {metric:?} for job {job:?} (instance {instance:?}) failed: {source}"
    )]
    Single {
        /// The series' job.
        job: String,
        /// The series' instance.
        instance: String,
        /// The metric name asked for.
        metric: String,
        /// What went wrong talking to Prometheus.
        source: PromApiError,
    },
}

/// If `name` ends with one of `_bucket`, `_count`, `_sum`, `_total` (checked in that order), the
/// name without it and the suffix. Only one suffix is ever stripped; a name that is only the
/// suffix is not stripped.
pub fn strip_suffix(name: &str) -> Option<(&str, &'static str)> {
    STRIPPABLE_SUFFIXES.iter().find_map(|&suffix| {
        name.strip_suffix(suffix)
            .filter(|base| !base.is_empty())
            .map(|base| (base, suffix))
    })
}

/// The metric metadata cache, keyed by (job, metric name): one job's metadata never decides a
/// metric's type for another. [`MetadataCache::get`] gives the lookup order.
///
/// Thread-safe: lookups may come from several tasks; each job has its own async lock, held
/// across that job's HTTP fetch, so two lookups never fetch the same job's batch twice and jobs
/// never wait on each other.
#[derive(Debug)]
pub struct MetadataCache {
    /// Where metadata that is neither static nor built in comes from.
    api: PromApi,
    /// Metadata from the config file by metric name; beats everything else.
    static_by_name: HashMap<String, MetricMetadata>,
    /// Per-job caches, created on a job's first lookup.
    jobs: Mutex<HashMap<String, Arc<Mutex<JobMetadata>>>>,
    /// How long "no metadata" answers are believed.
    not_found_recheck_after: Duration,
}

/// What is cached for one job.
#[derive(Debug, Default)]
struct JobMetadata {
    /// Whether a batch fetch of this job's metadata succeeded; afterwards only single fetches.
    batch_fetched: bool,
    /// Answers by metric name.
    by_metric: HashMap<String, CachedMetadata>,
}

#[derive(Debug)]
enum CachedMetadata {
    Found(MetricMetadata),
    /// Prometheus had nothing for the name when asked at `checked_at`.
    NotFound {
        checked_at: Instant,
    },
}

impl MetadataCache {
    /// A cache asking `api`, with `static_metadata` from the config winning over everything
    /// (indexed by metric name; of duplicate names the last one wins).
    pub fn new(api: PromApi, static_metadata: Vec<MetricMetadata>) -> Self {
        let static_by_name = static_metadata
            .into_iter()
            .map(|md| (md.metric.clone(), md))
            .collect();
        Self {
            api,
            static_by_name,
            jobs: Mutex::new(HashMap::new()),
            not_found_recheck_after: NOT_FOUND_RECHECK_AFTER,
        }
    }

    /// Changes how long "no metadata" answers are believed (default
    /// [`NOT_FOUND_RECHECK_AFTER`]).
    pub fn with_not_found_recheck_after(mut self, recheck_after: Duration) -> Self {
        self.not_found_recheck_after = recheck_after;
        self
    }

    /// Whether the configuration file gives `metric`'s metadata.
    pub fn is_static(&self, metric: &str) -> bool {
        self.static_by_name.contains_key(metric)
    }

    /// Metadata for `metric` as seen on a series of `(job, instance)`:
    ///
    /// 1. static metadata with exactly this name;
    /// 2. built-in gauge metadata for `up` and the `scrape_*` series Prometheus writes;
    /// 3. the job's cached answer; "no metadata" answers are believed for 30 s;
    /// 4. otherwise, the first time the job is looked up, one batch fetch of all of the target's
    ///    metadata (`match_target={job,instance}`); a name absent from the batch gets `None`
    ///    without another request this once. Later, a single fetch for just this name, whose
    ///    empty answer is cached as "no metadata";
    /// 5. a name with `:` (recording-rule convention) gets synthesized gauge metadata (not
    ///    cached);
    /// 6. otherwise `None`.
    ///
    /// HTTP failures are errors and cache nothing.
    pub async fn get(
        &self,
        job: &str,
        instance: &str,
        metric: &str,
    ) -> Result<Option<MetricMetadata>, MetadataError> {
        if let Some(md) = self.static_by_name.get(metric) {
            return Ok(Some(md.clone()));
        }
        if let Some(md) = scrape_series_metadata(metric) {
            return Ok(Some(md));
        }
        let job_metadata = self.job_metadata(job).await;
        let mut job_metadata = job_metadata.lock().await;
        let must_fetch = match job_metadata.by_metric.get(metric) {
            Some(CachedMetadata::Found(md)) => return Ok(Some(md.clone())),
            Some(CachedMetadata::NotFound { checked_at }) => {
                checked_at.elapsed() >= self.not_found_recheck_after
            }
            None => true,
        };
        if must_fetch {
            if job_metadata.batch_fetched {
                self.fetch_single(&mut job_metadata, job, instance, metric)
                    .await?;
            } else {
                self.fetch_batch(&mut job_metadata, job, instance).await?;
            }
            if let Some(CachedMetadata::Found(md)) = job_metadata.by_metric.get(metric) {
                return Ok(Some(md.clone()));
            }
        }
        Ok(recording_rule_metadata(metric))
    }

    /// The cache of `job`, created empty on first use.
    async fn job_metadata(&self, job: &str) -> Arc<Mutex<JobMetadata>> {
        let mut jobs = self.jobs.lock().await;
        if let Some(existing) = jobs.get(job) {
            return Arc::clone(existing);
        }
        let created = Arc::new(Mutex::new(JobMetadata::default()));
        jobs.insert(job.to_owned(), Arc::clone(&created));
        created
    }

    /// Fetches all metadata of the job's target and caches every family not cached yet. An
    /// empty or `not_found` answer counts as done: later lookups fetch single names.
    async fn fetch_batch(
        &self,
        job_metadata: &mut JobMetadata,
        job: &str,
        instance: &str,
    ) -> Result<(), MetadataError> {
        let items = self
            .api
            .targets_metadata(job, instance, None)
            .await
            .map_err(|source| MetadataError::Batch {
                job: job.to_owned(),
                instance: instance.to_owned(),
                source,
            })?;
        // Several targets can share job and instance; the first item for a name wins.
        for MetadataItem {
            metric,
            metric_type,
            help,
            ..
        } in items.into_iter().flatten()
        {
            if metric.is_empty() {
                continue;
            }
            if let Entry::Vacant(slot) = job_metadata.by_metric.entry(metric) {
                let metric = slot.key().clone();
                slot.insert(CachedMetadata::Found(MetricMetadata {
                    metric,
                    metric_type,
                    value_type: ValueType::Unspecified,
                    help,
                }));
            }
        }
        job_metadata.batch_fetched = true;
        Ok(())
    }

    /// Fetches one name's metadata and caches the answer, "no metadata" included.
    async fn fetch_single(
        &self,
        job_metadata: &mut JobMetadata,
        job: &str,
        instance: &str,
        metric: &str,
    ) -> Result<(), MetadataError> {
        let items = self
            .api
            .targets_metadata(job, instance, Some(metric))
            .await
            .map_err(|source| MetadataError::Single {
                job: job.to_owned(),
                instance: instance.to_owned(),
                metric: metric.to_owned(),
                source,
            })?;
        let answer = match items.and_then(|items| items.into_iter().next()) {
            Some(item) => CachedMetadata::Found(MetricMetadata {
                metric: metric.to_owned(),
                metric_type: item.metric_type,
                value_type: ValueType::Unspecified,
                help: item.help,
            }),
            None => CachedMetadata::NotFound {
                checked_at: Instant::now(),
            },
        };
        job_metadata.by_metric.insert(metric.to_owned(), answer);
        Ok(())
    }
}

/// Built-in metadata for the series Prometheus adds to every scrape.
fn scrape_series_metadata(metric: &str) -> Option<MetricMetadata> {
    SCRAPE_SERIES
        .iter()
        .find(|(name, _)| *name == metric)
        .map(|(name, help)| MetricMetadata {
            metric: (*name).to_owned(),
            metric_type: MetricType::Gauge,
            value_type: ValueType::Double,
            help: (*help).to_owned(),
        })
}

/// Gauge metadata for names following the recording-rule convention `level:metric:operations`:
/// Prometheus keeps no type for rule outputs.
fn recording_rule_metadata(metric: &str) -> Option<MetricMetadata> {
    metric.contains(':').then(|| MetricMetadata {
        metric: metric.to_owned(),
        metric_type: MetricType::Gauge,
        value_type: ValueType::Unspecified,
        help: String::new(),
    })
}

#[cfg(test)]
mod tests;
