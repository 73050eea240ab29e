//! The targets cache: which Prometheus scrape target a series came from, found by the series'
//! `job` and `instance` labels in an index of `/api/v1/targets`.
//!
//! Owns the index (job, instance) → targets, its refreshes (on demand and in the background),
//! the rule that picks a target among those sharing a key, the negative entries for keys no
//! target has, and adding the static labels (project, location, cluster…) to every target's
//! discovered labels. Must never modify a target handed out (targets are shared `Arc`s, replaced
//! as a whole by a refresh), or hold the index lock while talking to Prometheus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use prometheus_wal::{Label, Labels};
use tokio::sync::{Mutex, RwLock};

pub use crate::promapi::Target;
use crate::promapi::{PromApi, PromApiError};

/// How old the last refresh must be before a lookup of a key with no target asks Prometheus
/// again. Also the rate limit: a flood of series of unknown targets causes at most one refresh
/// per this interval.
pub const NEGATIVE_RECHECK_AFTER: Duration = Duration::from_secs(10);

/// The original's background refresh interval.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3 * 60);

/// The label holding a series' and a target's job.
const JOB_LABEL: &str = "job";
/// The label holding a series' and a target's instance.
const INSTANCE_LABEL: &str = "instance";

/// Why a target lookup or refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// Fetching `/api/v1/targets` failed; the previous index is kept.
    #[error("target refresh failed: {source}")]
    Refresh {
        /// What went wrong talking to Prometheus.
        #[from]
        source: PromApiError,
    },
}

/// The targets cache. Thread-safe: lookups read the index under an async read lock and every
/// write (negative entries included) holds the write lock; one refresh runs at a time and
/// concurrent lookups that need one share it.
#[derive(Debug)]
pub struct TargetsCache {
    /// Where targets come from.
    api: PromApi,
    /// Added to every target's discovered labels; sorted by name, no empty values.
    static_labels: Labels,
    /// The index, replaced as a whole by every successful refresh.
    index: RwLock<TargetIndex>,
    /// Held while a refresh is in flight, so refreshes never overlap.
    refresh_lock: Mutex<()>,
    /// See [`NEGATIVE_RECHECK_AFTER`].
    negative_recheck_after: Duration,
}

/// The job and instance of a series or target; absent labels are empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TargetKey {
    job: String,
    instance: String,
}

impl TargetKey {
    fn of(labels: &[Label]) -> Self {
        Self {
            job: label_value(labels, JOB_LABEL).to_owned(),
            instance: label_value(labels, INSTANCE_LABEL).to_owned(),
        }
    }
}

#[derive(Debug)]
enum KeyTargets {
    /// The targets with this key, in the API's order.
    Found(Vec<Arc<Target>>),
    /// No target had this key at the last refresh that was asked about it.
    NotFound,
}

#[derive(Debug, Default)]
struct TargetIndex {
    by_key: HashMap<TargetKey, KeyTargets>,
    /// Refreshes attempted so far, successful or not.
    refresh_attempts: u64,
    /// When the last refresh attempt ended.
    last_refresh_at: Option<Instant>,
    /// Whether the last refresh attempt succeeded.
    last_refresh_ok: bool,
}

impl TargetIndex {
    fn refreshed_within(&self, interval: Duration) -> bool {
        self.last_refresh_at
            .is_some_and(|at| at.elapsed() < interval)
    }
}

/// What a lookup found in the index without refreshing.
enum Cached {
    Answer(Option<Arc<Target>>),
    /// The key is unknown, or its negative entry is due for a re-check.
    Refresh {
        known_negative: bool,
    },
}

