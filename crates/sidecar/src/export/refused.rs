//! Series the API refused for a field of the series itself (its metric type, labels, kind,
//! value type or resource), once a refused request was split down to that one series. Every
//! later point of such a series would be refused the same way, each time after bisecting the
//! request that holds it; remembered for [`REMEMBER_FOR`], its points are dropped (and counted)
//! before sending instead. A refusal of one point (its value or interval) is not remembered.
//! This module only remembers and answers; the shard decides and counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// How long a refused series' points are dropped without asking the API again (a metric
/// descriptor may be fixed meanwhile, or a label value change).
pub const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// Fields of a `TimeSeries` that belong to the series, not to one point. Google's messages name
/// them as `Field timeSeries[3].metric.labels[0] had an invalid value …` (the emulator without
/// the `timeSeries[3].` part).
const SERIES_FIELDS: [&str; 7] = [
    "metric.",
    "metric_kind",
    "metricKind",
    "value_type",
    "valueType",
    "resource.",
    "resource",
];

/// Phrases of Google's messages that refuse a series whatever its point (a kind or value type
/// that differs from the metric descriptor's, too many labels).
const SERIES_PHRASES: [&str; 3] = [
    "Metric kind for metric",
    "Value type for metric",
    "would cause the metric",
];

/// The positions, in a request of `series` series, of the series an INVALID_ARGUMENT
/// `message` refuses for a field of the series itself. Google's message lists its failures as
/// `Field timeSeries[91].metric.type had an invalid value …: timeSeries[91]; Field …`; the
/// emulator's groups them as `timeSeries[1-3,7] (example …): Field metric.type had …; …`. A
/// failure that names no position counts for a request of one series only.
pub fn refused_positions(message: &str, series: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for part in message.split("; ") {
        if !names_series_field(part) {
            continue;
        }
        match part.split_once("timeSeries[") {
            Some((_, rest)) => {
                let ranges = rest.split(']').next().unwrap_or_default();
                out.extend(positions(ranges));
            }
            None if series == 1 => out.push(0),
            None => {}
        }
    }
    out.retain(|i| *i < series);
    out.sort_unstable();
    out.dedup();
    out
}

/// `0-2,5` → 0, 1, 2, 5 (nothing for anything else).
fn positions(ranges: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for range in ranges.split(',') {
        let (from, to) = range.split_once('-').unwrap_or((range, range));
        if let (Ok(from), Ok(to)) = (from.trim().parse::<usize>(), to.trim().parse::<usize>())
            && from <= to
            && to - from < 100_000
        {
            out.extend(from..=to);
        }
    }
    out
}

/// Whether one failure of a message names a field of the series (rather than of its point, or
/// nothing recognisable).
fn names_series_field(message: &str) -> bool {
    if SERIES_PHRASES.iter().any(|p| message.contains(p)) {
        return true;
    }
    let mut fields = message.split("Field ").skip(1).filter_map(|rest| {
        let path = rest.split_whitespace().next()?;
        // `timeSeries[3].metric.type` → `metric.type`; a bare `timeSeries[3]` is the request's.
        let path = match path.strip_prefix("timeSeries[") {
            Some(rest) => rest.split_once("].")?.1,
            None => path,
        };
        Some(path)
    });
    // Only when every field named is the series': a point's field may be named too.
    let mut any = false;
    let all_series = fields.all(|path| {
        any = true;
        SERIES_FIELDS
            .iter()
            .any(|f| path.starts_with(f) && (f.ends_with('.') || path.len() == f.len()))
    });
    any && all_series
}

/// The series refused lately, by prototype hash, with when each is asked about again.
#[derive(Debug, Default)]
pub struct RefusedSeries {
    until: Mutex<AHashMap<u64, Instant>>,
    /// Whether `until` may hold anything: the common case (nothing refused) takes no lock.
    any: AtomicBool,
}

impl RefusedSeries {
    /// Remembers that the series `hash` was refused at `now`; returns whether it was not
    /// remembered already (a request being split names the same series again).
    pub fn remember(&self, hash: u64, now: Instant) -> bool {
        let Ok(mut until) = self.until.lock() else {
            return false;
        };
        self.any.store(true, Relaxed);
        until
            .insert(hash, now + REMEMBER_FOR)
            .is_none_or(|previous| previous <= now)
    }

