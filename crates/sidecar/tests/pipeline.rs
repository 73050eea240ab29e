//! The whole pipeline without Prometheus: a WAL written the way Prometheus writes it, series
//! resolved from tables, and the requests captured (and decoded as real protobuf) by a sink.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gcm_api::api::metric_descriptor::MetricKind;
use gcm_api::monitoring::{CreateTimeSeriesRequest, TimeSeries, typed_value};
use prometheus_wal::record::encode::{encode_samples, encode_series};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Follower, Label, Labels, RefSample, RefSeries, STALE_NAN_BITS};
use prost::Message;
use stackdriver_prometheus_sidecar::export::{ExportConfig, Exporter, SendError, TimeSeriesSink};
use stackdriver_prometheus_sidecar::metadata::{MetricMetadata, MetricType, ValueType};
use stackdriver_prometheus_sidecar::retrieval::{Reader, ReaderExit, Resolver, SeriesSources};
use stackdriver_prometheus_sidecar::stats::{DropReason, Stats};
use stackdriver_prometheus_sidecar::targets::Target;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Labels = pairs
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// One target (job `app`, instance `a:1`) and metadata from a table.
struct TableSources {
    metadata: HashMap<&'static str, MetricType>,
}

impl SeriesSources for TableSources {
    async fn target(&self, series: &[Label]) -> Result<Option<Arc<Target>>, String> {
        let job = series
            .iter()
            .find(|l| l.name == "job")
            .map(|l| l.value.as_str());
        Ok((job == Some("app")).then(|| {
            Arc::new(Target {
                labels: labels(&[("instance", "a:1"), ("job", "app")]),
                discovered_labels: labels(&[
                    ("_generic_location", "here"),
                    ("_generic_namespace", "ns"),
                    ("_stackdriver_project_id", "proj"),
                    ("job", "app"),
                ]),
            })
        }))
    }

    async fn metadata(
        &self,
        _job: &str,
        _instance: &str,
        metric: &str,
    ) -> Result<Option<MetricMetadata>, String> {
        Ok(self.metadata.get(metric).map(|t| MetricMetadata {
            metric: metric.to_string(),
            metric_type: *t,
            value_type: ValueType::Unspecified,
            help: String::new(),
        }))
    }
}

#[derive(Default)]
struct RecordingSink {
    requests: Mutex<Vec<CreateTimeSeriesRequest>>,
}

impl TimeSeriesSink for RecordingSink {
    async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
        let req = CreateTimeSeriesRequest::decode(request).expect("valid protobuf");
        self.requests.lock().unwrap().push(req);
        Ok(())
    }
}

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
    }
    w.close().unwrap();
}

fn sample(series_ref: u64, t: i64, v: f64) -> RefSample {
    RefSample { series_ref, t, v }
}

async fn run_pipeline(
    series: &[RefSeries],
    batches: &[Vec<RefSample>],
) -> (Vec<CreateTimeSeriesRequest>, Arc<Stats>) {
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), series, batches);
    let stats = Arc::new(Stats::default());
    let sink = Arc::new(RecordingSink::default());
    let exporter = Exporter::start(sink.clone(), ExportConfig::new("proj", 3), stats.clone());
    let sources = TableSources {
        metadata: HashMap::from([
            ("temperature", MetricType::Gauge),
            ("requests_total", MetricType::Counter),
            ("untyped_thing", MetricType::Unknown),
        ]),
    };
    let resolver = Resolver::new(sources, "external.googleapis.com/prometheus".into(), false);
    let reader = Reader::new(
        resolver,
        exporter.handle(),
        stats.clone(),
        tokio::runtime::Handle::current(),
    );
    let mut follower = Follower::open_to_end(dir.path()).unwrap();
    let exit = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ReaderExit::Stopped));
    exporter.finish().await;
    let requests = std::mem::take(&mut *sink.requests.lock().unwrap());
    (requests, stats)
}

fn points_of<'a>(requests: &'a [CreateTimeSeriesRequest], metric: &str) -> Vec<&'a TimeSeries> {
    requests
        .iter()
        .flat_map(|r| &r.time_series)
        .filter(|ts| ts.metric.as_ref().unwrap().r#type.ends_with(metric))
        .collect()
}

fn value(ts: &TimeSeries) -> f64 {
    match ts.points[0].value.as_ref().unwrap().value.as_ref().unwrap() {
        typed_value::Value::DoubleValue(v) => *v,
        other => panic!("{other:?}"),
    }
}

fn end_ms(ts: &TimeSeries) -> i64 {
    let e = ts.points[0].interval.unwrap().end_time.unwrap();
    e.seconds * 1000 + i64::from(e.nanos / 1_000_000)
}

