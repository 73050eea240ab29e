use std::fs::{self, OpenOptions};
use std::io::Write;

use super::*;
use crate::compression::Codec;
use crate::writer::SegmentWriter;

fn opts() -> FollowOptions {
    FollowOptions {
        poll_interval: Duration::from_millis(5),
        ..FollowOptions::default()
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn follower_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Follower>();
}

#[test]
fn bytes_appended_just_before_the_next_segment_appears_are_not_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let seg0 = tmp.path().join("00000000");
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"A").unwrap();
    let first_len = w.get_ref().len();
    w.log(b"B").unwrap();
    let bytes = w.into_inner();
    fs::write(&seg0, &bytes[..first_len]).unwrap();

    let mut f = Follower::open(tmp.path(), opts()).unwrap();
    assert_eq!(f.next_record().unwrap().unwrap().data, b"A");
    // Exactly in the window between end-of-file and listing: the writer finishes segment 0
    // and starts segment 1, as Prometheus does on rotation.
    let (seg0_c, rest, seg1) = (
        seg0.clone(),
        bytes[first_len..].to_vec(),
        tmp.path().join("00000001"),
    );
    let mut fired = false;
    f.before_listing = Some(Box::new(move || {
        if !fired {
            fired = true;
            append(&seg0_c, &rest);
            let mut w = SegmentWriter::new(Vec::new(), Codec::None);
            w.log(b"C").unwrap();
            fs::write(&seg1, w.into_inner()).unwrap();
        }
    }));
    let b = f.next_record().unwrap().unwrap();
    assert_eq!((b.data, b.source), (&b"B"[..], RecordSource::Segment(0)));
    let c = f.next_record().unwrap().unwrap();
    assert_eq!((c.data, c.source), (&b"C"[..], RecordSource::Segment(1)));
    assert_eq!(
        f.position(),
        WalPosition {
            segment: 1,
            offset: 8
        }
    );
    assert_eq!(f.stats().torn_tails, 0);
}

#[test]
fn stop_ends_a_waiting_follower() {
    let tmp = tempfile::tempdir().unwrap();
    let o = opts();
    let stop = o.stop.clone();
    let dir = tmp.path().to_path_buf();
    let t = std::thread::spawn(move || {
        let mut f = Follower::open(&dir, o).unwrap();
        f.next_record().unwrap().is_none()
    });
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    assert!(t.join().unwrap(), "returned None after stop");
}

#[test]
fn waits_for_the_first_segment_and_the_first_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let t = std::thread::spawn(move || {
        let mut f = Follower::open(&dir, opts()).unwrap();
        let r = f.next_record().unwrap().unwrap();
        (r.data.to_vec(), r.position)
    });
    std::thread::sleep(Duration::from_millis(30));
    fs::write(tmp.path().join("00000003"), b"").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mut w = SegmentWriter::new(Vec::new(), Codec::Snappy);
    w.log(&[9u8; 100]).unwrap();
    append(&tmp.path().join("00000003"), &w.into_inner());
    let (data, pos) = t.join().unwrap();
    assert_eq!(data, vec![9u8; 100]);
    assert_eq!(pos.segment, 3);
}

#[test]
fn open_fails_naming_a_missing_directory() {
    let err = Follower::open("/no/such/wal", FollowOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("/no/such/wal"), "{err}");
}

#[test]
fn recreated_wal_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    w.log(b"x").unwrap();
    let bytes = w.into_inner();
    fs::write(tmp.path().join("00000005"), &bytes).unwrap();
    let mut f = Follower::open(tmp.path(), opts()).unwrap();
    f.next_record().unwrap().unwrap();
    fs::remove_file(tmp.path().join("00000005")).unwrap();
    fs::write(tmp.path().join("00000000"), &bytes).unwrap();
    let err = f.next_record().err().unwrap();
    assert!(
        matches!(
            err,
            WalError::Recreated {
                current: 5,
                newest: Some(0),
                ..
            }
        ),
        "{err}"
    );
}

/// A segment file holding one uncompressed record per item of `records`.
fn write_segment(path: &Path, records: &[&[u8]]) {
    let mut w = SegmentWriter::new(Vec::new(), Codec::None);
    for r in records {
        w.log(r).unwrap();
    }
    fs::write(path, w.into_inner()).unwrap();
}

/// `checkpoint.00000005` (one record, "cp") and segments 6 and 7, as Prometheus leaves a WAL
/// after truncating segments up to 5.
fn truncated_wal() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let cp = tmp.path().join("checkpoint.00000005");
    fs::create_dir(&cp).unwrap();
    write_segment(&cp.join("00000000"), &[b"cp"]);
    write_segment(&tmp.path().join("00000006"), &[b"six"]);
    write_segment(&tmp.path().join("00000007"), &[b"seven"]);
    tmp
}

fn read_to_end(f: &mut Follower) -> Vec<(RecordSource, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        out.push((r.source, r.data.to_vec()));
    }
    out
}

#[test]
fn a_resume_position_in_a_deleted_segment_is_counted_as_skipped() {
    let tmp = truncated_wal();
    let o = opts();
    let counters = o.counters.clone();
    let mut f = Follower::start(tmp.path(), o, false).unwrap();
    // The previous run stopped inside segment 4; 4 and 5 were truncated since.
    f.resume_from(WalPosition {
        segment: 4,
        offset: 100,
    });
    let got = read_to_end(&mut f);
    assert_eq!(
        got,
        vec![
            (RecordSource::Checkpoint(5), b"cp".to_vec()),
            (RecordSource::Segment(6), b"six".to_vec()),
            (RecordSource::Segment(7), b"seven".to_vec()),
        ]
    );
    let stats = f.stats();
    assert_eq!(
        (stats.truncation_restarts, stats.segments_skipped),
        (1, 2),
        "the rest of 4, and 5"
    );
    assert_eq!(counters.snapshot(), stats, "shared counters see the same");
}

