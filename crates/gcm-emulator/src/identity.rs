//! What makes two `TimeSeries` the same series, and how a series is named in messages.
//!
//! Owns [`SeriesKey`]: the metric type and labels plus the monitored resource type and labels,
//! with labels sorted so that map order never matters. It must never look at points, kinds or
//! value types: those describe a series, they do not identify it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gcm_api::monitoring::TimeSeries;

/// The identity of a time series within a project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) metric_type: String,
    pub(crate) metric_labels: BTreeMap<String, String>,
    pub(crate) resource_type: String,
    pub(crate) resource_labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// The key of `ts`; absent metric or resource count as empty ones.
    pub(crate) fn of(ts: &TimeSeries) -> Self {
        let (metric_type, metric_labels) = match &ts.metric {
            Some(m) => (m.r#type.clone(), sorted(&m.labels)),
            None => (String::new(), BTreeMap::new()),
        };
        let (resource_type, resource_labels) = match &ts.resource {
            Some(r) => (r.r#type.clone(), sorted(&r.labels)),
            None => (String::new(), BTreeMap::new()),
        };
        Self {
            metric_type,
            metric_labels,
            resource_type,
            resource_labels,
        }
    }
}

fn sorted(labels: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `metric.type="…", metric.labels={"k": "v"}`: how the API names a series in its errors.
pub(crate) fn describe(ts: &TimeSeries) -> String {
    let key = SeriesKey::of(ts);
    let mut out = format!("metric.type={:?}, metric.labels={{", key.metric_type);
    for (i, (k, v)) in key.metric_labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{k:?}: {v:?}");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcm_api::api::Metric;

    #[test]
    fn describe_names_type_and_sorted_labels() {
        let ts = TimeSeries {
            metric: Some(Metric {
                r#type: "custom.googleapis.com/x".into(),
                labels: [
                    ("b".to_string(), "2".to_string()),
                    ("a".to_string(), "1".to_string()),
                ]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        };
        assert_eq!(
            describe(&ts),
            r#"metric.type="custom.googleapis.com/x", metric.labels={"a": "1", "b": "2"}"#
        );
    }
}
