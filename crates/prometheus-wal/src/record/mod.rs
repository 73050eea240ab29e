//! Decoding record payloads (`tsdb/record`): series, samples, tombstones, exemplars, mmap
//! markers, metadata, histograms, in their 2.x and 3.x layouts.
//!
//! A record's first byte is its [`RecordType`]. Decoders take the whole (decompressed) record
//! and fill a caller-provided `Vec`, cleared first, so a caller that keeps its buffers decodes
//! samples without allocating. Deltas of refs and timestamps are *signed* zigzag varints (the
//! official format doc says uvarint; the code writes varints). Every length and count read from
//! the input is checked against what remains: no input panics or allocates without bound.
//! This module must never touch files or know about segments: errors name the record type and
//! the byte offset inside the record, the caller adds the segment and position.

mod cursor;
pub mod encode;
mod histogram;
mod other;
mod samples;
mod series;

pub use cursor::{zigzag_decode, zigzag_encode};
pub use histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, RefFloatHistogramSample,
    RefHistogramSample, Span, decode_float_histogram_samples, decode_histogram_samples,
};
pub use other::{
    MetricType, RefExemplar, RefMetadata, RefMmapMarker, Tombstone, decode_exemplars,
    decode_metadata, decode_mmap_markers, decode_tombstones,
};
pub use samples::{RefSample, RefSampleSt, decode_samples, decode_samples_st};
pub use series::{RefSeries, decode_series};

use std::fmt;

use cursor::Cursor;

/// The bits of Prometheus' staleness marker (`value.StaleNaN`), a NaN. Compare bits, not floats.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True if `v` is Prometheus' staleness marker (exactly [`STALE_NAN_BITS`]; other NaNs are not).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The type of a record, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// 1: series refs and their labels.
    Series,
    /// 2: float samples (V1).
    Samples,
    /// 3: deletion intervals (admin API `delete_series`).
    Tombstones,
    /// 4: exemplars (2.27+).
    Exemplars,
    /// 5: out-of-order mmap markers (WBL only).
    MmapMarkers,
    /// 6: metric metadata (written from 2.54 with `metadata-wal-records`).
    Metadata,
    /// 7: native histograms with integer counts (2.42+ layout).
    HistogramSamples,
    /// 8: native histograms with float counts (2.42+).
    FloatHistogramSamples,
    /// 9: custom-bucket (NHCB) histograms (3.2+).
    CustomBucketsHistogramSamples,
    /// 10: custom-bucket float histograms (3.2+).
    CustomBucketsFloatHistogramSamples,
    /// 11: float samples with start timestamps (3.11+ `st-storage`).
    SamplesV2,
    /// 12: histograms with start timestamps (3.12+).
    HistogramSamplesV2,
    /// 13: float histograms with start timestamps (3.12+).
    FloatHistogramSamplesV2,
    /// Anything else (a newer Prometheus, or an empty record: `Unknown(0)`). Skip and count.
    Unknown(u8),
}

impl RecordType {
    /// The type for a record type byte.
    pub fn from_byte(b: u8) -> RecordType {
        match b {
            1 => RecordType::Series,
            2 => RecordType::Samples,
            3 => RecordType::Tombstones,
            4 => RecordType::Exemplars,
            5 => RecordType::MmapMarkers,
            6 => RecordType::Metadata,
            7 => RecordType::HistogramSamples,
            8 => RecordType::FloatHistogramSamples,
            9 => RecordType::CustomBucketsHistogramSamples,
            10 => RecordType::CustomBucketsFloatHistogramSamples,
            11 => RecordType::SamplesV2,
            12 => RecordType::HistogramSamplesV2,
            13 => RecordType::FloatHistogramSamplesV2,
            other => RecordType::Unknown(other),
        }
    }

