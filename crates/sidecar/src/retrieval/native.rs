//! Native histograms (WAL records 7 to 10, 12 and 13) to Cloud Monitoring distributions:
//! [`read_integer_values`] and [`read_float_values`] turn a WAL sample into a [`NativeHistogram`]
//! (exponential buckets) or [`CustomValues`] (custom bounds, converted as classic histograms
//! are); [`NativeBaselines`] measures a cumulative series' exponential samples from its
//! baseline, and [`distribution`] lays the result out in at most 200 buckets.
//!
//! Must never look series up, queue points, or decide ordering between points (the converter's
//! ordering guard does that for every kind alike).

use std::borrow::Cow;

use ahash::AHashMap;
use prometheus_wal::record::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, RefFloatHistogramSample,
    RefHistogramSample, Span,
};

use crate::model::native::upper_bound;
use crate::model::{Buckets, Distribution, NativeHistogram};
use crate::progress::SavedNative;
use crate::stats::HistogramDrop;

/// Lowest exponential schema Prometheus reads (`histogram.ExponentialSchemaMinReserved`).
pub const MIN_SCHEMA: i32 = -9;
/// Highest exponential schema Prometheus reads (`histogram.ExponentialSchemaMaxReserved`).
pub const MAX_SCHEMA: i32 = 52;
/// Finest schema Prometheus keeps (`histogram.ExponentialSchemaMax`); finer samples are lowered
/// to it on reading, as Prometheus does.
pub const FINEST_SCHEMA: i32 = 8;
/// Most buckets of a distribution, underflow and overflow included (the API's limit).
pub const MAX_BUCKETS: usize = 200;

/// A finite number, not negative (false for NaN).
fn is_count(c: f64) -> bool {
    c.is_finite() && c >= 0.0
}

/// Expands spans and their counts into sorted `(index, count)` buckets, leaving out empty ones.
fn expand(
    spans: &[Span],
    counts: impl ExactSizeIterator<Item = f64>,
    out: &mut Vec<(i32, f64)>,
) -> Result<(), HistogramDrop> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if total != counts.len() as u64 {
        return Err(HistogramDrop::InvalidSpans);
    }
    let mut counts = counts;
    let mut index = 0i64;
    for span in spans {
        index += i64::from(span.offset);
        for _ in 0..span.length {
            let c = counts.next().ok_or(HistogramDrop::InvalidSpans)?;
            // A negative or NaN count (a broken integer delta chain, a damaged record).
            if !is_count(c) {
                return Err(HistogramDrop::InvalidSpans);
            }
            let i = i32::try_from(index).map_err(|_| HistogramDrop::InvalidSpans)?;
            if c > 0.0 {
                out.push((i, c));
            }
            index += 1;
        }
    }
    Ok(())
}

/// Integer bucket counts from Prometheus' deltas (each count is the previous one plus its delta).
fn absolute(deltas: &[i64]) -> impl ExactSizeIterator<Item = f64> + '_ {
    let mut running = 0i64;
    deltas.iter().map(move |d| {
        running = running.saturating_add(*d);
        running as f64
    })
}

/// Checks the schema and lowers one finer than Prometheus keeps.
fn checked(mut h: NativeHistogram) -> Result<NativeHistogram, HistogramDrop> {
    if !(MIN_SCHEMA..=MAX_SCHEMA).contains(&h.schema) {
        return Err(HistogramDrop::UnsupportedSchema);
    }
    if !is_count(h.zero_threshold) {
        return Err(HistogramDrop::InvalidSpans);
    }
    h.lower_schema(FINEST_SCHEMA);
    Ok(h)
}

/// A histogram sample's values: exponential buckets, or custom bounds (schema -53).
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValues {
    /// Exponential buckets.
    Exponential(NativeHistogram),
    /// Custom bucket bounds: converted as a classic histogram's buckets.
    Custom(CustomValues),
}

/// A custom-bucket histogram's values, laid out as a classic histogram's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomValues {
    /// Number of observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// `(upper bound, cumulative count)` for every bound, then `+Inf`.
    pub buckets: Vec<(f64, f64)>,
}

