//! The series cache: every WAL series ref seen, its labels, and what it resolved to.
//!
//! Owns per-series state: the resolution outcome (with a retry schedule for series whose target
//! or metadata is not known yet, so they are retried rather than dropped for good) and the
//! counter baseline; which series are exported (`--include`/`--filter`) and which feed aggregated
//! counters, decided once when the series record is read. It must never do I/O itself;
//! resolution is driven by the reader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use prometheus_wal::Labels;

use super::aggregator::{CounterAggregator, Tracker};
use super::convert::CounterState;
use super::filter::SeriesFilter;
use super::resolve::ResolvedSeries;
use crate::stats::DropReason;

/// First wait before a series that failed to resolve is tried again.
pub const RETRY_MIN: Duration = Duration::from_secs(5);
/// Longest wait between resolution attempts (the original's fixed re-resolution interval).
pub const RETRY_MAX: Duration = Duration::from_secs(180);

/// Where a series stands.
#[derive(Debug)]
pub enum SeriesState {
    /// Never tried: resolution happens when its first sample arrives, so series whose samples
    /// never come (old checkpoint entries) cost no lookups.
    New,
    /// Ready to convert samples.
    Resolved {
        /// The resolved series.
        series: ResolvedSeries,
        /// Baseline of cumulative series.
        counter: CounterState,
    },
    /// Could not be resolved; samples are dropped until `retry_at`.
    Unresolved {
        /// Why, when the last attempt got an answer (`None` when Prometheus was unreachable).
        reason: Option<DropReason>,
        /// Attempts so far.
        attempts: u32,
        /// When to try again.
        retry_at: Instant,
    },
    /// Not selected by the filters: never resolved, never exported (it may still feed
    /// aggregated counters). Only its `__name__` label is kept.
    Filtered {
        /// Whether the series was counted as dropped (at its first sample).
        counted: bool,
    },
}

/// One WAL series.
#[derive(Debug)]
pub struct SeriesEntry {
    /// Full Prometheus label set.
    pub labels: Labels,
    /// Segment of the series record (for garbage collection after checkpoints).
    pub segment: u64,
    /// Resolution state.
    pub state: SeriesState,
    /// The aggregated counters the series feeds, if any.
    pub tracker: Option<Tracker>,
    /// Delivery state once resolved, shared with the shard that sends the series' points.
    pub delivery: Option<std::sync::Arc<crate::progress::SeriesAck>>,
    /// Samples at or before this time (ms) were delivered by a previous run: not sent again.
    pub resume_after_t: i64,
}

impl SeriesEntry {
    /// Whether a resolution attempt is due at `now`.
    pub fn needs_resolution(&self, now: Instant) -> bool {
        match &self.state {
            SeriesState::New => true,
            SeriesState::Resolved { .. } | SeriesState::Filtered { .. } => false,
            SeriesState::Unresolved { retry_at, .. } => now >= *retry_at,
        }
    }

    /// For a series the filters did not select: `Some(true)` at its first sample (when it is to
    /// be counted as dropped), `Some(false)` later. `None` for exported series.
    pub fn filtered_sample(&mut self) -> Option<bool> {
        match &mut self.state {
            SeriesState::Filtered { counted } => Some(!std::mem::replace(counted, true)),
            _ => None,
        }
    }

    /// Records a failed attempt and schedules the next one with exponential backoff.
    /// Returns true when the reason is new for this series (to count series, not attempts).
    pub fn mark_unresolved(&mut self, reason: Option<DropReason>, now: Instant) -> bool {
        let (attempts, previous) = match &self.state {
            SeriesState::Unresolved {
                attempts, reason, ..
            } => (*attempts, *reason),
            _ => (0, None),
        };
        let delay = RETRY_MIN
            .saturating_mul(1u32 << attempts.min(16))
            .min(RETRY_MAX);
        self.state = SeriesState::Unresolved {
            reason,
            attempts: attempts + 1,
            retry_at: now + delay,
        };
        reason.is_some() && reason != previous
    }
}

