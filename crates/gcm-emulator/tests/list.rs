//! The read methods: ListTimeSeries, ListMetricDescriptors, GetMetricDescriptor.

mod common;

use common::*;
use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::list_time_series_request::TimeSeriesView;
use gcm_api::monitoring::{
    Aggregation, GetMetricDescriptorRequest, ListMetricDescriptorsRequest,
    ListMonitoredResourceDescriptorsRequest, ListTimeSeriesRequest, TimeInterval,
};
use prost_types::Timestamp;
use tonic::Code;

const A: &str = "custom.googleapis.com/a";
const B: &str = "custom.googleapis.com/b";

/// A: series x with points at 0, 10, 20 and series y with a point at 10; B: one point at 0.
async fn populated() -> Harness {
    let mut h = start(config()).await;
    h.create(vec![
        gauge(A, &[("s", "x")], at(0), 0.0),
        gauge(B, &[], at(0), 5.0),
    ])
    .await
    .unwrap();
    h.create(vec![
        gauge(A, &[("s", "x")], at(10), 1.0),
        gauge(A, &[("s", "y")], at(10), 9.0),
    ])
    .await
    .unwrap();
    h.create(vec![gauge(A, &[("s", "x")], at(20), 2.0)])
        .await
        .unwrap();
    h
}

fn list(filter: &str, start: Option<Timestamp>, end: Option<Timestamp>) -> ListTimeSeriesRequest {
    ListTimeSeriesRequest {
        name: format!("projects/{PROJECT}"),
        filter: filter.into(),
        interval: Some(TimeInterval {
            start_time: start,
            end_time: end,
        }),
        ..Default::default()
    }
}

fn ends(ts: &gcm_api::monitoring::TimeSeries) -> Vec<i64> {
    ts.points
        .iter()
        .map(|p| p.interval.as_ref().unwrap().end_time.unwrap().seconds - at(0).seconds)
        .collect()
}

#[tokio::test]
async fn list_time_series_returns_the_metric_series_with_points_newest_first() {
    let mut h = populated().await;
    let response = h
        .client
        .list_time_series(list(
            &format!("metric.type = \"{A}\""),
            Some(at(-1)),
            Some(at(100)),
        ))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.time_series.len(), 2);
    let x = &response.time_series[0];
    assert_eq!(
        x.metric
            .as_ref()
            .unwrap()
            .labels
            .get("s")
            .map(String::as_str),
        Some("x")
    );
    assert_eq!(x.resource, Some(resource()));
    assert_eq!(x.metric_kind, MetricKind::Gauge as i32);
    assert_eq!(x.value_type, ValueType::Double as i32);
    assert_eq!(ends(x), [20, 10, 0]);
    assert_eq!(ends(&response.time_series[1]), [10]);
    assert!(response.next_page_token.is_empty());
}

#[tokio::test]
async fn the_interval_is_start_exclusive_and_end_inclusive() {
    let mut h = populated().await;
    let filter = format!("metric.type = \"{A}\"");
    let r = h
        .client
        .list_time_series(list(&filter, Some(at(0)), Some(at(10))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.time_series.iter().map(ends).collect::<Vec<_>>(),
        [vec![10], vec![10]]
    );

    let r = h
        .client
        .list_time_series(list(&filter, None, Some(at(20))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.time_series.len(),
        1,
        "without a start only points ending exactly at the end"
    );
    assert_eq!(ends(&r.time_series[0]), [20]);

    let r = h
        .client
        .list_time_series(list(&filter, Some(at(30)), Some(at(40))))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.time_series.is_empty(),
        "series without points in the interval are left out"
    );
}

#[tokio::test]
async fn label_filters_and_headers_view() {
    let mut h = populated().await;
    let mut request = list(
        &format!("metric.type = \"{A}\" AND metric.labels.s = \"y\""),
        Some(at(-1)),
        Some(at(100)),
    );
    request.view = TimeSeriesView::Headers as i32;
    let r = h
        .client
        .list_time_series(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.time_series.len(), 1);
    assert!(r.time_series[0].points.is_empty());
    assert_eq!(
        r.time_series[0]
            .metric
            .as_ref()
            .unwrap()
            .labels
            .get("s")
            .map(String::as_str),
        Some("y")
    );
}

#[tokio::test]
async fn list_time_series_pages_by_points_or_by_series() {
    let mut h = populated().await;
    let filter = format!("metric.type = \"{A}\"");
    let mut request = list(&filter, Some(at(-1)), Some(at(100)));
    request.page_size = 2;
    let first = h
        .client
        .list_time_series(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.time_series.len(),
        1,
        "a page holds at least one series"
    );
    assert!(!first.next_page_token.is_empty());
    request.page_token = first.next_page_token;
    let second = h
        .client
        .list_time_series(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.time_series.len(), 1);
    assert_eq!(ends(&second.time_series[0]), [10]);
    assert!(second.next_page_token.is_empty());

    let mut headers = list(&filter, Some(at(-1)), Some(at(100)));
    headers.view = TimeSeriesView::Headers as i32;
    headers.page_size = 1;
    let page = h
        .client
        .list_time_series(headers)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.time_series.len(), 1);
    assert_eq!(page.next_page_token, "1");
}

