//! Autoscaling of the shard count within `--stackdriver.min-shards` and
//! `--stackdriver.max-shards`: a formula over smoothed rates ([`desired_shards`],
//! [`reader_bound`]) and probes of more shards while the reader waits on its own queues
//! ([`Prober`]).
//!
//! Owns only the decision; the router applies it. Must never change the count while requests
//! are failing: resharding waits for every shard to drain, which a failing backend would make
//! slow.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::shutdown::Shutdown;

use super::router::Resharder;
use crate::stats::{ExportStats, LagStats, ReaderStats, Stats};

/// How often the shard count is reconsidered. A catch-up after an outage is often over within
/// 15 s, so the first decision comes after [`FIRST_TICK`] of measurements and later ones every
/// 5 s (the smoothing keeps them from flapping).
pub const TICK: Duration = Duration::from_secs(5);
/// When the first decision is taken.
pub const FIRST_TICK: Duration = Duration::from_secs(1);

/// Weight of the newest interval in the smoothed rates (the original's).
const ALPHA: f64 = 0.2;

/// Share of an interval the reader must spend waiting on full queues before more shards are
/// probed.
const BLOCKED_SHARE: f64 = 0.1;
/// Share of an interval a reader waiting on few shards must spend waiting to be given
/// [`UNJUDGED_SHARDS`] at once.
const MOSTLY_WAITING: f64 = 0.5;
/// Shards given at once, without a probe, to a reader waiting most of the time on fewer. So
/// many cost little (about 200 kB each) and a half-second probe cannot judge them: while a
/// catch-up starts, what the process does besides sending (resolving every series, growing its
/// memory) and a busy machine move the points sent per second by more than they gain. Probing
/// goes on from there.
const UNJUDGED_SHARDS: usize = 16;
/// Gain in points sent per second a probe must bring to be kept.
const PROBE_GAIN: f64 = 1.1;
/// Half-second windows in a row that must each show the gain for a probe to be kept: one
/// window's measurement on a busy machine varies by about as much as the gain, and every
/// shard kept costs memory (about 200 kB).
const PROBE_WINDOWS: u32 = 2;
/// How long after a probe its effect is measured: long enough for the reshard's drain to be a
/// small part of it, short enough that a catch-up of a few seconds profits.
const PROBE_TICK: Duration = Duration::from_millis(500);
/// How long a failed probe's count is not tried again: at first briefly (what held the reader
/// back early in a catch-up, such as resolving every new series, often passes within seconds),
/// then twice as long after each failure in a row, up to [`PROBE_BACKOFF_MAX`].
const PROBE_BACKOFF: Duration = Duration::from_secs(2);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Limits of the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardBounds {
    /// Fewest shards (`--stackdriver.min-shards`), also the count at start.
    pub min: usize,
    /// Most shards (`--stackdriver.max-shards`).
    pub max: usize,
}

/// An exponentially weighted rate: the first interval sets it, later ones move it by
/// [`ALPHA`] of the difference.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma {
    rate: Option<f64>,
}

impl Ewma {
    fn tick(&mut self, events: f64, interval: Duration) {
        let instant = events / interval.as_secs_f64();
        self.rate = Some(match self.rate {
            None => instant,
            Some(r) => r + ALPHA * (instant - r),
        });
    }

    fn get(&self) -> f64 {
        self.rate.unwrap_or(0.0)
    }
}

/// The smoothed rates, per second, exponentially weighted as the original's were.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rates {
    /// Points queued.
    pub points_in: f64,
    /// Points in completed request attempts.
    pub points_out: f64,
    /// Seconds spent in requests.
    pub send_seconds: f64,
    /// WAL bytes written by Prometheus.
    pub wal_written: f64,
    /// WAL bytes read.
    pub wal_read: f64,
}

