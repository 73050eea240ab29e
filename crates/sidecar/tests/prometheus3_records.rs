//! Records only Prometheus 3 writes, through the pipeline into the emulator: float samples with
//! start timestamps (11), custom-bucket histograms (9, 10), native histograms with start
//! timestamps (12, 13) and metadata records (6), next to the `series_state.json` Prometheus 3.11
//! keeps in the WAL directory. Prometheus 3 cannot run here, so the WAL is written by the
//! project's own writer from the format in Prometheus' `tsdb/record`, and checked by the
//! independent decoder `scripts/walcheck.py` before the sidecar reads it.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use common::native::Observed;
use common::tables::{TableSources, series};
use gcm_api::api::Distribution;
use gcm_api::api::distribution::bucket_options::Options;
use gcm_api::api::metric_descriptor::MetricKind;
use gcm_api::monitoring::{TimeSeries, typed_value};
use prometheus_wal::record::encode::{
    encode_float_histogram_samples, encode_histogram_samples, encode_metadata, encode_samples_v2,
    encode_series,
};
use prometheus_wal::record::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, MetricType as WalType,
    RecordType, RefFloatHistogramSample, RefHistogramSample, RefMetadata, RefSampleSt, Span,
};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Follower, RefSample};
use stackdriver_prometheus_sidecar::metadata::MetricType;
use stackdriver_prometheus_sidecar::retrieval::{Reader, ReaderExit, ReaderProgress, Resolver};
use stackdriver_prometheus_sidecar::stats::Stats;

const PREFIX: &str = "external.googleapis.com/prometheus/";
/// Custom bucket bounds.
const BOUNDS: [f64; 3] = [0.1, 1.0, 10.0];

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn distribution(ts: &TimeSeries, i: usize) -> &Distribution {
    match ts.points[i].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::DistributionValue(d)) => d,
        other => panic!("not a distribution: {other:?}"),
    }
}

/// (start, end) of every point, oldest first.
fn intervals(ts: &TimeSeries) -> Vec<(Option<i64>, i64)> {
    ts.points
        .iter()
        .rev()
        .map(|p| {
            let i = p.interval.unwrap();
            (
                i.start_time.as_ref().map(millis),
                millis(&i.end_time.unwrap()),
            )
        })
        .collect()
}

/// A custom-bucket histogram with `per_bucket[i]` observations up to `BOUNDS[i]` (the last one
/// above the last bound), as an integer histogram holds it: spans over the bucket indices,
/// counts as deltas.
fn custom(per_bucket: [u64; 4]) -> Histogram {
    let mut previous = 0i64;
    let deltas = per_bucket
        .iter()
        .map(|c| {
            let d = *c as i64 - previous;
            previous = *c as i64;
            d
        })
        .collect();
    Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: per_bucket.iter().sum(),
        sum: per_bucket.iter().sum::<u64>() as f64 * 0.5,
        positive_spans: vec![Span {
            offset: 0,
            length: 4,
        }],
        positive_deltas: deltas,
        custom_values: BOUNDS.to_vec(),
        ..Histogram::default()
    }
}

/// The same as a float histogram.
fn custom_float(per_bucket: [u64; 4], hint: CounterResetHint) -> FloatHistogram {
    let h = custom(per_bucket);
    FloatHistogram {
        counter_reset_hint: hint,
        schema: h.schema,
        count: h.count as f64,
        sum: h.sum,
        positive_spans: h.positive_spans,
        positive_buckets: per_bucket.iter().map(|c| *c as f64).collect(),
        custom_values: h.custom_values,
        ..FloatHistogram::default()
    }
}

