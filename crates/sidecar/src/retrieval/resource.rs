//! Monitored-resource mapping: which Cloud Monitoring resource a series belongs to.
//!
//! Owns the table of resource types in their order of precedence and the translation rules of the
//! original (a target's discovered labels plus the static labels, then the series' own labels,
//! which win and are consumed). It must never look anything up: the inputs are handed to it.

use prometheus_wal::Label;

use crate::config::static_label::{
    GENERIC_LOCATION, GENERIC_NAMESPACE, KUBERNETES_CLUSTER_NAME, KUBERNETES_LOCATION, PROJECT_ID,
};

/// How a source label's value becomes the resource label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Convert {
    Keep,
    /// `aws:` + value (EC2 availability zone → region label).
    AwsRegion,
    /// Text after the last `/` (GCE zone URLs).
    LastPathSegment,
}

impl Convert {
    fn apply(self, value: &str) -> String {
        match self {
            Convert::Keep => value.to_string(),
            Convert::AwsRegion => format!("aws:{value}"),
            Convert::LastPathSegment => value.rsplit('/').next().unwrap_or(value).to_string(),
        }
    }
}

/// One entry of the resource table.
struct ResourceMap {
    resource_type: &'static str,
    /// A discovered label that must be present (any value) for this type to apply.
    match_label: Option<&'static str>,
    /// (source label, resource label, conversion).
    labels: &'static [(&'static str, &'static str, Convert)],
}

use Convert::{AwsRegion, Keep, LastPathSegment};

const POD_ORG: &str = "__meta_kubernetes_pod_label_org";
const POD_ENV: &str = "__meta_kubernetes_pod_label_env";
const POD_NAME: &str = "__meta_kubernetes_pod_name";
const NAMESPACE: &str = "__meta_kubernetes_namespace";