#[tokio::test]
async fn list_time_series_refuses_incomplete_or_unsupported_requests() {
    let mut h = populated().await;
    let filter = format!("metric.type = \"{A}\"");
    let cases = [
        (
            list(&filter, Some(at(0)), None),
            Code::InvalidArgument,
            "interval.endTime",
        ),
        (
            list("", Some(at(0)), Some(at(1))),
            Code::InvalidArgument,
            "metric type",
        ),
        (
            list("metric.labels.s = \"x\"", Some(at(0)), Some(at(1))),
            Code::InvalidArgument,
            "metric type",
        ),
        (
            list("metric.type != \"x\"", Some(at(0)), Some(at(1))),
            Code::InvalidArgument,
            "Field filter",
        ),
        (
            list(&filter, Some(at(10)), Some(at(1))),
            Code::InvalidArgument,
            "startTime",
        ),
        (
            ListTimeSeriesRequest {
                name: "p".into(),
                ..list(&filter, None, Some(at(1)))
            },
            Code::InvalidArgument,
            "Field name",
        ),
        (
            ListTimeSeriesRequest {
                aggregation: Some(Aggregation::default()),
                ..list(&filter, None, Some(at(1)))
            },
            Code::Unimplemented,
            "aggregation",
        ),
    ];
    for (request, code, needle) in cases {
        let status = h
            .client
            .list_time_series(request.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{request:?}");
        assert!(
            status.message().contains(needle),
            "{} lacks {needle}",
            status.message()
        );
    }
}

#[tokio::test]
async fn list_metric_descriptors_filters_and_pages() {
    let mut h = populated().await;
    h.create(vec![gauge(
        "external.googleapis.com/prometheus/up",
        &[],
        at(0),
        1.0,
    )])
    .await
    .unwrap();
    let request = |filter: &str, page_size: i32, page_token: &str| ListMetricDescriptorsRequest {
        name: format!("projects/{PROJECT}"),
        filter: filter.into(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    let types = |r: &gcm_api::monitoring::ListMetricDescriptorsResponse| {
        r.metric_descriptors
            .iter()
            .map(|d| d.r#type.clone())
            .collect::<Vec<_>>()
    };

    let all = h
        .client
        .list_metric_descriptors(request("", 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types(&all), [A, B, "external.googleapis.com/prometheus/up"]);

    let custom = h
        .client
        .list_metric_descriptors(request(
            "metric.type = starts_with(\"custom.googleapis.com/\")",
            0,
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types(&custom), [A, B]);

    let first = h
        .client
        .list_metric_descriptors(request("", 2, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types(&first), [A, B]);
    let rest = h
        .client
        .list_metric_descriptors(request("", 2, &first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(types(&rest), ["external.googleapis.com/prometheus/up"]);
    assert!(rest.next_page_token.is_empty());

    let status = h
        .client
        .list_metric_descriptors(request("metric.type = ", 0, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn get_metric_descriptor_finds_auto_created_descriptors() {
    let mut h = populated().await;
    let name = format!("projects/{PROJECT}/metricDescriptors/{A}");
    let d = h
        .client
        .get_metric_descriptor(GetMetricDescriptorRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.name, name);
    assert_eq!(d.r#type, A);

    let missing = format!("projects/{PROJECT}/metricDescriptors/custom.googleapis.com/none");
    let status = h
        .client
        .get_metric_descriptor(GetMetricDescriptorRequest { name: missing })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = h
        .client
        .get_metric_descriptor(GetMetricDescriptorRequest {
            name: "projects/x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn methods_the_emulator_does_not_serve_answer_unimplemented() {
    let mut h = start(config()).await;
    let status = h
        .client
        .list_monitored_resource_descriptors(ListMonitoredResourceDescriptorsRequest {
            name: format!("projects/{PROJECT}"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}
