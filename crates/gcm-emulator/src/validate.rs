//! The checks of one `TimeSeries` that need nothing but the series itself.
//!
//! Owns the field rules of `CreateTimeSeries`: metric type and label syntax, the monitored
//! resource, exactly one point, the value against the declared value type, distributions, the
//! interval against the metric kind, and the point's age. It must never read or change what was
//! stored before: ordering, descriptor conflicts and label counts belong to the store.

use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::TimeSeries;
use gcm_api::monitoring::typed_value::Value;
use prost_types::Timestamp;

use crate::EmulatorConfig;
use crate::distribution;
use crate::reason::RejectReason;
use crate::time::{self, Nanos};

/// Metric type domains a client may write to; anything else belongs to Google's own services.
pub(crate) const WRITABLE_DOMAINS: [&str; 4] = [
    "custom.googleapis.com",
    "external.googleapis.com",
    "workload.googleapis.com",
    "prometheus.googleapis.com",
];

/// The domain whose metric names may contain colons (Managed Prometheus keeps recording-rule
/// names as they are) and whose descriptors may hold up to [`PROMETHEUS_MAX_LABELS`] labels.
pub(crate) const PROMETHEUS_DOMAIN: &str = "prometheus.googleapis.com";

/// Managed Prometheus' label limit per metric.
pub(crate) const PROMETHEUS_MAX_LABELS: usize = 100;

const MAX_LABEL_KEY_CHARS: usize = 100;
/// The API counts label values in bytes of UTF-8.
const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// Whether a problem used to refuse the whole request (*field*: the API did so until about 2020)
/// or only its series (*series*: always reported per series); see
/// [`field_errors_reject_request`](crate::EmulatorConfig::field_errors_reject_request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProblemClass {
    Field,
    Series,
}

/// Why one series of a request was refused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Problem {
    pub(crate) reason: RejectReason,
    pub(crate) class: ProblemClass,
    /// The API-style explanation, without the series' name.
    pub(crate) text: String,
}

impl Problem {
    pub(crate) fn field(reason: RejectReason, text: String) -> Self {
        Self {
            reason,
            class: ProblemClass::Field,
            text,
        }
    }

    pub(crate) fn series(reason: RejectReason, text: String) -> Self {
        Self {
            reason,
            class: ProblemClass::Series,
            text,
        }
    }
}

/// What the field checks established about a series' single point.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checked {
    pub(crate) kind: MetricKind,
    pub(crate) value_type: ValueType,
    pub(crate) start: Option<Nanos>,
    pub(crate) end: Nanos,
}

