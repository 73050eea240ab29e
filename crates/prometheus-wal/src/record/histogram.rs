//! Native histogram sample records: integer (7, custom buckets 9, V2 12) and float (8, custom
//! buckets 10, V2 13), in the 2.42+ layout (with the counter-reset hint byte; 2.40/2.41 records
//! are not decodable and fail with an error).
//!
//! Framing as float samples (V1: deltas against the first entry; V2: with start timestamps),
//! each entry followed by one histogram: hint byte, schema varint, zero threshold, zero count,
//! count, sum, positive and negative spans, positive and negative buckets (integer histograms:
//! deltas between consecutive buckets; float histograms: absolute counts), and custom bucket
//! bounds when the schema is -53.

use super::cursor::Cursor;
use super::samples::Framing;
use super::{DecodeError, RecordType, open, slot};

/// Schema of custom-bucket histograms (NHCB), whose bounds follow the buckets.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// A histogram's counter-reset hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// 0: not known (the usual case for scraped histograms).
    #[default]
    Unknown,
    /// 1: a counter reset happened.
    CounterReset,
    /// 2: no counter reset happened.
    NotCounterReset,
    /// 3: a gauge histogram (no counter semantics).
    Gauge,
}

impl CounterResetHint {
    /// The hint for its byte; Prometheus does not validate it, so values above 3 read as
    /// `Unknown`.
    pub fn from_byte(b: u8) -> CounterResetHint {
        match b {
            1 => CounterResetHint::CounterReset,
            2 => CounterResetHint::NotCounterReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        }
    }

    /// The hint's byte.
    pub fn as_byte(self) -> u8 {
        match self {
            CounterResetHint::Unknown => 0,
            CounterResetHint::CounterReset => 1,
            CounterResetHint::NotCounterReset => 2,
            CounterResetHint::Gauge => 3,
        }
    }
}

/// A run of consecutive buckets: the first span's offset is from bucket index 0, later offsets
/// are gaps after the previous span's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Gap (in bucket indices) before this span.
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// A native histogram with integer counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter-reset hint.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: -4..=8 exponential, [`CUSTOM_BUCKETS_SCHEMA`] for custom buckets.
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total observations.
    pub count: u64,
    /// Sum of observations; [`STALE_NAN_BITS`](super::STALE_NAN_BITS) marks a stale histogram.
    pub sum: f64,
    /// Spans of positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, delta-encoded: `count[i] = count[i-1] + delta[i]`.
    pub positive_deltas: Vec<i64>,
    /// Negative bucket counts, delta-encoded.
    pub negative_deltas: Vec<i64>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// A native histogram with float counts (absolute, not deltas).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter-reset hint.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution, as in [`Histogram::schema`].
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations.
    pub count: f64,
    /// Sum of observations; [`STALE_NAN_BITS`](super::STALE_NAN_BITS) marks a stale histogram.
    pub sum: f64,
    /// Spans of positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// One integer histogram sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefHistogramSample {
    /// The series ref.
    pub series_ref: u64,
    /// Timestamp, ms since the epoch.
    pub t: i64,
    /// Start timestamp in ms (V2 records), 0 when not known.
    pub st: i64,
    /// The histogram.
    pub h: Histogram,
}

/// One float histogram sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefFloatHistogramSample {
    /// The series ref.
    pub series_ref: u64,
    /// Timestamp, ms since the epoch.
    pub t: i64,
    /// Start timestamp in ms (V2 records), 0 when not known.
    pub st: i64,
    /// The histogram.
    pub fh: FloatHistogram,
}

