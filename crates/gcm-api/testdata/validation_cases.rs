// The rules Cloud Monitoring enforces on one series with one point, as a table of cases shared by
// the emulator's tests (which must refuse each broken case with the named reason) and the
// sidecar's local validation tests (which must drop each broken case before sending, under the
// same name). Included with `include!`: it defines `CaseValue`, `Case` and `cases()`, and needs
// nothing but `std`.

/// A point's value, written plainly so that each side builds its own message from it.
#[derive(Debug, Clone)]
pub enum CaseValue {
    Double(f64),
    Distribution {
        count: i64,
        mean: f64,
        sum_of_squared_deviation: f64,
        bounds: Vec<f64>,
        bucket_counts: Vec<i64>,
    },
    /// A distribution with exponential buckets (mean 1 when `count` is not 0).
    Exponential {
        count: i64,
        num_finite_buckets: i32,
        growth_factor: f64,
        scale: f64,
        bucket_counts: Vec<i64>,
    },
}

/// One series with one point and the rule it breaks.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case shows.
    pub name: &'static str,
    pub metric_type: String,
    pub labels: Vec<(String, String)>,
    pub resource_type: String,
    /// `true`: CUMULATIVE, `false`: GAUGE.
    pub cumulative: bool,
    /// Start time relative to the end time, in milliseconds (`None`: no start time).
    pub start_before_end_ms: Option<i64>,
    /// How long before now the point ends, in milliseconds (negative: in the future).
    pub age_ms: i64,
    pub value: CaseValue,
    /// The reason name both sides report, or `None` for a valid case.
    pub broken: Option<&'static str>,
}

const HOUR_MS: i64 = 3_600_000;

fn valid_case(name: &'static str) -> Case {
    Case {
        name,
        metric_type: "external.googleapis.com/prometheus/up".to_string(),
        labels: vec![("code".to_string(), "200".to_string())],
        resource_type: "generic_task".to_string(),
        cumulative: false,
        start_before_end_ms: None,
        age_ms: 60_000,
        value: CaseValue::Double(1.0),
        broken: None,
    }
}

fn histogram(bounds: Vec<f64>, bucket_counts: Vec<i64>, count: i64) -> CaseValue {
    CaseValue::Distribution {
        count,
        mean: if count == 0 { 0.0 } else { 1.0 },
        sum_of_squared_deviation: 0.0,
        bounds,
        bucket_counts,
    }
}

fn exponential(num_finite_buckets: i32, growth_factor: f64, scale: f64) -> CaseValue {
    CaseValue::Exponential {
        count: 3,
        num_finite_buckets,
        growth_factor,
        scale,
        bucket_counts: vec![1, 0, 2],
    }
}

