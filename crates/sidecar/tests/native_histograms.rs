//! Native histograms through the whole pipeline into the emulator, which checks every point as
//! strictly as Cloud Monitoring: integer and float histogram records written the way Prometheus
//! writes them (a counter histogram whose client lowers its resolution and then restarts, with
//! zero and negative observations and a stale marker at the end; a gauge histogram; a sample
//! whose spans do not match its buckets) with exemplars, series resolved from tables, and the
//! gRPC client sending to the emulator. Every bucket of every point is checked against where each
//! observation lands by the API's own definition of exponential buckets.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use common::native::{Observed, gcm_bucket};
use gcm_api::api::Distribution;
use gcm_api::api::distribution::bucket_options::Options;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType as ProtoValueType};
use gcm_api::monitoring::{DroppedLabels, SpanContext, TimeSeries, typed_value};
use prometheus_wal::record::encode::{
    encode_exemplars, encode_float_histogram_samples, encode_histogram_samples, encode_samples,
    encode_series,
};
use prometheus_wal::record::{
    CounterResetHint, RecordType, RefExemplar, RefFloatHistogramSample, RefHistogramSample, Span,
};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Follower, RefSample, STALE_NAN_BITS};
use prost::Message;
use stackdriver_prometheus_sidecar::metadata::MetricType;
use stackdriver_prometheus_sidecar::progress::Resume;
use stackdriver_prometheus_sidecar::retrieval::{Reader, ReaderExit, ReaderProgress, Resolver};
use stackdriver_prometheus_sidecar::stats::{ExemplarDrop, HistogramDrop, SampleSkip, Stats};

use common::tables::{TableSources, series};

const PREFIX: &str = "external.googleapis.com/prometheus/";

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn distribution(ts: &TimeSeries, i: usize) -> &Distribution {
    match ts.points[i].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::DistributionValue(d)) => d,
        other => panic!("not a distribution: {other:?}"),
    }
}

/// Checks that `d` holds exactly `observations`: each in the bucket the API's definition of its
/// exponential buckets puts it, the count, and the mean.
fn assert_holds(d: &Distribution, observations: &[f64], what: &str) {
    let Some(Options::ExponentialBuckets(e)) = &d.bucket_options.as_ref().unwrap().options else {
        panic!("{what}: not exponential buckets: {d:?}");
    };
    let mut expected = vec![0i64; e.num_finite_buckets as usize + 2];
    for &v in observations {
        expected[gcm_bucket(e.num_finite_buckets, e.growth_factor, e.scale, v)] += 1;
    }
    let mut got = d.bucket_counts.clone();
    got.resize(expected.len(), 0);
    assert_eq!(
        got, expected,
        "{what}: buckets of {observations:?} in {d:?}"
    );
    assert_eq!(d.count, observations.len() as i64, "{what}");
    let mean = observations.iter().sum::<f64>() / observations.len() as f64;
    assert!(
        (d.mean - mean).abs() <= 1e-9 * mean.abs(),
        "{what}: mean {}",
        d.mean
    );
}

