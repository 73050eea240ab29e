use prometheus_wal::record::{CounterResetHint, FloatHistogram, Histogram, Span};
use proptest::prelude::*;

use super::*;

/// The Prometheus bucket of a positive `v` at `schema`, computed directly: the `i` with
/// `base^(i-1) < v <= base^i`.
fn prometheus_index(schema: i32, v: f64) -> i32 {
    let mut i = (v.log2() * f64::from(schema).exp2()).ceil() as i32;
    while upper_bound(schema, i) < v {
        i += 1;
    }
    while upper_bound(schema, i - 1) >= v {
        i -= 1;
    }
    i
}

/// A cumulative native histogram of `observations` at `schema` (zero bucket up to `zt`).
fn observe(schema: i32, zt: f64, observations: &[f64]) -> NativeHistogram {
    let mut h = NativeHistogram::empty(schema, zt);
    for &v in observations {
        h.count += 1.0;
        h.sum += v;
        if v.abs() <= zt {
            h.zero_count += 1.0;
            continue;
        }
        let side = if v > 0.0 {
            &mut h.positive
        } else {
            &mut h.negative
        };
        let i = prometheus_index(schema, v.abs());
        match side.binary_search_by_key(&i, |(j, _)| *j) {
            Ok(at) => side[at].1 += 1.0,
            Err(at) => side.insert(at, (i, 1.0)),
        }
    }
    h
}

/// The Cloud Monitoring bucket of `v` under exponential options: 0 below `scale`, else the `k`
/// with `scale·growth^(k-1) <= v < scale·growth^k`.
fn gcm_bucket(num_finite: i32, growth: f64, scale: f64, v: f64) -> usize {
    if v < scale {
        return 0;
    }
    // ln(v) - ln(scale) rather than ln(v / scale), which overflows at the ends of the range.
    let k = ((v.ln() - scale.ln()) / growth.ln()).floor() as i64 + 1;
    k.clamp(1, i64::from(num_finite) + 1) as usize
}

/// True when `v` is near a bucket boundary at `schema`, where the two conventions (Prometheus'
/// upper-inclusive, Cloud Monitoring's lower-inclusive) and rounding may differ.
fn near_boundary(schema: i32, v: f64) -> bool {
    let x = v.abs().log2() * f64::from(schema).exp2();
    (x - x.round()).abs() < 1e-6
}

fn exponential(d: &Distribution) -> (i32, f64, f64) {
    match d.buckets {
        Buckets::Exponential {
            num_finite,
            growth,
            scale,
        } => (num_finite, growth, scale),
        Buckets::Explicit(_) => panic!("explicit buckets: {d:?}"),
    }
}

#[test]
fn exponential_options_follow_the_lowest_populated_bucket() {
    // Schema 0: base 2. Observations in buckets 2 (2, 4] and 4 (8, 16].
    let h = observe(0, 0.0, &[3.0, 3.5, 10.0]);
    assert_eq!(h.positive, [(2, 2.0), (4, 1.0)]);
    let d = distribution(&h).unwrap();
    // scale = base^(first-1) = 2, growth 2, buckets [2,4), [4,8), [8,16).
    assert_eq!(exponential(&d), (3, 2.0, 2.0));
    assert_eq!(d.bucket_counts, [0, 2, 0, 1]);
    assert_eq!(d.count, 3);
    assert_eq!(d.mean, 16.5 / 3.0);
}

#[test]
fn zero_and_negative_observations_go_to_the_underflow_bucket() {
    let h = observe(1, 0.001, &[0.0, 0.0005, -3.0, -0.5, 1.5]);
    let d = distribution(&h).unwrap();
    assert_eq!(d.bucket_counts[0], 4);
    assert_eq!(d.count, 5);
    let (n, growth, scale) = exponential(&d);
    assert_eq!(n, 1);
    assert_eq!(growth, 2f64.sqrt());
    assert!(scale < 1.5 && 1.5 <= scale * growth, "{scale}");
}

#[test]
fn a_histogram_without_positive_buckets_still_has_one_finite_bucket() {
    let d = distribution(&observe(3, 0.0, &[-1.0, -2.0])).unwrap();
    assert_eq!(exponential(&d).0, 1);
    assert_eq!((d.count, &d.bucket_counts[..]), (2, &[2][..]));
    let empty = distribution(&NativeHistogram::empty(3, 0.0)).unwrap();
    assert_eq!(
        (empty.count, empty.mean, empty.sum_of_squared_deviation),
        (0, 0.0, 0.0)
    );
}

