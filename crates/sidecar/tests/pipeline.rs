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
use stackdriver_prometheus_sidecar::progress::{
    self, DeliveryMarks, DeliveryTracker, LoadedProgress, Resume, SavedProgress,
};
use stackdriver_prometheus_sidecar::retrieval::{
    Reader, ReaderExit, ReaderProgress, Resolver, SeriesSources,
};
use stackdriver_prometheus_sidecar::stats::{DropReason, SampleSkip, Stats};
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
    write_segment(dir, "00000000", series, batches);
}

fn write_segment(
    dir: &std::path::Path,
    name: &str,
    series: &[RefSeries],
    batches: &[Vec<RefSample>],
) {
    let file = std::fs::File::create(dir.join(name)).unwrap();
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
    let (requests, stats, _) = run_on(dir.path(), Resume::default(), None).await;
    (requests, stats)
}

/// A reader resolving from the table of metric types, queueing on `exporter`.
fn table_reader(
    exporter: &Exporter,
    stats: &Stats,
    progress: ReaderProgress,
) -> Reader<TableSources> {
    let sources = TableSources {
        metadata: HashMap::from([
            ("temperature", MetricType::Gauge),
            ("requests_total", MetricType::Counter),
            ("untyped_thing", MetricType::Unknown),
            ("latency", MetricType::Histogram),
            ("wait_seconds", MetricType::Histogram),
        ]),
    };
    let resolver = Resolver::new(sources, "external.googleapis.com/prometheus".into(), false);
    Reader::new(
        resolver,
        exporter.handle(),
        stats.reader.clone(),
        tokio::runtime::Handle::current(),
        progress,
    )
}

/// Reads the WAL in `dir` to its end once, resuming from `resume`; returns what was sent and
/// the progress that would be saved afterwards.
async fn run_on(
    dir: &std::path::Path,
    resume: Resume,
    start_after_ms: Option<i64>,
) -> (Vec<CreateTimeSeriesRequest>, Arc<Stats>, SavedProgress) {
    let stats = Arc::new(Stats::default());
    let sink = Arc::new(RecordingSink::default());
    // As in production: the marks of the previous run, and a marks file for this one.
    let resume = resume.with_marks(progress::marks::load(dir));
    let marks = DeliveryMarks::create(dir, resume.marks()).unwrap();
    let tracker = Arc::new(DeliveryTracker::new(resume.position).with_marks(marks));
    resume.register_all(&tracker);
    let exporter = Exporter::start(
        sink.clone(),
        // The points are from 1970: no age limit.
        ExportConfig::new("proj", 3).without_time_limits(),
        &stats,
        Some(tracker.clone()),
    );
    let progress = ReaderProgress {
        tracker: tracker.clone(),
        resume,
        start_after_ms,
    };
    let reader = table_reader(&exporter, &stats, progress);
    let mut follower = Follower::open_to_end(dir).unwrap();
    let exit = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(exit, ReaderExit::Stopped));
    exporter.finish().await;
    let requests = std::mem::take(&mut *sink.requests.lock().unwrap());
    (requests, stats, tracker.snapshot())
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

    assert_eq!(
        stats
            .reader
            .series_dropped_count(DropReason::TargetNotFound),
        1
    );
    assert_eq!(
        stats
            .reader
            .series_dropped_count(DropReason::MetadataNotFound),
        1
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.reader.samples_processed.load(Relaxed), 13);
    assert_eq!(stats.reader.skipped_count(SampleSkip::Nan), 2);
    assert_eq!(stats.reader.skipped_count(SampleSkip::UnknownRef), 1);
    assert_eq!(stats.reader.skipped_count(SampleSkip::OutOfOrder), 1);
    assert_eq!(stats.reader.skipped_count(SampleSkip::Baseline), 1);
    assert_eq!(stats.export.samples_produced.load(Relaxed), 6);
    assert_eq!(stats.export.points_sent.load(Relaxed), 6);
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

