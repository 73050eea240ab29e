//! Property tests: arbitrary bytes never panic or hang the segment reader or the record
//! decoders, and whatever is encoded is decoded back unchanged.

use std::io::Cursor;
use std::path::PathBuf;

use prometheus_wal::record::encode::{
    encode_exemplars, encode_float_histogram_samples, encode_histogram_samples, encode_metadata,
    encode_samples, encode_samples_v2, encode_series, encode_tombstones,
};
use prometheus_wal::record::{
    CounterResetHint, FloatHistogram, Histogram, MetricType, RefExemplar, RefFloatHistogramSample,
    RefHistogramSample, RefMetadata, RefSampleSt, Span, Tombstone, decode_exemplars,
    decode_float_histogram_samples, decode_histogram_samples, decode_metadata, decode_mmap_markers,
    decode_samples_st, decode_tombstones,
};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{
    Codec, Label, RecordType, RefSample, RefSeries, SegmentReader, decode_samples, decode_series,
};
use proptest::prelude::*;

fn decode_everything(rec: &[u8]) {
    let _ = decode_series(rec, &mut Vec::new());
    let _ = decode_samples(rec, &mut Vec::new());
    let _ = decode_samples_st(rec, &mut Vec::new());
    let _ = decode_tombstones(rec, &mut Vec::new());
    let _ = decode_exemplars(rec, &mut Vec::new());
    let _ = decode_mmap_markers(rec, &mut Vec::new());
    let _ = decode_metadata(rec, &mut Vec::new());
    let _ = decode_histogram_samples(rec, &mut Vec::new());
    let _ = decode_float_histogram_samples(rec, &mut Vec::new());
}

fn label() -> impl Strategy<Value = Label> {
    ("[a-z_]{1,8}", ".{0,12}").prop_map(|(name, value)| Label { name, value })
}

fn labels() -> impl Strategy<Value = Vec<Label>> {
    prop::collection::vec(label(), 0..6).prop_map(|mut l| {
        l.sort_by(|a, b| a.name.cmp(&b.name));
        l
    })
}

fn spans() -> impl Strategy<Value = Vec<Span>> {
    prop::collection::vec((any::<i32>(), any::<u32>()), 0..4).prop_map(|v| {
        v.into_iter()
            .map(|(offset, length)| Span { offset, length })
            .collect()
    })
}

fn hint() -> impl Strategy<Value = CounterResetHint> {
    (0u8..4).prop_map(CounterResetHint::from_byte)
}

fn histogram() -> impl Strategy<Value = Histogram> {
    (
        (
            hint(),
            prop_oneof![-4i32..=8, Just(-53)],
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            spans(),
            spans(),
            prop::collection::vec(any::<i64>(), 0..5),
            prop::collection::vec(any::<i64>(), 0..5),
        ),
        prop::collection::vec(-1e9f64..1e9, 0..4),
    )
        .prop_map(
            |((hint, schema, zc, c, sum_bits), (ps, ns, pd, nd), cv)| Histogram {
                counter_reset_hint: hint,
                schema,
                zero_threshold: 1e-128,
                zero_count: zc,
                count: c,
                sum: f64::from_bits(sum_bits & 0x7fef_ffff_ffff_ffff),
                positive_spans: ps,
                negative_spans: ns,
                positive_deltas: pd,
                negative_deltas: nd,
                custom_values: if schema == -53 { cv } else { Vec::new() },
            },
        )
}

