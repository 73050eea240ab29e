//! How far the reader is behind Prometheus, measured every few seconds: unread bytes of WAL and
//! the age of the newest sample read. Feeds the lag gauges, the health monitor, and an info line
//! while catching up after a backlog (how far behind, and when it should have caught up).
//!
//! Only lists the WAL directory and reads file sizes; it must never open or read segments (that
//! is the follower's job) and never stops the sidecar, whatever it finds.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use prometheus_wal::WalPosition;

use crate::shutdown::Shutdown;

use super::health::{HealthMonitor, Snapshot};
use crate::stats::{Stats, unix_millis};

/// How often the lag is measured (and the catch-up line logged while behind).
pub const MEASURE_INTERVAL: Duration = Duration::from_secs(5);

/// Behind by less than this many seconds of WAL counts as keeping up.
const CATCH_UP_MIN_SECONDS: f64 = 60.0;
/// Behind by less than this many bytes counts as keeping up.
const CATCH_UP_MIN_BYTES: u64 = 256 * 1024;
/// Weight of the newest measurement in the catch-up rate's moving average.
const RATE_ALPHA: f64 = 0.3;

/// One lag measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Unread bytes.
    pub bytes: u64,
    /// Age of the newest sample read while unread bytes remain, else 0.
    pub seconds: f64,
}

/// Seconds behind: how old the newest sample read is, when there is still WAL to read.
pub fn lag_seconds(lag_bytes: u64, newest_sample_ms: Option<i64>, now: SystemTime) -> f64 {
    match newest_sample_ms {
        Some(t) if lag_bytes > 0 => (unix_millis(now) as i64 - t).max(0) as f64 / 1e3,
        _ => 0.0,
    }
}

/// Unread bytes of the WAL in `dir` for a reader whose last record ended at `read` and whose
/// follower has opened segment `following`: once the follower is past the segment of `read`, the
/// rest of that segment (the zero padding of its last page) was read, not skipped.
pub fn unread_bytes(
    dir: &std::path::Path,
    read: WalPosition,
    following: u64,
) -> Result<u64, prometheus_wal::WalError> {
    let from = if following > read.segment {
        WalPosition {
            segment: following,
            offset: 0,
        }
    } else {
        read
    };
    prometheus_wal::bytes_after(dir, from)
}

/// What the catch-up log says at one measurement.
#[derive(Debug, Clone, PartialEq)]
pub enum CatchUpEvent {
    /// Still behind: `eta` is `None` while the gap is not shrinking.
    Behind {
        /// The lag.
        lag: Lag,
        /// How fast the gap shrinks, in bytes per second (negative: growing).
        closing_bytes_per_second: f64,
        /// Estimated time until caught up.
        eta: Option<Duration>,
    },
    /// Was behind, is not any more.
    CaughtUp,
}

/// Tracks the gap between measurements to estimate when it closes.
#[derive(Debug, Default)]
pub struct CatchUp {
    previous: Option<(Instant, u64)>,
    closing_rate: Option<f64>,
    behind: bool,
}

impl CatchUp {
    /// Takes a measurement; returns what to log, if anything.
    pub fn update(&mut self, now: Instant, lag: Lag) -> Option<CatchUpEvent> {
        if let Some((then, bytes)) = self.previous {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let instant = (bytes as f64 - lag.bytes as f64) / dt;
                self.closing_rate = Some(match self.closing_rate {
                    Some(r) => r + RATE_ALPHA * (instant - r),
                    None => instant,
                });
            }
        }
        self.previous = Some((now, lag.bytes));
        let behind = lag.seconds >= CATCH_UP_MIN_SECONDS && lag.bytes >= CATCH_UP_MIN_BYTES;
        let was_behind = std::mem::replace(&mut self.behind, behind);
        if !behind {
            return was_behind.then_some(CatchUpEvent::CaughtUp);
        }
        let rate = self.closing_rate.unwrap_or(0.0);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(lag.bytes as f64 / rate));
        Some(CatchUpEvent::Behind {
            lag,
            closing_bytes_per_second: rate,
            eta,
        })
    }
}