/// The values of a custom-bucket sample: bucket `i` (from the spans) is the one up to
/// `bounds[i]`, bucket `bounds.len()` the one above the last bound.
fn read_custom(
    spans: &[Span],
    counts: impl ExactSizeIterator<Item = f64>,
    bounds: &[f64],
    (count, sum): (f64, f64),
) -> Result<CustomValues, HistogramDrop> {
    let mut sparse = Vec::with_capacity(counts.len());
    expand(spans, counts, &mut sparse)?;
    let mut per_bucket = vec![0.0; bounds.len() + 1];
    for (i, c) in sparse {
        *usize::try_from(i)
            .ok()
            .and_then(|i| per_bucket.get_mut(i))
            .ok_or(HistogramDrop::InvalidSpans)? += c;
    }
    let mut cumulative = 0.0;
    let buckets = per_bucket
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cumulative += c;
            (bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative)
        })
        .collect();
    Ok(CustomValues {
        count,
        sum,
        buckets,
    })
}

/// The values of an integer histogram sample of either kind.
pub fn read_integer_values(h: &Histogram) -> Result<HistogramValues, HistogramDrop> {
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        let custom = read_custom(
            &h.positive_spans,
            absolute(&h.positive_deltas),
            &h.custom_values,
            (h.count as f64, h.sum),
        )?;
        return Ok(HistogramValues::Custom(custom));
    }
    read_integer(h).map(HistogramValues::Exponential)
}

/// The values of a float histogram sample of either kind.
pub fn read_float_values(h: &FloatHistogram) -> Result<HistogramValues, HistogramDrop> {
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        let custom = read_custom(
            &h.positive_spans,
            h.positive_buckets.iter().copied(),
            &h.custom_values,
            (h.count, h.sum),
        )?;
        return Ok(HistogramValues::Custom(custom));
    }
    read_float(h).map(HistogramValues::Exponential)
}

/// The values of an integer native histogram sample (not of custom buckets).
pub fn read_integer(h: &Histogram) -> Result<NativeHistogram, HistogramDrop> {
    let mut out = NativeHistogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count as f64,
        count: h.count as f64,
        sum: h.sum,
        positive: Vec::with_capacity(h.positive_deltas.len()),
        negative: Vec::with_capacity(h.negative_deltas.len()),
    };
    expand(
        &h.positive_spans,
        absolute(&h.positive_deltas),
        &mut out.positive,
    )?;
    expand(
        &h.negative_spans,
        absolute(&h.negative_deltas),
        &mut out.negative,
    )?;
    checked(out)
}

/// The values of a float native histogram sample (not of custom buckets).
pub fn read_float(h: &FloatHistogram) -> Result<NativeHistogram, HistogramDrop> {
    let mut out = NativeHistogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive: Vec::with_capacity(h.positive_buckets.len()),
        negative: Vec::with_capacity(h.negative_buckets.len()),
    };
    expand(
        &h.positive_spans,
        h.positive_buckets.iter().copied(),
        &mut out.positive,
    )?;
    expand(
        &h.negative_spans,
        h.negative_buckets.iter().copied(),
        &mut out.negative,
    )?;
    if !is_count(out.zero_count) || !is_count(out.count) {
        return Err(HistogramDrop::InvalidSpans);
    }
    checked(out)
}

/// A whole number of observations from a (float) count.
fn whole(c: f64) -> i64 {
    c.round().max(0.0) as i64
}

/// The distribution of `h`'s observations: the zero bucket and the negative buckets in the
/// underflow bucket; the positive buckets from the lowest populated one to the highest as
/// exponential buckets (growth `2^(2^-schema)`, scale the lowest one's lower bound), at a lower
/// schema when they would not fit in [`MAX_BUCKETS`]. The count is the sum of the bucket counts
/// (NaN observations are in no bucket); the mean is `sum / count`, or estimated from the buckets
/// when the sum is not a number; the squared deviation is estimated from the buckets' midpoints
/// at the histogram's own schema. Estimates beyond the float range are clamped to it.
pub fn distribution(h: &NativeHistogram) -> Result<Distribution, HistogramDrop> {
    let underflow = whole(h.zero_count) + h.negative.iter().map(|(_, c)| whole(*c)).sum::<i64>();
    let populated = |(_, c): &&(i32, f64)| whole(*c) > 0;
    let range = |p: &[(i32, f64)]| match (p.iter().find(populated), p.iter().rev().find(populated))
    {
        (Some(first), Some(last)) => Some((first.0, (i64::from(last.0) - i64::from(first.0) + 1))),
        _ => None,
    };
    // Lowered only when the populated range needs more than the API's buckets.
    let lowered;
    let (schema, positive) = match range(&h.positive) {
        Some((_, n)) if n as usize + 2 > MAX_BUCKETS => {
            let mut l = NativeHistogram {
                schema: h.schema,
                positive: h.positive.clone(),
                ..NativeHistogram::default()
            };
            while range(&l.positive).is_some_and(|(_, n)| n as usize + 2 > MAX_BUCKETS) {
                l.lower_schema(l.schema - 1);
            }
            lowered = l;
            (lowered.schema, &lowered.positive)
        }
        _ => (h.schema, &h.positive),
    };
    let (first, n) = range(positive).unwrap_or((1, 1));
    let n = n as usize;
    let width = (-f64::from(schema)).exp2();
    let growth = width.exp2();
    let scale = (f64::from(first - 1) * width).exp2();
    let mut bucket_counts = Vec::with_capacity(n + 1);
    bucket_counts.push(underflow);
    for (i, c) in positive.iter().filter(populated) {
        let at = (i - first) as usize + 1;
        bucket_counts.resize(at, 0);
        bucket_counts.push(whole(*c));
    }
    let count: i64 = bucket_counts.iter().sum();
    let (mean, ssd) = moments(h, count);
    if !(growth > 1.0 && growth.is_finite() && scale > 0.0 && scale.is_finite()) || mean.is_nan() {
        return Err(HistogramDrop::Unrepresentable);
    }
    // Observations near the ends of the float range can make the estimates overflow; the
    // largest double stands for them rather than losing the point.
    let (mean, ssd) = (mean.clamp(-f64::MAX, f64::MAX), ssd.clamp(0.0, f64::MAX));
    Ok(Distribution {
        count,
        mean,
        sum_of_squared_deviation: ssd,
        buckets: Buckets::Exponential {
            num_finite: n as i32,
            growth,
            scale,
        },
        bucket_counts,
        exemplars: Vec::new(),
    })
}

