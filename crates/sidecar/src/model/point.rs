//! What a converted sample is: a point's interval and value, distributions, and the kind and
//! value type of a series' points. Plain data shared by conversion and export; it must never
//! know where a point came from or how it is sent.

use gcm_api::api::Distribution as DistributionProto;
use gcm_api::api::distribution::BucketOptions;
use gcm_api::api::distribution::bucket_options::{Explicit, Exponential, Options};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::{
    DroppedLabels, Point as PointProto, SpanContext, TimeInterval, TypedValue, typed_value,
};
use prost::Message;

/// The kind and value type of a series' points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointKind {
    /// A GAUGE with DOUBLE values.
    GaugeDouble,
    /// A GAUGE with INT64 values.
    GaugeInt64,
    /// A CUMULATIVE with DOUBLE values.
    CumulativeDouble,
    /// A CUMULATIVE with INT64 values.
    CumulativeInt64,
    /// A CUMULATIVE with DISTRIBUTION values (Prometheus histograms).
    CumulativeDistribution,
    /// A GAUGE with DISTRIBUTION values (Prometheus gauge histograms).
    GaugeDistribution,
}

impl PointKind {
    /// The protobuf metric kind.
    pub fn metric_kind(self) -> MetricKind {
        match self {
            PointKind::GaugeDouble | PointKind::GaugeInt64 | PointKind::GaugeDistribution => {
                MetricKind::Gauge
            }
            PointKind::CumulativeDouble
            | PointKind::CumulativeInt64
            | PointKind::CumulativeDistribution => MetricKind::Cumulative,
        }
    }

    /// The protobuf value type.
    pub fn value_type(self) -> ValueType {
        match self {
            PointKind::GaugeDouble | PointKind::CumulativeDouble => ValueType::Double,
            PointKind::GaugeInt64 | PointKind::CumulativeInt64 => ValueType::Int64,
            PointKind::CumulativeDistribution | PointKind::GaugeDistribution => {
                ValueType::Distribution
            }
        }
    }
}

/// How a distribution's buckets are laid out: always an underflow bucket first and an overflow
/// bucket last, around the finite buckets.
#[derive(Debug, Clone, PartialEq)]
pub enum Buckets {
    /// Finite bounds, strictly increasing; bucket `i` is `[bounds[i-1], bounds[i])`. Classic and
    /// custom-bucket histograms.
    Explicit(Vec<f64>),
    /// `num_finite` buckets, bucket `k` (1-based) being `[scale·growth^(k-1), scale·growth^k)`.
    /// Native histograms.
    Exponential {
        /// Number of finite buckets (at least 1).
        num_finite: i32,
        /// Ratio of consecutive bounds (above 1).
        growth: f64,
        /// Lower bound of the first finite bucket (above 0).
        scale: f64,
    },
}

impl Buckets {
    /// Number of buckets, underflow and overflow included.
    pub fn len(&self) -> usize {
        match self {
            Buckets::Explicit(bounds) => bounds.len() + 1,
            Buckets::Exponential { num_finite, .. } => (*num_finite).max(0) as usize + 2,
        }
    }

    /// True when there are no finite buckets (never the case for a valid layout).
    pub fn is_empty(&self) -> bool {
        match self {
            Buckets::Explicit(bounds) => bounds.is_empty(),
            Buckets::Exponential { num_finite, .. } => *num_finite < 1,
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Buckets::Explicit(bounds) => bounds.capacity() * std::mem::size_of::<f64>(),
            Buckets::Exponential { .. } => 0,
        }
    }
}

/// A DISTRIBUTION value, as a Prometheus histogram becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Number of observations.
    pub count: i64,
    /// Mean of the observations (0 when `count` is 0).
    pub mean: f64,
    /// Sum of squared deviations from the mean, estimated from bucket midpoints.
    pub sum_of_squared_deviation: f64,
    /// The bucket layout.
    pub buckets: Buckets,
    /// Observations per bucket: at most `buckets.len()` entries, summing to `count`.
    pub bucket_counts: Vec<i64>,
    /// Exemplars, in increasing order of value, at most one per bucket.
    pub exemplars: Vec<Exemplar>,
}

