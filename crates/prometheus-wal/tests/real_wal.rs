//! Reading real WAL directories written by Prometheus 2.42 reproduces the numbers of the
//! reference decoder (`walcheck.py --json`, stored in the fixture as `expected/*.json`).

mod common;

use common::{SUMMARY_KEYS, expected, real_wal, summarize};
use prometheus_wal::{RecordSource, WalPosition, list_segments};
use serde_json::Value;

fn check_fixture(name: &str, wal_subdir: &str) {
    let dir = real_wal().join(name).join(wal_subdir);
    let got = summarize(&dir);
    let want = expected(&format!("{name}.{wal_subdir}"));

    let seg_want = &want["segments_summary"];
    for key in SUMMARY_KEYS {
        assert_eq!(
            got["segments"][key], seg_want[*key],
            "{name}: segments_summary.{key}"
        );
    }
    // Per segment file: record count and records by type.
    let files_want: Vec<Value> = seg_want["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| serde_json::json!({"records": f["records"], "by_type": f["by_type"]}))
        .collect();
    assert_eq!(
        got["segments"]["file_records"],
        Value::from(files_want),
        "{name}: files"
    );
    assert_eq!(seg_want["torn_tail_bytes"], 0);
    assert_eq!(seg_want["errors"], serde_json::json!([]));

    match want.get("checkpoint_index") {
        Some(idx) => {
            assert_eq!(got["checkpoint"]["index"], *idx, "{name}: checkpoint index");
            let cp_name = format!("checkpoint.{:08}", idx.as_u64().unwrap());
            for key in SUMMARY_KEYS {
                assert_eq!(
                    got["checkpoint"]["summary"][key], want[&cp_name][*key],
                    "{name}: {cp_name}.{key}"
                );
            }
            assert_eq!(got["follow_stats"]["checkpoints_read"], 1);
        }
        None => assert_eq!(got["checkpoint"], Value::Null, "{name}: no checkpoint"),
    }
    for key in [
        "distinct_series_total",
        "distinct_label_sets",
        "label_sets_with_multiple_refs",
    ] {
        assert_eq!(got[key], want[key], "{name}: {key}");
    }
    assert_eq!(got["follow_stats"]["corruptions_skipped"], 0, "{name}");
    assert_eq!(got["follow_stats"]["torn_tails"], 0, "{name}");
    assert_eq!(got["follow_stats"]["truncation_restarts"], 0, "{name}");
}

#[test]
fn a_snappy_5m_blocks_matches_walcheck() {
    check_fixture("A-snappy-5m-blocks", "wal");
}

#[test]
fn a_live_snapshot_ending_mid_page_matches_walcheck() {
    check_fixture("A-snappy-live-snapshot", "wal");
}

#[test]
fn b_uncompressed_matches_walcheck() {
    check_fixture("B-uncompressed-1m-blocks", "wal");
}

#[test]
fn c_restart_with_middle_fragments_matches_walcheck() {
    check_fixture("C-restart-10MiB-segments", "wal");
}

#[test]
fn d_exact_counts_match_prometheus_own_counters() {
    check_fixture("D-exact-counts", "wal");
    // The numbers Prometheus itself reported (head_samples_appended_total etc.).
    let got = summarize(&real_wal().join("D-exact-counts/wal"));
    let e = &got["segments"]["entries"];
    assert_eq!(e["float_samples"], 41405);
    assert_eq!(
        e["histogram_samples"].as_u64().unwrap() + e["float_histogram_samples"].as_u64().unwrap(),
        134
    );
    assert_eq!(e["series"], 924);
    assert_eq!(e["exemplars"], 90);
    assert_eq!(got["segments"]["out_of_order_float_samples"], 22);
    assert_eq!(got["segments"]["stale_markers"], 4);
    assert_eq!(got["segments"]["histogram_stale_markers"], 1);
}

#[test]
fn write_behind_log_with_mmap_markers_matches_walcheck() {
    check_fixture("A-snappy-5m-blocks", "wbl");
}

#[test]
fn positions_increase_and_end_at_the_segment_sizes() {
    let dir = real_wal().join("A-snappy-5m-blocks/wal");
    let recs = common::read_all(&dir);
    let cp: Vec<_> = recs
        .iter()
        .take_while(|r| matches!(r.source, RecordSource::Checkpoint(_)))
        .collect();
    assert_eq!(cp.len(), 22);
    assert!(
        cp.iter()
            .all(|r| r.position == WalPosition::after_checkpoint(3))
    );
    for w in recs.windows(2) {
        assert!(
            w[0].position < w[1].position
                || w[0].source == w[1].source && w[0].position == w[1].position
        );
    }
    // The last record of each closed segment ends where the padding of its last page starts,
    // so the page-aligned file size is the position rounded up to 32 KiB.
    for seg in list_segments(&dir).unwrap() {
        let last = recs
            .iter()
            .rev()
            .find(|r| r.source == RecordSource::Segment(seg.index))
            .unwrap();
        let size = std::fs::metadata(&seg.path).unwrap().len();
        assert_eq!(
            last.position.offset.div_ceil(32768) * 32768,
            size,
            "segment {}",
            seg.index
        );
    }
}

#[test]
fn first_records_decode_to_the_values_walcheck_dumped() {
    use prometheus_wal::record::{
        CounterResetHint, Span, decode_exemplars, decode_float_histogram_samples,
        decode_histogram_samples,
    };
    use prometheus_wal::{Label, RecordType, decode_samples, decode_series, record_type};

    let recs = common::read_all(&real_wal().join("A-snappy-5m-blocks/wal"));
    let first = |source: fn(RecordSource) -> bool, t: RecordType| {
        recs.iter()
            .find(|r| source(r.source) && record_type(&r.data) == t)
            .unwrap()
            .data
            .as_slice()
    };
    let seg = |s: RecordSource| matches!(s, RecordSource::Segment(_));
    let cp = |s: RecordSource| matches!(s, RecordSource::Checkpoint(3));
    let spans = vec![
        Span {
            offset: -2,
            length: 2,
        },
        Span {
            offset: 1,
            length: 2,
        },
    ];
    let l = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };

    let mut series = Vec::new();
    decode_series(first(cp, RecordType::Series), &mut series).unwrap();
    assert_eq!(series[0].series_ref, 1);
    assert_eq!(
        series[0].labels,
        vec![
            l("__name__", "walstudy_requests_total"),
            l("instance", "127.0.0.1:9101"),
            l("job", "walstudy"),
            l("path", "/a"),
        ]
    );
    decode_series(first(seg, RecordType::Series), &mut series).unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].series_ref, 1321);
    assert_eq!(series[0].labels[1], l("generation", "11"));

    let mut samples = Vec::new();
    decode_samples(first(seg, RecordType::Samples), &mut samples).unwrap();
    assert_eq!(
        (samples[0].series_ref, samples[0].t, samples[0].v),
        (924, 1795588650499, 1.1016202291370076)
    );

    let mut hs = Vec::new();
    decode_histogram_samples(first(seg, RecordType::HistogramSamples), &mut hs).unwrap();
    let h = &hs[0];
    assert_eq!((h.series_ref, h.t, h.st), (3, 1795588651350, 0));
    assert_eq!(h.h.counter_reset_hint, CounterResetHint::Unknown);
    assert_eq!((h.h.schema, h.h.zero_threshold), (3, 1e-128));
    assert_eq!((h.h.zero_count, h.h.count, h.h.sum), (251, 16580, 2039.34));
    assert_eq!(h.h.positive_spans, spans);
    assert!(h.h.negative_spans.is_empty() && h.h.negative_deltas.is_empty());
    assert_eq!(h.h.positive_deltas, vec![2512, 2512, 2513, -6281]);

    let mut fhs = Vec::new();
    decode_float_histogram_samples(first(seg, RecordType::FloatHistogramSamples), &mut fhs)
        .unwrap();
    let f = &fhs[0];
    assert_eq!((f.series_ref, f.t), (892, 1795588650499));
    assert_eq!(f.fh.counter_reset_hint, CounterResetHint::Gauge);
    assert_eq!((f.fh.schema, f.fh.zero_threshold), (3, 1e-128));
    assert_eq!(
        (f.fh.zero_count, f.fh.count, f.fh.sum),
        (0.18645647936265786, 13.068904144419019, 1.6074752097635407)
    );
    assert_eq!(f.fh.positive_spans, spans);
    assert_eq!(
        f.fh.positive_buckets,
        vec![
            1.9832189168573608,
            3.9664378337147217,
            5.949656750572083,
            0.983134163912196
        ]
    );

    let mut ex = Vec::new();
    decode_exemplars(first(seg, RecordType::Exemplars), &mut ex).unwrap();
    assert_eq!(
        (ex[0].series_ref, ex[0].t, ex[0].v),
        (1, 1795588651358, 0.7)
    );
    assert_eq!(ex[0].labels, vec![l("trace_id", "00000000012f8930")]);
    assert_eq!((ex[1].series_ref, ex[1].v), (3, 0.2));
    assert_eq!(ex[1].labels, vec![l("trace_id", "h000009d0")]);
}
