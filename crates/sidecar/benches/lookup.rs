//! Series lookup: the reader's `SeriesCache::get_mut` per sample, then its check whether the
//! series needs resolving, over caches of resolved series of several sizes, with refs in WAL
//! order (ascending, as a target's samples records list them) and in random order. Criterion
//! reports lookups per second; the time per element is the cost per sample.
//!
//! `cargo bench -p stackdriver-prometheus-sidecar --bench lookup`

mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_wal::Label;
use stackdriver_prometheus_sidecar::model::PointKind;
use stackdriver_prometheus_sidecar::retrieval::ResolvedSeries;
use stackdriver_prometheus_sidecar::retrieval::convert::CounterState;
use stackdriver_prometheus_sidecar::retrieval::resolve::Conversion;
use stackdriver_prometheus_sidecar::retrieval::series::{CompactLabels, SeriesCache, SeriesState};

use common::{Rng, prototype};

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.to_string(),
        value,
    }
}

/// A cache of `n` series (refs `1..=n`), each resolved to its own prototype, as after the first
/// scrape of every target.
fn resolved_cache(n: usize) -> SeriesCache {
    let mut cache = SeriesCache::default();
    for i in 0..n {
        let r = i as u64 + 1;
        let labels = vec![
            label("__name__", "http_requests_total".into()),
            label("code", "200".into()),
            label("handler", format!("/api/v1/items/{}", i % 1000)),
            label(
                "instance",
                format!("10.0.{}.{}:9100", (i / 1000) % 256, i % 1000),
            ),
            label("job", "api".into()),
            label("method", "GET".into()),
        ];
        cache.insert(r, labels, 0);
        let entry = cache.get_mut(r).expect("just inserted");
        // Resolution empties the labels; the state holds the prototype and counter baseline.
        entry.labels = CompactLabels::default();
        entry.state = SeriesState::Resolved {
            series: ResolvedSeries {
                prototype: prototype(i, PointKind::CumulativeDouble),
                conversion: Conversion::Cumulative,
                truncate: false,
            },
            counter: CounterState::default(),
        };
    }
    cache
}

/// Looks every ref up once; returns how many need resolution (none), so nothing is optimised
/// away.
fn pass(cache: &mut SeriesCache, refs: &[u64], now: Instant) -> usize {
    let mut due = 0;
    for &r in refs {
        let entry = cache.get_mut(r).expect("every ref is cached");
        due += usize::from(entry.needs_resolution(now));
    }
    due
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("series_lookup");
    group.sample_size(20);
    for n in [20_000usize, 200_000, 1_000_000] {
        let mut cache = resolved_cache(n);
        let sequential: Vec<u64> = (1..=n as u64).collect();
        let mut random = sequential.clone();
        Rng(n as u64).shuffle(&mut random);
        let now = Instant::now();
        group.throughput(Throughput::Elements(n as u64));
        for (order, refs) in [("sequential", &sequential), ("random", &random)] {
            group.bench_with_input(BenchmarkId::new(order, n), refs, |b, refs| {
                b.iter(|| black_box(pass(&mut cache, black_box(refs), now)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