/// The resource types in order of precedence: the first one whose labels are all found wins.
const RESOURCE_MAPS: &[ResourceMap] = &[
    ResourceMap {
        resource_type: "anthos_l4lb",
        match_label: Some(
            "__meta_kubernetes_service_annotation_gke_googleapis_com_anthos_l4lb_type",
        ),
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (
                "__meta_kubernetes_service_annotation_gke_googleapis_com_anthos_l4lb_kind",
                "kind",
                Keep,
            ),
            (
                "__meta_kubernetes_service_annotation_gke_googleapis_com_anthos_l4lb_group_name",
                "group_name",
                Keep,
            ),
            (
                "__meta_kubernetes_service_annotation_gke_googleapis_com_anthos_l4lb_hostname",
                "hostname",
                Keep,
            ),
        ],
    },
    ResourceMap {
        resource_type: "connectors.googleapis.com/Connection",
        match_label: Some("__meta_kubernetes_pod_label_type_connection"),
        labels: &[
            (PROJECT_ID, "resource_container", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            ("connection", "connection", Keep),
        ],
    },
    ResourceMap {
        resource_type: "apigee.googleapis.com/TargetV2",
        match_label: Some("__meta_kubernetes_pod_label_type_target_v2"),
        labels: &[
            (PROJECT_ID, "resource_container", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            ("org", "org", Keep),
            ("env", "env", Keep),
            ("proxy_name", "proxy_name", Keep),
            ("type", "type", Keep),
            ("endpoint", "endpoint", Keep),
            ("runtime_version", "runtime_version", Keep),
            ("instance_id", "instance_id", Keep),
        ],
    },
    ResourceMap {
        resource_type: "apigee.googleapis.com/ProxyV2",
        match_label: Some("__meta_kubernetes_pod_label_type_proxy_v2"),
        labels: &[
            (PROJECT_ID, "resource_container", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            ("org", "org", Keep),
            ("env", "env", Keep),
            ("proxy_name", "proxy_name", Keep),
            ("runtime_version", "runtime_version", Keep),
            ("instance_id", "instance_id", Keep),
        ],
    },
    ResourceMap {
        resource_type: "apigee.googleapis.com/Proxy",
        match_label: Some("__meta_kubernetes_pod_label_type_proxy"),
        labels: &[
            (PROJECT_ID, "resource_container", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (POD_ORG, "org", Keep),
            (POD_ENV, "env", Keep),
            ("proxy_name", "proxy_name", Keep),
            ("revision", "revision", Keep),
            (POD_NAME, "host", Keep),
        ],
    },
    ResourceMap {
        resource_type: "apigee.googleapis.com/Devapp",
        match_label: Some("__meta_kubernetes_pod_label_type_devapp"),
        labels: &[
            (PROJECT_ID, "resource_container", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (POD_ORG, "org", Keep),
            (POD_ENV, "env", Keep),
            ("api_product_name", "api_product_name", Keep),
            (POD_NAME, "host", Keep),
        ],
    },
    ResourceMap {
        resource_type: "k8s_container",
        match_label: None,
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (KUBERNETES_CLUSTER_NAME, "cluster_name", Keep),
            (NAMESPACE, "namespace_name", Keep),
            (POD_NAME, "pod_name", Keep),
            (
                "__meta_kubernetes_pod_container_name",
                "container_name",
                Keep,
            ),
        ],
    },
    ResourceMap {
        resource_type: "k8s_pod",
        match_label: None,
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (KUBERNETES_CLUSTER_NAME, "cluster_name", Keep),
            (NAMESPACE, "namespace_name", Keep),
            (POD_NAME, "pod_name", Keep),
        ],
    },
    ResourceMap {
        resource_type: "k8s_node",
        match_label: None,
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            (KUBERNETES_LOCATION, "location", Keep),
            (KUBERNETES_CLUSTER_NAME, "cluster_name", Keep),
            ("__meta_kubernetes_node_name", "node_name", Keep),
        ],
    },
    ResourceMap {
        resource_type: "aws_ec2_instance",
        match_label: None,
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            ("__meta_ec2_instance_id", "instance_id", Keep),
            ("__meta_ec2_availability_zone", "region", AwsRegion),
            ("__meta_ec2_owner_id", "aws_account", Keep),
        ],
    },
    ResourceMap {
        resource_type: "gce_instance",
        match_label: None,
        labels: &[
            ("__meta_gce_project", "project_id", Keep),
            ("__meta_gce_instance_id", "instance_id", Keep),
            ("__meta_gce_zone", "zone", LastPathSegment),
        ],
    },
    ResourceMap {
        resource_type: "generic_task",
        match_label: None,
        labels: &[
            (PROJECT_ID, "project_id", Keep),
            (GENERIC_LOCATION, "location", Keep),
            (GENERIC_NAMESPACE, "namespace", Keep),
            ("job", "job", Keep),
            ("instance", "task_id", Keep),
        ],
    },
];

/// The legacy resource of `--stackdriver.use-gke-resource`: best effort, missing labels are "".
const GKE_CONTAINER: ResourceMap = ResourceMap {
    resource_type: "gke_container",
    match_label: None,
    labels: &[
        (PROJECT_ID, "project_id", Keep),
        (KUBERNETES_LOCATION, "zone", Keep),
        (KUBERNETES_CLUSTER_NAME, "cluster_name", Keep),
        (NAMESPACE, "namespace_id", Keep),
        ("__meta_kubernetes_node_name", "instance_id", Keep),
        (POD_NAME, "pod_id", Keep),
        (
            "__meta_kubernetes_pod_container_name",
            "container_name",
            Keep,
        ),
    ],
};

/// A monitored resource: type and labels sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// e.g. `k8s_container`.
    pub resource_type: &'static str,
    /// Resource labels, sorted by name.
    pub labels: Vec<(&'static str, String)>,
}

/// The resource of a series, and the series labels that remain for the metric (the ones the
/// resource consumed are removed).
pub fn resolve_resource(
    discovered: &[Label],
    series: &[Label],
    use_gke_resource: bool,
) -> Option<(Resource, Vec<Label>)> {
    if use_gke_resource {
        return translate(&GKE_CONTAINER, discovered, series, false);
    }
    RESOURCE_MAPS
        .iter()
        .find_map(|map| translate(map, discovered, series, true))
}

