//! Local validation: the field rules Cloud Monitoring applies to one series and its point
//! ([`check_series`], [`check_point`]), checked before sending so that an invalid point is
//! dropped alone instead of failing its request. The rules and their names are `gcm-emulator`'s;
//! both crates test them against `crates/gcm-api/testdata/validation_cases.rs`.
//!
//! Must never depend on what was sent before (ordering, descriptor conflicts and sampling
//! periods are the API's business), nor decide *whether* to drop: the shard does that.

use std::time::Duration;

use gcm_api::api::metric_descriptor::MetricKind;

use super::point::{Buckets, Distribution, Point, PointKind, PointValue};

/// Metric type domains a client may write to.
const WRITABLE_DOMAINS: [&str; 4] = [
    "custom.googleapis.com",
    "external.googleapis.com",
    "workload.googleapis.com",
    "prometheus.googleapis.com",
];

/// The only domain whose metric names may contain colons.
const PROMETHEUS_DOMAIN: &str = "prometheus.googleapis.com";

const MAX_LABEL_KEY_BYTES: usize = 100;
const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// Most buckets (underflow and overflow included) a distribution may have.
pub const MAX_BUCKETS: usize = 200;

/// Oldest point the API accepts, back from now.
pub const MAX_POINT_AGE: Duration = Duration::from_secs(25 * 3600);

/// Latest point the API accepts, ahead of now.
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a point is not sent. The names are the emulator's rejection reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// Malformed metric type, or a domain that cannot be written to.
    MetricType,
    /// A malformed label key or a label value over 1024 bytes.
    Label,
    /// No monitored resource type.
    Resource,
    /// Start and end times that contradict the metric kind.
    Interval,
    /// A distribution the API would refuse.
    Distribution,
    /// Older than the API accepts (25 hours).
    TooOld,
    /// Further in the future than the API accepts (5 minutes).
    InFuture,
}

impl Invalid {
    /// Every reason, in display order.
    pub const ALL: [Invalid; 7] = [
        Invalid::MetricType,
        Invalid::Label,
        Invalid::Resource,
        Invalid::Interval,
        Invalid::Distribution,
        Invalid::TooOld,
        Invalid::InFuture,
    ];

    /// The `reason` label value (the emulator's name for the same rule).
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::MetricType => "invalid_metric_type",
            Invalid::Label => "invalid_label",
            Invalid::Resource => "invalid_resource",
            Invalid::Interval => "invalid_interval",
            Invalid::Distribution => "invalid_distribution",
            Invalid::TooOld => "point_too_old",
            Invalid::InFuture => "point_in_future",
        }
    }
}

/// Checks what does not change from point to point: the metric type, metric labels and
/// resource type. Done once per series, when its prototype is built.
pub fn check_series(
    metric_type: &str,
    metric_labels: &[(String, String)],
    resource_type: &str,
) -> Result<(), Invalid> {
    check_metric_type(metric_type)?;
    for (key, value) in metric_labels {
        check_label(key, value)?;
    }
    if resource_type.is_empty() {
        return Err(Invalid::Resource);
    }
    Ok(())
}

/// Time limits of a point, relative to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    /// Points ending before `now - max_age` are too old (`None`: any age, for replaying data).
    pub max_age: Option<Duration>,
    /// Points ending after `now + max_future` are refused (`None`: no limit).
    pub max_future: Option<Duration>,
}

impl Default for TimeLimits {
    /// The API's limits.
    fn default() -> TimeLimits {
        TimeLimits {
            max_age: Some(MAX_POINT_AGE),
            max_future: Some(MAX_FUTURE_SKEW),
        }
    }
}