#[test]
fn too_many_buckets_lower_the_schema_until_they_fit() {
    // Schema 8 from 1 to 2^10 spans 2560 buckets; it fits at schema 4 (160 buckets).
    let values: Vec<f64> = (0..=1000).map(|i| 1.0001 * 1.0069f64.powi(i)).collect();
    let h = observe(8, 0.0, &values);
    let d = distribution(&h).unwrap();
    let (n, growth, _) = exponential(&d);
    assert!(n as usize + 2 <= MAX_BUCKETS, "{n}");
    assert_eq!(growth, 2f64.powf(1.0 / 16.0));
    assert_eq!(d.count, 1001);
}

#[test]
fn a_very_sparse_histogram_spanning_the_float_range_fits() {
    let h = observe(8, 0.0, &[1e-300, 1.5, 1e300]);
    let d = distribution(&h).unwrap();
    let (n, growth, scale) = exponential(&d);
    assert!(n as usize + 2 <= MAX_BUCKETS);
    for v in [1e-300, 1.5, 1e300] {
        let k = gcm_bucket(n, growth, scale, v);
        assert!(d.bucket_counts[k] >= 1, "{v} in bucket {k} of {d:?}");
    }
}

#[test]
fn squared_deviation_is_exact_when_observations_sit_on_midpoints() {
    // Schema 0: bucket 1 is (1, 2], midpoint 1.5; bucket 3 is (4, 8], midpoint 6.
    let values = [1.5, 1.5, 6.0, 6.0, 6.0];
    let h = observe(0, 0.0, &values);
    let d = distribution(&h).unwrap();
    let mean = values.iter().sum::<f64>() / 5.0;
    let exact: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    assert_eq!(d.mean, mean);
    assert!((d.sum_of_squared_deviation - exact).abs() < 1e-12 * exact);
}

#[test]
fn a_nan_sum_gives_a_mean_estimated_from_the_buckets() {
    let mut h = observe(0, 0.0, &[1.5, 6.0]);
    h.sum = f64::NAN;
    h.count += 1.0;
    let d = distribution(&h).unwrap();
    assert_eq!((d.count, d.mean), (2, 3.75));
}

#[test]
fn integer_records_expand_spans_and_deltas() {
    // Buckets 0, 1 (span at 0, length 2) and 5 (gap 3, length 1): counts 2, 3, 1.
    let h = Histogram {
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: 1,
        count: 7,
        sum: 20.0,
        positive_spans: vec![
            Span {
                offset: 0,
                length: 2,
            },
            Span {
                offset: 3,
                length: 1,
            },
        ],
        positive_deltas: vec![2, 1, -2],
        negative_spans: vec![Span {
            offset: -1,
            length: 1,
        }],
        negative_deltas: vec![1],
        ..Histogram::default()
    };
    let n = read_integer(&h).unwrap();
    assert_eq!(n.positive, [(0, 2.0), (1, 3.0), (5, 1.0)]);
    assert_eq!(n.negative, [(-1, 1.0)]);
    let broken = Histogram {
        positive_deltas: vec![2, -3, 1],
        ..h.clone()
    };
    assert_eq!(read_integer(&broken), Err(HistogramDrop::InvalidSpans));
    let short = Histogram {
        positive_deltas: vec![2, 1],
        ..h.clone()
    };
    assert_eq!(read_integer(&short), Err(HistogramDrop::InvalidSpans));
    let schema = Histogram {
        schema: 53,
        ..h.clone()
    };
    assert_eq!(read_integer(&schema), Err(HistogramDrop::UnsupportedSchema));
}

#[test]
fn finer_schemas_than_prometheus_keeps_are_lowered_on_reading() {
    let f = FloatHistogram {
        schema: 10,
        count: 2.0,
        sum: 3.0,
        positive_spans: vec![Span {
            offset: 1,
            length: 4,
        }],
        positive_buckets: vec![1.0, 0.0, 0.0, 1.0],
        ..FloatHistogram::default()
    };
    let n = read_float(&f).unwrap();
    assert_eq!(n.schema, 8);
    // Indices 1 and 4 at schema 10 fall in 1 at schema 8.
    assert_eq!(n.positive, [(1, 2.0)]);
}

