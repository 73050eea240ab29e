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
use prometheus_wal::{Label, Labels};

use super::aggregator::{CounterAggregator, Tracker};
use super::convert::CounterState;
use super::resolve::ResolvedSeries;
use crate::filter::SeriesFilter;
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

/// A label set packed into one allocation (`u32` length, bytes, for each name and value in
/// order): a series record's labels as kept until the series resolves, about a third of the
/// memory of separately allocated strings. Emptied once the series is resolved, as nothing
/// needs them any more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactLabels(Box<[u8]>);

impl CompactLabels {
    /// Packs `labels`.
    pub fn new(labels: &[Label]) -> CompactLabels {
        let len: usize = labels
            .iter()
            .map(|l| 8 + l.name.len() + l.value.len())
            .sum();
        let mut buf = Vec::with_capacity(len);
        for l in labels {
            for s in [&l.name, &l.value] {
                buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
        CompactLabels(buf.into_boxed_slice())
    }

    /// `(name, value)` pairs in their order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest: &[u8] = &self.0;
        let mut next = move || -> Option<&str> {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let s = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
            rest = &rest[4 + len..];
            Some(s)
        };
        std::iter::from_fn(move || Some((next()?, next()?)))
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The labels, unpacked.
    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes held.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

/// One WAL series.
#[derive(Debug)]
pub struct SeriesEntry {
    /// Prometheus label set (packed); only `__name__` for filtered series, and nothing once
    /// the series is resolved.
    pub labels: CompactLabels,
    /// Identity of the full label set (kept when the labels are not).
    pub labels_hash: u64,
    /// Segment of the series record (for garbage collection after checkpoints).
    pub segment: u64,
    /// Resolution state.
    pub state: SeriesState,
    /// The aggregated counters the series feeds, if any (boxed: few series have one).
    pub tracker: Option<Box<Tracker>>,
    /// Delivery state once resolved: its id in the tracker's slab, which the series' queued
    /// points carry so that the shard sending them records into it.
    pub delivery: Option<crate::progress::AckId>,
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

/// Identity of a label set across runs and records (a WAL series ref is only meaningful with
/// its labels).
pub fn labels_hash(labels: &[Label]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xfe]);
    }
    h.digest()
}

/// Refs per page of the cache.
const PAGE_BITS: u32 = 8;
const PAGE_LEN: usize = 1 << PAGE_BITS;

/// Entries for `PAGE_LEN` consecutive refs.
#[derive(Debug)]
struct Page {
    slots: Box<[Option<SeriesEntry>]>,
    live: usize,
}

/// All series by WAL ref.
///
/// Prometheus numbers series consecutively and a scrape writes its samples in the order its
/// series were created, so entries are stored in pages of consecutive refs: a sample record's
/// lookups walk memory in order (the hardware prefetches), the small page table stays in cache,
/// and there is no per-entry hashing or load-factor slack. A page is freed when its last series
/// is removed.
#[derive(Debug, Default)]
pub struct SeriesCache {
    pages: AHashMap<u64, Page>,
    live: usize,
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
        let hash = labels_hash(&labels);
        if let Some(known) = self.get_mut(series_ref)
            && matches!(known.state, SeriesState::Resolved { .. })
            && known.labels_hash == hash
        {
            known.segment = segment;
            return;
        }
        let tracker = self
            .aggregator
            .as_ref()
            .and_then(|a| a.tracker_for_series(&labels, hash))
            .map(Box::new);
        let state = if self.filter.matches(&labels) {
            SeriesState::New
        } else {
            // Only the name is kept, to count the series.
            labels.retain(|l| l.name == "__name__");
            SeriesState::Filtered { counted: false }
        };
        let page = self
            .pages
            .entry(series_ref >> PAGE_BITS)
            .or_insert_with(|| Page {
                slots: (0..PAGE_LEN).map(|_| None).collect(),
                live: 0,
            });
        let slot = &mut page.slots[(series_ref as usize) & (PAGE_LEN - 1)];
        if slot.is_none() {
            page.live += 1;
            self.live += 1;
        }
        *slot = Some(SeriesEntry {
            labels: CompactLabels::new(&labels),
            labels_hash: hash,
            segment,
            state,
            tracker,
            delivery: None,
            resume_after_t: i64::MIN,
        });
    }

