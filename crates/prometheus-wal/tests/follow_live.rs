//! Following a WAL while it is written, truncated, torn and corrupted, using real segments
//! written by Prometheus 2.42.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Rec, copy_dir, read_all, real_wal};
use prometheus_wal::{FollowOptions, FollowStats, Follower, RecordSource, WalPosition};

const PAGE: usize = 32 * 1024;

/// A small deterministic generator for cut points.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
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

fn opts(stop: &Arc<AtomicBool>) -> FollowOptions {
    FollowOptions {
        poll_interval: Duration::from_millis(1),
        stop: stop.clone(),
        ..FollowOptions::default()
    }
}

/// Follows `dir` on a thread until `count` records arrived (or `stop` is set), counting the
/// records received so far in `progress`.
fn follow_in_background(
    dir: &Path,
    count: usize,
    stop: &Arc<AtomicBool>,
    progress: &Arc<AtomicUsize>,
) -> thread::JoinHandle<(Vec<Rec>, FollowStats)> {
    let (dir, o, progress) = (dir.to_path_buf(), opts(stop), progress.clone());
    thread::spawn(move || {
        let mut f = Follower::open(&dir, o).unwrap();
        let mut out = Vec::new();
        while out.len() < count {
            match f.next_record().unwrap() {
                Some(r) => out.push(Rec {
                    source: r.source,
                    position: r.position,
                    data: r.data.to_vec(),
                }),
                None => break,
            }
            progress.store(out.len(), Ordering::Release);
        }
        (out, f.stats())
    })
}

/// Waits (up to a minute) until the follower has received `n` records.
fn wait_for_progress(progress: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Acquire) < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        progress.load(Ordering::Acquire),
        n,
        "follower did not catch up"
    );
}

/// Waits up to a minute for the follower, then stops it, and returns what it read.
fn finish(
    h: thread::JoinHandle<(Vec<Rec>, FollowStats)>,
    stop: &Arc<AtomicBool>,
) -> (Vec<Rec>, FollowStats) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap()
}

/// Cut points for writing `len` bytes: tiny, medium and large steps, plus cuts just around
/// page boundaries (mid-header, mid-fragment, mid-page).
fn cuts(len: usize, rng: &mut Lcg) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        at += match rng.next(10) {
            0..=2 => 1 + rng.next(8) as usize,
            3..=7 => 1 + rng.next(4096) as usize,
            _ => 1 + rng.next(70_000) as usize,
        };
        cuts.push(at.min(len));
    }
    for page in (PAGE..len).step_by(PAGE * 3) {
        cuts.extend([page - 3, page, page + 4]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c <= len);
    cuts
}

#[test]
fn growing_segments_yield_exactly_the_records_of_the_whole_files() {
    let src = real_wal().join("A-snappy-live-snapshot/wal");
    let expected = read_all(&src);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    copy_dir(
        &src.join("checkpoint.00000003"),
        &dst.join("checkpoint.00000003"),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let h = follow_in_background(dst, expected.len(), &stop, &Arc::default());
    let mut rng = Lcg(42);
    for seg in ["00000004", "00000005", "00000006"] {
        // The next segment appears only once the previous one is complete, as with Prometheus.
        let data = fs::read(src.join(seg)).unwrap();
        let mut prev = 0;
        fs::write(dst.join(seg), b"").unwrap();
        for cut in cuts(data.len(), &mut rng) {
            append(&dst.join(seg), &data[prev..cut]);
            prev = cut;
            if rng.next(3) == 0 {
                thread::sleep(Duration::from_micros(500));
            }
        }
    }
    let (got, stats) = finish(h, &stop);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "records differ from reading the complete files"
    );
    assert_eq!(stats.torn_tails, 0);
    assert_eq!(stats.corruptions_skipped, 0);
    assert_eq!(stats.truncation_restarts, 0);
}

#[test]
fn truncation_behind_the_reader_continues_from_the_newest_checkpoint() {
    let src = real_wal().join("A-snappy-5m-blocks/wal");
    let all = read_all(&src);
    let of = |i| {
        all.iter()
            .filter(move |r| r.source == RecordSource::Segment(i))
            .cloned()
    };
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    copy_dir(&src, dst);

    let stop = Arc::new(AtomicBool::new(false));
    let mut f = Follower::open(dst, opts(&stop)).unwrap();
    let first4 = loop {
        let r = f.next_record().unwrap().unwrap();
        if r.source == RecordSource::Segment(4) {
            break r.position;
        }
    };
    // Prometheus writes checkpoint.5 and deletes everything below segment 6 while the reader
    // is still early in segment 4 (whose file stays readable through the open descriptor).
    fs::rename(
        dst.join("checkpoint.00000003"),
        dst.join("checkpoint.00000005"),
    )
    .unwrap();
    fs::remove_file(dst.join("00000004")).unwrap();
    fs::remove_file(dst.join("00000005")).unwrap();

    let mut expected: Vec<(RecordSource, WalPosition)> =
        of(4).skip(1).map(|r| (r.source, r.position)).collect();
    expected.extend((0..22).map(|_| {
        (
            RecordSource::Checkpoint(5),
            WalPosition::after_checkpoint(5),
        )
    }));
    expected.extend(of(6).map(|r| (r.source, r.position)));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let r = f.next_record().unwrap().unwrap();
        got.push((r.source, r.position));
    }
    assert_eq!(of(4).next().unwrap().position, first4);
    assert!(got == expected, "rest of 4, checkpoint 5, then 6");
    let stats = f.stats();
    assert_eq!(stats.truncation_restarts, 1);
    assert_eq!(stats.segments_skipped, 1, "segment 5 was never read");
    assert_eq!(stats.checkpoints_read, 2);
}

