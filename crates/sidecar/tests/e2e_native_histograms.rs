//! End to end for native histograms with the real parts: Debian's Prometheus 2.42 (with
//! `--enable-feature=native-histograms,exemplar-storage`) scraping a test exporter that serves
//! native histograms in the protobuf exposition format every 6 seconds, the sidecar binary
//! following Prometheus's WAL, and the Cloud Monitoring emulator receiving the points. The
//! exporter changes between scrapes: a counter histogram at schema 3 lowered to schema 2 and
//! then restarted, with zero and negative observations; a second one at schema 0; a gauge
//! histogram going up and down. Every point that arrived is compared, bucket by bucket, with
//! what Prometheus answers through its query API at the point's start and end, and every
//! exemplar Prometheus stored must be on the point covering its time, with its trace.
//!
//! Needs `prometheus` on PATH (`scripts/install-deps.sh`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::native::gcm_bucket;
use common::native_exporter::{NativeExporter, NativeFamily};
use common::{Child, EmulatorClient, SidecarSetup, free_port, require_binary};
use gcm_api::api::Distribution;
use gcm_api::api::distribution::bucket_options::Options;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::SpanContext;
use gcm_api::monitoring::{TimeSeries, typed_value};
use prost::Message;

const PREFIX: &str = "external.googleapis.com/prometheus/";
/// The counter histogram: schema 3, lowered to 2 after scrape 3, restarted after scrape 5.
const COUNTER: &str = "rpc_latency_seconds";
/// A counter histogram at schema 0.
const COARSE: &str = "payload_size_bytes";
/// The gauge histogram.
const GAUGE: &str = "queue_wait_seconds";
/// How many times the exporter changes, once after each of the first scrapes.
const STEPS: usize = 7;
/// The gauge histogram's observations after each scrape: up, down, zero and negative ones,
/// none at all, up again.
const GAUGE_STEPS: [&[f64]; STEPS + 1] = [
    &[2.5, 7.0],
    &[2.5, 2.5, 7.0, 30.0],
    &[7.0],
    &[0.0003, -1.15, 2.5, 2.5],
    &[],
    &[30.0, 30.0, 30.0],
    &[7.0, 0.8],
    &[2.5],
];

/// What the exporter serves before the first scrape.
fn initial() -> Vec<NativeFamily> {
    let mut counter = NativeFamily::new(COUNTER, false, 3, 0.001);
    counter.labels = vec![("handler".to_string(), "/api".to_string())];
    counter.observe(&[0.3, 1.7, 5.5]);
    let mut coarse = NativeFamily::new(COARSE, false, 0, 0.001);
    coarse.observe(&[0.3, 3.0]);
    let mut gauge = NativeFamily::new(GAUGE, true, 1, 0.001);
    gauge.observe(GAUGE_STEPS[0]);
    vec![counter, coarse, gauge]
}