/// Mean and sum of squared deviation of `count` (whole) observations spread as `h`'s buckets.
fn moments(h: &NativeHistogram, count: i64) -> (f64, f64) {
    if count == 0 {
        return (0.0, 0.0);
    }
    // The midpoint of `(base^(i-1), base^i]` is `base^i · (1 + 1/base) / 2`.
    let factor = (1.0 + 1.0 / upper_bound(h.schema, 1)) / 2.0;
    let midpoint = |i: i32| upper_bound(h.schema, i) * factor;
    let points = || {
        let positive = h
            .positive
            .iter()
            .map(move |&(i, c)| (midpoint(i), whole(c)));
        let negative = h
            .negative
            .iter()
            .map(move |&(i, c)| (-midpoint(i), whole(c)));
        std::iter::once((0.0, whole(h.zero_count)))
            .chain(positive)
            .chain(negative)
    };
    let n = count as f64;
    let mean = if h.sum.is_finite() {
        h.sum / n
    } else {
        points().map(|(m, c)| m * c as f64).sum::<f64>() / n
    };
    let ssd = points()
        .map(|(m, c)| c as f64 * (m - mean) * (m - mean))
        .sum();
    (mean, ssd)
}

/// `earlier` brought to the layout of `later` ([`NativeHistogram::aligned_to`]), borrowed when it
/// already has it (most samples have the layout of the last one).
fn aligned<'a>(
    earlier: &'a NativeHistogram,
    later: &NativeHistogram,
) -> Option<Cow<'a, NativeHistogram>> {
    if earlier.schema == later.schema && earlier.zero_threshold == later.zero_threshold {
        Some(Cow::Borrowed(earlier))
    } else {
        earlier.aligned_to(later).map(Cow::Owned)
    }
}

/// Why a native histogram sample produced no point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeSkip {
    /// The series' first sample, kept as its baseline.
    Baseline,
    /// Not after the series' last sample: skipped without touching the baseline.
    OutOfOrder,
    /// The values cannot be written.
    Invalid(HistogramDrop),
}

/// What a native histogram series' points are measured from.
#[derive(Debug, Clone)]
struct NativeState {
    /// Start of the current interval (ms).
    start_ms: i64,
    /// Subtracted from every sample: the first one, or empty after a reset.
    base: NativeHistogram,
    /// The last sample, to detect resets.
    previous: NativeHistogram,
    /// The last sample's time (ms); samples not after it are skipped.
    last_t: i64,
}

/// Baselines of every cumulative native histogram series, by output series hash.
///
/// The first sample is the baseline and later samples are measured from it, bucket by bucket
/// after bringing the baseline to the sample's schema and zero bucket. A reset (the record's
/// counter-reset hint, the count or any bucket going down, a finer schema or a narrower zero
/// bucket) starts a new interval 1 ms before the sample, as for counters.
#[derive(Debug, Default)]
pub struct NativeBaselines {
    states: AHashMap<u64, NativeState>,
}

