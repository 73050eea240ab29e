//! Encoding records exactly as Prometheus' `record.Encoder` does, for tests and tools that need
//! WAL bytes (together with [`SegmentWriter`](crate::writer::SegmentWriter)).
//!
//! Each function clears `out` and writes one whole record, type byte first. The decoders in
//! this module's parent are the inverse; round trips are tested. Never used on the read path.

use super::cursor::zigzag_encode;
use super::histogram::{CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Histogram, Span};
use super::{
    RecordType, RefExemplar, RefFloatHistogramSample, RefHistogramSample, RefMetadata,
    RefMmapMarker, RefSample, RefSampleSt, RefSeries, Tombstone,
};
use crate::labels::Label;

/// Encodes a series record.
pub fn encode_series(series: &[RefSeries], out: &mut Vec<u8>) {
    start(out, RecordType::Series);
    for s in series {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_labels(out, &s.labels);
    }
}

/// Encodes a V1 samples record (deltas against the first sample).
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) {
    start(out, RecordType::Samples);
    let Some(first) = samples.first() else { return };
    put_base(out, first.series_ref, first.t);
    for s in samples {
        put_deltas(out, first.series_ref, first.t, s.series_ref, s.t);
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Encodes a V2 samples record (type 11, with start timestamps).
pub fn encode_samples_v2(samples: &[RefSampleSt], out: &mut Vec<u8>) {
    start(out, RecordType::SamplesV2);
    let mut v2 = V2Framing::default();
    for s in samples {
        v2.put(out, s.sample.series_ref, s.sample.t, s.st);
        out.extend_from_slice(&s.sample.v.to_bits().to_be_bytes());
    }
}

/// Encodes a tombstones record.
pub fn encode_tombstones(stones: &[Tombstone], out: &mut Vec<u8>) {
    start(out, RecordType::Tombstones);
    for s in stones {
        out.extend_from_slice(&s.series_ref.to_be_bytes());
        put_varint(out, s.min_t);
        put_varint(out, s.max_t);
    }
}

/// Encodes an exemplars record.
pub fn encode_exemplars(exemplars: &[RefExemplar], out: &mut Vec<u8>) {
    start(out, RecordType::Exemplars);
    let Some(first) = exemplars.first() else {
        return;
    };
    put_base(out, first.series_ref, first.t);
    for e in exemplars {
        put_deltas(out, first.series_ref, first.t, e.series_ref, e.t);
        out.extend_from_slice(&e.v.to_bits().to_be_bytes());
        put_labels(out, &e.labels);
    }
}

/// Encodes an mmap markers record.
pub fn encode_mmap_markers(markers: &[RefMmapMarker], out: &mut Vec<u8>) {
    start(out, RecordType::MmapMarkers);
    for m in markers {
        out.extend_from_slice(&m.series_ref.to_be_bytes());
        out.extend_from_slice(&m.mmap_ref.to_be_bytes());
    }
}

/// Encodes a metadata record (fields `UNIT` and `HELP`, as Prometheus writes them).
pub fn encode_metadata(metadata: &[RefMetadata], out: &mut Vec<u8>) {
    start(out, RecordType::Metadata);
    for m in metadata {
        put_uvarint(out, m.series_ref);
        out.push(m.metric_type.as_byte());
        put_uvarint(out, 2);
        put_bytes(out, b"UNIT");
        put_bytes(out, m.unit.as_bytes());
        put_bytes(out, b"HELP");
        put_bytes(out, m.help.as_bytes());
    }
}

/// Encodes an integer histogram record of type `t` (7, 9: V1 framing; 12: V2 framing).
pub fn encode_histogram_samples(t: RecordType, samples: &[RefHistogramSample], out: &mut Vec<u8>) {
    start(out, t);
    let mut v2 = (t == RecordType::HistogramSamplesV2).then(V2Framing::default);
    put_entries(
        out,
        &mut v2,
        samples,
        |s| (s.series_ref, s.t, s.st),
        |out, s| put_histogram(out, &s.h),
    );
}

/// Encodes a float histogram record of type `t` (8, 10: V1 framing; 13: V2 framing).
pub fn encode_float_histogram_samples(
    t: RecordType,
    samples: &[RefFloatHistogramSample],
    out: &mut Vec<u8>,
) {
    start(out, t);
    let mut v2 = (t == RecordType::FloatHistogramSamplesV2).then(V2Framing::default);
    put_entries(
        out,
        &mut v2,
        samples,
        |s| (s.series_ref, s.t, s.st),
        |out, s| put_float_histogram(out, &s.fh),
    );
}

fn put_entries<T>(
    out: &mut Vec<u8>,
    v2: &mut Option<V2Framing>,
    entries: &[T],
    key: impl Fn(&T) -> (u64, i64, i64),
    mut body: impl FnMut(&mut Vec<u8>, &T),
) {
    let Some(first) = entries.first().map(&key) else {
        return;
    };
    if v2.is_none() {
        put_base(out, first.0, first.1);
    }
    for e in entries {
        let (r, t, st) = key(e);
        match v2 {
            Some(f) => f.put(out, r, t, st),
            None => put_deltas(out, first.0, first.1, r, t),
        }
        body(out, e);
    }
}

fn put_histogram(out: &mut Vec<u8>, h: &Histogram) {
    out.push(h.counter_reset_hint.as_byte());
    put_varint(out, i64::from(h.schema));
    out.extend_from_slice(&h.zero_threshold.to_bits().to_be_bytes());
    put_uvarint(out, h.zero_count);
    put_uvarint(out, h.count);
    out.extend_from_slice(&h.sum.to_bits().to_be_bytes());
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    for deltas in [&h.positive_deltas, &h.negative_deltas] {
        put_uvarint(out, deltas.len() as u64);
        for &d in deltas {
            put_varint(out, d);
        }
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_floats(out, &h.custom_values);
    }
}

fn put_float_histogram(out: &mut Vec<u8>, h: &FloatHistogram) {
    out.push(h.counter_reset_hint.as_byte());
    put_varint(out, i64::from(h.schema));
    for f in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    put_floats(out, &h.positive_buckets);
    put_floats(out, &h.negative_buckets);
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_floats(out, &h.custom_values);
    }
}

fn put_spans(out: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

fn put_floats(out: &mut Vec<u8>, values: &[f64]) {
    put_uvarint(out, values.len() as u64);
    for v in values {
        out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
}

/// The V2 framing state: ref deltas to the previous entry, time and explicit start timestamps
/// against the first.
#[derive(Default)]
struct V2Framing {
    entries: usize,
    first_t: i64,
    first_st: i64,
    prev_ref: u64,
    prev_st: i64,
}

impl V2Framing {
    fn put(&mut self, out: &mut Vec<u8>, r: u64, t: i64, st: i64) {
        if self.entries == 0 {
            put_varint(out, r as i64);
            put_varint(out, t);
            put_varint(out, st);
            (self.first_t, self.first_st) = (t, st);
        } else {
            put_varint(out, r.wrapping_sub(self.prev_ref) as i64);
            put_varint(out, t.wrapping_sub(self.first_t));
            if st == 0 {
                out.push(0);
            } else if st == self.prev_st {
                out.push(1);
            } else {
                out.push(2);
                put_varint(out, st.wrapping_sub(self.first_st));
            }
        }
        self.entries += 1;
        (self.prev_ref, self.prev_st) = (r, st);
    }
}

fn start(out: &mut Vec<u8>, t: RecordType) {
    out.clear();
    out.push(t.as_byte());
}

fn put_base(out: &mut Vec<u8>, r: u64, t: i64) {
    out.extend_from_slice(&r.to_be_bytes());
    out.extend_from_slice(&t.to_be_bytes());
}

fn put_deltas(out: &mut Vec<u8>, base_ref: u64, base_t: i64, r: u64, t: i64) {
    put_varint(out, r.wrapping_sub(base_ref) as i64);
    put_varint(out, t.wrapping_sub(base_t));
}

fn put_labels(out: &mut Vec<u8>, labels: &[Label]) {
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_bytes(out, l.name.as_bytes());
        put_bytes(out, l.value.as_bytes());
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a Go uvarint.
pub fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Appends a Go (zigzag) varint.
pub fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, zigzag_encode(x));
}
