//! Following a live WAL directory: the newest checkpoint, every segment after it, then the
//! segment being written and each one that appears after it. This is the remote-write watcher's
//! algorithm (`tsdb/wlog/watcher.go`) as a blocking iterator, [`Follower`].
//!
//! Owns the order in which files are read and the waiting. Must never decode record payloads,
//! nor sleep longer than one poll interval without checking the stop flag.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::dir::{CheckpointDir, SegmentFile, list_segments, newest_checkpoint};
use crate::error::WalError;
use crate::position::{RecordSource, WalPosition};
use crate::record::DecodeError;
use crate::segment::SegmentReader;

/// How a [`Follower`] waits.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Sleep between looks for new data or new segments while caught up.
    pub poll_interval: Duration,
    /// Set to make [`Follower::next_record`] return `Ok(None)` (checked before every record and
    /// every poll).
    pub stop: Arc<AtomicBool>,
    /// Where the follower counts what it skipped or recovered from; share it to read the counts
    /// from another thread (self-metrics) while the follower runs.
    pub counters: Arc<FollowCounters>,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            poll_interval: Duration::from_millis(100),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::default(),
        }
    }
}

/// One record as read from the WAL.
#[derive(Debug, Clone, Copy)]
pub struct WalRecord<'a> {
    /// Checkpoint or segment it came from.
    pub source: RecordSource,
    /// Position just after the record (see [`WalPosition`] for checkpoint records).
    pub position: WalPosition,
    /// The decompressed payload; its first byte is the record type.
    pub data: &'a [u8],
}

impl WalRecord<'_> {
    /// Wraps an error from decoding this record's payload with where the record is.
    pub fn decode_error(&self, error: DecodeError) -> WalError {
        WalError::Decode {
            from: self.source,
            position: self.position,
            error,
        }
    }
}

/// What [`Follower::next_record_before`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// The next record.
    Record(WalRecord<'a>),
    /// The deadline passed while waiting for data.
    Idle,
    /// Stopped, or (with [`Follower::open_to_end`]) everything was read.
    End,
}

/// What a [`Follower`] has skipped or recovered from, for self-metrics (a snapshot of its
/// [`FollowCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Records returned.
    pub records: u64,
    /// Checkpoints read (at start and after truncations).
    pub checkpoints_read: u64,
    /// Corrupt fragments or pages skipped (CRC mismatch, bad framing, undecompressable).
    pub corruptions_skipped: u64,
    /// Segments whose incomplete last record was skipped because a later segment exists.
    pub torn_tails: u64,
    /// Bytes of those incomplete records.
    pub torn_tail_bytes: u64,
    /// Times the next segment was gone and reading went on from a checkpoint or a later segment,
    /// including once at start-up when the [resume position](Follower::resume_from) is in a
    /// deleted segment.
    pub truncation_restarts: u64,
    /// Segments never read (or, for the one holding the resume position, not read to the end)
    /// because they were deleted before this follower reached them.
    pub segments_skipped: u64,
    /// The segment opened last: once it is after the segment of the last record returned, that
    /// segment was read to its end (its padding included).
    pub segment: u64,
}

/// The live counts behind [`FollowStats`], updated by the follower and readable from any thread.
#[derive(Debug, Default)]
pub struct FollowCounters {
    records: AtomicU64,
    checkpoints_read: AtomicU64,
    corruptions_skipped: AtomicU64,
    torn_tails: AtomicU64,
    torn_tail_bytes: AtomicU64,
    truncation_restarts: AtomicU64,
    segments_skipped: AtomicU64,
    segment: AtomicU64,
}

