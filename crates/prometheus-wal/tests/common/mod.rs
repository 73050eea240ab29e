//! Shared helpers of the integration tests: the real Prometheus 2.42 WAL fixtures (unpacked
//! once) and a summary of a WAL computed the way `walcheck.py` computes its `--json` output.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prometheus_wal::record::{
    decode_exemplars, decode_float_histogram_samples, decode_histogram_samples, decode_metadata,
    decode_mmap_markers, decode_tombstones,
};
use prometheus_wal::{
    Follower, Labels, RecordSource, RecordType, STALE_NAN_BITS, WalPosition, decode_samples,
    decode_series, record_type,
};
use serde_json::{Value, json};

const TARBALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/prometheus-2.42-wal.tar.gz"
);

/// The unpacked `real-wal/` directory of the fixture tarball. Unpacked once into cargo's
/// per-target temporary directory (atomically renamed into place, so concurrent test binaries
/// agree); tests must not modify it: copy what you change.
pub fn real_wal() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let size = fs::metadata(TARBALL).expect("fixture tarball").len();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dest = base.join(format!("prometheus-2.42-wal-{size}"));
        if !dest.join("real-wal/README.md").exists() {
            let staging = tempfile::Builder::new()
                .prefix("unpack-")
                .tempdir_in(&base)
                .unwrap();
            let gz = flate2::read::GzDecoder::new(fs::File::open(TARBALL).unwrap());
            tar::Archive::new(gz).unpack(staging.path()).unwrap();
            // Losing the race to another test binary is fine: it unpacked the same bytes.
            let _ = fs::rename(staging.path(), &dest);
        }
        dest.join("real-wal")
    })
}

