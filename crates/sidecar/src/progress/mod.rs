//! Progress: what has been delivered, tracked while running and saved so a restart (even after
//! `kill -9`) resumes exactly where delivery stopped.
//!
//! `tracker` follows deliveries in memory; `file` reads and writes the progress files; the keeper
//! here saves a snapshot every few seconds and once more at shutdown. This module never reads
//! the WAL or sends anything.

pub mod aggregates;
pub mod file;
pub mod marks;
pub(crate) mod slab;
pub(crate) mod tracker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;
use ahash::AHashMap;
use prometheus_wal::WalPosition;

pub use file::{
    LoadedProgress, SavedBaseline, SavedClassic, SavedHistogram, SavedHistogramState, SavedNative,
    SavedProgress, SavedSeries, SavedSnapshot,
};
pub use marks::{DeliveryMarks, LoadedMarks, Mark};
pub use slab::AckId;
pub use tracker::{DeliveryTracker, HistogramAck, PointAck};

/// The temporary name under which this process writes the progress file `name` of `dir` before
/// renaming it into place: its own (the pid is in it), so no other process can replace or
/// rename it half-written.
pub fn temporary_path(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{}.tmp", std::process::id()))
}

/// Removes the temporary progress files a process killed while saving left in `dir`. Call only
/// while holding the WAL directory's lock (no other sidecar is saving then).
pub fn remove_stale_temporaries(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("stackdriver_sidecar.") && name.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(file = %entry.path().display(), "removed a stale temporary progress file")
                }
                Err(err) => {
                    tracing::debug!(file = %entry.path().display(), error = %err, "could not remove a stale temporary progress file")
                }
            }
        }
    }
}

/// Where a run starts, from the saved progress.
#[derive(Debug, Default)]
pub struct Resume {
    /// Sample records ending at or before this position were delivered: they are not sent again.
    pub position: WalPosition,
    /// Saved per-series state, taken by the reader as series resolve.
    series: AHashMap<u64, SavedSeries>,
    /// Saved per-histogram state, by output series hash, taken as histograms show up.
    histograms: AHashMap<u64, SavedHistogram>,
    /// Per lane, the last point acknowledged before the restart.
    marks: Vec<Option<Mark>>,
}

impl Resume {
    /// The resume point described by what was loaded.
    pub fn new(loaded: LoadedProgress) -> Resume {
        match loaded {
            LoadedProgress::None => Resume::default(),
            LoadedProgress::Legacy(position) => Resume {
                position,
                ..Resume::default()
            },
            LoadedProgress::Exact(saved) => Resume {
                position: saved.position,
                series: saved
                    .series
                    .into_iter()
                    .map(|s| (s.series_ref, s))
                    .collect(),
                histograms: saved.histograms.into_iter().map(|h| (h.hash, h)).collect(),
                marks: Vec::new(),
            },
        }
    }

    /// Adds the delivery marks of the previous run.
    pub fn with_marks(mut self, loaded: Option<LoadedMarks>) -> Resume {
        if let Some(loaded) = loaded {
            self.marks = loaded.marks;
        }
        self
    }

    /// The marks to start this run's marks file with.
    pub fn marks(&self) -> &[Option<Mark>] {
        &self.marks
    }

    /// Whether the point `mark` of lane `lane` was acknowledged before the restart.
    pub fn delivered(&self, lane: usize, mark: Mark) -> bool {
        self.marks
            .get(lane)
            .copied()
            .flatten()
            .is_some_and(|last| mark <= last)
    }

    /// The saved state of a series, if its labels are the ones it was saved with.
    pub fn take(&mut self, series_ref: u64, labels_hash: u64) -> Option<SavedSeries> {
        let saved = self.series.remove(&series_ref)?;
        (saved.labels_hash == labels_hash).then_some(saved)
    }

    /// The saved state of a histogram output series.
    pub fn take_histogram(&mut self, hash: u64) -> Option<SavedHistogram> {
        self.histograms.remove(&hash)
    }

    /// Registers every saved series and histogram with `tracker`, so saves made before they
    /// show up again keep their state.
    pub fn register_all(&self, tracker: &DeliveryTracker) {
        for saved in self.histograms.values() {
            tracker.register_histogram(Arc::new(HistogramAck::new(saved.hash, Some(saved))));
        }
        for saved in self.series.values() {
            tracker.register(saved);
        }
    }
}

/// Saves the tracker's snapshot in `dir` (blocking I/O).
pub fn save(dir: &std::path::Path, tracker: &DeliveryTracker) -> std::io::Result<WalPosition> {
    // The marks file is written after every request; it is made durable with each save.
    tracker.sync_marks()?;
    let position = tracker.save(dir)?;
    if let Some(state) = tracker.aggregates().take() {
        aggregates::save(dir, &state)?;
    }
    Ok(position)
}

