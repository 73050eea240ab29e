//! The WAL of Prometheus 2.42 in agent mode (`--enable-feature=agent`): no query API, the WAL in
//! `<storage.agent.path>/wal`, and checkpoints that keep recent samples, not only series as a
//! server's do. The agent scrapes the node exporter every second, truncates its WAL every 5 s
//! and keeps 35 s of samples in its checkpoints; the sidecar follows it, using the agent's
//! `/api/v1/targets` and `/api/v1/targets/metadata`. It is killed with SIGKILL once the agent has
//! written a checkpoint and restarted, so it reads a checkpoint holding samples it already
//! delivered. Then the API goes away until the reader, stuck in its segment, is behind a
//! truncation, and comes back: the reader goes on from a checkpoint holding samples it has
//! already sent (older than the last it read, newer than each counter's first) and the ones the
//! deleted segments held that it never read.
//!
//! With no query API to compare with, a follower of this repository's WAL crate records every
//! sample the agent writes, from its first segment on. Since the checkpoint kept what the reader
//! missed, nothing may be missing: every node exporter series arrives, each gauge and counter
//! with exactly the recorded samples (counters without their first, the baseline, and with one
//! start time), none twice, and the emulator refuses nothing.
//!
//! Needs `prometheus` and `prometheus-node-exporter` on PATH (`scripts/install-deps.sh`).

mod common;
mod wal_common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Child, free_port, require_binary};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::typed_value;
use gcm_emulator::StoredSeries;
use prometheus_wal::{
    FollowOptions, Follower, RecordSource, RecordType, WalPosition, decode_samples, decode_series,
    newest_checkpoint, record_type,
};
use wal_common::{PREFIX, Sidecar, end_ms, saved_position, start_ms, wait_until};

const PROJECT: &str = "agent";

