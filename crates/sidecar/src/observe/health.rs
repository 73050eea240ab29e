//! What `/-/healthy` ([`HealthMonitor::healthy`]) and `/-/ready` ([`ready`]) answer, and why.
//!
//! Owns the rules. Must never act on its verdicts: this module only judges.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_wal::WalPosition;

use crate::stats::Stats;

/// How long a stall is tolerated before the sidecar calls itself unhealthy.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(300);

/// An answer with the reason, given as the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// 200 when true, 503 when false.
    pub ok: bool,
    /// One line of plain text.
    pub reason: String,
}

impl Verdict {
    fn ok(reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: true,
            reason: reason.into(),
        }
    }

    fn failing(reason: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// The pipeline's state at one moment, as the health rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Reading has started (Prometheus was found ready).
    pub reading: bool,
    /// Where the reader is.
    pub position: WalPosition,
    /// Unread bytes of WAL.
    pub lag_bytes: u64,
    /// Points accepted so far.
    pub points_sent: u64,
    /// Requests attempted so far.
    pub requests: u64,
    /// Points waiting in the queues.
    pub queue_length: u64,
}

impl Snapshot {
    /// The current values of `stats` (`lag_bytes` as last measured).
    pub fn of(stats: &Stats) -> Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        Snapshot {
            reading: stats.milestones.prometheus_ready(),
            position: stats.reader.wal_position(),
            lag_bytes: stats.lag.wal_lag_bytes.load(Relaxed),
            points_sent: stats.export.points_sent.load(Relaxed),
            requests: stats.export.requests.load(Relaxed),
            queue_length: stats.export.queue_length.load(Relaxed),
        }
    }
}

#[derive(Debug)]
struct Observed {
    last: Snapshot,
    /// Last time the reader moved, or had nothing to read.
    reader_progress_at: Instant,
    /// Last time points were accepted, or there was nothing to send.
    send_progress_at: Instant,
}

/// Remembers when the reader and the sender last made progress, from snapshots taken every few
/// seconds ([`HealthMonitor::observe`]), so a check is a cheap read and the rules can be tested
/// with made-up clocks.
#[derive(Debug)]
pub struct HealthMonitor {
    stall_after: Duration,
    observed: Mutex<Option<Observed>>,
}

impl HealthMonitor {
    /// A monitor that reports a stall once nothing moved for `stall_after`.
    pub fn new(stall_after: Duration) -> HealthMonitor {
        HealthMonitor {
            stall_after,
            observed: Mutex::new(None),
        }
    }

    /// Records the state at `now`.
    pub fn observe(&self, now: Instant, s: Snapshot) {
        let Ok(mut guard) = self.observed.lock() else {
            return;
        };
        let Some(o) = guard.as_mut() else {
            *guard = Some(Observed {
                last: s,
                reader_progress_at: now,
                send_progress_at: now,
            });
            return;
        };
        if !s.reading || s.lag_bytes == 0 || s.position != o.last.position {
            o.reader_progress_at = now;
        }
        let idle = s.requests == o.last.requests && s.queue_length == 0;
        if s.points_sent > o.last.points_sent || idle {
            o.send_progress_at = now;
        }
        o.last = s;
    }

    /// The liveness verdict at `now`. Healthy means alive and making progress: the WAL reader
    /// moves while there is unread WAL, and the Monitoring API accepts points while there are
    /// points to send. Waiting for Prometheus is not unhealthy: restarting the sidecar would not
    /// make Prometheus come up sooner.
    pub fn healthy(&self, now: Instant) -> Verdict {
        let Ok(guard) = self.observed.lock() else {
            return Verdict::failing("health state unavailable (a thread panicked)");
        };
        let Some(o) = guard.as_ref() else {
            return Verdict::ok("starting");
        };
        let s = o.last;
        if !s.reading {
            return Verdict::ok(
                "starting: waiting for the WAL directory's lock or for Prometheus (see /-/ready)",
            );
        }
        let reader_stalled = now.saturating_duration_since(o.reader_progress_at);
        if reader_stalled > self.stall_after {
            return Verdict::failing(format!(
                "WAL reader stuck: no progress from {} for {} while {} bytes of WAL are unread",
                s.position,
                whole_seconds(reader_stalled),
                s.lag_bytes
            ));
        }
        let send_stalled = now.saturating_duration_since(o.send_progress_at);
        if send_stalled > self.stall_after {
            return Verdict::failing(format!(
                "sending stuck: the Monitoring API accepted no points for {} while points are \
                 waiting ({} queued)",
                whole_seconds(send_stalled),
                s.queue_length
            ));
        }
        Verdict::ok(format!(
            "ok: reading {}, {} bytes behind; {} points accepted",
            s.position, s.lag_bytes, s.points_sent
        ))
    }
}

