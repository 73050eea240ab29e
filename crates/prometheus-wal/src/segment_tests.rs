use std::io::Cursor;

use super::*;
use crate::writer::SegmentWriter;

fn reader(bytes: Vec<u8>) -> SegmentReader<Cursor<Vec<u8>>> {
    SegmentReader::new(Cursor::new(bytes), PathBuf::from("seg"))
}

fn records_of(r: &mut SegmentReader<impl Read>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec.to_vec());
    }
    out
}

/// Reads to the end, collecting records and counting (recoverable) errors.
fn records_and_errors(r: &mut SegmentReader<impl Read>) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut errors = 0;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => out.push(rec.to_vec()),
            Ok(None) => return (out, errors),
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                errors += 1;
            }
        }
    }
}

fn write(records: &[Vec<u8>], codec: Codec, close: bool) -> Vec<u8> {
    let mut w = SegmentWriter::new(Vec::new(), codec);
    for r in records {
        w.log(r).unwrap();
    }
    if close {
        w.close().unwrap()
    } else {
        w.into_inner()
    }
}

fn sample_records() -> Vec<Vec<u8>> {
    // Small, page-spanning (first/last) and multi-page (middle) records, compressible and not.
    let mut recs = vec![vec![2u8; 10], Vec::new(), vec![1u8; 40_000]];
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    recs.push(noise);
    recs.push(vec![3u8; PAGE_SIZE - 2 * FRAGMENT_HEADER_SIZE]);
    recs.push(b"tail".to_vec());
    recs
}

#[test]
fn reads_back_every_record_for_each_codec() {
    for codec in [Codec::None, Codec::Snappy, Codec::Zstd] {
        let recs = sample_records();
        let bytes = write(&recs, codec, true);
        assert_eq!(bytes.len() % PAGE_SIZE, 0, "closed segment is page aligned");
        let mut r = reader(bytes.clone());
        assert_eq!(records_of(&mut r), recs, "{codec:?}");
        assert_eq!(r.offset(), bytes.len() as u64);
        assert_eq!(r.pending_bytes(), 0);
    }
}

#[test]
fn incomplete_data_is_pending_not_an_error_at_every_cut() {
    let recs = sample_records();
    let bytes = write(&recs, Codec::Snappy, false);
    // Cut everywhere near fragment and page boundaries, and at a stride elsewhere.
    let mut cuts: Vec<usize> = (0..bytes.len()).step_by(997).collect();
    for page in 0..=bytes.len() / PAGE_SIZE {
        for d in 0..16 {
            cuts.push((page * PAGE_SIZE + d).saturating_sub(8));
        }
    }
    for cut in cuts.into_iter().filter(|&c| c <= bytes.len()) {
        let mut r = reader(bytes[..cut].to_vec());
        let got = records_of(&mut r);
        assert!(got.len() <= recs.len());
        assert_eq!(got[..], recs[..got.len()], "cut {cut}");
        assert_eq!(r.offset() + r.pending_bytes(), cut as u64, "cut {cut}");
    }
}

#[test]
fn padding_is_skipped_to_the_absolute_page_boundary() {
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"one").unwrap();
    let mut bytes = w.close().unwrap();
    assert_eq!(bytes.len(), PAGE_SIZE);
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"two").unwrap();
    bytes.extend(w.close().unwrap());
    let mut r = reader(bytes);
    assert_eq!(records_of(&mut r), vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(r.offset(), 2 * PAGE_SIZE as u64);
}

#[test]
fn zero_bytes_at_eof_are_not_padding_until_the_page_is_complete() {
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"one").unwrap();
    let mut bytes = w.into_inner();
    let end = bytes.len();
    bytes.extend_from_slice(&[0u8; 100]);
    let mut r = reader(bytes);
    assert_eq!(records_of(&mut r), vec![b"one".to_vec()]);
    assert_eq!(r.offset(), end as u64);
    assert_eq!(r.pending_bytes(), 100);
}

#[test]
fn crc_mismatch_skips_the_record_and_reading_goes_on() {
    let recs = vec![
        b"first record".to_vec(),
        b"second record".to_vec(),
        b"third".to_vec(),
    ];
    let mut bytes = write(&recs, Codec::None, true);
    let second_data = 7 + 12 + 7;
    bytes[second_data + 3] ^= 0xff;
    let mut r = reader(bytes);
    assert_eq!(r.next_record().unwrap().unwrap(), b"first record");
    let err = r.next_record().unwrap_err();
    match &err {
        WalError::Corrupt {
            offset,
            kind: Corruption::Checksum { .. },
            ..
        } => assert_eq!(*offset, 19),
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("seg") && err.to_string().contains("offset 19"),
        "{err}"
    );
    assert_eq!(r.next_record().unwrap().unwrap(), b"third");
}

#[test]
fn corrupt_fragment_of_a_multi_page_record_drops_only_that_record() {
    let big = vec![7u8; 50_000];
    let recs = vec![big, b"after".to_vec()];
    let mut bytes = write(&recs, Codec::None, true);
    bytes[100] ^= 1; // inside the first fragment
    let mut r = reader(bytes);
    let (got, errors) = records_and_errors(&mut r);
    assert_eq!(got, vec![b"after".to_vec()]);
    assert_eq!(errors, 2, "checksum, then the orphaned last fragment");
}

