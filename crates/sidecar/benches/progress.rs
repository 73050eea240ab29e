//! Progress saves: `DeliveryTracker::save` of every series' delivery state (last point's time,
//! counter baseline) to the progress file, as the progress keeper does in the background, for
//! the benchmark WAL's series count and for the live bench's. Series register in WAL order, so
//! their states lie in the slab in that order while the save walks them in the map's (random)
//! order, as it does in a running sidecar. Criterion reports series per second; the time per
//! element is the cost per series (file writing and its `fsync` included).
//!
//! `cargo bench -p stackdriver-prometheus-sidecar --bench progress`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus_wal::WalPosition;
use stackdriver_prometheus_sidecar::progress::{DeliveryTracker, SavedBaseline};

fn tracker(series: u64) -> DeliveryTracker {
    let tracker = DeliveryTracker::new(WalPosition {
        segment: 0,
        offset: 0,
    });
    for r in 1..=series {
        let labels_hash = r.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let Some(id) = tracker.ack_for(r, labels_hash) else {
            continue;
        };
        // Every other series is a counter with a baseline.
        let baseline = (r % 2 == 0).then_some(SavedBaseline {
            reset_ts: 1_700_000_000_000,
            reset_value: 0.0,
            previous: r as f64,
        });
        tracker.series_delivered(id, 1_700_000_000_000 + r as i64, baseline);
    }
    tracker
}

fn save(c: &mut Criterion) {
    let mut group = c.benchmark_group("save");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for series in [180_941u64, 750_000] {
        let tracker = tracker(series);
        let dir = tempfile::tempdir().expect("temporary directory");
        group.throughput(Throughput::Elements(series));
        group.bench_with_input(BenchmarkId::from_parameter(series), &series, |b, _| {
            b.iter(|| tracker.save(dir.path()).expect("saved"))
        });
    }
    group.finish();
}

criterion_group!(benches, save);
criterion_main!(benches);
