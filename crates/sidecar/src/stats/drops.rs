//! Why the export stage gave points up: one counter per reason.
//!
//! Every point a shard takes from its queue ends either accepted by the API or counted here under
//! exactly one reason, so the counts add up to what was lost. This module only counts; the shard
//! decides.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::model::Invalid;

/// Why a point taken by a shard was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportDrop {
    /// Local validation: the API would refuse the point (and, for field errors, its request).
    Invalid(Invalid),
    /// Transient failures lasted longer than the retry budget (`--stackdriver.retry-budget`).
    RetryBudgetExhausted,
    /// The API refused the point for good; the status codes are in `point_count{status}`.
    Rejected,
    /// A point of a series the API refused lately for a field of the series (its metric type,
    /// labels, kind or resource): dropped without sending, as the API would refuse it again.
    SeriesRefused,
}

impl ExportDrop {
    /// Every reason, in display order.
    pub const ALL: [ExportDrop; 10] = [
        ExportDrop::Invalid(Invalid::MetricType),
        ExportDrop::Invalid(Invalid::Label),
        ExportDrop::Invalid(Invalid::Resource),
        ExportDrop::Invalid(Invalid::Interval),
        ExportDrop::Invalid(Invalid::Distribution),
        ExportDrop::Invalid(Invalid::TooOld),
        ExportDrop::Invalid(Invalid::InFuture),
        ExportDrop::RetryBudgetExhausted,
        ExportDrop::Rejected,
        ExportDrop::SeriesRefused,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportDrop::Invalid(reason) => reason.as_str(),
            ExportDrop::RetryBudgetExhausted => "retry_budget_exhausted",
            ExportDrop::Rejected => "rejected",
            ExportDrop::SeriesRefused => "series_refused",
        }
    }

    fn index(self) -> usize {
        // ALL holds every value, so the position always exists.
        ExportDrop::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// Points given up by the export stage, by reason.
#[derive(Debug, Default)]
pub struct ExportDrops {
    counts: [AtomicU64; ExportDrop::ALL.len()],
}

impl ExportDrops {
    /// Counts `n` points given up for `reason`.
    pub fn add(&self, reason: ExportDrop, n: u64) {
        self.counts[reason.index()].fetch_add(n, Relaxed);
    }

    /// Points given up for `reason` so far.
    pub fn count(&self, reason: ExportDrop) -> u64 {
        self.counts[reason.index()].load(Relaxed)
    }

    /// Points given up for any reason so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_counter_and_the_total_adds_them() {
        let drops = ExportDrops::default();
        for (i, reason) in ExportDrop::ALL.iter().enumerate() {
            drops.add(*reason, i as u64 + 1);
        }
        for (i, reason) in ExportDrop::ALL.iter().enumerate() {
            assert_eq!(drops.count(*reason), i as u64 + 1, "{}", reason.as_str());
        }
        assert_eq!(
            drops.total(),
            (1..=ExportDrop::ALL.len() as u64).sum::<u64>()
        );
    }
}
