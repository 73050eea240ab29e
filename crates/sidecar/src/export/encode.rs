//! Protobuf encoding of `CreateTimeSeriesRequest`s from cached series prototypes.
//!
//! Everything about a series that does not change from point to point (metric type and labels,
//! resource, kind, value type) is encoded once into [`SeriesPrototype::encoded`] and
//! [`SeriesPrototype::resource`] (shared by the series of one target). A request is then
//! assembled by concatenating, per series, those bytes and the freshly encoded point: valid
//! protobuf, because a message's fields may come in any order and repeated fields concatenate.
//! This module must never decide *what* is sent, only how it is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use gcm_api::api::Distribution as DistributionProto;
use gcm_api::api::distribution::BucketOptions;
use gcm_api::api::distribution::bucket_options::{Explicit, Options};
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::{Point as PointProto, TimeInterval, TypedValue, typed_value};
use prost::Message;
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};

use super::point_bytes::scalar_point;
use super::validate::{Invalid, check_series};

/// `CreateTimeSeriesRequest.name`.
const REQUEST_NAME_TAG: u32 = 3;
/// `CreateTimeSeriesRequest.time_series`.
const REQUEST_TIME_SERIES_TAG: u32 = 2;
/// `TimeSeries.metric`, `.resource`, `.metric_kind`, `.value_type` and `.points`.
const TIME_SERIES_METRIC_TAG: u32 = 1;
const TIME_SERIES_RESOURCE_TAG: u32 = 2;
const TIME_SERIES_KIND_TAG: u32 = 3;
const TIME_SERIES_VALUE_TYPE_TAG: u32 = 4;
const TIME_SERIES_POINTS_TAG: u32 = 5;
/// `Metric.labels` and `Metric.type`.
const METRIC_LABELS_TAG: u32 = 2;
const METRIC_TYPE_TAG: u32 = 3;
/// `MonitoredResource.type` and `MonitoredResource.labels`.
const RESOURCE_TYPE_TAG: u32 = 1;
const RESOURCE_LABELS_TAG: u32 = 2;
/// Key and value of a protobuf map entry.
const MAP_KEY_TAG: u32 = 1;
const MAP_VALUE_TAG: u32 = 2;

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

fn put_string(tag: u32, s: &str, buf: &mut Vec<u8>) {
    put_bytes(tag, s.as_bytes(), buf);
}

/// One entry of a `map<string, string>` field.
fn put_map_entry(tag: u32, key: &str, value: &str, buf: &mut Vec<u8>) {
    let field_len = |s: &str| 1 + encoded_len_varint(s.len() as u64) + s.len();
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint((field_len(key) + field_len(value)) as u64, buf);
    put_string(MAP_KEY_TAG, key, buf);
    put_string(MAP_VALUE_TAG, value, buf);
}

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
}

impl PointKind {
    /// The protobuf metric kind.
    pub fn metric_kind(self) -> MetricKind {
        match self {
            PointKind::GaugeDouble | PointKind::GaugeInt64 => MetricKind::Gauge,
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
            PointKind::CumulativeDistribution => ValueType::Distribution,
        }
    }
}

/// The interval of the last point accepted for a series, for the converter's ordering guard.
/// It lives with the (interned) prototype so that every WAL series mapping to one Cloud
/// Monitoring series shares it, without a lookup per sample. Only the reader thread touches it;
/// atomics make the prototype shareable with the shards, which never read it.
#[derive(Debug, Default)]
pub struct LastInterval {
    start: AtomicI64,
    /// `i64::MIN` (the default, as 0 would be a valid time) until the first point.
    end: AtomicI64,
}

impl LastInterval {
    /// An empty guard.
    pub fn new() -> LastInterval {
        LastInterval {
            start: AtomicI64::new(0),
            end: AtomicI64::new(i64::MIN),
        }
    }

    /// The last accepted `(start, end)`, if any.
    pub fn get(&self) -> Option<(i64, i64)> {
        let end = self.end.load(Relaxed);
        (end != i64::MIN).then(|| (self.start.load(Relaxed), end))
    }

    /// Records `(start, end)` as the last accepted interval.
    pub fn set(&self, (start, end): (i64, i64)) {
        self.start.store(start, Relaxed);
        self.end.store(end, Relaxed);
    }
}

impl Clone for LastInterval {
    fn clone(&self) -> LastInterval {
        let copy = LastInterval::new();
        if let Some(interval) = self.get() {
            copy.set(interval);
        }
        copy
    }
}

impl PartialEq for LastInterval {
    /// Not part of a series' identity.
    fn eq(&self, _: &LastInterval) -> bool {
        true
    }
}

