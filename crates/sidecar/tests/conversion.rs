//! Conversion through the whole pipeline into the emulator, which checks every point as strictly
//! as Cloud Monitoring: a WAL written the way Prometheus writes it (a histogram whose target
//! restarts, a histogram with only a `+Inf` bucket, a counter, a recording rule, a series left
//! out by a filter), series resolved from tables, filters, renames and an aggregated counter as
//! the config file and flags set them, and the gRPC client sending to the emulator.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use gcm_api::api::distribution::bucket_options::Options;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType as ProtoValueType};
use gcm_api::monitoring::{TimeSeries, typed_value};
use prometheus_wal::record::RefExemplar;
use prometheus_wal::record::encode::{encode_exemplars, encode_samples, encode_series};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Follower, RefSample, RefSeries};
use stackdriver_prometheus_sidecar::filter::{Selector, SeriesFilter};
use stackdriver_prometheus_sidecar::metadata::MetricType;
use stackdriver_prometheus_sidecar::progress::Resume;
use stackdriver_prometheus_sidecar::retrieval::aggregator::{
    AggregatedCounterConfig, CounterAggregator,
};
use stackdriver_prometheus_sidecar::retrieval::{Reader, ReaderExit, ReaderProgress, Resolver};
use stackdriver_prometheus_sidecar::stats::{DropReason, ExemplarDrop, HistogramDrop, Stats};

use common::tables::{TableSources, series};

const PREFIX: &str = "external.googleapis.com/prometheus/";

fn write_wal(dir: &std::path::Path, series: &[RefSeries], batches: &[Vec<RefSample>]) {
    let file = std::fs::File::create(dir.join("00000000")).unwrap();
    let mut w = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    encode_series(series, &mut buf);
    w.log(&buf).unwrap();
    for batch in batches {
        buf.clear();
        encode_samples(batch, &mut buf);
        w.log(&buf).unwrap();
        // The scrape's exemplars: one of the histogram's `le="1"` bucket, one of the counter.
        let t = batch[0].t;
        let exemplar = |series_ref, v| RefExemplar {
            series_ref,
            t,
            v,
            labels: common::tables::labels(&[("trace_id", "not-an-id")]),
        };
        buf.clear();
        encode_exemplars(&[exemplar(2, 0.5), exemplar(20, 1.0)], &mut buf);
        w.log(&buf).unwrap();
    }
    w.close().unwrap();
}