impl TargetsCache {
    /// An empty cache asking `api`; the first lookup fills it. `static_labels` are added to
    /// every target's discovered labels (replacing a discovered label of the same name, since
    /// they come from explicit flags); labels with empty values are ignored.
    pub fn new(api: PromApi, static_labels: Labels) -> Self {
        let mut static_labels: Labels = static_labels
            .into_iter()
            .filter(|l| !l.value.is_empty())
            .collect();
        static_labels.sort_by(|a, b| a.name.cmp(&b.name));
        static_labels.dedup_by(|later, earlier| later.name == earlier.name);
        Self {
            api,
            static_labels,
            index: RwLock::new(TargetIndex::default()),
            refresh_lock: Mutex::new(()),
            negative_recheck_after: NEGATIVE_RECHECK_AFTER,
        }
    }

    /// Changes how old the last refresh must be before a negative entry is re-checked on lookup
    /// (default [`NEGATIVE_RECHECK_AFTER`]).
    pub fn with_negative_recheck_after(mut self, recheck_after: Duration) -> Self {
        self.negative_recheck_after = recheck_after;
        self
    }

    /// The target `series_labels` belong to: among the targets whose `job` and `instance` equal
    /// the series' (absent labels count as empty), the first whose every label is absent or
    /// empty in the series or has the same value there. `Ok(None)` when none matches.
    ///
    /// A key never seen refreshes the index first; if it is still unknown it is remembered as
    /// having no target. Such a negative key is re-checked on lookup once the last refresh is
    /// older than the re-check interval ([`NEGATIVE_RECHECK_AFTER`] by default), so the series of
    /// a target Prometheus has just started scraping wait seconds, not until the background
    /// refresh. A failed refresh for an unknown key is an error; for a negative key it is logged
    /// and the answer stays `None`.
    pub async fn get(&self, series_labels: &[Label]) -> Result<Option<Arc<Target>>, TargetsError> {
        let key = TargetKey::of(series_labels);
        let (known_negative, attempts_seen) = {
            let index = self.index.read().await;
            match self.cached(&index, &key, series_labels) {
                Cached::Answer(answer) => return Ok(answer),
                Cached::Refresh { known_negative } => (known_negative, index.refresh_attempts),
            }
        };

        let _refreshing = self.refresh_lock.lock().await;
        // Another lookup may have refreshed while this one waited: use its answer instead of
        // asking again.
        let shared_refresh = {
            let index = self.index.read().await;
            index.refresh_attempts != attempts_seen && index.last_refresh_ok
        };
        if !shared_refresh && let Err(error) = self.refresh_holding_lock().await {
            if !known_negative {
                return Err(error);
            }
            tracing::warn!(
                job = %key.job,
                instance = %key.instance,
                "re-checking a job and instance without target failed: {error}"
            );
            return Ok(None);
        }

        let mut index = self.index.write().await;
        match index.by_key.get(&key) {
            Some(KeyTargets::Found(targets)) => Ok(first_matching(targets, series_labels)),
            Some(KeyTargets::NotFound) => Ok(None),
            None => {
                index.by_key.insert(key, KeyTargets::NotFound);
                Ok(None)
            }
        }
    }

    /// Number of job/instance keys with at least one active target, as of the last refresh
    /// (0 also right after a Prometheus restart, before its scrape manager has any targets).
    pub async fn active_targets(&self) -> usize {
        let index = self.index.read().await;
        index
            .by_key
            .values()
            .filter(|k| matches!(k, KeyTargets::Found(_)))
            .count()
    }

    /// Refreshes the index from `/api/v1/targets`: the index is replaced by the current
    /// answer. Targets equal to cached ones keep their `Arc`; negative entries of keys still
    /// without target are kept. On error the index is left as it was.
    pub async fn refresh(&self) -> Result<(), TargetsError> {
        let _refreshing = self.refresh_lock.lock().await;
        self.refresh_holding_lock().await
    }

