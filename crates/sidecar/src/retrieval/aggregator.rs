//! Aggregated counters (`aggregated_counters` in the config file): the sum of the increases of
//! every Prometheus counter series a set of selectors matches, exported as one CUMULATIVE DOUBLE
//! metric `custom.googleapis.com/opencensus/<name>`.
//!
//! Owns which series feed which aggregate, the per-series delta rules, the running totals and
//! the points that export them. Must never queue points itself or look series up: the reader
//! feeds samples and sends the points this module makes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use ahash::AHashMap;
use prometheus_wal::Label;

use crate::progress::aggregates::{SavedAggregates, SavedInput, SavedTotal};

pub use crate::config::file::AggregatedCounterConfig;
use crate::model::{Point, PointKind, PointValue, SeriesPrototype};

/// Prefix of the exported metric types (the original's OpenCensus exporter's).
pub const METRIC_TYPE_PREFIX: &str = "custom.googleapis.com/opencensus/";

/// WAL time between two points of an aggregate (the original's reporting period).
pub const EXPORT_INTERVAL_MS: i64 = 60_000;

/// The current value of one aggregate, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateValue {
    /// Name as configured (`metric`).
    pub name: String,
    /// Name as a Prometheus metric (see [`prometheus_name`]).
    pub prometheus_name: String,
    /// Description as configured (`help`).
    pub help: String,
    /// Sum of the increases seen so far.
    pub value: f64,
}

/// One configured aggregate and its running total.
#[derive(Debug)]
struct Aggregate {
    config: AggregatedCounterConfig,
    /// The total as `f64` bits; only the reader thread adds.
    total: AtomicU64,
    prototype: Arc<SeriesPrototype>,
}

/// All aggregates. Shared between the reader (which adds) and `/metrics` (which reads, see
/// [`CounterAggregator::values`]): the totals are atomics.
#[derive(Debug)]
pub struct CounterAggregator {
    aggregates: Vec<Aggregate>,
    /// What a previous run saved: inputs' last samples (by labels hash), taken as their series
    /// show up again, and the export schedule, taken by the reader.
    restored: Mutex<Restored>,
}

#[derive(Debug, Default)]
struct Restored {
    inputs: AHashMap<u64, (i64, f64)>,
    schedule: Option<ExportSchedule>,
}

/// What a series that feeds aggregates remembers: which aggregates, and its last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    /// Indexes of the aggregates the series feeds.
    aggregates: Box<[u32]>,
    /// Last sample `(t, v)`; `None` before the first, which is only a baseline.
    last: Option<(i64, f64)>,
}

impl CounterAggregator {
    /// Aggregates for `configs`, exported for project `project_id` on the monitored resource
    /// `global`, which the API accepts for custom metrics (the original's exporter fell back to
    /// it when it detected no resource). Two sidecars writing one project must therefore give
    /// their aggregates different names.
    pub fn new(configs: Vec<AggregatedCounterConfig>, project_id: &str) -> CounterAggregator {
        let aggregates = configs
            .into_iter()
            .map(|config| Aggregate {
                prototype: Arc::new(SeriesPrototype::new(
                    format!("{METRIC_TYPE_PREFIX}{}", config.metric),
                    &[],
                    "global",
                    &[("project_id", project_id.to_string())],
                    PointKind::CumulativeDouble,
                )),
                config,
                total: AtomicU64::new(0f64.to_bits()),
            })
            .collect();
        CounterAggregator {
            aggregates,
            restored: Mutex::default(),
        }
    }

    /// Continues what a previous run saved: the totals of the aggregates still configured (by
    /// name), each input's last sample, and the points' start and last end.
    pub fn restore(&self, saved: &SavedAggregates) {
        for a in &self.aggregates {
            if let Some(t) = saved.totals.iter().find(|t| t.metric == a.config.metric) {
                a.total.store(t.total.to_bits(), Relaxed);
            }
        }
        let mut restored = self.restored.lock().unwrap_or_else(PoisonError::into_inner);
        restored.inputs = saved
            .inputs
            .iter()
            .map(|i| (i.labels_hash, (i.t, i.v)))
            .collect();
        restored.schedule = Some(ExportSchedule {
            start_ms: saved.start_ms,
            last_ms: saved.last_ms,
        });
    }

    /// The export schedule a previous run saved, once (a fresh one otherwise).
    pub fn take_schedule(&self) -> ExportSchedule {
        let mut restored = self.restored.lock().unwrap_or_else(PoisonError::into_inner);
        restored.schedule.take().unwrap_or_default()
    }

    /// Like [`tracker_for`](Self::tracker_for), for a series with identity `labels_hash`,
    /// continuing from its last sample before a restart.
    pub fn tracker_for_series(&self, labels: &[Label], labels_hash: u64) -> Option<Tracker> {
        let mut tracker = self.tracker_for(labels)?;
        let mut restored = self.restored.lock().unwrap_or_else(PoisonError::into_inner);
        if !restored.inputs.is_empty() {
            tracker.last = restored.inputs.remove(&labels_hash);
        }
        Some(tracker)
    }

