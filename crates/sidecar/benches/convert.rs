//! Sample conversion: `Converter::convert` of one sample of a resolved series into a point
//! (gauges; counters past their baseline, DOUBLE and INT64), and `Converter::convert_histogram`
//! of one 12-bucket classic histogram run (building the run included, as the reader builds one
//! per scrape), over 1,000 series whose timestamps move forward
//! every pass (the ordering guard accepts every point). Criterion reports samples (or runs) per
//! second; the time per element is the cost per point.
//!
//! `native_20_buckets` is the whole path of one native histogram sample of 20 populated buckets
//! past its baseline: reading the WAL sample's spans and deltas, converting it against the
//! baseline, and encoding the point into a request (a request taken every 200 points).
//!
//! `cargo bench -p stackdriver-prometheus-sidecar --bench convert`

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_wal::record::{Histogram, Span};
use stackdriver_prometheus_sidecar::export::RequestBuilder;
use stackdriver_prometheus_sidecar::model::PointKind;
use stackdriver_prometheus_sidecar::retrieval::ResolvedSeries;
use stackdriver_prometheus_sidecar::retrieval::convert::{Converter, CounterState};
use stackdriver_prometheus_sidecar::retrieval::histogram::HistogramRun;
use stackdriver_prometheus_sidecar::retrieval::native::{HistogramValues, read_integer_values};
use stackdriver_prometheus_sidecar::retrieval::resolve::Conversion;

use common::{BOUNDS, prototype};

const SERIES: usize = 1_000;
/// Scrape interval (ms) between two passes.
const STEP: i64 = 15_000;

fn series(kind: PointKind, conversion: Conversion) -> Vec<(ResolvedSeries, CounterState)> {
    (0..SERIES)
        .map(|i| {
            let s = ResolvedSeries {
                prototype: prototype(i, kind),
                conversion,
                truncate: false,
            };
            (s, CounterState::default())
        })
        .collect()
}

/// Converts one sample of every series at `t`; returns the number of points.
fn pass(converter: &mut Converter, series: &mut [(ResolvedSeries, CounterState)], t: i64) -> usize {
    let mut points = 0;
    for (i, (s, counter)) in series.iter_mut().enumerate() {
        // Counters grow with time; gauges take the same values.
        let v = (t / 1000) as f64 + i as f64;
        points += usize::from(black_box(converter.convert(s, counter, t, v)).is_ok());
    }
    points
}

fn samples(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(SERIES as u64));
    let inputs = [
        ("gauge_double", PointKind::GaugeDouble, Conversion::Gauge),
        (
            "counter_double",
            PointKind::CumulativeDouble,
            Conversion::Cumulative,
        ),
        (
            "counter_int64",
            PointKind::CumulativeInt64,
            Conversion::Cumulative,
        ),
    ];
    for (name, kind, conversion) in inputs {
        let mut s = series(kind, conversion);
        let mut converter = Converter::default();
        let mut t = 1_795_591_255_483;
        // Counters' first sample is their baseline: take it before measuring.
        pass(&mut converter, &mut s, t);
        group.bench_function(BenchmarkId::new(name, SERIES), |b| {
            b.iter(|| {
                t += STEP;
                let points = pass(&mut converter, &mut s, t);
                assert_eq!(points, SERIES);
            })
        });
    }
    group.finish();
}

/// The run of histogram `i` at scrape `n`: 12 cumulative buckets, `_sum` and `_count`.
fn run(s: &ResolvedSeries, i: usize, n: i64, t: i64) -> HistogramRun {
    let scale = (n + 1 + i as i64 % 7) as f64;
    let mut buckets: Vec<(f64, f64)> = BOUNDS
        .iter()
        .enumerate()
        .map(|(b, &le)| (le, scale * (b + 1) as f64))
        .collect();
    let count = scale * (BOUNDS.len() + 1) as f64;
    buckets.push((f64::INFINITY, count));
    HistogramRun {
        prototype: s.prototype.clone(),
        t,
        count: Some(count),
        sum: Some(scale * 3.25),
        buckets,
        st: 0,
    }
}

fn histograms(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(SERIES as u64));
    let series: Vec<_> = series(
        PointKind::CumulativeDistribution,
        Conversion::Histogram(
            stackdriver_prometheus_sidecar::retrieval::resolve::HistogramPart::Count,
        ),
    );
    let mut converter = Converter::default();
    let (mut n, mut t) = (0i64, 1_795_591_255_483i64);
    for (i, (s, _)) in series.iter().enumerate() {
        let _ = converter.convert_histogram(run(s, i, n, t));
    }
    group.bench_function(BenchmarkId::new("histogram_12_buckets", SERIES), |b| {
        b.iter(|| {
            n += 1;
            t += STEP;
            let mut points = 0;
            for (i, (s, _)) in series.iter().enumerate() {
                let p = converter.convert_histogram(run(s, i, n, t));
                points += usize::from(black_box(p).is_ok());
            }
            assert_eq!(points, SERIES);
        })
    });
    group.finish();
}

/// Native histogram `i` at scrape `n`: schema 3, 20 populated buckets whose counts grow with
/// `n`, as an integer WAL sample holds them (spans and deltas).
fn native_sample(i: usize, n: i64) -> Histogram {
    let counts: Vec<i64> = (0..20).map(|j| (n + 1) * (j % 3 + 1)).collect();
    let mut previous = 0;
    let positive_deltas = counts
        .iter()
        .map(|c| {
            let d = c - previous;
            previous = *c;
            d
        })
        .collect();
    let count = counts.iter().sum::<i64>() as u64 + n as u64;
    Histogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count: n as u64,
        count,
        sum: count as f64 * 1.7,
        positive_spans: vec![Span {
            offset: (i % 5) as i32,
            length: 20,
        }],
        positive_deltas,
        ..Histogram::default()
    }
}

fn natives(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(SERIES as u64));
    let series = series(PointKind::CumulativeDistribution, Conversion::Native);
    let mut converter = Converter::default();
    let mut builder = RequestBuilder::default();
    let (mut n, mut t) = (0i64, 1_795_591_255_483i64);
    let convert = |converter: &mut Converter, s: &ResolvedSeries, h: &Histogram, t: i64| {
        let Ok(HistogramValues::Exponential(values)) = read_integer_values(h) else {
            panic!("a valid native histogram");
        };
        converter.convert_native(s, (0, t), values, h.counter_reset_hint)
    };
    for (i, (s, _)) in series.iter().enumerate() {
        let _ = convert(&mut converter, s, &native_sample(i, n), t);
    }
    let samples: Vec<Vec<Histogram>> = (1..=64)
        .map(|n| (0..SERIES).map(|i| native_sample(i, n)).collect())
        .collect();
    builder.start("projects/bench-project");
    group.bench_function(BenchmarkId::new("native_20_buckets", SERIES), |b| {
        b.iter(|| {
            n += 1;
            t += STEP;
            // The samples of a pass are built outside the measurement; after 64 passes the
            // counts start again from 1, a reset every 64 passes.
            let pass = &samples[(n as usize - 1) % samples.len()];
            let mut points = 0;
            for ((s, _), h) in series.iter().zip(pass) {
                if let Ok(point) = convert(&mut converter, s, h, t) {
                    builder.push(&s.prototype, black_box(point));
                    points += 1;
                    if builder.len() == 200 {
                        black_box(builder.take());
                        builder.start("projects/bench-project");
                    }
                }
            }
            assert_eq!(points, SERIES);
        })
    });
    group.finish();
}

criterion_group!(benches, samples, histograms, natives);
criterion_main!(benches);