/// Measures the lag every [`MEASURE_INTERVAL`] until cancelled: updates the lag gauges, feeds
/// `health`, and logs catch-up progress.
pub async fn run(
    stats: Arc<Stats>,
    health: Arc<HealthMonitor>,
    wal_dir: PathBuf,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(MEASURE_INTERVAL);
    let mut catch_up = CatchUp::default();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.triggered() => return,
        }
        let position = stats.reader.wal_position();
        let following = stats.wal_follow.snapshot().segment;
        let dir = wal_dir.clone();
        let sizes = tokio::task::spawn_blocking(move || {
            Ok::<_, prometheus_wal::WalError>((
                unread_bytes(&dir, position, following)?,
                prometheus_wal::wal_size(&dir)?,
            ))
        })
        .await;
        match sizes {
            Ok(Ok((lag_bytes, size))) => {
                warned = false;
                stats.lag.wal_lag_bytes.store(lag_bytes, Relaxed);
                stats.lag.wal_size_bytes.store(size, Relaxed);
            }
            Ok(Err(err)) if !warned => {
                warned = true;
                tracing::warn!(
                    wal = %wal_dir.display(),
                    error = %err,
                    "cannot measure how far behind the WAL reader is; keeping the last values"
                );
            }
            _ => {}
        }
        let lag_bytes = stats.lag.wal_lag_bytes.load(Relaxed);
        let seconds = lag_seconds(
            lag_bytes,
            stats.reader.newest_sample_ms(),
            SystemTime::now(),
        );
        stats.lag.wal_lag_ms.store((seconds * 1e3) as u64, Relaxed);
        let now = Instant::now();
        health.observe(now, Snapshot::of(&stats));
        if !stats.milestones.prometheus_ready() {
            continue;
        }
        let lag = Lag {
            bytes: lag_bytes,
            seconds,
        };
        match catch_up.update(now, lag) {
            Some(CatchUpEvent::Behind {
                lag,
                closing_bytes_per_second,
                eta,
            }) => tracing::info!(
                behind_bytes = lag.bytes,
                behind_seconds = lag.seconds.round() as u64,
                closing_bytes_per_second = closing_bytes_per_second.round() as i64,
                eta = %eta.map_or("unknown (not gaining yet)".to_string(), |d| {
                    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
                }),
                segment = position.segment,
                "catching up with the WAL"
            ),
            Some(CatchUpEvent::CaughtUp) => {
                tracing::info!(segment = position.segment, "caught up with the WAL")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_segments_padding_is_not_unread_once_the_follower_is_past_it() {
        use prometheus_wal::writer::SegmentWriter;
        use prometheus_wal::{Codec, FollowOptions, Follower, Next};
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("00000000")).unwrap();
        let mut w = SegmentWriter::new(file, Codec::None);
        w.log(b"only record").unwrap();
        // Closed by a rotation: the last page is padded with zeros.
        w.close().unwrap();
        std::fs::File::create(dir.path().join("00000001")).unwrap();
        let options = FollowOptions {
            poll_interval: Duration::from_millis(5),
            ..FollowOptions::default()
        };
        let counters = options.counters.clone();
        let mut follower = Follower::open(dir.path(), options).unwrap();
        let soon = || Instant::now() + Duration::from_millis(50);
        let read = match follower.next_record_before(soon()).unwrap() {
            Next::Record(r) => r.position,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            follower.next_record_before(soon()).unwrap(),
            Next::Idle
        ));
        let padding = prometheus_wal::bytes_after(dir.path(), read).unwrap();
        assert!(padding > 30_000, "{padding}");
        let following = counters.snapshot().segment;
        assert_eq!(following, 1);
        assert_eq!(unread_bytes(dir.path(), read, following).unwrap(), 0);
        // Still inside segment 0: its rest is unread.
        assert_eq!(unread_bytes(dir.path(), read, 0).unwrap(), padding);
    }

    #[test]
    fn lag_in_seconds_is_the_age_of_the_newest_sample_read_while_behind() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(lag_seconds(10, Some(400_000), now), 600.0);
        assert_eq!(lag_seconds(0, Some(400_000), now), 0.0, "caught up");
        assert_eq!(lag_seconds(10, None, now), 0.0, "nothing read yet");
        assert_eq!(lag_seconds(10, Some(2_000_000), now), 0.0, "clock skew");
    }

    #[test]
    fn backlog_is_reported_with_an_eta_until_caught_up() {
        let mut c = CatchUp::default();
        let t0 = Instant::now();
        let behind = |bytes| Lag {
            bytes,
            seconds: 3600.0,
        };
        // First measurement: behind, but no rate yet.
        match c.update(t0, behind(100_000_000)) {
            Some(CatchUpEvent::Behind { eta: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        // 10 MB closed in 5 s: 2 MB/s, 90 MB left → 45 s.
        match c.update(t0 + Duration::from_secs(5), behind(90_000_000)) {
            Some(CatchUpEvent::Behind {
                eta: Some(eta),
                closing_bytes_per_second,
                ..
            }) => {
                assert_eq!(closing_bytes_per_second, 2_000_000.0);
                assert_eq!(eta, Duration::from_secs(45));
            }
            other => panic!("{other:?}"),
        }
        let caught = Lag {
            bytes: 1000,
            seconds: 2.0,
        };
        assert_eq!(
            c.update(t0 + Duration::from_secs(10), caught),
            Some(CatchUpEvent::CaughtUp)
        );
        assert_eq!(c.update(t0 + Duration::from_secs(15), caught), None);
    }

    #[test]
    fn a_growing_gap_has_no_eta() {
        let mut c = CatchUp::default();
        let t0 = Instant::now();
        let lag = |bytes| Lag {
            bytes,
            seconds: 120.0,
        };
        c.update(t0, lag(1_000_000));
        match c.update(t0 + Duration::from_secs(5), lag(2_000_000)) {
            Some(CatchUpEvent::Behind { eta: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_or_recent_gap_is_not_a_backlog() {
        let mut c = CatchUp::default();
        let t0 = Instant::now();
        let small = Lag {
            bytes: 100,
            seconds: 3600.0,
        };
        let recent = Lag {
            bytes: 100_000_000,
            seconds: 10.0,
        };
        assert_eq!(c.update(t0, small), None);
        assert_eq!(c.update(t0 + Duration::from_secs(5), recent), None);
    }
}