/// Decodes an integer histogram record (types 7, 9 and 12) into `out`. Elements already in
/// `out` are reused (their vectors keep their capacity); `out` ends with exactly the record's
/// samples.
pub fn decode_histogram_samples(
    record: &[u8],
    out: &mut Vec<RefHistogramSample>,
) -> Result<(), DecodeError> {
    let accepted = [
        RecordType::HistogramSamples,
        RecordType::CustomBucketsHistogramSamples,
        RecordType::HistogramSamplesV2,
    ];
    let (t, mut c) = open(record, &accepted, "histogram samples")?;
    let mut framing = Framing::start(&mut c, t == RecordType::HistogramSamplesV2)?;
    let mut n = 0;
    while !c.is_empty() {
        let (series_ref, t, st) = framing.next(&mut c)?;
        let e = slot(out, n);
        (e.series_ref, e.t, e.st) = (series_ref, t, st);
        decode_histogram(&mut c, &mut e.h)?;
        n += 1;
    }
    out.truncate(n);
    Ok(())
}

/// Decodes a float histogram record (types 8, 10 and 13) into `out`, reusing its elements like
/// [`decode_histogram_samples`].
pub fn decode_float_histogram_samples(
    record: &[u8],
    out: &mut Vec<RefFloatHistogramSample>,
) -> Result<(), DecodeError> {
    let accepted = [
        RecordType::FloatHistogramSamples,
        RecordType::CustomBucketsFloatHistogramSamples,
        RecordType::FloatHistogramSamplesV2,
    ];
    let (t, mut c) = open(record, &accepted, "float histogram samples")?;
    let mut framing = Framing::start(&mut c, t == RecordType::FloatHistogramSamplesV2)?;
    let mut n = 0;
    while !c.is_empty() {
        let (series_ref, t, st) = framing.next(&mut c)?;
        let e = slot(out, n);
        (e.series_ref, e.t, e.st) = (series_ref, t, st);
        decode_float_histogram(&mut c, &mut e.fh)?;
        n += 1;
    }
    out.truncate(n);
    Ok(())
}

fn decode_histogram(c: &mut Cursor<'_>, h: &mut Histogram) -> Result<(), DecodeError> {
    h.counter_reset_hint = CounterResetHint::from_byte(c.byte()?);
    h.schema = c.varint_i32("schema")?;
    h.zero_threshold = c.be64_f64()?;
    h.zero_count = c.uvarint()?;
    h.count = c.uvarint()?;
    h.sum = c.be64_f64()?;
    decode_spans(c, &mut h.positive_spans)?;
    decode_spans(c, &mut h.negative_spans)?;
    for deltas in [&mut h.positive_deltas, &mut h.negative_deltas] {
        deltas.clear();
        let n = c.count(1)?;
        deltas.reserve(n);
        for _ in 0..n {
            deltas.push(c.varint()?);
        }
    }
    decode_custom_values(c, h.schema, &mut h.custom_values)
}

fn decode_float_histogram(c: &mut Cursor<'_>, h: &mut FloatHistogram) -> Result<(), DecodeError> {
    h.counter_reset_hint = CounterResetHint::from_byte(c.byte()?);
    h.schema = c.varint_i32("schema")?;
    h.zero_threshold = c.be64_f64()?;
    h.zero_count = c.be64_f64()?;
    h.count = c.be64_f64()?;
    h.sum = c.be64_f64()?;
    decode_spans(c, &mut h.positive_spans)?;
    decode_spans(c, &mut h.negative_spans)?;
    for buckets in [&mut h.positive_buckets, &mut h.negative_buckets] {
        decode_floats(c, buckets)?;
    }
    decode_custom_values(c, h.schema, &mut h.custom_values)
}

fn decode_spans(c: &mut Cursor<'_>, out: &mut Vec<Span>) -> Result<(), DecodeError> {
    out.clear();
    let n = c.count(2)?;
    out.reserve(n);
    for _ in 0..n {
        let offset = c.varint_i32("span offset")?;
        let length = c.uvarint_u32("span length")?;
        out.push(Span { offset, length });
    }
    Ok(())
}

fn decode_floats(c: &mut Cursor<'_>, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    out.clear();
    let n = c.count(8)?;
    out.reserve(n);
    for _ in 0..n {
        out.push(c.be64_f64()?);
    }
    Ok(())
}

fn decode_custom_values(
    c: &mut Cursor<'_>,
    schema: i32,
    out: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        decode_floats(c, out)
    } else {
        out.clear();
        Ok(())
    }
}