impl FollowCounters {
    /// The counts now.
    pub fn snapshot(&self) -> FollowStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FollowStats {
            records: get(&self.records),
            checkpoints_read: get(&self.checkpoints_read),
            corruptions_skipped: get(&self.corruptions_skipped),
            torn_tails: get(&self.torn_tails),
            torn_tail_bytes: get(&self.torn_tail_bytes),
            truncation_restarts: get(&self.truncation_restarts),
            segments_skipped: get(&self.segments_skipped),
            segment: get(&self.segment),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// One recovery from deleted segments, `skipped` of which were not (fully) read.
    fn truncation(&self, skipped: u64) {
        FollowCounters::add(&self.truncation_restarts, 1);
        FollowCounters::add(&self.segments_skipped, skipped);
    }
}

/// Which file is being read.
enum State {
    /// Find segment `want` (or, when `strict` is false, the lowest segment `>= want`).
    Locate { want: u64, strict: bool },
    /// Reading `checkpoint.index`: `files[next_file - 1]` is open in `reader`.
    Checkpoint {
        index: u64,
        files: Vec<SegmentFile>,
        next_file: usize,
    },
    /// Reading segment `index`; `next_seen` once a later segment was seen to exist.
    Segment { index: u64, next_seen: bool },
    /// Not following and everything has been read.
    Done,
}

/// Reads every record of a WAL directory in order and follows it as Prometheus writes.
///
/// On end-of-file it lists the directory, and when a later segment exists it drains the current
/// one *once more* before moving on, so bytes appended between the first end-of-file and the
/// listing are not lost. Only then is an incomplete record at the end final: a torn tail
/// (Prometheus crashed), skipped with a warning. Corrupt bytes are skipped with a warning naming
/// segment and offset. When the next segment is gone (Prometheus truncated the WAL while this
/// reader was behind), it goes on from the newest checkpoint and the first segment still
/// present, counting what was skipped, instead of failing; so does a gap found at start-up (see
/// [`Follower::resume_from`]).
pub struct Follower {
    dir: PathBuf,
    opts: FollowOptions,
    follow: bool,
    state: State,
    /// The file being read; `None` between files.
    reader: Option<SegmentReader>,
    /// Highest checkpoint index read, so a truncation does not re-read the same one.
    checkpoint_read: Option<u64>,
    /// Where the caller's previous run stopped, until the first segment is opened.
    resume: Option<WalPosition>,
    position: WalPosition,
    /// Runs between an end-of-file and the directory listing: the race window under test.
    #[cfg(test)]
    before_listing: Option<Box<dyn FnMut() + Send>>,
}

impl Follower {
    /// Starts following the WAL in `dir` (the `wal` directory itself). Fails if it cannot be
    /// listed (e.g. does not exist); the error names the path.
    pub fn open(dir: impl AsRef<Path>, opts: FollowOptions) -> Result<Follower, WalError> {
        Follower::start(dir.as_ref(), opts, true)
    }

    /// Reads the checkpoint and segments present now and ends at the end of the newest segment
    /// instead of waiting for more (`next_record` then returns `Ok(None)`).
    pub fn open_to_end(dir: impl AsRef<Path>) -> Result<Follower, WalError> {
        Follower::start(dir.as_ref(), FollowOptions::default(), false)
    }

    fn start(dir: &Path, opts: FollowOptions, follow: bool) -> Result<Follower, WalError> {
        let mut f = Follower {
            dir: dir.to_path_buf(),
            opts,
            follow,
            state: State::Done,
            reader: None,
            checkpoint_read: None,
            resume: None,
            position: WalPosition::default(),
            #[cfg(test)]
            before_listing: None,
        };
        // Listing segments first reports a missing or unreadable directory.
        list_segments(dir)?;
        match newest_checkpoint(dir)? {
            Some(cp) => f.begin_checkpoint(cp)?,
            None => {
                f.state = State::Locate {
                    want: 0,
                    strict: false,
                };
            }
        }
        Ok(f)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Position just after the last record returned (`{0, 0}` before the first).
    pub fn position(&self) -> WalPosition {
        self.position
    }

    /// The segment being read or waited for; while a checkpoint is read, its index (it replaces
    /// the segments up to that one).
    pub fn segment(&self) -> u64 {
        match self.state {
            State::Locate { want, .. } => want,
            State::Checkpoint { index, .. } | State::Segment { index, .. } => index,
            State::Done => self.position.segment,
        }
    }

    /// Counts of what was skipped or recovered from so far.
    pub fn stats(&self) -> FollowStats {
        self.opts.counters.snapshot()
    }

    /// Tells the follower where a previous run of the caller stopped: everything up to
    /// `position` was handled then. Reading still starts at the newest checkpoint (its series are
    /// needed), but when the segment holding `position`, or later ones, were deleted while the
    /// caller was not running, the gap is logged and counted like a truncation met while
    /// following. Call before the first [`next_record`](Self::next_record); the default position
    /// (a first start) checks nothing.
    pub fn resume_from(&mut self, position: WalPosition) {
        self.resume = (position != WalPosition::default()).then_some(position);
    }

    /// Blocks until the next record is available and returns it; `Ok(None)` once `stop` is set
    /// (or, with [`open_to_end`](Self::open_to_end), at the end). Corrupt data is skipped with a
    /// warning, not returned. I/O errors are returned and the call can be retried;
    /// [`WalError::Recreated`] means the WAL was replaced and a new follower is needed.
    pub fn next_record(&mut self) -> Result<Option<WalRecord<'_>>, WalError> {
        match self.next_before(None)? {
            Next::Record(record) => Ok(Some(record)),
            Next::Idle | Next::End => Ok(None),
        }
    }

    /// Like [`next_record`](Self::next_record), but returns [`Next::Idle`] once `deadline` has
    /// passed without a record (checked after every poll and every change of file), so the
    /// caller can do periodic work while the WAL is quiet, then call again.
    pub fn next_record_before(&mut self, deadline: Instant) -> Result<Next<'_>, WalError> {
        self.next_before(Some(deadline))
    }