/// The observations of the counter histogram's scrape `k`: a few of each kind, zero and
/// negative ones included, none near a bucket bound at schemas 3 and 2.
fn observations(k: usize) -> Vec<f64> {
    const VALUES: [f64; 8] = [0.0, -0.7, 0.013, 0.3, 1.7, 5.5, 42.0, 900.0];
    (0..=k % 4 + 1)
        .map(|j| VALUES[(3 * k + j) % VALUES.len()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_arrive_bucket_for_bucket() {
    for v in [0.013f64, 0.3, 1.7, 5.5, 42.0, 900.0, 0.7] {
        for schema in [2, 3] {
            let x = v.log2() * f64::from(schema).exp2();
            assert!((x - x.round()).abs() > 1e-3, "{v} is near a bound");
        }
    }
    // Nine scrapes 10 s apart, ending a few minutes ago (the API refuses points older than
    // 25 h and ones closer than 5 s).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now - 300_000) / 1000 * 1000;
    let t = |k: usize| t0 + k as i64 * 10_000;

    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("00000000")).unwrap();
    let mut w = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    encode_series(
        &[
            series(1, "rpc_latency_seconds", &[]),
            series(2, "queue_depth", &[]),
            series(3, "broken_seconds", &[]),
            series(4, "up", &[]),
        ],
        &mut buf,
    );
    w.log(&buf).unwrap();

    // The counter histogram: schema 3, lowered to 2 before scrape 4; the exporter restarts
    // before scrape 6; a stale marker at scrape 8.
    let mut counter = Observed::new(3, 0.001);
    let mut since_start: Vec<Vec<f64>> = Vec::new();
    let mut life: Vec<f64> = Vec::new();
    for k in 0..9 {
        if k == 4 {
            counter.lower_schema();
        }
        if k == 6 {
            counter = Observed::new(2, 0.001);
            life.clear();
        }
        // Each commit begins with the scrape's float samples (`up`).
        buf.clear();
        encode_samples(
            &[RefSample {
                series_ref: 4,
                t: t(k),
                v: 1.0,
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();
        let exemplars = (k < 8).then(|| {
            let exemplar = |series_ref, t, v| RefExemplar {
                series_ref,
                t,
                v,
                labels: common::tables::labels(&[
                    ("span_id", SPAN),
                    ("trace_id", TRACE),
                    ("user", "ann"),
                ]),
            };
            let mut buf = Vec::new();
            encode_exemplars(
                &[
                    exemplar(1, t(k) - 500, *observations(k).last().unwrap()),
                    exemplar(2, t(k) - 100, gauge_values(k)[0]),
                    exemplar(3, t(k), 1.0),
                    exemplar(99, t(k), 1.0),
                ],
                &mut buf,
            );
            buf
        });
        if let Some(exemplars) = &exemplars
            && k % 2 == 1
        {
            w.log(exemplars).unwrap();
        }
        let h = if k < 8 {
            for v in observations(k) {
                counter.observe(v);
                life.push(v);
            }
            counter.integer(CounterResetHint::Unknown)
        } else {
            let mut stale = counter.integer(CounterResetHint::Unknown);
            stale.sum = f64::from_bits(STALE_NAN_BITS);
            stale
        };
        since_start.push(life.clone());
        let mut broken = counter.integer(CounterResetHint::Unknown);
        broken.positive_spans.push(Span {
            offset: 3,
            length: 2,
        });
        buf.clear();
        encode_histogram_samples(
            RecordType::HistogramSamples,
            &[
                RefHistogramSample {
                    series_ref: 1,
                    t: t(k),
                    st: 0,
                    h,
                },
                RefHistogramSample {
                    series_ref: 3,
                    t: t(k),
                    st: 0,
                    h: broken,
                },
            ],
            &mut buf,
        );
        w.log(&buf).unwrap();

        // The gauge histogram: this scrape's queue lengths only.
        let mut gauge = Observed::new(0, 0.0);
        for v in gauge_values(k) {
            gauge.observe(v);
        }
        buf.clear();
        encode_float_histogram_samples(
            RecordType::FloatHistogramSamples,
            &[RefFloatHistogramSample {
                series_ref: 2,
                t: t(k),
                st: 0,
                fh: gauge.float(CounterResetHint::Gauge),
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();

        // The commit's exemplars: after its histograms, as Prometheus writes them since 2.5x,
        // or before them (odd scrapes), as 2.42 does.
        if let Some(exemplars) = &exemplars
            && k % 2 == 0
        {
            w.log(exemplars).unwrap();
        }
    }
    w.close().unwrap();

    let (all, stats, rejected) = run(dir.path()).await;
    assert_eq!(rejected, 0, "the emulator refused points");
    let by_type = |metric_type: &str| -> Vec<&TimeSeries> {
        all.iter()
            .filter(|ts| ts.metric.as_ref().unwrap().r#type == metric_type)
            .collect()
    };

    let h = by_type(&format!("{PREFIX}rpc_latency_seconds"));
    assert_eq!(h.len(), 1, "{all:#?}");
    let h = h[0];
    assert_eq!(h.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(h.value_type, ProtoValueType::Distribution as i32);
    // Scrape 0 is the baseline, scrape 8 a stale marker.
    assert_eq!(h.points.len(), 7);
    let first = &since_start[0];
    // The API lists points newest first.
    for (i, k) in (1..8).rev().enumerate() {
        let interval = h.points[i].interval.unwrap();
        let (start, end) = (
            millis(&interval.start_time.unwrap()),
            millis(&interval.end_time.unwrap()),
        );
        assert_eq!(end, t(k));
        let held: Vec<f64> = if k < 6 {
            assert_eq!(start, t(0), "scrape {k}");
            since_start[k][first.len()..].to_vec()
        } else {
            assert_eq!(start, t(6) - 1, "scrape {k}: a reset");
            since_start[k].clone()
        };
        assert_holds(distribution(h, i), &held, &format!("scrape {k}"));
    }

    let g = by_type(&format!("{PREFIX}queue_depth"));
    assert_eq!(g.len(), 1, "{all:#?}");
    let g = g[0];
    assert_eq!(g.metric_kind, MetricKind::Gauge as i32);
    assert_eq!(g.points.len(), 9);
    for (i, k) in (0..9).rev().enumerate() {
        assert!(g.points[i].interval.unwrap().start_time.is_none());
        assert_holds(distribution(g, i), &gauge_values(k), &format!("gauge {k}"));
    }

    // Exemplars: on the point covering their time, with their trace and other labels.
    for ts in [h, g] {
        for (i, point) in ts.points.iter().enumerate() {
            let d = distribution(ts, i);
            let end = millis(&point.interval.unwrap().end_time.unwrap());
            // No exemplar at scrape 8; scrape 6's is older than the reset point's start.
            let none = if ts.metric_kind == MetricKind::Gauge as i32 {
                end == t(8)
            } else {
                end == t(6)
            };
            if none {
                assert!(d.exemplars.is_empty());
                continue;
            }
            assert_eq!(d.exemplars.len(), 1, "{}: {d:?}", describe(ts));
            let e = &d.exemplars[0];
            assert!(millis(e.timestamp.as_ref().unwrap()) <= end);
            let types: Vec<&str> = e.attachments.iter().map(|a| a.type_url.as_str()).collect();
            assert_eq!(
                types,
                [
                    "type.googleapis.com/google.monitoring.v3.SpanContext",
                    "type.googleapis.com/google.monitoring.v3.DroppedLabels"
                ]
            );
            let span = SpanContext::decode(e.attachments[0].value.as_slice()).unwrap();
            assert_eq!(
                span.span_name,
                format!("projects/proj/traces/{TRACE}/spans/{SPAN}")
            );
            let dropped = DroppedLabels::decode(e.attachments[1].value.as_slice()).unwrap();
            assert_eq!(dropped.label.get("user").map(String::as_str), Some("ann"));
        }
    }
    assert_eq!(stats.reader.exemplars_read.load(Relaxed), 32);
    assert_eq!(stats.reader.exemplars_attached.load(Relaxed), 14);
    // Scrape 0's is the baseline's, whose sample is not sent; scrape 6's precedes the reset
    // point's start; the broken histogram's points are not sent.
    assert_eq!(
        stats.reader.exemplars_dropped_count(ExemplarDrop::NoPoint),
        10
    );
    assert_eq!(
        stats
            .reader
            .exemplars_dropped_count(ExemplarDrop::UnknownSeries),
        8
    );

    assert!(by_type(&format!("{PREFIX}broken_seconds")).is_empty());
    assert_eq!(
        stats
            .reader
            .histograms_dropped_count(HistogramDrop::InvalidSpans),
        9
    );
    assert_eq!(stats.reader.skipped_count(SampleSkip::Nan), 1);
    assert_eq!(stats.reader.native_histograms_read.load(Relaxed), 27);
    assert_eq!(stats.reader.native_histogram_points.load(Relaxed), 16);
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn describe(ts: &TimeSeries) -> &str {
    &ts.metric.as_ref().unwrap().r#type
}

/// Queue lengths seen by the gauge histogram at scrape `k`: they go up and down.
fn gauge_values(k: usize) -> Vec<f64> {
    let base = [3.3, 17.5, 0.6][k % 3];
    (0..k % 3 + 1).map(|j| base * (j + 1) as f64).collect()
}

/// Reads the WAL in `dir` into a fresh emulator; returns what it holds, the stats and how many
/// points it refused.
async fn run(dir: &std::path::Path) -> (Vec<TimeSeries>, Arc<Stats>, u64) {
    let emulator = common::start_quiet_emulator().await;
    let stats = Arc::new(Stats::default());
    let (exporter, tracker) = common::tables::emulator_exporter(&emulator, &stats);
    let sources = TableSources {
        metadata: HashMap::from([
            ("rpc_latency_seconds", MetricType::Histogram),
            ("broken_seconds", MetricType::Histogram),
            ("queue_depth", MetricType::GaugeHistogram),
            ("up", MetricType::Gauge),
        ]),
    };
    let resolver = Resolver::new(sources, PREFIX.trim_end_matches('/').into(), false);
    let reader = Reader::new(
        resolver,
        exporter.handle(),
        stats.reader.clone(),
        tokio::runtime::Handle::current(),
        ReaderProgress {
            tracker,
            resume: Resume::default(),
            start_after_ms: None,
        },
    );
    let mut follower = Follower::open_to_end(dir).unwrap();
    let exit = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ReaderExit::Stopped));
    exporter.finish().await;
    let rejected = emulator.emulator.store().stats().points_rejected;
    let all = common::EmulatorClient::connect(emulator.addr, "proj")
        .await
        .all_series()
        .await;
    (all, stats, rejected)
}

#[test]
fn test_values_stay_off_bucket_bounds() {
    for k in 0..9 {
        for v in gauge_values(k) {
            let x = v.log2();
            assert!((x - x.round()).abs() > 1e-3, "{v}");
        }
    }
}
