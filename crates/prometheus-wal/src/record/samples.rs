//! Float sample records: V1 (type 2) and V2 with start timestamps (type 11); and the per-entry
//! ref/timestamp framing that histogram records share.
//!
//! V1: `base_ref be64, base_t be64`, then per entry `dref varint, dt varint, value be64`, both
//! deltas against the *first* entry. V2: first entry `ref varint, t varint, st varint`, later
//! entries `dref varint` (against the *previous* ref), `dt varint` (against the first t) and a
//! start-timestamp marker byte (0: none, 1: same as previous, 2: varint delta to the first st).

use super::cursor::Cursor;
use super::{DecodeError, DecodeErrorKind, RecordType, open};

/// One float sample: series ref, timestamp (ms since the epoch), value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RefSample {
    /// The series ref from a series record.
    pub series_ref: u64,
    /// Timestamp, milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; may be [`STALE_NAN_BITS`](super::STALE_NAN_BITS).
    pub v: f64,
}

/// A float sample with its start timestamp (V2 records; 0 = none, and always 0 from V1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RefSampleSt {
    /// The sample.
    pub sample: RefSample,
    /// Start (created) timestamp in ms, 0 when not known.
    pub st: i64,
}

/// Start-timestamp markers of V2 records.
const ST_NONE: u8 = 0;
const ST_SAME: u8 = 1;
const ST_EXPLICIT: u8 = 2;

/// Reads the ref/timestamp framing of sample-like records, entry by entry.
pub(crate) struct Framing {
    v2: bool,
    entries: usize,
    first_ref: u64,
    first_t: i64,
    first_st: i64,
    prev_ref: u64,
    prev_st: i64,
}

impl Framing {
    /// Starts reading entries; for V1 reads the base ref and time (if there are any entries).
    pub(crate) fn start(c: &mut Cursor<'_>, v2: bool) -> Result<Framing, DecodeError> {
        let mut f = Framing {
            v2,
            entries: 0,
            first_ref: 0,
            first_t: 0,
            first_st: 0,
            prev_ref: 0,
            prev_st: 0,
        };
        if !v2 && !c.is_empty() {
            f.first_ref = c.be64()?;
            f.first_t = c.be64_i64()?;
        }
        Ok(f)
    }

    /// Reads the next entry's (ref, t, st); the caller then reads the entry's value.
    pub(crate) fn next(&mut self, c: &mut Cursor<'_>) -> Result<(u64, i64, i64), DecodeError> {
        let entry = if !self.v2 {
            let r = self.first_ref.wrapping_add_signed(c.varint()?);
            let t = self.first_t.wrapping_add(c.varint()?);
            (r, t, 0)
        } else if self.entries == 0 {
            self.first_ref = c.varint()? as u64;
            self.first_t = c.varint()?;
            self.first_st = c.varint()?;
            (self.first_ref, self.first_t, self.first_st)
        } else {
            let r = self.prev_ref.wrapping_add_signed(c.varint()?);
            let t = self.first_t.wrapping_add(c.varint()?);
            let st = match c.byte()? {
                ST_NONE => 0,
                ST_SAME => self.prev_st,
                ST_EXPLICIT => self.first_st.wrapping_add(c.varint()?),
                other => {
                    return Err(c.error(DecodeErrorKind::OutOfRange {
                        field: "start timestamp marker",
                        value: i64::from(other),
                    }));
                }
            };
            (r, t, st)
        };
        self.entries += 1;
        self.prev_ref = entry.0;
        self.prev_st = entry.2;
        Ok(entry)
    }
}

/// Decodes a samples record (V1, or V2 dropping start timestamps) into `out` (cleared first).
pub fn decode_samples(record: &[u8], out: &mut Vec<RefSample>) -> Result<(), DecodeError> {
    out.clear();
    decode(record, |sample, _| out.push(sample))
}

/// Decodes a samples record (V1 or V2) with start timestamps into `out` (cleared first).
pub fn decode_samples_st(record: &[u8], out: &mut Vec<RefSampleSt>) -> Result<(), DecodeError> {
    out.clear();
    decode(record, |sample, st| out.push(RefSampleSt { sample, st }))
}

