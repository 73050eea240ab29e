//! Arbitrary bytes as a record payload: every decoder must return a value or an error, never
//! panic or allocate more than the input can describe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prometheus_wal::record::{
    decode_exemplars, decode_float_histogram_samples, decode_histogram_samples, decode_metadata,
    decode_mmap_markers, decode_samples_st, decode_tombstones,
};
use prometheus_wal::{decode_samples, decode_series, record_type};

fuzz_target!(|data: &[u8]| {
    let _ = record_type(data);
    let _ = decode_series(data, &mut Vec::new());
    let _ = decode_samples(data, &mut Vec::new());
    let _ = decode_samples_st(data, &mut Vec::new());
    let _ = decode_tombstones(data, &mut Vec::new());
    let _ = decode_exemplars(data, &mut Vec::new());
    let _ = decode_mmap_markers(data, &mut Vec::new());
    let _ = decode_metadata(data, &mut Vec::new());
    let _ = decode_histogram_samples(data, &mut Vec::new());
    let _ = decode_float_histogram_samples(data, &mut Vec::new());
});
