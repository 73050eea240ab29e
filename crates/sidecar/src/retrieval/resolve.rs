//! Series resolution: from a Prometheus label set to a Cloud Monitoring series prototype.
//!
//! Joins a series with its scrape target (for the monitored resource) and its metric metadata
//! (for the metric kind), applies the naming table of the original and `metric_renames`, and
//! encodes the result once. It must never handle samples; the outcome is cached per series by the
//! series cache.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_wal::Label;

use super::resource::resolve_resource;
use crate::metadata::{MetricMetadata, MetricType, ValueType, strip_suffix};
use crate::model::intern::Interner;
use crate::model::validate;
use crate::model::{PointKind, SeriesPrototype};
use crate::stats::DropReason;
use crate::targets::{Target, drop_target_labels};

/// The most metric labels a series may have (the original's limit), not counting a histogram
/// bucket's `le` label, which is never sent.
pub const MAX_METRIC_LABELS: usize = 10;

/// The label holding a histogram bucket's upper bound.
const BUCKET_BOUND: &str = "le";

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
    /// Whether the configuration gives `metric`'s metadata (which beats the WAL's).
    fn has_static_metadata(&self, _metric: &str) -> bool {
        false
    }
}

/// How each sample of a resolved series becomes a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conversion {
    /// The sample value is the point value.
    Gauge,
    /// The point value is the increase since the series' baseline (first sample or last reset).
    Cumulative,
    /// One part of a classic histogram; the parts of one scrape are assembled into one
    /// distribution point.
    Histogram(HistogramPart),
    /// A native histogram: each histogram sample is one distribution point (measured from the
    /// series' baseline when the kind is cumulative).
    Native,
}