/// The shard count the rates call for, or `None` to keep `current`.
///
/// Sending time per point times the arrival rate is how many shards must be busy at once to keep
/// up; that is scaled up by half for headroom, and more while the WAL grows faster than it is
/// read (at most twice) or a backlog is being read (up to 2.5 times). A result within 70 % to
/// 110 % of `current` is ignored so the count does not flap.
pub fn desired_shards(rates: &Rates, current: usize, bounds: ShardBounds) -> Option<usize> {
    if rates.points_out <= 0.0 {
        return None;
    }
    let seconds_per_point = rates.send_seconds / rates.points_out;
    let mut desired = seconds_per_point * rates.points_in * 1.5;
    if rates.wal_written >= rates.wal_read {
        // Falling behind (or the reader is blocked). A read rate of zero must not be divided
        // by (infinity or NaN): a stalled reader asks for at most twice as many shards per tick.
        desired *= if rates.wal_read > 0.0 {
            (rates.wal_written / rates.wal_read).min(2.0)
        } else if rates.wal_written > 0.0 {
            2.0
        } else {
            1.0
        };
    } else {
        // Catching up: up to 2.5 times the shards while a backlog remains.
        desired *= 1.0 + (1.0 - rates.wal_written / rates.wal_read) * 1.5;
    }
    if !desired.is_finite() {
        return None;
    }
    let current_f = current as f64;
    if desired >= 0.7 * current_f && desired <= 1.1 * current_f {
        return None;
    }
    let lowest = bounds.min.max(1);
    let new = (desired.ceil() as usize).clamp(lowest, bounds.max.max(lowest));
    (new != current).then_some(new)
}

/// The formula's count, except that it may not grow while the reader catches up without waiting
/// on its queues: the reader is then the limit, and more shards cannot make it read faster
/// (while a backlog remains the formula asks for up to 2.5 times as many, each costing memory).
pub fn reader_bound(
    formula: Option<usize>,
    current: usize,
    rates: &Rates,
    interval: Interval,
) -> Option<usize> {
    let catching_up = rates.wal_read > rates.wal_written;
    if catching_up && interval.blocked < BLOCKED_SHARE {
        formula.filter(|f| *f <= current)
    } else {
        formula
    }
}

/// Counter readings at one tick.
#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    points_in: u64,
    points_out: u64,
    send_micros: u64,
    wal_read: u64,
    wal_lag: u64,
    retries: u64,
    reader_blocked_micros: u64,
}

/// What the controller measures: the export stage's counters, how much WAL the reader has
/// read, and how far behind it is (as the lag monitor measures it).
#[derive(Clone)]
pub struct Inputs {
    /// Points queued and sent, send time, retries, time the reader waited on full queues.
    pub export: Arc<ExportStats>,
    /// WAL bytes read.
    pub reader: Arc<ReaderStats>,
    /// WAL bytes not read yet.
    pub lag: Arc<LagStats>,
}

impl Inputs {
    /// The parts of `stats` the controller reads.
    pub fn of(stats: &Stats) -> Inputs {
        Inputs {
            export: stats.export.clone(),
            reader: stats.reader.clone(),
            lag: stats.lag.clone(),
        }
    }
}

impl Reading {
    fn take(inputs: &Inputs) -> Reading {
        let export = &inputs.export;
        Reading {
            points_in: export.samples_produced.load(Relaxed),
            points_out: export.points_attempted.load(Relaxed),
            send_micros: export.send_micros.load(Relaxed),
            wal_read: inputs.reader.wal_bytes_read(),
            wal_lag: inputs.lag.wal_lag_bytes.load(Relaxed),
            retries: export.retries.load(Relaxed),
            reader_blocked_micros: export.reader_blocked_micros.load(Relaxed),
        }
    }
}

/// The running controller's smoothed state.
#[derive(Debug, Default)]
struct Controller {
    last: Reading,
    points_in: Ewma,
    points_out: Ewma,
    send_seconds: Ewma,
    wal_written: Ewma,
    wal_read: Ewma,
    /// The last interval's unsmoothed points sent per second and reader waiting share.
    last_interval: Interval,
}

/// What the last interval alone measured.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Points in completed request attempts, per second.
    pub points_out: f64,
    /// Share of the interval the reader waited on full queues (0 to 1).
    pub blocked: f64,
}

/// A step up of the shards whose effect is being measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    from: usize,
    to: usize,
    points_out_before: f64,
    /// Windows measured so far that showed the gain.
    passed: u32,
}

