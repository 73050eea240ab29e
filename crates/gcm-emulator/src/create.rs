//! `CreateTimeSeries`: one request in, the API's answer out ([`create_time_series`]).
//!
//! Owns the request-level rules (the `projects/<id>` name, at least one and at most 200 series,
//! no series twice) and the shape of the answer. It must never check a series' fields itself
//! ([`crate::validate`]) nor compare with stored data ([`crate::store`]).

use std::collections::{HashMap, HashSet};

use gcm_api::api::metric_descriptor::MetricKind;
use gcm_api::monitoring::create_time_series_summary::Error as SummaryError;
use gcm_api::monitoring::{CreateTimeSeriesRequest, CreateTimeSeriesSummary, TimeSeries};
use gcm_api::{rpc, status_with_summary};
use tonic::{Code, Status};

use crate::EmulatorConfig;
use crate::identity::{SeriesKey, describe};
use crate::reason::RejectReason;
use crate::store::{State, Store};
use crate::time::Nanos;
use crate::validate::{self, Problem, ProblemClass};

/// The API's limit on series per request.
pub const MAX_SERIES_PER_REQUEST: usize = 200;

/// Longest error message sent back; the rest is summarised. gRPC carries the message twice in
/// trailers (as `grpc-message` and inside the base64 `grpc-status-details-bin`), and clients cap
/// the trailer size (tonic's at 16 KiB), so a longer message would turn the answer into a
/// protocol error.
const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// The project id of a `projects/<id>` resource name.
pub(crate) fn project_id(name: &str) -> Option<&str> {
    let id = name.strip_prefix("projects/")?;
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    valid.then_some(id)
}