fn decode(record: &[u8], mut emit: impl FnMut(RefSample, i64)) -> Result<(), DecodeError> {
    let (t, mut c) = open(
        record,
        &[RecordType::Samples, RecordType::SamplesV2],
        "samples",
    )?;
    let mut framing = Framing::start(&mut c, t == RecordType::SamplesV2)?;
    while !c.is_empty() {
        let (series_ref, t, st) = framing.next(&mut c)?;
        let v = c.be64_f64()?;
        emit(RefSample { series_ref, t, v }, st);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode::{encode_samples, encode_samples_v2};
    use crate::record::{STALE_NAN_BITS, is_stale_marker};

    fn s(series_ref: u64, t: i64, v: f64) -> RefSample {
        RefSample { series_ref, t, v }
    }

    #[test]
    fn v1_negative_deltas_decode() {
        // Refs and times below the first sample's: deltas are negative zigzag varints.
        let samples = vec![
            s(100, 1_000, 1.5),
            s(3, 970, -2.0),
            s(101, 1_000, f64::from_bits(STALE_NAN_BITS)),
        ];
        let mut rec = Vec::new();
        encode_samples(&samples, &mut rec);
        let mut out = Vec::new();
        decode_samples(&rec, &mut out).unwrap();
        assert_eq!(out[..2], samples[..2]);
        assert!(is_stale_marker(out[2].v));
    }

    #[test]
    fn v1_by_hand_matches_go_layout() {
        let mut rec = vec![2u8];
        rec.extend_from_slice(&10u64.to_be_bytes());
        rec.extend_from_slice(&5000i64.to_be_bytes());
        rec.extend_from_slice(&[0x00, 0x00]);
        rec.extend_from_slice(&1.0f64.to_bits().to_be_bytes());
        rec.extend_from_slice(&[0x03, 0x01]); // dref -2, dt -1
        rec.extend_from_slice(&2.0f64.to_bits().to_be_bytes());
        let mut out = Vec::new();
        decode_samples(&rec, &mut out).unwrap();
        assert_eq!(out, vec![s(10, 5000, 1.0), s(8, 4999, 2.0)]);
    }

    #[test]
    fn empty_record_has_no_samples() {
        let mut out = vec![s(1, 1, 1.0)];
        decode_samples(&[2], &mut out).unwrap();
        assert!(out.is_empty());
        decode_samples(&[11], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn v2_start_timestamps_round_trip() {
        let samples = vec![
            RefSampleSt {
                sample: s(5, 10_000, 1.0),
                st: 9_000,
            },
            RefSampleSt {
                sample: s(2, 10_005, 2.0),
                st: 9_000,
            },
            RefSampleSt {
                sample: s(9, 9_990, 3.0),
                st: 0,
            },
            RefSampleSt {
                sample: s(9, 10_020, 4.0),
                st: 8_000,
            },
        ];
        let mut rec = Vec::new();
        encode_samples_v2(&samples, &mut rec);
        let mut out = Vec::new();
        decode_samples_st(&rec, &mut out).unwrap();
        assert_eq!(out, samples);
        let mut plain = Vec::new();
        decode_samples(&rec, &mut plain).unwrap();
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[2], s(9, 9_990, 3.0));
    }

    #[test]
    fn truncated_records_are_errors() {
        let samples = vec![s(1, 1, 1.0), s(2, 2, 2.0)];
        let mut rec = Vec::new();
        encode_samples(&samples, &mut rec);
        let mut out = Vec::new();
        // 17 = type + base (16), no entries; 27 = one whole entry (1 + 1 + 8): both valid.
        for cut in (2..rec.len()).filter(|&cut| cut != 17 && cut != 27) {
            assert!(
                decode_samples(&rec[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        // Bad V2 start-timestamp marker in the second entry.
        let mut rec = vec![11u8, 2, 2, 0];
        rec.extend_from_slice(&[0; 8]);
        rec.extend_from_slice(&[0, 0, 9]);
        rec.extend_from_slice(&[0; 8]);
        let e = decode_samples(&rec, &mut out).unwrap_err();
        assert!(
            matches!(e.kind, DecodeErrorKind::OutOfRange { value: 9, .. }),
            "{e}"
        );
        assert_eq!(e.offset, 15);
    }
}