/// The probing of more shards for a reader held back by its own queues, which the formula
/// cannot see: a fast backend answers quickly, so few shards seem enough while the reader waits
/// on full queues and reads the backlog slower than the machine allows.
///
/// While the reader spends a tenth of its time or more waiting, a probe doubles the shards (adds
/// half as many again from 16 on) and, over two half-second windows after the new count runs,
/// compares the points sent per second with the better of the last two windows before. A gain
/// of 10 % or more in both keeps the new count (the next probe may step up again); otherwise the
/// count goes back and nothing above it is tried for 2 s, twice as long after each failure in a
/// row (up to a minute; a free reader resets that). A reader waiting most of the time on fewer
/// than 16 shards gets 16 at once, unprobed. Probed counts are a floor while the reader keeps
/// waiting, and meanwhile the formula may neither lower the count below them nor raise it (a
/// busy backend makes requests slower the more shards send, so it would ask for ever more).
#[derive(Debug, Default)]
pub struct Prober {
    probe: Option<Probe>,
    /// Counts that proved better, kept while the reader waits.
    floor: usize,
    /// A count that brought nothing, and until when it is not tried again.
    ceiling: Option<(usize, tokio::time::Instant)>,
    /// Probes in a row that brought nothing.
    failures: u32,
    /// The count during the interval before the last one, and the points it sent per second.
    previous: Option<(usize, f64)>,
}

/// The count a probe from `current` tries: double up to [`UNJUDGED_SHARDS`], half as many
/// again above (each shard holds its queue, batch and request: smaller steps where they are
/// many).
fn probe_step(current: usize) -> usize {
    if current < UNJUDGED_SHARDS {
        current * 2
    } else {
        current + current.div_ceil(2)
    }
}

impl Prober {
    /// The count to ask for, given what the formula asks for (`None`: keep `current`) and the
    /// last interval's measurements.
    pub fn decide(
        &mut self,
        formula: Option<usize>,
        current: usize,
        interval: Interval,
        bounds: ShardBounds,
        now: tokio::time::Instant,
    ) -> Option<usize> {
        if self.ceiling.is_some_and(|(_, until)| now >= until) {
            self.ceiling = None;
        }
        let previous = self.previous.replace((current, interval.points_out));
        if let Some(probe) = self.probe.take() {
            if current != probe.to {
                // Something else changed the count meanwhile: the measurement means nothing.
                return formula;
            }
            let gained = interval.points_out >= probe.points_out_before * PROBE_GAIN;
            let kept = gained && probe.passed + 1 >= PROBE_WINDOWS;
            tracing::info!(
                from = probe.from,
                to = probe.to,
                points_per_second_before = probe.points_out_before as u64,
                points_per_second_after = interval.points_out as u64,
                reader_waiting_share = interval.blocked,
                gained,
                kept,
                "more shards tried"
            );
            if gained && !kept {
                // Measured again before it is kept.
                self.probe = Some(Probe {
                    passed: probe.passed + 1,
                    ..probe
                });
                return None;
            }
            if kept {
                self.floor = probe.to;
                self.failures = 0;
            } else {
                let backoff = PROBE_BACKOFF
                    .saturating_mul(1 << self.failures.min(8))
                    .min(PROBE_BACKOFF_MAX);
                self.failures += 1;
                self.ceiling = Some((probe.to, now + backoff));
                return Some(probe.from);
            }
        }
        if interval.blocked < BLOCKED_SHARE {
            // The reader is free: what held it back is over, and so are past failures.
            self.floor = 0;
            self.failures = 0;
            return formula;
        }
        let jump = UNJUDGED_SHARDS.min(bounds.max);
        if interval.blocked >= MOSTLY_WAITING
            && interval.points_out > 0.0
            && current < jump
            && self.ceiling.is_none_or(|(c, _)| jump < c)
        {
            self.floor = self.floor.max(jump);
            return Some(jump);
        }
        // While the reader waits, only probes grow the count, not the formula: it takes the time
        // requests take as what holds the reader back, but when the backend or the machine is
        // what is busy, that time grows with the count itself (requests queue), so it would ask
        // for ever more shards, each costing memory, for nothing.
        let formula = formula.filter(|f| *f <= current);
        let wanted = formula.unwrap_or(current).max(self.floor);
        let to = probe_step(current).min(bounds.max);
        let allowed = to > current && self.ceiling.is_none_or(|(c, _)| to < c);
        if wanted <= current && allowed && interval.points_out > 0.0 {
            // Compared with the better of the last two windows at this count: a probe started
            // right after a dip (this machine's or the backend's) would otherwise show a gain
            // that is only the dip's end.
            let before = match previous {
                Some((count, points_out)) if count == current => {
                    interval.points_out.max(points_out)
                }
                _ => interval.points_out,
            };
            self.probe = Some(Probe {
                from: current,
                to,
                points_out_before: before,
                passed: 0,
            });
            return Some(to);
        }
        (wanted != current).then_some(wanted)
    }