/// Which series of a classic histogram a series is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramPart {
    /// `<name>_count`: the number of observations.
    Count,
    /// `<name>_sum`: the sum of observations.
    Sum,
    /// `<name>_bucket` with this `le` bound (`+Inf` for the last bucket).
    Bucket(f64),
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
    /// `metric_renames` from the config file: chosen metric name → name in the metric type.
    renames: HashMap<String, String>,
    /// Live prototypes by identity hash: series that map to one Cloud Monitoring series (the
    /// parts of a histogram, or a Prometheus series re-created under a new ref) share one.
    prototypes: Mutex<Interner<SeriesPrototype>>,
    /// Metric types from the WAL's metadata records, by job and series name.
    wal_metadata: Mutex<HashMap<(String, String), MetricType>>,
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
            renames: HashMap::new(),
            prototypes: Mutex::new(Interner::default()),
            wal_metadata: Mutex::new(HashMap::new()),
        }
    }

    /// Records the metric type a WAL metadata record gives the series `name` of `job`: it is
    /// used ahead of the HTTP API (but not ahead of the configuration's static metadata).
    pub fn learn_metadata(&self, job: &str, name: &str, metric_type: MetricType) {
        let mut known = self
            .wal_metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.get(&(job.to_string(), name.to_string())) != Some(&metric_type) {
            known.insert((job.to_string(), name.to_string()), metric_type);
        }
    }

    /// The metadata the WAL gave series `name` of `job`, with the suffix its naming needs: a
    /// histogram's or summary's `_bucket`, `_sum` or `_count` part (the WAL's metadata is the
    /// family's, under each series' own name). `None` when static metadata covers the name.
    fn wal_metadata(&self, job: &str, name: &str) -> Option<(MetricMetadata, &'static str)> {
        let stripped = strip_suffix(name);
        if self.sources.has_static_metadata(name)
            || stripped.is_some_and(|(base, _)| self.sources.has_static_metadata(base))
        {
            return None;
        }
        let metric_type = *self
            .wal_metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(job.to_string(), name.to_string()))?;
        let suffix = match (metric_type, stripped) {
            (
                MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary,
                Some((_, suffix @ ("_bucket" | "_sum" | "_count"))),
            ) => suffix,
            _ => "",
        };
        let metadata = MetricMetadata {
            metric: name.to_string(),
            metric_type,
            value_type: ValueType::Unspecified,
            help: String::new(),
        };
        Some((metadata, suffix))
    }

    /// Renames metrics (`metric_renames` of the config file). The key is the name the naming
    /// table chose (the family name for histograms and `_total` counters found under it);
    /// metadata lookups, filters and the other labels are unaffected.
    pub fn with_renames(mut self, renames: HashMap<String, String>) -> Resolver<S> {
        self.renames = renames;
        self
    }

    /// Metadata of series `name` from the sources: under the full name, or under the family
    /// name with one suffix stripped (returned with it).
    async fn api_metadata(
        &self,
        job: &str,
        instance: &str,
        name: &str,
    ) -> Result<Option<(MetricMetadata, &'static str)>, String> {
        if let Some(m) = self.sources.metadata(job, instance, name).await? {
            return Ok(Some((m, "")));
        }
        let Some((base, suffix)) = strip_suffix(name) else {
            return Ok(None);
        };
        let found = self.sources.metadata(job, instance, base).await?;
        Ok(found.map(|m| (m, suffix)))
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
        let name = label(series, "__name__");
        // Only the `le` of a histogram bucket is removed, and only once metadata says it is one;
        // until then a series with 11 labels, one of them `le`, may still be exportable.
        let limit =
            if name.ends_with("_bucket") && metric_labels.iter().any(|l| l.name == BUCKET_BOUND) {
                MAX_METRIC_LABELS + 1
            } else {
                MAX_METRIC_LABELS
            };
        if metric_labels.len() > limit {
            return Ok(Resolution::Dropped(DropReason::TooManyLabels));
        }
        let (job, instance) = (label(series, "job"), label(series, "instance"));
        let found = match self.wal_metadata(job, name) {
            Some(found) => Some(found),
            None => self.api_metadata(job, instance, name).await?,
        };
        let Some((metadata, suffix)) = found else {
            return Ok(Resolution::Dropped(DropReason::MetadataNotFound));
        };
        let Some(naming) = naming(&metadata, name, suffix) else {
            return Ok(Resolution::Dropped(DropReason::UnsupportedType));
        };
        let mut conversion = naming.conversion;
        if let Conversion::Histogram(HistogramPart::Bucket(_)) = conversion {
            let Some(bound) = bucket_bound(label(series, BUCKET_BOUND)) else {
                return Ok(Resolution::Dropped(DropReason::InvalidBucketBound));
            };
            conversion = Conversion::Histogram(HistogramPart::Bucket(bound));
        }
        if let Conversion::Histogram(_) = conversion {
            metric_labels.retain(|l| l.name != BUCKET_BOUND);
        }
        if metric_labels.len() > MAX_METRIC_LABELS {
            return Ok(Resolution::Dropped(DropReason::TooManyLabels));
        }
        let metric_labels: Vec<(String, String)> = metric_labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        let metric_name = self
            .renames
            .get(naming.metric_name)
            .map_or(naming.metric_name, String::as_str);
        // The prefix was checked at start-up; a name Cloud Monitoring refuses under it (a
        // recording rule's colon outside prometheus.googleapis.com, a rename's odd character)
        // is decided once for the series rather than refused point by point.
        let domain = self.metrics_prefix.split('/').next().unwrap_or_default();
        if !validate::metric_name_ok(domain, metric_name) {
            return Ok(Resolution::Dropped(DropReason::InvalidMetricName));
        }
        let prototype = SeriesPrototype::new(
            format!("{}/{}", self.metrics_prefix, metric_name),
            &metric_labels,
            resource.resource_type,
            &resource.labels,
            naming.kind,
        );
        let prototype = self
            .prototypes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .intern(
                prototype.hash,
                prototype,
                |existing, new| existing.pieces() == new.pieces(),
                Arc::new,
            );
        Ok(Resolution::Resolved(ResolvedSeries {
            prototype,
            conversion,
            truncate: naming.truncate,
        }))
    }
}

/// A bucket's `le` bound: a number or `+Inf`, as Prometheus writes them. NaN and `-Inf` are not
/// bounds a distribution can have.
fn bucket_bound(le: &str) -> Option<f64> {
    let bound: f64 = le.trim().parse().ok()?;
    (bound.is_finite() || bound == f64::INFINITY).then_some(bound)
}