/// Every case, valid ones included (so that a rule refusing too much fails too).
pub fn cases() -> Vec<Case> {
    vec![
        valid_case("a plain gauge"),
        Case {
            start_before_end_ms: Some(0),
            ..valid_case("a gauge whose start equals its end")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1),
            ..valid_case("a cumulative starting 1 ms before its end")
        },
        Case {
            metric_type: "prometheus.googleapis.com/job:up:sum/gauge".to_string(),
            ..valid_case("colons under prometheus.googleapis.com")
        },
        Case {
            labels: vec![("k".to_string(), "v".repeat(1024))],
            ..valid_case("a label value of 1024 bytes")
        },
        Case {
            age_ms: 24 * HOUR_MS,
            ..valid_case("a point 24 hours old")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![1.0, 2.0], vec![1, 2, 3], 6),
            ..valid_case("a histogram")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram((1..200).map(f64::from).collect(), vec![0; 200], 0),
            ..valid_case("a histogram of 200 buckets")
        },
        Case {
            metric_type: "external.googleapis.com/prometheus/job:up:sum".to_string(),
            broken: Some("invalid_metric_type"),
            ..valid_case("a colon outside prometheus.googleapis.com")
        },
        Case {
            metric_type: "compute.googleapis.com/instance/cpu".to_string(),
            broken: Some("invalid_metric_type"),
            ..valid_case("a domain that cannot be written to")
        },
        Case {
            metric_type: "external.googleapis.com/".to_string(),
            broken: Some("invalid_metric_type"),
            ..valid_case("an empty metric path")
        },
        Case {
            labels: vec![("a-b".to_string(), "v".to_string())],
            broken: Some("invalid_label"),
            ..valid_case("a label key with a dash")
        },
        Case {
            labels: vec![("_x".to_string(), "v".to_string())],
            broken: Some("invalid_label"),
            ..valid_case("a label key not starting with a letter")
        },
        Case {
            labels: vec![("k".repeat(101), "v".to_string())],
            broken: Some("invalid_label"),
            ..valid_case("a label key of 101 characters")
        },
        Case {
            labels: vec![("k".to_string(), "v".repeat(1025))],
            broken: Some("invalid_label"),
            ..valid_case("a label value of 1025 bytes")
        },
        Case {
            labels: vec![("k".to_string(), "é".repeat(513))],
            broken: Some("invalid_label"),
            ..valid_case("a label value of 513 two-byte characters")
        },
        Case {
            resource_type: String::new(),
            broken: Some("invalid_resource"),
            ..valid_case("no monitored resource type")
        },
        Case {
            start_before_end_ms: Some(1),
            broken: Some("invalid_interval"),
            ..valid_case("a gauge whose start is before its end")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(0),
            broken: Some("invalid_interval"),
            ..valid_case("a cumulative whose start equals its end")
        },
        Case {
            cumulative: true,
            start_before_end_ms: None,
            broken: Some("invalid_interval"),
            ..valid_case("a cumulative without a start")
        },
        Case {
            age_ms: 26 * HOUR_MS,
            broken: Some("point_too_old"),
            ..valid_case("a point 26 hours old")
        },
        Case {
            age_ms: -10 * 60_000,
            broken: Some("point_in_future"),
            ..valid_case("a point 10 minutes in the future")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![1.0, 2.0], vec![1, 2, 3], 7),
            broken: Some("invalid_distribution"),
            ..valid_case("bucket counts not adding up to the count")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![2.0, 1.0], vec![1, 2, 3], 6),
            broken: Some("invalid_distribution"),
            ..valid_case("decreasing bounds")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![1.0, 1.0], vec![1, 2, 3], 6),
            broken: Some("invalid_distribution"),
            ..valid_case("repeated bounds")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![], vec![1], 1),
            broken: Some("invalid_distribution"),
            ..valid_case("no bounds")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![1.0], vec![1, 2, 3], 6),
            broken: Some("invalid_distribution"),
            ..valid_case("more bucket counts than buckets")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram(vec![1.0], vec![-1, 2], 1),
            broken: Some("invalid_distribution"),
            ..valid_case("a negative bucket count")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: histogram((1..=200).map(f64::from).collect(), vec![0; 201], 0),
            broken: Some("invalid_distribution"),
            ..valid_case("a histogram of 201 buckets")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: CaseValue::Distribution {
                count: 0,
                mean: 1.0,
                sum_of_squared_deviation: 0.0,
                bounds: vec![1.0],
                bucket_counts: vec![0, 0],
            },
            broken: Some("invalid_distribution"),
            ..valid_case("an empty distribution with a mean")
        },
            Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(4, 2f64.sqrt(), 0.25),
            ..valid_case("a native histogram's exponential buckets")
        },
        Case {
            value: exponential(1, 2.0, 1.0),
            ..valid_case("a gauge histogram with one finite exponential bucket")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(0, 2.0, 1.0),
            broken: Some("invalid_distribution"),
            ..valid_case("exponential buckets without a finite bucket")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(4, 1.0, 1.0),
            broken: Some("invalid_distribution"),
            ..valid_case("an exponential growth factor of 1")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(4, 2.0, 0.0),
            broken: Some("invalid_distribution"),
            ..valid_case("an exponential scale of 0")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(198, 1.01, 1.0),
            ..valid_case("200 exponential buckets")
        },
        Case {
            cumulative: true,
            start_before_end_ms: Some(1000),
            value: exponential(199, 1.01, 1.0),
            broken: Some("invalid_distribution"),
            ..valid_case("201 exponential buckets")
        },
    ]
}
