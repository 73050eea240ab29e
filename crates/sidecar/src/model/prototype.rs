//! A series' prototype: everything about one Cloud Monitoring time series except its points
//! (metric type and labels, resource, kind, value type), encoded to protobuf once when the
//! series resolves, and the ordering guard's last interval that travels with it. It must never
//! decide what a series is called or where it belongs (resolution does), only hold and write it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use prost::encoding::{WireType, decode_varint, encode_key, encode_varint};

use super::intern::share;
use super::point::PointKind;
use super::validate::{Invalid, check_series};
use super::wire::{
    METRIC_LABELS_TAG, METRIC_TYPE_TAG, RESOURCE_LABELS_TAG, RESOURCE_TYPE_TAG,
    TIME_SERIES_KIND_TAG, TIME_SERIES_METRIC_TAG, TIME_SERIES_RESOURCE_TAG,
    TIME_SERIES_VALUE_TYPE_TAG, put_bytes, put_field_head, put_map_entry, put_string,
};

/// The interval of the last point accepted for a series, for the converter's ordering guard.
/// It lives with the (interned) prototype so that every WAL series mapping to one Cloud
/// Monitoring series shares it, without a lookup per sample. Only the reader thread touches it;
/// atomics make the prototype shareable with the shards, which never read it.
#[derive(Debug, Default)]
pub struct LastInterval {
    start: AtomicI64,
    /// `i64::MIN` (the default, as 0 would be a valid time) until the first point.
    end: AtomicI64,
}

impl LastInterval {
    /// An empty guard.
    pub fn new() -> LastInterval {
        LastInterval {
            start: AtomicI64::new(0),
            end: AtomicI64::new(i64::MIN),
        }
    }

    /// The last accepted `(start, end)`, if any.
    pub fn get(&self) -> Option<(i64, i64)> {
        let end = self.end.load(Relaxed);
        (end != i64::MIN).then(|| (self.start.load(Relaxed), end))
    }

    /// Records `(start, end)` as the last accepted interval.
    pub fn set(&self, (start, end): (i64, i64)) {
        self.start.store(start, Relaxed);
        self.end.store(end, Relaxed);
    }
}

impl Clone for LastInterval {
    fn clone(&self) -> LastInterval {
        let copy = LastInterval::new();
        if let Some(interval) = self.get() {
            copy.set(interval);
        }
        copy
    }
}

impl PartialEq for LastInterval {
    /// Not part of a series' identity.
    fn eq(&self, _: &LastInterval) -> bool {
        true
    }
}

/// Everything about one Cloud Monitoring time series except its points, encoded once.
///
/// The bytes come in three pieces, written one after the other: `encoded`
/// up to `head_len` (the `metric` field's key and length), the metric type's field (shared by
/// every series of that metric type), and the rest of `encoded` (the metric labels, then
/// `metric_kind` and `value_type`); then the resource's field. Sharing the metric type keeps
/// about fifty bytes per series once, instead of in every series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPrototype {
    /// Stable hash of resource and metric identity: the shard key and the per-request dedup key.
    pub hash: u64,
    /// Kind and value type of the points.
    pub kind: PointKind,
    /// Length of the `metric` field's key and length at the start of `encoded`.
    head_len: u8,
    /// `TimeSeries` fields 1, 3 and 4 (metric, metric_kind, value_type) as protobuf bytes,
    /// without the metric type's field (see above).
    encoded: Box<[u8]>,
    /// The `Metric.type` field as protobuf bytes, shared with every series of the metric type.
    metric_type: Arc<[u8]>,
    /// `TimeSeries` field 2 (resource) as protobuf bytes, shared with every series of the same
    /// resource.
    pub resource: Arc<[u8]>,
    /// The rule the metric type, metric labels or resource type break, if any: every point of
    /// such a series would be refused, so none is sent.
    pub invalid: Option<Invalid>,
    /// The last point's interval (the converter's ordering guard).
    pub last_interval: LastInterval,
}

