//! Protobuf field writing shared by the prototypes and the request assembly: keys, lengths,
//! strings and map entries of the `google.monitoring.v3` messages, written straight into a
//! buffer. Field numbers are those of Google's `metric_service.proto`, `metric.proto`,
//! `monitored_resource.proto` and `common.proto`. Only bytes; it must never decide what is sent.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// `CreateTimeSeriesRequest.name`.
pub(crate) const REQUEST_NAME_TAG: u32 = 3;
/// `CreateTimeSeriesRequest.time_series`.
pub(crate) const REQUEST_TIME_SERIES_TAG: u32 = 2;
/// `TimeSeries.metric`, `.resource`, `.metric_kind`, `.value_type` and `.points`.
pub(crate) const TIME_SERIES_METRIC_TAG: u32 = 1;
pub(crate) const TIME_SERIES_RESOURCE_TAG: u32 = 2;
pub(crate) const TIME_SERIES_KIND_TAG: u32 = 3;
pub(crate) const TIME_SERIES_VALUE_TYPE_TAG: u32 = 4;
pub(crate) const TIME_SERIES_POINTS_TAG: u32 = 5;
/// `Metric.labels` and `Metric.type`.
pub(crate) const METRIC_LABELS_TAG: u32 = 2;
pub(crate) const METRIC_TYPE_TAG: u32 = 3;
/// `MonitoredResource.type` and `MonitoredResource.labels`.
pub(crate) const RESOURCE_TYPE_TAG: u32 = 1;
pub(crate) const RESOURCE_LABELS_TAG: u32 = 2;
/// Key and value of a protobuf map entry.
const MAP_KEY_TAG: u32 = 1;
const MAP_VALUE_TAG: u32 = 2;

/// A length-delimited field.
pub(crate) fn put_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// A string field.
pub(crate) fn put_string(tag: u32, s: &str, buf: &mut Vec<u8>) {
    put_bytes(tag, s.as_bytes(), buf);
}

/// One entry of a `map<string, string>` field.
pub(crate) fn put_map_entry(tag: u32, key: &str, value: &str, buf: &mut Vec<u8>) {
    let field_len = |s: &str| 1 + encoded_len_varint(s.len() as u64) + s.len();
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint((field_len(key) + field_len(value)) as u64, buf);
    put_string(MAP_KEY_TAG, key, buf);
    put_string(MAP_VALUE_TAG, value, buf);
}

/// Writes the key (a field number below 16, length-delimited) and length of a field into
/// `out`; returns how many bytes that took.
pub(crate) fn put_field_head(tag: u32, len: usize, out: &mut [u8; 11]) -> usize {
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