/// All series by WAL ref.
#[derive(Debug, Default)]
pub struct SeriesCache {
    entries: AHashMap<u64, SeriesEntry>,
    /// Which series are exported; everything by default.
    filter: SeriesFilter,
    /// Aggregated counters, if configured.
    aggregator: Option<Arc<CounterAggregator>>,
}

impl SeriesCache {
    /// Exports only the series `filter` selects (matched on the original labels).
    pub fn set_filter(&mut self, filter: SeriesFilter) {
        self.filter = filter;
    }

    /// Gives series matching an aggregated counter's selectors a tracker.
    pub fn set_aggregator(&mut self, aggregator: Arc<CounterAggregator>) {
        self.aggregator = Some(aggregator);
    }

    /// Stores a series record. A resolved series whose record is read again with the same labels
    /// (a checkpoint read again after a truncation) keeps its resolution, counter baseline and
    /// delivery state. Otherwise a ref seen again starts afresh, as the original does: its labels
    /// may have been re-created after Prometheus restarted.
    pub fn insert(&mut self, series_ref: u64, mut labels: Labels, segment: u64) {
        if let Some(known) = self.entries.get_mut(&series_ref)
            && matches!(known.state, SeriesState::Resolved { .. })
            && known.labels == labels
        {
            known.segment = segment;
            return;
        }
        let tracker = self
            .aggregator
            .as_ref()
            .and_then(|a| a.tracker_for(&labels));
        let state = if self.filter.matches(&labels) {
            SeriesState::New
        } else {
            // The original did not store such series at all; the name is kept to count them.
            labels.retain(|l| l.name == "__name__");
            SeriesState::Filtered { counted: false }
        };
        self.entries.insert(
            series_ref,
            SeriesEntry {
                labels,
                segment,
                state,
                tracker,
                delivery: None,
                resume_after_t: i64::MIN,
            },
        );
    }