    /// Whether the last decision started a probe.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// When a failed probe's count may be tried again, while that waits.
    pub fn retry_at(&self) -> Option<tokio::time::Instant> {
        self.ceiling.map(|(_, until)| until)
    }
}

impl Controller {
    /// Folds the counters since the last tick into the rates; returns whether requests failed
    /// in that interval.
    fn tick(&mut self, now: Reading, interval: Duration) -> bool {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
        let read = d(now.wal_read, self.last.wal_read);
        // What Prometheus wrote is what was read plus how much the backlog grew.
        let written = (read + now.wal_lag as f64 - self.last.wal_lag as f64).max(0.0);
        self.points_in
            .tick(d(now.points_in, self.last.points_in), interval);
        self.points_out
            .tick(d(now.points_out, self.last.points_out), interval);
        self.send_seconds
            .tick(d(now.send_micros, self.last.send_micros) / 1e6, interval);
        self.wal_written.tick(written, interval);
        self.wal_read.tick(read, interval);
        let failed = now.retries > self.last.retries;
        let seconds = interval.as_secs_f64().max(1e-3);
        self.last_interval = Interval {
            points_out: d(now.points_out, self.last.points_out) / seconds,
            blocked: (d(now.reader_blocked_micros, self.last.reader_blocked_micros)
                / 1e6
                / seconds)
                .min(1.0),
        };
        self.last = now;
        failed
    }

    fn rates(&self) -> Rates {
        Rates {
            points_in: self.points_in.get(),
            points_out: self.points_out.get(),
            send_seconds: self.send_seconds.get(),
            wal_written: self.wal_written.get(),
            wal_read: self.wal_read.get(),
        }
    }
}

/// Reconsiders the shard count every `tick` until cancelled; a tick in which requests failed or
/// a reshard was still under way decides nothing.
pub async fn run(
    resharder: Resharder,
    inputs: Inputs,
    bounds: ShardBounds,
    tick: Duration,
    shutdown: Shutdown,
) {
    if bounds.min >= bounds.max {
        return;
    }
    let mut controller = Controller {
        last: Reading::take(&inputs),
        ..Controller::default()
    };
    let mut prober = Prober::default();
    let mut wait = FIRST_TICK.min(tick);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.triggered() => return,
        }
        wait = tick;
        let elapsed = std::mem::replace(&mut since, tokio::time::Instant::now()).elapsed();
        let failed = controller.tick(Reading::take(&inputs), elapsed);
        if failed || resharder.busy() {
            continue;
        }
        let current = resharder.current();
        let rates = controller.rates();
        let formula = reader_bound(
            desired_shards(&rates, current, bounds),
            current,
            &rates,
            controller.last_interval,
        );
        let decided = prober.decide(
            formula,
            current,
            controller.last_interval,
            bounds,
            tokio::time::Instant::now(),
        );
        if let Some(new) = decided.filter(|n| *n != current) {
            tracing::info!(
                from = current,
                to = new,
                points_in_per_second = rates.points_in as u64,
                send_seconds_per_point = rates.send_seconds / rates.points_out,
                "changing the number of shards"
            );
            resharder.request(new);
        }
        if prober.probing() {
            // A probe is judged on the next interval alone, soon, so that a catch-up profits;
            // that interval starts once the new count runs: the drain before it measures the
            // old shards, not the new ones.
            if !applied(&resharder, tick, &shutdown).await {
                return;
            }
            controller.tick(Reading::take(&inputs), since.elapsed());
            since = tokio::time::Instant::now();
            wait = PROBE_TICK.min(tick);
        } else if let Some(at) = prober.retry_at() {
            // Look again as soon as the failed count may be tried again.
            let until = at.saturating_duration_since(tokio::time::Instant::now());
            wait = until.clamp(PROBE_TICK.min(tick), tick);
        }
    }
}