/// Handles one request against `store`, at wall-clock time `now`. Series `i` with
/// `refused[i]` set is refused as an injected partial failure (missing entries: not refused).
///
/// Answers as the real API does:
/// * a request-level problem refuses the whole request: `INVALID_ARGUMENT`, nothing written;
/// * otherwise each series stands alone. The good ones are written; if any failed, the answer is
///   `INVALID_ARGUMENT` with the message `One or more TimeSeries could not be written: …` naming
///   each failed series by index and metric, and a `CreateTimeSeriesSummary` in the status
///   details counting total, written and failed points. Reports from 2023 to 2025 show the API
///   answering field errors this way too (distributions without bounds, start not before end,
///   sampling period), with both the prefix and the `timeSeries[i] (metric.type=…)` naming;
///   duplicates, bad metric types and ordering were per series already in 2019–2020;
/// * with `field_errors_reject_request`, a field error refuses the whole request instead, which
///   is what 2018–2020 reports show (`Field timeSeries[1].points[0]… had an invalid value`
///   without the prefix).
pub(crate) fn create_time_series(
    store: &Store,
    cfg: &EmulatorConfig,
    request: &CreateTimeSeriesRequest,
    refused: &[bool],
    now: Nanos,
) -> Result<(), Status> {
    let mut state = store.lock();
    state.count_request();
    let all = &request.time_series;
    let total_points: u64 = all.iter().map(|ts| ts.points.len() as u64).sum();

    let Some(project) = project_id(&request.name) else {
        state.count_outcome(0, &[(RejectReason::InvalidName, total_points)]);
        return Err(Status::invalid_argument(format!(
            "Field name had an invalid value of {:?}: it must have the form \
             projects/[PROJECT_ID_OR_NUMBER].",
            request.name
        )));
    };
    if all.is_empty() {
        state.count_outcome(0, &[(RejectReason::EmptyRequest, 0)]);
        return Err(Status::invalid_argument(
            "Request was missing field timeSeries.",
        ));
    }
    if all.len() > MAX_SERIES_PER_REQUEST {
        state.count_outcome(0, &[(RejectReason::TooManySeries, total_points)]);
        return Err(Status::invalid_argument(format!(
            "Field timeSeries had an invalid value: at most {MAX_SERIES_PER_REQUEST} TimeSeries \
             can be written in one request; this one has {}, starting with \
             timeSeries[{MAX_SERIES_PER_REQUEST}] ({}) beyond the limit.",
            all.len(),
            describe(&all[MAX_SERIES_PER_REQUEST])
        )));
    }

    let duplicates = find_duplicates(all);
    if cfg.field_errors_reject_request {
        refuse_on_field_errors(&mut state, project, all, &duplicates, cfg, now)?;
    }

    let mut failed: Vec<(usize, Problem)> = Vec::new();
    let mut accepted = 0;
    for (i, ts) in all.iter().enumerate() {
        let outcome = match duplicates.get(&i) {
            Some(&first) => Err(duplicate_problem(first)),
            None if refused.get(i).copied().unwrap_or(false) => Err(Problem::series(
                RejectReason::InjectedFault,
                "Injected partial failure: this series was not written.".to_owned(),
            )),
            None => {
                let metric_type = ts
                    .metric
                    .as_ref()
                    .map(|m| m.r#type.as_str())
                    .unwrap_or_default();
                let known = state.known_kind(project, metric_type);
                validate::check(ts, known, cfg, now)
                    .and_then(|checked| state.write(project, ts, &checked, cfg))
            }
        };
        match outcome {
            Ok(()) => accepted += 1,
            Err(problem) => failed.push((i, problem)),
        }
    }
    let rejected: Vec<_> = failed
        .iter()
        .map(|(i, p)| (p.reason, all[*i].points.len() as u64))
        .collect();
    state.count_outcome(accepted, &rejected);
    drop(state);

    if failed.is_empty() {
        return Ok(());
    }
    let failed_points: u64 = rejected.iter().map(|(_, n)| n).sum();
    let summary = CreateTimeSeriesSummary {
        total_point_count: saturating_i32(total_points),
        success_point_count: saturating_i32(accepted),
        errors: vec![SummaryError {
            status: Some(rpc::Status {
                code: Code::InvalidArgument as i32,
                ..Default::default()
            }),
            point_count: saturating_i32(failed_points),
        }],
    };
    let message = format!(
        "One or more TimeSeries could not be written: {}",
        render(all, &failed)
    );
    Err(status_with_summary(
        Code::InvalidArgument,
        message,
        &summary,
    ))
}

/// For each series that repeats an earlier one of the request, the index of that earlier one.
fn find_duplicates(all: &[TimeSeries]) -> HashMap<usize, usize> {
    let mut first_seen: HashMap<SeriesKey, usize> = HashMap::new();
    let mut duplicates = HashMap::new();
    for (i, ts) in all.iter().enumerate() {
        let first = *first_seen.entry(SeriesKey::of(ts)).or_insert(i);
        if first != i {
            duplicates.insert(i, first);
        }
    }
    duplicates
}

fn duplicate_problem(first: usize) -> Problem {
    Problem::series(
        RejectReason::DuplicateSeries,
        format!(
            "Field timeSeries had an invalid value: Duplicate TimeSeries encountered. Only one \
             point can be written per TimeSeries per request (this series is also \
             timeSeries[{first}])."
        ),
    )
}

/// With `field_errors_reject_request`: refuses the request if any series has a field error,
/// before anything is written. Kinds of metrics first created earlier in the same request are
/// taken into account, as they would be when writing.
fn refuse_on_field_errors(
    state: &mut State,
    project: &str,
    all: &[TimeSeries],
    duplicates: &HashMap<usize, usize>,
    cfg: &EmulatorConfig,
    now: Nanos,
) -> Result<(), Status> {
    let mut created_here: HashMap<&str, MetricKind> = HashMap::new();
    let mut field_errors: Vec<(usize, Problem)> = Vec::new();
    for (i, ts) in all
        .iter()
        .enumerate()
        .filter(|(i, _)| !duplicates.contains_key(i))
    {
        let metric_type = ts
            .metric
            .as_ref()
            .map(|m| m.r#type.as_str())
            .unwrap_or_default();
        let known = state
            .known_kind(project, metric_type)
            .or(created_here.get(metric_type).copied());
        match validate::check(ts, known, cfg, now) {
            Ok(checked) => {
                created_here.entry(metric_type).or_insert(checked.kind);
            }
            Err(problem) if problem.class == ProblemClass::Field => field_errors.push((i, problem)),
            Err(_) => {}
        }
    }
    if field_errors.is_empty() {
        return Ok(());
    }
    let guilty: HashSet<usize> = field_errors.iter().map(|(i, _)| *i).collect();
    let mut rejected: Vec<_> = field_errors
        .iter()
        .map(|(i, p)| (p.reason, all[*i].points.len() as u64))
        .collect();
    let innocent: u64 = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !guilty.contains(i))
        .map(|(_, ts)| ts.points.len() as u64)
        .sum();
    rejected.push((RejectReason::RejectedWithRequest, innocent));
    state.count_outcome(0, &rejected);
    Err(Status::invalid_argument(render(all, &field_errors)))
}

/// `timeSeries[1-3,7] (example metric.type=…): <problem>; …`: failures with the same text are
/// grouped, in order of first appearance, and the whole is capped at [`MAX_MESSAGE_BYTES`].
fn render(all: &[TimeSeries], failed: &[(usize, Problem)]) -> String {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, problem) in failed {
        match groups.iter_mut().find(|(text, _)| *text == problem.text) {
            Some((_, indices)) => indices.push(*i),
            None => groups.push((&problem.text, vec![*i])),
        }
    }
    let mut out = String::new();
    for (n, (text, indices)) in groups.iter().enumerate() {
        let example = if indices.len() > 1 { "example " } else { "" };
        let part = format!(
            "timeSeries[{}] ({example}{}): {text}",
            ranges(indices),
            describe(&all[indices[0]])
        );
        let separator = if out.is_empty() { "" } else { "; " };
        if out.len() + separator.len() + part.len() > MAX_MESSAGE_BYTES {
            let left: usize = groups[n..].iter().map(|(_, idx)| idx.len()).sum();
            out.push_str(&format!("{separator}… and {left} more failed TimeSeries"));
            break;
        }
        out.push_str(separator);
        out.push_str(&part);
    }
    out
}

/// `0-2,5,7-8` for ascending indices.
fn ranges(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut start = indices[0];
    let mut end = start;
    for &i in &indices[1..] {
        if i == end + 1 {
            end = i;
            continue;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        start = i;
        end = i;
    }
    parts.push(if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    });
    parts.join(",")
}

fn saturating_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Counts a request refused by an injected fault.
pub(crate) fn count_injected_fault(store: &Store, request: &CreateTimeSeriesRequest) {
    let points: u64 = request
        .time_series
        .iter()
        .map(|ts| ts.points.len() as u64)
        .sum();
    let mut state = store.lock();
    state.count_request();
    state.count_outcome(0, &[(RejectReason::InjectedFault, points)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(ranges(&[4]), "4");
    }

    #[test]
    fn project_names_need_the_projects_prefix_and_an_id() {
        assert_eq!(project_id("projects/my-project"), Some("my-project"));
        assert_eq!(project_id("projects/123456"), Some("123456"));
        for bad in ["", "projects/", "project/x", "projects/a/b", "x"] {
            assert_eq!(project_id(bad), None, "{bad}");
        }
    }
}