/// Longest wait between two saves, however long saving takes: the saved position must stay
/// well inside the WAL Prometheus keeps (it truncates every two hours), and a restart after a
/// crash re-reads at most this much WAL (at catch-up speed, seconds).
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// Saving may take at most one part in this of the time: a save lasting `d` is followed by a
/// wait of at least `d` times this.
const SAVE_TIME_SHARE: u32 = 1000;

/// The wait before the next save after one that took `took`: `interval`, or longer when saving
/// is slow (it writes every series' state, so it grows with the series count) so that saving
/// stays under a tenth of a percent of the time (750 k series take 0.1-0.3 s to save, a large
/// part of a steady state's few percent of a core when saved every 20 s), and at most
/// [`MAX_SAVE_INTERVAL`]. A longer wait
/// only means re-reading a little more WAL after a crash: what was delivered since is still
/// skipped exactly, by the delivery marks written after every request.
pub fn next_save_wait(interval: Duration, took: Duration) -> Duration {
    took.saturating_mul(SAVE_TIME_SHARE)
        .clamp(interval, MAX_SAVE_INTERVAL.max(interval))
}

/// CPU time (user and system) the calling thread has used, from `/proc/thread-self/stat`, in
/// the kernel's clock ticks of 10 ms (`USER_HZ`, 100 on Linux). `None` where it cannot be read.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // After the command name, which is in parentheses and may hold spaces: the state is the
    // third field of the line, so utime and stime (the 14th and 15th) are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Saves progress every `interval` (longer when saving uses much CPU, see [`next_save_wait`])
/// until cancelled. Failures are logged and retried next time.
pub async fn run_keeper(
    dir: PathBuf,
    tracker: Arc<DeliveryTracker>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut wait = interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.triggered() => return,
        }
        let (to, from) = (dir.clone(), tracker.clone());
        let started = std::time::Instant::now();
        let saved = tokio::task::spawn_blocking(move || {
            // What saving costs is the CPU it uses; time spent waiting for the disk to make the
            // files durable (long while other writes flood it) must not put off the next save.
            let cpu_before = thread_cpu_time();
            let saved = save(&to, &from);
            let cpu = cpu_before
                .zip(thread_cpu_time())
                .map(|(a, b)| b.saturating_sub(a));
            (saved, cpu)
        })
        .await;
        let took = started.elapsed();
        let (saved, cpu) = match saved {
            Ok((saved, cpu)) => (Ok(saved), cpu),
            Err(err) => (Err(err), None),
        };
        wait = next_save_wait(interval, cpu.unwrap_or(took));
        match saved {
            Ok(Ok(position)) => tracing::debug!(
                %position,
                took_ms = took.as_millis() as u64,
                cpu_ms = cpu.map(|c| c.as_millis() as u64),
                next_in_ms = wait.as_millis() as u64,
                "progress saved"
            ),
            Ok(Err(err)) => tracing::warn!(
                dir = %dir.display(),
                error = %err,
                "saving progress failed; will retry"
            ),
            Err(err) => tracing::warn!(
                dir = %dir.display(),
                error = %err,
                "saving progress failed; will retry"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_write_under_a_temporary_name_of_their_own_and_stale_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Another process's save in progress, under a name both could have chosen.
        let other = dir.path().join(format!("{}.tmp", file::STATE_FILE));
        std::fs::write(&other, b"half written").unwrap();
        file::save(dir.path(), &SavedProgress::default()).unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), b"half written");
        let marks = DeliveryMarks::create(dir.path(), &[]).unwrap();
        drop(marks);
        remove_stale_temporaries(dir.path());
        assert!(!other.exists());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [file::LEGACY_FILE, marks::MARKS_FILE, file::STATE_FILE]
        );
    }

    #[test]
    fn slow_saves_are_spaced_out_within_bounds() {
        let five = Duration::from_secs(5);
        assert_eq!(next_save_wait(five, Duration::from_millis(3)), five);
        assert_eq!(
            next_save_wait(five, Duration::from_millis(20)),
            Duration::from_secs(20)
        );
        assert_eq!(
            next_save_wait(five, Duration::from_secs(2)),
            MAX_SAVE_INTERVAL
        );
        // A configured interval longer than the cap is kept.
        let long = MAX_SAVE_INTERVAL * 2;
        assert_eq!(next_save_wait(long, Duration::from_secs(2)), long);
    }

    #[test]
    fn the_cpu_time_measure_counts_work_not_waiting() {
        let before = thread_cpu_time().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let slept = thread_cpu_time().unwrap() - before;
        assert!(slept < Duration::from_millis(50), "{slept:?}");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let worked = thread_cpu_time().unwrap() - before - slept;
        assert!(worked >= Duration::from_millis(100), "{worked:?}");
    }
}
