//! A native (exponential-bucket) histogram's cumulative values, and the exact operations on them
//! that conversion needs: lowering the schema, widening the zero bucket, comparing and
//! subtracting two samples. Plain data and arithmetic; it must never know where a histogram came
//! from or how it is sent.
//!
//! Bucket `i` at schema `s` covers `(base^(i-1), base^i]` with `base = 2^(2^-s)`; negative bucket
//! `i` mirrors it, `[-base^i, -base^(i-1))`; the zero bucket is `[-threshold, threshold]`
//! (Prometheus' `model/histogram`).

/// A native histogram's cumulative values, with buckets as `(index, count)` sorted by index,
/// without empty buckets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativeHistogram {
    /// Resolution: each power of two is split into `2^schema` buckets.
    pub schema: i32,
    /// Upper bound of the zero bucket's absolute values.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Number of observations (NaN observations included, which no bucket holds).
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive buckets.
    pub positive: Vec<(i32, f64)>,
    /// Negative buckets, by the index of their absolute values.
    pub negative: Vec<(i32, f64)>,
}

/// The index a bucket of index `i` falls in when the schema is lowered by `by`: each step merges
/// buckets `2j-1` and `2j` into `j`, so after `by` steps bucket `j` holds
/// `(j-1)·2^by + 1 ..= j·2^by`.
pub fn lowered_index(i: i32, by: u32) -> i32 {
    let by = by.min(62);
    (((i64::from(i) - 1) >> by) + 1) as i32
}

/// The upper bound of the absolute values of bucket `i` at `schema`: `2^(i·2^-schema)`.
pub fn upper_bound(schema: i32, i: i32) -> f64 {
    (f64::from(i) * (-f64::from(schema)).exp2()).exp2()
}

/// Lowers sorted buckets by `by` schema steps in place, merging buckets that fall together.
fn lower_buckets(buckets: &mut Vec<(i32, f64)>, by: u32) {
    let mut kept = 0;
    for r in 0..buckets.len() {
        let (i, c) = buckets[r];
        let j = lowered_index(i, by);
        if kept > 0 && buckets[kept - 1].0 == j {
            buckets[kept - 1].1 += c;
        } else {
            buckets[kept] = (j, c);
            kept += 1;
        }
    }
    buckets.truncate(kept);
}

/// Moves the lowest buckets whose upper bound is within `threshold` into `zero`; false when a
/// bucket straddles `threshold` (part of it would belong to the zero bucket).
fn widen(buckets: &mut Vec<(i32, f64)>, schema: i32, threshold: f64, zero: &mut f64) -> bool {
    // Thresholds and bounds are powers of two in practice; the tolerance absorbs rounding of
    // bounds computed at fine schemas.
    let within = |bound: f64| bound <= threshold * (1.0 + 1e-9);
    let moved = buckets
        .iter()
        .take_while(|(i, _)| within(upper_bound(schema, *i)))
        .count();
    *zero += buckets[..moved].iter().map(|(_, c)| c).sum::<f64>();
    buckets.drain(..moved);
    match buckets.first() {
        Some((i, _)) => {
            let lower = upper_bound(schema, *i - 1);
            lower >= threshold * (1.0 - 1e-9)
        }
        None => true,
    }
}

impl NativeHistogram {
    /// An empty histogram at `schema` with a zero bucket up to `zero_threshold`.
    pub fn empty(schema: i32, zero_threshold: f64) -> NativeHistogram {
        NativeHistogram {
            schema,
            zero_threshold,
            ..NativeHistogram::default()
        }
    }

    /// Lowers the schema to `schema` (no change when it is not lower). Exact: every bucket of
    /// the lower schema is the union of whole buckets of the higher one.
    pub fn lower_schema(&mut self, schema: i32) {
        if schema >= self.schema {
            return;
        }
        let by = (self.schema - schema) as u32;
        lower_buckets(&mut self.positive, by);
        lower_buckets(&mut self.negative, by);
        self.schema = schema;
    }

    /// Widens the zero bucket to `threshold`, moving the buckets it now covers into it. False
    /// (and the histogram unusable) when `threshold` is lower than the current one or falls
    /// inside a bucket.
    pub fn widen_zero_bucket(&mut self, threshold: f64) -> bool {
        if threshold < self.zero_threshold {
            return false;
        }
        if threshold == self.zero_threshold {
            return true;
        }
        let mut zero = self.zero_count;
        let ok = widen(&mut self.positive, self.schema, threshold, &mut zero)
            && widen(&mut self.negative, self.schema, threshold, &mut zero);
        self.zero_count = zero;
        self.zero_threshold = threshold;
        ok
    }

    /// `self` brought to the layout of `later` (a later sample of the same series): its schema
    /// lowered and its zero bucket widened to `later`'s. `None` when that cannot be done
    /// exactly: `later` has a finer schema or a narrower zero bucket, which Prometheus treats as
    /// a counter reset, or a zero bucket boundary inside one of `self`'s buckets.
    pub fn aligned_to(&self, later: &NativeHistogram) -> Option<NativeHistogram> {
        if later.schema > self.schema || later.zero_threshold < self.zero_threshold {
            return None;
        }
        let mut aligned = self.clone();
        aligned.lower_schema(later.schema);
        aligned
            .widen_zero_bucket(later.zero_threshold)
            .then_some(aligned)
    }

    /// True when some value of `self` is below `earlier`'s (already aligned to `self`): the
    /// count, the zero bucket or any bucket went down.
    pub fn went_down_from(&self, earlier: &NativeHistogram) -> bool {
        self.count < earlier.count
            || self.zero_count < earlier.zero_count
            || any_lower(&self.positive, &earlier.positive)
            || any_lower(&self.negative, &earlier.negative)
    }

