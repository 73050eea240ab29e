//! Exemplars (WAL record 4) onto distribution points: [`exemplar`] turns a WAL exemplar's labels
//! into a `SpanContext` and `DroppedLabels`, and [`attach`] puts it on the point of its series
//! that covers its time, keeping at most one per bucket, in increasing order of value (the API
//! refuses out-of-order and duplicate values: `google.api.Distribution.exemplars`).
//!
//! Must never look series up or queue points: the reader holds a commit's distribution points
//! until its exemplars are read, and asks here where each goes.

use prometheus_wal::Label;

use crate::model::{Buckets, Distribution, Exemplar, Point, PointValue};
use crate::stats::ExemplarDrop;

/// Label names Prometheus' exemplars carry a trace in (OpenTelemetry's convention).
const TRACE_ID: &str = "trace_id";
const SPAN_ID: &str = "span_id";
/// The label naming the project a span was written to, when not the metrics' (Google's
/// managed collection reads the same label).
const PROJECT_ID: &str = "project_id";

/// `n` hexadecimal digits: a trace ID is 32, a span ID 16 (`google.monitoring.v3.SpanContext`).
fn hex_id(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The exemplar of value `v` observed at `t` with `labels`: a trace when `trace_id` and
/// `span_id` are valid IDs, every other label (invalid IDs included) dropped labels.
pub fn exemplar(v: f64, t: i64, labels: &[Label]) -> Exemplar {
    let get = |name: &str| labels.iter().find(|l| l.name == name).map(|l| &l.value);
    let trace = match (get(TRACE_ID), get(SPAN_ID)) {
        (Some(trace), Some(span)) if hex_id(trace, 32) && hex_id(span, 16) => {
            Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
        }
        _ => None,
    };
    let project = trace
        .as_ref()
        .and_then(|_| get(PROJECT_ID))
        .filter(|p| !p.is_empty())
        .cloned();
    let in_trace =
        |name: &str| trace.is_some() && (name == TRACE_ID || name == SPAN_ID || name == PROJECT_ID);
    let dropped = labels
        .iter()
        .filter(|l| !in_trace(&l.name))
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    Exemplar {
        value: v,
        t_ms: t,
        trace,
        project,
        dropped,
    }
}

/// The bucket of `v` in `buckets` (0 is the underflow bucket).
fn bucket_of(buckets: &Buckets, v: f64) -> usize {
    match buckets {
        Buckets::Explicit(bounds) => bounds.partition_point(|b| *b <= v),
        Buckets::Exponential {
            num_finite,
            growth,
            scale,
        } => {
            if v < *scale {
                return 0;
            }
            let k = ((v.ln() - scale.ln()) / growth.ln()).floor() as i64 + 1;
            k.clamp(1, i64::from(*num_finite) + 1) as usize
        }
    }
}

/// Whether the point `p` covers time `t`: `t` is not after its end and, for a cumulative point,
/// after its start (the start is the baseline's time, whose observations are not in the point).
pub fn covers(p: &Point, t: i64) -> bool {
    t <= p.end_ms && p.start_ms.is_none_or(|start| start < t)
}

/// Puts `e` on distribution `d`: one exemplar per bucket (the newer wins), values increasing and
/// distinct.
fn add(d: &mut Distribution, e: Exemplar) -> Result<(), ExemplarDrop> {
    let bucket = bucket_of(&d.buckets, e.value);
    let same_bucket = d
        .exemplars
        .iter()
        .position(|x| bucket_of(&d.buckets, x.value) == bucket);
    if let Some(i) = same_bucket {
        if d.exemplars[i].t_ms >= e.t_ms {
            return Err(ExemplarDrop::BucketTaken);
        }
        d.exemplars.remove(i);
    }
    match d
        .exemplars
        .binary_search_by(|x| x.value.total_cmp(&e.value))
    {
        Ok(_) => return Err(ExemplarDrop::BucketTaken),
        Err(at) => d.exemplars.insert(at, e),
    }
    Ok(())
}

/// Attaches the exemplar `(v, t, labels)` to `point`, a distribution point of its series that
/// covers `t`.
pub fn attach(point: &mut Point, v: f64, t: i64, labels: &[Label]) -> Result<(), ExemplarDrop> {
    if !v.is_finite() {
        return Err(ExemplarDrop::InvalidValue);
    }
    let PointValue::Distribution(d) = &mut point.value else {
        return Err(ExemplarDrop::NotAHistogram);
    };
    add(d, exemplar(v, t, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn trace_and_span_ids_become_a_span_context_and_the_rest_dropped_labels() {
        let e = exemplar(
            0.5,
            1000,
            &labels(&[("span_id", SPAN), ("trace_id", TRACE), ("user", "ann")]),
        );
        assert_eq!(e.trace, Some((TRACE.into(), SPAN.into())));
        assert_eq!(e.project, None);
        assert_eq!(e.dropped, [("user".to_string(), "ann".to_string())]);
        // Not IDs: kept as labels, no span.
        let e = exemplar(0.5, 1000, &labels(&[("span_id", "x"), ("trace_id", TRACE)]));
        assert_eq!(e.trace, None);
        assert_eq!(e.dropped.len(), 2);
        let e = exemplar(
            0.5,
            1000,
            &labels(&[
                ("project_id", "traces"),
                ("span_id", SPAN),
                ("trace_id", TRACE),
            ]),
        );
        assert_eq!(e.project.as_deref(), Some("traces"));
        assert!(e.dropped.is_empty());
    }

    fn distribution(bounds: &[f64]) -> Point {
        Point {
            start_ms: Some(0),
            end_ms: 10_000,
            value: PointValue::Distribution(Box::new(Distribution {
                count: 0,
                mean: 0.0,
                sum_of_squared_deviation: 0.0,
                buckets: Buckets::Explicit(bounds.to_vec()),
                bucket_counts: Vec::new(),
                exemplars: Vec::new(),
            })),
        }
    }

    fn values(p: &Point) -> Vec<(f64, i64)> {
        let PointValue::Distribution(d) = &p.value else {
            panic!()
        };
        d.exemplars.iter().map(|e| (e.value, e.t_ms)).collect()
    }

    #[test]
    fn one_exemplar_per_bucket_the_newest_in_increasing_order() {
        let mut p = distribution(&[1.0, 2.0]);
        assert_eq!(attach(&mut p, 1.5, 10, &[]), Ok(()));
        assert_eq!(attach(&mut p, 0.5, 10, &[]), Ok(()));
        assert_eq!(attach(&mut p, 7.0, 10, &[]), Ok(()));
        assert_eq!(values(&p), [(0.5, 10), (1.5, 10), (7.0, 10)]);
        // Same bucket as 1.5: the newer replaces it, an older one is dropped.
        assert_eq!(attach(&mut p, 1.2, 20, &[]), Ok(()));
        assert_eq!(attach(&mut p, 1.9, 5, &[]), Err(ExemplarDrop::BucketTaken));
        assert_eq!(values(&p), [(0.5, 10), (1.2, 20), (7.0, 10)]);
        assert_eq!(
            attach(&mut p, f64::NAN, 30, &[]),
            Err(ExemplarDrop::InvalidValue)
        );
    }

    #[test]
    fn exponential_buckets_place_exemplars_by_the_options() {
        let buckets = Buckets::Exponential {
            num_finite: 3,
            growth: 2.0,
            scale: 1.0,
        };
        assert_eq!(bucket_of(&buckets, 0.5), 0);
        assert_eq!(bucket_of(&buckets, 1.0), 1);
        assert_eq!(bucket_of(&buckets, 3.0), 2);
        assert_eq!(bucket_of(&buckets, 100.0), 4);
    }

    #[test]
    fn a_point_covers_its_interval() {
        let p = distribution(&[1.0]);
        assert!(covers(&p, 1) && covers(&p, 10_000));
        assert!(!covers(&p, 10_001) && !covers(&p, 0));
    }
}
