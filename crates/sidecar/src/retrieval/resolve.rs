//! Series resolution: from a Prometheus label set to a Cloud Monitoring series prototype.
//!
//! Joins a series with its scrape target (for the monitored resource) and its metric metadata
//! (for the metric kind), applies the naming table of the original, and encodes the result once.
//! It must never handle samples; the outcome is cached per series by the series cache.

use std::future::Future;
use std::sync::Arc;

use prometheus_wal::Label;

use super::resource::resolve_resource;
use crate::export::{PointKind, SeriesPrototype};
use crate::metadata::{MetricMetadata, MetricType, ValueType, strip_suffix};
use crate::stats::DropReason;
use crate::targets::{Target, drop_target_labels};

/// The most metric labels a series may have (the original's limit; counted before `le` is
/// removed from histograms).
pub const MAX_METRIC_LABELS: usize = 10;

/// Where targets and metadata come from: the Prometheus caches in production, tables in tests.
pub trait SeriesSources {
    /// The scrape target of a series, if any.
    fn target(&self, series: &[Label])
    -> impl Future<Output = Result<Option<Arc<Target>>, String>>;
    /// Metadata of `metric` as scraped from the target `(job, instance)`.
    fn metadata(
        &self,
        job: &str,
        instance: &str,
        metric: &str,
    ) -> impl Future<Output = Result<Option<MetricMetadata>, String>>;
}

/// How each sample of a resolved series becomes a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The sample value is the point value.
    Gauge,
    /// The point value is the increase since the series' baseline (first sample or last reset).
    Cumulative,
}

/// A series ready for conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSeries {
    /// The encoded series (metric, resource, kind, value type).
    pub prototype: Arc<SeriesPrototype>,
    /// Gauge or cumulative handling of samples.
    pub conversion: Conversion,
    /// For INT64 points: truncate (summary counts) rather than round (static INT64 metadata).
    pub truncate: bool,
}

/// The outcome of a resolution attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Ready to export.
    Resolved(ResolvedSeries),
    /// Not exportable (maybe only for now: targets and metadata can appear later).
    Dropped(DropReason),
}

/// Resolves series against targets and metadata.
pub struct Resolver<S> {
    sources: S,
    metrics_prefix: String,
    use_gke_resource: bool,
}

fn label<'a>(labels: &'a [Label], name: &str) -> &'a str {
    labels
        .binary_search_by(|l| l.name.as_str().cmp(name))
        .map(|i| labels[i].value.as_str())
        .unwrap_or("")
}

impl<S: SeriesSources> Resolver<S> {
    /// A resolver writing metric types as `<metrics_prefix>/<name>`.
    pub fn new(sources: S, metrics_prefix: String, use_gke_resource: bool) -> Resolver<S> {
        Resolver {
            sources,
            metrics_prefix,
            use_gke_resource,
        }
    }

    /// Resolves one series. `Err` means a lookup failed (Prometheus unreachable): try again later.
    pub async fn resolve(&self, series: &[Label]) -> Result<Resolution, String> {
        let Some(target) = self.sources.target(series).await? else {
            return Ok(Resolution::Dropped(DropReason::TargetNotFound));
        };
        let Some((resource, remaining)) =
            resolve_resource(&target.discovered_labels, series, self.use_gke_resource)
        else {
            return Ok(Resolution::Dropped(DropReason::UnknownResource));
        };
        let mut metric_labels: Vec<Label> = drop_target_labels(&remaining, &target);
        metric_labels.retain(|l| l.name != "__name__");
        if metric_labels.len() > MAX_METRIC_LABELS {
            return Ok(Resolution::Dropped(DropReason::TooManyLabels));
        }
        let name = label(series, "__name__");
        let (job, instance) = (label(series, "job"), label(series, "instance"));
        let (metadata, suffix) = match self.sources.metadata(job, instance, name).await? {
            Some(m) => (m, ""),
            None => match strip_suffix(name) {
                Some((base, suffix)) => match self.sources.metadata(job, instance, base).await? {
                    Some(m) => (m, suffix),
                    None => return Ok(Resolution::Dropped(DropReason::MetadataNotFound)),
                },
                None => return Ok(Resolution::Dropped(DropReason::MetadataNotFound)),
            },
        };
        let Some(naming) = naming(&metadata, name, suffix) else {
            return Ok(Resolution::Dropped(DropReason::UnsupportedType));
        };
        let metric_labels: Vec<(String, String)> = metric_labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        let prototype = SeriesPrototype::new(
            format!("{}/{}", self.metrics_prefix, naming.metric_name),
            &metric_labels,
            resource.resource_type,
            &resource.labels,
            naming.kind,
        );
        Ok(Resolution::Resolved(ResolvedSeries {
            prototype: Arc::new(prototype),
            conversion: naming.conversion,
            truncate: naming.truncate,
        }))
    }
}