    fn next_before(&mut self, deadline: Option<Instant>) -> Result<Next<'_>, WalError> {
        let source = loop {
            if self.opts.stop.load(Ordering::Relaxed) {
                return Ok(Next::End);
            }
            if let State::Done = self.state {
                return Ok(Next::End);
            }
            if let Some(source) = self.step()? {
                break source;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Next::Idle);
            }
        };
        FollowCounters::add(&self.opts.counters.records, 1);
        // Invariant: `step` only returns a source right after `advance` found a record in
        // `self.reader`, so the empty fallback is never used.
        let data = self.reader.as_ref().map_or(&[][..], SegmentReader::record);
        Ok(Next::Record(WalRecord {
            source,
            position: self.position,
            data,
        }))
    }

    /// One move of the state machine; `Some` when `self.reader` holds a new record.
    fn step(&mut self) -> Result<Option<RecordSource>, WalError> {
        match self.state {
            State::Done => Ok(None),
            State::Locate { want, strict } => {
                self.locate(want, strict)?;
                Ok(None)
            }
            State::Checkpoint { index, .. } => self.step_checkpoint(index),
            State::Segment { index, next_seen } => self.step_segment(index, next_seen),
        }
    }

    fn step_checkpoint(&mut self, index: u64) -> Result<Option<RecordSource>, WalError> {
        let State::Checkpoint {
            files, next_file, ..
        } = &mut self.state
        else {
            return Ok(None);
        };
        let Some(reader) = self.reader.as_mut() else {
            let Some(file) = files.get(*next_file) else {
                self.state = State::Locate {
                    want: index.saturating_add(1),
                    strict: true,
                };
                return Ok(None);
            };
            *next_file += 1;
            match SegmentReader::open(&file.path) {
                Ok(r) => self.reader = Some(r),
                Err(e) if e.is_not_found() => {
                    // Deleted under us: a newer checkpoint replaced it. Read that one instead;
                    // its series include everything this one had that is still needed.
                    if let Some(cp) = newest_checkpoint(&self.dir)?
                        && cp.index > index
                    {
                        tracing::warn!(
                            checkpoint = index,
                            newer = cp.index,
                            "checkpoint was replaced while reading it; reading the newer one"
                        );
                        self.begin_checkpoint(cp)?;
                    }
                }
                Err(e) => return Err(e),
            }
            return Ok(None);
        };
        match reader.advance() {
            Ok(true) => {
                self.position = WalPosition::after_checkpoint(index);
                Ok(Some(RecordSource::Checkpoint(index)))
            }
            Ok(false) => {
                // A checkpoint is renamed into place complete: end of file is its end.
                self.finish_file();
                Ok(None)
            }
            Err(e) if e.is_corruption() => {
                self.skip_corruption(&e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn step_segment(
        &mut self,
        index: u64,
        next_seen: bool,
    ) -> Result<Option<RecordSource>, WalError> {
        let Some(reader) = self.reader.as_mut() else {
            self.state = State::Locate {
                want: index,
                strict: true,
            };
            return Ok(None);
        };
        match reader.advance() {
            Ok(true) => {
                self.position = WalPosition {
                    segment: index,
                    offset: reader.offset(),
                };
                return Ok(Some(RecordSource::Segment(index)));
            }
            Ok(false) => {}
            Err(e) if e.is_corruption() => {
                self.skip_corruption(&e);
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        if next_seen {
            // Drained again after the next segment appeared: this segment is complete.
            self.finish_file();
            self.state = State::Locate {
                want: index.saturating_add(1),
                strict: true,
            };
            return Ok(None);
        }
        #[cfg(test)]
        if let Some(hook) = self.before_listing.as_mut() {
            hook();
        }
        let segments = list_segments(&self.dir)?;
        if segments.iter().any(|s| s.index > index) {
            self.state = State::Segment {
                index,
                next_seen: true,
            };
            return Ok(None);
        }
        if !segments.iter().any(|s| s.index >= index) {
            return Err(WalError::Recreated {
                path: self.dir.clone(),
                current: index,
                newest: segments.last().map(|s| s.index),
            });
        }
        if self.follow {
            std::thread::sleep(self.opts.poll_interval);
        } else {
            self.finish_file();
            self.state = State::Done;
        }
        Ok(None)
    }

    /// Opens segment `want`, or recovers when it is gone; waits when there is none yet.
    fn locate(&mut self, want: u64, strict: bool) -> Result<(), WalError> {
        let segments = list_segments(&self.dir)?;
        let found = segments.iter().find(|s| s.index >= want);
        // Segment `want` is gone (or, strictly, not there yet). Before the first segment is
        // read, a later first segment also means a truncation since the directory was opened.
        let gap = found.is_none_or(|s| s.index > want);
        if gap && (strict || found.is_some()) {
            // A checkpoint covering it means it was truncated away: its series, and its samples
            // from the truncation's lower time bound on, are in the checkpoint; read that first.
            if let Some(cp) = newest_checkpoint(&self.dir)?
                && cp.index >= want
                && self.checkpoint_read.is_none_or(|read| cp.index > read)
            {
                // At start-up, what was lost starts at the resume position: the segments before
                // it were handled by the previous run.
                let from = self.resume.take().map_or(want, |r| r.segment);
                let skipped = (cp.index + 1).saturating_sub(from);
                if skipped > 0 {
                    tracing::warn!(
                        wal = %self.dir.display(),
                        missing_segment = want,
                        checkpoint = cp.index,
                        skipped_segments = skipped,
                        "next WAL segment was deleted before it was read (reader fell behind a \
                         truncation); continuing from the newest checkpoint, samples of the skipped \
                         segments that it did not keep are lost"
                    );
                    self.opts.counters.truncation(skipped);
                }
                return self.begin_checkpoint(cp);
            }
            // At start-up, `check_resume_gap` counts what is missing from the resume position on.
            if let Some(s) = found
                && strict
                && self.resume.is_none()
            {
                let skipped = s.index - want;
                tracing::warn!(
                    wal = %self.dir.display(),
                    missing_segment = want,
                    next_segment = s.index,
                    skipped_segments = skipped,
                    "WAL segments are missing; continuing with the next one present"
                );
                self.opts.counters.truncation(skipped);
            }
        }
        let Some(seg) = found else {
            if self.follow {
                std::thread::sleep(self.opts.poll_interval);
            } else {
                self.state = State::Done;
            }
            return Ok(());
        };
        self.check_resume_gap(seg.index);
        match SegmentReader::open(&seg.path) {
            Ok(r) => {
                tracing::debug!(segment = %seg.path.display(), "reading WAL segment");
                self.opts
                    .counters
                    .segment
                    .store(seg.index, Ordering::Relaxed);
                self.reader = Some(r);
                self.state = State::Segment {
                    index: seg.index,
                    next_seen: false,
                };
            }
            // Deleted between listing and opening: look again (strictly, so it is counted).
            Err(e) if e.is_not_found() => {
                self.state = State::Locate {
                    want: seg.index,
                    strict: true,
                };
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// At the first segment opened, `first`, counts and logs the segments deleted since the
    /// previous run: when `first` comes after the segment of the resume position, that segment's
    /// unread rest and every segment up to `first` were deleted unread.
    fn check_resume_gap(&mut self, first: u64) {
        let Some(resume) = self.resume.take() else {
            return;
        };
        if first <= resume.segment {
            return;
        }
        let skipped = first - resume.segment;
        tracing::warn!(
            wal = %self.dir.display(),
            resume_position = %resume,
            first_segment = first,
            checkpoint = ?self.checkpoint_read,
            skipped_segments = skipped,
            "WAL segments after the position reached before the restart were deleted while not \
             running (Prometheus truncated its WAL); continuing from the newest checkpoint and the \
             first segment left, samples of the deleted segments that it did not keep are lost"
        );
        self.opts.counters.truncation(skipped);
    }

    fn begin_checkpoint(&mut self, cp: CheckpointDir) -> Result<(), WalError> {
        let files = match list_segments(&cp.path) {
            Ok(files) => files,
            // Replaced by a newer checkpoint between the two listings: read that one instead.
            Err(e) if e.is_not_found() => {
                return match newest_checkpoint(&self.dir)? {
                    Some(newer) if newer.index > cp.index => self.begin_checkpoint(newer),
                    _ => Ok(()),
                };
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(checkpoint = %cp.path.display(), files = files.len(), "reading WAL checkpoint");
        self.reader = None;
        self.checkpoint_read = Some(cp.index);
        FollowCounters::add(&self.opts.counters.checkpoints_read, 1);
        self.state = State::Checkpoint {
            index: cp.index,
            files,
            next_file: 0,
        };
        Ok(())
    }

    /// Closes the current file; an incomplete record left at its end is a torn tail.
    fn finish_file(&mut self) {
        if let Some(reader) = self.reader.take() {
            let torn = reader.pending_bytes();
            if torn > 0 {
                tracing::warn!(
                    segment = %reader.path().display(),
                    offset = reader.offset(),
                    bytes = torn,
                    "skipping incomplete record at the end of a WAL segment (torn tail)"
                );
                FollowCounters::add(&self.opts.counters.torn_tails, 1);
                FollowCounters::add(&self.opts.counters.torn_tail_bytes, torn);
            }
        }
    }

    fn skip_corruption(&mut self, e: &WalError) {
        tracing::warn!(error = %e, "skipping corrupt WAL data");
        FollowCounters::add(&self.opts.counters.corruptions_skipped, 1);
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
