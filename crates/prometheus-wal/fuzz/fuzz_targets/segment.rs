//! Arbitrary bytes as a WAL segment file: reading records out of it must never panic, loop or
//! allocate without bound, whatever the framing, lengths, checksums or compression flags say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prometheus_wal::SegmentReader;

fuzz_target!(|data: &[u8]| {
    let mut reader = SegmentReader::new(std::io::Cursor::new(data), "fuzz".into());
    // Each call consumes input or reports the end; the bound only guards against a livelock bug.
    for _ in 0..data.len() + 16 {
        match reader.next_record() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) if e.is_corruption() => {}
            Err(_) => break,
        }
    }
});