#[test]
fn lost_framing_skips_to_the_next_page() {
    let recs: Vec<Vec<u8>> = (0..5000u32).map(|i| i.to_be_bytes().repeat(3)).collect();
    let mut bytes = write(&recs, Codec::None, true);
    assert!(bytes.len() > 2 * PAGE_SIZE);
    // An invalid type byte at the start of the second fragment of page 0.
    bytes[19] = 0x07;
    let mut r = reader(bytes.clone());
    assert_eq!(r.next_record().unwrap().unwrap(), recs[0]);
    let err = r.next_record().unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                offset: 19,
                kind: Corruption::InvalidFragmentType(7),
                ..
            }
        ),
        "{err}"
    );
    // Page 1 starts with the orphaned last fragment of a record split over pages 0 and 1.
    let (rest, errors) = records_and_errors(&mut r);
    assert_eq!(errors, 1);
    // Everything from page 1 on is back.
    let first_of_page1 = recs.iter().position(|x| *x == rest[0]).unwrap();
    assert_eq!(rest[..], recs[first_of_page1..]);
    assert!(first_of_page1 > 1000);

    // A length running past the page end loses framing the same way.
    let mut bytes2 = bytes;
    bytes2[19] = 0x01;
    bytes2[20] = 0xff;
    let mut r = reader(bytes2);
    r.next_record().unwrap();
    assert!(matches!(
        r.next_record().unwrap_err(),
        WalError::Corrupt {
            kind: Corruption::FragmentSpansPage { .. },
            ..
        }
    ));
    assert_eq!(records_and_errors(&mut r), (rest, 1));
}

#[test]
fn fragment_sequence_errors_are_reported_and_recovered() {
    // first, then full (the first can never complete), then an orphan last.
    let frag = |t: u8, data: &[u8]| {
        let mut f = vec![t];
        f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        f.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
        f.extend_from_slice(data);
        f
    };
    let mut bytes = frag(2, b"abc");
    bytes.extend(frag(1, b"whole"));
    bytes.extend(frag(4, b"orphan"));
    bytes.extend(frag(3, b"orphan-middle"));
    bytes.extend(frag(1, b"end"));
    let mut r = reader(bytes);
    let e = r.next_record().unwrap_err();
    assert!(
        matches!(
            e,
            WalError::Corrupt {
                offset: 0,
                kind: Corruption::FragmentSequence { found: "full", .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(r.next_record().unwrap().unwrap(), b"whole");
    assert!(matches!(
        r.next_record().unwrap_err(),
        WalError::Corrupt {
            kind: Corruption::FragmentSequence { found: "last", .. },
            ..
        }
    ));
    assert!(matches!(
        r.next_record().unwrap_err(),
        WalError::Corrupt {
            kind: Corruption::FragmentSequence {
                found: "middle",
                ..
            },
            ..
        }
    ));
    assert_eq!(r.next_record().unwrap().unwrap(), b"end");
}

#[test]
fn non_zero_padding_is_corruption() {
    let mut bytes = write(&[b"x".to_vec()], Codec::None, true);
    bytes[PAGE_SIZE - 1] = 1;
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"y").unwrap();
    bytes.extend(w.close().unwrap());
    let mut r = reader(bytes);
    assert_eq!(r.next_record().unwrap().unwrap(), b"x");
    assert!(matches!(
        r.next_record().unwrap_err(),
        WalError::Corrupt {
            kind: Corruption::NonZeroPadding,
            ..
        }
    ));
    assert_eq!(r.next_record().unwrap().unwrap(), b"y");
}

#[test]
fn undecompressable_record_is_corruption_and_skipped() {
    let mut bytes = Vec::new();
    let data = [0xff, 0xff, 0xff, 0x7f, 0x00];
    bytes.push(0x09);
    bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
    bytes.extend_from_slice(&data);
    bytes.extend(write(&[b"ok".to_vec()], Codec::None, false));
    let mut r = reader(bytes);
    assert!(matches!(
        r.next_record().unwrap_err(),
        WalError::Corrupt {
            kind: Corruption::Decompress { .. },
            ..
        }
    ));
    assert_eq!(r.next_record().unwrap().unwrap(), b"ok");
}

#[test]
fn a_growing_file_yields_each_record_exactly_once() {
    // Feed the reader through a source that reveals a few more bytes per call.
    struct Trickle {
        data: Vec<u8>,
        visible: usize,
        pos: usize,
    }
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.visible - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    let recs = sample_records();
    let data = write(&recs, Codec::Snappy, true);
    let len = data.len();
    let mut r = SegmentReader::new(
        Trickle {
            data,
            visible: 0,
            pos: 0,
        },
        PathBuf::from("live"),
    );
    let mut got = Vec::new();
    let mut step = 1;
    while r.src.visible < len {
        r.src.visible = (r.src.visible + step).min(len);
        step = step * 7 % 4093 + 1;
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec.to_vec());
        }
    }
    assert_eq!(got, recs);
}
