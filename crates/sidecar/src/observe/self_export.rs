//! `--monitoring.backend=stackdriver`: the sidecar's own metrics sent to Cloud Monitoring every
//! minute, as the original's OpenCensus views were, through an exporter of their own (the same
//! checks, batching, retries and client as the WAL's points, one shard with its own queue: the
//! reader stays the only producer of the main queues). Metric types are the views' names under
//! `custom.googleapis.com/opencensus/`, CUMULATIVE INT64 from the process's start, on a
//! `generic_task` resource naming this sidecar. It must never touch the main export queues.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use crate::export::{ExportHandle, Exporter, QueuedPoint};
use crate::model::{Point, PointKind, PointValue, SeriesPrototype};
use crate::shutdown::Shutdown;
use crate::stats::{DropReason, Stats, unix_millis};

/// How often the metrics are sent (the original's OpenCensus reporting period).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Least time between two points of one series (the API refuses points of a series written
/// more often than every 5 s): a final export right after a periodic one is skipped.
const MIN_SPACING: Duration = Duration::from_secs(10);

/// Prefix of every metric type: the OpenCensus exporter's.
pub const PREFIX: &str = "custom.googleapis.com/opencensus/";

/// The `generic_task` labels of this sidecar's own series.
#[derive(Debug, Clone)]
pub struct SelfResource {
    labels: Vec<(&'static str, String)>,
}

impl SelfResource {
    /// `project_id`, then `location` and `namespace` (the generic flags, else the Kubernetes
    /// location and cluster, else `global` and `default`), `job` (the program) and `task_id`
    /// (the host name, a pod's name on Kubernetes).
    pub fn new(project_id: &str, location: &str, namespace: &str) -> SelfResource {
        let or = |v: &str, fallback: &str| {
            if v.is_empty() {
                fallback.to_string()
            } else {
                v.to_string()
            }
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        SelfResource {
            labels: vec![
                ("project_id", project_id.to_string()),
                ("location", or(location, "global")),
                ("namespace", or(namespace, "default")),
                ("job", "stackdriver-prometheus-sidecar".to_string()),
                ("task_id", or(host.trim(), "unknown")),
            ],
        }
    }
}

/// A series' metric labels.
type Labels = Vec<(String, String)>;

/// The points of every metric at `now`, counted since `started`.
pub fn points(
    stats: &Stats,
    resource: &SelfResource,
    started: SystemTime,
    now: SystemTime,
) -> Vec<QueuedPoint> {
    let start_ms = unix_millis(started) as i64;
    // A cumulative point's interval must not be empty.
    let end_ms = (unix_millis(now) as i64).max(start_ms + 1);
    let mut series: Vec<(String, Labels, i64)> = vec![
        (
            "prometheus_sidecar/samples_processed".into(),
            Vec::new(),
            stats.reader.samples_processed.load(Relaxed) as i64,
        ),
        (
            "prometheus_sidecar/batches_processed".into(),
            Vec::new(),
            stats.reader.batches_processed.load(Relaxed) as i64,
        ),
        (
            "prometheus_sidecar/samples_produced".into(),
            Vec::new(),
            stats.export.samples_produced.load(Relaxed) as i64,
        ),
        (
            "agent.googleapis.com/agent/uptime".into(),
            vec![(
                "version".into(),
                format!("stackdriver-prometheus-sidecar/{}", crate::VERSION),
            )],
            (end_ms - start_ms) / 1000,
        ),
    ];
    for reason in DropReason::ALL {
        series.push((
            "prometheus_sidecar/dropped_series".into(),
            vec![("reason".into(), reason.as_str().into())],
            stats.reader.series_dropped_count(reason) as i64,
        ));
    }
    for (code, n) in stats.export.point_status_counts().iter().enumerate() {
        if *n > 0 {
            series.push((
                "agent.googleapis.com/agent/monitoring/point_count".into(),
                vec![("status".into(), code.to_string())],
                *n as i64,
            ));
        }
    }
    series
        .into_iter()
        .map(|(name, labels, value)| QueuedPoint {
            series: Arc::new(SeriesPrototype::new(
                format!("{PREFIX}{name}"),
                &labels,
                "generic_task",
                &resource.labels,
                PointKind::CumulativeInt64,
            )),
            point: Point {
                start_ms: Some(start_ms),
                end_ms,
                value: PointValue::Int64(value),
            },
            position: Default::default(),
            delivery: None,
        })
        .collect()
}

/// Sends the metrics every [`INTERVAL`] through `exporter` until shutdown, then once more
/// (unless the last send was moments ago) and waits for the exporter to finish.
pub async fn run(
    exporter: Exporter,
    stats: Arc<Stats>,
    resource: SelfResource,
    started: SystemTime,
    shutdown: Shutdown,
) {
    let handle = exporter.handle();
    let mut handle = Some(handle);
    let mut last_sent: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    // After a pause (a stopped process, a busy host), one send and then the regular spacing:
    // a burst of catch-up sends would write each series faster than the API accepts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.triggered() => true,
        };
        if stopping && last_sent.is_some_and(|at| at.elapsed() < MIN_SPACING) {
            break;
        }
        let batch = points(&stats, &resource, started, SystemTime::now());
        let Some(mut h) = handle.take() else {
            break;
        };
        let pushed = tokio::task::spawn_blocking(move || {
            let ok = push_all(&mut h, batch);
            (h, ok)
        })
        .await;
        match pushed {
            Ok((h, true)) => handle = Some(h),
            _ => break,
        }
        last_sent = Some(tokio::time::Instant::now());
        if stopping {
            break;
        }
    }
    drop(handle);
    exporter.finish().await;
}

fn push_all(handle: &mut ExportHandle, batch: Vec<QueuedPoint>) -> bool {
    for point in batch {
        if handle.push_blocking(point).is_err() {
            return false;
        }
    }
    handle.flush_blocking().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate;

    #[test]
    fn every_point_is_one_the_api_accepts() {
        let stats = Stats::default();
        stats.export.point_status(0, 5);
        stats.export.point_status(3, 1);
        let resource = SelfResource::new("p", "", "ns");
        let started = SystemTime::now() - Duration::from_secs(90);
        let points = points(&stats, &resource, started, SystemTime::now());
        let types: Vec<String> = points
            .iter()
            .map(|p| p.series.metric_type().to_string())
            .collect();
        assert!(types.contains(&format!("{PREFIX}prometheus_sidecar/samples_processed")));
        assert_eq!(
            types
                .iter()
                .filter(|t| t.ends_with("agent/monitoring/point_count"))
                .count(),
            2
        );
        for p in &points {
            assert_eq!(p.series.invalid, None, "{}", p.series.metric_type());
            let limits = validate::TimeLimits {
                max_age: Some(Duration::from_secs(25 * 3600)),
                max_future: Some(Duration::from_secs(300)),
            };
            let now = unix_millis(SystemTime::now()) as i64;
            validate::check_point(p.series.kind, &p.point, now, limits).unwrap();
        }
        let uptime = points
            .iter()
            .find(|p| p.series.metric_type().ends_with("agent/uptime"))
            .unwrap();
        assert_eq!(uptime.point.value, PointValue::Int64(90));
    }
}
