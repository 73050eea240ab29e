//! The configuration file (`--config-file`): `metric_renames`, `static_metadata` and
//! `aggregated_counters`, in the original's YAML layout and with its leniencies ([`parse`]).
//!
//! Owns reading and validating the file; every problem is reported with the line it is on and
//! the entry it concerns, so `main` can exit with status 2 before anything starts. Must never
//! apply the settings itself.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

use crate::filter::Selector;
use crate::metadata::{MetricMetadata, MetricType, ValueType};

/// One `aggregated_counters` entry of the config file.
#[derive(Debug, Clone)]
pub struct AggregatedCounterConfig {
    /// Name of the aggregate (the metric type is `custom.googleapis.com/opencensus/<metric>`).
    pub metric: String,
    /// Description.
    pub help: String,
    /// Series selectors, OR-ed; a series matching any of them feeds the aggregate.
    pub filters: Vec<Selector>,
}

/// The settings of a configuration file.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// `metric_renames`: metric name → name used in the metric type.
    pub metric_renames: HashMap<String, String>,
    /// `static_metadata`, in file order (of duplicate names the metadata cache keeps the last).
    pub static_metadata: Vec<MetricMetadata>,
    /// `aggregated_counters`, in file order.
    pub aggregated_counters: Vec<AggregatedCounterConfig>,
}

/// Why a configuration file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// Line of the problem (1-based), when known.
    pub line: Option<u64>,
    /// What is wrong, naming the entry.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl FileError {
    fn at(line: u64, message: String) -> FileError {
        FileError {
            line: Some(line),
            message,
        }
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        line: None,
        message: format!("reading file: {e}"),
    })?;
    parse(&text)
}

/// Validates the text of a configuration file. An empty file is an empty configuration.
///
/// Leniencies kept from the original: unknown keys are ignored, and keys match
/// case-insensitively (`Metric_Renames` is `metric_renames`), as Go's JSON decoding of the
/// converted YAML did; a repeated `from` keeps its last `to`; `untyped` is `unknown`.
pub fn parse(text: &str) -> Result<FileConfig, FileError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let raw: Option<RawFile> = serde_saphyr::from_str(text).map_err(|e| {
        let rendered = e.to_string();
        // The parser's message is `error: line L column C: what` and then a source snippet.
        let first = rendered.lines().next().unwrap_or_default().trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        match e.location() {
            Some(at) => {
                let prefix = format!("line {} column {}: ", at.line(), at.column());
                let what = first.strip_prefix(prefix.as_str()).unwrap_or(first);
                FileError::at(
                    at.line(),
                    format!("invalid YAML at column {}: {what}", at.column()),
                )
            }
            None => FileError {
                line: None,
                message: format!("invalid YAML: {first}"),
            },
        }
    })?;
    let raw = raw.unwrap_or_default();
    let mut config = FileConfig::default();

    for entry in raw.metric_renames {
        let line = entry.referenced.line();
        let RawRename { from, to } = entry.value;
        if from.is_empty() || to.is_empty() {
            return Err(FileError::at(
                line,
                format!("metric_renames entry from {from:?} to {to:?}: both must be set"),
            ));
        }
        config.metric_renames.insert(from, to);
    }

    for entry in raw.static_metadata {
        let line = entry.referenced.line();
        let RawStaticMetadata {
            metric,
            metric_type,
            value_type,
            help,
        } = entry.value;
        let what = || format!("static_metadata entry for metric {metric:?}");
        if metric.is_empty() {
            return Err(FileError::at(
                line,
                format!("{}: metric must be set", what()),
            ));
        }
        let type_name = metric_type.as_ref().map_or("", |t| t.value.as_str());
        let type_line = metric_type.as_ref().map_or(line, |t| t.referenced.line());
        let metric_type = match type_name {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "unknown" | "untyped" => MetricType::Unknown,
            other => {
                return Err(FileError::at(
                    type_line,
                    format!("{}: invalid metric type {other:?}", what()),
                ));
            }
        };
        let value_type_name = value_type.as_ref().map_or("", |t| t.value.as_str());
        let value_type_line = value_type.as_ref().map_or(line, |t| t.referenced.line());
        let value_type: ValueType = value_type_name.parse().map_err(|_| {
            FileError::at(
                value_type_line,
                format!("{}: invalid value type {value_type_name:?}", what()),
            )
        })?;
        config.static_metadata.push(MetricMetadata {
            metric,
            metric_type,
            value_type,
            help,
        });
    }

    for entry in raw.aggregated_counters {
        let line = entry.referenced.line();
        let RawAggregatedCounter {
            metric,
            help,
            filters,
        } = entry.value;
        if metric.is_empty() {
            return Err(FileError::at(
                line,
                "aggregated_counters entry: metric must be set".into(),
            ));
        }
        if config
            .aggregated_counters
            .iter()
            .any(|c: &AggregatedCounterConfig| c.metric == metric)
        {
            return Err(FileError::at(
                line,
                format!("duplicate counter aggregator metric {metric}"),
            ));
        }
        let mut selectors = Vec::with_capacity(filters.len());
        for filter in filters {
            let selector = Selector::parse(&filter.value).map_err(|e| {
                FileError::at(
                    filter.referenced.line(),
                    format!(
                        "aggregated_counters entry {metric:?}: cannot parse metric selector \
                         '{}': {e}",
                        filter.value
                    ),
                )
            })?;
            selectors.push(selector);
        }
        config.aggregated_counters.push(AggregatedCounterConfig {
            metric,
            help,
            filters: selectors,
        });
    }
    Ok(config)
}