    /// Refreshes every `interval` (the original: [`DEFAULT_REFRESH_INTERVAL`]) until `shutdown`
    /// fires, logging failures. The first refresh is after one interval: the first lookup
    /// refreshes on its own.
    pub async fn run_refresher(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        loop {
            tokio::select! {
                biased;
                () = shutdown.triggered() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let outcome = tokio::select! {
                biased;
                () = shutdown.triggered() => return,
                outcome = self.refresh() => outcome,
            };
            if let Err(error) = outcome {
                tracing::warn!("{error}; keeping the previous targets");
            }
        }
    }

    /// The answer the index gives for `key` without refreshing, if any.
    fn cached(&self, index: &TargetIndex, key: &TargetKey, series_labels: &[Label]) -> Cached {
        match index.by_key.get(key) {
            Some(KeyTargets::Found(targets)) => {
                Cached::Answer(first_matching(targets, series_labels))
            }
            Some(KeyTargets::NotFound) if index.refreshed_within(self.negative_recheck_after) => {
                Cached::Answer(None)
            }
            Some(KeyTargets::NotFound) => Cached::Refresh {
                known_negative: true,
            },
            None => Cached::Refresh {
                known_negative: false,
            },
        }
    }

    /// The refresh itself; the caller holds `refresh_lock`.
    async fn refresh_holding_lock(&self) -> Result<(), TargetsError> {
        let fetched = self.api.targets().await;
        let mut index = self.index.write().await;
        index.refresh_attempts += 1;
        index.last_refresh_at = Some(Instant::now());
        let targets = match fetched {
            Ok(targets) => targets,
            Err(error) => {
                index.last_refresh_ok = false;
                return Err(error.into());
            }
        };

        let mut found: HashMap<TargetKey, Vec<Arc<Target>>> = HashMap::new();
        for mut target in targets {
            target.discovered_labels =
                with_static_labels(target.discovered_labels, &self.static_labels);
            let key = TargetKey::of(&target.labels);
            let reused = match index.by_key.get(&key) {
                Some(KeyTargets::Found(old)) => old.iter().find(|t| ***t == target).cloned(),
                _ => None,
            };
            found
                .entry(key)
                .or_default()
                .push(reused.unwrap_or_else(|| Arc::new(target)));
        }
        let mut by_key: HashMap<TargetKey, KeyTargets> = found
            .into_iter()
            .map(|(key, targets)| (key, KeyTargets::Found(targets)))
            .collect();
        for (key, entry) in index.by_key.drain() {
            if matches!(entry, KeyTargets::NotFound) {
                by_key.entry(key).or_insert(KeyTargets::NotFound);
            }
        }
        index.by_key = by_key;
        index.last_refresh_ok = true;
        Ok(())
    }
}

/// Series labels minus every label whose name AND value equal a label of `target` (a label with
/// the target's name but another value is kept).
pub fn drop_target_labels(series: &[Label], target: &Target) -> Labels {
    series
        .iter()
        .filter(|label| !target.labels.contains(label))
        .cloned()
        .collect()
}

/// The first target whose every label is absent or empty in the series, or equal to the
/// series' value.
fn first_matching(targets: &[Arc<Target>], series_labels: &[Label]) -> Option<Arc<Target>> {
    targets
        .iter()
        .find(|target| {
            target.labels.iter().all(|target_label| {
                let series_value = label_value(series_labels, &target_label.name);
                series_value.is_empty() || series_value == target_label.value
            })
        })
        .cloned()
}

/// `discovered` plus `static_labels` (which replace discovered labels of the same name), sorted
/// by name. Both inputs are sorted by name.
fn with_static_labels(discovered: Labels, static_labels: &[Label]) -> Labels {
    if static_labels.is_empty() {
        return discovered;
    }
    let mut merged: Labels = discovered
        .into_iter()
        .filter(|l| !static_labels.iter().any(|s| s.name == l.name))
        .chain(static_labels.iter().cloned())
        .collect();
    merged.sort_by(|a, b| a.name.cmp(&b.name));
    merged
}

/// The value of label `name`, empty when absent.
fn label_value<'a>(labels: &'a [Label], name: &str) -> &'a str {
    labels
        .iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

#[cfg(test)]
mod tests;
