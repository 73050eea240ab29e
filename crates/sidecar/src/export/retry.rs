//! The retry policy: which failed requests are sent again, how long to wait before each
//! attempt (jittered exponential backoff), and when a batch's budget is spent. It must never
//! send or drop points itself; the shard acts on what it decides.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use super::client::SendError;

/// How long a failing request is retried before its points are given up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First wait after a transient failure.
    pub min_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Total time a batch may spend retrying before its points are dropped (counted), so that
    /// one bad batch can never stall a shard for ever.
    pub budget: Duration,
}

/// Least time between two warnings about retried requests, per shard.
const RETRY_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Default of `--stackdriver.retry-budget`: long enough to ride out a short outage of the API
/// without losing points, short enough that a shard is never stuck for long.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(300);

/// What a shard does with a group of points after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextStep {
    /// Wait this long, then send the group again.
    Retry(Duration),
    /// Transient failures outlasted the retry budget: give the group up.
    BudgetExhausted,
    /// The API wrote some series and named the others (a `CreateTimeSeriesSummary`).
    PartialFailure,
    /// The request was refused as a whole: send each half on its own to isolate the bad points.
    Split,
    /// The API refused the points for good.
    Rejected,
}

/// The retry state of one batch: its budget runs from when it was first sent.
pub(super) struct Retries {
    policy: RetryPolicy,
    started: Instant,
    backoff: Duration,
}

impl Retries {
    /// A batch first sent now.
    pub(super) fn start(policy: RetryPolicy) -> Retries {
        Retries {
            policy,
            started: Instant::now(),
            backoff: policy.min_backoff,
        }
    }

    /// A new group of the batch (a half after a split) starts from the shortest wait again,
    /// within the same budget.
    pub(super) fn next_group(&mut self) {
        self.backoff = self.policy.min_backoff;
    }

    /// Time since the batch was first sent.
    pub(super) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// What to do after `err` for a group of `points` points.
    pub(super) fn after(
        &mut self,
        err: &SendError,
        points: usize,
        jitter: &mut Jitter,
    ) -> NextStep {
        if err.retryable {
            let wait = jitter.spread(self.backoff);
            if self.started.elapsed() + wait > self.policy.budget {
                return NextStep::BudgetExhausted;
            }
            self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
            NextStep::Retry(wait)
        } else if err.has_summary() {
            NextStep::PartialFailure
        } else if err.code == Code::InvalidArgument && points > 1 {
            NextStep::Split
        } else {
            NextStep::Rejected
        }
    }
}

/// Lets a warning through at most once per [`RETRY_WARNING_EVERY`].
#[derive(Default)]
pub(super) struct WarnEvery {
    last: Option<Instant>,
}

impl WarnEvery {
    /// Whether a warning may be logged now (and if so, the next one waits).
    pub(super) fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|at| now.duration_since(at) >= RETRY_WARNING_EVERY)
        {
            self.last = Some(now);
            return true;
        }
        false
    }
}

/// Spreads retry waits so that shards failing together do not retry together: each wait is
/// drawn uniformly from half the backoff to the full backoff. A small xorshift generator is
/// enough; nothing depends on its quality.
pub(super) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(super) fn new(shard: usize) -> Jitter {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((shard as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Jitter { state: seed | 1 }
    }

    pub(super) fn spread(&mut self, backoff: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let fraction = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        backoff.mul_f64(0.5 + 0.5 * fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_waits_between_half_and_all_of_the_backoff() {
        let mut j = Jitter::new(3);
        let waits: Vec<Duration> = (0..1000)
            .map(|_| j.spread(Duration::from_secs(1)))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(500) && *w <= Duration::from_secs(1))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 900);
    }

    fn error(code: Code, retryable: bool) -> SendError {
        SendError::local(code, "x".into(), retryable)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            budget: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_doubling_until_the_budget_is_spent() {
        let mut retries = Retries::start(policy());
        let mut jitter = Jitter::new(0);
        let unavailable = error(Code::Unavailable, true);
        let mut waits = Vec::new();
        loop {
            match retries.after(&unavailable, 3, &mut jitter) {
                NextStep::Retry(wait) => {
                    waits.push(wait);
                    tokio::time::sleep(wait).await;
                }
                NextStep::BudgetExhausted => break,
                other => panic!("{other:?}"),
            }
        }
        let caps = [100, 200, 400, 400, 400, 400, 400, 400, 400];
        for (wait, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*wait >= cap / 2 && *wait <= cap, "{waits:?}");
        }
        assert!(
            retries.elapsed() <= Duration::from_secs(2),
            "{:?}",
            retries.elapsed()
        );
        assert!(waits.len() >= 5, "{waits:?}");
    }

    #[test]
    fn permanent_failures_are_split_rejected_or_partial() {
        let mut retries = Retries::start(policy());
        let mut jitter = Jitter::new(0);
        let invalid = error(Code::InvalidArgument, false);
        assert_eq!(retries.after(&invalid, 2, &mut jitter), NextStep::Split);
        assert_eq!(retries.after(&invalid, 1, &mut jitter), NextStep::Rejected);
        let denied = error(Code::PermissionDenied, false);
        assert_eq!(retries.after(&denied, 5, &mut jitter), NextStep::Rejected);
        let mut partial = invalid.clone();
        partial.succeeded_points = Some(1);
        assert_eq!(
            retries.after(&partial, 5, &mut jitter),
            NextStep::PartialFailure
        );
    }
}