/// The file as written. Lists may be absent or null.
#[derive(Debug, Default)]
struct RawFile {
    metric_renames: Vec<Spanned<RawRename>>,
    static_metadata: Vec<Spanned<RawStaticMetadata>>,
    aggregated_counters: Vec<Spanned<RawAggregatedCounter>>,
}

#[derive(Debug, Default)]
struct RawRename {
    from: String,
    to: String,
}

#[derive(Debug, Default)]
struct RawStaticMetadata {
    metric: String,
    metric_type: Option<Spanned<String>>,
    value_type: Option<Spanned<String>>,
    help: String,
}

#[derive(Debug, Default)]
struct RawAggregatedCounter {
    metric: String,
    help: String,
    filters: Vec<Spanned<String>>,
}

/// Implements `Deserialize` for a struct read from a YAML map whose keys match
/// case-insensitively; a key written as null leaves the field at its default, unknown keys are
/// skipped.
macro_rules! case_insensitive_struct {
    ($ty:ident, $expecting:literal, { $($key:literal => $field:ident: $read:ty),* $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldsVisitor;
                impl<'de> Visitor<'de> for FieldsVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.to_ascii_lowercase().as_str() {
                                $($key => {
                                    out.$field = map.next_value::<Option<$read>>()?.unwrap_or_default();
                                })*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(FieldsVisitor)
            }
        }
    };
}

case_insensitive_struct!(RawFile, "a map with metric_renames, static_metadata or aggregated_counters", {
    "metric_renames" => metric_renames: Vec<Spanned<RawRename>>,
    "static_metadata" => static_metadata: Vec<Spanned<RawStaticMetadata>>,
    "aggregated_counters" => aggregated_counters: Vec<Spanned<RawAggregatedCounter>>,
});

case_insensitive_struct!(RawRename, "a metric_renames entry with from and to", {
    "from" => from: String,
    "to" => to: String,
});

case_insensitive_struct!(RawStaticMetadata, "a static_metadata entry with metric and type", {
    "metric" => metric: String,
    "type" => metric_type: Option<Spanned<String>>,
    "value_type" => value_type: Option<Spanned<String>>,
    "help" => help: String,
});

