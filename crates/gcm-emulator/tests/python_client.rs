//! Google's official Python client (`google-cloud-monitoring`) against the emulator: reading with
//! real filter strings, intervals and paging, listing descriptors, writing, and seeing a partial
//! failure with its `CreateTimeSeriesSummary`, all as that client understands the answers.
//!
//! The client lives in a virtual environment made by `scripts/python-client.sh` (run by
//! `scripts/install-deps.sh`); without it these tests fail and say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// `target/python-client/venv/bin/python` of the workspace, or a failure naming the script.
fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    let python = root.join("target/python-client/venv/bin/python");
    assert!(
        python.is_file(),
        "the official Python client is not installed ({} is missing): run \
         scripts/python-client.sh (scripts/install-deps.sh runs it too)",
        python.display()
    );
    python
}

/// Runs `tests/python/official_client.py` with `steps` against the emulator at `address`, and
/// returns one result per step.
async fn official_client(address: String, steps: Value) -> Vec<Value> {
    let python = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/official_client.py");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .arg(script)
            .args([&address, PROJECT, &steps.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the Python client failed:\n{stderr}");
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "unreadable output ({e}):\n{}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    })
    .await
    .unwrap()
}

const TEMPERATURE: &str = "custom.googleapis.com/py/temperature";
const REQUESTS: &str = "custom.googleapis.com/py/requests";
const LATENCY: &str = "custom.googleapis.com/py/latency";

fn secs(offset: i64) -> i64 {
    at(offset).seconds
}

/// The values of a listed series' points, newest first as the API returns them.
fn doubles(series: &Value) -> Vec<f64> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"]["double_value"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_reads_series_with_filters_intervals_and_pages() {
    let mut h = start(config()).await;
    for (k, offset) in [0, 60, 120].into_iter().enumerate() {
        let k = k as f64;
        let mut series = vec![
            gauge(TEMPERATURE, &[("room", "a")], at(offset), 10.0 + k),
            gauge(TEMPERATURE, &[("room", "b")], at(offset), 20.0 + k),
            gauge(TEMPERATURE, &[("room", "c")], at(offset), 30.0 + k),
        ];
        if offset > 0 {
            series.push(counter(
                REQUESTS,
                &[("path", "/x")],
                at(-60),
                at(offset),
                offset * 2,
            ));
        }
        h.create(series).await.unwrap();
    }
    h.create(vec![histogram(
        LATENCY,
        at(-60),
        at(0),
        &[0.1, 1.0],
        &[1, 2, 3],
    )])
    .await
    .unwrap();

    let whole = |filter: &str| json!({"op": "list_time_series", "filter": filter, "start": secs(-3600), "end": secs(3600)});
    let results = official_client(
        h.running.addr.to_string(),
        json!([
            whole(&format!(
                r#"metric.type = "{TEMPERATURE}" AND metric.labels.room = "b""#
            )),
            {
                "op": "list_time_series",
                "filter": format!(r#"metric.type = "{TEMPERATURE}" AND resource.type = "global""#),
                "start": secs(-3600), "end": secs(3600), "page_size": 2,
            },
            {
                "op": "list_time_series",
                "filter": format!(r#"metric.type = "{TEMPERATURE}" AND metric.label.room = "a""#),
                "start": secs(30), "end": secs(60),
            },
            whole(&format!(r#"metric.type = "{REQUESTS}""#)),
            whole(&format!(r#"metric.type = "{LATENCY}""#)),
            whole(r#"metric.type = "custom.googleapis.com/py/nothing""#),
            {"op": "list_metric_descriptors", "filter": r#"metric.type = starts_with("custom.googleapis.com/py/")"#},
        ]),
    )
    .await;

    // One label value: that series only, every point, newest first, as the API orders them.
    let room_b = &results[0];
    assert_eq!(room_b["pages"], 1, "{room_b}");
    let series = room_b["time_series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{room_b}");
    let b = &series[0];
    assert_eq!(b["metric_type"], TEMPERATURE);
    assert_eq!(b["metric_labels"], json!({"room": "b"}));
    assert_eq!(b["resource_type"], "global");
    assert_eq!(b["resource_labels"], json!({"project_id": PROJECT}));
    assert_eq!(b["metric_kind"], "GAUGE");
    assert_eq!(b["value_type"], "DOUBLE");
    assert_eq!(doubles(b), [22.0, 21.0, 20.0]);
    let ends: Vec<_> = b["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(ends, [secs(120), secs(60), secs(0)]);

    // A page size of 2 points: each series (3 points) comes on a page of its own, and the
    // client follows the page tokens to the end.
    let paged = &results[1];
    assert_eq!(paged["pages"], 3, "{paged}");
    let mut rooms: Vec<_> = paged["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric_labels"]["room"].as_str().unwrap().to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms, ["a", "b", "c"]);

    // The interval (start, end] holds one point of room a.
    let window = results[2]["time_series"].as_array().unwrap();
    assert_eq!(window.len(), 1, "{}", results[2]);
    assert_eq!(doubles(&window[0]), [11.0]);

    // A cumulative INT64 series keeps its start time and integer values.
    let requests = results[3]["time_series"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{}", results[3]);
    let r = &requests[0];
    assert_eq!(r["metric_kind"], "CUMULATIVE");
    assert_eq!(r["value_type"], "INT64");
    assert_eq!(r["metric_labels"], json!({"path": "/x"}));
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for p in points {
        assert_eq!(p["start"].as_f64().unwrap() as i64, secs(-60));
    }
    assert_eq!(points[0]["value"]["int64_value"], 240);
    assert_eq!(points[1]["value"]["int64_value"], 120);

    // A distribution arrives with its bounds and bucket counts.
    let latency = results[4]["time_series"].as_array().unwrap();
    assert_eq!(latency.len(), 1, "{}", results[4]);
    assert_eq!(latency[0]["value_type"], "DISTRIBUTION");
    let d = &latency[0]["points"][0]["value"]["distribution"];
    assert_eq!(d["count"], 6);
    assert_eq!(d["bounds"], json!([0.1, 1.0]));
    assert_eq!(d["bucket_counts"], json!([1, 2, 3]));

    // A metric type nobody wrote: no series, and no error.
    assert_eq!(results[5]["time_series"], json!([]), "{}", results[5]);

    // Descriptors carry the API's resource names, kinds and label keys.
    let mut descriptors = results[6]["descriptors"].as_array().unwrap().clone();
    descriptors.sort_by_key(|d| d["type"].as_str().unwrap().to_string());
    assert_eq!(
        descriptors,
        [
            json!({"name": format!("projects/{PROJECT}/metricDescriptors/{LATENCY}"),
                   "type": LATENCY, "metric_kind": "CUMULATIVE", "value_type": "DISTRIBUTION",
                   "labels": []}),
            json!({"name": format!("projects/{PROJECT}/metricDescriptors/{REQUESTS}"),
                   "type": REQUESTS, "metric_kind": "CUMULATIVE", "value_type": "INT64",
                   "labels": ["path"]}),
            json!({"name": format!("projects/{PROJECT}/metricDescriptors/{TEMPERATURE}"),
                   "type": TEMPERATURE, "metric_kind": "GAUGE", "value_type": "DOUBLE",
                   "labels": ["room"]}),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_writes_and_sees_refusals_as_the_api_gives_them() {
    let h = start(config()).await;
    let written = "custom.googleapis.com/py/written";
    let results = official_client(
        h.running.addr.to_string(),
        json!([
            {"op": "create_gauges", "series": [
                {"type": written, "labels": {"host": "h1"}, "end": secs(0), "value": 1.5},
                {"type": written, "labels": {"host": "h2"}, "end": secs(0), "value": 2.5},
            ]},
            // One good series and one with a label key the API refuses.
            {"op": "create_gauges", "series": [
                {"type": written, "labels": {"host": "h3"}, "end": secs(0), "value": 3.5},
                {"type": written, "labels": {"bad-key": "x"}, "end": secs(0), "value": 4.5},
            ]},
            // A point older than 25 hours refuses the only series of the request.
            {"op": "create_gauges", "series": [
                {"type": written, "labels": {"host": "h4"}, "end": secs(-30 * 3600), "value": 1.0},
            ]},
            {"op": "list_time_series", "filter": format!(r#"metric.type = "{written}" OR metric.labels.host = "h1""#),
             "start": secs(-60), "end": secs(60)},
            {"op": "list_time_series", "filter": format!(r#"metric.type = "{written}""#),
             "start": secs(-60), "end": secs(60)},
        ]),
    )
    .await;

    assert_eq!(results[0], json!({"ok": true}));
    let mut stored: Vec<_> = h
        .emulator
        .store()
        .series(PROJECT, written)
        .into_iter()
        .map(|s| s.metric.labels["host"].clone())
        .collect();
    stored.sort();
    assert_eq!(stored, ["h1", "h2", "h3"], "written by the Python client");

    // The partial failure: INVALID_ARGUMENT whose details the client decodes into the summary.
    let partial = &results[1]["error"];
    assert_eq!(partial["code"], "INVALID_ARGUMENT", "{}", results[1]);
    assert!(
        partial["message"]
            .as_str()
            .unwrap()
            .contains("One or more TimeSeries could not be written"),
        "{partial}"
    );
    assert_eq!(
        partial["details"],
        json!([{"summary": {"total_point_count": 2, "success_point_count": 1,
                            "errors": [{"code": 3, "point_count": 1}]}}]),
        "{partial}"
    );

    let too_old = &results[2]["error"];
    assert_eq!(too_old["code"], "INVALID_ARGUMENT", "{}", results[2]);
    assert_eq!(
        too_old["details"][0]["summary"]["success_point_count"], 0,
        "{too_old}"
    );

    // What the emulator does not understand is refused, not ignored.
    let unsupported = &results[3]["error"];
    assert_eq!(unsupported["code"], "INVALID_ARGUMENT", "{}", results[3]);
    assert!(
        unsupported["message"].as_str().unwrap().contains("filter"),
        "{unsupported}"
    );

    let listed = results[4]["time_series"].as_array().unwrap();
    let mut values: Vec<_> = listed.iter().flat_map(doubles).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [1.5, 2.5, 3.5]);
}
