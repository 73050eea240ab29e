//! Series sources from tables: one `generic_task` target for every series and metric types by
//! name, for tests that run the reader without Prometheus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_wal::{Label, Labels, RefSeries};
use stackdriver_prometheus_sidecar::config::ApiAddress;
use stackdriver_prometheus_sidecar::export::{ExportConfig, Exporter, GrpcSink};
use stackdriver_prometheus_sidecar::metadata::{MetricMetadata, MetricType, ValueType};
use stackdriver_prometheus_sidecar::progress::{DeliveryTracker, Resume};
use stackdriver_prometheus_sidecar::retrieval::SeriesSources;
use stackdriver_prometheus_sidecar::stats::Stats;
use stackdriver_prometheus_sidecar::targets::Target;

/// A sorted label set.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Labels = pairs
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// Series `series_ref` of metric `name` from job `app`, instance `a:1`, with `extra` labels.
pub fn series(series_ref: u64, name: &str, extra: &[(&str, &str)]) -> RefSeries {
    let mut pairs = vec![("__name__", name), ("job", "app"), ("instance", "a:1")];
    pairs.extend_from_slice(extra);
    RefSeries {
        series_ref,
        labels: labels(&pairs),
    }
}

/// One target (job `app`, instance `a:1`, a generic_task in project `proj`), metadata from a
/// table, and a gauge for every name with a colon (as the metadata cache synthesizes for
/// recording rules).
pub struct TableSources {
    pub metadata: HashMap<&'static str, MetricType>,
}

impl SeriesSources for TableSources {
    async fn target(&self, _series: &[Label]) -> Result<Option<Arc<Target>>, String> {
        Ok(Some(Arc::new(Target {
            labels: labels(&[("instance", "a:1"), ("job", "app")]),
            discovered_labels: labels(&[
                ("_generic_location", "here"),
                ("_generic_namespace", "ns"),
                ("_stackdriver_project_id", "proj"),
                ("job", "app"),
            ]),
        })))
    }

    async fn metadata(
        &self,
        _job: &str,
        _instance: &str,
        metric: &str,
    ) -> Result<Option<MetricMetadata>, String> {
        let metric_type = match self.metadata.get(metric) {
            Some(t) => *t,
            None if metric.contains(':') => MetricType::Gauge,
            None => return Ok(None),
        };
        Ok(Some(MetricMetadata {
            metric: metric.to_string(),
            metric_type,
            value_type: ValueType::Unspecified,
            help: String::new(),
        }))
    }
}

/// An exporter sending to `emulator` over gRPC for project `proj` (2 shards), with a fresh
/// delivery tracker.
pub fn emulator_exporter(
    emulator: &super::TestEmulator,
    stats: &Arc<Stats>,
) -> (Exporter, Arc<DeliveryTracker>) {
    let sink = GrpcSink::new(
        &ApiAddress {
            url: format!("http://{}/?auth=false", emulator.addr),
            host: emulator.addr.ip().to_string(),
            port: emulator.addr.port(),
            auth: false,
            restricted_ips: false,
        },
        Duration::from_secs(10),
        2,
    )
    .unwrap();
    let tracker = Arc::new(DeliveryTracker::new(Resume::default().position));
    let exporter = Exporter::start(
        Arc::new(sink),
        ExportConfig::new("proj", 2),
        stats,
        Some(tracker.clone()),
    );
    (exporter, tracker)
}