    /// The record type byte.
    pub fn as_byte(self) -> u8 {
        match self {
            RecordType::Series => 1,
            RecordType::Samples => 2,
            RecordType::Tombstones => 3,
            RecordType::Exemplars => 4,
            RecordType::MmapMarkers => 5,
            RecordType::Metadata => 6,
            RecordType::HistogramSamples => 7,
            RecordType::FloatHistogramSamples => 8,
            RecordType::CustomBucketsHistogramSamples => 9,
            RecordType::CustomBucketsFloatHistogramSamples => 10,
            RecordType::SamplesV2 => 11,
            RecordType::HistogramSamplesV2 => 12,
            RecordType::FloatHistogramSamplesV2 => 13,
            RecordType::Unknown(b) => b,
        }
    }

    /// Prometheus' name for the type (`Type.String()`), e.g. `"samples"`.
    pub fn name(self) -> &'static str {
        match self {
            RecordType::Series => "series",
            RecordType::Samples => "samples",
            RecordType::Tombstones => "tombstones",
            RecordType::Exemplars => "exemplars",
            RecordType::MmapMarkers => "mmapmarkers",
            RecordType::Metadata => "metadata",
            RecordType::HistogramSamples => "histogram_samples",
            RecordType::FloatHistogramSamples => "float_histogram_samples",
            RecordType::CustomBucketsHistogramSamples => "custom_buckets_histogram_samples",
            RecordType::CustomBucketsFloatHistogramSamples => {
                "custom_buckets_float_histogram_samples"
            }
            RecordType::SamplesV2 => "samples_v2",
            RecordType::HistogramSamplesV2 => "histogram_samples_v2",
            RecordType::FloatHistogramSamplesV2 => "float_histogram_samples_v2",
            RecordType::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordType::Unknown(b) => write!(f, "unknown({b})"),
            t => f.write_str(t.name()),
        }
    }
}

/// The type of a record (its first byte); `Unknown(0)` for an empty record.
pub fn record_type(record: &[u8]) -> RecordType {
    record
        .first()
        .map_or(RecordType::Unknown(0), |&b| RecordType::from_byte(b))
}

/// A record payload that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record} record, byte {offset}: {kind}")]
pub struct DecodeError {
    /// The type of the record being decoded.
    pub record: RecordType,
    /// Byte offset inside the (decompressed) record where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// What was wrong with a record payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The record ends before a field (or claims a length or count beyond its end).
    #[error("record ends early: {needed} bytes needed, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the field needs (or claims).
        needed: u64,
        /// Bytes left in the record.
        remaining: usize,
    },
    /// A varint longer than 10 bytes or above `u64::MAX`.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// The decoder was given a record of another type.
    #[error("not a {expected} record")]
    WrongType {
        /// What the decoder accepts.
        expected: &'static str,
    },
    /// A field whose value is outside what Prometheus can write.
    #[error("{field} out of range: {value}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

/// Checks that `record` is one of `accepted` and returns its type and a cursor past the type
/// byte.
fn open<'a>(
    record: &'a [u8],
    accepted: &[RecordType],
    expected: &'static str,
) -> Result<(RecordType, Cursor<'a>), DecodeError> {
    let t = record_type(record);
    if record.is_empty() || !accepted.contains(&t) {
        return Err(DecodeError {
            record: t,
            offset: 0,
            kind: DecodeErrorKind::WrongType { expected },
        });
    }
    Ok((t, Cursor::after_type(record, t)))
}

/// Returns the `i`-th element of `out`, appending a default one if needed, so that decoding
/// into a reused `Vec` reuses the elements' own buffers too.
fn slot<T: Default>(out: &mut Vec<T>, i: usize) -> &mut T {
    if i == out.len() {
        out.push(T::default());
    }
    &mut out[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_type_round_trips_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(RecordType::from_byte(b).as_byte(), b);
        }
        assert_eq!(record_type(&[]), RecordType::Unknown(0));
        assert_eq!(record_type(&[11, 0]), RecordType::SamplesV2);
        assert_eq!(RecordType::Unknown(200).to_string(), "unknown(200)");
        assert_eq!(
            RecordType::FloatHistogramSamples.to_string(),
            "float_histogram_samples"
        );
    }

    #[test]
    fn stale_marker_is_exact_bits() {
        assert!(is_stale_marker(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_marker(f64::NAN));
        assert!(!is_stale_marker(f64::from_bits(0x7ff8_0000_0000_0001)));
        assert!(!is_stale_marker(1.0));
    }
}
