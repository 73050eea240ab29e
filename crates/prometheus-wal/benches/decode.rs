//! Decode throughput on real Prometheus 2.42 WALs: reading records (pages, fragments, CRC,
//! snappy) and decoding series and sample records. Criterion reports MB/s of WAL bytes and
//! samples/s; the per-sample cost is printed once per input.
//!
//! `cargo bench -p prometheus-wal --bench decode`

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_wal::{Follower, RecordType, decode_samples, decode_series, record_type};

const TARBALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/prometheus-2.42-wal.tar.gz"
);

fn real_wal() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let size = fs::metadata(TARBALL).expect("fixture tarball").len();
    let dest = base.join(format!("bench-prometheus-2.42-wal-{size}"));
    if !dest.join("real-wal/README.md").exists() {
        let gz = flate2::read::GzDecoder::new(fs::File::open(TARBALL).unwrap());
        tar::Archive::new(gz).unpack(&dest).unwrap();
    }
    dest.join("real-wal")
}

fn wal_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Reads every record of `dir`; with `decode`, also decodes series and samples. Returns the
/// number of float samples.
fn read(dir: &Path, decode: bool) -> u64 {
    let mut follower = Follower::open_to_end(dir).unwrap();
    let (mut series, mut samples) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    while let Some(record) = follower.next_record().unwrap() {
        if !decode {
            n += record.data.len() as u64;
            continue;
        }
        match record_type(record.data) {
            RecordType::Series => decode_series(record.data, &mut series).unwrap(),
            RecordType::Samples => {
                decode_samples(record.data, &mut samples).unwrap();
                n += samples.len() as u64;
            }
            _ => {}
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let root = real_wal();
    for name in ["A-snappy-5m-blocks", "B-uncompressed-1m-blocks"] {
        let dir = root.join(name).join("wal");
        let bytes = wal_bytes(&dir);
        let samples = read(&dir, true);
        let start = Instant::now();
        let rounds = 5;
        for _ in 0..rounds {
            read(&dir, true);
        }
        let per = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "{name}: {bytes} bytes, {samples} samples: {:.1} ns/sample, {:.0} MB/s",
            per * 1e9 / samples as f64,
            bytes as f64 / per / 1e6
        );
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function("records", |b| b.iter(|| read(&dir, false)));
        group.throughput(Throughput::Elements(samples));
        group.bench_function("records+decode", |b| b.iter(|| read(&dir, true)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
