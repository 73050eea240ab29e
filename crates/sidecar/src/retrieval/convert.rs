//! Sample conversion: one Prometheus sample of a resolved series to one Cloud Monitoring point.
//!
//! Owns the counter baseline and reset rules (the first sample of a cumulative series is its
//! baseline and is not sent; a value going down starts a new interval 1 ms before it; a sample
//! not newer than the last one is skipped without touching the baseline) and the
//! per-series ordering guard (the API accepts only points moving forward in time), for plain
//! samples and for histogram runs (whose baselines live in [`HistogramBaselines`]). It must never
//! look series up or queue anything.

use prometheus_wal::record::CounterResetHint;

use super::histogram::{HistogramBaselines, HistogramRun, HistogramSkip, gauge_distribution};
use super::native::{CustomValues, NativeBaselines, NativeSkip, distribution};
use super::resolve::{Conversion, ResolvedSeries};
use crate::model::LastInterval;
use crate::model::{NativeHistogram, Point, PointKind, PointValue};
use crate::progress::SavedHistogramState;
use crate::stats::HistogramDrop;

/// Baseline of a cumulative series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CounterState {
    /// `None` until the first sample.
    baseline: Option<Baseline>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Baseline {
    /// Start time of the current interval (ms).
    reset_ts: i64,
    /// Value subtracted from samples in the current interval.
    reset_value: f64,
    /// Last sample value, to detect resets.
    previous: f64,
    /// Time of the last sample (ms); samples not after it are skipped.
    last_t: i64,
}

impl CounterState {
    /// Applies the reset rules to a sample: the interval start and the value relative to the
    /// baseline, or [`Skipped::Baseline`] for the first sample. A sample not after the last one
    /// (out of order, or read again from a checkpoint) is [`Skipped::OutOfOrder`] and changes
    /// nothing: its lower value is not a reset.
    pub fn adjust(&mut self, t: i64, v: f64) -> Result<(i64, f64), Skipped> {
        match &mut self.baseline {
            None => {
                self.baseline = Some(Baseline {
                    reset_ts: t,
                    reset_value: v,
                    previous: v,
                    last_t: t,
                });
                Err(Skipped::Baseline)
            }
            Some(b) if t <= b.last_t => Err(Skipped::OutOfOrder),
            Some(b) => {
                if v < b.previous {
                    b.reset_value = 0.0;
                    b.reset_ts = t - 1;
                }
                b.previous = v;
                b.last_t = t;
                Ok((b.reset_ts, v - b.reset_value))
            }
        }
    }

    /// As [`CounterState::adjust`], for a sample carrying its start time `st` (Prometheus' start
    /// timestamps, ms; 0 when not known): the interval starts there and the value is sent as it
    /// is, with no baseline swallowed; a new start time is a new interval. A start not before
    /// the sample cannot be an interval's and is ignored. Later samples without a start time go
    /// on from this interval.
    pub fn adjust_from(&mut self, st: i64, t: i64, v: f64) -> Result<(i64, f64), Skipped> {
        if st <= 0 || st >= t {
            return self.adjust(t, v);
        }
        if let Some(b) = &self.baseline
            && t <= b.last_t
        {
            return Err(Skipped::OutOfOrder);
        }
        self.baseline = Some(Baseline {
            reset_ts: st,
            reset_value: 0.0,
            previous: v,
            last_t: t,
        });
        Ok((st, v))
    }

    /// The baseline as saved in the progress file (`None` before the first sample).
    pub fn saved(&self) -> Option<crate::progress::SavedBaseline> {
        self.baseline.map(|b| crate::progress::SavedBaseline {
            reset_ts: b.reset_ts,
            reset_value: b.reset_value,
            previous: b.previous,
        })
    }

