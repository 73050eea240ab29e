//! A Prometheus for tests of the whole binary that need no real one: a WAL written the way
//! Prometheus writes it, and an HTTP API (`/-/ready`, `/api/v1/targets`,
//! `/api/v1/targets/metadata`) describing one scrape target whose metrics are gauges.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_wal::record::encode::{encode_samples, encode_series};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Label, RefSample, RefSeries};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The job of the one target.
pub const JOB: &str = "app";
/// The instance of the one target.
pub const INSTANCE: &str = "a:1";

/// The Prometheus HTTP API of one target (`job="app"`, `instance="a:1"`) whose `gauges` are
/// gauges; served until dropped.
pub async fn serve_api(gauges: &[&str]) -> MockServer {
    serve_api_ready_when(gauges, Arc::new(AtomicBool::new(true))).await
}

/// `/-/ready` as Prometheus answers it: 503 until `ready` is set.
struct Readiness(Arc<AtomicBool>);

impl Respond for Readiness {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.load(Ordering::SeqCst) {
            ResponseTemplate::new(200).set_body_string("Prometheus Server is Ready.\n")
        } else {
            ResponseTemplate::new(503).set_body_string("Service Unavailable")
        }
    }
}

/// Like [`serve_api`], but `/-/ready` answers 503 until `ready` is set.
pub async fn serve_api_ready_when(gauges: &[&str], ready: Arc<AtomicBool>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/-/ready"))
        .respond_with(Readiness(ready))
        .mount(&server)
        .await;
    let target = json!({
        "discoveredLabels": {"__address__": INSTANCE, "job": JOB},
        "labels": {"instance": INSTANCE, "job": JOB},
        "scrapePool": JOB,
        "health": "up"
    });
    Mock::given(method("GET"))
        .and(path("/api/v1/targets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {"activeTargets": [target], "droppedTargets": []}
        })))
        .mount(&server)
        .await;
    let metadata: Vec<_> = gauges
        .iter()
        .map(|metric| {
            json!({
                "target": {"instance": INSTANCE, "job": JOB},
                "metric": metric,
                "type": "gauge",
                "help": "A test gauge.",
                "unit": ""
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/api/v1/targets/metadata"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": metadata})),
        )
        .mount(&server)
        .await;
    server
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes a WAL segment into `wal`: `series` series of the gauge `metric` (label `n`) of the
/// target, then `rounds` scrapes 10 s apart starting at `t0_ms`, one sample per series each
/// (round `r` has value `r`). Returns the number of samples. The last page is not padded, as in
/// the segment Prometheus is writing, so the file ends where the last record ends.
pub fn write_gauge_wal(
    wal: &Path,
    metric: &str,
    series: usize,
    rounds: usize,
    t0_ms: i64,
) -> usize {
    let refs = gauge_series(metric, series);
    let file = std::fs::File::create(wal.join("00000000")).unwrap();
    let mut writer = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    encode_series(&refs, &mut buf);
    writer.log(&buf).unwrap();
    for round in 0..rounds {
        let samples = scrape(&refs, t0_ms + round as i64 * 10_000, round as f64);
        buf.clear();
        encode_samples(&samples, &mut buf);
        writer.log(&buf).unwrap();
    }
    drop(writer);
    series * rounds
}

/// Series records for `series` series of the gauge `metric` of the target (label `n`, refs 1
/// on).
pub fn gauge_series(metric: &str, series: usize) -> Vec<RefSeries> {
    (0..series)
        .map(|i| {
            let mut labels = vec![
                Label {
                    name: "__name__".into(),
                    value: metric.into(),
                },
                Label {
                    name: "instance".into(),
                    value: INSTANCE.into(),
                },
                Label {
                    name: "job".into(),
                    value: JOB.into(),
                },
                Label {
                    name: "n".into(),
                    value: i.to_string(),
                },
            ];
            labels.sort();
            RefSeries {
                series_ref: i as u64 + 1,
                labels,
            }
        })
        .collect()
}

/// One scrape of `series`: a sample at `t` with value `v` for each.
pub fn scrape(series: &[RefSeries], t: i64, v: f64) -> Vec<RefSample> {
    series
        .iter()
        .map(|s| RefSample {
            series_ref: s.series_ref,
            t,
            v,
        })
        .collect()
}

/// Writes segment `index` of `wal`, closed (its last page padded, as after a rotation): the
/// series records first when `with_series`, then one scrape of `series` per round of `rounds`,
/// round `r` at `t0_ms + 10 s * r` with value `r`.
pub fn write_gauge_segment(
    wal: &Path,
    index: u64,
    series: &[RefSeries],
    rounds: std::ops::Range<usize>,
    t0_ms: i64,
    with_series: bool,
) {
    let file = std::fs::File::create(wal.join(format!("{index:08}"))).unwrap();
    let mut w = SegmentWriter::new(file, Codec::Snappy);
    let mut buf = Vec::new();
    if with_series {
        encode_series(series, &mut buf);
        w.log(&buf).unwrap();
    }
    for r in rounds {
        buf.clear();
        encode_samples(
            &scrape(series, t0_ms + r as i64 * 10_000, r as f64),
            &mut buf,
        );
        w.log(&buf).unwrap();
    }
    w.close().unwrap();
}