case_insensitive_struct!(RawAggregatedCounter, "an aggregated_counters entry with metric, help and filters", {
    "metric" => metric: String,
    "help" => help: String,
    "filters" => filters: Vec<Spanned<String>>,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FileError {
        parse(text).unwrap_err()
    }

    #[test]
    fn a_full_file_is_read() {
        let c = parse(
            r#"
metric_renames:
  - from: instance:node_cpu:rate
    to: node_cpu_rate
  - from: a
    to: b
  - from: a
    to: c
static_metadata:
  - metric: instance:node_cpu:rate
    type: counter
    value_type: int64
    help: CPU rate
  - metric: x
    type: untyped
aggregated_counters:
  - metric: requests
    help: All requests
    filters:
      - http_requests_total{code="200"}
      - '{__name__="rpc_total"}'
  - metric: nothing
    help: matches nothing
"#,
        )
        .unwrap();
        assert_eq!(c.metric_renames["instance:node_cpu:rate"], "node_cpu_rate");
        assert_eq!(
            c.metric_renames["a"], "c",
            "a repeated `from` keeps its last `to`"
        );
        assert_eq!(c.static_metadata.len(), 2);
        let m = &c.static_metadata[0];
        assert_eq!(
            (
                m.metric.as_str(),
                m.metric_type,
                m.value_type,
                m.help.as_str()
            ),
            (
                "instance:node_cpu:rate",
                MetricType::Counter,
                ValueType::Int64,
                "CPU rate"
            )
        );
        assert_eq!(c.static_metadata[1].metric_type, MetricType::Unknown);
        assert_eq!(c.static_metadata[1].value_type, ValueType::Unspecified);
        assert_eq!(c.aggregated_counters.len(), 2);
        assert_eq!(c.aggregated_counters[0].metric, "requests");
        assert_eq!(c.aggregated_counters[0].help, "All requests");
        assert_eq!(c.aggregated_counters[0].filters.len(), 2);
        assert!(c.aggregated_counters[1].filters.is_empty());
    }

    #[test]
    fn empty_files_and_lists_are_empty_configurations() {
        for text in [
            "",
            "\n  \n",
            "# only a comment\n",
            "metric_renames:\nstatic_metadata: []\n",
        ] {
            let c = parse(text).unwrap();
            assert!(c.metric_renames.is_empty(), "{text:?}");
            assert!(c.static_metadata.is_empty());
            assert!(c.aggregated_counters.is_empty());
        }
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_keys_are_ignored() {
        let c = parse("Metric_Renames:\n  - FROM: a\n    To: b\n    extra: 1\nother: [1, 2]\n")
            .unwrap();
        assert_eq!(c.metric_renames["a"], "b");
    }

    #[test]
    fn an_invalid_metric_type_names_the_entry_and_its_line() {
        let e = err(
            "static_metadata:\n  - metric: a\n    type: gauge\n  - metric: b\n    type: timer\n",
        );
        assert_eq!(e.line, Some(5));
        assert_eq!(
            e.message,
            r#"static_metadata entry for metric "b": invalid metric type "timer""#
        );
        let e = err("static_metadata:\n  - metric: a\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains(r#"invalid metric type """#), "{e}");
        // gaugehistogram and the other OpenMetrics types are not accepted, as in the original.
        let e = err("static_metadata:\n  - metric: a\n    type: gaugehistogram\n");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn an_invalid_value_type_names_the_entry_and_its_line() {
        let e = err("static_metadata:\n  - metric: a\n    type: gauge\n    value_type: float\n");
        assert_eq!(e.line, Some(4));
        assert_eq!(
            e.message,
            r#"static_metadata entry for metric "a": invalid value type "float""#
        );
    }

    #[test]
    fn a_duplicate_aggregate_names_the_metric_and_its_line() {
        let e = err(
            "aggregated_counters:\n  - metric: x\n    filters: [up]\n  - metric: x\n    filters: [up]\n",
        );
        assert_eq!(e.line, Some(4));
        assert_eq!(e.message, "duplicate counter aggregator metric x");
    }

    #[test]
    fn an_invalid_selector_names_the_aggregate_and_its_line() {
        let e = err(
            "aggregated_counters:\n  - metric: x\n    filters:\n      - up\n      - '{a-b=\"c\"}'\n",
        );
        assert_eq!(e.line, Some(5));
        assert!(
            e.message.starts_with(
                r#"aggregated_counters entry "x": cannot parse metric selector '{a-b="c"}'"#
            ),
            "{e}"
        );
    }

    #[test]
    fn incomplete_entries_are_refused_with_their_line() {
        let e = err("metric_renames:\n  - from: a\n    to: b\n  - to: b\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.starts_with("metric_renames entry"), "{e}");
        let e = err("aggregated_counters:\n  - help: h\n");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn invalid_yaml_has_a_line() {
        let e = err("metric_renames:\n  - from: a\n    to: [b\n");
        assert!(e.message.starts_with("invalid YAML"), "{e}");
        assert!(e.line.is_some(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "line 3: invalid YAML at column 9: expected string scalar"
        );
        let e = err("metric_renames: 3\n");
        assert_eq!(e.line, Some(1), "{e:?}");
        let e = err("static_metadata:\n  - metric: [a]\n    type: gauge\n");
        assert_eq!(e.line, Some(2), "{e:?}");
    }

    #[test]
    fn display_puts_the_line_first() {
        let e = FileError::at(3, "bad".into());
        assert_eq!(e.to_string(), "line 3: bad");
    }
}