/// Runs every field check on `ts`. `known_kind` is the kind of the metric's descriptor, if one
/// exists (or is being created earlier in the same request): the one thing needed from outside
/// the series, because the interval rules depend on the kind when the series does not declare it.
pub(crate) fn check(
    ts: &TimeSeries,
    known_kind: Option<MetricKind>,
    cfg: &EmulatorConfig,
    now: Nanos,
) -> Result<Checked, Problem> {
    let metric_type = ts
        .metric
        .as_ref()
        .map(|m| m.r#type.as_str())
        .unwrap_or_default();
    check_metric_type(metric_type)
        .map_err(|t| Problem::series(RejectReason::InvalidMetricType, t))?;
    if let Some(metric) = &ts.metric {
        let mut keys: Vec<_> = metric.labels.iter().collect();
        keys.sort();
        for (key, value) in keys {
            check_label(key, value).map_err(|t| Problem::series(RejectReason::InvalidLabel, t))?;
        }
    }
    if ts.resource.as_ref().is_none_or(|r| r.r#type.is_empty()) {
        return Err(Problem::field(
            RejectReason::InvalidResource,
            "Field resource.type had an invalid value of \"\": a monitored resource type is \
             required."
                .to_owned(),
        ));
    }
    let [point] = ts.points.as_slice() else {
        return Err(Problem::field(
            RejectReason::PointCount,
            format!(
                "Field points had an invalid value: Only one point can be written per \
                 TimeSeries per request; this series has {}.",
                ts.points.len()
            ),
        ));
    };
    let kind = resolve_kind(ts.metric_kind, known_kind)?;
    let value = point
        .value
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .ok_or_else(|| {
            Problem::field(
                RejectReason::InvalidValue,
                "Field points[0].value is required.".to_owned(),
            )
        })?;
    let value_type = check_value(ts.value_type, value)?;
    if let Value::DistributionValue(d) = value {
        distribution::check(d).map_err(|detail| {
            Problem::field(
                RejectReason::InvalidDistribution,
                format!("Field points[0].distributionValue had an invalid value: {detail}"),
            )
        })?;
    }
    let interval = point.interval.as_ref();
    let end_ts = interval.and_then(|i| i.end_time.as_ref()).ok_or_else(|| {
        Problem::field(
            RejectReason::InvalidInterval,
            "Field points[0].interval.end_time is required.".to_owned(),
        )
    })?;
    let end = timestamp("end_time", end_ts)?;
    let start_ts = interval.and_then(|i| i.start_time.as_ref());
    let start = start_ts.map(|s| timestamp("start_time", s)).transpose()?;
    check_interval(kind, metric_type, start_ts.zip(start), end_ts, end)?;
    check_age(end_ts, end, cfg, now)?;
    Ok(Checked {
        kind,
        value_type,
        start,
        end,
    })
}

/// Metric types are `<domain>/<path>`: a writable domain and a non-empty path of letters,
/// digits, `_`, `.`, `-` and `/` (plus `:` under Managed Prometheus' domain).
pub(crate) fn check_metric_type(metric_type: &str) -> Result<(), String> {
    let malformed = || {
        format!(
            "Field metric.type had an invalid value of {metric_type:?}: The metric type must be a \
             URL-formatted string with a domain and non-empty path."
        )
    };
    let (domain, path) = metric_type.split_once('/').ok_or_else(malformed)?;
    let colons_allowed = domain == PROMETHEUS_DOMAIN;
    let path_ok = !path.is_empty()
        && path.split('/').all(|segment| !segment.is_empty())
        && path.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | '-' | '/')
                || (c == ':' && colons_allowed)
        });
    let domain_ok = domain.contains('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if !path_ok || !domain_ok {
        return Err(malformed());
    }
    if !WRITABLE_DOMAINS.contains(&domain) {
        return Err(format!(
            "Field metric.type had an invalid value of {metric_type:?}: metrics can only be \
             written under {}.",
            WRITABLE_DOMAINS.join(", ")
        ));
    }
    Ok(())
}

/// Label keys start with a letter and hold letters, digits and underscores (at most 100);
/// values hold at most 1024 bytes.
fn check_label(key: &str, value: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let key_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= MAX_LABEL_KEY_CHARS;
    if !key_ok {
        return Err(format!(
            "Field metric.labels had an invalid value of {key:?}: a label key must start with a \
             letter, contain only letters, digits and underscores, and be at most \
             {MAX_LABEL_KEY_CHARS} characters long."
        ));
    }
    if value.len() > MAX_LABEL_VALUE_BYTES {
        return Err(format!(
            "Field metric.labels[{key}] had an invalid value: a label value must be at most \
             {MAX_LABEL_VALUE_BYTES} bytes long, this one has {}.",
            value.len()
        ));
    }
    Ok(())
}

/// The kind the point is written as: the declared one, else the descriptor's, else GAUGE (the
/// documented default for auto-created metrics). Only GAUGE and CUMULATIVE can be auto-created.
fn resolve_kind(declared: i32, known: Option<MetricKind>) -> Result<MetricKind, Problem> {
    match MetricKind::try_from(declared) {
        Ok(MetricKind::Unspecified) => Ok(known.unwrap_or(MetricKind::Gauge)),
        Ok(kind @ (MetricKind::Gauge | MetricKind::Cumulative)) => Ok(kind),
        Ok(kind) => Err(Problem::field(
            RejectReason::InvalidKind,
            format!(
                "Field metric_kind had an invalid value of {}: an automatically created metric \
                 must be GAUGE or CUMULATIVE.",
                kind.as_str_name()
            ),
        )),
        Err(_) => Err(Problem::field(
            RejectReason::InvalidKind,
            format!("Field metric_kind had an invalid value of {declared}."),
        )),
    }
}

