//! Everything the emulator accepted, kept in memory, and the rules that depend on it.
//!
//! Owns the per-project metric descriptors (auto-created by the first accepted write), the time
//! series and their points, the rejection counters, and the rules that compare a new point with
//! what came before. A point is written only when every rule passes, so a refused point leaves no
//! trace but its counter. Must never validate a request's fields on its own ([`crate::validate`])
//! nor build gRPC answers ([`crate::create`], [`crate::list`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::api::{LabelDescriptor, Metric, MetricDescriptor, MonitoredResource};
use gcm_api::monitoring::{Point, TimeSeries};

use crate::EmulatorConfig;
use crate::identity::SeriesKey;
use crate::reason::RejectReason;
use crate::time::{self, Nanos};
use crate::validate::{Checked, PROMETHEUS_DOMAIN, PROMETHEUS_MAX_LABELS, Problem};

/// The emulator's memory, shared by the server and by tests that inspect it.
#[derive(Debug, Default)]
pub struct Store {
    state: Mutex<State>,
}

/// A series as stored, for tests and tools.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSeries {
    /// Metric type and labels.
    pub metric: Metric,
    /// Monitored resource type and labels.
    pub resource: MonitoredResource,
    /// The kind every point was written with.
    pub metric_kind: MetricKind,
    /// The value type every point was written with.
    pub value_type: ValueType,
    /// The retained points, oldest first, exactly as they were sent.
    pub points: Vec<Point>,
}

/// Counters since the emulator started, and the size of what it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `CreateTimeSeries` calls received.
    pub create_requests: u64,
    /// Calls refused as a whole (nothing written).
    pub requests_rejected: u64,
    /// Calls where some series were written and others refused.
    pub requests_partially_rejected: u64,
    /// Points written.
    pub points_accepted: u64,
    /// Points refused, whatever the reason.
    pub points_rejected: u64,
    /// Points refused, by the rule they broke.
    pub rejected_by_reason: BTreeMap<RejectReason, u64>,
    /// Distinct series stored, all projects together.
    pub series_stored: usize,
    /// Metric descriptors stored, all projects together.
    pub metric_types: usize,
}

impl Stats {
    /// The one-line summary the server logs periodically.
    pub fn summary_line(&self) -> String {
        let reasons = if self.rejected_by_reason.is_empty() {
            "none".to_owned()
        } else {
            self.rejected_by_reason
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "requests={} requests_rejected={} requests_partially_rejected={} series={} \
             points_accepted={} points_rejected={} rejected_by_reason={} metric_types={}",
            self.create_requests,
            self.requests_rejected,
            self.requests_partially_rejected,
            self.series_stored,
            self.points_accepted,
            self.points_rejected,
            reasons,
            self.metric_types
        )
    }
}

/// The data behind the store's lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) projects: BTreeMap<String, Project>,
    counters: Stats,
}

/// One project's descriptors and series.
#[derive(Debug, Default)]
pub(crate) struct Project {
    pub(crate) descriptors: BTreeMap<String, MetricDescriptor>,
    pub(crate) series: BTreeMap<SeriesKey, Series>,
}

/// One stored series.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) metric: Metric,
    pub(crate) resource: MonitoredResource,
    pub(crate) kind: MetricKind,
    pub(crate) value_type: ValueType,
    /// Oldest first; trimmed to `max_points_per_series`.
    pub(crate) points: VecDeque<Point>,
    /// Start of the latest point (cumulative only).
    last_start: Option<Nanos>,
    /// End of the latest point.
    last_end: Nanos,
}

impl Series {
    pub(crate) fn to_stored(&self) -> StoredSeries {
        StoredSeries {
            metric: self.metric.clone(),
            resource: self.resource.clone(),
            metric_kind: self.kind,
            value_type: self.value_type,
            points: self.points.iter().cloned().collect(),
        }
    }
}

impl Store {
    /// Locks the state. A panic while the lock was held cannot leave it half-updated (writes
    /// are committed only after every check), so a poisoned lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Projects that received at least one accepted point.
    pub fn projects(&self) -> Vec<String> {
        self.lock().projects.keys().cloned().collect()
    }