/// One exemplar of a distribution point: an observation with its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The observed value.
    pub value: f64,
    /// When it was observed (ms since the epoch).
    pub t_ms: i64,
    /// `(trace_id, span_id)` when both are valid hexadecimal IDs: a `SpanContext` attachment.
    pub trace: Option<(String, String)>,
    /// The project the span was written to (the exemplar's `project_id` label), when not the
    /// one the point is written to.
    pub project: Option<String>,
    /// Every other label: a `DroppedLabels` attachment.
    pub dropped: Vec<(String, String)>,
}

/// Type URLs of the exemplar attachments (`google.api.Distribution.Exemplar.attachments`).
pub const SPAN_CONTEXT_TYPE_URL: &str = "type.googleapis.com/google.monitoring.v3.SpanContext";
/// See [`SPAN_CONTEXT_TYPE_URL`].
pub const DROPPED_LABELS_TYPE_URL: &str = "type.googleapis.com/google.monitoring.v3.DroppedLabels";

impl Exemplar {
    fn into_proto(self, project_name: &str) -> gcm_api::api::distribution::Exemplar {
        let mut attachments = Vec::new();
        if let Some((trace, span)) = self.trace {
            let name = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace}/spans/{span}"),
                None => format!("{project_name}/traces/{trace}/spans/{span}"),
            };
            attachments.push(prost_types::Any {
                type_url: SPAN_CONTEXT_TYPE_URL.to_string(),
                value: SpanContext { span_name: name }.encode_to_vec(),
            });
        }
        if !self.dropped.is_empty() {
            let label = self.dropped.into_iter().collect();
            attachments.push(prost_types::Any {
                type_url: DROPPED_LABELS_TYPE_URL.to_string(),
                value: DroppedLabels { label }.encode_to_vec(),
            });
        }
        gcm_api::api::distribution::Exemplar {
            value: self.value,
            timestamp: Some(timestamp(self.t_ms)),
            attachments,
        }
    }
}

/// A point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// DOUBLE.
    Double(f64),
    /// INT64.
    Int64(i64),
    /// DISTRIBUTION, boxed so that plain values stay small and allocation-free.
    Distribution(Box<Distribution>),
}

/// One point of a series: its interval in milliseconds since the epoch, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Start of the interval (cumulative points only).
    pub start_ms: Option<i64>,
    /// End of the interval: the sample's timestamp.
    pub end_ms: i64,
    /// The value.
    pub value: PointValue,
}

/// Seconds and nanoseconds (always in `0..1e9`) of a time in milliseconds since the epoch, as
/// `google.protobuf.Timestamp` holds them.
pub fn split_millis(ms: i64) -> (i64, i32) {
    (
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as i32,
    )
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    let (seconds, nanos) = split_millis(ms);
    prost_types::Timestamp { seconds, nanos }
}

impl Point {
    /// The point as a prost message (the slow path; scalar points are written directly), for a
    /// request to `project_name` (`projects/<id>`, where exemplars' spans are by default).
    pub fn into_proto(self, project_name: &str) -> PointProto {
        PointProto {
            interval: Some(TimeInterval {
                end_time: Some(timestamp(self.end_ms)),
                start_time: self.start_ms.map(timestamp),
            }),
            value: Some(TypedValue {
                value: Some(match self.value {
                    PointValue::Double(v) => typed_value::Value::DoubleValue(v),
                    PointValue::Int64(v) => typed_value::Value::Int64Value(v),
                    PointValue::Distribution(d) => {
                        typed_value::Value::DistributionValue(d.into_proto(project_name))
                    }
                }),
            }),
        }
    }
}

impl Distribution {
    fn into_proto(self, project_name: &str) -> DistributionProto {
        DistributionProto {
            count: self.count,
            mean: self.mean,
            sum_of_squared_deviation: self.sum_of_squared_deviation,
            bucket_options: Some(BucketOptions {
                options: Some(match self.buckets {
                    Buckets::Explicit(bounds) => Options::ExplicitBuckets(Explicit { bounds }),
                    Buckets::Exponential {
                        num_finite,
                        growth,
                        scale,
                    } => Options::ExponentialBuckets(Exponential {
                        num_finite_buckets: num_finite,
                        growth_factor: growth,
                        scale,
                    }),
                }),
            }),
            bucket_counts: self.bucket_counts,
            exemplars: self
                .exemplars
                .into_iter()
                .map(|e| e.into_proto(project_name))
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_timestamps_have_positive_nanos() {
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }
}