/// Cumulative samples of one series: the baseline, then points counting from it.
fn baselines_convert(
    b: &mut NativeBaselines,
    t: i64,
    h: &NativeHistogram,
) -> Result<(i64, Distribution), NativeSkip> {
    b.convert(7, (0, t), h.clone(), CounterResetHint::Unknown)
}

#[test]
fn cumulative_points_count_from_the_baseline_across_a_schema_change() {
    let mut b = NativeBaselines::default();
    let first = [1.5, 3.0];
    let second = [1.5, 3.0, 3.0, 12.0];
    assert_eq!(
        baselines_convert(&mut b, 1000, &observe(2, 0.0, &first)),
        Err(NativeSkip::Baseline)
    );
    // The client lowered its resolution: the baseline is lowered too, and the point holds
    // exactly the new observations at schema 1.
    let (start, d) = baselines_convert(&mut b, 2000, &observe(1, 0.0, &second)).unwrap();
    assert_eq!(start, 1000);
    let expected = distribution(&observe(1, 0.0, &[3.0, 12.0])).unwrap();
    assert_eq!(d.bucket_counts, expected.bucket_counts);
    assert_eq!(d.buckets, expected.buckets);
    assert_eq!(d.mean, 7.5);
}

#[test]
fn resets_start_a_new_interval() {
    let mut b = NativeBaselines::default();
    let _ = baselines_convert(&mut b, 1000, &observe(0, 0.0, &[1.5, 3.0]));
    // Fewer observations: a restart of the exporter.
    let (start, d) = baselines_convert(&mut b, 2000, &observe(0, 0.0, &[6.0])).unwrap();
    assert_eq!((start, d.count), (1999, 1));
    // A finer schema cannot be compared: also a reset.
    let (start, d) = baselines_convert(&mut b, 3000, &observe(1, 0.0, &[6.0, 6.0])).unwrap();
    assert_eq!((start, d.count), (2999, 2));
    // The hint says so, even though every value grew.
    let (start, d) = b
        .convert(
            7,
            (0, 4000),
            observe(1, 0.0, &[6.0, 6.0, 1.5]),
            CounterResetHint::CounterReset,
        )
        .unwrap();
    assert_eq!((start, d.count), (3999, 3));
    // Same bucket counts but a bucket moved: the count stayed, a bucket went down.
    let _ = baselines_convert(&mut b, 5000, &observe(1, 0.0, &[6.0, 6.0, 1.5, 3.0])).unwrap();
    let (start, _) =
        baselines_convert(&mut b, 6000, &observe(1, 0.0, &[6.0, 6.0, 1.5, 1.5])).unwrap();
    assert_eq!(start, 5999);
    assert_eq!(
        baselines_convert(&mut b, 6000, &observe(1, 0.0, &[1.5])),
        Err(NativeSkip::OutOfOrder)
    );
}

#[test]
fn a_wider_zero_bucket_is_reconciled_and_a_narrower_one_is_a_reset() {
    let mut b = NativeBaselines::default();
    let _ = baselines_convert(&mut b, 1000, &observe(0, 0.0, &[0.2, 3.0]));
    // The zero bucket now reaches 0.25: bucket -2 (1/8, 1/4] of the baseline moves into it.
    let (start, d) = baselines_convert(&mut b, 2000, &observe(0, 0.25, &[0.2, 3.0, 0.1])).unwrap();
    assert_eq!((start, d.count, d.bucket_counts[0]), (1000, 1, 1));
    let (start, _) = baselines_convert(&mut b, 3000, &observe(0, 0.0, &[0.2, 3.0, 0.1])).unwrap();
    assert_eq!(start, 2999);
}

