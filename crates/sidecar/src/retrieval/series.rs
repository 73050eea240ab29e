//! The series cache: every WAL series ref seen, its labels, and what it resolved to.
//!
//! Owns per-series state: the resolution outcome (with a retry schedule for series whose target
//! or metadata is not known yet, so they are retried rather than dropped for good) and the
//! counter baseline. It must never do I/O itself; resolution is driven by the reader.

use std::time::{Duration, Instant};

use ahash::AHashMap;
use prometheus_wal::Labels;

use super::convert::CounterState;
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
}

impl SeriesEntry {
    /// Whether a resolution attempt is due at `now`.
    pub fn needs_resolution(&self, now: Instant) -> bool {
        match &self.state {
            SeriesState::New => true,
            SeriesState::Resolved { .. } => false,
            SeriesState::Unresolved { retry_at, .. } => now >= *retry_at,
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
}

impl SeriesCache {
    /// Stores a series record. A ref seen again (a new series record for it) starts afresh, as
    /// the original does: its labels may have been re-created after Prometheus restarted.
    pub fn insert(&mut self, series_ref: u64, labels: Labels, segment: u64) {
        self.entries.insert(
            series_ref,
            SeriesEntry {
                labels,
                segment,
                state: SeriesState::New,
            },
        );
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