fn counter_and_gauge() -> Vec<RefSeries> {
    vec![
        RefSeries {
            series_ref: 1,
            labels: labels(&[
                ("__name__", "temperature"),
                ("job", "app"),
                ("instance", "a:1"),
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
    ]
}

fn summary(requests: &[CreateTimeSeriesRequest]) -> Vec<(String, Option<i64>, i64, f64)> {
    let mut v: Vec<_> = requests
        .iter()
        .flat_map(|r| &r.time_series)
        .map(|ts| {
            let name = ts
                .metric
                .as_ref()
                .unwrap()
                .r#type
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            (name, start_ms(ts), end_ms(ts), value(ts))
        })
        .collect();
    v.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_exactly_after_what_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<Vec<RefSample>> = (1..=3)
        .map(|i| {
            vec![
                sample(1, i * 1000, i as f64),
                sample(2, i * 1000, 10.0 * i as f64),
            ]
        })
        .collect();
    write_segment(dir.path(), "00000000", &counter_and_gauge(), &first);
    let (sent, _, saved) = run_on(dir.path(), Resume::default(), None).await;
    assert_eq!(
        summary(&sent),
        vec![
            ("temperature".into(), None, 1000, 1.0),
            ("requests_total".into(), Some(1000), 2000, 10.0),
            ("temperature".into(), None, 2000, 2.0),
            ("requests_total".into(), Some(1000), 3000, 20.0),
            ("temperature".into(), None, 3000, 3.0),
        ]
    );
    progress::file::save(dir.path(), &saved).unwrap();

    // Prometheus goes on: a new segment with later samples (and a counter reset).
    let second: Vec<Vec<RefSample>> = vec![
        vec![sample(1, 4000, 4.0), sample(2, 4000, 45.0)],
        vec![sample(1, 5000, 5.0), sample(2, 5000, 3.0)],
    ];
    write_segment(dir.path(), "00000001", &[], &second);
    let loaded = progress::file::load(dir.path()).unwrap();
    assert!(matches!(loaded, LoadedProgress::Exact(_)));
    let (sent, stats, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    // Nothing sent twice; the counter keeps its start time and no sample became a new baseline.
    assert_eq!(
        summary(&sent),
        vec![
            ("requests_total".into(), Some(1000), 4000, 35.0),
            ("temperature".into(), None, 4000, 4.0),
            ("requests_total".into(), Some(4999), 5000, 3.0),
            ("temperature".into(), None, 5000, 5.0),
        ]
    );
    assert_eq!(stats.reader.skipped_count(SampleSkip::Baseline), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_can_skip_old_samples() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<RefSample>> = (1..=4)
        .map(|i| vec![sample(1, i * 1000, i as f64)])
        .collect();
    write_segment(dir.path(), "00000000", &counter_and_gauge(), &batches);
    let (sent, _, _) = run_on(dir.path(), Resume::default(), Some(3000)).await;
    let ends: Vec<i64> = summary(&sent).iter().map(|s| s.2).collect();
    assert_eq!(ends, vec![3000, 4000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_delivered_after_the_watermark_are_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<RefSample>> = (1..=3)
        .map(|i| {
            vec![
                sample(1, i * 1000, i as f64),
                sample(2, i * 1000, 10.0 * i as f64),
            ]
        })
        .collect();
    write_segment(dir.path(), "00000000", &counter_and_gauge(), &batches);
    let (_, _, mut saved) = run_on(dir.path(), Resume::default(), None).await;
    // As after a kill: the records were delivered but the saved watermark had not caught up.
    saved.position = Default::default();
    let (sent, stats, _) =
        run_on(dir.path(), Resume::new(LoadedProgress::Exact(saved)), None).await;
    assert!(summary(&sent).is_empty(), "{:?}", summary(&sent));
    assert_eq!(stats.reader.skipped_count(SampleSkip::AlreadyDelivered), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_marks_cover_what_the_last_save_missed() {
    let batch = |i: i64| {
        vec![
            sample(1, i * 1000, i as f64),
            sample(2, i * 1000, 10.0 * i as f64),
        ]
    };
    // The state a periodic save captured after the first record only...
    let early = tempfile::tempdir().unwrap();
    write_segment(early.path(), "00000000", &counter_and_gauge(), &[batch(1)]);
    let (_, _, stale) = run_on(early.path(), Resume::default(), None).await;
    // ...while three records were delivered before the process was killed.
    let dir = tempfile::tempdir().unwrap();
    write_segment(
        dir.path(),
        "00000000",
        &counter_and_gauge(),
        &[batch(1), batch(2), batch(3)],
    );
    let (sent, _, _) = run_on(dir.path(), Resume::default(), None).await;
    assert_eq!(summary(&sent).len(), 5);
    progress::file::save(dir.path(), &stale).unwrap();

    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, stats, saved) = run_on(dir.path(), Resume::new(loaded), None).await;
    assert!(
        summary(&sent).is_empty(),
        "sent again: {:?}",
        summary(&sent)
    );
    assert_eq!(stats.reader.skipped_count(SampleSkip::AlreadyDelivered), 4);
    progress::file::save(dir.path(), &saved).unwrap();

    write_segment(dir.path(), "00000001", &[], &[batch(4)]);
    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, _, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    assert_eq!(
        summary(&sent),
        vec![
            ("requests_total".into(), Some(1000), 4000, 30.0),
            ("temperature".into(), None, 4000, 4.0),
        ]
    );
}

/// A histogram: `latency_bucket` for 0.5 and +Inf, `_sum` and `_count` (refs 11 to 14).
fn histogram_series() -> Vec<RefSeries> {
    let part = |r: u64, name: &str, le: Option<&str>| {
        let mut l = vec![("__name__", name), ("job", "app"), ("instance", "a:1")];
        if let Some(le) = le {
            l.push(("le", le));
        }
        RefSeries {
            series_ref: r,
            labels: labels(&l),
        }
    };
    vec![
        part(11, "latency_bucket", Some("0.5")),
        part(12, "latency_bucket", Some("+Inf")),
        part(13, "latency_sum", None),
        part(14, "latency_count", None),
    ]
}

/// One scrape of the histogram at `i` seconds: `i` observations of 0.25 (so `i` in the first
/// bucket, and `i` in all).
fn histogram_scrape(i: i64) -> Vec<RefSample> {
    let n = i as f64;
    vec![
        sample(11, i * 1000, n),
        sample(12, i * 1000, n),
        sample(13, i * 1000, 0.25 * n),
        sample(14, i * 1000, n),
    ]
}

/// (start, end, count) of every histogram point sent.
fn histogram_points(requests: &[CreateTimeSeriesRequest]) -> Vec<(Option<i64>, i64, i64)> {
    distribution_points(requests, "/latency")
}

/// (start, end, count) of every distribution point of `metric` sent.
fn distribution_points(
    requests: &[CreateTimeSeriesRequest],
    metric: &str,
) -> Vec<(Option<i64>, i64, i64)> {
    points_of(requests, metric)
        .into_iter()
        .map(|ts| {
            let Some(typed_value::Value::DistributionValue(d)) =
                ts.points[0].value.as_ref().unwrap().value.as_ref()
            else {
                panic!("not a distribution: {ts:?}")
            };
            (start_ms(ts), end_ms(ts), d.count)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_resume_with_their_start_time_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<Vec<RefSample>> = (1..=3).map(histogram_scrape).collect();
    write_segment(dir.path(), "00000000", &histogram_series(), &first);
    let (sent, _, saved) = run_on(dir.path(), Resume::default(), None).await;
    assert_eq!(
        histogram_points(&sent),
        vec![(Some(1000), 2000, 1), (Some(1000), 3000, 2)]
    );
    assert_eq!(saved.histograms.len(), 1);
    progress::file::save(dir.path(), &saved).unwrap();

    write_segment(
        dir.path(),
        "00000001",
        &[],
        &[histogram_scrape(4), histogram_scrape(5)],
    );
    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, stats, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    // Same start time, measured from the first run's baseline; nothing swallowed as a baseline.
    assert_eq!(
        histogram_points(&sent),
        vec![(Some(1000), 4000, 3), (Some(1000), 5000, 4)]
    );
    assert_eq!(stats.reader.skipped_count(SampleSkip::Baseline), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_points_covered_by_delivery_marks_are_not_sent_again() {
    // A save that only saw the baseline run...
    let early = tempfile::tempdir().unwrap();
    write_segment(
        early.path(),
        "00000000",
        &histogram_series(),
        &[histogram_scrape(1)],
    );
    let (_, _, stale) = run_on(early.path(), Resume::default(), None).await;
    // ...while two more runs were delivered before a kill.
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<Vec<RefSample>> = (1..=3).map(histogram_scrape).collect();
    write_segment(dir.path(), "00000000", &histogram_series(), &runs);
    let (sent, _, _) = run_on(dir.path(), Resume::default(), None).await;
    assert_eq!(histogram_points(&sent).len(), 2);
    progress::file::save(dir.path(), &stale).unwrap();

    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, _, saved) = run_on(dir.path(), Resume::new(loaded), None).await;
    assert_eq!(histogram_points(&sent), vec![], "sent again");
    progress::file::save(dir.path(), &saved).unwrap();

    write_segment(dir.path(), "00000001", &[], &[histogram_scrape(4)]);
    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, _, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    assert_eq!(histogram_points(&sent), vec![(Some(1000), 4000, 3)]);
}

/// A segment with the native histogram `wait_seconds` (ref 21) at each of `seconds`, holding
/// that many observations of 1.5 (bucket 1 at schema 0) by then.
fn write_native_segment(dir: &std::path::Path, name: &str, with_series: bool, seconds: &[i64]) {
    use prometheus_wal::record::encode::encode_histogram_samples;
    use prometheus_wal::record::{Histogram, RecordType, RefHistogramSample, Span};
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let mut w = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    if with_series {
        let labels = labels(&[
            ("__name__", "wait_seconds"),
            ("job", "app"),
            ("instance", "a:1"),
        ]);
        encode_series(
            &[RefSeries {
                series_ref: 21,
                labels,
            }],
            &mut buf,
        );
        w.log(&buf).unwrap();
    }
    for &i in seconds {
        let h = Histogram {
            count: i as u64,
            sum: 1.5 * i as f64,
            positive_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            positive_deltas: vec![i],
            ..Histogram::default()
        };
        buf.clear();
        let sample = RefHistogramSample {
            series_ref: 21,
            t: i * 1000,
            st: 0,
            h,
        };
        encode_histogram_samples(RecordType::HistogramSamples, &[sample], &mut buf);
        w.log(&buf).unwrap();
    }
    w.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_resume_with_their_start_time_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    write_native_segment(dir.path(), "00000000", true, &[1, 2, 3]);
    let (sent, _, saved) = run_on(dir.path(), Resume::default(), None).await;
    let points = |sent: &[CreateTimeSeriesRequest]| distribution_points(sent, "/wait_seconds");
    assert_eq!(
        points(&sent),
        vec![(Some(1000), 2000, 1), (Some(1000), 3000, 2)]
    );
    assert_eq!(saved.histograms.len(), 1);
    progress::file::save(dir.path(), &saved).unwrap();

    write_native_segment(dir.path(), "00000001", false, &[4, 5]);
    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, stats, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    // Same start time, measured from the first run's baseline; nothing swallowed as a baseline,
    // nothing sent twice.
    assert_eq!(
        points(&sent),
        vec![(Some(1000), 4000, 3), (Some(1000), 5000, 4)]
    );
    assert_eq!(stats.reader.skipped_count(SampleSkip::Baseline), 0);
}

/// A checkpoint holding samples (agent mode, or a server's head not yet compacted): every one
/// of its records has the same position, so a saved watermark equal to it must not count its
/// later records as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_samples_after_a_partial_delivery_are_not_lost() {
    let batch = |i: i64| {
        vec![
            sample(1, i * 1000, i as f64),
            sample(2, i * 1000, 10.0 * i as f64),
        ]
    };
    let checkpoint = |dir: &std::path::Path, batches: &[Vec<RefSample>]| {
        let ckpt = dir.join("checkpoint.00000000");
        std::fs::create_dir_all(&ckpt).unwrap();
        write_segment(&ckpt, "00000000", &counter_and_gauge(), batches);
        std::fs::File::create(dir.join("00000001")).unwrap();
    };
    // What a save captured after the checkpoint's first record was delivered...
    let early = tempfile::tempdir().unwrap();
    checkpoint(early.path(), &[batch(1)]);
    let (_, _, stale) = run_on(early.path(), Resume::default(), None).await;
    assert_eq!(
        stale.position,
        prometheus_wal::WalPosition {
            segment: 1,
            offset: 0
        }
    );
    // ...when the process died before the next two records were delivered (no marks).
    let dir = tempfile::tempdir().unwrap();
    checkpoint(dir.path(), &[batch(1), batch(2), batch(3)]);
    progress::file::save(dir.path(), &stale).unwrap();
    let loaded = progress::file::load(dir.path()).unwrap();
    let (sent, _, _) = run_on(dir.path(), Resume::new(loaded), None).await;
    assert_eq!(
        summary(&sent),
        vec![
            ("requests_total".into(), Some(1000), 2000, 10.0),
            ("temperature".into(), None, 2000, 2.0),
            ("requests_total".into(), Some(1000), 3000, 20.0),
            ("temperature".into(), None, 3000, 3.0),
        ],
        "the checkpoint's undelivered records are sent, the delivered one is not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_gone_from_a_new_checkpoint_are_dropped_while_the_wal_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(
        dir.path(),
        "00000000",
        &counter_and_gauge(),
        &[vec![sample(1, 1000, 1.0), sample(2, 1000, 5.0)]],
    );
    let stats = Arc::new(Stats::default());
    let tracker = Arc::new(DeliveryTracker::new(Default::default()));
    let exporter = Exporter::start(
        Arc::new(RecordingSink::default()),
        ExportConfig::new("proj", 1).without_time_limits(),
        &stats,
        Some(tracker.clone()),
    );
    let progress = ReaderProgress {
        tracker,
        resume: Resume::default(),
        start_after_ms: None,
    };
    let reader = table_reader(&exporter, &stats, progress)
        .with_gc_interval(std::time::Duration::from_millis(100));
    let options = prometheus_wal::FollowOptions {
        poll_interval: std::time::Duration::from_millis(10),
        ..Default::default()
    };
    let stop = options.stop.clone();
    let mut follower = Follower::open(dir.path(), options).unwrap();
    let running = tokio::task::spawn_blocking(move || reader.run(&mut follower));
    let cached = || {
        stats
            .reader
            .series_cached
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let wait = |want: u64| async move {
        for _ in 0..300 {
            if cached() == want {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    };
    assert!(wait(2).await, "both series are read");

    // Prometheus truncates: checkpoint.00000000 keeps only the gauge, and goes on writing
    // nothing (a new, empty segment).
    let cp = dir.path().join("checkpoint.00000000");
    std::fs::create_dir(&cp).unwrap();
    write_segment(&cp, "00000000", &counter_and_gauge()[..1], &[]);
    std::fs::File::create(dir.path().join("00000001")).unwrap();
    let collected = wait(1).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    running.await.unwrap().unwrap();
    exporter.finish().await;
    assert!(
        collected,
        "the counter, gone from the checkpoint, is still cached"
    );
}