fn float_histogram() -> impl Strategy<Value = FloatHistogram> {
    (histogram(), prop::collection::vec(0f64..1e6, 0..5)).prop_map(|(h, buckets)| FloatHistogram {
        counter_reset_hint: h.counter_reset_hint,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count as f64,
        count: h.count as f64,
        sum: h.sum,
        positive_spans: h.positive_spans,
        negative_spans: h.negative_spans,
        positive_buckets: buckets.clone(),
        negative_buckets: buckets,
        custom_values: h.custom_values,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_segment_bytes_never_panic_or_hang(bytes in prop::collection::vec(any::<u8>(), 0..70_000)) {
        let mut r = SegmentReader::new(Cursor::new(bytes), PathBuf::from("fuzz"));
        let mut calls = 0;
        loop {
            calls += 1;
            prop_assert!(calls < 100_000, "no progress");
            match r.next_record() {
                Ok(Some(rec)) => decode_everything(rec),
                Ok(None) => break,
                Err(e) => prop_assert!(e.is_corruption(), "{}", e),
            }
        }
    }

    #[test]
    fn mutated_segments_never_panic_or_hang(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20_000), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        snappy in any::<bool>(),
    ) {
        let mut w = SegmentWriter::new(Vec::new(), if snappy { Codec::Snappy } else { Codec::None });
        for r in &records {
            w.log(r).unwrap();
        }
        let mut bytes = w.close().unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let mut r = SegmentReader::new(Cursor::new(bytes), PathBuf::from("mutated"));
        let (mut calls, mut ok) = (0, 0);
        loop {
            calls += 1;
            prop_assert!(calls < 100_000, "no progress");
            match r.next_record() {
                Ok(Some(rec)) => {
                    ok += 1;
                    decode_everything(rec);
                }
                Ok(None) => break,
                Err(e) => prop_assert!(e.is_corruption(), "{}", e),
            }
        }
        prop_assert!(ok <= records.len() + 8);
    }

    #[test]
    fn random_record_bytes_never_panic(t in 0u8..16, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut rec = vec![t];
        rec.extend(body);
        decode_everything(&rec);
    }

    #[test]
    fn series_and_samples_round_trip(
        series in prop::collection::vec((any::<u64>(), labels()), 0..8),
        samples in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..40),
    ) {
        let series: Vec<RefSeries> = series.into_iter().map(|(series_ref, labels)| RefSeries { series_ref, labels }).collect();
        let mut rec = Vec::new();
        encode_series(&series, &mut rec);
        let mut out = Vec::new();
        decode_series(&rec, &mut out).unwrap();
        prop_assert_eq!(&out, &series);

        let samples: Vec<RefSample> = samples.iter().map(|&(series_ref, t, v)| RefSample { series_ref, t, v: f64::from_bits(v) }).collect();
        encode_samples(&samples, &mut rec);
        let mut got = Vec::new();
        decode_samples(&rec, &mut got).unwrap();
        prop_assert_eq!(got.len(), samples.len());
        for (g, s) in got.iter().zip(&samples) {
            prop_assert_eq!((g.series_ref, g.t, g.v.to_bits()), (s.series_ref, s.t, s.v.to_bits()));
        }

        let with_st: Vec<RefSampleSt> = samples.iter().enumerate().map(|(i, &sample)| RefSampleSt { sample, st: [0, 5, sample.t][i % 3] }).collect();
        encode_samples_v2(&with_st, &mut rec);
        let mut got = Vec::new();
        decode_samples_st(&rec, &mut got).unwrap();
        prop_assert_eq!(got.len(), with_st.len());
        for (g, s) in got.iter().zip(&with_st) {
            prop_assert_eq!((g.sample.series_ref, g.sample.t, g.sample.v.to_bits(), g.st), (s.sample.series_ref, s.sample.t, s.sample.v.to_bits(), s.st));
        }
    }

    #[test]
    fn histograms_round_trip(
        hs in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>(), histogram()), 0..6),
        fhs in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>(), float_histogram()), 0..6),
    ) {
        for t in [RecordType::HistogramSamples, RecordType::CustomBucketsHistogramSamples, RecordType::HistogramSamplesV2] {
            let v2 = t == RecordType::HistogramSamplesV2;
            let samples: Vec<RefHistogramSample> = hs.iter().cloned()
                .map(|(series_ref, t, st, h)| RefHistogramSample { series_ref, t, st: if v2 { st } else { 0 }, h })
                .collect();
            let mut rec = Vec::new();
            encode_histogram_samples(t, &samples, &mut rec);
            // Decoding into a Vec with stale elements reuses and trims them.
            let mut out = vec![RefHistogramSample::default(); 9];
            decode_histogram_samples(&rec, &mut out).unwrap();
            prop_assert_eq!(&out, &samples);
        }
        for t in [RecordType::FloatHistogramSamples, RecordType::CustomBucketsFloatHistogramSamples, RecordType::FloatHistogramSamplesV2] {
            let v2 = t == RecordType::FloatHistogramSamplesV2;
            let samples: Vec<RefFloatHistogramSample> = fhs.iter().cloned()
                .map(|(series_ref, t, st, fh)| RefFloatHistogramSample { series_ref, t, st: if v2 { st } else { 0 }, fh })
                .collect();
            let mut rec = Vec::new();
            encode_float_histogram_samples(t, &samples, &mut rec);
            let mut out = Vec::new();
            decode_float_histogram_samples(&rec, &mut out).unwrap();
            prop_assert_eq!(&out, &samples);
        }
    }

    #[test]
    fn other_records_round_trip(
        stones in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..10),
        exemplars in prop::collection::vec((any::<u64>(), any::<i64>(), -1e9f64..1e9, labels()), 0..10),
        metadata in prop::collection::vec((any::<u64>(), any::<u8>(), ".{0,10}", ".{0,30}"), 0..10),
    ) {
        let stones: Vec<Tombstone> = stones.into_iter().map(|(series_ref, min_t, max_t)| Tombstone { series_ref, min_t, max_t }).collect();
        let mut rec = Vec::new();
        encode_tombstones(&stones, &mut rec);
        let mut out = Vec::new();
        decode_tombstones(&rec, &mut out).unwrap();
        prop_assert_eq!(&out, &stones);

        let ex: Vec<RefExemplar> = exemplars.into_iter().map(|(series_ref, t, v, labels)| RefExemplar { series_ref, t, v, labels }).collect();
        encode_exemplars(&ex, &mut rec);
        let mut out = vec![RefExemplar::default(); 20];
        decode_exemplars(&rec, &mut out).unwrap();
        prop_assert_eq!(&out, &ex);

        let md: Vec<RefMetadata> = metadata.into_iter().map(|(series_ref, t, unit, help)| RefMetadata { series_ref, metric_type: MetricType::from_byte(t), unit, help }).collect();
        encode_metadata(&md, &mut rec);
        let mut out = Vec::new();
        decode_metadata(&rec, &mut out).unwrap();
        prop_assert_eq!(&out, &md);
    }

    #[test]
    fn written_segments_read_back_through_any_chunking(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40_000), 1..12),
        codec in prop_oneof![Just(Codec::None), Just(Codec::Snappy), Just(Codec::Zstd)],
        step in 1usize..50_000,
    ) {
        let mut w = SegmentWriter::new(Vec::new(), codec);
        for r in &records {
            w.log(r).unwrap();
        }
        let bytes = w.into_inner();
        // Reveal the file `step` bytes at a time, reading after each step.
        let mut r = SegmentReader::new(Cursor::new(Vec::new()), PathBuf::from("chunked"));
        let mut got = Vec::new();
        let mut shown = 0;
        while shown < bytes.len() {
            let next = (shown + step).min(bytes.len());
            // Cursor<Vec<u8>> keeps its position while the vector grows, like a file.
            r_source_extend(&mut r, &bytes[shown..next]);
            shown = next;
            while let Some(rec) = r.next_record().unwrap() {
                got.push(rec.to_vec());
            }
        }
        prop_assert_eq!(got, records);
    }
}

/// Appends bytes to the in-memory "file" behind a reader.
fn r_source_extend(r: &mut SegmentReader<Cursor<Vec<u8>>>, bytes: &[u8]) {
    r.get_mut().get_mut().extend_from_slice(bytes);
}