fn translate(
    map: &ResourceMap,
    discovered: &[Label],
    series: &[Label],
    strict: bool,
) -> Option<(Resource, Vec<Label>)> {
    let mut values: Vec<Option<String>> = vec![None; map.labels.len()];
    let mut matched = map.match_label.is_none();
    for label in discovered {
        if Some(label.name.as_str()) == map.match_label {
            matched = true;
        }
        if let Some(i) = map.labels.iter().position(|(src, _, _)| *src == label.name) {
            values[i] = Some(map.labels[i].2.apply(&label.value));
        }
    }
    if !matched {
        return None;
    }
    let mut remaining = Vec::with_capacity(series.len());
    for label in series {
        match map.labels.iter().position(|(src, _, _)| *src == label.name) {
            Some(i) => values[i] = Some(map.labels[i].2.apply(&label.value)),
            None => remaining.push(label.clone()),
        }
    }
    if strict && values.iter().any(Option::is_none) {
        return None;
    }
    let mut labels: Vec<(&'static str, String)> = map
        .labels
        .iter()
        .zip(values)
        .map(|((_, dst, _), v)| (*dst, v.unwrap_or_default()))
        .collect();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    Some((
        Resource {
            resource_type: map.resource_type,
            labels,
        },
        remaining,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut v: Vec<Label> = pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect();
        v.sort();
        v
    }

    fn k8s_discovered(extra: &[(&str, &str)]) -> Vec<Label> {
        let mut base = vec![
            (PROJECT_ID, "proj"),
            (KUBERNETES_LOCATION, "europe-west1"),
            (KUBERNETES_CLUSTER_NAME, "prod"),
        ];
        base.extend_from_slice(extra);
        labels(&base)
    }

    fn resource_of(discovered: &[Label], series: &[Label]) -> Option<&'static str> {
        resolve_resource(discovered, series, false).map(|(r, _)| r.resource_type)
    }

    #[test]
    fn generic_task_takes_job_and_instance_from_the_series_and_consumes_them() {
        let discovered = labels(&[
            (PROJECT_ID, "proj"),
            (GENERIC_LOCATION, "here"),
            (GENERIC_NAMESPACE, "ns"),
            ("job", "node"),
        ]);
        let series = labels(&[
            ("__name__", "node_load1"),
            ("job", "node"),
            ("instance", "127.0.0.1:9100"),
            ("cpu", "0"),
        ]);
        let (r, rest) = resolve_resource(&discovered, &series, false).unwrap();
        assert_eq!(r.resource_type, "generic_task");
        assert_eq!(
            r.labels,
            vec![
                ("job", "node".to_string()),
                ("location", "here".to_string()),
                ("namespace", "ns".to_string()),
                ("project_id", "proj".to_string()),
                ("task_id", "127.0.0.1:9100".to_string()),
            ]
        );
        assert_eq!(rest, labels(&[("__name__", "node_load1"), ("cpu", "0")]));
    }

    #[test]
    fn generic_task_needs_the_generic_flags() {
        let discovered = labels(&[(PROJECT_ID, "proj"), ("job", "node")]);
        let series = labels(&[("job", "node"), ("instance", "i")]);
        assert_eq!(resource_of(&discovered, &series), None);
    }

    #[test]
    fn k8s_container_wins_over_pod_and_node() {
        let d = k8s_discovered(&[
            (NAMESPACE, "default"),
            (POD_NAME, "web-1"),
            ("__meta_kubernetes_pod_container_name", "app"),
            ("__meta_kubernetes_node_name", "n1"),
        ]);
        let (r, _) = resolve_resource(&d, &[], false).unwrap();
        assert_eq!(r.resource_type, "k8s_container");
        assert_eq!(
            r.labels,
            vec![
                ("cluster_name", "prod".to_string()),
                ("container_name", "app".to_string()),
                ("location", "europe-west1".to_string()),
                ("namespace_name", "default".to_string()),
                ("pod_name", "web-1".to_string()),
                ("project_id", "proj".to_string()),
            ]
        );
    }

    #[test]
    fn k8s_pod_when_no_container_name() {
        let d = k8s_discovered(&[
            (NAMESPACE, "default"),
            (POD_NAME, "web-1"),
            ("__meta_kubernetes_node_name", "n1"),
        ]);
        assert_eq!(resource_of(&d, &[]), Some("k8s_pod"));
    }

    #[test]
    fn k8s_node_when_only_node_name() {
        let d = k8s_discovered(&[("__meta_kubernetes_node_name", "n1")]);
        assert_eq!(resource_of(&d, &[]), Some("k8s_node"));
    }

    #[test]
    fn k8s_node_wins_over_gce_and_aws() {
        let d = k8s_discovered(&[
            ("__meta_kubernetes_node_name", "n1"),
            ("__meta_gce_project", "g"),
            ("__meta_gce_instance_id", "1"),
            ("__meta_gce_zone", "z"),
            ("__meta_ec2_instance_id", "i-1"),
            ("__meta_ec2_availability_zone", "us-east-1a"),
            ("__meta_ec2_owner_id", "42"),
        ]);
        assert_eq!(resource_of(&d, &[]), Some("k8s_node"));
    }

    #[test]
    fn gce_instance_keeps_the_zone_name_only() {
        let d = labels(&[
            ("__meta_gce_project", "g"),
            ("__meta_gce_instance_id", "123"),
            (
                "__meta_gce_zone",
                "https://x/projects/g/zones/us-central1-a",
            ),
        ]);
        let (r, _) = resolve_resource(&d, &[], false).unwrap();
        assert_eq!(r.resource_type, "gce_instance");
        assert!(r.labels.contains(&("zone", "us-central1-a".to_string())));
    }

    #[test]
    fn aws_region_is_prefixed() {
        let d = labels(&[
            (PROJECT_ID, "proj"),
            ("__meta_ec2_instance_id", "i-1"),
            ("__meta_ec2_availability_zone", "us-east-1a"),
            ("__meta_ec2_owner_id", "42"),
        ]);
        let (r, _) = resolve_resource(&d, &[], false).unwrap();
        assert_eq!(r.resource_type, "aws_ec2_instance");
        assert!(r.labels.contains(&("region", "aws:us-east-1a".to_string())));
    }

    #[test]
    fn apigee_proxy_wins_over_k8s_container_and_consumes_series_labels() {
        let d = k8s_discovered(&[
            ("__meta_kubernetes_pod_label_type_proxy", "x"),
            (POD_ORG, "o"),
            (POD_ENV, "e"),
            (NAMESPACE, "default"),
            (POD_NAME, "web-1"),
            ("__meta_kubernetes_pod_container_name", "app"),
        ]);
        let series = labels(&[("proxy_name", "p"), ("revision", "3"), ("code", "200")]);
        let (r, rest) = resolve_resource(&d, &series, false).unwrap();
        assert_eq!(r.resource_type, "apigee.googleapis.com/Proxy");
        assert_eq!(rest, labels(&[("code", "200")]));
    }

    #[test]
    fn match_label_must_be_discovered_not_in_the_series() {
        let d = k8s_discovered(&[]);
        let series = labels(&[
            ("__meta_kubernetes_pod_label_type_connection", "x"),
            ("connection", "c"),
        ]);
        assert_ne!(
            resource_of(&d, &series),
            Some("connectors.googleapis.com/Connection")
        );
    }

    #[test]
    fn series_label_overrides_discovered_value() {
        let discovered = labels(&[
            (PROJECT_ID, "proj"),
            (GENERIC_LOCATION, "here"),
            (GENERIC_NAMESPACE, "ns"),
            ("job", "from-target"),
        ]);
        let series = labels(&[("job", "from-series"), ("instance", "i")]);
        let (r, _) = resolve_resource(&discovered, &series, false).unwrap();
        assert!(r.labels.contains(&("job", "from-series".to_string())));
    }

    /// Every resource type's labels at once: each type in the precedence list must win over all
    /// that follow it, so taking away the winner's identifying label reveals the next one.
    #[test]
    fn each_resource_type_wins_over_every_later_one() {
        const ANTHOS: &str = "__meta_kubernetes_service_annotation_gke_googleapis_com_anthos_l4lb";
        let mut discovered: Vec<(String, &str)> = [
            (PROJECT_ID, "proj"),
            (KUBERNETES_LOCATION, "europe-west1"),
            (KUBERNETES_CLUSTER_NAME, "prod"),
            (GENERIC_LOCATION, "here"),
            (GENERIC_NAMESPACE, "ns"),
            (POD_ORG, "o"),
            (POD_ENV, "e"),
            (NAMESPACE, "default"),
            (POD_NAME, "web-1"),
            ("__meta_kubernetes_pod_container_name", "app"),
            ("__meta_kubernetes_node_name", "n1"),
            ("__meta_ec2_instance_id", "i-1"),
            ("__meta_ec2_availability_zone", "us-east-1a"),
            ("__meta_ec2_owner_id", "42"),
            ("__meta_gce_project", "g"),
            ("__meta_gce_instance_id", "1"),
            ("__meta_gce_zone", "z"),
            ("__meta_kubernetes_pod_label_type_devapp", "x"),
            ("__meta_kubernetes_pod_label_type_proxy", "x"),
            ("__meta_kubernetes_pod_label_type_proxy_v2", "x"),
            ("__meta_kubernetes_pod_label_type_target_v2", "x"),
            ("__meta_kubernetes_pod_label_type_connection", "x"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        for suffix in ["type", "kind", "group_name", "hostname"] {
            discovered.push((format!("{ANTHOS}_{suffix}"), "x"));
        }
        let series = labels(&[
            ("job", "j"),
            ("instance", "i"),
            ("connection", "c"),
            ("org", "o"),
            ("env", "e"),
            ("proxy_name", "p"),
            ("type", "t"),
            ("endpoint", "ep"),
            ("runtime_version", "1"),
            ("instance_id", "id"),
            ("revision", "3"),
            ("api_product_name", "a"),
        ]);
        // (type expected to win, discovered label whose removal lets the next one win)
        let chain = [
            ("anthos_l4lb", format!("{ANTHOS}_type")),
            (
                "connectors.googleapis.com/Connection",
                "__meta_kubernetes_pod_label_type_connection".into(),
            ),
            (
                "apigee.googleapis.com/TargetV2",
                "__meta_kubernetes_pod_label_type_target_v2".into(),
            ),
            (
                "apigee.googleapis.com/ProxyV2",
                "__meta_kubernetes_pod_label_type_proxy_v2".into(),
            ),
            (
                "apigee.googleapis.com/Proxy",
                "__meta_kubernetes_pod_label_type_proxy".into(),
            ),
            (
                "apigee.googleapis.com/Devapp",
                "__meta_kubernetes_pod_label_type_devapp".into(),
            ),
            (
                "k8s_container",
                "__meta_kubernetes_pod_container_name".into(),
            ),
            ("k8s_pod", POD_NAME.into()),
            ("k8s_node", "__meta_kubernetes_node_name".into()),
            ("aws_ec2_instance", "__meta_ec2_instance_id".into()),
            ("gce_instance", "__meta_gce_instance_id".into()),
            ("generic_task", GENERIC_LOCATION.into()),
        ];
        for (winner, identifying) in chain {
            let pairs: Vec<(&str, &str)> =
                discovered.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            assert_eq!(
                resource_of(&labels(&pairs), &series),
                Some(winner),
                "before removing {identifying}"
            );
            discovered.retain(|(n, _)| *n != identifying);
        }
        let pairs: Vec<(&str, &str)> = discovered.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(resource_of(&labels(&pairs), &series), None);
    }

    #[test]
    fn gke_container_always_succeeds() {
        let (r, _) = resolve_resource(&[], &[], true).unwrap();
        assert_eq!(r.resource_type, "gke_container");
        assert!(r.labels.iter().all(|(_, v)| v.is_empty()));
        assert_eq!(r.labels.len(), 7);
    }
}
