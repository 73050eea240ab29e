//! Point encoding and request assembly: `RequestBuilder::push` of one point (gauge DOUBLE,
//! cumulative INT64, distribution with 12 buckets), and whole 200-series requests (`start`, 200
//! `push`, `take`) as a shard builds them. Criterion reports points per second; the time per
//! element is the cost per point. The points are cloned per push because `push` consumes them,
//! as the pipeline's freshly converted points are (for distributions that clone allocates, as
//! the converter does).
//!
//! `cargo bench -p stackdriver-prometheus-sidecar --bench encode`

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use stackdriver_prometheus_sidecar::export::RequestBuilder;
use stackdriver_prometheus_sidecar::model::{Point, PointKind, SeriesPrototype};

use common::{point, prototype};

/// Most series per request (the sidecar's batch limit).
const REQUEST_SERIES: usize = 200;
const PROJECT: &str = "projects/bench-project";
const T: i64 = 1_795_591_255_483;

const KINDS: [(&str, PointKind); 3] = [
    ("gauge_double", PointKind::GaugeDouble),
    ("cumulative_int64", PointKind::CumulativeInt64),
    ("distribution", PointKind::CumulativeDistribution),
];

fn push(c: &mut Criterion) {
    let mut group = c.benchmark_group("push");
    group.throughput(Throughput::Elements(1));
    for (name, kind) in KINDS {
        let proto = prototype(7, kind);
        let p = point(kind, T);
        let mut builder = RequestBuilder::default();
        builder.start(PROJECT);
        group.bench_function(name, |b| {
            b.iter(|| {
                // Restarting every 200 points keeps the buffer at a request's size.
                if builder.len() == REQUEST_SERIES {
                    builder.start(PROJECT);
                }
                builder.push(black_box(&proto), black_box(p.clone()));
            })
        });
    }
    group.finish();
}

/// One request: its bytes' length, so nothing is optimised away.
fn request(
    builder: &mut RequestBuilder,
    series: &[(std::sync::Arc<SeriesPrototype>, Point)],
) -> usize {
    builder.start(PROJECT);
    for (proto, p) in series {
        builder.push(proto, p.clone());
    }
    builder.take().len()
}

/// The kind of the series at each position of a request.
type KindOf = fn(usize) -> PointKind;

/// The kinds of a typical exporter's series: 45 % gauges, 45 % counters, 10 % histograms.
fn mixed(i: usize) -> PointKind {
    match i % 20 {
        0..=8 => PointKind::GaugeDouble,
        9..=17 => PointKind::CumulativeDouble,
        _ => PointKind::CumulativeDistribution,
    }
}

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(REQUEST_SERIES as u64));
    let inputs: [(&str, KindOf); 2] = [
        ("gauge_double", |_| PointKind::GaugeDouble),
        ("mixed", mixed),
    ];
    for (name, kind_of) in inputs {
        let series: Vec<_> = (0..REQUEST_SERIES)
            .map(|i| (prototype(i, kind_of(i)), point(kind_of(i), T)))
            .collect();
        let mut builder = RequestBuilder::default();
        let bytes = request(&mut builder, &series);
        println!("request/{name}: {REQUEST_SERIES} series, {bytes} bytes");
        group.bench_with_input(BenchmarkId::new(name, REQUEST_SERIES), &series, |b, s| {
            b.iter(|| black_box(request(&mut builder, black_box(s))))
        });
    }
    group.finish();
}

criterion_group!(benches, push, requests);
criterion_main!(benches);