impl NativeBaselines {
    /// The interval start and distribution for sample `h` at `t` of series `hash`, whose start
    /// time is `st` (0 when not known). With a start time before `t`, the interval starts there
    /// and the sample is sent as it is (no baseline); a new start time is a new interval.
    pub fn convert(
        &mut self,
        hash: u64,
        (st, t): (i64, i64),
        h: NativeHistogram,
        hint: CounterResetHint,
    ) -> Result<(i64, Distribution), NativeSkip> {
        let state = self.states.get(&hash);
        if state.is_some_and(|s| t <= s.last_t) {
            return Err(NativeSkip::OutOfOrder);
        }
        if st > 0 && st < t && state.is_none_or(|s| s.start_ms != st) {
            let point = distribution(&h).map_err(NativeSkip::Invalid);
            let base = NativeHistogram::empty(h.schema, h.zero_threshold);
            self.states.insert(
                hash,
                NativeState {
                    start_ms: st,
                    base,
                    previous: h,
                    last_t: t,
                },
            );
            return point.map(|d| (st, d));
        }
        let Some(state) = self.states.get_mut(&hash) else {
            self.states.insert(
                hash,
                NativeState {
                    start_ms: t,
                    base: h.clone(),
                    previous: h,
                    last_t: t,
                },
            );
            return Err(NativeSkip::Baseline);
        };
        if t <= state.last_t {
            return Err(NativeSkip::OutOfOrder);
        }
        state.last_t = t;
        let went_on = hint != CounterResetHint::CounterReset
            && aligned(&state.previous, &h).is_some_and(|previous| !h.went_down_from(&previous));
        let new_base = match aligned(&state.base, &h) {
            Some(Cow::Borrowed(_)) if went_on => None,
            Some(Cow::Owned(base)) if went_on => Some(base),
            _ => {
                state.start_ms = t - 1;
                Some(NativeHistogram::empty(h.schema, h.zero_threshold))
            }
        };
        if let Some(base) = new_base {
            state.base = base;
        }
        let delta = h.minus(&state.base);
        state.previous = h;
        distribution(&delta)
            .map(|d| (state.start_ms, d))
            .map_err(NativeSkip::Invalid)
    }

    /// The state of a series, to save with its delivery.
    pub fn saved(&self, hash: u64) -> Option<SavedNative> {
        self.states.get(&hash).map(|s| SavedNative {
            start_ms: s.start_ms,
            base: s.base.clone(),
            previous: s.previous.clone(),
        })
    }

    /// Continues a series from the state a previous run saved.
    pub fn restore(&mut self, hash: u64, saved: &SavedNative) {
        self.states.insert(
            hash,
            NativeState {
                start_ms: saved.start_ms,
                base: saved.base.clone(),
                previous: saved.previous.clone(),
                // The reader skips the samples the previous run delivered.
                last_t: i64::MIN,
            },
        );
    }
}

/// A native histogram sample of either kind of record.
pub(crate) trait NativeRecordSample {
    /// The series ref.
    fn series_ref(&self) -> u64;
    /// The timestamp (ms).
    fn t(&self) -> i64;
    /// The start time (ms; 0 when not known).
    fn st(&self) -> i64;
    /// The sum (a stale marker when the series ended).
    fn sum(&self) -> f64;
    /// The counter-reset hint.
    fn hint(&self) -> CounterResetHint;
    /// Its values.
    fn read(&self) -> Result<HistogramValues, HistogramDrop>;
}

impl NativeRecordSample for RefHistogramSample {
    fn series_ref(&self) -> u64 {
        self.series_ref
    }
    fn t(&self) -> i64 {
        self.t
    }
    fn st(&self) -> i64 {
        self.st
    }
    fn sum(&self) -> f64 {
        self.h.sum
    }
    fn hint(&self) -> CounterResetHint {
        self.h.counter_reset_hint
    }
    fn read(&self) -> Result<HistogramValues, HistogramDrop> {
        read_integer_values(&self.h)
    }
}

impl NativeRecordSample for RefFloatHistogramSample {
    fn series_ref(&self) -> u64 {
        self.series_ref
    }
    fn t(&self) -> i64 {
        self.t
    }
    fn st(&self) -> i64 {
        self.st
    }
    fn sum(&self) -> f64 {
        self.fh.sum
    }
    fn hint(&self) -> CounterResetHint {
        self.fh.counter_reset_hint
    }
    fn read(&self) -> Result<HistogramValues, HistogramDrop> {
        read_float_values(&self.fh)
    }
}

#[cfg(test)]
#[path = "native_tests.rs"]
mod tests;