/// Everything about one Cloud Monitoring time series except its points, encoded once.
///
/// The bytes come in three pieces, written one after the other: [`SeriesPrototype::encoded`]
/// up to `head_len` (the `metric` field's key and length), the metric type's field (shared by
/// every series of that metric type), and the rest of `encoded` (the metric labels, then
/// `metric_kind` and `value_type`); then the resource's field. Sharing the metric type keeps
/// about fifty bytes per series once, instead of in every series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPrototype {
    /// Stable hash of resource and metric identity: the shard key and the per-request dedup key.
    pub hash: u64,
    /// Kind and value type of the points.
    pub kind: PointKind,
    /// Length of the `metric` field's key and length at the start of `encoded`.
    head_len: u8,
    /// `TimeSeries` fields 1, 3 and 4 (metric, metric_kind, value_type) as protobuf bytes,
    /// without the metric type's field (see above).
    encoded: Box<[u8]>,
    /// The `Metric.type` field as protobuf bytes, shared with every series of the metric type.
    metric_type: Arc<[u8]>,
    /// `TimeSeries` field 2 (resource) as protobuf bytes, shared with every series of the same
    /// resource.
    pub resource: Arc<[u8]>,
    /// The rule the metric type, metric labels or resource type break, if any: every point of
    /// such a series would be refused, so none is sent.
    pub invalid: Option<Invalid>,
    /// The last point's interval (the converter's ordering guard).
    pub last_interval: LastInterval,
}

impl SeriesPrototype {
    /// Encodes a prototype. Labels must be sorted by name (the hash depends on the order); map
    /// entries are written sorted by key, so the bytes of one identity are always the same.
    pub fn new(
        metric_type: String,
        metric_labels: &[(String, String)],
        resource_type: &str,
        resource_labels: &[(&str, String)],
        kind: PointKind,
    ) -> SeriesPrototype {
        let hash = series_hash(&metric_type, metric_labels, resource_type, resource_labels);
        let invalid = check_series(&metric_type, metric_labels, resource_type).err();
        let mut type_field = Vec::with_capacity(metric_type.len() + 3);
        put_string(METRIC_TYPE_TAG, &metric_type, &mut type_field);
        let mut labels = Vec::with_capacity(64);
        let mut sorted: Vec<(&str, &str)> = metric_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable();
        for (k, v) in sorted {
            put_map_entry(METRIC_LABELS_TAG, k, v, &mut labels);
        }
        let mut head = [0u8; 11];
        let head_len = put_field_head(
            TIME_SERIES_METRIC_TAG,
            type_field.len() + labels.len(),
            &mut head,
        );
        let mut encoded = Vec::with_capacity(head_len + labels.len() + 4);
        encoded.extend_from_slice(&head[..head_len]);
        encoded.extend_from_slice(&labels);
        encode_key(TIME_SERIES_KIND_TAG, WireType::Varint, &mut encoded);
        encode_varint(kind.metric_kind() as i32 as u64, &mut encoded);
        encode_key(TIME_SERIES_VALUE_TYPE_TAG, WireType::Varint, &mut encoded);
        encode_varint(kind.value_type() as i32 as u64, &mut encoded);
        let mut resource = Vec::with_capacity(64);
        put_string(RESOURCE_TYPE_TAG, resource_type, &mut resource);
        let mut sorted: Vec<(&str, &str)> = resource_labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        sorted.sort_unstable();
        for (k, v) in sorted {
            put_map_entry(RESOURCE_LABELS_TAG, k, v, &mut resource);
        }
        let mut resource_field = Vec::with_capacity(resource.len() + 3);
        put_bytes(TIME_SERIES_RESOURCE_TAG, &resource, &mut resource_field);
        SeriesPrototype {
            hash,
            kind,
            head_len: head_len as u8,
            encoded: encoded.into_boxed_slice(),
            metric_type: super::resources::share(&type_field),
            resource: super::resources::share(&resource_field),
            invalid,
            last_interval: LastInterval::new(),
        }
    }
}

impl SeriesPrototype {
    /// The series' `TimeSeries` fields without points, in the pieces they are written in.
    pub fn pieces(&self) -> [&[u8]; 4] {
        let (head, rest) = self.encoded.split_at(usize::from(self.head_len));
        [head, &self.metric_type, rest, &self.resource]
    }

    /// Length of the series' `TimeSeries` fields without points.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len() + self.metric_type.len() + self.resource.len()
    }

    /// The bytes of this series alone (not shared with other series), for prefetching.
    pub fn own_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The metric type (for messages), read back from its encoded field rather than kept
    /// twice.
    pub fn metric_type(&self) -> &str {
        let mut cursor = self.metric_type.get(1..).unwrap_or_default();
        let Ok(len) = decode_varint(&mut cursor) else {
            return "";
        };
        cursor
            .get(..len as usize)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("")
    }
}