    /// The auto-created metric descriptors of `project`, sorted by metric type.
    pub fn metric_descriptors(&self, project: &str) -> Vec<MetricDescriptor> {
        let state = self.lock();
        state
            .projects
            .get(project)
            .map(|p| p.descriptors.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The descriptor of `metric_type` in `project`, if a write created it.
    pub fn metric_descriptor(&self, project: &str, metric_type: &str) -> Option<MetricDescriptor> {
        self.lock()
            .projects
            .get(project)?
            .descriptors
            .get(metric_type)
            .cloned()
    }

    /// The series of `metric_type` in `project`, sorted by labels.
    pub fn series(&self, project: &str, metric_type: &str) -> Vec<StoredSeries> {
        let state = self.lock();
        let Some(p) = state.projects.get(project) else {
            return Vec::new();
        };
        p.series
            .iter()
            .filter(|(k, _)| k.metric_type == metric_type)
            .map(|(_, s)| s.to_stored())
            .collect()
    }

    /// Every series of `project`, sorted by metric type then labels.
    pub fn all_series(&self, project: &str) -> Vec<StoredSeries> {
        let state = self.lock();
        let Some(p) = state.projects.get(project) else {
            return Vec::new();
        };
        p.series.values().map(Series::to_stored).collect()
    }

    /// Counters and sizes, as of now.
    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            series_stored: state.projects.values().map(|p| p.series.len()).sum(),
            metric_types: state.projects.values().map(|p| p.descriptors.len()).sum(),
            ..state.counters.clone()
        }
    }
}

impl State {
    /// The kind of `metric_type`'s descriptor in `project`, if it exists.
    pub(crate) fn known_kind(&self, project: &str, metric_type: &str) -> Option<MetricKind> {
        let descriptor = self.projects.get(project)?.descriptors.get(metric_type)?;
        MetricKind::try_from(descriptor.metric_kind).ok()
    }

    pub(crate) fn count_request(&mut self) {
        self.counters.create_requests += 1;
    }

    /// Records the outcome of one request: `rejected` holds the reason and point count of each
    /// refused series.
    pub(crate) fn count_outcome(&mut self, accepted: u64, rejected: &[(RejectReason, u64)]) {
        if !rejected.is_empty() {
            if accepted == 0 {
                self.counters.requests_rejected += 1;
            } else {
                self.counters.requests_partially_rejected += 1;
            }
        }
        for &(reason, points) in rejected {
            self.counters.points_rejected += points;
            *self.counters.rejected_by_reason.entry(reason).or_default() += points;
        }
    }

    /// Applies the rules that depend on stored data and, if they pass, writes the point of `ts`
    /// (already field-checked into `checked`), creating or widening the metric descriptor.
    pub(crate) fn write(
        &mut self,
        project: &str,
        ts: &TimeSeries,
        checked: &Checked,
        cfg: &EmulatorConfig,
    ) -> Result<(), Problem> {
        let key = SeriesKey::of(ts);
        let entry = self.projects.entry(project.to_owned()).or_default();
        let labels = check_descriptor(entry.descriptors.get(&key.metric_type), &key, checked, cfg)?;
        if let Some(series) = entry.series.get(&key) {
            check_order(series, &key.metric_type, checked, cfg)?;
        }

        let descriptor = entry
            .descriptors
            .entry(key.metric_type.clone())
            .or_insert_with(|| MetricDescriptor {
                name: format!("projects/{project}/metricDescriptors/{}", key.metric_type),
                r#type: key.metric_type.clone(),
                metric_kind: checked.kind as i32,
                value_type: checked.value_type as i32,
                ..Default::default()
            });
        descriptor.labels = labels
            .into_iter()
            .map(|key| LabelDescriptor {
                key,
                ..Default::default()
            })
            .collect();

        let series = entry.series.entry(key).or_insert_with(|| Series {
            metric: ts.metric.clone().unwrap_or_default(),
            resource: ts.resource.clone().unwrap_or_default(),
            kind: checked.kind,
            value_type: checked.value_type,
            points: VecDeque::new(),
            last_start: None,
            last_end: checked.end,
        });
        series.last_start = checked.start;
        series.last_end = checked.end;
        // `check` guarantees exactly one point.
        series.points.extend(ts.points.first().cloned());
        if let Some(max) = cfg.max_points_per_series {
            while series.points.len() > max {
                series.points.pop_front();
            }
        }
        self.counters.points_accepted += 1;
        Ok(())
    }
}