    /// Keeps the entries for which `keep` holds; returns the refs removed.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &SeriesEntry) -> bool) -> Vec<u64> {
        let mut removed = Vec::new();
        self.entries.retain(|r, e| {
            let k = keep(*r, e);
            if !k {
                removed.push(*r);
            }
            k
        });
        removed
    }

    /// The entry for a ref.
    pub fn get_mut(&mut self, series_ref: u64) -> Option<&mut SeriesEntry> {
        self.entries.get_mut(&series_ref)
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unresolved_series_are_retried_with_growing_backoff() {
        let mut cache = SeriesCache::default();
        cache.insert(1, Labels::new(), 0);
        let now = Instant::now();
        let e = cache.get_mut(1).unwrap();
        assert!(e.needs_resolution(now));
        assert!(e.mark_unresolved(Some(DropReason::TargetNotFound), now));
        assert!(!e.needs_resolution(now + RETRY_MIN - Duration::from_millis(1)));
        assert!(e.needs_resolution(now + RETRY_MIN));
        // Same reason again: not a new dropped series.
        assert!(!e.mark_unresolved(Some(DropReason::TargetNotFound), now));
        assert!(!e.needs_resolution(now + RETRY_MIN));
        assert!(e.needs_resolution(now + RETRY_MIN * 2));
        for _ in 0..20 {
            e.mark_unresolved(Some(DropReason::TargetNotFound), now);
        }
        assert!(e.needs_resolution(now + RETRY_MAX));
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut v: Labels = pairs
            .iter()
            .map(|(n, v)| prometheus_wal::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn series_the_filters_leave_out_are_never_resolved_and_counted_once() {
        let mut cache = SeriesCache::default();
        cache.set_filter(SeriesFilter::from_flags(&[r#"{job="node"}"#.into()], &[]).unwrap());
        cache.insert(1, labels(&[("__name__", "up"), ("job", "node")]), 0);
        cache.insert(
            2,
            labels(&[("__name__", "up"), ("job", "prom"), ("x", "y")]),
            0,
        );
        let kept = cache.get_mut(1).unwrap();
        assert!(matches!(kept.state, SeriesState::New));
        assert_eq!(kept.filtered_sample(), None);
        let left_out = cache.get_mut(2).unwrap();
        assert!(!left_out.needs_resolution(Instant::now()));
        assert_eq!(left_out.labels, labels(&[("__name__", "up")]));
        assert_eq!(left_out.filtered_sample(), Some(true));
        assert_eq!(left_out.filtered_sample(), Some(false));
    }

    #[test]
    fn series_matching_an_aggregate_get_a_tracker_even_when_filtered() {
        use crate::retrieval::aggregator::AggregatedCounterConfig;
        use crate::retrieval::filter::Selector;
        let mut cache = SeriesCache::default();
        cache.set_filter(SeriesFilter::from_flags(&["up".into()], &[]).unwrap());
        cache.set_aggregator(Arc::new(CounterAggregator::new(
            vec![AggregatedCounterConfig {
                metric: "all".into(),
                help: String::new(),
                filters: vec![Selector::parse("requests_total").unwrap()],
            }],
            "p",
        )));
        cache.insert(1, labels(&[("__name__", "requests_total")]), 0);
        cache.insert(2, labels(&[("__name__", "up")]), 0);
        let e = cache.get_mut(1).unwrap();
        assert!(e.tracker.is_some());
        assert!(matches!(e.state, SeriesState::Filtered { .. }));
        assert!(cache.get_mut(2).unwrap().tracker.is_none());
    }

    #[test]
    fn a_series_record_read_again_keeps_a_resolved_series() {
        // A checkpoint read again after a truncation repeats the series records of series
        // already known: their counter baselines and delivery state must survive it.
        let mut cache = SeriesCache::default();
        let up = labels(&[("__name__", "up"), ("job", "node")]);
        cache.insert(1, up.clone(), 2);
        let mut counter = CounterState::default();
        assert_eq!(
            counter.adjust(1000, 5.0),
            Err(crate::retrieval::convert::Skipped::Baseline)
        );
        cache.get_mut(1).unwrap().state = SeriesState::Resolved {
            series: crate::retrieval::resolve::ResolvedSeries {
                prototype: Arc::new(crate::export::SeriesPrototype::new(
                    "t/up".into(),
                    &[],
                    "generic_task",
                    &[],
                    crate::export::PointKind::CumulativeDouble,
                )),
                conversion: crate::retrieval::resolve::Conversion::Cumulative,
                truncate: false,
            },
            counter,
        };
        cache.insert(1, up.clone(), 7);
        let e = cache.get_mut(1).unwrap();
        assert_eq!(e.segment, 7);
        let SeriesState::Resolved { counter, .. } = &e.state else {
            panic!("resolution lost: {:?}", e.state);
        };
        assert_eq!(*counter, {
            let mut c = CounterState::default();
            let _ = c.adjust(1000, 5.0);
            c
        });
        // Other labels under the same ref: a different series, starting afresh.
        cache.insert(1, labels(&[("__name__", "up"), ("job", "other")]), 8);
        assert!(matches!(cache.get_mut(1).unwrap().state, SeriesState::New));
    }

    #[test]
    fn a_new_series_record_resets_the_entry() {
        let mut cache = SeriesCache::default();
        cache.insert(1, Labels::new(), 0);
        cache
            .get_mut(1)
            .unwrap()
            .mark_unresolved(Some(DropReason::MetadataNotFound), Instant::now());
        cache.insert(1, Labels::new(), 3);
        let e = cache.get_mut(1).unwrap();
        assert!(matches!(e.state, SeriesState::New));
        assert_eq!(e.segment, 3);
        assert_eq!(cache.len(), 1);
    }
}