/// Hash of a series' identity as Cloud Monitoring sees it (resource and metric, with labels).
/// Separators keep `("ab","c")` and `("a","bc")` apart.
fn series_hash(
    metric_type: &str,
    metric_labels: &[(String, String)],
    resource_type: &str,
    resource_labels: &[(&str, String)],
) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(resource_type.as_bytes());
    h.update(&[0xff]);
    h.update(metric_type.as_bytes());
    for (k, v) in resource_labels {
        h.update(&[0xff]);
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
    }
    h.update(&[0xfe]);
    for (k, v) in metric_labels {
        h.update(&[0xff]);
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
    }
    h.digest()
}

/// A DISTRIBUTION value with explicit bucket bounds, as a Prometheus histogram becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Number of observations.
    pub count: i64,
    /// Mean of the observations (0 when `count` is 0).
    pub mean: f64,
    /// Sum of squared deviations from the mean, estimated from bucket midpoints.
    pub sum_of_squared_deviation: f64,
    /// Finite bucket bounds, strictly increasing; bucket `i` is `[bounds[i-1], bounds[i])`,
    /// with an underflow bucket before the first bound and an overflow bucket after the last.
    pub bounds: Vec<f64>,
    /// Observations per bucket: at most `bounds.len() + 1` entries, summing to `count`.
    pub bucket_counts: Vec<i64>,
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

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

impl Point {
    /// The point as a prost message (the slow path; scalar points are written directly).
    pub(super) fn into_proto(self) -> PointProto {
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
                        typed_value::Value::DistributionValue(d.into_proto())
                    }
                }),
            }),
        }
    }
}

impl Distribution {
    fn into_proto(self) -> DistributionProto {
        DistributionProto {
            count: self.count,
            mean: self.mean,
            sum_of_squared_deviation: self.sum_of_squared_deviation,
            bucket_options: Some(BucketOptions {
                options: Some(Options::ExplicitBuckets(Explicit {
                    bounds: self.bounds,
                })),
            }),
            bucket_counts: self.bucket_counts,
            ..Default::default()
        }
    }
}

