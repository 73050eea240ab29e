//! The protobuf bytes of one `Point` with a plain (double or int64) value, written straight
//! into a request buffer: the hot path of request assembly, which must not build a message
//! tree per point. The bytes are exactly what prost writes for the same `Point` message
//! (fields in field-number order, proto3 defaults left out); distributions are not handled here.

use crate::model::point::split_millis;
use crate::model::{Point, PointValue};

// google.monitoring.v3.Point
const POINT_INTERVAL_TAG: u32 = 1;
const POINT_VALUE_TAG: u32 = 2;
// google.monitoring.v3.TimeInterval
const INTERVAL_END_TAG: u32 = 2;
const INTERVAL_START_TAG: u32 = 1;
// google.protobuf.Timestamp
const TIMESTAMP_SECONDS_TAG: u32 = 1;
const TIMESTAMP_NANOS_TAG: u32 = 2;
// google.monitoring.v3.TypedValue
const VALUE_INT64_TAG: u32 = 2;
const VALUE_DOUBLE_TAG: u32 = 3;

/// The encoded body of a `Point` with a plain value. Every nested message in it is shorter
/// than 128 bytes (a timestamp at most 2 + 10 + 5, the interval 2 × 19, the value 11), so each
/// length takes one byte and can be filled in after its message is written: one pass, no
/// sizing pass.
pub struct PointBytes {
    bytes: [u8; 64],
    len: usize,
}

const VARINT: u8 = 0;
const SIXTY_FOUR_BIT: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;

impl PointBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn put(&mut self, byte: u8) {
        // The bounds above keep `len` inside the array.
        if let Some(b) = self.bytes.get_mut(self.len) {
            *b = byte;
            self.len += 1;
        }
    }

    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put(v as u8 | 0x80);
            v >>= 7;
        }
        self.put(v as u8);
    }

    fn put_key(&mut self, tag: u32, wire_type: u8) {
        self.put((tag << 3) as u8 | wire_type);
    }

    /// Starts a length-delimited field; returns where its length byte goes.
    fn open(&mut self, tag: u32) -> usize {
        self.put_key(tag, LENGTH_DELIMITED);
        self.put(0);
        self.len - 1
    }

    /// Fills in the length of the field opened at `at`.
    fn close(&mut self, at: usize) {
        let len = self.len - at - 1;
        if let Some(b) = self.bytes.get_mut(at) {
            *b = len as u8;
        }
    }

    fn put_timestamp(&mut self, tag: u32, ms: i64) {
        let (seconds, nanos) = split_millis(ms);
        let at = self.open(tag);
        if seconds != 0 {
            self.put_key(TIMESTAMP_SECONDS_TAG, VARINT);
            self.put_varint(seconds as u64);
        }
        if nanos != 0 {
            self.put_key(TIMESTAMP_NANOS_TAG, VARINT);
            self.put_varint(nanos as i64 as u64);
        }
        self.close(at);
    }
}

/// The body of a `Point` message (without its own key and length), or `None` for a
/// distribution.
pub fn scalar_point(point: &Point) -> Option<PointBytes> {
    if let PointValue::Distribution(_) = point.value {
        return None;
    }
    let mut out = PointBytes {
        bytes: [0; 64],
        len: 0,
    };
    let interval = out.open(POINT_INTERVAL_TAG);
    if let Some(start) = point.start_ms {
        out.put_timestamp(INTERVAL_START_TAG, start);
    }
    out.put_timestamp(INTERVAL_END_TAG, point.end_ms);
    out.close(interval);
    let value = out.open(POINT_VALUE_TAG);
    match point.value {
        PointValue::Double(v) => {
            out.put_key(VALUE_DOUBLE_TAG, SIXTY_FOUR_BIT);
            for b in v.to_le_bytes() {
                out.put(b);
            }
        }
        PointValue::Int64(v) => {
            out.put_key(VALUE_INT64_TAG, VARINT);
            out.put_varint(v as u64);
        }
        PointValue::Distribution(_) => {}
    }
    out.close(value);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Distribution;
    use prost::Message;

    fn prost_bytes(point: &Point) -> Vec<u8> {
        point.clone().into_proto("projects/p").encode_to_vec()
    }

    #[test]
    fn bytes_are_the_ones_prost_writes() {
        let times = [
            0,
            1,
            999,
            1000,
            1_700_000_000_123,
            -1,
            -1500,
            i64::MAX / 2,
            i64::MIN / 2,
        ];
        let values = [
            PointValue::Double(0.0),
            PointValue::Double(-0.0),
            PointValue::Double(1.5e300),
            PointValue::Double(f64::NAN),
            PointValue::Int64(0),
            PointValue::Int64(1),
            PointValue::Int64(-1),
            PointValue::Int64(i64::MAX),
            PointValue::Int64(i64::MIN),
        ];
        for &end_ms in &times {
            for start_ms in [None, Some(0), Some(end_ms - 1), Some(-7)] {
                for value in &values {
                    let point = Point {
                        start_ms,
                        end_ms,
                        value: value.clone(),
                    };
                    let bytes = scalar_point(&point).unwrap();
                    assert_eq!(bytes.as_slice(), prost_bytes(&point), "{point:?}");
                }
            }
        }
    }

    #[test]
    fn distributions_are_left_to_prost() {
        let point = Point {
            start_ms: Some(1),
            end_ms: 2,
            value: PointValue::Distribution(Box::new(Distribution {
                count: 0,
                mean: 0.0,
                sum_of_squared_deviation: 0.0,
                buckets: crate::model::Buckets::Explicit(vec![1.0]),
                bucket_counts: vec![],
                exemplars: Vec::new(),
            })),
        };
        assert!(scalar_point(&point).is_none());
    }
}