/// The value type of `value`, which must be one an auto-created metric can hold and agree with
/// the series' declared value type, if any.
fn check_value(declared: i32, value: &Value) -> Result<ValueType, Problem> {
    let actual = match value {
        Value::BoolValue(_) => ValueType::Bool,
        Value::Int64Value(_) => ValueType::Int64,
        Value::DoubleValue(_) => ValueType::Double,
        Value::DistributionValue(_) => ValueType::Distribution,
        Value::StringValue(_) => {
            return Err(Problem::field(
                RejectReason::InvalidValue,
                "Field points[0].value had an invalid value: an automatically created metric \
                 holds BOOL, INT64, DOUBLE or DISTRIBUTION values, not STRING."
                    .to_owned(),
            ));
        }
    };
    match ValueType::try_from(declared) {
        Ok(ValueType::Unspecified) => Ok(actual),
        Ok(d) if d == actual => Ok(actual),
        Ok(d) => Err(Problem::field(
            RejectReason::InvalidValue,
            format!(
                "Field value_type had an invalid value of {}: the point holds a {} value.",
                d.as_str_name(),
                actual.as_str_name()
            ),
        )),
        Err(_) => Err(Problem::field(
            RejectReason::InvalidValue,
            format!("Field value_type had an invalid value of {declared}."),
        )),
    }
}

fn timestamp(field: &str, ts: &Timestamp) -> Result<Nanos, Problem> {
    time::to_nanos(ts).ok_or_else(|| {
        Problem::field(
            RejectReason::InvalidInterval,
            format!(
                "Field points[0].interval.{field} had an invalid value of {}: not a valid \
                 timestamp.",
                time::format(ts)
            ),
        )
    })
}

/// GAUGE: no start time, or one equal to the end time. CUMULATIVE: a start strictly before the
/// end.
fn check_interval(
    kind: MetricKind,
    metric_type: &str,
    start: Option<(&Timestamp, Nanos)>,
    end_ts: &Timestamp,
    end: Nanos,
) -> Result<(), Problem> {
    let invalid = |text| Err(Problem::field(RejectReason::InvalidInterval, text));
    match (kind, start) {
        (MetricKind::Gauge, Some((start_ts, start))) if start != end => invalid(format!(
            "Field points[0].interval.start_time had an invalid value of \"{}\": The start time \
             must be equal to the end time ({}) for the gauge metric '{metric_type}'.",
            time::format(start_ts),
            time::format(end_ts)
        )),
        (MetricKind::Gauge, _) => Ok(()),
        (_, None) => invalid(format!(
            "Field points[0].interval.start_time is required for the non-gauge metric \
             '{metric_type}'."
        )),
        (_, Some((start_ts, start))) if start >= end => invalid(format!(
            "Field points[0].interval.start_time had an invalid value of \"{}\": The start time \
             must be before the end time ({}) for the non-gauge metric '{metric_type}'.",
            time::format(start_ts),
            time::format(end_ts)
        )),
        _ => Ok(()),
    }
}