/// Writes the key (a field number below 16, length-delimited) and length of a field into
/// `out`; returns how many bytes that took.
fn put_field_head(tag: u32, len: usize, out: &mut [u8; 11]) -> usize {
    out[0] = (tag << 3) as u8 | 2;
    let mut n = 1;
    let mut v = len as u64;
    while v >= 0x80 && n < out.len() - 1 {
        out[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

/// Builds the bytes of one `CreateTimeSeriesRequest`, series by series; [`RequestBuilder::take`]
/// hands them over without a copy, and the buffer is reused once the request is dropped.
#[derive(Debug, Default)]
pub struct RequestBuilder {
    buf: BytesMut,
    series: usize,
    /// Size of the largest request taken so far: room reserved at once for the next one, so
    /// that a request is not built by repeated growing and copying.
    largest: usize,
}

impl RequestBuilder {
    /// Starts a request for `projects/<project_id>`, discarding what the buffer held.
    pub fn start(&mut self, project_name: &str) {
        self.buf.clear();
        self.buf.reserve(self.largest);
        self.series = 0;
        encode_key(REQUEST_NAME_TAG, WireType::LengthDelimited, &mut self.buf);
        encode_varint(project_name.len() as u64, &mut self.buf);
        self.buf.extend_from_slice(project_name.as_bytes());
    }

    /// Appends one time series with exactly one point.
    pub fn push(&mut self, series: &SeriesPrototype, point: Point) {
        // Plain values are written from the stack; distributions (rare) through prost.
        let scalar = scalar_point(&point);
        let boxed;
        let point: &[u8] = match &scalar {
            Some(bytes) => bytes.as_slice(),
            None => {
                boxed = point.into_proto().encode_to_vec();
                &boxed
            }
        };
        let point_field_len = 1 + encoded_len_varint(point.len() as u64) + point.len();
        let series_len = series.encoded_len() + point_field_len;
        self.buf.reserve(1 + 3 + series_len);
        let mut head = [0u8; 11];
        let head_len = put_field_head(REQUEST_TIME_SERIES_TAG, series_len, &mut head);
        self.buf.extend_from_slice(&head[..head_len]);
        for piece in series.pieces() {
            self.buf.extend_from_slice(piece);
        }
        let head_len = put_field_head(TIME_SERIES_POINTS_TAG, point.len(), &mut head);
        self.buf.extend_from_slice(&head[..head_len]);
        self.buf.extend_from_slice(point);
        self.series += 1;
    }

    /// Number of series pushed since `start`.
    pub fn len(&self) -> usize {
        self.series
    }

    /// Whether no series was pushed since `start`.
    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// The request bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The request, leaving the builder empty.
    pub fn take(&mut self) -> Bytes {
        self.series = 0;
        self.largest = self.largest.max(self.buf.len());
        self.buf.split().freeze()
    }
}

/// The request `bytes` as [`RequestBuilder`] wrote them, without the leading `name` field: what
/// the original's file mode stored. Bytes that do not start with a `name` are returned whole.
pub fn without_name(bytes: &[u8]) -> &[u8] {
    // Field 3, wire type 2 (length-delimited): one byte.
    const NAME_KEY: u8 = ((REQUEST_NAME_TAG << 3) | 2) as u8;
    let Some(mut rest) = bytes.strip_prefix(&[NAME_KEY]) else {
        return bytes;
    };
    match decode_varint(&mut rest) {
        Ok(len) if (len as usize) <= rest.len() => &rest[len as usize..],
        _ => bytes,
    }
}

/// Shared handle to a prototype, as carried by every queued point.
pub type SharedPrototype = Arc<SeriesPrototype>;

#[cfg(test)]
mod tests {
    use super::*;
    use gcm_api::monitoring::CreateTimeSeriesRequest;

    fn proto(kind: PointKind) -> SeriesPrototype {
        SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[("code".into(), "200".into())],
            "generic_task",
            &[("job", "node".into()), ("task_id", "a:1".into())],
            kind,
        )
    }

    #[test]
    fn pieces_with_long_lengths_decode_whole() {
        // Lengths over 127 take two-byte varints in every piece.
        let p = SeriesPrototype::new(
            format!("custom.googleapis.com/{}", "long_name_".repeat(20)),
            &[("code".into(), "x".repeat(300))],
            "generic_task",
            &[("job", "node".into())],
            PointKind::CumulativeDouble,
        );
        assert_eq!(
            p.metric_type(),
            format!("custom.googleapis.com/{}", "long_name_".repeat(20))
        );
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        for i in 0..3 {
            b.push(
                &p,
                Point {
                    start_ms: Some(1_000),
                    end_ms: 2_000 + i,
                    value: PointValue::Double(i as f64),
                },
            );
        }
        let decoded = CreateTimeSeriesRequest::decode(b.bytes()).unwrap();
        assert_eq!(decoded.name, "projects/p");
        assert_eq!(decoded.time_series.len(), 3);
        for (i, ts) in decoded.time_series.iter().enumerate() {
            let metric = ts.metric.as_ref().unwrap();
            assert_eq!(metric.r#type, p.metric_type());
            assert_eq!(metric.labels.len(), 1);
            assert_eq!(metric.labels["code"], "x".repeat(300));
            let resource = ts.resource.as_ref().unwrap();
            assert_eq!(resource.r#type, "generic_task");
            assert_eq!(resource.labels["job"], "node");
            assert_eq!(ts.metric_kind, MetricKind::Cumulative as i32);
            assert_eq!(ts.value_type, ValueType::Double as i32);
            assert_eq!(
                ts.points[0].value.as_ref().unwrap().value,
                Some(typed_value::Value::DoubleValue(i as f64))
            );
        }
    }

    #[test]
    fn assembled_request_decodes_as_the_real_message() {
        let g = proto(PointKind::GaugeDouble);
        let c = proto(PointKind::CumulativeInt64);
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        b.push(
            &g,
            Point {
                start_ms: None,
                end_ms: 1_700_000_000_123,
                value: PointValue::Double(1.5),
            },
        );
        b.push(
            &c,
            Point {
                start_ms: Some(1_699_999_999_999),
                end_ms: 1_700_000_000_000,
                value: PointValue::Int64(7),
            },
        );
        assert_eq!(b.len(), 2);
        let req = CreateTimeSeriesRequest::decode(b.bytes()).unwrap();
        assert_eq!(req.name, "projects/p");
        assert_eq!(req.time_series.len(), 2);
        let ts = &req.time_series[0];
        assert_eq!(
            ts.metric.as_ref().unwrap().r#type,
            "external.googleapis.com/prometheus/up"
        );
        assert_eq!(ts.metric.as_ref().unwrap().labels["code"], "200");
        assert_eq!(ts.resource.as_ref().unwrap().labels["task_id"], "a:1");
        assert_eq!(ts.metric_kind, MetricKind::Gauge as i32);
        assert_eq!(ts.points.len(), 1);
        let p = &ts.points[0];
        let iv = p.interval.unwrap();
        assert_eq!(iv.end_time.unwrap().seconds, 1_700_000_000);
        assert_eq!(iv.end_time.unwrap().nanos, 123_000_000);
        assert!(iv.start_time.is_none());
        assert_eq!(
            p.value.as_ref().unwrap().value,
            Some(typed_value::Value::DoubleValue(1.5))
        );
        let ts = &req.time_series[1];
        assert_eq!(ts.metric_kind, MetricKind::Cumulative as i32);
        assert_eq!(ts.value_type, ValueType::Int64 as i32);
        let iv = ts.points[0].interval.unwrap();
        assert_eq!(iv.start_time.unwrap().seconds, 1_699_999_999);
        assert_eq!(iv.start_time.unwrap().nanos, 999_000_000);
    }

    #[test]
    fn start_discards_the_previous_request() {
        let g = proto(PointKind::GaugeDouble);
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        let p = Point {
            start_ms: None,
            end_ms: 1,
            value: PointValue::Double(0.0),
        };
        b.push(&g, p);
        b.start("projects/q");
        assert!(b.is_empty());
        let req = CreateTimeSeriesRequest::decode(b.bytes()).unwrap();
        assert_eq!(req.name, "projects/q");
        assert!(req.time_series.is_empty());
    }

    #[test]
    fn distribution_points_decode_with_explicit_buckets() {
        let h = proto(PointKind::CumulativeDistribution);
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        b.push(
            &h,
            Point {
                start_ms: Some(1_000),
                end_ms: 2_000,
                value: PointValue::Distribution(Box::new(Distribution {
                    count: 3,
                    mean: 0.5,
                    sum_of_squared_deviation: 0.25,
                    bounds: vec![0.1, 1.0],
                    bucket_counts: vec![1, 2, 0],
                })),
            },
        );
        let req = CreateTimeSeriesRequest::decode(b.bytes()).unwrap();
        let ts = &req.time_series[0];
        assert_eq!(ts.metric_kind, MetricKind::Cumulative as i32);
        assert_eq!(ts.value_type, ValueType::Distribution as i32);
        let Some(typed_value::Value::DistributionValue(d)) =
            ts.points[0].value.as_ref().unwrap().value.as_ref()
        else {
            panic!("not a distribution: {:?}", ts.points[0]);
        };
        assert_eq!(
            (d.count, d.mean, d.sum_of_squared_deviation),
            (3, 0.5, 0.25)
        );
        assert_eq!(d.bucket_counts, [1, 2, 0]);
        let Some(Options::ExplicitBuckets(e)) = &d.bucket_options.as_ref().unwrap().options else {
            panic!("not explicit buckets: {d:?}");
        };
        assert_eq!(e.bounds, [0.1, 1.0]);
    }

    #[test]
    fn without_name_keeps_only_the_series() {
        let g = proto(PointKind::GaugeDouble);
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        b.push(
            &g,
            Point {
                start_ms: None,
                end_ms: 1_000,
                value: PointValue::Double(2.0),
            },
        );
        let stripped = without_name(b.bytes());
        assert!(stripped.len() < b.bytes().len());
        let req = CreateTimeSeriesRequest::decode(stripped).unwrap();
        assert_eq!(req.name, "");
        assert_eq!(req.time_series.len(), 1);
    }

    #[test]
    fn a_prototype_breaking_a_series_rule_is_marked_invalid() {
        let bad = SeriesPrototype::new(
            "external.googleapis.com/prometheus/job:up".into(),
            &[],
            "generic_task",
            &[],
            PointKind::GaugeDouble,
        );
        assert_eq!(bad.invalid, Some(Invalid::MetricType));
        assert_eq!(proto(PointKind::GaugeDouble).invalid, None);
    }

    #[test]
    fn negative_timestamps_have_positive_nanos() {
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
    }

    #[test]
    fn hash_depends_on_every_part_of_the_identity() {
        let base = proto(PointKind::GaugeDouble).hash;
        let other_label = SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[("code".into(), "500".into())],
            "generic_task",
            &[("job", "node".into()), ("task_id", "a:1".into())],
            PointKind::GaugeDouble,
        );
        assert_ne!(base, other_label.hash);
        let other_resource = SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[("code".into(), "200".into())],
            "generic_task",
            &[("job", "node".into()), ("task_id", "a:2".into())],
            PointKind::GaugeDouble,
        );
        assert_ne!(base, other_resource.hash);
        assert_eq!(base, proto(PointKind::GaugeDouble).hash);
    }
}