/// The expected `walcheck.py --json` output for a fixture, e.g. `"D-exact-counts.wal"`.
pub fn expected(name: &str) -> Value {
    let path = real_wal().join("expected").join(format!("{name}.json"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// One record as a test keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub source: RecordSource,
    pub position: WalPosition,
    pub data: Vec<u8>,
}

/// Every record of a WAL directory as present now (checkpoint, then segments).
pub fn read_all(dir: &Path) -> Vec<Rec> {
    let mut f = Follower::open_to_end(dir).unwrap();
    let mut out = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        out.push(Rec {
            source: r.source,
            position: r.position,
            data: r.data.to_vec(),
        });
    }
    assert_eq!(f.stats().corruptions_skipped, 0);
    out
}

/// walcheck's per-part statistics (one for the checkpoint, one for the segments).
#[derive(Default)]
struct Part {
    records: BTreeMap<String, u64>,
    decoded_bytes: BTreeMap<String, u64>,
    entries: BTreeMap<String, u64>,
    series_refs: HashSet<u64>,
    duplicate_series: u64,
    sample_refs: HashSet<u64>,
    stale: u64,
    histogram_stale: u64,
    ooo: u64,
    without_series: u64,
    min_t: BTreeMap<String, i64>,
    max_t: BTreeMap<String, i64>,
    files: BTreeMap<u64, (u64, BTreeMap<String, u64>)>,
}

impl Part {
    fn bump_t(&mut self, kind: &str, t: i64) {
        let min = self.min_t.entry(kind.to_string()).or_insert(t);
        *min = (*min).min(t);
        let max = self.max_t.entry(kind.to_string()).or_insert(t);
        *max = (*max).max(t);
    }

    fn add(&mut self, kind: &str, n: usize) {
        *self.entries.entry(kind.to_string()).or_default() += n as u64;
    }

    fn to_json(&self) -> Value {
        let samples: u64 = [
            "float_samples",
            "histogram_samples",
            "float_histogram_samples",
        ]
        .iter()
        .map(|k| self.entries.get(*k).copied().unwrap_or(0))
        .sum();
        json!({
            "records_by_type": self.records,
            "decoded_bytes_by_type": self.decoded_bytes,
            "entries": self.entries,
            "distinct_series_refs_in_series_records": self.series_refs.len(),
            "duplicate_series_entries": self.duplicate_series,
            "distinct_refs_with_samples": self.sample_refs.len(),
            "samples_total": samples,
            "stale_markers": self.stale,
            "histogram_stale_markers": self.histogram_stale,
            "out_of_order_float_samples": self.ooo,
            "samples_without_preceding_series_record": self.without_series,
            "min_t": self.min_t,
            "max_t": self.max_t,
            "file_records": self.files.values().map(|(n, by)| json!({"records": n, "by_type": by})).collect::<Vec<_>>(),
        })
    }
}

/// Keys of a walcheck summary that [`summarize`] reproduces.
pub const SUMMARY_KEYS: &[&str] = &[
    "records_by_type",
    "decoded_bytes_by_type",
    "entries",
    "distinct_series_refs_in_series_records",
    "duplicate_series_entries",
    "distinct_refs_with_samples",
    "samples_total",
    "stale_markers",
    "histogram_stale_markers",
    "out_of_order_float_samples",
    "samples_without_preceding_series_record",
    "min_t",
    "max_t",
];

/// Reads a WAL directory with [`Follower::open_to_end`] and decodes every record, producing
/// walcheck's numbers: `{"checkpoint": <summary or null>, "segments": <summary>,
/// "distinct_series_total", "distinct_label_sets", "label_sets_with_multiple_refs",
/// "follow_stats"}`. Each summary also has `file_records`: per file, records and by type.
pub fn summarize(dir: &Path) -> Value {
    let mut f = Follower::open_to_end(dir).unwrap();
    let mut labels: HashMap<u64, Labels> = HashMap::new();
    let mut last_t: HashMap<u64, i64> = HashMap::new();
    let mut checkpoint = None::<(u64, Part)>;
    let mut segments = Part::default();
    let (mut series, mut samples, mut hs, mut fhs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ex, mut ts, mut mm, mut md) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut in_segments = false;
    while let Some(rec) = f.next_record().unwrap() {
        let (part, file) = match rec.source {
            RecordSource::Checkpoint(i) => (
                &mut checkpoint.get_or_insert_with(|| (i, Part::default())).1,
                0,
            ),
            RecordSource::Segment(i) => {
                if !in_segments {
                    // walcheck starts the out-of-order bookkeeping afresh for the segments.
                    in_segments = true;
                    last_t.clear();
                }
                (&mut segments, i)
            }
        };
        let t = record_type(rec.data);
        let name = t.name().to_string();
        *part.records.entry(name.clone()).or_default() += 1;
        *part.decoded_bytes.entry(name.clone()).or_default() += rec.data.len() as u64;
        let fe = part.files.entry(file).or_default();
        fe.0 += 1;
        *fe.1.entry(name).or_default() += 1;
        match t {
            RecordType::Series => {
                decode_series(rec.data, &mut series).unwrap();
                part.add("series", series.len());
                for s in series.drain(..) {
                    if !part.series_refs.insert(s.series_ref) {
                        part.duplicate_series += 1;
                    }
                    labels.insert(s.series_ref, s.labels);
                }
            }
            RecordType::Samples | RecordType::SamplesV2 => {
                decode_samples(rec.data, &mut samples).unwrap();
                part.add("float_samples", samples.len());
                for s in &samples {
                    part.bump_t("float_samples", s.t);
                    part.sample_refs.insert(s.series_ref);
                    if s.v.to_bits() == STALE_NAN_BITS {
                        part.stale += 1;
                    }
                    if !labels.contains_key(&s.series_ref) {
                        part.without_series += 1;
                    }
                    match last_t.get(&s.series_ref) {
                        Some(&lt) if s.t < lt => part.ooo += 1,
                        _ => {
                            last_t.insert(s.series_ref, s.t);
                        }
                    }
                }
            }
            RecordType::HistogramSamples
            | RecordType::CustomBucketsHistogramSamples
            | RecordType::HistogramSamplesV2 => {
                decode_histogram_samples(rec.data, &mut hs).unwrap();
                part.add("histogram_samples", hs.len());
                for h in &hs {
                    part.bump_t("histogram_samples", h.t);
                    part.sample_refs.insert(h.series_ref);
                    part.histogram_stale += u64::from(h.h.sum.to_bits() == STALE_NAN_BITS);
                    part.without_series += u64::from(!labels.contains_key(&h.series_ref));
                }
            }
            RecordType::FloatHistogramSamples
            | RecordType::CustomBucketsFloatHistogramSamples
            | RecordType::FloatHistogramSamplesV2 => {
                decode_float_histogram_samples(rec.data, &mut fhs).unwrap();
                part.add("float_histogram_samples", fhs.len());
                for h in &fhs {
                    part.bump_t("float_histogram_samples", h.t);
                    part.sample_refs.insert(h.series_ref);
                    part.histogram_stale += u64::from(h.fh.sum.to_bits() == STALE_NAN_BITS);
                    part.without_series += u64::from(!labels.contains_key(&h.series_ref));
                }
            }
            RecordType::Exemplars => {
                decode_exemplars(rec.data, &mut ex).unwrap();
                part.add("exemplars", ex.len());
                for e in &ex {
                    part.bump_t("exemplars", e.t);
                }
            }
            RecordType::Tombstones => {
                decode_tombstones(rec.data, &mut ts).unwrap();
                part.add("tombstones", ts.len());
            }
            RecordType::MmapMarkers => {
                decode_mmap_markers(rec.data, &mut mm).unwrap();
                part.add("mmap_markers", mm.len());
            }
            RecordType::Metadata => {
                decode_metadata(rec.data, &mut md).unwrap();
                part.add("metadata", md.len());
            }
            RecordType::Unknown(b) => panic!("unknown record type {b} at {}", rec.position),
        }
    }
    let mut by_lset: HashMap<&Labels, u64> = HashMap::new();
    for l in labels.values() {
        *by_lset.entry(l).or_default() += 1;
    }
    let stats = f.stats();
    json!({
        "checkpoint": checkpoint.map(|(i, p)| json!({"index": i, "summary": p.to_json()})),
        "segments": segments.to_json(),
        "distinct_series_total": labels.len(),
        "distinct_label_sets": by_lset.len(),
        "label_sets_with_multiple_refs": by_lset.values().filter(|&&n| n > 1).count(),
        "follow_stats": {
            "corruptions_skipped": stats.corruptions_skipped,
            "torn_tails": stats.torn_tails,
            "truncation_restarts": stats.truncation_restarts,
            "checkpoints_read": stats.checkpoints_read,
        },
    })
}