    /// `self - base`, `base` aligned to `self` and not above it anywhere; rounding below zero
    /// (float counts) is clamped to zero.
    pub fn minus(&self, base: &NativeHistogram) -> NativeHistogram {
        NativeHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: (self.zero_count - base.zero_count).max(0.0),
            count: (self.count - base.count).max(0.0),
            sum: self.sum - base.sum,
            positive: subtract(&self.positive, &base.positive),
            negative: subtract(&self.negative, &base.negative),
        }
    }

    /// Number of buckets held (for memory accounting).
    pub fn bucket_len(&self) -> usize {
        self.positive.len() + self.negative.len()
    }
}

/// True when a bucket of `earlier` has a higher count than the same bucket of `later` (a bucket
/// missing from `later` counts zero).
fn any_lower(later: &[(i32, f64)], earlier: &[(i32, f64)]) -> bool {
    let mut l = later.iter().peekable();
    for &(i, c) in earlier {
        while l.next_if(|(j, _)| *j < i).is_some() {}
        let now = l.next_if(|(j, _)| *j == i).map_or(0.0, |(_, c)| *c);
        if now < c {
            return true;
        }
    }
    false
}

/// Bucket-wise `a - b` over sorted buckets, leaving out buckets that come to zero.
fn subtract(a: &[(i32, f64)], b: &[(i32, f64)]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len());
    let mut b = b.iter().peekable();
    for &(i, c) in a {
        while b.next_if(|(j, _)| *j < i).is_some() {}
        let base = b.next_if(|(j, _)| *j == i).map_or(0.0, |(_, c)| *c);
        let d = c - base;
        if d > 0.0 {
            out.push((i, d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, positive: &[(i32, f64)]) -> NativeHistogram {
        let count = positive.iter().map(|(_, c)| c).sum();
        NativeHistogram {
            schema,
            count,
            positive: positive.to_vec(),
            ..NativeHistogram::default()
        }
    }

    #[test]
    fn lowering_merges_pairs_of_buckets() {
        // At schema 0, buckets -1 and 0 cover (1/4, 1/2] and (1/2, 1]: together (1/4, 1],
        // bucket 0 at schema -1 (base 4).
        assert_eq!(lowered_index(-1, 1), 0);
        assert_eq!(lowered_index(0, 1), 0);
        assert_eq!(lowered_index(1, 1), 1);
        assert_eq!(lowered_index(2, 1), 1);
        assert_eq!(lowered_index(3, 1), 2);
        assert_eq!(lowered_index(-2, 1), -1);
        assert_eq!(lowered_index(5, 2), 2);
        let mut x = h(0, &[(-1, 1.0), (0, 2.0), (1, 3.0), (2, 4.0), (5, 5.0)]);
        x.lower_schema(-1);
        assert_eq!(x.positive, [(0, 3.0), (1, 7.0), (3, 5.0)]);
        assert_eq!(x.schema, -1);
    }

    #[test]
    fn upper_bounds_follow_the_schema() {
        assert_eq!(upper_bound(0, 3), 8.0);
        assert_eq!(upper_bound(-1, 2), 16.0);
        assert_eq!(upper_bound(1, 1), 2f64.sqrt());
        assert_eq!(upper_bound(0, -2), 0.25);
    }

    #[test]
    fn widening_the_zero_bucket_takes_whole_buckets_only() {
        let mut x = h(0, &[(-3, 1.0), (-2, 2.0), (0, 4.0)]);
        // Buckets -3 (1/16, 1/8] and -2 (1/8, 1/4] fall within 0.25.
        assert!(x.widen_zero_bucket(0.25));
        assert_eq!((x.zero_count, &x.positive[..]), (3.0, &[(0, 4.0)][..]));
        let mut y = h(0, &[(0, 4.0)]);
        // 0.75 falls inside bucket 0, (1/2, 1].
        assert!(!y.widen_zero_bucket(0.75));
        assert!(!h(0, &[]).widen_zero_bucket(-1.0));
    }

    #[test]
    fn aligning_refuses_finer_schemas_and_narrower_zero_buckets() {
        let earlier = h(1, &[(1, 1.0)]);
        assert!(earlier.aligned_to(&h(2, &[])).is_none());
        let mut wide = earlier.clone();
        wide.zero_threshold = 1e-3;
        assert!(wide.aligned_to(&h(1, &[])).is_none());
        let aligned = earlier.aligned_to(&h(0, &[])).unwrap();
        assert_eq!(aligned.positive, [(1, 1.0)]);
    }

    #[test]
    fn going_down_anywhere_is_seen() {
        let a = h(0, &[(1, 2.0), (3, 1.0)]);
        assert!(!h(0, &[(1, 2.0), (3, 1.0)]).went_down_from(&a));
        assert!(!h(0, &[(0, 1.0), (1, 2.0), (3, 1.0)]).went_down_from(&a));
        // Bucket 3 emptied while another grew: the count stayed, the bucket went down.
        assert!(h(0, &[(1, 3.0)]).went_down_from(&a));
    }

    #[test]
    fn subtraction_is_bucket_by_bucket() {
        let a = h(0, &[(0, 1.0), (1, 5.0), (4, 2.0)]);
        let b = h(0, &[(1, 2.0), (4, 2.0)]);
        let d = a.minus(&b);
        assert_eq!(d.positive, [(0, 1.0), (1, 3.0)]);
        assert_eq!(d.count, 4.0);
    }
}
