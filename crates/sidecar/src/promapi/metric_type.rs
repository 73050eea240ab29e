//! The metric types Prometheus names in `# TYPE` lines and in its metadata API's answers. Only
//! names; it must never decide how a type is converted.

use std::fmt;
use std::str::FromStr;

/// The type of a metric family, as Prometheus names it in `# TYPE` lines and its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`: a monotonically increasing value (resets to 0 on restart).
    Counter,
    /// `gauge`: a value that goes up and down.
    Gauge,
    /// `histogram`: classic (`_bucket`/`_sum`/`_count`) or native histogram.
    Histogram,
    /// `gaugehistogram`: a histogram whose buckets can go down.
    GaugeHistogram,
    /// `summary`: quantiles plus `_sum` and `_count`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `unknown`, or `untyped` in the Prometheus text format.
    Unknown,
}

impl MetricType {
    /// The name Prometheus uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a Prometheus metric type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metric type {0:?}")]
pub struct ParseMetricTypeError(pub String);

impl FromStr for MetricType {
    type Err = ParseMetricTypeError;

    /// Prometheus's lowercase names; `untyped` is `Unknown`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" | "untyped" => MetricType::Unknown,
            other => return Err(ParseMetricTypeError(other.to_owned())),
        })
    }
}