#[test]
fn prometheus_truncating_older_segments_does_not_disturb_the_reader() {
    let src = real_wal().join("A-snappy-live-snapshot/wal");
    let all = read_all(&src);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    copy_dir(
        &src.join("checkpoint.00000003"),
        &dst.join("checkpoint.00000003"),
    );
    for seg in ["00000004", "00000005"] {
        fs::copy(src.join(seg), dst.join(seg)).unwrap();
    }
    let live = fs::read(src.join("00000006")).unwrap();
    let half = 500_001;
    fs::write(dst.join("00000006"), &live[..half]).unwrap();
    // Segment 7: a copy of 5's bytes is as good as any closed segment.
    let seg7 = fs::read(src.join("00000005")).unwrap();
    let n7 = all
        .iter()
        .filter(|r| r.source == RecordSource::Segment(5))
        .count();

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let h = follow_in_background(dst, all.len() + n7, &stop, &progress);
    // Everything up to the cut in the live segment is read; the follower now waits at its end.
    let before_cut = all
        .iter()
        .filter(|r| r.source != RecordSource::Segment(6) || r.position.offset <= half as u64)
        .count();
    wait_for_progress(&progress, before_cut);
    thread::sleep(Duration::from_millis(10));
    fs::create_dir(dst.join("checkpoint.00000005")).unwrap();
    fs::copy(
        src.join("checkpoint.00000003/00000000"),
        dst.join("checkpoint.00000005/00000000"),
    )
    .unwrap();
    fs::remove_dir_all(dst.join("checkpoint.00000003")).unwrap();
    fs::remove_file(dst.join("00000004")).unwrap();
    fs::remove_file(dst.join("00000005")).unwrap();
    append(&dst.join("00000006"), &live[half..]);
    thread::sleep(Duration::from_millis(20));
    fs::write(dst.join("00000007"), &seg7).unwrap();

    let (got, stats) = finish(h, &stop);
    assert_eq!(got.len(), all.len() + n7);
    assert!(got[..all.len()] == all[..]);
    assert!(
        got[all.len()..]
            .iter()
            .all(|r| r.source == RecordSource::Segment(7))
    );
    assert_eq!(stats.truncation_restarts, 0);
    assert_eq!(stats.checkpoints_read, 1);
}

#[test]
fn torn_tail_is_skipped_once_the_next_segment_exists() {
    let src = real_wal().join("A-snappy-5m-blocks/wal");
    let all = read_all(&src);
    let seg5: Vec<&Rec> = all
        .iter()
        .filter(|r| r.source == RecordSource::Segment(5))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    // Prometheus crashed inside record 1000 of segment 5, then restarted with segment 6.
    let cut = seg5[999].position.offset as usize + 5;
    fs::write(
        dst.join("00000005"),
        &fs::read(src.join("00000005")).unwrap()[..cut],
    )
    .unwrap();
    fs::copy(src.join("00000006"), dst.join("00000006")).unwrap();

    let mut f = Follower::open_to_end(dst).unwrap();
    let mut got = Vec::new();
    while let Some(r) = f.next_record().unwrap() {
        got.push((r.source, r.position, r.data.to_vec()));
    }
    let expected: Vec<_> = all
        .iter()
        .filter(|r| {
            r.source == RecordSource::Segment(6)
                || (r.source == RecordSource::Segment(5) && r.position.offset as usize <= cut)
        })
        .map(|r| (r.source, r.position, r.data.clone()))
        .collect();
    assert_eq!(
        expected
            .iter()
            .filter(|r| r.0 == RecordSource::Segment(5))
            .count(),
        1000
    );
    assert!(got == expected);
    let stats = f.stats();
    assert_eq!((stats.torn_tails, stats.torn_tail_bytes), (1, 5));
}

#[test]
fn checksum_mismatch_in_a_closed_segment_skips_only_that_record() {
    let src = real_wal().join("A-snappy-5m-blocks/wal");
    let all = read_all(&src);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path();
    copy_dir(&src, dst);
    let seg5: Vec<&Rec> = all
        .iter()
        .filter(|r| r.source == RecordSource::Segment(5))
        .collect();
    // Record 100 of segment 5 is a single fragment starting where record 99 ends.
    let start = seg5[98].position.offset as usize;
    let mut bytes = fs::read(dst.join("00000005")).unwrap();
    assert_eq!(bytes[start] & 0x07, 1, "a full fragment");
    bytes[start + 3] ^= 0x5a; // the stored CRC
    fs::write(dst.join("00000005"), &bytes).unwrap();

    let got = {
        let mut f = Follower::open_to_end(dst).unwrap();
        let mut got = Vec::new();
        while let Some(r) = f.next_record().unwrap() {
            got.push(Rec {
                source: r.source,
                position: r.position,
                data: r.data.to_vec(),
            });
        }
        assert_eq!(f.stats().corruptions_skipped, 1);
        got
    };
    let expected: Vec<Rec> = all.iter().filter(|r| *r != seg5[99]).cloned().collect();
    assert_eq!(got.len(), all.len() - 1);
    assert!(got == expected);
}