/// The change made after scrape `k`.
fn step(k: usize, families: &mut [NativeFamily]) {
    let [counter, coarse, gauge] = families else {
        panic!("three families")
    };
    match k {
        1 => {
            counter.observe(&[0.0005, -0.8, 42.0]);
            coarse.observe(&[12.0]);
        }
        2 => {
            counter.observe(&[0.013, 900.0, -3.3]);
            coarse.observe(&[100.0, 0.3]);
        }
        3 => {
            counter.observed.lower_schema();
            counter.observe(&[1.7]);
            coarse.observe(&[3.0]);
        }
        4 => {
            counter.observe(&[5.5, -0.0002]);
            coarse.observe(&[-2.2]);
        }
        5 => {
            counter.reset(2);
            counter.observe(&[0.3, 42.0]);
            coarse.observe(&[0.8]);
        }
        6 => {
            counter.observe(&[1.7, -0.8, 0.0005]);
            coarse.observe(&[12.0, 12.0]);
        }
        _ => {
            counter.observe(&[900.0]);
            coarse.observe(&[0.0001]);
        }
    }
    gauge.reset(1);
    gauge.observe(GAUGE_STEPS[k]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_from_real_prometheus_match_its_answers() {
    // reqwest is built with rustls and no provider (for Google credentials): pick one first.
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let all_values = [
        0.3, 1.7, 5.5, 3.0, 2.5, 7.0, 30.0, 1.15, 0.8, 42.0, 12.0, 0.013, 900.0, 3.3, 100.0, 2.2,
    ];
    for v in all_values {
        for schema in 0..=3 {
            let x = f64::log2(v) * f64::from(schema).exp2();
            assert!((x - x.round()).abs() > 0.05, "{v} is near a bound");
        }
    }
    let prometheus = require_binary("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let exporter = NativeExporter::start(initial());
    let (prom_port, web_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 6s\nscrape_configs:\n\
             \x20 - job_name: native\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        ),
    )
    .unwrap();
    let mut prom_child = Child::spawn(
        &prometheus,
        &[
            &format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--enable-feature=native-histograms,exemplar-storage",
        ],
        &dir.path().join("prometheus.log"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let emulator = common::start_quiet_emulator().await;
    let wal = dir.path().join("data/wal");
    common::wait_for(Duration::from_secs(30), || wal.is_dir()).await;
    let web = format!("127.0.0.1:{web_port}");
    let mut sidecar = SidecarSetup::new("e2e-native", &emulator, &wal, &prom, &web)
        .spawn(&["--log.level=debug"], &dir.path().join("sidecar.log"));

    let started = Instant::now();
    for k in 1..=STEPS {
        exporter.wait_scrapes(k, Duration::from_secs(30)).await;
        exporter.update(|families| step(k, families));
    }
    exporter
        .wait_scrapes(STEPS + 1, Duration::from_secs(30))
        .await;
    eprintln!(
        "Prometheus scraped {} times in {:?}, asking for: {:?}",
        exporter.scrapes(),
        started.elapsed(),
        exporter.last_accept()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Wait for the point of each series' latest sample, then stop the sidecar.
    let client = EmulatorClient::connect(emulator.addr, "e2e-native").await;
    let mut times = BTreeMap::new();
    for name in [COUNTER, COARSE, GAUGE] {
        let t = sample_times(&prom, name).await;
        assert!(t.len() > STEPS, "{name}: only samples at {t:?}");
        times.insert(name, t);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = client.all_series().await;
        let arrived = |name: &str| {
            let last = *times[name].last().unwrap();
            find(&all, name).is_some_and(|ts| {
                ts.points
                    .iter()
                    .any(|p| millis(&p.interval.unwrap().end_time.unwrap()) == last)
            })
        };
        if [COUNTER, COARSE, GAUGE].iter().all(|n| arrived(n)) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the latest samples did not all arrive; emulator: {}; sidecar log:\n{}",
            emulator.emulator.store().stats().summary_line(),
            sidecar.log_tail(60)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    sidecar.stop_gracefully();
    let after = client.all_series().await;
    assert!(after.len() >= all.len());
    // Prometheus went on scraping (the same state) while the sidecar sent.
    for name in [COUNTER, COARSE, GAUGE] {
        times.insert(name, sample_times(&prom, name).await);
    }
    let stats = emulator.emulator.store().stats();
    assert_eq!(
        stats.points_rejected,
        0,
        "the emulator refused points: {}; sidecar log:\n{}",
        stats.summary_line(),
        sidecar.log_tail(40)
    );

    let mut checked = 0;
    let mut reset_seen = false;
    let mut growths = Vec::new();
    for ts in after.iter().filter(|ts| {
        ts.value_type == ValueType::Distribution as i32
            && ts.metric.as_ref().unwrap().r#type.starts_with(PREFIX)
    }) {
        let name = ts
            .metric
            .as_ref()
            .unwrap()
            .r#type
            .strip_prefix(PREFIX)
            .unwrap();
        let samples = times
            .get(name)
            .unwrap_or_else(|| panic!("unexpected series {}", describe(ts)));
        let gauge = name == GAUGE;
        let kind = if gauge {
            MetricKind::Gauge
        } else {
            MetricKind::Cumulative
        };
        assert_eq!(ts.metric_kind, kind as i32, "{}", describe(ts));
        for point in &ts.points {
            let interval = point.interval.unwrap();
            let end = millis(&interval.end_time.unwrap());
            let start = interval.start_time.map_or(end, |t| millis(&t));
            let what = format!("{} at {end} (start {start})", describe(ts));
            assert!(samples.contains(&end), "{what}: no sample at the end");
            let d = distribution(point);
            let now = query(&prom, ts, end).await;
            let baseline = if gauge {
                assert_eq!(start, end, "{what}");
                None
            } else if samples.contains(&(start + 1)) {
                reset_seen |= name == COUNTER;
                None
            } else {
                assert!(samples.contains(&start), "{what}: no sample at the start");
                assert!(start < end, "{what}");
                Some(query(&prom, ts, start).await)
            };
            assert_matches(d, &now, baseline.as_ref(), &what);
            if name == COUNTER {
                growths.push(exponential(d).1);
            }
            checked += 1;
        }
    }
    for name in [COUNTER, COARSE, GAUGE] {
        assert!(find(&after, name).is_some(), "no point of {name} arrived");
    }
    assert!(
        reset_seen,
        "no point of {COUNTER} starts 1 ms before a sample"
    );
    for schema in [3, 2] {
        let growth = (-f64::from(schema)).exp2().exp2();
        assert!(
            growths.iter().any(|g| (g - growth).abs() < 1e-12),
            "no point of {COUNTER} at schema {schema}: growth factors {growths:?}"
        );
    }
    let attached = check_exemplars(&prom, &after).await;
    assert!(attached > 0, "no exemplar arrived");
    eprintln!(
        "checked {checked} points and {attached} exemplars in {:?}",
        started.elapsed(),
    );
    prom_child.stop_gracefully();
}

/// A native histogram as Prometheus's query API answers it.
#[derive(Debug)]
struct Answer {
    count: f64,
    sum: f64,
    /// `(lower, upper, count)` of each bucket.
    buckets: Vec<(f64, f64, f64)>,
}

/// Checks that `d` holds `now` minus `baseline` (or `now` alone): the count, the mean, and every
/// Prometheus bucket counted in the Cloud Monitoring bucket holding its midpoint (the zero and
/// negative buckets in the underflow bucket).
fn assert_matches(d: &Distribution, now: &Answer, baseline: Option<&Answer>, what: &str) {
    let (n, growth, scale) = exponential(d);
    let mut expected = vec![0.0; n as usize + 2];
    let mut add = |a: &Answer, sign: f64| {
        for &(lower, upper, c) in &a.buckets {
            let k = if lower < 0.0 || upper <= 0.0 {
                0
            } else {
                gcm_bucket(n, growth, scale, (lower + upper) / 2.0)
            };
            expected[k] += sign * c;
        }
    };
    add(now, 1.0);
    let (mut count, mut sum) = (now.count, now.sum);
    if let Some(b) = baseline {
        add(b, -1.0);
        count -= b.count;
        sum -= b.sum;
    }
    let expected: Vec<i64> = expected.iter().map(|c| c.round() as i64).collect();
    let mut got = d.bucket_counts.clone();
    assert!(got.len() <= expected.len(), "{what}: {d:?}");
    got.resize(expected.len(), 0);
    let context = format!("{what}: {d:?}\nnow {now:?}\nbaseline {baseline:?}");
    assert_eq!(got, expected, "{context}");
    assert_eq!(d.count as f64, count, "{context}");
    assert!(
        (d.mean * count - sum).abs() <= 1e-9 * sum.abs().max(1.0),
        "{context}: mean {} × count {count} is not the sum {sum}",
        d.mean
    );
}

/// Number of finite buckets, growth factor and scale of `d`'s exponential buckets.
fn exponential(d: &Distribution) -> (i32, f64, f64) {
    match d.bucket_options.as_ref().and_then(|o| o.options.as_ref()) {
        Some(Options::ExponentialBuckets(e)) => (e.num_finite_buckets, e.growth_factor, e.scale),
        other => panic!("not exponential buckets: {other:?}"),
    }
}

fn distribution(point: &gcm_api::monitoring::Point) -> &Distribution {
    match point.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(typed_value::Value::DistributionValue(d)) => d,
        other => panic!("not a distribution: {other:?}"),
    }
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn resource_label<'a>(ts: &'a TimeSeries, name: &str) -> &'a str {
    ts.resource
        .as_ref()
        .and_then(|r| r.labels.get(name))
        .map_or("", String::as_str)
}

/// The series of metric `name` (without prefix).
fn find<'a>(all: &'a [TimeSeries], name: &str) -> Option<&'a TimeSeries> {
    all.iter()
        .find(|ts| ts.metric.as_ref().unwrap().r#type.strip_prefix(PREFIX) == Some(name))
}

fn describe(ts: &TimeSeries) -> String {
    let metric = ts.metric.as_ref().unwrap();
    let labels: BTreeMap<_, _> = metric.labels.iter().collect();
    format!("{}{labels:?}", metric.r#type)
}

/// `{__name__=…,job=…,instance=…,<metric labels>}` for the series of `ts`.
fn selector(ts: &TimeSeries) -> String {
    let metric = ts.metric.as_ref().unwrap();
    let mut matchers = vec![
        format!("__name__={:?}", metric.r#type.strip_prefix(PREFIX).unwrap()),
        format!("job={:?}", resource_label(ts, "job")),
        format!("instance={:?}", resource_label(ts, "task_id")),
    ];
    matchers.extend(metric.labels.iter().map(|(k, v)| format!("{k}={v:?}")));
    format!("{{{}}}", matchers.join(","))
}

/// Prometheus's JSON answer to `GET path` with `params`.
async fn api(prom: &str, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{prom}{path}"))
        .query(params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The native histogram Prometheus answers for the series of `ts` at `at` (ms).
async fn query(prom: &str, ts: &TimeSeries, at: i64) -> Answer {
    let q = selector(ts);
    let time = format!("{}.{:03}", at.div_euclid(1000), at.rem_euclid(1000));
    let body = api(
        prom,
        "/api/v1/query",
        &[("query", q.clone()), ("time", time)],
    )
    .await;
    let result = body["data"]["result"].as_array();
    let h = match result {
        Some(r) if r.len() == 1 => &r[0]["histogram"][1],
        _ => panic!("{q} at {at}: {body}"),
    };
    let number = |v: &serde_json::Value| -> f64 {
        let s = v.as_str().unwrap_or_else(|| panic!("{q} at {at}: {body}"));
        s.parse().unwrap()
    };
    let buckets = h["buckets"].as_array().map_or(Vec::new(), |b| {
        b.iter()
            .map(|b| (number(&b[1]), number(&b[2]), number(&b[3])))
            .collect()
    });
    Answer {
        count: number(&h["count"]),
        sum: number(&h["sum"]),
        buckets,
    }
}

/// The times (ms) of the native histogram samples Prometheus holds for `name`.
async fn sample_times(prom: &str, name: &str) -> Vec<i64> {
    let q = format!("{name}[10m]");
    let body = api(prom, "/api/v1/query", &[("query", q.clone())]).await;
    let result = body["data"]["result"].as_array();
    let samples = match result {
        Some(r) if r.len() == 1 => r[0]["histograms"].as_array(),
        _ => None,
    };
    samples
        .unwrap_or_else(|| panic!("{q}: {body}"))
        .iter()
        .map(|s| (s[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect()
}

/// Checks that every exemplar Prometheus stored for the three histograms arrived on the point of
/// its series covering its time, with its trace; returns how many did. Exemplars no sent point
/// covers are not expected: those of the baseline sample or older, those between a reset
/// point's start (1 ms before its sample) and the previous point, and those of samples after the
/// sidecar stopped.
async fn check_exemplars(prom: &str, all: &[TimeSeries]) -> usize {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let q = format!("{{__name__=~\"{COUNTER}|{COARSE}|{GAUGE}\"}}");
    let params = [
        ("query", q),
        ("start", (now - 600).to_string()),
        ("end", (now + 60).to_string()),
    ];
    let body = api(prom, "/api/v1/query_exemplars", &params).await;
    let mut attached = 0;
    for series in body["data"].as_array().expect("exemplar series") {
        let name = series["seriesLabels"]["__name__"].as_str().unwrap();
        let ts = find(all, name).unwrap_or_else(|| panic!("no series {name}"));
        for e in series["exemplars"].as_array().unwrap() {
            let t = (e["timestamp"].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = e["value"].as_str().unwrap().parse().unwrap();
            // The point with the earliest end not before the exemplar.
            let Some(point) = ts
                .points
                .iter()
                .filter(|p| millis(&p.interval.unwrap().end_time.unwrap()) >= t)
                .min_by_key(|p| millis(&p.interval.unwrap().end_time.unwrap()))
            else {
                continue;
            };
            let interval = point.interval.unwrap();
            if interval.start_time.is_some_and(|s| millis(&s) >= t) {
                continue;
            }
            let d = distribution(point);
            let found = d
                .exemplars
                .iter()
                .find(|x| x.value == v && millis(x.timestamp.as_ref().unwrap()) == t)
                .unwrap_or_else(|| {
                    let ends: Vec<(i64, usize)> = ts.points.iter().map(|p| (millis(&p.interval.unwrap().end_time.unwrap()), distribution(p).exemplars.len())).collect();
                    panic!(
                        "{name}: exemplar {v} at {t} not on the point ending {} (points {ends:?}; stored {series}): {:?}",
                        millis(&interval.end_time.unwrap()),
                        d.exemplars
                    )
                });
            let span_id = e["labels"]["span_id"].as_str().unwrap();
            let span = SpanContext::decode(found.attachments[0].value.as_slice()).unwrap();
            assert!(
                span.span_name.ends_with(&format!("/spans/{span_id}")),
                "{name}: {span:?}"
            );
            attached += 1;
        }
    }
    attached
}