    /// A counter going on from a baseline saved by a previous run, so a restart neither changes
    /// its start time nor swallows a sample as a new baseline.
    pub fn restored(saved: crate::progress::SavedBaseline) -> CounterState {
        CounterState {
            baseline: Some(Baseline {
                reset_ts: saved.reset_ts,
                reset_value: saved.reset_value,
                previous: saved.previous,
                // The reader skips what the previous run delivered (`resume_after_t`).
                last_t: i64::MIN,
            }),
        }
    }
}

/// Why a sample produced no point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// First sample of a cumulative series, kept as its baseline.
    Baseline,
    /// Not after the series' previous point (duplicate or out of order).
    OutOfOrder,
    /// A histogram part: converted with its run by [`Converter::convert_histogram`].
    HistogramPart,
    /// A histogram run Cloud Monitoring would refuse.
    InvalidHistogram(HistogramDrop),
}

/// Converts samples. Each Cloud Monitoring series' last interval is kept in its prototype,
/// which the resolver interns: two Prometheus series mapping to one Cloud Monitoring series
/// share it, so the later one's points are refused rather than sent out of order.
#[derive(Debug, Default)]
pub struct Converter {
    /// Baselines of classic histograms.
    histograms: HistogramBaselines,
    /// Baselines of cumulative native histograms.
    natives: NativeBaselines,
}

impl Converter {
    /// The point for sample `(t, v)` (not NaN) of `series`.
    pub fn convert(
        &mut self,
        series: &ResolvedSeries,
        counter: &mut CounterState,
        t: i64,
        v: f64,
    ) -> Result<Point, Skipped> {
        self.convert_from(series, counter, 0, t, v)
    }

    /// The point for sample `(t, v)` (not NaN) of `series` with start time `st` (0 when not
    /// known; see [`CounterState::adjust_from`]).
    pub fn convert_from(
        &mut self,
        series: &ResolvedSeries,
        counter: &mut CounterState,
        st: i64,
        t: i64,
        v: f64,
    ) -> Result<Point, Skipped> {
        let (start, value) = match series.conversion {
            Conversion::Gauge => (None, v),
            Conversion::Cumulative => {
                let (start, value) = counter.adjust_from(st, t, v)?;
                (Some(start), value)
            }
            Conversion::Histogram(_) => return Err(Skipped::HistogramPart),
            Conversion::Native => {
                return Err(Skipped::InvalidHistogram(HistogramDrop::KindMismatch));
            }
        };
        check_order(&series.prototype.last_interval, (start.unwrap_or(0), t))?;
        let value = match series.prototype.kind {
            PointKind::GaugeDouble | PointKind::CumulativeDouble => PointValue::Double(value),
            PointKind::GaugeInt64 | PointKind::CumulativeInt64 if series.truncate => {
                PointValue::Int64(value.trunc() as i64)
            }
            PointKind::GaugeInt64 | PointKind::CumulativeInt64 => {
                PointValue::Int64(value.round() as i64)
            }
            PointKind::CumulativeDistribution | PointKind::GaugeDistribution => {
                return Err(Skipped::HistogramPart);
            }
        };
        Ok(Point {
            start_ms: start,
            end_ms: t,
            value,
        })
    }

    /// The distribution point of a finished histogram run.
    pub fn convert_histogram(&mut self, run: HistogramRun) -> Result<Point, Skipped> {
        let (prototype, t) = (run.prototype.clone(), run.t);
        let (start, distribution) = self.histograms.convert(run).map_err(|e| match e {
            HistogramSkip::Baseline => Skipped::Baseline,
            HistogramSkip::OutOfOrder => Skipped::OutOfOrder,
            HistogramSkip::Invalid(reason) => Skipped::InvalidHistogram(reason),
        })?;
        check_order(&prototype.last_interval, (start, t))?;
        Ok(Point {
            start_ms: Some(start),
            end_ms: t,
            value: PointValue::Distribution(Box::new(distribution)),
        })
    }

