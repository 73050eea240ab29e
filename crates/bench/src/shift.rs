//! Moving a recorded WAL forward in time: every timed record re-encoded with its times later by
//! a shift, so that an old recording stays inside the API's 25-hour window. Float samples (V1 and
//! V2 with start times), native and custom-bucket histograms (integer and float, V1 and V2),
//! exemplars and tombstones move; series, metadata and mmap markers have no times.
//!
//! Must never change anything but times (a start time of 0 means "none" and stays 0).

use prometheus_wal::record::encode::{
    encode_exemplars, encode_float_histogram_samples, encode_histogram_samples, encode_samples,
    encode_samples_v2, encode_tombstones,
};
use prometheus_wal::record::{
    RecordType, decode_exemplars, decode_float_histogram_samples, decode_histogram_samples,
    decode_samples, decode_samples_st, decode_tombstones, record_type,
};

/// A start time moved with the sample, unless it is 0 (none).
fn shifted_st(st: i64, shift_ms: i64) -> i64 {
    if st == 0 { 0 } else { st + shift_ms }
}

/// The record `data` with its times `shift_ms` later, written into `out`; `false` (and `out`
/// untouched) for a record without times, which is copied as it is.
pub fn shift_record(data: &[u8], shift_ms: i64, out: &mut Vec<u8>) -> anyhow::Result<bool> {
    out.clear();
    let t = record_type(data);
    match t {
        RecordType::Samples => {
            let mut v = Vec::new();
            decode_samples(data, &mut v)?;
            v.iter_mut().for_each(|s| s.t += shift_ms);
            encode_samples(&v, out);
        }
        RecordType::SamplesV2 => {
            let mut v = Vec::new();
            decode_samples_st(data, &mut v)?;
            for s in &mut v {
                s.sample.t += shift_ms;
                s.st = shifted_st(s.st, shift_ms);
            }
            encode_samples_v2(&v, out);
        }
        RecordType::HistogramSamples
        | RecordType::CustomBucketsHistogramSamples
        | RecordType::HistogramSamplesV2 => {
            let mut v = Vec::new();
            decode_histogram_samples(data, &mut v)?;
            for s in &mut v {
                s.t += shift_ms;
                s.st = shifted_st(s.st, shift_ms);
            }
            encode_histogram_samples(t, &v, out);
        }
        RecordType::FloatHistogramSamples
        | RecordType::CustomBucketsFloatHistogramSamples
        | RecordType::FloatHistogramSamplesV2 => {
            let mut v = Vec::new();
            decode_float_histogram_samples(data, &mut v)?;
            for s in &mut v {
                s.t += shift_ms;
                s.st = shifted_st(s.st, shift_ms);
            }
            encode_float_histogram_samples(t, &v, out);
        }
        RecordType::Exemplars => {
            let mut v = Vec::new();
            decode_exemplars(data, &mut v)?;
            v.iter_mut().for_each(|e| e.t += shift_ms);
            encode_exemplars(&v, out);
        }
        RecordType::Tombstones => {
            let mut v = Vec::new();
            decode_tombstones(data, &mut v)?;
            for s in &mut v {
                s.min_t = s.min_t.saturating_add(shift_ms);
                s.max_t = s.max_t.saturating_add(shift_ms);
            }
            encode_tombstones(&v, out);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_wal::record::{
        FloatHistogram, Histogram, RefExemplar, RefFloatHistogramSample, RefHistogramSample,
        RefSampleSt, Tombstone,
    };
    use prometheus_wal::{Label, RefSample};

    const SHIFT: i64 = 86_400_000;

    fn shift(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(shift_record(data, SHIFT, &mut out).unwrap(), "not moved");
        out
    }

    #[test]
    fn every_timed_record_moves_and_nothing_else_changes() {
        let mut buf = Vec::new();
        let sample = |t| RefSample {
            series_ref: 3,
            t,
            v: 1.5,
        };
        encode_samples(&[sample(1000), sample(2000)], &mut buf);
        let mut got = Vec::new();
        decode_samples(&shift(&buf), &mut got).unwrap();
        assert_eq!(got, [sample(1000 + SHIFT), sample(2000 + SHIFT)]);

        buf.clear();
        let st = |t, st| RefSampleSt {
            sample: sample(t),
            st,
        };
        encode_samples_v2(&[st(1000, 500), st(2000, 0)], &mut buf);
        let mut got = Vec::new();
        decode_samples_st(&shift(&buf), &mut got).unwrap();
        assert_eq!(got, [st(1000 + SHIFT, 500 + SHIFT), st(2000 + SHIFT, 0)]);

        for t in [
            RecordType::HistogramSamples,
            RecordType::CustomBucketsHistogramSamples,
            RecordType::HistogramSamplesV2,
        ] {
            let h = |t, st| RefHistogramSample {
                series_ref: 4,
                t,
                st,
                h: Histogram {
                    count: 3,
                    schema: 2,
                    ..Histogram::default()
                },
            };
            let v2 = t == RecordType::HistogramSamplesV2;
            let st0 = if v2 { 700 } else { 0 };
            buf.clear();
            encode_histogram_samples(t, &[h(1000, st0)], &mut buf);
            let mut got = Vec::new();
            decode_histogram_samples(&shift(&buf), &mut got).unwrap();
            assert_eq!(got, [h(1000 + SHIFT, shifted_st(st0, SHIFT))], "{t}");
            assert_eq!(record_type(&shift(&buf)), t);
        }

        buf.clear();
        let f = |t| RefFloatHistogramSample {
            series_ref: 5,
            t,
            st: 0,
            fh: FloatHistogram {
                count: 2.0,
                ..FloatHistogram::default()
            },
        };
        encode_float_histogram_samples(RecordType::FloatHistogramSamples, &[f(9)], &mut buf);
        let mut got = Vec::new();
        decode_float_histogram_samples(&shift(&buf), &mut got).unwrap();
        assert_eq!(got, [f(9 + SHIFT)]);

        buf.clear();
        let e = |t| RefExemplar {
            series_ref: 6,
            t,
            v: 0.25,
            labels: vec![Label {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
        };
        encode_exemplars(&[e(42)], &mut buf);
        let mut got = Vec::new();
        decode_exemplars(&shift(&buf), &mut got).unwrap();
        assert_eq!(got, [e(42 + SHIFT)]);

        buf.clear();
        let stone = Tombstone {
            series_ref: 1,
            min_t: 10,
            max_t: i64::MAX,
        };
        encode_tombstones(&[stone], &mut buf);
        let mut got = Vec::new();
        decode_tombstones(&shift(&buf), &mut got).unwrap();
        assert_eq!((got[0].min_t, got[0].max_t), (10 + SHIFT, i64::MAX));
    }

    #[test]
    fn records_without_times_are_left_alone() {
        let mut buf = Vec::new();
        prometheus_wal::record::encode::encode_series(&[], &mut buf);
        let mut out = Vec::new();
        assert!(!shift_record(&buf, SHIFT, &mut out).unwrap());
    }
}
