//! Request assembly: the bytes of one `CreateTimeSeriesRequest`, made by concatenating, per
//! series, its prototype's encoded pieces and the freshly encoded point. That is valid protobuf
//! because a message's fields may come in any order and repeated fields concatenate. This
//! module must never decide *what* is sent, only how it is written.

mod point_bytes;

use bytes::{Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};

use crate::model::wire::{
    REQUEST_NAME_TAG, REQUEST_TIME_SERIES_TAG, TIME_SERIES_POINTS_TAG, put_field_head,
};
use crate::model::{Point, SeriesPrototype};
use point_bytes::scalar_point;

/// Builds the bytes of one `CreateTimeSeriesRequest`, series by series; [`RequestBuilder::take`]
/// hands them over without a copy, and the buffer is reused once the request is dropped.
#[derive(Debug, Default)]
pub struct RequestBuilder {
    buf: BytesMut,
    series: usize,
    /// Size of the largest request taken so far: room reserved at once for the next one, so
    /// that a request is not built by repeated growing and copying.
    largest: usize,
    /// `projects/<id>` of the request being built.
    project_name: String,
}

impl RequestBuilder {
    /// Starts a request for `projects/<project_id>`, discarding what the buffer held.
    pub fn start(&mut self, project_name: &str) {
        self.project_name.clear();
        self.project_name.push_str(project_name);
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
                boxed = point.into_proto(&self.project_name).encode_to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Distribution, PointKind, PointValue};
    use gcm_api::api::distribution::bucket_options::Options;
    use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
    use gcm_api::monitoring::{CreateTimeSeriesRequest, typed_value};

    use crate::model::prototype::example as proto;

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
                    buckets: crate::model::Buckets::Explicit(vec![0.1, 1.0]),
                    bucket_counts: vec![1, 2, 0],
                    exemplars: Vec::new(),
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
}