/// Writes the WAL: four scrapes 10 s apart from `t0`.
fn write_wal(dir: &Path, t0: i64) {
    let t = |k: usize| t0 + k as i64 * 10_000;
    std::fs::write(dir.join("series_state.json"), b"{\"series\": []}").unwrap();
    let file = std::fs::File::create(dir.join("00000000")).unwrap();
    let mut w = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    encode_series(
        &[
            series(1, "requests_total", &[]),
            series(2, "rpc_seconds", &[]),
            series(3, "queue_length", &[]),
            series(4, "wait_seconds", &[]),
            series(5, "load_ratio", &[]),
        ],
        &mut buf,
    );
    w.log(&buf).unwrap();
    // Metadata records for the series the API knows nothing about.
    let meta = |series_ref, metric_type| RefMetadata {
        series_ref,
        metric_type,
        unit: String::new(),
        help: "from the WAL".into(),
    };
    buf.clear();
    encode_metadata(
        &[
            meta(1, WalType::Counter),
            meta(2, WalType::Histogram),
            meta(3, WalType::GaugeHistogram),
            meta(4, WalType::Histogram),
        ],
        &mut buf,
    );
    w.log(&buf).unwrap();
    let mut wait = Observed::new(1, 0.001);
    for k in 0..4 {
        // The counter restarts before scrape 3: a new start time and a lower value.
        let st = if k < 3 { t0 - 5_000 } else { t(3) - 2_000 };
        let v = if k < 3 { 100.0 + 10.0 * k as f64 } else { 4.0 };
        buf.clear();
        encode_samples_v2(
            &[RefSampleSt {
                sample: RefSample {
                    series_ref: 1,
                    t: t(k),
                    v,
                },
                st,
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();

        let n = k as u64;
        buf.clear();
        encode_histogram_samples(
            RecordType::CustomBucketsHistogramSamples,
            &[RefHistogramSample {
                series_ref: 2,
                t: t(k),
                st: 0,
                h: custom([n, 2 * n, 0, n]),
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();

        buf.clear();
        encode_float_histogram_samples(
            RecordType::CustomBucketsFloatHistogramSamples,
            &[RefFloatHistogramSample {
                series_ref: 3,
                t: t(k),
                st: 0,
                fh: custom_float([3 - n, 1, n, 0], CounterResetHint::Gauge),
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();

        for v in [0.3, 3.0][..k % 2 + 1].iter() {
            wait.observe(*v);
        }
        buf.clear();
        encode_histogram_samples(
            RecordType::HistogramSamplesV2,
            &[RefHistogramSample {
                series_ref: 4,
                t: t(k),
                st: t0 - 1_000,
                h: wait.integer(CounterResetHint::Unknown),
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();

        let mut load = Observed::new(0, 0.0);
        load.observe(0.75 + k as f64);
        buf.clear();
        encode_float_histogram_samples(
            RecordType::FloatHistogramSamplesV2,
            &[RefFloatHistogramSample {
                series_ref: 5,
                t: t(k),
                st: 0,
                fh: load.float(CounterResetHint::Gauge),
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();
    }
    w.close().unwrap();
}

/// What the independent decoder finds in the WAL.
fn walcheck(dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/walcheck.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .args(["--json", "--dump", "4"])
        .output()
        .expect("python3 runs walcheck.py");
    assert!(
        out.status.success(),
        "walcheck failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("walcheck prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_3_records_arrive_as_prometheus_wrote_them() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now - 300_000) / 1000 * 1000;
    let t = |k: usize| t0 + k as i64 * 10_000;
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), t0);

    // The independent decoder reads every record as written.
    let check = walcheck(dir.path());
    let summary = &check["segments_summary"];
    assert_eq!(summary["errors"], serde_json::json!([]), "{check:#}");
    let records = &summary["records_by_type"];
    for (name, n) in [
        ("series", 1),
        ("metadata", 1),
        ("samples_v2", 4),
        ("custom_buckets_histogram_samples", 4),
        ("custom_buckets_float_histogram_samples", 4),
        ("histogram_samples_v2", 4),
        ("float_histogram_samples_v2", 4),
    ] {
        assert_eq!(records[name], n, "{name} records: {check:#}");
    }
    assert_eq!(summary["metadata_types"]["histogram"], 2, "{check:#}");
    let first = &summary["first_records"];
    assert_eq!(first["samples_v2"][0][0]["st"], t0 - 5_000);
    assert_eq!(first["samples_v2"][3][0]["st"], t(3) - 2_000);
    let nhcb = &first["custom_buckets_histogram_samples"][1][0]["h"];
    assert_eq!(nhcb["schema"], CUSTOM_BUCKETS_SCHEMA);
    assert_eq!(nhcb["custom_values"], serde_json::json!(BOUNDS));
    assert_eq!(first["histogram_samples_v2"][0][0]["st"], t0 - 1_000);

    // Only the float gauge histogram's type comes from the API; the rest from the WAL.
    let sources = TableSources {
        metadata: HashMap::from([("load_ratio", MetricType::GaugeHistogram)]),
    };
    let emulator = common::start_quiet_emulator().await;
    let stats = Arc::new(Stats::default());
    let (exporter, tracker) = common::tables::emulator_exporter(&emulator, &stats);
    let resolver = Resolver::new(sources, PREFIX.trim_end_matches('/').into(), false);
    let reader = Reader::new(
        resolver,
        exporter.handle(),
        stats.reader.clone(),
        tokio::runtime::Handle::current(),
        ReaderProgress {
            tracker,
            resume: Default::default(),
            start_after_ms: None,
        },
    );
    let mut follower = Follower::open_to_end(dir.path()).unwrap();
    let exit = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ReaderExit::Stopped));
    exporter.finish().await;
    assert_eq!(emulator.emulator.store().stats().points_rejected, 0);
    let all = common::EmulatorClient::connect(emulator.addr, "proj")
        .await
        .all_series()
        .await;
    let one = |name: &str| -> &TimeSeries {
        let found: Vec<&TimeSeries> = all
            .iter()
            .filter(|ts| ts.metric.as_ref().unwrap().r#type == format!("{PREFIX}{name}"))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {all:#?}");
        found[0]
    };

    // The counter: every sample sent as it is, from its start time; the restart is a new
    // interval.
    let counter = one("requests_total");
    assert_eq!(counter.metric_kind, MetricKind::Cumulative as i32);
    let st0 = Some(t0 - 5_000);
    assert_eq!(
        intervals(counter),
        vec![
            (st0, t(0)),
            (st0, t(1)),
            (st0, t(2)),
            (Some(t(3) - 2_000), t(3))
        ]
    );
    let values: Vec<f64> = counter
        .points
        .iter()
        .rev()
        .map(|p| match p.value.as_ref().unwrap().value {
            Some(typed_value::Value::DoubleValue(v)) => v,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(values, [100.0, 110.0, 120.0, 4.0]);

    // The custom-bucket counter histogram: explicit bounds, measured from scrape 0.
    let nhcb = one("rpc_seconds");
    assert_eq!(nhcb.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(intervals(nhcb).len(), 3);
    for (i, k) in (1..4).rev().enumerate() {
        let d = distribution(nhcb, i);
        let Some(Options::ExplicitBuckets(e)) = &d.bucket_options.as_ref().unwrap().options else {
            panic!("{d:?}");
        };
        assert_eq!(e.bounds, BOUNDS);
        let k = k as i64;
        assert_eq!(d.bucket_counts, [k, 2 * k, 0, k], "scrape {k}");
        assert_eq!(d.count, 4 * k);
    }

    // The custom-bucket gauge histogram: each scrape as it is.
    let gauge = one("queue_length");
    assert_eq!(gauge.metric_kind, MetricKind::Gauge as i32);
    for (i, k) in (0..4).rev().enumerate() {
        let k = k as i64;
        assert_eq!(distribution(gauge, i).bucket_counts, [3 - k, 1, k, 0]);
    }

    // The native histogram with a start time: its first sample is sent too.
    let wait = one("wait_seconds");
    assert_eq!(
        intervals(wait),
        (0..4).map(|k| (Some(t0 - 1_000), t(k))).collect::<Vec<_>>()
    );
    let counts: Vec<i64> = (0..4).rev().map(|i| distribution(wait, i).count).collect();
    assert_eq!(counts, [1, 3, 4, 6]);

    // The float native gauge histogram, typed by the API.
    let load = one("load_ratio");
    assert_eq!(load.metric_kind, MetricKind::Gauge as i32);
    assert_eq!(load.points.len(), 4);

    assert_eq!(stats.reader.wal_metadata_read.load(Relaxed), 4);
    assert_eq!(stats.reader.native_histograms_read.load(Relaxed), 16);
}
