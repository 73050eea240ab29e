//! The knobs of the emulator: which of the real API's limits it enforces, and how.
//!
//! Owns [`EmulatorConfig`] and its defaults, which are the limits the real Cloud Monitoring API
//! documents. It must never hold state: the store and the server only read it.

use std::time::Duration;

/// Rules and behaviour of an [`Emulator`](crate::Emulator).
///
/// `Default` gives the real API's limits. Tests that replay old data or write faster than a real
/// deployment would relax them explicitly (for example `max_point_age: None`).
#[derive(Clone, Debug, PartialEq)]
pub struct EmulatorConfig {
    /// Smallest allowed gap between the end times of two consecutive points of one series; a
    /// closer point is rejected as "written more frequently than the maximum sampling period".
    /// Cloud Monitoring documents one point per 5 s per series. `Duration::ZERO` disables it.
    pub sampling_period: Duration,
    /// Points whose end time is older than now minus this are rejected (the API documents 25 h).
    /// `None` accepts any age, for replaying recorded data.
    pub max_point_age: Option<Duration>,
    /// Points whose end time is later than now plus this are rejected (the API documents 5 min).
    /// `None` accepts any future time.
    pub max_future_skew: Option<Duration>,
    /// Most label keys a metric descriptor may gather (the quota for user-defined metrics is 30).
    /// Metric types under `prometheus.googleapis.com/` use Managed Prometheus' limit of 100.
    pub max_metric_labels: usize,
    /// Keep only the newest points of each series (counters still count every point). `None`
    /// keeps everything, which is what tests want and what a long benchmark must not use.
    pub max_points_per_series: Option<usize>,
    /// How malformed series are answered. `false` (the default, what the API does today): the
    /// series is rejected, the rest of the request is written, and the error carries a
    /// `CreateTimeSeriesSummary`. `true` (what the API did in 2018–2020 and what older reports
    /// describe): a field error anywhere refuses the whole request and nothing is written.
    pub field_errors_reject_request: bool,
    /// How often the server logs its one-line summary; `None` never.
    pub summary_interval: Option<Duration>,
    /// Delay before answering each `CreateTimeSeries`, to imitate a slow API.
    pub create_latency: Duration,
    /// Share (0 to 1) of `CreateTimeSeries` calls answered with [`EmulatorConfig::fault_code`]
    /// without being handled, chosen at random.
    pub fault_ratio: f64,
    /// The status code of injected failures (default UNAVAILABLE).
    pub fault_code: tonic::Code,
    /// Share (0 to 1) of the series of each handled request refused as a partial failure
    /// (`INVALID_ARGUMENT` with a `CreateTimeSeriesSummary`), chosen at random; the other series
    /// are handled normally.
    pub partial_failure_ratio: f64,
    /// A window during which every `CreateTimeSeries` call answers UNAVAILABLE.
    pub outage: Option<Outage>,
    /// Seed of the random choices of injected faults, so that a run can be repeated.
    pub fault_seed: u64,
}

/// A time window, counted from when the emulator starts serving, during which the API is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// When the outage starts, after the server started.
    pub after: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            sampling_period: Duration::from_secs(5),
            max_point_age: Some(Duration::from_secs(25 * 3600)),
            max_future_skew: Some(Duration::from_secs(5 * 60)),
            max_metric_labels: 30,
            max_points_per_series: None,
            field_errors_reject_request: false,
            summary_interval: Some(Duration::from_secs(10)),
            create_latency: Duration::ZERO,
            fault_ratio: 0.0,
            fault_code: tonic::Code::Unavailable,
            partial_failure_ratio: 0.0,
            outage: None,
            fault_seed: 1,
        }
    }
}