#[test]
fn a_resume_position_still_on_disk_skips_nothing() {
    for segment in [6, 7] {
        let tmp = truncated_wal();
        let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
        f.resume_from(WalPosition { segment, offset: 8 });
        assert_eq!(read_to_end(&mut f).len(), 3);
        assert_eq!(
            f.stats().truncation_restarts,
            0,
            "resume in segment {segment}"
        );
        assert_eq!(f.stats().segments_skipped, 0);
    }
    // Everything up to checkpoint 5 handled: segment 6 is the next to read, and it is there.
    let tmp = truncated_wal();
    let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
    f.resume_from(WalPosition::after_checkpoint(5));
    assert_eq!(read_to_end(&mut f).len(), 3);
    assert_eq!(f.stats().segments_skipped, 0);
}

#[test]
fn a_resume_gap_and_a_missing_first_segment_are_counted_once() {
    let tmp = truncated_wal();
    fs::remove_file(tmp.path().join("00000006")).unwrap();
    let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
    f.resume_from(WalPosition {
        segment: 5,
        offset: 0,
    });
    let got = read_to_end(&mut f);
    assert_eq!(got.len(), 2, "{got:?}");
    let stats = f.stats();
    assert_eq!(
        (stats.truncation_restarts, stats.segments_skipped),
        (1, 2),
        "segments 5 and 6"
    );
}

#[test]
fn a_checkpoint_written_during_start_up_counts_from_the_resume_position() {
    let tmp = truncated_wal();
    let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
    f.resume_from(WalPosition {
        segment: 3,
        offset: 10,
    });
    // Prometheus truncates again right after the follower listed the directory: checkpoint 6
    // replaces 5 and segment 6 is deleted before it is opened.
    assert_eq!(f.next_record().unwrap().unwrap().data, b"cp");
    let cp6 = tmp.path().join("checkpoint.00000006");
    fs::create_dir(&cp6).unwrap();
    write_segment(&cp6.join("00000000"), &[b"cp6"]);
    fs::remove_file(tmp.path().join("00000006")).unwrap();
    let got = read_to_end(&mut f);
    assert_eq!(
        got,
        vec![
            (RecordSource::Checkpoint(6), b"cp6".to_vec()),
            (RecordSource::Segment(7), b"seven".to_vec()),
        ]
    );
    let stats = f.stats();
    assert_eq!(
        (stats.truncation_restarts, stats.segments_skipped),
        (1, 4),
        "the rest of 3, and 4 to 6"
    );
}

#[test]
fn segments_deleted_below_the_resume_position_are_not_counted() {
    let tmp = truncated_wal();
    // Segment 6 is gone, but the previous run had handled it: it stopped in segment 7.
    fs::remove_file(tmp.path().join("00000006")).unwrap();
    let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
    f.resume_from(WalPosition {
        segment: 7,
        offset: 3,
    });
    assert_eq!(read_to_end(&mut f).len(), 2);
    assert_eq!(f.stats().truncation_restarts, 0);
    assert_eq!(f.stats().segments_skipped, 0);
}

#[test]
fn a_checkpoint_written_before_the_first_read_is_read_first() {
    // Segments 0 to 3, no checkpoint, when the follower opens the directory.
    let tmp = tempfile::tempdir().unwrap();
    for (i, name) in [b"zero", b"one_", b"two_", b"thr_"].iter().enumerate() {
        write_segment(&tmp.path().join(format!("{i:08}")), &[&name[..]]);
    }
    let mut f = Follower::start(tmp.path(), opts(), false).unwrap();
    // Prometheus truncates before anything is read: checkpoint 1 keeps what is still needed of
    // segments 0 and 1, which are deleted.
    let cp = tmp.path().join("checkpoint.00000001");
    fs::create_dir(&cp).unwrap();
    write_segment(&cp.join("00000000"), &[b"cp1"]);
    fs::remove_file(tmp.path().join("00000000")).unwrap();
    fs::remove_file(tmp.path().join("00000001")).unwrap();
    assert_eq!(
        read_to_end(&mut f),
        vec![
            (RecordSource::Checkpoint(1), b"cp1".to_vec()),
            (RecordSource::Segment(2), b"two_".to_vec()),
            (RecordSource::Segment(3), b"thr_".to_vec()),
        ]
    );
    let stats = f.stats();
    assert_eq!(
        (stats.truncation_restarts, stats.segments_skipped),
        (1, 2),
        "segments 0 and 1 were deleted unread"
    );
}

#[test]
fn a_quiet_wal_gives_idle_at_the_deadline_then_the_next_record() {
    let tmp = tempfile::tempdir().unwrap();
    write_segment(&tmp.path().join("00000000"), &[b"one"]);
    let mut f = Follower::open(tmp.path(), opts()).unwrap();
    let soon = || std::time::Instant::now() + Duration::from_millis(30);
    assert!(matches!(f.next_record_before(soon()).unwrap(), Next::Record(r) if r.data == b"one"));
    assert!(matches!(f.next_record_before(soon()).unwrap(), Next::Idle));
    write_segment(&tmp.path().join("00000001"), &[b"two"]);
    let next = loop {
        match f.next_record_before(soon()).unwrap() {
            Next::Idle => continue,
            Next::Record(r) => break r.data.to_vec(),
            Next::End => panic!("ended"),
        }
    };
    assert_eq!(next, b"two");
}