    /// The point of native histogram sample `h` at `t` of `series` (a series of distributions):
    /// as it is for a gauge histogram, measured from the series' baseline for a cumulative one.
    /// `st` is the sample's start time (0 when not known).
    pub fn convert_native(
        &mut self,
        series: &ResolvedSeries,
        (st, t): (i64, i64),
        h: NativeHistogram,
        hint: CounterResetHint,
    ) -> Result<Point, Skipped> {
        let prototype = &series.prototype;
        if series.conversion != Conversion::Native {
            return Err(Skipped::InvalidHistogram(HistogramDrop::KindMismatch));
        }
        let (start, distribution) = match prototype.kind {
            PointKind::GaugeDistribution => {
                (None, distribution(&h).map_err(Skipped::InvalidHistogram)?)
            }
            _ => {
                let (start, d) = self
                    .natives
                    .convert(prototype.hash, (st, t), h, hint)
                    .map_err(|e| match e {
                        NativeSkip::Baseline => Skipped::Baseline,
                        NativeSkip::OutOfOrder => Skipped::OutOfOrder,
                        NativeSkip::Invalid(reason) => Skipped::InvalidHistogram(reason),
                    })?;
                (Some(start), d)
            }
        };
        check_order(&prototype.last_interval, (start.unwrap_or(0), t))?;
        Ok(Point {
            start_ms: start,
            end_ms: t,
            value: PointValue::Distribution(Box::new(distribution)),
        })
    }

    /// The point of custom-bucket histogram sample `custom` at `t` (start time `st`, 0 when not
    /// known) of `series`: explicit buckets, by the rules of classic histograms.
    pub fn convert_custom(
        &mut self,
        series: &ResolvedSeries,
        (st, t): (i64, i64),
        custom: CustomValues,
    ) -> Result<Point, Skipped> {
        if series.conversion != Conversion::Native {
            return Err(Skipped::InvalidHistogram(HistogramDrop::KindMismatch));
        }
        let run = HistogramRun {
            prototype: series.prototype.clone(),
            t,
            count: Some(custom.count),
            sum: Some(custom.sum),
            buckets: custom.buckets,
            st,
        };
        if series.prototype.kind != PointKind::GaugeDistribution {
            return self.convert_histogram(run);
        }
        let distribution = gauge_distribution(run).map_err(Skipped::InvalidHistogram)?;
        check_order(&series.prototype.last_interval, (0, t))?;
        Ok(Point {
            start_ms: None,
            end_ms: t,
            value: PointValue::Distribution(Box::new(distribution)),
        })
    }

    /// A histogram's state, to save with the delivery of its point.
    pub fn histogram_state(&self, hash: u64) -> Option<SavedHistogramState> {
        match self.histograms.saved(hash) {
            Some(classic) => Some(SavedHistogramState::Classic(classic)),
            None => self.natives.saved(hash).map(SavedHistogramState::Native),
        }
    }

    /// Continues a histogram from what a previous run saved.
    pub fn restore_histogram(&mut self, hash: u64, saved: &SavedHistogramState) {
        match saved {
            SavedHistogramState::Classic(classic) => self.histograms.restore(hash, classic),
            SavedHistogramState::Native(native) => self.natives.restore(hash, native),
            SavedHistogramState::Gauge => {}
        }
    }
}

/// The ordering guard: records `interval` as the series' last one when it may follow the
/// previous one.
fn check_order(last: &LastInterval, interval: (i64, i64)) -> Result<(), Skipped> {
    if let Some(prev) = last.get()
        && !accepts(prev, interval)
    {
        return Err(Skipped::OutOfOrder);
    }
    last.set(interval);
    Ok(())
}