/// The readiness verdict: the pipeline is up end to end, i.e. the WAL is open, Prometheus
/// answered `/-/ready`, and the API accepted a first batch.
pub fn ready(stats: &Stats) -> Verdict {
    if let Some(holder) = stats.milestones.lock_holder() {
        Verdict::failing(format!(
            "not ready: another sidecar ({holder}) is using the WAL directory; waiting for it \
             to exit"
        ))
    } else if !stats.milestones.wal_open() {
        Verdict::failing("not ready: the WAL directory is not open yet")
    } else if !stats.milestones.prometheus_ready() {
        Verdict::failing("not ready: waiting for Prometheus to answer /-/ready")
    } else if stats.export.last_success().is_none() {
        Verdict::failing("not ready: the Monitoring API has not accepted a batch yet")
    } else {
        Verdict::ok("ready")
    }
}

fn whole_seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(300);

    fn reading(segment: u64, offset: u64, lag: u64) -> Snapshot {
        Snapshot {
            reading: true,
            position: WalPosition { segment, offset },
            lag_bytes: lag,
            ..Snapshot::default()
        }
    }

    /// Observes `snapshots` one minute apart and returns the verdict after the last.
    fn after(snapshots: &[Snapshot]) -> Verdict {
        let monitor = HealthMonitor::new(STALL);
        let t0 = Instant::now();
        let mut now = t0;
        for s in snapshots {
            monitor.observe(now, *s);
            now += Duration::from_secs(60);
        }
        monitor.healthy(now - Duration::from_secs(60))
    }

    #[test]
    fn healthy_while_starting_and_waiting_for_prometheus() {
        let monitor = HealthMonitor::new(STALL);
        assert!(monitor.healthy(Instant::now()).ok);
        let waiting = Snapshot {
            lag_bytes: 1000,
            ..Snapshot::default()
        };
        let v = after(&[waiting; 10]);
        assert!(
            v.ok && v
                .reason
                .contains("waiting for the WAL directory's lock or for Prometheus"),
            "{v:?}"
        );
    }

    #[test]
    fn reader_not_moving_while_the_wal_has_unread_bytes_is_unhealthy() {
        let v = after(&[reading(3, 100, 5000); 7]);
        assert!(!v.ok, "{v:?}");
        assert!(
            v.reason.contains("WAL reader stuck") && v.reason.contains("segment 3 offset 100"),
            "{v:?}"
        );
        assert!(v.reason.contains("5000 bytes"), "{v:?}");
    }

    #[test]
    fn reader_at_the_end_of_the_wal_is_healthy_however_long_it_waits() {
        assert!(after(&[reading(3, 100, 0); 20]).ok);
    }

    #[test]
    fn reader_moving_slowly_is_healthy() {
        let snaps: Vec<_> = (0..20).map(|i| reading(3, 100 + i, 5000)).collect();
        assert!(after(&snaps).ok);
    }

    #[test]
    fn stall_shorter_than_the_limit_is_tolerated() {
        assert!(after(&[reading(3, 100, 5000); 5]).ok);
    }

    #[test]
    fn failing_requests_with_points_waiting_are_unhealthy() {
        let snaps: Vec<_> = (0..7)
            .map(|i| Snapshot {
                requests: i * 10,
                queue_length: 2400,
                points_sent: 50,
                ..reading(3, 100, 0)
            })
            .collect();
        let v = after(&snaps);
        assert!(!v.ok, "{v:?}");
        assert!(v.reason.contains("sending stuck") && v.reason.contains("2400 queued"));
    }

    #[test]
    fn nothing_to_send_is_healthy() {
        let idle = Snapshot {
            requests: 10,
            points_sent: 500,
            ..reading(3, 100, 0)
        };
        assert!(after(&[idle; 20]).ok);
    }

    #[test]
    fn accepted_points_keep_it_healthy_despite_some_failures() {
        let snaps: Vec<_> = (0..20)
            .map(|i| Snapshot {
                requests: i * 10,
                points_sent: i * 100,
                queue_length: 300,
                ..reading(3, 100 + i, 100)
            })
            .collect();
        assert!(after(&snaps).ok);
    }

    #[test]
    fn ready_needs_the_wal_prometheus_and_a_first_accepted_batch() {
        let stats = Stats::default();
        assert!(ready(&stats).reason.contains("WAL"));
        stats.milestones.mark_wal_open();
        assert!(ready(&stats).reason.contains("Prometheus"));
        stats.milestones.mark_prometheus_ready();
        let v = ready(&stats);
        assert!(!v.ok && v.reason.contains("accepted"), "{v:?}");
        stats.export.points_sent(0);
        assert!(!ready(&stats).ok, "an empty success is no batch");
        stats.export.points_sent(3);
        assert_eq!(ready(&stats), Verdict::ok("ready"));
    }
}