fn check_age(
    end_ts: &Timestamp,
    end: Nanos,
    cfg: &EmulatorConfig,
    now: Nanos,
) -> Result<(), Problem> {
    if let Some(max_age) = cfg.max_point_age
        && end < now - time::duration_nanos(max_age)
    {
        return Err(Problem::field(
            RejectReason::PointTooOld,
            format!(
                "Field points[0].interval.end_time had an invalid value of \"{}\": Data points \
                 cannot be written more than {} in the past.",
                time::format(end_ts),
                time::format_limit(max_age)
            ),
        ));
    }
    if let Some(skew) = cfg.max_future_skew
        && end > now + time::duration_nanos(skew)
    {
        return Err(Problem::field(
            RejectReason::PointInFuture,
            format!(
                "Field points[0].interval.end_time had an invalid value of \"{}\": Data points \
                 cannot be written more than {} in the future.",
                time::format(end_ts),
                time::format_limit(skew)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_types_need_a_writable_domain_and_a_clean_path() {
        for ok in [
            "custom.googleapis.com/x",
            "external.googleapis.com/prometheus/go_gc_duration_seconds",
            "custom.googleapis.com/opencensus/a.b-c/d_e",
            "prometheus.googleapis.com/job:up:sum/gauge",
        ] {
            assert_eq!(check_metric_type(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "custom.googleapis.com",
            "custom.googleapis.com/",
            "custom.googleapis.com/a//b",
            "external.googleapis.com/prometheus/instance:node_num_cpu:sum",
            "custom.googleapis.com/with space",
            "nodomain/x",
            "compute.googleapis.com/instance/cpu",
        ] {
            assert!(check_metric_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_start_with_a_letter_and_hold_word_characters() {
        assert_eq!(check_label("statusCode_2", "v"), Ok(()));
        for bad in ["", "_x", "2x", "a:b", "a-b", &"k".repeat(101)] {
            assert!(check_label(bad, "v").is_err(), "{bad}");
        }
        assert!(check_label("k", &"v".repeat(1025)).is_err());
    }

    mod shared {
        include!("../../gcm-api/testdata/validation_cases.rs");
    }

    #[test]
    fn every_shared_case_is_judged_as_the_sidecar_judges_it() {
        use gcm_api::api::distribution::BucketOptions;
        use gcm_api::api::distribution::bucket_options::{Explicit, Exponential, Options};
        use gcm_api::api::{Distribution, Metric, MonitoredResource};
        use gcm_api::monitoring::{Point, TimeInterval, TypedValue};
        use shared::{CaseValue, cases};

        let cfg = EmulatorConfig::default();
        let now = time::now();
        let ts_of = |ms: i64| Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        };
        let now_ms = (now / 1_000_000) as i64;
        for case in cases() {
            let end_ms = now_ms - case.age_ms;
            let (value, value_type) = match &case.value {
                CaseValue::Double(v) => (Value::DoubleValue(*v), ValueType::Double),
                CaseValue::Distribution {
                    count,
                    mean,
                    sum_of_squared_deviation,
                    bounds,
                    bucket_counts,
                } => (
                    Value::DistributionValue(Distribution {
                        count: *count,
                        mean: *mean,
                        sum_of_squared_deviation: *sum_of_squared_deviation,
                        bucket_options: Some(BucketOptions {
                            options: Some(Options::ExplicitBuckets(Explicit {
                                bounds: bounds.clone(),
                            })),
                        }),
                        bucket_counts: bucket_counts.clone(),
                        ..Default::default()
                    }),
                    ValueType::Distribution,
                ),
                CaseValue::Exponential {
                    count,
                    num_finite_buckets,
                    growth_factor,
                    scale,
                    bucket_counts,
                } => (
                    Value::DistributionValue(Distribution {
                        count: *count,
                        mean: if *count == 0 { 0.0 } else { 1.0 },
                        bucket_options: Some(BucketOptions {
                            options: Some(Options::ExponentialBuckets(Exponential {
                                num_finite_buckets: *num_finite_buckets,
                                growth_factor: *growth_factor,
                                scale: *scale,
                            })),
                        }),
                        bucket_counts: bucket_counts.clone(),
                        ..Default::default()
                    }),
                    ValueType::Distribution,
                ),
            };
            let kind = if case.cumulative {
                MetricKind::Cumulative
            } else {
                MetricKind::Gauge
            };
            let ts = TimeSeries {
                metric: Some(Metric {
                    r#type: case.metric_type.clone(),
                    labels: case.labels.iter().cloned().collect(),
                }),
                resource: Some(MonitoredResource {
                    r#type: case.resource_type.clone(),
                    labels: Default::default(),
                }),
                metric_kind: kind as i32,
                value_type: value_type as i32,
                points: vec![Point {
                    interval: Some(TimeInterval {
                        end_time: Some(ts_of(end_ms)),
                        start_time: case.start_before_end_ms.map(|d| ts_of(end_ms - d)),
                    }),
                    value: Some(TypedValue { value: Some(value) }),
                }],
                ..Default::default()
            };
            let got = check(&ts, None, &cfg, now).err().map(|p| p.reason.as_str());
            assert_eq!(got, case.broken, "{}", case.name);
        }
    }
}