impl SeriesPrototype {
    /// Encodes a prototype. Labels must be sorted by name (the hash depends on the order); map
    /// entries are written sorted by key, so the bytes of one identity are always the same.
    pub fn new(
        metric_type: String,
        metric_labels: &[(String, String)],
        resource_type: &str,
        resource_labels: &[(&str, String)],
        kind: PointKind,
    ) -> SeriesPrototype {
        let hash = series_hash(&metric_type, metric_labels, resource_type, resource_labels);
        let invalid = check_series(&metric_type, metric_labels, resource_type).err();
        let mut type_field = Vec::with_capacity(metric_type.len() + 3);
        put_string(METRIC_TYPE_TAG, &metric_type, &mut type_field);
        let mut labels = Vec::with_capacity(64);
        let mut sorted: Vec<(&str, &str)> = metric_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable();
        for (k, v) in sorted {
            put_map_entry(METRIC_LABELS_TAG, k, v, &mut labels);
        }
        let mut head = [0u8; 11];
        let head_len = put_field_head(
            TIME_SERIES_METRIC_TAG,
            type_field.len() + labels.len(),
            &mut head,
        );
        let mut encoded = Vec::with_capacity(head_len + labels.len() + 4);
        encoded.extend_from_slice(&head[..head_len]);
        encoded.extend_from_slice(&labels);
        encode_key(TIME_SERIES_KIND_TAG, WireType::Varint, &mut encoded);
        encode_varint(kind.metric_kind() as i32 as u64, &mut encoded);
        encode_key(TIME_SERIES_VALUE_TYPE_TAG, WireType::Varint, &mut encoded);
        encode_varint(kind.value_type() as i32 as u64, &mut encoded);
        let mut resource = Vec::with_capacity(64);
        put_string(RESOURCE_TYPE_TAG, resource_type, &mut resource);
        let mut sorted: Vec<(&str, &str)> = resource_labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        sorted.sort_unstable();
        for (k, v) in sorted {
            put_map_entry(RESOURCE_LABELS_TAG, k, v, &mut resource);
        }
        let mut resource_field = Vec::with_capacity(resource.len() + 3);
        put_bytes(TIME_SERIES_RESOURCE_TAG, &resource, &mut resource_field);
        SeriesPrototype {
            hash,
            kind,
            head_len: head_len as u8,
            encoded: encoded.into_boxed_slice(),
            metric_type: share(&type_field),
            resource: share(&resource_field),
            invalid,
            last_interval: LastInterval::new(),
        }
    }
}

impl SeriesPrototype {
    /// The series' `TimeSeries` fields without points, in the pieces they are written in.
    pub fn pieces(&self) -> [&[u8]; 4] {
        let (head, rest) = self.encoded.split_at(usize::from(self.head_len));
        [head, &self.metric_type, rest, &self.resource]
    }

    /// Length of the series' `TimeSeries` fields without points.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len() + self.metric_type.len() + self.resource.len()
    }

    /// The bytes of this series alone (not shared with other series), for prefetching.
    pub fn own_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The metric type (for messages), read back from its encoded field rather than kept
    /// twice.
    pub fn metric_type(&self) -> &str {
        let mut cursor = self.metric_type.get(1..).unwrap_or_default();
        let Ok(len) = decode_varint(&mut cursor) else {
            return "";
        };
        cursor
            .get(..len as usize)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("")
    }
}

/// Hash of a series' identity as Cloud Monitoring sees it (resource and metric, with labels).
/// Separators keep `("ab","c")` and `("a","bc")` apart.
fn series_hash(
    metric_type: &str,
    metric_labels: &[(String, String)],
    resource_type: &str,
    resource_labels: &[(&str, String)],
) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(resource_type.as_bytes());
    h.update(&[0xff]);
    h.update(metric_type.as_bytes());
    for (k, v) in resource_labels {
        h.update(&[0xff]);
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
    }
    h.update(&[0xfe]);
    for (k, v) in metric_labels {
        h.update(&[0xff]);
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
    }
    h.digest()
}

/// Shared handle to a prototype, as carried by every queued point.
pub type SharedPrototype = Arc<SeriesPrototype>;

/// A valid gauge or cumulative prototype with one metric label, for tests.
#[cfg(test)]
pub(crate) fn example(kind: PointKind) -> SeriesPrototype {
    SeriesPrototype::new(
        "external.googleapis.com/prometheus/up".into(),
        &[("code".into(), "200".into())],
        "generic_task",
        &[("job", "node".into()), ("task_id", "a:1".into())],
        kind,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::example as proto;

    #[test]
    fn a_prototype_breaking_a_series_rule_is_marked_invalid() {
        let bad = SeriesPrototype::new(
            "external.googleapis.com/prometheus/job:up".into(),
            &[],
            "generic_task",
            &[],
            PointKind::GaugeDouble,
        );
        assert_eq!(bad.invalid, Some(Invalid::MetricType));
        assert_eq!(proto(PointKind::GaugeDouble).invalid, None);
    }

    #[test]
    fn hash_depends_on_every_part_of_the_identity() {
        let base = proto(PointKind::GaugeDouble).hash;
        let other_label = SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[("code".into(), "500".into())],
            "generic_task",
            &[("job", "node".into()), ("task_id", "a:1".into())],
            PointKind::GaugeDouble,
        );
        assert_ne!(base, other_label.hash);
        let other_resource = SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[("code".into(), "200".into())],
            "generic_task",
            &[("job", "node".into()), ("task_id", "a:2".into())],
            PointKind::GaugeDouble,
        );
        assert_ne!(base, other_resource.hash);
        assert_eq!(base, proto(PointKind::GaugeDouble).hash);
    }
}