/// Checks one point of a series of kind `kind` at wall-clock time `now_ms`: the interval against
/// the metric kind, the point's age and future skew, and distributions.
pub fn check_point(
    kind: PointKind,
    point: &Point,
    now_ms: i64,
    limits: TimeLimits,
) -> Result<(), Invalid> {
    let cumulative = kind.metric_kind() == MetricKind::Cumulative;
    match (cumulative, point.start_ms) {
        (false, Some(start)) if start != point.end_ms => return Err(Invalid::Interval),
        (true, None) => return Err(Invalid::Interval),
        (true, Some(start)) if start >= point.end_ms => return Err(Invalid::Interval),
        _ => {}
    }
    check_age(point.end_ms, now_ms, limits)?;
    if let PointValue::Distribution(d) = &point.value {
        check_distribution(d)?;
    }
    Ok(())
}

/// Whether a point ending at `end_ms` is within the API's time window at `now_ms`.
pub fn check_age(end_ms: i64, now_ms: i64, limits: TimeLimits) -> Result<(), Invalid> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if let Some(age) = limits.max_age
        && end_ms < now_ms.saturating_sub(ms(age))
    {
        return Err(Invalid::TooOld);
    }
    if let Some(skew) = limits.max_future
        && end_ms > now_ms.saturating_add(ms(skew))
    {
        return Err(Invalid::InFuture);
    }
    Ok(())
}

/// `<writable domain>/<path>`, the path made of letters, digits, `_`, `.`, `-` and `/` with no
/// empty segment (colons only under `prometheus.googleapis.com`).
fn check_metric_type(metric_type: &str) -> Result<(), Invalid> {
    let (domain, path) = metric_type.split_once('/').ok_or(Invalid::MetricType)?;
    if metric_path_ok(path, domain == PROMETHEUS_DOMAIN) && WRITABLE_DOMAINS.contains(&domain) {
        Ok(())
    } else {
        Err(Invalid::MetricType)
    }
}

/// Checks a prefix that metric types are made of as `<prefix>/<name>`: every metric type made
/// from it would be refused when its domain is not one clients may write to, or its path is
/// malformed. The error says which, for the operator.
pub fn check_metric_prefix(prefix: &str) -> Result<(), String> {
    let domain = prefix.split('/').next().unwrap_or_default();
    if !WRITABLE_DOMAINS.contains(&domain) {
        return Err(format!(
            "metric types under {domain:?} cannot be written by clients: Cloud Monitoring would \
             refuse every point; use one of {} (external.googleapis.com/prometheus is the \
             default)",
            WRITABLE_DOMAINS.join(", ")
        ));
    }
    check_metric_type(&format!("{prefix}/name")).map_err(|_| {
        format!(
            "{prefix:?} is not a valid metric type prefix: after the domain, only letters, \
             digits, '_', '.', '-' and '/' (and ':' under {PROMETHEUS_DOMAIN}), with no empty \
             segment and no trailing '/'"
        )
    })
}

/// Whether `name` (a metric name, or a path of them) may follow a metric type prefix whose
/// domain is `domain`: the path rule of [`check_metric_type`].
pub fn metric_name_ok(domain: &str, name: &str) -> bool {
    metric_path_ok(name, domain == PROMETHEUS_DOMAIN)
}

/// Letters, digits, `_`, `.`, `-` and `/` (and `:` when `colons`), with no empty segment.
fn metric_path_ok(path: &str, colons: bool) -> bool {
    !path.is_empty()
        && path.split('/').all(|segment| !segment.is_empty())
        && path.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/') || (c == ':' && colons)
        })
}

/// Keys `[A-Za-z][A-Za-z0-9_]*` of at most 100 bytes; values of at most 1024 bytes.
fn check_label(key: &str, value: &str) -> Result<(), Invalid> {
    let mut chars = key.chars();
    let key_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= MAX_LABEL_KEY_BYTES;
    if key_ok && value.len() <= MAX_LABEL_VALUE_BYTES {
        Ok(())
    } else {
        Err(Invalid::Label)
    }
}

