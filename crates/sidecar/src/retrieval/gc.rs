//! Garbage collection of the series cache, driven by Prometheus's checkpoints.
//!
//! When Prometheus writes `checkpoint.N`, it keeps there every series still alive; series whose
//! records are in segments `<= N` and that are not in the checkpoint are gone for good. Dropping
//! them keeps the cache (and the saved progress) the size of the live series set rather than of
//! the WAL's history. Checked once a minute on the reader's thread, also while the WAL is quiet,
//! before the next record's samples are resolved; only once the reader is past the checkpoint
//! (the segments it replaced may still hold samples of the series it drops). This module must
//! never touch samples.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ahash::AHashSet;
use prometheus_wal::{
    Follower, RecordType, WalError, decode_series, newest_checkpoint, record_type,
};

use super::series::SeriesCache;
use crate::progress::DeliveryTracker;

/// How often the WAL directory is checked for a new checkpoint (the original's interval).
pub const GC_INTERVAL: Duration = Duration::from_secs(60);

/// Tracks which checkpoint the cache was last collected against.
#[derive(Debug)]
pub struct SeriesGc {
    dir: PathBuf,
    interval: Duration,
    last_checkpoint: Option<u64>,
    next_check: Instant,
}

impl SeriesGc {
    /// Starts after the checkpoint the follower read at start-up (if any); checks every
    /// `interval`.
    pub fn new(dir: PathBuf, interval: Duration) -> SeriesGc {
        let last_checkpoint = newest_checkpoint(&dir).ok().flatten().map(|c| c.index);
        SeriesGc {
            dir,
            interval,
            last_checkpoint,
            next_check: Instant::now() + interval,
        }
    }

    /// When the next check is due.
    pub fn next_check(&self) -> Instant {
        self.next_check
    }

    /// Collects if the interval has passed and a newer checkpoint exists that the reader, now
    /// in segment `reading`, is past; returns how many series were dropped.
    pub fn maybe_collect(
        &mut self,
        cache: &mut SeriesCache,
        tracker: &DeliveryTracker,
        now: Instant,
        reading: u64,
    ) -> usize {
        if now < self.next_check {
            return 0;
        }
        self.next_check = now + self.interval;
        match self.collect(cache, tracker, reading) {
            Ok(n) => n,
            Err(err) => {
                // The checkpoint may have been replaced under us; try again next time.
                tracing::warn!(
                    wal = %self.dir.display(),
                    error = %err,
                    "series cache garbage collection skipped; old series stay cached until the next checkpoint"
                );
                0
            }
        }
    }

    fn collect(
        &mut self,
        cache: &mut SeriesCache,
        tracker: &DeliveryTracker,
        reading: u64,
    ) -> Result<usize, WalError> {
        let Some(checkpoint) = newest_checkpoint(&self.dir)? else {
            return Ok(0);
        };
        if self
            .last_checkpoint
            .is_some_and(|last| checkpoint.index <= last)
            // Still reading what it replaced: collected at a later check.
            || checkpoint.index >= reading
        {
            return Ok(0);
        }
        let alive = series_in(&checkpoint.path)?;
        let index = checkpoint.index;
        let removed =
            cache.retain(|series_ref, entry| entry.segment > index || alive.contains(&series_ref));
        for series_ref in &removed {
            tracker.forget(*series_ref);
        }
        self.last_checkpoint = Some(index);
        tracing::info!(
            checkpoint = index,
            removed = removed.len(),
            remaining = cache.len(),
            "dropped series that Prometheus no longer has"
        );
        Ok(removed.len())
    }
}

/// Refs of every series record in a checkpoint directory.
fn series_in(checkpoint: &std::path::Path) -> Result<AHashSet<u64>, WalError> {
    let mut reader = Follower::open_to_end(checkpoint)?;
    let mut refs = AHashSet::new();
    let mut buf = Vec::new();
    while let Some(record) = reader.next_record()? {
        if record_type(record.data) == RecordType::Series {
            decode_series(record.data, &mut buf).map_err(|e| record.decode_error(e))?;
            refs.extend(buf.drain(..).map(|s| s.series_ref));
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use prometheus_wal::record::encode::encode_series;
    use prometheus_wal::writer::SegmentWriter;
    use prometheus_wal::{Codec, Label, RefSeries, WalPosition};

    use super::*;

    fn write_checkpoint(dir: &std::path::Path, index: u64, refs: &[u64]) {
        let cp = dir.join(format!("checkpoint.{index:08}"));
        std::fs::create_dir_all(&cp).unwrap();
        let series: Vec<RefSeries> = refs
            .iter()
            .map(|r| RefSeries {
                series_ref: *r,
                labels: vec![Label {
                    name: "__name__".into(),
                    value: format!("m{r}"),
                }],
            })
            .collect();
        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        let mut w = SegmentWriter::new(
            std::fs::File::create(cp.join("00000000")).unwrap(),
            Codec::Snappy,
        );
        w.log(&buf).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn a_new_checkpoint_drops_series_prometheus_no_longer_has() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), 1, &[1, 2, 3]);
        let mut gc = SeriesGc::new(dir.path().to_path_buf(), GC_INTERVAL);
        let tracker = DeliveryTracker::new(WalPosition::default());
        let mut cache = SeriesCache::default();
        cache.insert(1, Vec::new(), 1); // from checkpoint.1, still alive
        cache.insert(2, Vec::new(), 1); // from checkpoint.1, gone in checkpoint.3
        cache.insert(4, Vec::new(), 2); // in segment 2, gone
        cache.insert(5, Vec::new(), 4); // newer than the checkpoint
        for r in [1, 2, 4, 5] {
            tracker.ack_for(r, 0);
        }
        let later = Instant::now() + GC_INTERVAL;
        // The checkpoint read at start-up is not collected against again.
        assert_eq!(gc.maybe_collect(&mut cache, &tracker, later, 4), 0);
        write_checkpoint(dir.path(), 3, &[1]);
        // Not before the interval.
        assert_eq!(gc.maybe_collect(&mut cache, &tracker, later, 4), 0);
        // Not while the reader is still in a segment the checkpoint replaced: it may hold
        // samples of series 2 and 4 yet.
        let later = later + GC_INTERVAL;
        assert_eq!(gc.maybe_collect(&mut cache, &tracker, later, 3), 0);
        assert_eq!(cache.len(), 4);
        let later = later + GC_INTERVAL;
        assert_eq!(gc.maybe_collect(&mut cache, &tracker, later, 4), 2);
        assert!(cache.get_mut(1).is_some() && cache.get_mut(5).is_some());
        assert!(cache.get_mut(2).is_none() && cache.get_mut(4).is_none());
        let mut saved: Vec<u64> = tracker
            .snapshot()
            .series
            .iter()
            .map(|s| s.series_ref)
            .collect();
        // The snapshot's order is the registry's (a hash map's).
        saved.sort_unstable();
        assert_eq!(saved, vec![1, 5]);
    }
}