/// Result of the naming table for one series.
#[derive(Debug, Clone, PartialEq)]
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
        // A series under the family's own name is a native histogram (classic histograms'
        // series all have a suffix).
        MetricType::Histogram | MetricType::GaugeHistogram if suffix.is_empty() => Some(Naming {
            metric_name: name,
            kind: if metadata.metric_type == MetricType::Histogram {
                PointKind::CumulativeDistribution
            } else {
                PointKind::GaugeDistribution
            },
            conversion: Conversion::Native,
            truncate: false,
        }),
        MetricType::Histogram => {
            let part = match suffix {
                "_count" => HistogramPart::Count,
                "_sum" => HistogramPart::Sum,
                // The bound is read from the `le` label by the caller.
                "_bucket" => HistogramPart::Bucket(f64::INFINITY),
                // `_total` is not a histogram series.
                _ => return None,
            };
            Some(Naming {
                metric_name: &name[..name.len() - suffix.len()],
                kind: PointKind::CumulativeDistribution,
                conversion: Conversion::Histogram(part),
                truncate: true,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use prometheus_wal::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
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

    /// A generic_task target for job `app`, metadata from a table; records every name asked.
    struct Table {
        metadata: HashMap<&'static str, MetricMetadata>,
        asked: Mutex<Vec<String>>,
        /// Names whose metadata is static (from the configuration).
        statics: Vec<&'static str>,
    }

    impl Table {
        fn new(entries: &[(&'static str, MetricType, ValueType)]) -> Table {
            Table {
                metadata: entries
                    .iter()
                    .map(|(name, t, v)| {
                        (
                            *name,
                            MetricMetadata {
                                metric: name.to_string(),
                                metric_type: *t,
                                value_type: *v,
                                help: String::new(),
                            },
                        )
                    })
                    .collect(),
                asked: Mutex::new(Vec::new()),
                statics: Vec::new(),
            }
        }
    }

    impl SeriesSources for Table {
        async fn target(&self, series: &[Label]) -> Result<Option<Arc<Target>>, String> {
            if label(series, "job") != "app" {
                return Ok(None);
            }
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
            self.asked.lock().unwrap().push(metric.to_string());
            Ok(self.metadata.get(metric).cloned())
        }

        fn has_static_metadata(&self, metric: &str) -> bool {
            self.statics.contains(&metric)
        }
    }

    fn resolver(entries: &[(&'static str, MetricType, ValueType)]) -> Resolver<Table> {
        Resolver::new(Table::new(entries), "p".into(), false)
    }

    fn resolve(r: &Resolver<Table>, name: &str, extra: &[(&str, &str)]) -> Resolution {
        let mut pairs = vec![("__name__", name), ("job", "app"), ("instance", "a:1")];
        pairs.extend_from_slice(extra);
        futures::executor::block_on(r.resolve(&labels(&pairs))).unwrap()
    }

    fn resolved(resolution: Resolution) -> ResolvedSeries {
        match resolution {
            Resolution::Resolved(s) => s,
            Resolution::Dropped(reason) => panic!("dropped: {reason:?}"),
        }
    }

    const UNSPECIFIED: ValueType = ValueType::Unspecified;

    #[test]
    fn metadata_under_the_full_name_is_asked_first() {
        let r = resolver(&[("x_total", MetricType::Counter, UNSPECIFIED)]);
        let s = resolved(resolve(&r, "x_total", &[]));
        assert_eq!(s.prototype.metric_type(), "p/x_total");
        assert_eq!(*r.sources.asked.lock().unwrap(), ["x_total"]);
    }

    #[test]
    fn metadata_of_the_family_is_asked_with_one_suffix_stripped() {
        let r = resolver(&[("x", MetricType::Counter, UNSPECIFIED)]);
        let s = resolved(resolve(&r, "x_total", &[]));
        assert_eq!(s.prototype.metric_type(), "p/x");
        assert_eq!(*r.sources.asked.lock().unwrap(), ["x_total", "x"]);
        // Only one suffix is stripped: `y_sum_total` asks for `y_sum`, never `y`.
        let r = resolver(&[("y", MetricType::Counter, UNSPECIFIED)]);
        assert_eq!(
            resolve(&r, "y_sum_total", &[]),
            Resolution::Dropped(DropReason::MetadataNotFound)
        );
        assert_eq!(*r.sources.asked.lock().unwrap(), ["y_sum_total", "y_sum"]);
    }

    #[test]
    fn wal_metadata_comes_before_the_api_and_after_static_metadata() {
        let mut r = resolver(&[("h", MetricType::Gauge, UNSPECIFIED)]);
        r.learn_metadata("app", "x_total", MetricType::Counter);
        r.learn_metadata("app", "h_bucket", MetricType::Histogram);
        r.learn_metadata("app", "h", MetricType::Histogram);
        r.learn_metadata("app", "s_count", MetricType::Summary);
        r.learn_metadata("other", "y", MetricType::Counter);
        let counter = resolved(resolve(&r, "x_total", &[]));
        // The WAL's metadata is the series' own: a `_total` counter keeps its name.
        assert_eq!(counter.prototype.metric_type(), "p/x_total");
        assert_eq!(counter.conversion, Conversion::Cumulative);
        let bucket = resolved(resolve(&r, "h_bucket", &[("le", "1")]));
        assert_eq!(bucket.prototype.metric_type(), "p/h");
        assert_eq!(
            bucket.conversion,
            Conversion::Histogram(HistogramPart::Bucket(1.0))
        );
        assert_eq!(
            resolved(resolve(&r, "h", &[])).conversion,
            Conversion::Native
        );
        let count = resolved(resolve(&r, "s_count", &[]));
        assert_eq!(count.prototype.kind, PointKind::CumulativeInt64);
        assert!(r.sources.asked.lock().unwrap().is_empty(), "no API lookups");
        // Another job's metadata does not count.
        assert_eq!(
            resolve(&r, "y", &[]),
            Resolution::Dropped(DropReason::MetadataNotFound)
        );
        // Static metadata of the family wins over the WAL's.
        r.sources.statics.push("h");
        assert_eq!(
            resolved(resolve(&r, "h", &[])).conversion,
            Conversion::Gauge
        );
    }

    #[test]
    fn series_of_one_cloud_monitoring_series_share_one_prototype() {
        let r = resolver(&[("h", MetricType::Histogram, UNSPECIFIED)]);
        let bucket = resolved(resolve(&r, "h_bucket", &[("le", "0.5")]));
        let count = resolved(resolve(&r, "h_count", &[]));
        assert_eq!(bucket.prototype, count.prototype);
        assert!(Arc::ptr_eq(&bucket.prototype, &count.prototype));
        // So they share the ordering guard: a point the other part already covered is refused.
        let mut converter = crate::retrieval::convert::Converter::default();
        let mut counter = crate::retrieval::convert::CounterState::default();
        let gauge = resolver(&[("g", MetricType::Gauge, UNSPECIFIED)]);
        let a = resolved(resolve(&gauge, "g", &[]));
        let b = resolved(resolve(&gauge, "g", &[]));
        assert!(converter.convert(&a, &mut counter, 1000, 1.0).is_ok());
        assert!(converter.convert(&b, &mut counter, 1000, 2.0).is_err());
        // Once no series holds it, a prototype is made afresh.
        drop((a, b, bucket, count));
        let c = resolved(resolve(&gauge, "g", &[]));
        assert_eq!(c.prototype.last_interval.get(), None);
    }

    #[test]
    fn no_metadata_at_all_is_metadata_not_found() {
        let r = resolver(&[]);
        assert_eq!(
            resolve(&r, "nothing", &[]),
            Resolution::Dropped(DropReason::MetadataNotFound)
        );
        assert_eq!(*r.sources.asked.lock().unwrap(), ["nothing"]);
    }

    #[test]
    fn no_target_is_target_not_found() {
        let r = resolver(&[("g", MetricType::Gauge, UNSPECIFIED)]);
        let series = labels(&[("__name__", "g"), ("job", "other"), ("instance", "a:1")]);
        assert_eq!(
            futures::executor::block_on(r.resolve(&series)).unwrap(),
            Resolution::Dropped(DropReason::TargetNotFound)
        );
    }

    #[test]
    fn more_than_ten_labels_are_too_many() {
        let r = resolver(&[("g", MetricType::Gauge, UNSPECIFIED)]);
        let names: Vec<String> = (0..11).map(|i| format!("l{i:02}")).collect();
        let ten: Vec<(&str, &str)> = names[..10].iter().map(|n| (n.as_str(), "v")).collect();
        let eleven: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        resolved(resolve(&r, "g", &ten));
        assert_eq!(
            resolve(&r, "g", &eleven),
            Resolution::Dropped(DropReason::TooManyLabels)
        );
    }

    #[test]
    fn a_bucket_le_does_not_count_toward_the_label_limit() {
        let r = resolver(&[("h", MetricType::Histogram, UNSPECIFIED)]);
        let names: Vec<String> = (0..10).map(|i| format!("l{i:02}")).collect();
        let mut ten: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        ten.push(("le", "0.5"));
        let s = resolved(resolve(&r, "h_bucket", &ten));
        assert_eq!(
            s.conversion,
            Conversion::Histogram(HistogramPart::Bucket(0.5))
        );
        // A gauge named `_bucket` keeps its `le` as a label, which then counts.
        let r = resolver(&[("g_bucket", MetricType::Gauge, UNSPECIFIED)]);
        assert_eq!(
            resolve(&r, "g_bucket", &ten),
            Resolution::Dropped(DropReason::TooManyLabels)
        );
    }

    #[test]
    fn histogram_parts_share_one_series_without_le() {
        let r = resolver(&[("h", MetricType::Histogram, UNSPECIFIED)]);
        let bucket = resolved(resolve(&r, "h_bucket", &[("le", "+Inf"), ("code", "200")]));
        let sum = resolved(resolve(&r, "h_sum", &[("code", "200")]));
        let count = resolved(resolve(&r, "h_count", &[("code", "200")]));
        assert_eq!(
            bucket.conversion,
            Conversion::Histogram(HistogramPart::Bucket(f64::INFINITY))
        );
        assert_eq!(sum.conversion, Conversion::Histogram(HistogramPart::Sum));
        assert_eq!(
            count.conversion,
            Conversion::Histogram(HistogramPart::Count)
        );
        assert_eq!(bucket.prototype.metric_type(), "p/h");
        assert_eq!(bucket.prototype.kind, PointKind::CumulativeDistribution);
        assert_eq!(bucket.prototype.hash, sum.prototype.hash);
        assert_eq!(bucket.prototype.hash, count.prototype.hash);
    }

    #[test]
    fn a_bucket_without_a_numeric_le_is_dropped_with_its_reason() {
        let r = resolver(&[("h", MetricType::Histogram, UNSPECIFIED)]);
        for le in [None, Some("fast"), Some("NaN")] {
            let extra: Vec<(&str, &str)> = le.map(|v| ("le", v)).into_iter().collect();
            assert_eq!(
                resolve(&r, "h_bucket", &extra),
                Resolution::Dropped(DropReason::InvalidBucketBound),
                "le={le:?}"
            );
        }
    }

    #[test]
    fn a_recording_rules_colon_is_dropped_once_for_the_series_outside_the_prometheus_domain() {
        let entries = [("job:requests:rate5m", MetricType::Gauge, UNSPECIFIED)];
        let r = resolver(&entries);
        assert_eq!(
            resolve(&r, "job:requests:rate5m", &[]),
            Resolution::Dropped(DropReason::InvalidMetricName)
        );
        let gmp = Resolver::new(
            Table::new(&entries),
            "prometheus.googleapis.com".into(),
            false,
        );
        let s = resolved(resolve(&gmp, "job:requests:rate5m", &[]));
        assert_eq!(
            s.prototype.metric_type(),
            "prometheus.googleapis.com/job:requests:rate5m"
        );
        // Renamed without colons, it is written.
        let renamed = resolver(&entries).with_renames(HashMap::from([(
            "job:requests:rate5m".to_string(),
            "job_requests_rate5m".to_string(),
        )]));
        let s = resolved(resolve(&renamed, "job:requests:rate5m", &[]));
        assert_eq!(s.prototype.metric_type(), "p/job_requests_rate5m");
    }

    #[test]
    fn renames_apply_to_the_chosen_name_only() {
        let entries = [
            ("rule:x:rate", MetricType::Gauge, UNSPECIFIED),
            ("h", MetricType::Histogram, UNSPECIFIED),
            ("c", MetricType::Counter, UNSPECIFIED),
        ];
        let r = resolver(&entries).with_renames(HashMap::from([
            ("rule:x:rate".to_string(), "rule_x_rate".to_string()),
            ("h".to_string(), "latency".to_string()),
            ("c".to_string(), "calls".to_string()),
            ("h_bucket".to_string(), "never".to_string()),
        ]));
        let rule = resolved(resolve(&r, "rule:x:rate", &[]));
        assert_eq!(rule.prototype.metric_type(), "p/rule_x_rate");
        let h = resolved(resolve(&r, "h_bucket", &[("le", "1")]));
        assert_eq!(h.prototype.metric_type(), "p/latency");
        let c = resolved(resolve(&r, "c_total", &[]));
        assert_eq!(c.prototype.metric_type(), "p/calls");
        // Metadata is looked up under the Prometheus names, never the new ones.
        assert!(
            !r.sources
                .asked
                .lock()
                .unwrap()
                .iter()
                .any(|n| n == "calls" || n == "latency")
        );
    }

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
    fn histogram_parts_are_one_distribution_under_the_family_name() {
        let m = meta(MetricType::Histogram, ValueType::Unspecified);
        for (name, suffix, part) in [
            ("h_bucket", "_bucket", HistogramPart::Bucket(f64::INFINITY)),
            ("h_sum", "_sum", HistogramPart::Sum),
            ("h_count", "_count", HistogramPart::Count),
        ] {
            let n = naming(&m, name, suffix).unwrap();
            assert_eq!(n.metric_name, "h", "{name}");
            assert_eq!(n.kind, PointKind::CumulativeDistribution);
            assert_eq!(n.conversion, Conversion::Histogram(part));
        }
    }

    #[test]
    fn histogram_metadata_under_the_full_name_is_a_native_histogram() {
        let m = meta(MetricType::Histogram, ValueType::Unspecified);
        let n = naming(&m, "h", "").unwrap();
        assert_eq!(n.metric_name, "h");
        assert_eq!(n.kind, PointKind::CumulativeDistribution);
        assert_eq!(n.conversion, Conversion::Native);
        let g = meta(MetricType::GaugeHistogram, ValueType::Unspecified);
        let n = naming(&g, "q", "").unwrap();
        assert_eq!(n.kind, PointKind::GaugeDistribution);
        assert_eq!(n.conversion, Conversion::Native);
        assert_eq!(naming(&m, "h_total", "_total"), None);
    }

    #[test]
    fn other_types_are_not_converted() {
        for t in [MetricType::Info, MetricType::StateSet] {
            assert_eq!(naming(&meta(t, ValueType::Unspecified), "x", ""), None);
        }
        // Classic gauge histograms' parts.
        let g = meta(MetricType::GaugeHistogram, ValueType::Unspecified);
        assert_eq!(naming(&g, "q_bucket", "_bucket"), None);
    }

    #[test]
    fn bucket_bounds_are_numbers_or_plus_inf() {
        assert_eq!(bucket_bound("0.005"), Some(0.005));
        assert_eq!(bucket_bound("1.5e+06"), Some(1.5e6));
        assert_eq!(bucket_bound("+Inf"), Some(f64::INFINITY));
        assert_eq!(bucket_bound("-5"), Some(-5.0));
        assert_eq!(bucket_bound("-Inf"), None);
        assert_eq!(bucket_bound("NaN"), None);
        assert_eq!(bucket_bound(""), None);
        assert_eq!(bucket_bound("1s"), None);
    }
}