    /// The state to save: totals, `schedule` and the last sample of each of `inputs`
    /// (`(labels hash, tracker)`).
    pub fn snapshot<'a>(
        &self,
        schedule: &ExportSchedule,
        inputs: impl Iterator<Item = (u64, &'a Tracker)>,
    ) -> SavedAggregates {
        SavedAggregates {
            start_ms: schedule.start_ms,
            last_ms: schedule.last_ms,
            totals: self
                .aggregates
                .iter()
                .map(|a| SavedTotal {
                    metric: a.config.metric.clone(),
                    total: f64::from_bits(a.total.load(Relaxed)),
                })
                .collect(),
            inputs: inputs
                .filter_map(|(labels_hash, tracker)| {
                    let (t, v) = tracker.last?;
                    Some(SavedInput { labels_hash, t, v })
                })
                .collect(),
        }
    }

    /// Whether no aggregate is configured.
    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty()
    }

    /// The tracker for a series with these sorted labels, if any aggregate's selectors match.
    /// Decided once per series from its labels alone: every sample of a matching series counts,
    /// whether or not the series is exported, and every part of a histogram alike.
    pub fn tracker_for(&self, labels: &[Label]) -> Option<Tracker> {
        let aggregates: Box<[u32]> = self
            .aggregates
            .iter()
            .enumerate()
            .filter(|(_, a)| a.config.filters.iter().any(|s| s.matches(labels)))
            .map(|(i, _)| i as u32)
            .collect();
        (!aggregates.is_empty()).then_some(Tracker {
            aggregates,
            last: None,
        })
    }

    /// Feeds one raw sample of a tracked series: the first sample is a baseline, an older sample
    /// is ignored (so samples fed again after a restart add nothing), a value below the previous one is a reset (its whole value is the increase),
    /// and a non-zero increase is added to every aggregate the series feeds.
    pub fn observe(&self, tracker: &mut Tracker, t: i64, v: f64) {
        if v.is_nan() {
            return;
        }
        let delta = match tracker.last {
            // No sample yet (`None`, not a timestamp of 0): the first one is only a baseline.
            None => {
                tracker.last = Some((t, v));
                return;
            }
            Some((last_t, _)) if t < last_t => return,
            Some((_, last_v)) if v < last_v => v,
            Some((_, last_v)) => v - last_v,
        };
        tracker.last = Some((t, v));
        if delta == 0.0 {
            return;
        }
        for &i in tracker.aggregates.iter() {
            if let Some(a) = self.aggregates.get(i as usize) {
                // Only the reader thread adds, so the update never retries in practice.
                let _ = a.total.fetch_update(Relaxed, Relaxed, |bits| {
                    Some((f64::from_bits(bits) + delta).to_bits())
                });
            }
        }
    }

    /// Current totals, in configuration order.
    pub fn values(&self) -> Vec<AggregateValue> {
        self.aggregates
            .iter()
            .map(|a| AggregateValue {
                name: a.config.metric.clone(),
                prometheus_name: prometheus_name(&a.config.metric),
                help: a.config.help.clone(),
                value: f64::from_bits(a.total.load(Relaxed)),
            })
            .collect()
    }

    /// One point per aggregate for the interval `[start_ms, end_ms]`.
    pub fn points(&self, start_ms: i64, end_ms: i64) -> Vec<(Arc<SeriesPrototype>, Point)> {
        self.aggregates
            .iter()
            .map(|a| {
                let point = Point {
                    start_ms: Some(start_ms),
                    end_ms,
                    value: PointValue::Double(f64::from_bits(a.total.load(Relaxed))),
                };
                (a.prototype.clone(), point)
            })
            .collect()
    }
}

/// When aggregate points are due, in WAL time (not wall time): one per aggregate whenever the
/// newest sample read is at least [`EXPORT_INTERVAL_MS`] past the previous points. Owned by the
/// reader.
#[derive(Debug, Default)]
pub struct ExportSchedule {
    /// Start of every aggregate's interval: the first sample time seen.
    start_ms: Option<i64>,
    /// End of the last points made.
    last_ms: Option<i64>,
}

impl ExportSchedule {
    /// Notes that samples up to `newest_ms` were read; returns the interval of the points to
    /// make now, if due.
    pub fn due(&mut self, newest_ms: i64) -> Option<(i64, i64)> {
        let start = *self.start_ms.get_or_insert(newest_ms);
        let last = self.last_ms.unwrap_or(start);
        if newest_ms - last < EXPORT_INTERVAL_MS {
            return None;
        }
        self.last_ms = Some(newest_ms);
        Some((start, newest_ms))
    }
}