/// Waits (at most `limit`) until a requested shard count is applied; false when cancelled.
async fn applied(resharder: &Resharder, limit: Duration, shutdown: &Shutdown) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while resharder.busy() && tokio::time::Instant::now() < until {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = shutdown.triggered() => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: ShardBounds = ShardBounds { min: 1, max: 200 };

    fn rates(points: f64, seconds_per_point: f64, written: f64, read: f64) -> Rates {
        Rates {
            points_in: points,
            points_out: points,
            send_seconds: points * seconds_per_point,
            wal_written: written,
            wal_read: read,
        }
    }

    #[test]
    fn shards_follow_the_time_sending_takes() {
        // 10 k points/s at 1 ms each: 10 busy shards, 15 with headroom.
        let r = rates(10_000.0, 0.001, 100.0, 100.0);
        assert_eq!(desired_shards(&r, 1, BOUNDS), Some(15));
        // Already 15 or close to it: no change.
        assert_eq!(desired_shards(&r, 15, BOUNDS), None);
        assert_eq!(desired_shards(&r, 14, BOUNDS), None);
        // Far more than needed: fewer.
        assert_eq!(desired_shards(&r, 40, BOUNDS), Some(15));
    }

    #[test]
    fn a_backlog_asks_for_more_and_bounds_hold() {
        // Catching up: the backlog shrinks, up to 2.5 times the shards.
        let r = rates(1_000.0, 0.002, 0.0, 1_000_000.0);
        assert_eq!(desired_shards(&r, 1, BOUNDS), Some(8));
        // Falling behind: the WAL grows twice as fast as it is read.
        let r = rates(1_000.0, 0.002, 2_000.0, 1_000.0);
        assert_eq!(desired_shards(&r, 1, BOUNDS), Some(6));
        // The reader is blocked (nothing read, WAL growing): no infinity, at most twice.
        let r = rates(1_000.0, 0.002, 2_000.0, 0.0);
        assert_eq!(desired_shards(&r, 1, BOUNDS), Some(6));
        let big = rates(1_000_000.0, 0.01, 1.0, 1.0);
        assert_eq!(desired_shards(&big, 4, BOUNDS), Some(200));
        let tiny = rates(1.0, 0.001, 1.0, 1.0);
        assert_eq!(
            desired_shards(&tiny, 4, ShardBounds { min: 2, max: 8 }),
            Some(2)
        );
    }

    fn interval(points_out: f64, blocked: f64) -> Interval {
        Interval {
            points_out,
            blocked,
        }
    }

    /// At `at`, with the reader waiting: a probe from `from` to twice as many shards starts,
    /// brings nothing, and the count goes back.
    fn failed_probe(p: &mut Prober, from: usize, at: tokio::time::Instant) {
        let busy = interval(130.0, 0.3);
        assert_eq!(p.decide(None, from, busy, BOUNDS, at), Some(2 * from));
        assert_eq!(p.decide(None, 2 * from, busy, BOUNDS, at), Some(from));
    }

    #[test]
    fn a_waiting_reader_makes_the_prober_double_while_it_helps() {
        let mut p = Prober::default();
        let t0 = tokio::time::Instant::now();
        // The reader waits a third of the time; the formula is content: probe 2 → 4.
        assert_eq!(p.decide(None, 2, interval(100.0, 0.3), BOUNDS, t0), Some(4));
        assert!(p.probing());
        // 4 shards sent 30 % more: measured again, then kept, and the next probe starts at once.
        assert_eq!(p.decide(None, 4, interval(130.0, 0.3), BOUNDS, t0), None);
        assert!(p.probing());
        assert_eq!(p.decide(None, 4, interval(132.0, 0.3), BOUNDS, t0), Some(8));
        // 8 brought nothing: back to 4, whatever the formula says.
        assert_eq!(
            p.decide(Some(9), 8, interval(131.0, 0.3), BOUNDS, t0),
            Some(4)
        );
        assert!(!p.probing());
        // For a while neither a probe nor the formula takes the reader-bound count higher,
        // and the proven floor holds against a formula asking for fewer.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            p.decide(Some(12), 4, interval(130.0, 0.3), BOUNDS, later),
            None
        );
        assert_eq!(
            p.decide(Some(2), 4, interval(130.0, 0.3), BOUNDS, later),
            None
        );
        // After it, probing resumes; each failure in a row doubles the wait, up to a minute.
        let mut at = t0 + Duration::from_secs(2);
        for wait in [4, 8, 16, 32, 60, 60] {
            failed_probe(&mut p, 4, at);
            let almost = at + Duration::from_secs(wait) - Duration::from_millis(1);
            assert_eq!(
                p.decide(None, 4, interval(130.0, 0.3), BOUNDS, almost),
                None
            );
            at += Duration::from_secs(wait);
        }
        // A free reader, too.
        let mut q = Prober::default();
        failed_probe(&mut q, 4, at);
        let free = at + Duration::from_secs(2);
        failed_probe(&mut q, 4, free);
        assert_eq!(q.decide(None, 4, interval(130.0, 0.0), BOUNDS, free), None);
        // The 4 s wait set before still holds; the next failure waits 2 s again, not 8.
        let later = free + Duration::from_secs(4);
        failed_probe(&mut q, 4, later);
        let soon = later + Duration::from_secs(2);
        assert_eq!(
            q.decide(None, 4, interval(130.0, 0.3), BOUNDS, soon),
            Some(8)
        );
        // A probe that helps starts the waits afresh.
        assert_eq!(p.decide(None, 4, interval(130.0, 0.3), BOUNDS, at), Some(8));
        assert_eq!(p.decide(None, 8, interval(200.0, 0.3), BOUNDS, at), None);
        assert_eq!(
            p.decide(None, 8, interval(200.0, 0.3), BOUNDS, at),
            Some(16)
        );
        assert_eq!(
            p.decide(None, 16, interval(200.0, 0.3), BOUNDS, at),
            Some(8)
        );
        let soon = at + Duration::from_secs(2);
        assert_eq!(
            p.decide(None, 8, interval(200.0, 0.3), BOUNDS, soon),
            Some(16)
        );
    }

    #[test]
    fn the_prober_leaves_a_free_reader_to_the_formula_and_keeps_bounds() {
        let mut p = Prober::default();
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            p.decide(Some(3), 6, interval(100.0, 0.05), BOUNDS, t0),
            Some(3)
        );
        assert_eq!(p.decide(None, 6, interval(100.0, 0.0), BOUNDS, t0), None);
        // Never beyond the maximum, and nothing to probe at it.
        let small = ShardBounds { min: 1, max: 5 };
        assert_eq!(p.decide(None, 4, interval(100.0, 0.9), small, t0), Some(5));
        assert_eq!(p.decide(None, 5, interval(200.0, 0.9), small, t0), None);
        // Nothing sent yet: nothing to compare a probe with.
        let mut q = Prober::default();
        assert_eq!(q.decide(None, 1, interval(0.0, 1.0), BOUNDS, t0), None);
        // Another change meanwhile voids the probe's measurement.
        assert_eq!(q.decide(None, 1, interval(10.0, 0.3), BOUNDS, t0), Some(2));
        assert_eq!(
            q.decide(Some(7), 5, interval(1.0, 0.3), BOUNDS, t0),
            Some(7)
        );
    }

    /// A prober that has decided nothing yet, and the time now.
    fn fresh() -> (Prober, tokio::time::Instant) {
        (Prober::default(), tokio::time::Instant::now())
    }

    #[test]
    fn a_probe_is_measured_against_the_better_of_the_last_two_windows() {
        let (mut p, t0) = fresh();
        assert_eq!(
            p.decide(None, 16, interval(200.0, 0.3), BOUNDS, t0),
            Some(24)
        );
        assert_eq!(
            p.decide(None, 24, interval(200.0, 0.3), BOUNDS, t0),
            Some(16)
        );
        // While 24 waits to be tried again: 220 points/s, then a dip to 150 as the wait ends.
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(
            p.decide(None, 16, interval(220.0, 0.3), BOUNDS, later),
            None
        );
        let after = t0 + Duration::from_secs(2);
        assert_eq!(
            p.decide(None, 16, interval(150.0, 0.3), BOUNDS, after),
            Some(24)
        );
        // 170 is 13 % above the dip, but below the window before it: no gain.
        assert_eq!(
            p.decide(None, 24, interval(170.0, 0.3), BOUNDS, after),
            Some(16)
        );
        // Below sixteen the count doubles; from sixteen on it grows by half.
        assert_eq!(probe_step(8), 16);
        assert_eq!(probe_step(16), 24);
        assert_eq!(probe_step(24), 36);
        assert_eq!(probe_step(25), 38);
    }

    #[test]
    fn a_gain_seen_in_one_window_only_is_not_kept() {
        let (mut p, t0) = fresh();
        assert_eq!(
            p.decide(None, 16, interval(100.0, 0.3), BOUNDS, t0),
            Some(24)
        );
        assert_eq!(p.decide(None, 24, interval(120.0, 0.3), BOUNDS, t0), None);
        // The second window shows less than the gain: back to 16, and not tried for a while.
        assert_eq!(
            p.decide(None, 24, interval(105.0, 0.3), BOUNDS, t0),
            Some(16)
        );
        assert!(!p.probing());
        assert_eq!(p.decide(None, 16, interval(100.0, 0.3), BOUNDS, t0), None);
    }

    #[test]
    fn a_reader_waiting_most_of_the_time_on_few_shards_gets_sixteen_at_once() {
        let (mut p, t0) = fresh();
        assert_eq!(
            p.decide(None, 2, interval(100.0, 0.8), BOUNDS, t0),
            Some(16)
        );
        assert!(!p.probing());
        // A formula asking for fewer is not followed while the reader waits; probing goes on
        // from sixteen.
        assert_eq!(
            p.decide(Some(3), 16, interval(100.0, 0.15), BOUNDS, t0),
            Some(24)
        );
        assert!(p.probing());
        // Nor does a formula asking for more than sixteen take it higher.
        let mut q = Prober::default();
        assert_eq!(
            q.decide(Some(20), 4, interval(100.0, 0.6), BOUNDS, t0),
            Some(16)
        );
        assert_eq!(
            q.decide(Some(40), 16, interval(100.0, 0.2), BOUNDS, t0),
            Some(24),
            "a probe, not the formula's count"
        );
        // Not beyond the maximum, and not over a count that just failed.
        let small = ShardBounds { min: 1, max: 6 };
        assert_eq!(
            Prober::default().decide(None, 2, interval(100.0, 0.9), small, t0),
            Some(6)
        );
        let mut r = Prober::default();
        assert_eq!(
            r.decide(None, 8, interval(100.0, 0.3), BOUNDS, t0),
            Some(16)
        );
        assert_eq!(r.decide(None, 16, interval(90.0, 0.3), BOUNDS, t0), Some(8));
        assert_eq!(r.decide(None, 8, interval(90.0, 0.9), BOUNDS, t0), None);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            r.decide(None, 8, interval(90.0, 0.9), BOUNDS, later),
            Some(16)
        );
    }

    #[test]
    fn a_free_reader_catching_up_gets_no_more_shards_from_the_formula() {
        let catching_up = rates(1_000_000.0, 0.00001, 1.0, 10.0);
        let live = rates(1_000_000.0, 0.00001, 10.0, 10.0);
        let free = interval(1e6, 0.0);
        assert_eq!(reader_bound(Some(40), 16, &catching_up, free), None);
        assert_eq!(reader_bound(Some(8), 16, &catching_up, free), Some(8));
        // Keeping pace with the WAL, the formula keeps ahead of the arrival rate.
        assert_eq!(reader_bound(Some(40), 16, &live, free), Some(40));
        // A waiting reader is the prober's to judge.
        assert_eq!(
            reader_bound(Some(40), 16, &catching_up, interval(1e6, 0.5)),
            Some(40)
        );
    }

    #[test]
    fn nothing_sent_means_no_change() {
        let r = Rates {
            points_in: 1000.0,
            ..Rates::default()
        };
        assert_eq!(desired_shards(&r, 3, BOUNDS), None);
    }

    #[test]
    fn rates_are_smoothed_and_failures_are_noticed() {
        let mut c = Controller::default();
        let second = Duration::from_secs(1);
        let mut now = Reading {
            points_in: 100,
            points_out: 100,
            send_micros: 100_000,
            wal_read: 1000,
            wal_lag: 500,
            retries: 0,
            reader_blocked_micros: 250_000,
        };
        assert!(!c.tick(now, second));
        assert_eq!(c.rates().points_in, 100.0);
        assert_eq!(c.rates().wal_written, 1500.0);
        assert_eq!(c.last_interval, interval(100.0, 0.25));
        now.points_in += 200;
        now.wal_read += 1000;
        now.wal_lag = 0;
        now.retries = 1;
        assert!(c.tick(now, second));
        // 100 + 0.2 × (200 − 100)
        assert!((c.rates().points_in - 120.0).abs() < 1e-9);
        // Written: 1000 read − 500 backlog shrink = 500; 1500 + 0.2 × (500 − 1500) = 1300.
        assert!((c.rates().wal_written - 1300.0).abs() < 1e-9);
    }
}