#[test]
fn a_start_timestamp_starts_the_interval_and_sends_the_sample_as_it_is() {
    let mut b = NativeBaselines::default();
    let convert = |b: &mut NativeBaselines, st, t, values: &[f64]| {
        b.convert(
            7,
            (st, t),
            observe(0, 0.0, values),
            CounterResetHint::Unknown,
        )
    };
    let (start, d) = convert(&mut b, 500, 1000, &[1.5]).unwrap();
    assert_eq!((start, d.count), (500, 1));
    let (start, d) = convert(&mut b, 500, 2000, &[1.5, 3.0]).unwrap();
    assert_eq!((start, d.count), (500, 2));
    // A new start time: a new interval, whatever the values.
    let (start, d) = convert(&mut b, 2500, 3000, &[1.5, 3.0, 6.0]).unwrap();
    assert_eq!((start, d.count), (2500, 3));
    assert_eq!(
        convert(&mut b, 2600, 3000, &[1.5]),
        Err(NativeSkip::OutOfOrder)
    );
    // Without one, the interval goes on.
    let (start, d) = convert(&mut b, 0, 4000, &[1.5, 3.0, 6.0, 6.0]).unwrap();
    assert_eq!((start, d.count), (2500, 4));
}

#[test]
fn saved_state_continues_after_a_restart() {
    let mut b = NativeBaselines::default();
    let _ = baselines_convert(&mut b, 1000, &observe(0, 0.0, &[1.5]));
    let saved = b.saved(7).unwrap();
    let mut restored = NativeBaselines::default();
    restored.restore(7, &saved);
    let (start, d) = baselines_convert(&mut restored, 2000, &observe(0, 0.0, &[1.5, 3.0])).unwrap();
    assert_eq!((start, d.count), (1000, 1));
}

fn observation() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-30.0f64..30.0).prop_map(f64::exp2),
        1 => (-30.0f64..30.0).prop_map(|e| -e.exp2()),
        1 => Just(0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every observation lands in the Cloud Monitoring bucket its value belongs to, whatever
    /// the schema, and however many buckets had to be merged to fit.
    #[test]
    fn every_observation_lands_in_its_bucket(
        schema in -4i32..=8,
        values in proptest::collection::vec(observation(), 1..300),
    ) {
        let values: Vec<f64> = values
            .into_iter()
            .filter(|v| *v == 0.0 || !near_boundary(schema, *v))
            .collect();
        let h = observe(schema, 0.0, &values);
        let d = distribution(&h).unwrap();
        let (n, growth, scale) = exponential(&d);
        prop_assert!(n as usize + 2 <= MAX_BUCKETS);
        let mut expected = vec![0i64; n as usize + 2];
        for &v in &values {
            expected[gcm_bucket(n, growth, scale, v)] += 1;
        }
        // The reduced schema's own boundaries may pass near an observation too: allow only
        // moves between neighbouring buckets there, and insist on equality elsewhere.
        let lowered = (growth.log2().log2()).round() as i32;
        let exact = values.iter().all(|v| *v <= 0.0 || !near_boundary(-lowered, *v));
        let mut got = d.bucket_counts.clone();
        got.resize(expected.len(), 0);
        if exact {
            prop_assert_eq!(got, expected);
        }
        prop_assert_eq!(d.count, values.len() as i64);
    }

    /// A later sample's point holds exactly the observations made since the baseline, at the
    /// later sample's (possibly lower) schema.
    #[test]
    fn points_hold_what_was_observed_since_the_baseline(
        schema in -2i32..=8,
        lower_by in 0i32..=3,
        before in proptest::collection::vec(observation(), 0..100),
        after in proptest::collection::vec(observation(), 0..100),
    ) {
        let before: Vec<f64> =
            before.into_iter().filter(|v| *v == 0.0 || !near_boundary(schema, *v)).collect();
        let after: Vec<f64> =
            after.into_iter().filter(|v| *v == 0.0 || !near_boundary(schema, *v)).collect();
        let mut b = NativeBaselines::default();
        let later = schema - lower_by;
        let all: Vec<f64> = before.iter().chain(&after).copied().collect();
        prop_assert_eq!(
            baselines_convert(&mut b, 1, &observe(schema, 0.0, &before)),
            Err(NativeSkip::Baseline)
        );
        let (start, d) = baselines_convert(&mut b, 2, &observe(later, 0.0, &all)).unwrap();
        prop_assert_eq!(start, 1);
        let expected = distribution(&observe(later, 0.0, &after)).unwrap();
        prop_assert_eq!(d.bucket_counts, expected.bucket_counts);
        prop_assert_eq!(d.buckets, expected.buckets);
    }
}