fn value(ts: &TimeSeries, i: usize) -> &typed_value::Value {
    ts.points[i].value.as_ref().unwrap().value.as_ref().unwrap()
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_renames_filters_and_aggregates_pass_the_emulator() {
    // Eight scrapes 10 s apart, ending a few minutes ago (the API refuses points older than
    // 25 h and ones closer than 5 s).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = (now - 300_000) / 1000 * 1000;
    let t = |k: i64| t0 + k * 10_000;

    let all_series = vec![
        series(1, "rpc_seconds_bucket", &[("le", "0.1")]),
        series(2, "rpc_seconds_bucket", &[("le", "1")]),
        series(3, "rpc_seconds_bucket", &[("le", "+Inf")]),
        series(4, "rpc_seconds_sum", &[]),
        series(5, "rpc_seconds_count", &[]),
        series(11, "odd_seconds_bucket", &[("le", "+Inf")]),
        series(12, "odd_seconds_sum", &[]),
        series(13, "odd_seconds_count", &[]),
        series(20, "requests_total", &[]),
        series(21, "job:requests:rate1m", &[]),
        series(22, "secret_gauge", &[]),
    ];
    let mut batches = Vec::new();
    for k in 0..8i64 {
        // The target restarts before scrape 5: every part counts from zero again.
        let m = if k < 5 { k as f64 } else { (k - 4) as f64 };
        let s = |series_ref, v| RefSample {
            series_ref,
            t: t(k),
            v,
        };
        batches.push(vec![
            s(1, m),
            s(2, 2.0 * m),
            s(3, 3.0 * m),
            s(4, 1.5 * m),
            s(5, 3.0 * m),
            s(20, 10.0 * k as f64),
            s(21, 0.5),
            s(22, 1.0),
            // Last in the record: the run ends with the record.
            s(11, m),
            s(12, m),
            s(13, m),
        ]);
    }
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), &all_series, &batches);

    let emulator = common::start_emulator().await;
    let stats = Arc::new(Stats::default());
    let (exporter, tracker) = common::tables::emulator_exporter(&emulator, &stats);
    let sources = TableSources {
        metadata: HashMap::from([
            ("rpc_seconds", MetricType::Histogram),
            ("odd_seconds", MetricType::Histogram),
            ("requests_total", MetricType::Counter),
            ("secret_gauge", MetricType::Gauge),
        ]),
    };
    let resolver = Resolver::new(sources, PREFIX.trim_end_matches('/').into(), false).with_renames(
        HashMap::from([(
            "job:requests:rate1m".to_string(),
            "job_requests_rate1m".to_string(),
        )]),
    );
    let aggregator = Arc::new(CounterAggregator::new(
        vec![AggregatedCounterConfig {
            metric: "all_requests".into(),
            help: "Requests of every job".into(),
            filters: vec![Selector::parse("requests_total").unwrap()],
        }],
        "proj",
    ));
    let filter =
        SeriesFilter::from_flags(&[r#"{job="app",__name__!="secret_gauge"}"#.into()], &[]).unwrap();
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
    )
    .with_filter(filter)
    .with_aggregator(aggregator.clone());
    let mut follower = Follower::open_to_end(dir.path()).unwrap();
    let exit = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ReaderExit::Stopped));
    exporter.finish().await;

    let store_stats = emulator.emulator.store().stats();
    assert_eq!(
        store_stats.points_rejected,
        0,
        "the emulator refused points: {}",
        store_stats.summary_line()
    );
    let all = common::EmulatorClient::connect(emulator.addr, "proj")
        .await
        .all_series()
        .await;
    let by_type = |metric_type: &str| -> Vec<&TimeSeries> {
        all.iter()
            .filter(|ts| ts.metric.as_ref().unwrap().r#type == metric_type)
            .collect()
    };

    // The histogram: one CUMULATIVE DISTRIBUTION series without `le`, named after the family.
    let h = by_type(&format!("{PREFIX}rpc_seconds"));
    assert_eq!(h.len(), 1, "{all:#?}");
    let h = h[0];
    assert_eq!(h.metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(h.value_type, ProtoValueType::Distribution as i32);
    assert!(h.metric.as_ref().unwrap().labels.is_empty());
    assert_eq!(h.points.len(), 7, "scrape 0 is the baseline");
    // The API lists points newest first.
    for (i, point) in h.points.iter().rev().enumerate() {
        let k = i as i64 + 1;
        let interval = point.interval.unwrap();
        let (start, end) = (
            millis(&interval.start_time.unwrap()),
            millis(&interval.end_time.unwrap()),
        );
        let Some(typed_value::Value::DistributionValue(d)) =
            point.value.as_ref().and_then(|v| v.value.as_ref())
        else {
            panic!("not a distribution: {point:?}");
        };
        let Some(Options::ExplicitBuckets(b)) = &d.bucket_options.as_ref().unwrap().options else {
            panic!("not explicit buckets: {d:?}");
        };
        assert_eq!(b.bounds, [0.1, 1.0]);
        assert_eq!(end, t(k));
        // Before the restart: increases since scrape 0. After: values since the restart, from
        // 1 ms before the first scrape that went down.
        let (expected_start, m) = if k < 5 { (t(0), k) } else { (t(5) - 1, k - 4) };
        assert_eq!(start, expected_start, "point {k}");
        assert_eq!(d.count, 3 * m, "point {k}");
        assert_eq!(d.bucket_counts, [m, m, m], "point {k}");
        assert_eq!(d.mean, 0.5, "point {k}");
    }

    // Each point after the baseline has its scrape's exemplar; the trace ID is not one, so it
    // stays a label. The baseline scrape's and the counter's are counted.
    for point in &h.points {
        let Some(typed_value::Value::DistributionValue(d)) =
            point.value.as_ref().and_then(|v| v.value.as_ref())
        else {
            panic!("not a distribution: {point:?}");
        };
        assert_eq!(d.exemplars.len(), 1, "{d:?}");
        let e = &d.exemplars[0];
        assert_eq!(e.value, 0.5);
        assert_eq!(
            millis(e.timestamp.as_ref().unwrap()),
            millis(&point.interval.unwrap().end_time.unwrap())
        );
        assert_eq!(e.attachments.len(), 1);
        assert!(e.attachments[0].type_url.ends_with("DroppedLabels"));
    }
    assert_eq!(stats.reader.exemplars_attached.load(Relaxed), 7);
    assert_eq!(
        stats.reader.exemplars_dropped_count(ExemplarDrop::NoPoint),
        1
    );
    assert_eq!(
        stats
            .reader
            .exemplars_dropped_count(ExemplarDrop::NotAHistogram),
        8
    );

    // Only a +Inf bucket: Cloud Monitoring would refuse it (and the whole request with it).
    assert!(by_type(&format!("{PREFIX}odd_seconds")).is_empty());
    assert_eq!(
        stats
            .reader
            .histograms_dropped_count(HistogramDrop::NoFiniteBounds),
        8
    );

    // The recording rule arrives under its new name, as a gauge.
    let rule = by_type(&format!("{PREFIX}job_requests_rate1m"));
    assert_eq!(rule.len(), 1, "{all:#?}");
    assert_eq!(rule[0].metric_kind, MetricKind::Gauge as i32);
    assert_eq!(rule[0].points.len(), 8);

    // The filtered series is not sent, and counted once, by name.
    assert!(by_type(&format!("{PREFIX}secret_gauge")).is_empty());
    assert_eq!(stats.reader.series_dropped_count(DropReason::Filtered), 1);
    assert!(
        stats.reader.series_dropped_by_metric().contains(&(
            DropReason::Filtered,
            "secret_gauge".to_string(),
            1
        )),
        "{:?}",
        stats.reader.series_dropped_by_metric()
    );

    // The aggregate: one point after 60 s of WAL time, with the increase until then.
    let agg = by_type("custom.googleapis.com/opencensus/all_requests");
    assert_eq!(agg.len(), 1, "{all:#?}");
    assert_eq!(agg[0].metric_kind, MetricKind::Cumulative as i32);
    assert_eq!(agg[0].resource.as_ref().unwrap().r#type, "global");
    assert_eq!(agg[0].points.len(), 1);
    let interval = agg[0].points[0].interval.unwrap();
    assert_eq!(millis(&interval.start_time.unwrap()), t(0));
    assert_eq!(millis(&interval.end_time.unwrap()), t(6));
    assert_eq!(
        value(agg[0], 0),
        &typed_value::Value::DoubleValue(60.0),
        "the increase of requests_total from scrape 0 to 6"
    );
    assert_eq!(aggregator.values()[0].value, 70.0);
}
