//! Why the emulator refused a point: the labels of its rejection counters.
//!
//! Owns [`RejectReason`], one variant per rule of the real API the emulator enforces, and the
//! stable snake_case names the summary log and tests use. It must never carry messages: those
//! are written where the rule is checked.

use std::fmt;

/// The rule a rejected point broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Whole request: `name` is not `projects/<id>`.
    InvalidName,
    /// Whole request: no time series at all.
    EmptyRequest,
    /// Whole request: more than 200 time series.
    TooManySeries,
    /// Whole request, only with `field_errors_reject_request`: the series was valid but another
    /// series of its request had a field error.
    RejectedWithRequest,
    /// The same series (metric and resource, with labels) appears twice in one request.
    DuplicateSeries,
    /// Missing or malformed metric type, or a domain that cannot be written to.
    InvalidMetricType,
    /// Malformed metric label key, or a label value that is too long.
    InvalidLabel,
    /// The metric descriptor would gather more label keys than allowed.
    TooManyLabels,
    /// Missing monitored resource or resource type.
    InvalidResource,
    /// Not exactly one point in the series.
    PointCount,
    /// Missing value, a value type that cannot be auto-created, or a value that contradicts the
    /// series' declared value type.
    InvalidValue,
    /// A distribution value that breaks `google.api.Distribution`'s rules.
    InvalidDistribution,
    /// A metric kind that cannot be auto-created (DELTA, or not a known kind).
    InvalidKind,
    /// Missing or malformed interval, or start/end times that contradict the metric kind.
    InvalidInterval,
    /// The point's end time is older than the API accepts.
    PointTooOld,
    /// The point's end time is too far in the future.
    PointInFuture,
    /// The metric kind differs from the metric descriptor's.
    KindConflict,
    /// The value type differs from the metric descriptor's.
    ValueTypeConflict,
    /// The end time is not after the series' latest point, or a cumulative start time goes
    /// backwards or overlaps the previous interval.
    OutOfOrder,
    /// The point follows the series' latest point by less than the sampling period.
    SamplingPeriod,
    /// A failure injected by a test with [`Emulator::fail_next_creates`](crate::Emulator::fail_next_creates).
    InjectedFault,
}

impl RejectReason {
    /// The stable snake_case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::EmptyRequest => "empty_request",
            Self::TooManySeries => "too_many_series",
            Self::RejectedWithRequest => "rejected_with_request",
            Self::DuplicateSeries => "duplicate_series",
            Self::InvalidMetricType => "invalid_metric_type",
            Self::InvalidLabel => "invalid_label",
            Self::TooManyLabels => "too_many_labels",
            Self::InvalidResource => "invalid_resource",
            Self::PointCount => "point_count",
            Self::InvalidValue => "invalid_value",
            Self::InvalidDistribution => "invalid_distribution",
            Self::InvalidKind => "invalid_kind",
            Self::InvalidInterval => "invalid_interval",
            Self::PointTooOld => "point_too_old",
            Self::PointInFuture => "point_in_future",
            Self::KindConflict => "kind_conflict",
            Self::ValueTypeConflict => "value_type_conflict",
            Self::OutOfOrder => "out_of_order",
            Self::SamplingPeriod => "sampling_period",
            Self::InjectedFault => "injected_fault",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