/// Distributions as `google.api.Distribution` defines them: explicit bounds strictly increasing,
/// exponential buckets with at least one finite bucket, growth above 1 and a positive scale, at
/// most [`MAX_BUCKETS`] buckets, counts not negative and adding up to `count`.
fn check_distribution(d: &Distribution) -> Result<(), Invalid> {
    let layout_ok = match &d.buckets {
        // `<` is false for NaN, so NaN bounds are refused too.
        Buckets::Explicit(bounds) => !bounds.is_empty() && bounds.windows(2).all(|w| w[0] < w[1]),
        Buckets::Exponential {
            num_finite,
            growth,
            scale,
        } => *num_finite >= 1 && *growth > 1.0 && *scale > 0.0,
    };
    let buckets = d.buckets.len();
    let ok = layout_ok
        && d.count >= 0
        && (d.count != 0 || (d.mean == 0.0 && d.sum_of_squared_deviation == 0.0))
        && buckets <= MAX_BUCKETS
        && d.bucket_counts.len() <= buckets
        && d.bucket_counts.iter().all(|c| *c >= 0)
        && d.bucket_counts.iter().map(|c| i128::from(*c)).sum::<i128>() == i128::from(d.count);
    if ok {
        Ok(())
    } else {
        Err(Invalid::Distribution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../../gcm-api/testdata/validation_cases.rs");

    const NOW_MS: i64 = 1_800_000_000_000;

    fn check_case(case: &Case) -> Result<(), Invalid> {
        let kind = match (&case.value, case.cumulative) {
            (CaseValue::Distribution { .. } | CaseValue::Exponential { .. }, true) => {
                PointKind::CumulativeDistribution
            }
            (CaseValue::Distribution { .. } | CaseValue::Exponential { .. }, false) => {
                PointKind::GaugeDistribution
            }
            (CaseValue::Double(_), true) => PointKind::CumulativeDouble,
            (CaseValue::Double(_), false) => PointKind::GaugeDouble,
        };
        check_series(&case.metric_type, &case.labels, &case.resource_type)?;
        let end_ms = NOW_MS - case.age_ms;
        let value = match &case.value {
            CaseValue::Double(v) => PointValue::Double(*v),
            CaseValue::Distribution {
                count,
                mean,
                sum_of_squared_deviation,
                bounds,
                bucket_counts,
            } => PointValue::Distribution(Box::new(Distribution {
                count: *count,
                mean: *mean,
                sum_of_squared_deviation: *sum_of_squared_deviation,
                buckets: Buckets::Explicit(bounds.clone()),
                bucket_counts: bucket_counts.clone(),
                exemplars: Vec::new(),
            })),
            CaseValue::Exponential {
                count,
                num_finite_buckets,
                growth_factor,
                scale,
                bucket_counts,
            } => PointValue::Distribution(Box::new(Distribution {
                count: *count,
                mean: if *count == 0 { 0.0 } else { 1.0 },
                sum_of_squared_deviation: 0.0,
                buckets: Buckets::Exponential {
                    num_finite: *num_finite_buckets,
                    growth: *growth_factor,
                    scale: *scale,
                },
                bucket_counts: bucket_counts.clone(),
                exemplars: Vec::new(),
            })),
        };
        let point = Point {
            start_ms: case.start_before_end_ms.map(|d| end_ms - d),
            end_ms,
            value,
        };
        check_point(kind, &point, NOW_MS, TimeLimits::default())
    }

    #[test]
    fn every_shared_case_is_judged_as_the_api_judges_it() {
        for case in cases() {
            let got = check_case(&case).err().map(Invalid::as_str);
            assert_eq!(got, case.broken, "{}", case.name);
        }
    }

    #[test]
    fn without_time_limits_old_and_future_points_pass() {
        let none = TimeLimits {
            max_age: None,
            max_future: None,
        };
        assert_eq!(check_age(0, NOW_MS, none), Ok(()));
        assert_eq!(check_age(i64::MAX, NOW_MS, none), Ok(()));
        assert_eq!(
            check_age(0, NOW_MS, TimeLimits::default()),
            Err(Invalid::TooOld)
        );
    }
}
