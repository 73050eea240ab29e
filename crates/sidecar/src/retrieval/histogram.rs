//! Classic Prometheus histograms to Cloud Monitoring distributions: [`RunCollector`] gathers the
//! samples a scrape writes next to each other for one histogram (`_bucket` per `le` bound,
//! `_sum`, `_count`, one timestamp) into a [`HistogramRun`], and [`HistogramBaselines`] turns
//! runs into cumulative distribution points.
//!
//! Must never look series up, queue points, or decide ordering between points (the converter's
//! ordering guard does that for every kind alike).

use std::sync::Arc;

use ahash::AHashMap;

use super::resolve::HistogramPart;
use crate::model::{Buckets, Distribution, SeriesPrototype};
use crate::progress::{SavedClassic, SavedSnapshot};
use crate::stats::HistogramDrop;

/// The samples of one histogram at one timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRun {
    /// The output series (every part of one histogram resolves to the same identity).
    pub prototype: Arc<SeriesPrototype>,
    /// Timestamp shared by every part (ms).
    pub t: i64,
    /// `_count` value, if its sample was in the run.
    pub count: Option<f64>,
    /// `_sum` value, if its sample was in the run.
    pub sum: Option<f64>,
    /// `(le, cumulative count)` per `_bucket` sample, in arrival order.
    pub buckets: Vec<(f64, f64)>,
    /// Start time of the values (ms; 0 when not known), from samples that carry one.
    pub st: i64,
}

impl HistogramRun {
    fn new(prototype: Arc<SeriesPrototype>, t: i64) -> HistogramRun {
        HistogramRun {
            prototype,
            t,
            count: None,
            sum: None,
            buckets: Vec::new(),
            st: 0,
        }
    }

    /// Adds one part; false (and nothing added) when the run already has that part, which
    /// means the sample belongs to another run.
    fn add(&mut self, part: HistogramPart, v: f64) -> bool {
        match part {
            HistogramPart::Count if self.count.is_none() => self.count = Some(v),
            HistogramPart::Sum if self.sum.is_none() => self.sum = Some(v),
            HistogramPart::Bucket(le) if !self.buckets.iter().any(|(b, _)| *b == le) => {
                self.buckets.push((le, v))
            }
            _ => return false,
        }
        true
    }
}

/// Gathers adjacent histogram samples into runs.
///
/// The sample loop feeds every histogram part sample with [`RunCollector::add`] and calls
/// [`RunCollector::finish`] when a sample of anything else arrives and at the end of each WAL
/// record: a histogram's parts are only joined when they are adjacent in one record, as the
/// original required (a scrape writes them that way). Samples of series that are not resolved
/// neither join nor end a run.
#[derive(Debug, Default)]
pub struct RunCollector {
    open: Option<HistogramRun>,
}

impl RunCollector {
    /// Adds a sample of a histogram part at `t`, with start time `st` (0 when not known).
    /// Returns the previous run when this sample cannot belong to it (another histogram, another
    /// timestamp, or a part it already has).
    pub fn add(
        &mut self,
        prototype: &Arc<SeriesPrototype>,
        part: HistogramPart,
        (st, t): (i64, i64),
        v: f64,
    ) -> Option<HistogramRun> {
        if let Some(run) = &mut self.open
            && run.t == t
            && run.prototype.hash == prototype.hash
            && run.add(part, v)
        {
            run.st = run.st.max(st);
            return None;
        }
        let mut run = HistogramRun::new(prototype.clone(), t);
        run.add(part, v);
        run.st = st;
        self.open.replace(run)
    }

    /// Ends the open run, if any.
    pub fn finish(&mut self) -> Option<HistogramRun> {
        self.open.take()
    }
}

/// Why a run produced no point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramSkip {
    /// The run became the histogram's (new) baseline: its first run, or one with a new bucket.
    Baseline,
    /// Not after the last run (read again from a checkpoint, or out of order): skipped without
    /// touching the baseline, whatever its values.
    OutOfOrder,
    /// Cloud Monitoring would refuse the distribution.
    Invalid(HistogramDrop),
}