    /// Keeps, of `hashes` (with their positions), those of series refused lately, as of `now`;
    /// forgets the series whose time is up.
    pub fn refused_among(
        &self,
        now: Instant,
        hashes: impl Iterator<Item = (usize, u64)>,
    ) -> Vec<usize> {
        if !self.any.load(Relaxed) {
            return Vec::new();
        }
        let Ok(mut until) = self.until.lock() else {
            return Vec::new();
        };
        until.retain(|_, at| *at > now);
        self.any.store(!until.is_empty(), Relaxed);
        hashes
            .filter(|(_, hash)| until.contains_key(hash))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_fields_are_told_from_point_fields() {
        for series in [
            "timeSeries[0] (example metric.type=\"x\"): Field metric.type had an invalid value of \"x\"",
            "One or more TimeSeries could not be written: Field timeSeries[3].metric.labels[0] had an invalid value of \"a b\"",
            "Field resource.type had an invalid value of \"\": a monitored resource type is required",
            "Field metric_kind had an invalid value of CUMULATIVE.",
            "timeSeries[0]: Value type for metric custom.googleapis.com/x must be INT64, but is DOUBLE.",
            "The new labels would cause the metric custom.googleapis.com/x to have over 10 labels.",
        ] {
            assert!(names_series_field(series), "{series}");
        }
        for point in [
            "Field points[0].interval.end_time had an invalid value of \"1970\": Data points cannot be written more than 25h in the past.",
            "Field points[0].distributionValue had an invalid value: bad",
            "Field timeSeries had an invalid value: Duplicate TimeSeries encountered.",
            "Field metric.type had an invalid value; Field points[0].value had an invalid value",
            "Request was missing field name.",
            "",
        ] {
            assert!(!names_series_field(point), "{point}");
        }
    }

    #[test]
    fn positions_are_read_from_googles_and_the_emulators_messages() {
        let google = "One or more TimeSeries could not be written: Field timeSeries[91].metric.type \
            had an invalid value of \"x:y\": The metric type must be a URL-formatted string with \
            a domain and non-empty path.: timeSeries[91]; Field timeSeries[3].points[0].interval.\
            end_time had an invalid value: too old: timeSeries[3]; Field timeSeries[93].metric.\
            type had an invalid value of \"x:y\": bad: timeSeries[93]";
        assert_eq!(refused_positions(google, 100), vec![91, 93]);
        assert_eq!(refused_positions(google, 92), vec![91]);
        let emulator = "One or more TimeSeries could not be written: timeSeries[1-3,7] (example \
            metric.type=\"x\"): Field metric_kind had an invalid value of CUMULATIVE.; \
            timeSeries[4] (metric.type=\"y\"): Field points[0].value had an invalid value";
        assert_eq!(refused_positions(emulator, 10), vec![1, 2, 3, 7]);
        // No position: only a request of one series can be meant.
        let bare = "Field metric.labels[a b] had an invalid value";
        assert_eq!(refused_positions(bare, 1), vec![0]);
        assert!(refused_positions(bare, 2).is_empty());
        assert!(refused_positions("Field timeSeries[3] had an invalid value", 5).is_empty());
        assert!(refused_positions("timeSeries[9999999999-1] (x): Field metric.type", 5).is_empty());
    }

    #[test]
    fn a_refused_series_is_remembered_for_a_while() {
        let refused = RefusedSeries::default();
        let t0 = Instant::now();
        assert!(refused.refused_among(t0, [(0, 7)].into_iter()).is_empty());
        assert!(refused.remember(7, t0));
        assert!(!refused.remember(7, t0), "named again while being split");
        let batch = [(0, 5), (1, 7), (2, 9)];
        assert_eq!(refused.refused_among(t0, batch.into_iter()), vec![1]);
        let later = t0 + REMEMBER_FOR + Duration::from_secs(1);
        assert!(refused.refused_among(later, batch.into_iter()).is_empty());
        assert!(!refused.any.load(Relaxed));
    }
}