/// Kind and value type must match an existing descriptor, and the union of label keys must stay
/// within the limit. Answers that union, sorted.
fn check_descriptor(
    descriptor: Option<&MetricDescriptor>,
    key: &SeriesKey,
    checked: &Checked,
    cfg: &EmulatorConfig,
) -> Result<Vec<String>, Problem> {
    let metric_type = &key.metric_type;
    let mut labels: Vec<String> = key.metric_labels.keys().cloned().collect();
    if let Some(d) = descriptor {
        if d.metric_kind != checked.kind as i32 {
            return Err(Problem::series(
                RejectReason::KindConflict,
                format!(
                    "Metric kind for metric {metric_type} must be {}, but is {}.",
                    kind_name(d.metric_kind),
                    checked.kind.as_str_name()
                ),
            ));
        }
        if d.value_type != checked.value_type as i32 {
            return Err(Problem::series(
                RejectReason::ValueTypeConflict,
                format!(
                    "Value type for metric {metric_type} must be {}, but is {}.",
                    value_type_name(d.value_type),
                    checked.value_type.as_str_name()
                ),
            ));
        }
        labels.extend(d.labels.iter().map(|l| l.key.clone()));
        labels.sort();
        labels.dedup();
    }
    let limit = if metric_type.starts_with(PROMETHEUS_DOMAIN) {
        PROMETHEUS_MAX_LABELS
    } else {
        cfg.max_metric_labels
    };
    if labels.len() > limit {
        return Err(Problem::series(
            RejectReason::TooManyLabels,
            format!(
                "The new labels would cause the metric {metric_type} to have over {limit} labels."
            ),
        ));
    }
    Ok(labels)
}

/// End times strictly increase; a cumulative start stays, or starts a new interval no earlier
/// than the previous end; consecutive ends are at least the sampling period apart.
fn check_order(
    series: &Series,
    metric_type: &str,
    checked: &Checked,
    cfg: &EmulatorConfig,
) -> Result<(), Problem> {
    let out_of_order = |text: String| Err(Problem::series(RejectReason::OutOfOrder, text));
    if checked.end <= series.last_end {
        return out_of_order(
            "Points must be written in order. One or more of the points specified had an older \
             end time than the most recent point."
                .to_owned(),
        );
    }
    if let (Some(previous), Some(start)) = (series.last_start, checked.start) {
        if start < previous {
            return out_of_order(
                "Points must be written in order. One or more of the points specified had an \
                 older start time than the most recent point."
                    .to_owned(),
            );
        }
        if start > previous && start < series.last_end {
            return out_of_order(format!(
                "Points must be written in order. The new point's interval starts at {}, inside \
                 the most recent point's interval ({} to {}).",
                time::format(&time::from_nanos(start)),
                time::format(&time::from_nanos(previous)),
                time::format(&time::from_nanos(series.last_end))
            ));
        }
    }
    if checked.end - series.last_end < time::duration_nanos(cfg.sampling_period) {
        return Err(Problem::series(
            RejectReason::SamplingPeriod,
            format!(
                "One or more points were written more frequently than the maximum sampling \
                 period configured for the metric. {{Metric: {metric_type}, Timestamps: \
                 {{Youngest Existing: '{}', New: '{}'}}}}",
                time::format(&time::from_nanos(series.last_end)),
                time::format(&time::from_nanos(checked.end))
            ),
        ));
    }
    Ok(())
}

fn kind_name(kind: i32) -> &'static str {
    MetricKind::try_from(kind)
        .map(|k| k.as_str_name())
        .unwrap_or("METRIC_KIND_UNSPECIFIED")
}

fn value_type_name(value_type: i32) -> &'static str {
    ValueType::try_from(value_type)
        .map(|v| v.as_str_name())
        .unwrap_or("VALUE_TYPE_UNSPECIFIED")
}