/// What a histogram's points are measured from.
#[derive(Debug, Clone)]
struct HistogramState {
    /// Start of the current interval (ms).
    start_ms: i64,
    /// Subtracted from `_count`, `_sum` and each bucket; zero after a reset.
    base: Snapshot,
    /// The last run's values, to detect resets.
    previous: Snapshot,
    /// The last run's time (ms); runs not after it are skipped.
    last_t: i64,
}

/// Values of one run; buckets sorted by bound.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

impl Snapshot {
    fn of(run: &HistogramRun, count: f64) -> Snapshot {
        Snapshot {
            count,
            sum: run.sum.unwrap_or(0.0),
            buckets: run.buckets.clone(),
        }
    }

    fn saved(&self) -> SavedSnapshot {
        SavedSnapshot {
            count: self.count,
            sum: self.sum,
            buckets: self.buckets.clone(),
        }
    }

    fn restored(saved: &SavedSnapshot) -> Snapshot {
        let mut buckets = saved.buckets.clone();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Snapshot {
            count: saved.count,
            sum: saved.sum,
            buckets,
        }
    }

    fn bucket(&self, le: f64) -> Option<f64> {
        self.buckets
            .binary_search_by(|(b, _)| b.total_cmp(&le))
            .ok()
            .map(|i| self.buckets[i].1)
    }
}

/// Baselines of every histogram, by output series hash.
///
/// The first run of a histogram is its baseline and later runs are measured from it. A count or
/// bucket going down resets the whole histogram together (so bucket counts keep adding up), and
/// a new bucket bound starts a new baseline. A run Cloud Monitoring would refuse is reported
/// with its reason instead of becoming a point.
#[derive(Debug, Default)]
pub struct HistogramBaselines {
    states: AHashMap<u64, HistogramState>,
}

impl HistogramBaselines {
    /// The state of a histogram, to save with its delivery.
    pub fn saved(&self, hash: u64) -> Option<SavedClassic> {
        self.states.get(&hash).map(|s| SavedClassic {
            start_ms: s.start_ms,
            base: s.base.saved(),
            previous: s.previous.saved(),
        })
    }

    /// Continues a histogram from the state a previous run saved.
    pub fn restore(&mut self, hash: u64, saved: &SavedClassic) {
        self.states.insert(
            hash,
            HistogramState {
                start_ms: saved.start_ms,
                base: Snapshot::restored(&saved.base),
                previous: Snapshot::restored(&saved.previous),
                // The reader skips the runs the previous run delivered.
                last_t: i64::MIN,
            },
        );
    }

    /// The interval start and distribution for a finished run, or why there is none. Baseline
    /// state is updated even when the distribution is then refused, as for counters.
    pub fn convert(&mut self, mut run: HistogramRun) -> Result<(i64, Distribution), HistogramSkip> {
        let count = checked(&mut run)?;
        let snapshot = Snapshot::of(&run, count);
        let known = self.states.get(&run.prototype.hash);
        if known.is_some_and(|s| run.t <= s.last_t) {
            return Err(HistogramSkip::OutOfOrder);
        }
        if run.st > 0 && run.st < run.t && known.is_none_or(|s| s.start_ms != run.st) {
            // A start time: the interval starts there and the run is sent as it is.
            let zero = Snapshot {
                buckets: snapshot.buckets.iter().map(|(le, _)| (*le, 0.0)).collect(),
                ..Snapshot::default()
            };
            let point = distribution(&snapshot);
            self.states.insert(
                run.prototype.hash,
                HistogramState {
                    start_ms: run.st,
                    base: zero,
                    previous: snapshot,
                    last_t: run.t,
                },
            );
            return point.map(|d| (run.st, d));
        }
        let state = match self.states.get_mut(&run.prototype.hash) {
            Some(state) => state,
            None => {
                self.states.insert(
                    run.prototype.hash,
                    HistogramState {
                        start_ms: run.t,
                        base: snapshot.clone(),
                        previous: snapshot,
                        last_t: run.t,
                    },
                );
                return Err(HistogramSkip::Baseline);
            }
        };
        if run.t <= state.last_t {
            return Err(HistogramSkip::OutOfOrder);
        }
        state.last_t = run.t;
        // A new bucket bound: the whole histogram starts over from this run, so later points
        // add up.
        if run
            .buckets
            .iter()
            .any(|(le, _)| state.base.bucket(*le).is_none())
        {
            *state = HistogramState {
                start_ms: run.t,
                base: snapshot.clone(),
                previous: snapshot,
                last_t: run.t,
            };
            return Err(HistogramSkip::Baseline);
        }
        let went_down = count < state.previous.count
            || run
                .buckets
                .iter()
                .any(|(le, v)| state.previous.bucket(*le).is_some_and(|p| *v < p));
        if went_down {
            // Same rule as counters: the new interval starts 1 ms before the sample that went
            // down, and values count from zero.
            state.start_ms = run.t - 1;
            state.base = Snapshot {
                count: 0.0,
                sum: 0.0,
                buckets: state
                    .base
                    .buckets
                    .iter()
                    .map(|(le, _)| (*le, 0.0))
                    .collect(),
            };
        }
        let adjusted = Snapshot {
            count: count - state.base.count,
            sum: snapshot.sum - state.base.sum,
            buckets: run
                .buckets
                .iter()
                .map(|(le, v)| (*le, v - state.base.bucket(*le).unwrap_or(0.0)))
                .collect(),
        };
        state.previous = snapshot;
        let start = state.start_ms;
        distribution(&adjusted).map(|d| (start, d))
    }
}

