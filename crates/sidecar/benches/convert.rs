//! Sample conversion: `Converter::convert` of one sample of a resolved series into a point
//! (gauges; counters past their baseline, DOUBLE and INT64), and `Converter::convert_histogram`
//! of one 12-bucket classic histogram run (building the run included, as the reader builds one
//! per scrape), over 1,000 series whose timestamps move forward
//! every pass (the ordering guard accepts every point). Criterion reports samples (or runs) per
//! second; the time per element is the cost per point.
//!
//! `cargo bench -p stackdriver-prometheus-sidecar --bench convert`

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stackdriver_prometheus_sidecar::model::PointKind;
use stackdriver_prometheus_sidecar::retrieval::ResolvedSeries;
use stackdriver_prometheus_sidecar::retrieval::convert::{Converter, CounterState};
use stackdriver_prometheus_sidecar::retrieval::histogram::HistogramRun;
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

criterion_group!(benches, samples, histograms);
criterion_main!(benches);
