use std::fs::{self, OpenOptions};
use std::io::Write;

use super::*;
use crate::compression::Codec;
use crate::writer::SegmentWriter;

fn opts() -> FollowOptions {
    FollowOptions {
        poll_interval: Duration::from_millis(5),
        stop: Arc::new(AtomicBool::new(false)),
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