fn start_ms(ts: &TimeSeries) -> Option<i64> {
    let s = ts.points[0].interval.unwrap().start_time?;
    Some(s.seconds * 1000 + i64::from(s.nanos / 1_000_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_counters_and_drops_flow_from_wal_to_requests() {
    let series = vec![
        RefSeries {
            series_ref: 1,
            labels: labels(&[
                ("__name__", "temperature"),
                ("job", "app"),
                ("instance", "a:1"),
                ("room", "kitchen"),
            ]),
        },
        RefSeries {
            series_ref: 2,
            labels: labels(&[
                ("__name__", "requests_total"),
                ("job", "app"),
                ("instance", "a:1"),
            ]),
        },
        RefSeries {
            series_ref: 3,
            labels: labels(&[
                ("__name__", "temperature"),
                ("job", "gone"),
                ("instance", "x"),
            ]),
        },
        RefSeries {
            series_ref: 4,
            labels: labels(&[
                ("__name__", "no_metadata"),
                ("job", "app"),
                ("instance", "a:1"),
            ]),
        },
    ];
    let stale = f64::from_bits(STALE_NAN_BITS);
    let batches = vec![
        vec![
            sample(1, 1000, 20.5),
            sample(2, 1000, 100.0),
            sample(3, 1000, 1.0),
            sample(4, 1000, 1.0),
        ],
        vec![sample(1, 2000, 21.0), sample(2, 2000, 103.0)],
        // A duplicate of the previous gauge sample and a counter reset.
        vec![sample(1, 2000, 21.0), sample(2, 3000, 2.0)],
        vec![
            sample(1, 4000, stale),
            sample(2, 4000, f64::NAN),
            sample(99, 4000, 1.0),
        ],
        vec![sample(1, 5000, 22.0), sample(2, 5000, 5.0)],
    ];
    let (requests, stats) = run_pipeline(&series, &batches).await;
    assert!(requests.iter().all(|r| r.name == "projects/proj"));

    let mut gauges = points_of(&requests, "/temperature");
    gauges.sort_by_key(|ts| end_ms(ts));
    let got: Vec<(i64, f64)> = gauges.iter().map(|ts| (end_ms(ts), value(ts))).collect();
    assert_eq!(got, vec![(1000, 20.5), (2000, 21.0), (5000, 22.0)]);
    let g = gauges[0];
    assert_eq!(g.metric_kind, MetricKind::Gauge as i32);
    assert_eq!(
        g.metric.as_ref().unwrap().labels,
        HashMap::from([("room".into(), "kitchen".into())])
    );
    let resource = g.resource.as_ref().unwrap();
    assert_eq!(resource.r#type, "generic_task");
    assert_eq!(resource.labels["task_id"], "a:1");
    assert_eq!(resource.labels["job"], "app");
    assert_eq!(resource.labels["location"], "here");

    let mut counters = points_of(&requests, "/requests_total");
    counters.sort_by_key(|ts| end_ms(ts));
    let got: Vec<(Option<i64>, i64, f64)> = counters
        .iter()
        .map(|ts| (start_ms(ts), end_ms(ts), value(ts)))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(1000), 2000, 3.0),
            (Some(2999), 3000, 2.0),
            (Some(2999), 5000, 5.0)
        ]
    );
    assert_eq!(counters[0].metric_kind, MetricKind::Cumulative as i32);

    assert_eq!(stats.series_dropped_count(DropReason::TargetNotFound), 1);
    assert_eq!(stats.series_dropped_count(DropReason::MetadataNotFound), 1);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.samples_processed.load(Relaxed), 13);
    assert_eq!(stats.samples_nan.load(Relaxed), 2);
    assert_eq!(stats.samples_unknown_ref.load(Relaxed), 1);
    assert_eq!(stats.samples_out_of_order.load(Relaxed), 1);
    assert_eq!(stats.samples_baseline.load(Relaxed), 1);
    assert_eq!(stats.samples_produced.load(Relaxed), 6);
    assert_eq!(stats.points_sent.load(Relaxed), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hold_at_most_200_distinct_series_with_one_point_each() {
    let series: Vec<RefSeries> = (1..=450u64)
        .map(|r| RefSeries {
            series_ref: r,
            labels: labels(&[
                ("__name__", "untyped_thing"),
                ("job", "app"),
                ("instance", "a:1"),
                ("n", &r.to_string()),
            ]),
        })
        .collect();
    let batches: Vec<Vec<RefSample>> = (0..3)
        .map(|i| {
            (1..=450u64)
                .map(|r| sample(r, 1000 * (i + 1), r as f64))
                .collect()
        })
        .collect();
    let (requests, _) = run_pipeline(&series, &batches).await;
    let total: usize = requests.iter().map(|r| r.time_series.len()).sum();
    assert_eq!(total, 450 * 3);
    for r in &requests {
        assert!(
            r.time_series.len() <= 200,
            "{} series in one request",
            r.time_series.len()
        );
        let mut seen = std::collections::HashSet::new();
        for ts in &r.time_series {
            assert_eq!(ts.points.len(), 1);
            assert!(
                seen.insert(format!("{:?}", ts.metric)),
                "series twice in one request"
            );
        }
    }
    // Each series' points arrive in time order.
    let mut last: HashMap<String, i64> = HashMap::new();
    for ts in requests.iter().flat_map(|r| &r.time_series) {
        let key = format!("{:?}", ts.metric.as_ref().unwrap().labels.get("n"));
        let end = end_ms(ts);
        if let Some(prev) = last.insert(key, end) {
            assert!(end > prev);
        }
    }
}