/// The ordering rule: same start with a later end, or a new interval starting at or after the
/// previous end.
fn accepts(prev: (i64, i64), next: (i64, i64)) -> bool {
    (next.0 == prev.0 && next.1 > prev.1) || (next.0 > prev.0 && next.0 >= prev.1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::SeriesPrototype;

    fn series(kind: PointKind, conversion: Conversion, truncate: bool) -> ResolvedSeries {
        ResolvedSeries {
            prototype: Arc::new(SeriesPrototype::new(
                "t/m".into(),
                &[],
                "generic_task",
                &[],
                kind,
            )),
            conversion,
            truncate,
        }
    }

    #[test]
    fn first_counter_sample_is_the_baseline() {
        let s = series(PointKind::CumulativeDouble, Conversion::Cumulative, false);
        let mut c = Converter::default();
        let mut state = CounterState::default();
        assert_eq!(
            c.convert(&s, &mut state, 1000, 10.0),
            Err(Skipped::Baseline)
        );
        let p = c.convert(&s, &mut state, 2000, 15.0).unwrap();
        assert_eq!(p.start_ms, Some(1000));
        assert_eq!(p.end_ms, 2000);
        assert_eq!(p.value, PointValue::Double(5.0));
    }

    #[test]
    fn counter_reset_starts_new_interval_1ms_before() {
        let s = series(PointKind::CumulativeDouble, Conversion::Cumulative, false);
        let mut c = Converter::default();
        let mut state = CounterState::default();
        let _ = c.convert(&s, &mut state, 1000, 10.0);
        let _ = c.convert(&s, &mut state, 2000, 15.0).unwrap();
        let p = c.convert(&s, &mut state, 3000, 4.0).unwrap();
        assert_eq!(p.start_ms, Some(2999));
        assert_eq!(p.value, PointValue::Double(4.0));
        let p = c.convert(&s, &mut state, 4000, 6.0).unwrap();
        assert_eq!((p.start_ms, p.value), (Some(2999), PointValue::Double(6.0)));
    }

    #[test]
    fn a_start_timestamp_starts_the_interval_and_keeps_the_value() {
        let s = series(PointKind::CumulativeDouble, Conversion::Cumulative, false);
        let mut c = Converter::default();
        let mut state = CounterState::default();
        // The first sample is sent: its start time says where it counts from.
        let p = c.convert_from(&s, &mut state, 500, 1000, 10.0).unwrap();
        assert_eq!((p.start_ms, p.value), (Some(500), PointValue::Double(10.0)));
        let p = c.convert_from(&s, &mut state, 500, 2000, 12.0).unwrap();
        assert_eq!((p.start_ms, p.value), (Some(500), PointValue::Double(12.0)));
        // A new start time is a new interval, even with a higher value.
        let p = c.convert_from(&s, &mut state, 2500, 3000, 20.0).unwrap();
        assert_eq!(
            (p.start_ms, p.value),
            (Some(2500), PointValue::Double(20.0))
        );
        // A sample without one goes on from that interval.
        let p = c.convert_from(&s, &mut state, 0, 4000, 21.0).unwrap();
        assert_eq!(
            (p.start_ms, p.value),
            (Some(2500), PointValue::Double(21.0))
        );
        // A start not before the sample is ignored; an older sample is out of order.
        let p = c.convert_from(&s, &mut state, 5000, 5000, 22.0).unwrap();
        assert_eq!(
            (p.start_ms, p.value),
            (Some(2500), PointValue::Double(22.0))
        );
        assert_eq!(
            c.convert_from(&s, &mut state, 100, 4500, 1.0),
            Err(Skipped::OutOfOrder)
        );
    }

    #[test]
    fn an_older_counter_sample_leaves_the_baseline_alone() {
        // A sample older than the last one (an out-of-order sample, or a checkpoint read again
        // after a truncation) is skipped; it must not look like a reset, which would move the
        // start before the last point and get every later point refused.
        let s = series(PointKind::CumulativeDouble, Conversion::Cumulative, false);
        let mut c = Converter::default();
        let mut state = CounterState::default();
        let _ = c.convert(&s, &mut state, 1000, 10.0);
        assert!(c.convert(&s, &mut state, 3000, 30.0).is_ok());
        assert_eq!(
            c.convert(&s, &mut state, 2000, 20.0),
            Err(Skipped::OutOfOrder)
        );
        assert_eq!(
            c.convert(&s, &mut state, 3000, 30.0),
            Err(Skipped::OutOfOrder)
        );
        let p = c.convert(&s, &mut state, 4000, 35.0).unwrap();
        assert_eq!(
            (p.start_ms, p.value),
            (Some(1000), PointValue::Double(25.0))
        );
    }

    #[test]
    fn gauge_duplicates_and_older_points_are_refused() {
        let s = series(PointKind::GaugeDouble, Conversion::Gauge, false);
        let mut c = Converter::default();
        let mut state = CounterState::default();
        let p = c.convert(&s, &mut state, 1000, 1.0).unwrap();
        assert_eq!((p.start_ms, p.value), (None, PointValue::Double(1.0)));
        assert_eq!(
            c.convert(&s, &mut state, 1000, 1.0),
            Err(Skipped::OutOfOrder)
        );
        assert_eq!(
            c.convert(&s, &mut state, 900, 1.0),
            Err(Skipped::OutOfOrder)
        );
        assert!(c.convert(&s, &mut state, 1001, 1.0).is_ok());
    }

    #[test]
    fn int64_values_round_half_away_from_zero_or_truncate() {
        let mut c = Converter::default();
        let mut state = CounterState::default();
        let rounded = series(PointKind::GaugeInt64, Conversion::Gauge, false);
        assert_eq!(
            c.convert(&rounded, &mut state, 1, 2.5).unwrap().value,
            PointValue::Int64(3)
        );
        assert_eq!(
            c.convert(&rounded, &mut state, 2, -2.5).unwrap().value,
            PointValue::Int64(-3)
        );
        let mut c = Converter::default();
        let truncated = series(PointKind::CumulativeInt64, Conversion::Cumulative, true);
        let _ = c.convert(&truncated, &mut state, 1, 0.0);
        assert_eq!(
            c.convert(&truncated, &mut state, 2, 2.9).unwrap().value,
            PointValue::Int64(2)
        );
    }

    #[test]
    fn histogram_points_pass_the_ordering_guard_too() {
        use crate::retrieval::histogram::HistogramRun;
        let s = series(PointKind::CumulativeDistribution, Conversion::Gauge, false);
        let run = |t, n: f64| HistogramRun {
            prototype: s.prototype.clone(),
            t,
            count: Some(n),
            sum: Some(n),
            buckets: vec![(1.0, n), (f64::INFINITY, n)],
            st: 0,
        };
        let mut c = Converter::default();
        assert_eq!(c.convert_histogram(run(1000, 1.0)), Err(Skipped::Baseline));
        let p = c.convert_histogram(run(2000, 3.0)).unwrap();
        assert_eq!((p.start_ms, p.end_ms), (Some(1000), 2000));
        let PointValue::Distribution(d) = &p.value else {
            panic!("{p:?}");
        };
        assert_eq!((d.count, &d.bucket_counts[..]), (2, &[2, 0][..]));
        // The same scrape again (two targets collapsing into one series) is refused.
        assert_eq!(
            c.convert_histogram(run(2000, 3.0)),
            Err(Skipped::OutOfOrder)
        );
        assert_eq!(
            c.convert_histogram(HistogramRun {
                count: None,
                ..run(3000, 4.0)
            }),
            Err(Skipped::InvalidHistogram(HistogramDrop::MissingCount))
        );
    }

    #[test]
    fn ordering_rule_matches_the_original() {
        assert!(accepts((10, 20), (10, 21)));
        assert!(!accepts((10, 20), (10, 20)));
        assert!(accepts((10, 20), (20, 30)));
        assert!(!accepts((10, 20), (15, 30)));
        assert!(!accepts((10, 20), (5, 30)));
    }
}