/// The `_count` of a run, its buckets sorted by bound, or why Cloud Monitoring would refuse it.
fn checked(run: &mut HistogramRun) -> Result<f64, HistogramSkip> {
    let count = run
        .count
        .ok_or(HistogramSkip::Invalid(HistogramDrop::MissingCount))?;
    run.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if run.buckets.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(HistogramSkip::Invalid(HistogramDrop::DuplicateBounds));
    }
    if !run.buckets.iter().any(|(le, _)| le.is_finite()) {
        return Err(HistogramSkip::Invalid(HistogramDrop::NoFiniteBounds));
    }
    Ok(count)
}

/// The distribution of a gauge histogram's run, as it is.
pub fn gauge_distribution(mut run: HistogramRun) -> Result<Distribution, HistogramDrop> {
    let as_drop = |e| match e {
        HistogramSkip::Invalid(reason) => reason,
        // `checked` and `distribution` only refuse.
        HistogramSkip::Baseline | HistogramSkip::OutOfOrder => HistogramDrop::CountMismatch,
    };
    let count = checked(&mut run).map_err(as_drop)?;
    distribution(&Snapshot::of(&run, count)).map_err(as_drop)
}

/// Converts cumulative buckets (sorted by bound, at least one finite) to a distribution with
/// explicit bounds: the finite bounds, one count per bucket, the `+Inf` bucket (or what `_count`
/// leaves above the last bound) as overflow. Counts are truncated toward zero, as the original.
fn distribution(h: &Snapshot) -> Result<Distribution, HistogramSkip> {
    let count = h.count.trunc() as i64;
    let mean = if count > 0 { h.sum / h.count } else { 0.0 };
    let mut bounds = Vec::with_capacity(h.buckets.len());
    let mut bucket_counts = Vec::with_capacity(h.buckets.len() + 1);
    let mut ssd = 0.0;
    let (mut lower, mut previous) = (0.0, 0i64);
    for &(le, cumulative) in &h.buckets {
        let cumulative = cumulative.trunc() as i64;
        let in_bucket = cumulative - previous;
        if in_bucket < 0 {
            return Err(HistogramSkip::Invalid(HistogramDrop::DecreasingBuckets));
        }
        // The +Inf bucket has no upper bound: its midpoint is taken as the last finite bound.
        let upper = if le.is_finite() { le } else { lower };
        let mid = (lower + upper) / 2.0;
        ssd += in_bucket as f64 * (mid - mean) * (mid - mean);
        if le.is_finite() {
            bounds.push(le);
        }
        bucket_counts.push(in_bucket);
        lower = upper;
        previous = cumulative;
    }
    // Without a +Inf bucket, the overflow bucket holds what `_count` has beyond the last bound,
    // so there is always one count more than bounds, as the API's bucket layout requires.
    if bucket_counts.len() == bounds.len() {
        let overflow = count - previous;
        if overflow < 0 {
            return Err(HistogramSkip::Invalid(HistogramDrop::CountMismatch));
        }
        ssd += overflow as f64 * (lower - mean) * (lower - mean);
        bucket_counts.push(overflow);
    }
    if bucket_counts.iter().sum::<i64>() != count {
        return Err(HistogramSkip::Invalid(HistogramDrop::CountMismatch));
    }
    Ok(Distribution {
        count,
        mean,
        sum_of_squared_deviation: ssd,
        buckets: Buckets::Explicit(bounds),
        bucket_counts,
        exemplars: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PointKind;

    const INF: f64 = f64::INFINITY;

    fn proto(name: &str) -> Arc<SeriesPrototype> {
        Arc::new(SeriesPrototype::new(
            format!("t/{name}"),
            &[],
            "generic_task",
            &[],
            PointKind::CumulativeDistribution,
        ))
    }

    fn run(t: i64, count: Option<f64>, sum: f64, buckets: &[(f64, f64)]) -> HistogramRun {
        HistogramRun {
            prototype: proto("h"),
            t,
            count,
            sum: Some(sum),
            buckets: buckets.to_vec(),
            st: 0,
        }
    }

    /// A histogram with bounds 1 and 2 whose cumulative bucket values are `c1 ≤ c2 ≤ total`.
    fn h12(t: i64, c1: f64, c2: f64, total: f64, sum: f64) -> HistogramRun {
        run(t, Some(total), sum, &[(2.0, c2), (INF, total), (1.0, c1)])
    }

    #[test]
    fn first_run_is_the_baseline_and_later_runs_count_from_it() {
        let mut b = HistogramBaselines::default();
        assert_eq!(
            b.convert(h12(1000, 1.0, 2.0, 3.0, 4.0)),
            Err(HistogramSkip::Baseline)
        );
        let (start, d) = b.convert(h12(2000, 3.0, 5.0, 8.0, 14.0)).unwrap();
        assert_eq!(start, 1000);
        assert_eq!(d.count, 5);
        assert_eq!(d.mean, 2.0);
        assert_eq!(d.buckets, Buckets::Explicit(vec![1.0, 2.0]));
        // Increases of the cumulative buckets: ≤1: 2, ≤2: 3, +Inf: 5.
        assert_eq!(d.bucket_counts, [2, 1, 2]);
    }

    #[test]
    fn a_start_time_starts_the_interval_and_sends_the_run_as_it_is() {
        let mut b = HistogramBaselines::default();
        let with_st = |st, run: HistogramRun| HistogramRun { st, ..run };
        let (start, d) = b
            .convert(with_st(500, h12(1000, 1.0, 2.0, 3.0, 4.0)))
            .unwrap();
        assert_eq!(
            (start, d.count, &d.bucket_counts[..]),
            (500, 3, &[1, 1, 1][..])
        );
        let (start, d) = b
            .convert(with_st(500, h12(2000, 2.0, 3.0, 4.0, 5.0)))
            .unwrap();
        assert_eq!((start, d.count), (500, 4));
        let (start, d) = b
            .convert(with_st(2500, h12(3000, 2.0, 3.0, 5.0, 5.0)))
            .unwrap();
        assert_eq!((start, d.count), (2500, 5));
        let (start, d) = b.convert(h12(4000, 2.0, 3.0, 6.0, 5.0)).unwrap();
        assert_eq!((start, d.count), (2500, 6));
    }

    #[test]
    fn an_older_run_leaves_the_baseline_alone() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 1.0, 2.0, 3.0, 4.0));
        assert!(b.convert(h12(3000, 3.0, 5.0, 8.0, 14.0)).is_ok());
        // Read again from a checkpoint: lower counts, but older, so not a reset.
        assert_eq!(
            b.convert(h12(2000, 2.0, 3.0, 5.0, 8.0)),
            Err(HistogramSkip::OutOfOrder)
        );
        let (start, d) = b.convert(h12(4000, 4.0, 6.0, 9.0, 15.0)).unwrap();
        assert_eq!((start, d.count), (1000, 6));
    }

    #[test]
    fn bucket_conversion_mean_and_squared_deviation_follow_the_original() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 0.0, 0.0, 0.0, 0.0));
        // 1 observation ≤ 1, 2 in (1, 2], 1 above 2; sum 6 → mean 1.5.
        let (_, d) = b.convert(h12(2000, 1.0, 3.0, 4.0, 6.0)).unwrap();
        assert_eq!(d.count, 4);
        assert_eq!(d.mean, 1.5);
        assert_eq!(d.bucket_counts, [1, 2, 1]);
        // Midpoints 0.5, 1.5 and (for +Inf) the last bound, 2.
        let expected =
            (0.5f64 - 1.5).powi(2) + 2.0 * (1.5f64 - 1.5).powi(2) + (2.0f64 - 1.5).powi(2);
        assert_eq!(d.sum_of_squared_deviation, expected);
    }

    #[test]
    fn zero_observations_give_zero_mean_and_deviation() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 1.0, 1.0, 1.0, 5.0));
        let (_, d) = b.convert(h12(2000, 1.0, 1.0, 1.0, 5.0)).unwrap();
        assert_eq!((d.count, d.mean, d.sum_of_squared_deviation), (0, 0.0, 0.0));
        assert_eq!(d.bucket_counts, [0, 0, 0]);
    }

    #[test]
    fn only_a_plus_inf_bucket_is_refused() {
        let mut b = HistogramBaselines::default();
        let r = run(1000, Some(1.0), 1.0, &[(INF, 1.0)]);
        assert_eq!(
            b.convert(r),
            Err(HistogramSkip::Invalid(HistogramDrop::NoFiniteBounds))
        );
        let r = run(1000, Some(1.0), 1.0, &[]);
        assert_eq!(
            b.convert(r),
            Err(HistogramSkip::Invalid(HistogramDrop::NoFiniteBounds))
        );
    }

    #[test]
    fn no_count_no_point() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 1.0, 2.0, 3.0, 4.0));
        let r = run(2000, None, 5.0, &[(1.0, 2.0), (INF, 4.0)]);
        assert_eq!(
            b.convert(r),
            Err(HistogramSkip::Invalid(HistogramDrop::MissingCount))
        );
    }

    #[test]
    fn a_new_bucket_skips_once_then_counts_from_there() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(run(1000, Some(2.0), 2.0, &[(1.0, 1.0), (INF, 2.0)]));
        let (start, _) = b
            .convert(run(2000, Some(3.0), 3.0, &[(1.0, 2.0), (INF, 3.0)]))
            .unwrap();
        assert_eq!(start, 1000);
        let with_new = |t, c1, c2, total: f64| {
            run(t, Some(total), total, &[(1.0, c1), (2.0, c2), (INF, total)])
        };
        assert_eq!(
            b.convert(with_new(3000, 2.0, 3.0, 4.0)),
            Err(HistogramSkip::Baseline)
        );
        let (start, d) = b.convert(with_new(4000, 3.0, 5.0, 7.0)).unwrap();
        assert_eq!(start, 3000);
        assert_eq!(d.count, 3);
        assert_eq!(d.buckets, Buckets::Explicit(vec![1.0, 2.0]));
        assert_eq!(d.bucket_counts, [1, 1, 1]);
    }

    #[test]
    fn a_bucket_disappearing_does_not_skip() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 1.0, 2.0, 3.0, 3.0));
        let (_, d) = b
            .convert(run(2000, Some(5.0), 5.0, &[(2.0, 3.0), (INF, 5.0)]))
            .unwrap();
        assert_eq!(d.buckets, Buckets::Explicit(vec![2.0]));
        assert_eq!(d.bucket_counts, [1, 1]);
    }

    #[test]
    fn a_reset_in_the_middle_starts_a_new_interval_1ms_before() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 5.0, 8.0, 10.0, 20.0));
        let (start, d) = b.convert(h12(2000, 6.0, 9.0, 12.0, 24.0)).unwrap();
        assert_eq!((start, d.count), (1000, 2));
        // The target restarted: `_count` went down while bucket ≤2 did not; the whole
        // histogram resets together.
        let (start, d) = b.convert(h12(3000, 1.0, 9.0, 9.0, 9.0)).unwrap();
        assert_eq!(start, 2999);
        assert_eq!(d.count, 9);
        assert_eq!(d.bucket_counts, [1, 8, 0]);
        let (start, d) = b.convert(h12(4000, 2.0, 10.0, 11.0, 12.0)).unwrap();
        assert_eq!(start, 2999);
        assert_eq!(d.count, 11);
        assert_eq!(d.bucket_counts, [2, 8, 1]);
    }

    #[test]
    fn a_bucket_going_down_is_a_reset_too() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 5.0, 8.0, 10.0, 20.0));
        let (start, d) = b.convert(h12(2000, 1.0, 8.0, 10.0, 20.0)).unwrap();
        assert_eq!(start, 1999);
        assert_eq!(d.bucket_counts, [1, 7, 2]);
    }

    #[test]
    fn decreasing_cumulative_buckets_are_refused() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 0.0, 0.0, 0.0, 0.0));
        assert_eq!(
            b.convert(h12(2000, 3.0, 2.0, 4.0, 4.0)),
            Err(HistogramSkip::Invalid(HistogramDrop::DecreasingBuckets))
        );
    }

    #[test]
    fn buckets_not_adding_up_to_the_count_are_refused() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 0.0, 0.0, 0.0, 0.0));
        // +Inf bucket says 4 observations, _count says 5 (a racy client).
        let r = run(2000, Some(5.0), 4.0, &[(1.0, 1.0), (2.0, 2.0), (INF, 4.0)]);
        assert_eq!(
            b.convert(r),
            Err(HistogramSkip::Invalid(HistogramDrop::CountMismatch))
        );
    }

    #[test]
    fn without_plus_inf_the_overflow_is_what_count_leaves() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(run(1000, Some(0.0), 0.0, &[(1.0, 0.0)]));
        let (_, d) = b.convert(run(2000, Some(3.0), 3.0, &[(1.0, 1.0)])).unwrap();
        assert_eq!(d.buckets, Buckets::Explicit(vec![1.0]));
        assert_eq!(d.bucket_counts, [1, 2]);
        let _ = b.convert(run(3000, Some(4.0), 3.0, &[(1.0, 1.0)]));
        assert_eq!(
            b.convert(run(4000, Some(4.0), 3.0, &[(1.0, 5.0)])),
            Err(HistogramSkip::Invalid(HistogramDrop::CountMismatch))
        );
    }

    #[test]
    fn duplicate_bounds_are_refused() {
        let mut b = HistogramBaselines::default();
        // `le="1"` and `le="1.0"` parse to the same bound.
        let r = run(1000, Some(2.0), 2.0, &[(1.0, 1.0), (1.0, 1.0), (INF, 2.0)]);
        assert_eq!(
            b.convert(r),
            Err(HistogramSkip::Invalid(HistogramDrop::DuplicateBounds))
        );
    }

    #[test]
    fn histograms_are_tracked_separately() {
        let mut b = HistogramBaselines::default();
        let _ = b.convert(h12(1000, 1.0, 2.0, 3.0, 4.0));
        let mut other = h12(1000, 1.0, 2.0, 3.0, 4.0);
        other.prototype = proto("other");
        assert_eq!(b.convert(other), Err(HistogramSkip::Baseline));
    }

    #[test]
    fn adjacent_parts_with_one_timestamp_form_one_run() {
        let (a, other) = (proto("a"), proto("b"));
        let mut c = RunCollector::default();
        assert_eq!(c.add(&a, HistogramPart::Bucket(1.0), (0, 10), 1.0), None);
        assert_eq!(c.add(&a, HistogramPart::Bucket(INF), (0, 10), 2.0), None);
        assert_eq!(c.add(&a, HistogramPart::Sum, (0, 10), 3.0), None);
        assert_eq!(c.add(&a, HistogramPart::Count, (0, 10), 2.0), None);
        // Another histogram ends the run.
        let done = c.add(&other, HistogramPart::Count, (0, 10), 7.0).unwrap();
        assert_eq!(done.count, Some(2.0));
        assert_eq!(done.sum, Some(3.0));
        assert_eq!(done.buckets, [(1.0, 1.0), (INF, 2.0)]);
        // Another timestamp ends the run.
        let done = c.add(&other, HistogramPart::Sum, (0, 11), 1.0).unwrap();
        assert_eq!((done.t, done.count, done.sum), (10, Some(7.0), None));
        // A part the run already has ends it (two series collapsing to one output series).
        let done = c.add(&other, HistogramPart::Sum, (0, 11), 2.0).unwrap();
        assert_eq!(done.sum, Some(1.0));
        let last = c.finish().unwrap();
        assert_eq!(last.sum, Some(2.0));
        assert_eq!(c.finish(), None);
    }
}
