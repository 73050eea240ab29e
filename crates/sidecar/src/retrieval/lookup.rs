//! Resolving one series entry on the reader's thread: blocking on the async Prometheus
//! lookups (allowed: the reader is not a runtime thread), waiting while Prometheus cannot
//! answer rather than dropping samples, and counting series that are not exported, with a few
//! examples logged. It must never convert or queue points.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::convert::CounterState;
use super::resolve::{Resolution, Resolver, SeriesSources};
use super::series::{SeriesEntry, SeriesState};
use crate::stats::{DropReason, ReaderStats};

/// How many example series are logged per drop reason.
const EXAMPLES_PER_REASON: u64 = 5;

/// Resolves `entry`. While Prometheus cannot answer (unreachable, not ready, or listing no
/// targets yet after a restart) the reader waits and asks again rather than dropping samples:
/// the WAL on disk is the buffer. `stop` (set at shutdown) ends the wait.
pub(super) fn resolve_entry<S: SeriesSources>(
    resolver: &Resolver<S>,
    runtime: &Handle,
    stats: &ReaderStats,
    entry: &mut SeriesEntry,
    stop: Option<&AtomicBool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    let outcome = loop {
        let labels = entry.labels.to_labels();
        let outcome = runtime.block_on(resolver.resolve(&labels));
        let transient = match &outcome {
            Err(err) => {
                if !warned {
                    tracing::warn!(
                        series = %display_labels(&labels),
                        error = %err,
                        "looking up a series' target or metadata failed; reading pauses until Prometheus answers"
                    );
                    warned = true;
                }
                true
            }
            Ok(_) => false,
        };
        let stopping = stop.is_some_and(|s| s.load(Relaxed));
        if !transient || stopping {
            break outcome;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    let now = Instant::now();
    match outcome {
        Ok(Resolution::Resolved(series)) => {
            entry.state = SeriesState::Resolved {
                series,
                counter: CounterState::default(),
            };
        }
        Ok(Resolution::Dropped(reason)) => {
            if entry.mark_unresolved(Some(reason), now) {
                count_dropped(stats, reason, entry);
            }
        }
        Err(err) => {
            // Only when shutting down.
            entry.mark_unresolved(None, now);
            tracing::debug!(error = %err, "series left unresolved at shutdown");
        }
    }
}

/// Counts a series not exported for `reason` (once per series and reason) by reason and metric
/// name, and logs it if it is one of the first few examples of the reason.
pub(super) fn count_dropped(stats: &ReaderStats, reason: DropReason, entry: &SeriesEntry) {
    let name = entry.labels.get("__name__").unwrap_or("");
    stats.series_dropped_metric(reason, name);
    let shown = display_labels(&entry.labels.to_labels());
    stats.remember_dropped_example(reason, shown.clone());
    let n = stats.series_dropped_count(reason);
    if reason == DropReason::InvalidMetricName && n <= EXAMPLES_PER_REASON {
        // Never written whatever Prometheus answers: say so loudly, with the fix.
        tracing::warn!(
            reason = reason.as_str(),
            series = %shown,
            example = n,
            "series not exported: Cloud Monitoring refuses its metric type (a ':' is only \
             allowed under prometheus.googleapis.com); give the metric a name without colons \
             in metric_renames of the --config-file (only the first few examples are logged)"
        );
    } else if n <= EXAMPLES_PER_REASON {
        tracing::info!(
            reason = reason.as_str(),
            series = %shown,
            example = n,
            retried = reason != DropReason::Filtered,
            "series not exported (only the first few examples per reason are logged)"
        );
    }
}

/// `name{a="b",…}` for log messages.
fn display_labels(labels: &[prometheus_wal::Label]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value.as_str())
        .unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{name}{{{}}}", rest.join(","))
}
