//! Inputs shared by the sidecar's micro-benchmarks: realistic series prototypes and points, and
//! a small reproducible random number generator. Owns no measurement.

#![allow(dead_code)]

use std::sync::Arc;

use stackdriver_prometheus_sidecar::model::{
    Buckets, Distribution, Point, PointKind, PointValue, SeriesPrototype,
};

/// splitmix64: reproducible pseudo-random numbers without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// `values` in a random order (Fisher–Yates).
    pub fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            values.swap(i, j);
        }
    }
}

/// The prototype of series number `i`, shaped like the sidecar's `generic_task` series of an
/// HTTP server: metric type, 3 metric labels, 5 resource labels.
pub fn prototype(i: usize, kind: PointKind) -> Arc<SeriesPrototype> {
    let metric = match kind {
        PointKind::GaugeDouble | PointKind::GaugeInt64 => "app_queue_depth",
        PointKind::CumulativeDouble | PointKind::CumulativeInt64 => "http_requests",
        PointKind::CumulativeDistribution => "http_request_duration_seconds",
        PointKind::GaugeDistribution => "app_batch_size",
    };
    Arc::new(SeriesPrototype::new(
        format!("external.googleapis.com/prometheus/{metric}"),
        &[
            ("code".to_string(), "200".to_string()),
            ("handler".to_string(), format!("/api/v1/items/{}", i % 1000)),
            ("method".to_string(), "GET".to_string()),
        ],
        "generic_task",
        &[
            ("job", "api".to_string()),
            ("location", "us-east1-b".to_string()),
            ("namespace", "bench".to_string()),
            ("project_id", "bench-project".to_string()),
            (
                "task_id",
                format!("10.0.{}.{}:9100", (i / 1000) % 256, i % 1000),
            ),
        ],
        kind,
    ))
}

/// The finite bounds of a client library's default histogram.
pub const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A point of `kind` at `t` (cumulative points start 60 s earlier).
pub fn point(kind: PointKind, t: i64) -> Point {
    let (start_ms, value) = match kind {
        PointKind::GaugeDouble => (None, PointValue::Double(1234.5)),
        PointKind::GaugeInt64 => (None, PointValue::Int64(1234)),
        PointKind::CumulativeDouble => (Some(t - 60_000), PointValue::Double(98_765.25)),
        PointKind::CumulativeInt64 => (Some(t - 60_000), PointValue::Int64(98_765)),
        PointKind::CumulativeDistribution => (
            Some(t - 60_000),
            PointValue::Distribution(Box::new(Distribution {
                count: 66,
                mean: 0.42,
                sum_of_squared_deviation: 3.5,
                buckets: Buckets::Explicit(BOUNDS.to_vec()),
                bucket_counts: vec![1, 2, 3, 5, 8, 13, 21, 8, 3, 1, 1, 0],
                exemplars: Vec::new(),
            })),
        ),
        PointKind::GaugeDistribution => (
            None,
            PointValue::Distribution(Box::new(Distribution {
                count: 66,
                mean: 0.42,
                sum_of_squared_deviation: 3.5,
                buckets: Buckets::Exponential {
                    num_finite: 11,
                    growth: 2f64.sqrt(),
                    scale: 0.25,
                },
                bucket_counts: vec![1, 2, 3, 5, 8, 13, 21, 8, 3, 1, 1],
                exemplars: Vec::new(),
            })),
        ),
    };
    Point {
        start_ms,
        end_ms: t,
        value,
    }
}
