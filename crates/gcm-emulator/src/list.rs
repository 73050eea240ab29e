//! The read methods: `ListTimeSeries`, `ListMetricDescriptors` and `GetMetricDescriptor`.
//!
//! Owns answering reads from the store the way the API does: `ListTimeSeries` requires a filter
//! naming one metric type and an interval with an end time, includes a point when its end time is
//! within `(start, end]` (only `end` itself when no start is given), returns points newest first,
//! and pages by points (FULL view) or by series (HEADERS view). It must never change the store,
//! and it refuses what it does not implement (aggregation, ordering) rather than ignoring it.

use gcm_api::api::MetricDescriptor;
use gcm_api::monitoring::list_time_series_request::TimeSeriesView;
use gcm_api::monitoring::{
    GetMetricDescriptorRequest, ListMetricDescriptorsRequest, ListMetricDescriptorsResponse,
    ListTimeSeriesRequest, ListTimeSeriesResponse, TimeSeries,
};
use tonic::Status;

use crate::create::project_id;
use crate::filter::Filter;
use crate::store::{Series, Store};
use crate::time::{self, Nanos};

/// The API's default and largest page.
const MAX_PAGE_SIZE: usize = 100_000;

fn project(name: &str) -> Result<&str, Status> {
    project_id(name).ok_or_else(|| {
        Status::invalid_argument(format!(
            "Field name had an invalid value of {name:?}: it must have the form \
             projects/[PROJECT_ID_OR_NUMBER]."
        ))
    })
}

fn parse_filter(filter: &str) -> Result<Filter, Status> {
    Filter::parse(filter).map_err(|why| {
        Status::invalid_argument(format!(
            "Field filter had an invalid value of {filter:?}: {why}."
        ))
    })
}

fn page_size(requested: i32) -> usize {
    match usize::try_from(requested) {
        Ok(n) if n > 0 => n.min(MAX_PAGE_SIZE),
        _ => MAX_PAGE_SIZE,
    }
}

fn page_start(token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "Field pageToken had an invalid value of {token:?}."
        ))
    })
}

/// Answers `ListTimeSeries`.
pub(crate) fn list_time_series(
    store: &Store,
    request: &ListTimeSeriesRequest,
) -> Result<ListTimeSeriesResponse, Status> {
    let project = project(&request.name)?;
    let filter = parse_filter(&request.filter)?;
    if filter.exact_metric_type().is_none() {
        return Err(Status::invalid_argument(format!(
            "Field filter had an invalid value of {:?}: it must name one metric type with \
             metric.type = \"…\".",
            request.filter
        )));
    }
    let interval = request.interval.as_ref();
    let end_ts = interval
        .and_then(|i| i.end_time.as_ref())
        .ok_or_else(|| Status::invalid_argument("Request was missing field interval.endTime."))?;
    let end = time::to_nanos(end_ts).ok_or_else(|| {
        Status::invalid_argument("Field interval.endTime is not a valid timestamp.")
    })?;
    let start = match interval.and_then(|i| i.start_time.as_ref()) {
        Some(ts) => time::to_nanos(ts).ok_or_else(|| {
            Status::invalid_argument("Field interval.startTime is not a valid timestamp.")
        })?,
        None => end,
    };
    if start > end {
        return Err(Status::invalid_argument(
            "Field interval.startTime must not be later than interval.endTime.",
        ));
    }
    if request.aggregation.is_some() || request.secondary_aggregation.is_some() {
        return Err(Status::unimplemented(
            "The emulator does not implement aggregation.",
        ));
    }
    if !request.order_by.is_empty() {
        return Err(Status::invalid_argument(
            "Field orderBy must be left blank.",
        ));
    }
    let headers_only = request.view == TimeSeriesView::Headers as i32;
    let limit = page_size(request.page_size);
    let first = page_start(&request.page_token)?;

    let state = store.lock();
    let matching: Vec<(&Series, Vec<_>)> = state
        .projects
        .get(project)
        .into_iter()
        .flat_map(|p| p.series.values())
        .filter(|s| {
            filter.matches_series(
                &s.metric.r#type,
                &s.metric.labels,
                &s.resource.r#type,
                &s.resource.labels,
            )
        })
        .filter_map(|s| {
            let points: Vec<_> = s
                .points
                .iter()
                .rev()
                .filter(|p| in_interval(p, start, end))
                .cloned()
                .collect();
            (!points.is_empty()).then_some((s, points))
        })
        .collect();

    let mut time_series = Vec::new();
    let mut taken = 0;
    let mut next = first;
    for (series, points) in matching.iter().skip(first) {
        let cost = if headers_only { 1 } else { points.len() };
        if !time_series.is_empty() && taken + cost > limit {
            break;
        }
        taken += cost;
        next += 1;
        time_series.push(TimeSeries {
            metric: Some(series.metric.clone()),
            resource: Some(series.resource.clone()),
            metric_kind: series.kind as i32,
            value_type: series.value_type as i32,
            points: if headers_only {
                Vec::new()
            } else {
                points.clone()
            },
            ..Default::default()
        });
    }
    let next_page_token = if next < matching.len() {
        next.to_string()
    } else {
        String::new()
    };
    Ok(ListTimeSeriesResponse {
        time_series,
        next_page_token,
        ..Default::default()
    })
}

/// `start < end_time <= end`, or `end_time == end` when the interval is a single instant.
fn in_interval(point: &gcm_api::monitoring::Point, start: Nanos, end: Nanos) -> bool {
    let Some(t) = point
        .interval
        .as_ref()
        .and_then(|i| i.end_time.as_ref())
        .and_then(time::to_nanos)
    else {
        return false;
    };
    t <= end && (t > start || t == end)
}

/// Answers `ListMetricDescriptors`.
pub(crate) fn list_metric_descriptors(
    store: &Store,
    request: &ListMetricDescriptorsRequest,
) -> Result<ListMetricDescriptorsResponse, Status> {
    let project = project(&request.name)?;
    let filter = parse_filter(&request.filter)?;
    let limit = page_size(request.page_size);
    let first = page_start(&request.page_token)?;
    let all: Vec<MetricDescriptor> = store
        .metric_descriptors(project)
        .into_iter()
        .filter(|d| filter.matches_metric_type(&d.r#type))
        .collect();
    let metric_descriptors: Vec<_> = all.iter().skip(first).take(limit).cloned().collect();
    let next = first + metric_descriptors.len();
    let next_page_token = if next < all.len() {
        next.to_string()
    } else {
        String::new()
    };
    Ok(ListMetricDescriptorsResponse {
        metric_descriptors,
        next_page_token,
    })
}

/// Answers `GetMetricDescriptor` for `projects/<id>/metricDescriptors/<type>`.
pub(crate) fn get_metric_descriptor(
    store: &Store,
    request: &GetMetricDescriptorRequest,
) -> Result<MetricDescriptor, Status> {
    let (project_name, metric_type) =
        request
            .name
            .split_once("/metricDescriptors/")
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "Field name had an invalid value of {:?}: it must have the form \
                 projects/[PROJECT_ID_OR_NUMBER]/metricDescriptors/[METRIC_ID].",
                    request.name
                ))
            })?;
    let project = project(project_name)?;
    store
        .metric_descriptor(project, metric_type)
        .ok_or_else(|| {
            Status::not_found(format!(
                "Could not find descriptor for metric '{metric_type}'."
            ))
        })
}
