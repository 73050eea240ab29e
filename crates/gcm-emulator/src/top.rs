//! `gcm-emulator top`: what a running emulator (or any MetricService) holds, as a table.
//!
//! Owns reading a project's metric descriptors and, per metric type, counting its series and
//! points with `ListTimeSeries`, and rendering the result. It must never write: it is a client,
//! and the same calls work against the real API.

use std::fmt::Write as _;

use gcm_api::api::metric_descriptor::{MetricKind, ValueType};
use gcm_api::monitoring::list_time_series_request::TimeSeriesView;
use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_api::monitoring::{ListMetricDescriptorsRequest, ListTimeSeriesRequest, TimeInterval};
use prost_types::Timestamp;
use tonic::transport::Channel;

/// One line of the table: a metric type and what is stored under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricRow {
    /// The metric type.
    pub metric_type: String,
    /// `GAUGE`, `CUMULATIVE`, …
    pub metric_kind: String,
    /// `DOUBLE`, `INT64`, `DISTRIBUTION`, …
    pub value_type: String,
    /// Series of this metric type.
    pub series: usize,
    /// Points of all those series.
    pub points: usize,
}

/// Every point that can exist: protobuf's smallest and largest valid timestamps.
fn all_time() -> TimeInterval {
    TimeInterval {
        start_time: Some(Timestamp {
            seconds: -62_135_596_800,
            nanos: 0,
        }),
        end_time: Some(Timestamp {
            seconds: 253_402_300_799,
            nanos: 0,
        }),
    }
}

/// Reads every metric type of `project` with its series and point counts, sorted by type.
pub async fn collect(
    client: &mut MetricServiceClient<Channel>,
    project: &str,
) -> Result<Vec<MetricRow>, tonic::Status> {
    let name = format!("projects/{project}");
    let mut descriptors = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_metric_descriptors(ListMetricDescriptorsRequest {
                name: name.clone(),
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        descriptors.extend(page.metric_descriptors);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    let mut rows = Vec::with_capacity(descriptors.len());
    for descriptor in descriptors {
        let (mut series, mut points) = (0, 0);
        let mut page_token = String::new();
        loop {
            let page = client
                .list_time_series(ListTimeSeriesRequest {
                    name: name.clone(),
                    filter: format!("metric.type = {:?}", descriptor.r#type),
                    interval: Some(all_time()),
                    view: TimeSeriesView::Full as i32,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            series += page.time_series.len();
            points += page
                .time_series
                .iter()
                .map(|ts| ts.points.len())
                .sum::<usize>();
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        rows.push(MetricRow {
            metric_kind: MetricKind::try_from(descriptor.metric_kind)
                .map_or("?", |k| k.as_str_name())
                .to_owned(),
            value_type: ValueType::try_from(descriptor.value_type)
                .map_or("?", |v| v.as_str_name())
                .to_owned(),
            metric_type: descriptor.r#type,
            series,
            points,
        });
    }
    rows.sort_by(|a, b| a.metric_type.cmp(&b.metric_type));
    Ok(rows)
}

/// The table: a header, one line per metric type, and a total line.
pub fn render(rows: &[MetricRow]) -> String {
    let total = format!("TOTAL ({} metric types)", rows.len());
    let type_width = rows
        .iter()
        .map(|r| r.metric_type.len())
        .chain([11, total.len()])
        .max()
        .unwrap_or(11);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:<type_width$}  {:<10}  {:<12}  {:>8}  {:>10}",
        "METRIC TYPE", "KIND", "VALUE TYPE", "SERIES", "POINTS"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<type_width$}  {:<10}  {:<12}  {:>8}  {:>10}",
            r.metric_type, r.metric_kind, r.value_type, r.series, r.points
        );
    }
    let series: usize = rows.iter().map(|r| r.series).sum();
    let points: usize = rows.iter().map(|r| r.points).sum();
    let _ = writeln!(
        out,
        "{:<type_width$}  {:<10}  {:<12}  {series:>8}  {points:>10}",
        total, "", ""
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_aligns_columns_and_totals() {
        let rows = vec![
            MetricRow {
                metric_type: "custom.googleapis.com/a".into(),
                metric_kind: "GAUGE".into(),
                value_type: "DOUBLE".into(),
                series: 2,
                points: 7,
            },
            MetricRow {
                metric_type: "custom.googleapis.com/bb".into(),
                metric_kind: "CUMULATIVE".into(),
                value_type: "INT64".into(),
                series: 1,
                points: 3,
            },
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("METRIC TYPE"));
        assert!(
            lines[1].starts_with("custom.googleapis.com/a ") && lines[1].ends_with("2           7")
        );
        assert!(
            lines[3].starts_with("TOTAL (2 metric types)") && lines[3].ends_with("3          10")
        );
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }
}