    /// Every series feeding aggregated counters: its labels hash and its tracker.
    pub fn aggregate_inputs(&self) -> impl Iterator<Item = (u64, &Tracker)> {
        self.pages
            .values()
            .flat_map(|page| page.slots.iter().flatten())
            .filter_map(|entry| Some((entry.labels_hash, entry.tracker.as_deref()?)))
    }

    /// Keeps the entries for which `keep` holds; returns the refs removed.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &SeriesEntry) -> bool) -> Vec<u64> {
        let mut removed = Vec::new();
        self.pages.retain(|page_no, page| {
            for (i, slot) in page.slots.iter_mut().enumerate() {
                let series_ref = (page_no << PAGE_BITS) | i as u64;
                if slot.as_ref().is_some_and(|e| !keep(series_ref, e)) {
                    *slot = None;
                    page.live -= 1;
                    removed.push(series_ref);
                }
            }
            page.live > 0
        });
        self.live -= removed.len();
        removed
    }

    /// The entry for a ref.
    pub fn get_mut(&mut self, series_ref: u64) -> Option<&mut SeriesEntry> {
        self.pages.get_mut(&(series_ref >> PAGE_BITS))?.slots
            [(series_ref as usize) & (PAGE_LEN - 1)]
            .as_mut()
    }

    /// Asks the CPU to start loading what converting a sample of `series_ref` will read (the
    /// series' prototype, a separate allocation), so that the load overlaps with the samples
    /// before it. Only a hint: does nothing where it is not supported.
    pub fn prefetch(&self, series_ref: u64) {
        let Some(Some(entry)) = self
            .pages
            .get(&(series_ref >> PAGE_BITS))
            .map(|p| &p.slots[(series_ref as usize) & (PAGE_LEN - 1)])
        else {
            return;
        };
        if let SeriesState::Resolved { series, .. } = &entry.state {
            crate::prefetch::prefetch(Arc::as_ptr(&series.prototype));
        }
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
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
        assert_eq!(left_out.labels.to_labels(), labels(&[("__name__", "up")]));
        assert_eq!(left_out.filtered_sample(), Some(true));
        assert_eq!(left_out.filtered_sample(), Some(false));
    }

    #[test]
    fn series_matching_an_aggregate_get_a_tracker_even_when_filtered() {
        use crate::filter::Selector;
        use crate::retrieval::aggregator::AggregatedCounterConfig;
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
    fn compact_labels_hold_what_they_were_given() {
        let l = labels(&[("__name__", "up"), ("empty", ""), ("job", "nöde")]);
        let c = CompactLabels::new(&l);
        assert_eq!(c.to_labels(), l);
        assert_eq!(c.get("job"), Some("nöde"));
        assert_eq!(c.get("empty"), Some(""));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.heap_bytes(), 6 * 4 + 8 + 2 + 5 + 3 + 5);
        assert!(CompactLabels::new(&[]).is_empty());
    }

    #[test]
    fn pages_hold_any_ref_and_are_freed_when_empty() {
        let mut cache = SeriesCache::default();
        let refs = [0, 1, 255, 256, 1 << 40, u64::MAX];
        for r in refs {
            cache.insert(r, labels(&[("__name__", "m")]), r % 7);
        }
        assert_eq!(cache.len(), refs.len());
        for r in refs {
            assert_eq!(cache.get_mut(r).unwrap().segment, r % 7, "ref {r}");
        }
        assert!(cache.get_mut(2).is_none());
        assert!(cache.get_mut(257).is_none());
        let mut removed = cache.retain(|r, _| r == 1 || r == u64::MAX);
        removed.sort();
        assert_eq!(removed, [0, 255, 256, 1 << 40]);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.pages.len(), 2, "empty pages are freed");
        assert!(cache.get_mut(256).is_none());
        assert!(cache.get_mut(1).is_some());
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
                prototype: Arc::new(crate::model::SeriesPrototype::new(
                    "t/up".into(),
                    &[],
                    "generic_task",
                    &[],
                    crate::model::PointKind::CumulativeDouble,
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