/// A series as the test names it: metric name, job, instance, other labels.
type Key = (String, String, String, BTreeMap<String, String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_mode_wal_arrives_exactly_once_across_a_restart_and_a_truncation() {
    // reqwest is built with rustls and no provider (for Google credentials): pick one first.
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let prometheus = require_binary("prometheus");
    let node_exporter = require_binary("prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (agent_port, node_port) = (free_port(), free_port());
    wal_common::write_config(dir.path(), Some(node_port));
    let _node = Child::spawn(
        &node_exporter,
        &[&format!("--web.listen-address=127.0.0.1:{node_port}")],
        &dir.path().join("node.log"),
    );
    let mut agent = Child::spawn(
        &prometheus,
        &[
            "--enable-feature=agent",
            &format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            &format!(
                "--storage.agent.path={}",
                dir.path().join("data-agent").display()
            ),
            &format!("--web.listen-address=127.0.0.1:{agent_port}"),
            // Hidden flag: truncate (and checkpoint) every 5 s instead of every 2 h.
            "--storage.agent.wal-truncate-frequency=5s",
            // Checkpoints keep the samples of the last 35 s (not 4 h): the one the stalled
            // reader goes on from starts after the first samples but before the last it read.
            "--storage.agent.retention.max-time=35s",
            "--storage.agent.retention.min-time=1s",
        ],
        &dir.path().join("agent.log"),
    );
    let wal = dir.path().join("data-agent/wal");
    wait_until(Duration::from_secs(30), "the WAL directory", || {
        wal.is_dir()
    })
    .await;
    let stop_recording = Arc::new(AtomicBool::new(false));
    let recorder = record_wal(&wal, &stop_recording);
    let (emulator, running) = wal_common::start_emulator().await;
    let api = running.addr;

    // Run 1 goes until the agent has checkpointed and delivery after the checkpoint was saved,
    // then dies.
    let mut sidecar = Sidecar::start(dir.path(), 1, PROJECT, api, &wal, agent_port);
    let deadline = Instant::now() + Duration::from_secs(90);
    // The agent checkpoints every 5 s and the sidecar saves every 5 s, so their phase barely
    // drifts: when each save comes too soon after a checkpoint to cover the next segment, the
    // condition would never hold. Pausing the sidecar for a moment shifts its saves.
    let mut nudge_at: Option<Instant> = None;
    let checkpoint = loop {
        let newest = newest_checkpoint(&wal).unwrap();
        if let Some(cp) = &newest
            && saved_position(&wal) > WalPosition::after_checkpoint(cp.index)
        {
            break cp.index;
        }
        if newest.is_some() {
            let at = *nudge_at.get_or_insert_with(|| Instant::now() + Duration::from_secs(12));
            if Instant::now() >= at {
                sidecar.child.signal("STOP");
                tokio::time::sleep(Duration::from_millis(2_200)).await;
                sidecar.child.signal("CONT");
                nudge_at = Some(Instant::now() + Duration::from_secs(12));
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint, or nothing delivered after it; sidecar log:\n{}",
            sidecar.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    sidecar.child.kill();
    let samples_in_checkpoint = checkpoint_samples(&wal);
    let mut sidecar = Sidecar::start(dir.path(), 2, PROJECT, api, &wal, agent_port);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The API goes away while the agent goes on truncating, and comes back.
    let (_running, _, _) =
        wal_common::stall_behind_truncation(&emulator, running, &wal, &mut sidecar).await;
    let truncations = sidecar
        .metric("prometheus_sidecar_wal_truncations_total")
        .await;
    assert!(truncations >= 1.0, "{}", sidecar.log_tail(20));

    // Let it deliver for a while, then stop scraping and let it finish.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wal_common::write_config(dir.path(), None);
    agent.signal("HUP");
    let series = wal_common::settled(&emulator, PROJECT, &sidecar).await;
    stop_recording.store(true, Ordering::Relaxed);
    let recorded = recorder.join().unwrap();

    let stats = emulator.store().stats();
    // One kill -9 of the sidecar.
    wal_common::assert_nothing_refused_but_in_flight_requests(&stats, 1, &sidecar.log_tail(40));
    let (mut gauges, mut counters, mut points) = (0, 0, 0);
    let mut mismatches = Vec::new();
    let node_series = recorded.keys().filter(|k| k.1 == "node").count();
    let arrived_node: Vec<&StoredSeries> = series
        .iter()
        .filter(|ts| ts.resource.labels.get("job").map(String::as_str) == Some("node"))
        .collect();
    assert_eq!(
        arrived_node.len(),
        node_series,
        "node exporter series in the WAL and in the emulator"
    );
    for ts in arrived_node
        .iter()
        .filter(|ts| ts.value_type == ValueType::Double)
    {
        let key = key_of(ts);
        let Some(samples) = recorded.get(&key) else {
            mismatches.push(format!("{key:?} arrived but is not in the WAL"));
            continue;
        };
        let samples: Vec<(i64, f64)> = samples.iter().copied().filter(|s| !s.1.is_nan()).collect();
        let arrived: Vec<(i64, f64)> = ts
            .points
            .iter()
            .map(|p| {
                let t = end_ms(p);
                match p.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(typed_value::Value::DoubleValue(v)) => (t, *v),
                    other => panic!("{key:?}: not a double: {other:?}"),
                }
            })
            .collect();
        let expected: Vec<(i64, f64)> = match ts.metric_kind {
            MetricKind::Gauge => {
                gauges += 1;
                samples
            }
            MetricKind::Cumulative => {
                counters += 1;
                // The first sample is the baseline; values are increases since it (no resets
                // within a minute of a node exporter).
                let (t0, v0) = samples[0];
                let starts: Vec<i64> = ts
                    .points
                    .iter()
                    .map(start_ms)
                    .filter(|s| *s != t0)
                    .collect();
                if !starts.is_empty() {
                    mismatches.push(format!("{key:?}: start times {starts:?}, not {t0}"));
                }
                samples[1..].iter().map(|&(t, v)| (t, v - v0)).collect()
            }
            _ => continue,
        };
        points += arrived.len();
        if arrived != expected {
            let missing: Vec<_> = expected.iter().filter(|s| !arrived.contains(s)).collect();
            let extra: Vec<_> = arrived.iter().filter(|s| !expected.contains(s)).collect();
            mismatches.push(format!(
                "{key:?}: {} points, {} expected; missing {:?}, extra {:?} (time, value)",
                arrived.len(),
                expected.len(),
                &missing[..missing.len().min(5)],
                &extra[..extra.len().min(5)]
            ));
        }
    }
    eprintln!(
        "agent WAL: {node_series} node series recorded, checkpoint {checkpoint} held {samples_in_checkpoint} \
         samples; compared {gauges} gauges and {counters} counters, {points} points"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} series differ:\n{}\n{}",
        mismatches.len(),
        gauges + counters,
        mismatches[..mismatches.len().min(10)].join("\n"),
        sidecar.log_tail(30)
    );
    assert!(
        gauges >= 50 && counters >= 20,
        "only {gauges} gauges and {counters} counters arrived"
    );
    assert!(
        samples_in_checkpoint > 0,
        "the agent's checkpoint held no samples: the restart did not read any"
    );

    sidecar.stop();
}

/// Follows the WAL from its first segment on a thread until `stop`, returning every sample of
/// every series by label set. Reading segments as they are written, it never needs a checkpoint.
fn record_wal(wal: &Path, stop: &Arc<AtomicBool>) -> JoinHandle<HashMap<Key, Vec<(i64, f64)>>> {
    let mut follower = Follower::open(
        wal,
        FollowOptions {
            poll_interval: Duration::from_millis(20),
            stop: stop.clone(),
            ..FollowOptions::default()
        },
    )
    .unwrap();
    std::thread::spawn(move || {
        let (mut series, mut samples) = (Vec::new(), Vec::new());
        let mut keys: HashMap<u64, Key> = HashMap::new();
        let mut out: HashMap<Key, Vec<(i64, f64)>> = HashMap::new();
        while let Some(record) = follower.next_record().unwrap() {
            assert!(
                matches!(record.source, RecordSource::Segment(_)),
                "the recorder fell behind a truncation"
            );
            match record_type(record.data) {
                RecordType::Series => {
                    decode_series(record.data, &mut series).unwrap();
                    for s in series.drain(..) {
                        let mut key: Key = Default::default();
                        for l in s.labels {
                            match l.name.as_str() {
                                "__name__" => key.0 = l.value,
                                "job" => key.1 = l.value,
                                "instance" => key.2 = l.value,
                                _ => {
                                    key.3.insert(l.name, l.value);
                                }
                            }
                        }
                        keys.insert(s.series_ref, key);
                    }
                }
                RecordType::Samples => {
                    decode_samples(record.data, &mut samples).unwrap();
                    for s in &samples {
                        let key = keys.get(&s.series_ref).expect("sample before its series");
                        out.entry(key.clone()).or_default().push((s.t, s.v));
                    }
                }
                _ => {}
            }
        }
        assert_eq!(follower.stats().truncation_restarts, 0);
        out
    })
}

/// Samples in the newest checkpoint's records.
fn checkpoint_samples(wal: &Path) -> usize {
    let mut follower = Follower::open_to_end(wal).unwrap();
    let mut samples = Vec::new();
    let mut n = 0;
    while let Some(record) = follower.next_record().unwrap() {
        if !matches!(record.source, RecordSource::Checkpoint(_)) {
            break;
        }
        if record_type(record.data) == RecordType::Samples {
            decode_samples(record.data, &mut samples).unwrap();
            n += samples.len();
        }
    }
    n
}

fn key_of(ts: &StoredSeries) -> Key {
    let resource = |name: &str| ts.resource.labels.get(name).cloned().unwrap_or_default();
    (
        ts.metric.r#type.strip_prefix(PREFIX).unwrap().to_string(),
        resource("job"),
        resource("task_id"),
        ts.metric
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}