/// Result of the naming table for one series.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Naming<'a> {
    metric_name: &'a str,
    kind: PointKind,
    conversion: Conversion,
    truncate: bool,
}

/// The original's naming table: metric name, kind and value type from the metadata type and the
/// suffix that had to be stripped to find the metadata. `None` for types not converted.
fn naming<'a>(metadata: &MetricMetadata, name: &'a str, suffix: &str) -> Option<Naming<'a>> {
    let int64 = metadata.value_type == ValueType::Int64;
    let gauge = |metric_name| Naming {
        metric_name,
        kind: if int64 {
            PointKind::GaugeInt64
        } else {
            PointKind::GaugeDouble
        },
        conversion: Conversion::Gauge,
        truncate: false,
    };
    let cumulative = |metric_name, int64: bool, truncate| Naming {
        metric_name,
        kind: if int64 {
            PointKind::CumulativeInt64
        } else {
            PointKind::CumulativeDouble
        },
        conversion: Conversion::Cumulative,
        truncate,
    };
    match metadata.metric_type {
        MetricType::Counter => {
            // A `_total` series found under its family name (OpenMetrics) is named after the
            // family; other stripped suffixes keep the full name, as the original does.
            let metric_name = if suffix == "_total" {
                &name[..name.len() - suffix.len()]
            } else {
                name
            };
            Some(cumulative(metric_name, int64, false))
        }
        MetricType::Gauge | MetricType::Unknown => Some(gauge(name)),
        MetricType::Summary => match suffix {
            "_sum" => Some(cumulative(name, false, false)),
            "_count" => Some(cumulative(name, true, true)),
            "" => Some(Naming {
                kind: PointKind::GaugeDouble,
                ..gauge(name)
            }),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(metric_type: MetricType, value_type: ValueType) -> MetricMetadata {
        MetricMetadata {
            metric: "m".into(),
            metric_type,
            value_type,
            help: String::new(),
        }
    }

    #[test]
    fn counter_found_by_full_name_keeps_it() {
        let n = naming(
            &meta(MetricType::Counter, ValueType::Unspecified),
            "x_total",
            "",
        )
        .unwrap();
        assert_eq!(n.metric_name, "x_total");
        assert_eq!(n.kind, PointKind::CumulativeDouble);
        assert_eq!(n.conversion, Conversion::Cumulative);
    }

    #[test]
    fn counter_found_after_stripping_total_uses_the_family_name() {
        let n = naming(
            &meta(MetricType::Counter, ValueType::Unspecified),
            "x_total",
            "_total",
        )
        .unwrap();
        assert_eq!(n.metric_name, "x");
    }

    #[test]
    fn counter_found_after_stripping_sum_keeps_the_full_name() {
        let n = naming(
            &meta(MetricType::Counter, ValueType::Unspecified),
            "x_sum",
            "_sum",
        )
        .unwrap();
        assert_eq!(n.metric_name, "x_sum");
    }

    #[test]
    fn int64_counter_from_static_metadata() {
        let n = naming(&meta(MetricType::Counter, ValueType::Int64), "x", "").unwrap();
        assert_eq!(n.kind, PointKind::CumulativeInt64);
        assert!(!n.truncate);
    }

    #[test]
    fn gauge_and_unknown_are_gauges_under_their_full_name() {
        for t in [MetricType::Gauge, MetricType::Unknown] {
            let n = naming(&meta(t, ValueType::Unspecified), "g_total", "_total").unwrap();
            assert_eq!(n.metric_name, "g_total");
            assert_eq!(n.kind, PointKind::GaugeDouble);
            assert_eq!(n.conversion, Conversion::Gauge);
        }
        let n = naming(&meta(MetricType::Gauge, ValueType::Int64), "g", "").unwrap();
        assert_eq!(n.kind, PointKind::GaugeInt64);
    }

    #[test]
    fn summary_rows() {
        let m = meta(MetricType::Summary, ValueType::Unspecified);
        let sum = naming(&m, "s_sum", "_sum").unwrap();
        assert_eq!(
            (sum.metric_name, sum.kind),
            ("s_sum", PointKind::CumulativeDouble)
        );
        let count = naming(&m, "s_count", "_count").unwrap();
        assert_eq!(
            (count.metric_name, count.kind),
            ("s_count", PointKind::CumulativeInt64)
        );
        assert!(count.truncate);
        let quantile = naming(&m, "s", "").unwrap();
        assert_eq!(
            (quantile.metric_name, quantile.kind),
            ("s", PointKind::GaugeDouble)
        );
        assert_eq!(naming(&m, "s_bucket", "_bucket"), None);
        assert_eq!(naming(&m, "s_total", "_total"), None);
    }

    #[test]
    fn histograms_are_not_converted_yet() {
        let m = meta(MetricType::Histogram, ValueType::Unspecified);
        assert_eq!(naming(&m, "h_bucket", "_bucket"), None);
    }
}
