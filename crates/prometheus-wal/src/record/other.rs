//! The remaining record types: tombstones (3), exemplars (4), mmap markers (5), metadata (6).

use super::series::decode_labels;
use super::{DecodeError, RecordType, open, slot};
use crate::labels::Labels;

/// One deleted interval of one series (tombstones record; one entry per series and interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tombstone {
    /// The series ref.
    pub series_ref: u64,
    /// First deleted timestamp, ms (inclusive).
    pub min_t: i64,
    /// Last deleted timestamp, ms (inclusive).
    pub max_t: i64,
}

/// One exemplar: the sample it belongs to and its own labels (e.g. `trace_id`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefExemplar {
    /// The series ref.
    pub series_ref: u64,
    /// Timestamp, ms since the epoch.
    pub t: i64,
    /// The exemplar's value.
    pub v: f64,
    /// The exemplar's labels, sorted by name.
    pub labels: Labels,
}

/// An out-of-order mmap marker (WBL only): the series' OOO samples so far are in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefMmapMarker {
    /// The series ref.
    pub series_ref: u64,
    /// Chunk reference in `chunks_head` (segment << 32 | offset).
    pub mmap_ref: u64,
}

/// A metric type as stored in metadata records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricType {
    /// 0: unknown.
    #[default]
    Unknown,
    /// 1: counter.
    Counter,
    /// 2: gauge.
    Gauge,
    /// 3: histogram.
    Histogram,
    /// 4: gauge histogram.
    GaugeHistogram,
    /// 5: summary.
    Summary,
    /// 6: info.
    Info,
    /// 7: state set.
    Stateset,
    /// A value no Prometheus version defines yet.
    Other(u8),
}

impl MetricType {
    /// The type for its byte.
    pub fn from_byte(b: u8) -> MetricType {
        match b {
            0 => MetricType::Unknown,
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::Stateset,
            other => MetricType::Other(other),
        }
    }

    /// The type's byte.
    pub fn as_byte(self) -> u8 {
        match self {
            MetricType::Unknown => 0,
            MetricType::Counter => 1,
            MetricType::Gauge => 2,
            MetricType::Histogram => 3,
            MetricType::GaugeHistogram => 4,
            MetricType::Summary => 5,
            MetricType::Info => 6,
            MetricType::Stateset => 7,
            MetricType::Other(b) => b,
        }
    }
}

/// Metadata of one series (metadata record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefMetadata {
    /// The series ref (a uvarint in this record type, unlike all others).
    pub series_ref: u64,
    /// The metric type.
    pub metric_type: MetricType,
    /// The `UNIT` field, empty if absent.
    pub unit: String,
    /// The `HELP` field, empty if absent.
    pub help: String,
}

/// Decodes a tombstones record into `out` (cleared first).
pub fn decode_tombstones(record: &[u8], out: &mut Vec<Tombstone>) -> Result<(), DecodeError> {
    out.clear();
    let (_, mut c) = open(record, &[RecordType::Tombstones], "tombstones")?;
    while !c.is_empty() {
        let series_ref = c.be64()?;
        let min_t = c.varint()?;
        let max_t = c.varint()?;
        out.push(Tombstone {
            series_ref,
            min_t,
            max_t,
        });
    }
    Ok(())
}

/// Decodes an exemplars record into `out`, reusing its elements' label vectors; `out` ends with
/// exactly the record's exemplars.
pub fn decode_exemplars(record: &[u8], out: &mut Vec<RefExemplar>) -> Result<(), DecodeError> {
    let (_, mut c) = open(record, &[RecordType::Exemplars], "exemplars")?;
    let mut n = 0;
    if !c.is_empty() {
        let base_ref = c.be64()?;
        let base_t = c.be64_i64()?;
        while !c.is_empty() {
            let e = slot(out, n);
            e.series_ref = base_ref.wrapping_add_signed(c.varint()?);
            e.t = base_t.wrapping_add(c.varint()?);
            e.v = c.be64_f64()?;
            decode_labels(&mut c, &mut e.labels)?;
            n += 1;
        }
    }
    out.truncate(n);
    Ok(())
}

/// Decodes an mmap markers record into `out` (cleared first).
pub fn decode_mmap_markers(record: &[u8], out: &mut Vec<RefMmapMarker>) -> Result<(), DecodeError> {
    out.clear();
    let (_, mut c) = open(record, &[RecordType::MmapMarkers], "mmapmarkers")?;
    while !c.is_empty() {
        let series_ref = c.be64()?;
        let mmap_ref = c.be64()?;
        out.push(RefMmapMarker {
            series_ref,
            mmap_ref,
        });
    }
    Ok(())
}

/// Decodes a metadata record into `out` (cleared first). Fields other than `UNIT` and `HELP`
/// are skipped, as Prometheus does.
pub fn decode_metadata(record: &[u8], out: &mut Vec<RefMetadata>) -> Result<(), DecodeError> {
    out.clear();
    let (_, mut c) = open(record, &[RecordType::Metadata], "metadata")?;
    while !c.is_empty() {
        let series_ref = c.uvarint()?;
        let metric_type = MetricType::from_byte(c.byte()?);
        let fields = c.count(2)?;
        let mut m = RefMetadata {
            series_ref,
            metric_type,
            ..RefMetadata::default()
        };
        for _ in 0..fields {
            let name = c.uvarint_bytes()?;
            let value = c.uvarint_string()?;
            match name {
                b"UNIT" => m.unit = value,
                b"HELP" => m.help = value,
                _ => {}
            }
        }
        out.push(m);
    }
    Ok(())
}