/// The name an aggregate has on `/metrics`, as the original's OpenCensus Prometheus exporter
/// made it: every character other than an ASCII letter or digit becomes `_`, the result is cut
/// to 100 characters, and a leading digit gets a `key_` prefix.
pub fn prometheus_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(100)
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Selector;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut v: Vec<Label> = pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        v.sort();
        v
    }

    fn aggregator() -> CounterAggregator {
        let config = |metric: &str, filters: &[&str]| AggregatedCounterConfig {
            metric: metric.into(),
            help: format!("help of {metric}"),
            filters: filters
                .iter()
                .map(|f| Selector::parse(f).unwrap())
                .collect(),
        };
        CounterAggregator::new(
            vec![
                config(
                    "requests",
                    &[r#"http_requests_total{code="200"}"#, "rpc_total"],
                ),
                config("all_http", &["http_requests_total"]),
                config("none", &[]),
            ],
            "proj",
        )
    }

    fn totals(a: &CounterAggregator) -> Vec<f64> {
        a.values().iter().map(|v| v.value).collect()
    }

    #[test]
    fn a_series_feeds_every_aggregate_whose_selectors_match() {
        let a = aggregator();
        let t = a
            .tracker_for(&labels(&[
                ("__name__", "http_requests_total"),
                ("code", "200"),
            ]))
            .unwrap();
        assert_eq!(&*t.aggregates, &[0, 1]);
        let t = a
            .tracker_for(&labels(&[
                ("__name__", "http_requests_total"),
                ("code", "500"),
            ]))
            .unwrap();
        assert_eq!(&*t.aggregates, &[1]);
        assert_eq!(
            &*a.tracker_for(&labels(&[("__name__", "rpc_total")]))
                .unwrap()
                .aggregates,
            &[0]
        );
        assert_eq!(a.tracker_for(&labels(&[("__name__", "other")])), None);
    }

    #[test]
    fn increases_are_summed_from_a_baseline_with_resets() {
        let a = aggregator();
        let mut x = a
            .tracker_for(&labels(&[("__name__", "rpc_total")]))
            .unwrap();
        let mut y = a
            .tracker_for(&labels(&[("__name__", "rpc_total"), ("i", "2")]))
            .unwrap();
        a.observe(&mut x, 1000, 10.0);
        a.observe(&mut y, 1000, 100.0);
        assert_eq!(totals(&a), [0.0, 0.0, 0.0]);
        a.observe(&mut x, 2000, 15.0);
        a.observe(&mut y, 2000, 101.0);
        assert_eq!(totals(&a), [6.0, 0.0, 0.0]);
        // Reset: the whole new value is the increase.
        a.observe(&mut x, 3000, 4.0);
        assert_eq!(totals(&a), [10.0, 0.0, 0.0]);
        // Older samples are ignored; NaN too.
        a.observe(&mut x, 2500, 100.0);
        a.observe(&mut x, 4000, f64::NAN);
        assert_eq!(totals(&a), [10.0, 0.0, 0.0]);
        a.observe(&mut x, 4000, 5.0);
        assert_eq!(totals(&a), [11.0, 0.0, 0.0]);
    }

    #[test]
    fn a_first_sample_at_time_zero_is_a_baseline_once() {
        let a = aggregator();
        let mut x = a
            .tracker_for(&labels(&[("__name__", "rpc_total")]))
            .unwrap();
        a.observe(&mut x, 0, 1.0);
        a.observe(&mut x, 0, 3.0);
        assert_eq!(totals(&a)[0], 2.0);
    }

    #[test]
    fn points_are_cumulative_under_custom_opencensus() {
        let a = aggregator();
        let mut x = a
            .tracker_for(&labels(&[("__name__", "rpc_total")]))
            .unwrap();
        a.observe(&mut x, 1000, 1.0);
        a.observe(&mut x, 2000, 3.5);
        let points = a.points(1000, 61_000);
        assert_eq!(points.len(), 3);
        let (proto, point) = &points[0];
        assert_eq!(
            proto.metric_type(),
            "custom.googleapis.com/opencensus/requests"
        );
        assert_eq!(proto.kind, PointKind::CumulativeDouble);
        assert_eq!(point.start_ms, Some(1000));
        assert_eq!(point.end_ms, 61_000);
        assert_eq!(point.value, PointValue::Double(2.5));
    }

    #[test]
    fn points_are_due_every_minute_of_wal_time() {
        let mut s = ExportSchedule::default();
        assert_eq!(s.due(1_000), None);
        assert_eq!(s.due(60_999), None);
        assert_eq!(s.due(61_000), Some((1_000, 61_000)));
        assert_eq!(s.due(100_000), None);
        assert_eq!(s.due(125_000), Some((1_000, 125_000)));
    }

    #[test]
    fn names_on_metrics_are_sanitised_like_the_original() {
        assert_eq!(prometheus_name("a/b.c-d"), "a_b_c_d");
        assert_eq!(prometheus_name("1abc"), "key_1abc");
        assert_eq!(prometheus_name(&"x".repeat(150)).len(), 100);
    }
}
