//! One validated configuration, built from the command line.
//!
//! Owns the meaning of every flag: URLs are parsed, the static resource labels are derived, and
//! every problem is reported as a [`ConfigError`] naming the flag, so `main` can exit with status 2.
//! It must never start anything or touch the network.

pub mod flags;

use std::fmt;
use std::path::PathBuf;

use prometheus_wal::{Label, Labels};
use url::Url;

pub use flags::{Flags, LogFormat, LogLevel};

/// Default prefix of metric types when `--stackdriver.metrics-prefix` is empty.
pub const DEFAULT_METRICS_PREFIX: &str = "external.googleapis.com/prometheus";

/// Names of the static labels added to every target's discovered labels; the resource mapping
/// reads them like any discovered label.
pub mod static_label {
    /// Project id (`--stackdriver.project-id`).
    pub const PROJECT_ID: &str = "_stackdriver_project_id";
    /// `--stackdriver.kubernetes.location`.
    pub const KUBERNETES_LOCATION: &str = "_kubernetes_location";
    /// `--stackdriver.kubernetes.cluster-name`.
    pub const KUBERNETES_CLUSTER_NAME: &str = "_kubernetes_cluster_name";
    /// `--stackdriver.generic.location`.
    pub const GENERIC_LOCATION: &str = "_generic_location";
    /// `--stackdriver.generic.namespace`.
    pub const GENERIC_NAMESPACE: &str = "_generic_namespace";
}

/// A flag whose value makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag, e.g. `--stackdriver.api-address`.
    pub flag: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid value for {}: {}", self.flag, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where and how to reach the Cloud Monitoring API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAddress {
    /// The URL as given, used as the `queue` label of the export metrics.
    pub url: String,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port; 443 when the URL has none.
    pub port: u16,
    /// `false` when the URL carries `?auth=false`: plaintext, no credentials.
    pub auth: bool,
}

/// The sidecar's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `projects/<id>` target of every request.
    pub project_id: String,
    /// The Monitoring API endpoint.
    pub api: ApiAddress,
    /// Prometheus base URL, always ending in `/`.
    pub prometheus_url: Url,
    /// WAL directory.
    pub wal_directory: PathBuf,
    /// Prefix of metric types, without a trailing slash added.
    pub metrics_prefix: String,
    /// Use the legacy gke_container resource.
    pub use_gke_resource: bool,
    /// Static labels (non-empty values only), sorted by name.
    pub static_labels: Labels,
    /// Log level.
    pub log_level: LogLevel,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Validates the flags.
    pub fn from_flags(flags: &Flags) -> Result<Config, ConfigError> {
        let project_id = flags.project_id.trim().to_string();
        if project_id.is_empty() {
            return Err(ConfigError {
                flag: "--stackdriver.project-id",
                message: "must not be empty (reading it from the GCE metadata server is not \
                          supported)"
                    .into(),
            });
        }
        let api = parse_api_address(&flags.api_address)?;
        let prometheus_url = parse_prometheus_url(&flags.prometheus_api_address)?;
        if flags.wal_directory.is_empty() {
            return Err(ConfigError {
                flag: "--prometheus.wal-directory",
                message: "must not be empty".into(),
            });
        }
        let metrics_prefix = if flags.metrics_prefix.is_empty() {
            DEFAULT_METRICS_PREFIX.to_string()
        } else {
            flags.metrics_prefix.clone()
        };
        let mut static_labels: Labels = [
            (static_label::PROJECT_ID, project_id.as_str()),
            (
                static_label::KUBERNETES_LOCATION,
                flags.kubernetes_location.as_str(),
            ),
            (
                static_label::KUBERNETES_CLUSTER_NAME,
                flags.kubernetes_cluster_name.as_str(),
            ),
            (
                static_label::GENERIC_LOCATION,
                flags.generic_location.as_str(),
            ),
            (
                static_label::GENERIC_NAMESPACE,
                flags.generic_namespace.as_str(),
            ),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
        static_labels.sort();
        Ok(Config {
            project_id,
            api,
            prometheus_url,
            wal_directory: PathBuf::from(&flags.wal_directory),
            metrics_prefix,
            use_gke_resource: flags.use_gke_resource(),
            static_labels,
            log_level: flags.log_level,
            log_format: flags.log_format,
        })
    }
}

fn parse_api_address(raw: &str) -> Result<ApiAddress, ConfigError> {
    const FLAG: &str = "--stackdriver.api-address";
    let url = Url::parse(raw).map_err(|e| ConfigError {
        flag: FLAG,
        message: format!("{raw:?} is not a URL: {e}"),
    })?;
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => {
            return Err(ConfigError {
                flag: FLAG,
                message: format!("{raw:?} has no host"),
            });
        }
    };
    let port = url.port().unwrap_or(443);
    let mut auth = true;
    for (key, value) in url.query_pairs() {
        if key == "auth" {
            // Same spellings as Go's strconv.ParseBool; anything else keeps auth on, as the
            // original does.
            auth = !matches!(&*value, "0" | "f" | "F" | "false" | "FALSE" | "False");
        }
    }
    if auth {
        return Err(ConfigError {
            flag: FLAG,
            message: format!(
                "{raw:?} needs TLS and Google credentials, which are not supported yet; use an \
                 endpoint that takes plaintext without credentials, with ?auth=false (such as \
                 gcm-emulator)"
            ),
        });
    }
    Ok(ApiAddress {
        url: raw.to_string(),
        host,
        port,
        auth,
    })
}

fn parse_prometheus_url(raw: &str) -> Result<Url, ConfigError> {
    const FLAG: &str = "--prometheus.api-address";
    let mut url = Url::parse(raw).map_err(|e| ConfigError {
        flag: FLAG,
        message: format!("{raw:?} is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError {
            flag: FLAG,
            message: format!("{raw:?} must be an http:// or https:// URL with a host"),
        });
    }
    // Quirk fixed: the original resolved API paths relative to the base URL, so a base path
    // without a trailing slash (`http://h/prom`) lost its last segment. The base is a directory.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Parses `args`, with a local API address unless one is given.
    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["sidecar"];
        if !args
            .iter()
            .any(|a| a.starts_with("--stackdriver.api-address"))
        {
            argv.push("--stackdriver.api-address=http://127.0.0.1:9092/?auth=false");
        }
        argv.extend_from_slice(args);
        parse_raw(&argv)
    }

    fn parse_raw(argv: &[&str]) -> Result<Config, String> {
        let flags = Flags::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_flags(&flags).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_original() {
        let err = parse_raw(&["sidecar", "--stackdriver.project-id=p"]).unwrap_err();
        assert!(err.contains("--stackdriver.api-address"), "{err}");
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=http://127.0.0.1/?auth=false",
        ])
        .unwrap();
        assert_eq!(c.api.port, 443);
        assert_eq!(c.prometheus_url.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(c.wal_directory, PathBuf::from("data/wal"));
        assert_eq!(c.metrics_prefix, DEFAULT_METRICS_PREFIX);
        assert!(!c.use_gke_resource);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.log_format, LogFormat::Logfmt);
        assert_eq!(
            c.static_labels,
            vec![Label {
                name: "_stackdriver_project_id".into(),
                value: "p".into()
            }]
        );
    }

    #[test]
    fn auth_false_in_the_api_address_disables_credentials() {
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=http://127.0.0.1:9092/?auth=false",
        ])
        .unwrap();
        assert_eq!(
            (c.api.host.as_str(), c.api.port, c.api.auth),
            ("127.0.0.1", 9092, false)
        );
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=http://[::1]:9092/?auth=0",
        ])
        .unwrap();
        assert_eq!((c.api.host.as_str(), c.api.auth), ("::1", false));
    }

    #[test]
    fn missing_project_id_names_the_flag() {
        let err = parse(&[]).unwrap_err();
        assert!(err.contains("--stackdriver.project-id"), "{err}");
        let err = parse(&["--stackdriver.project-id="]).unwrap_err();
        assert!(err.contains("--stackdriver.project-id"), "{err}");
    }

    #[test]
    fn unknown_flag_is_rejected() {
        let err = parse(&["--stackdriver.project-id=p", "--no-such-flag"]).unwrap_err();
        assert!(err.contains("--no-such-flag"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_flag() {
        let err = parse(&["--stackdriver.project-id=p", "--log.level=loud"]).unwrap_err();
        assert!(err.contains("--log.level"), "{err}");
        let err = parse(&[
            "--stackdriver.project-id=p",
            "--prometheus.api-address=ftp://x/",
        ])
        .unwrap_err();
        assert!(err.contains("--prometheus.api-address"), "{err}");
        let err = parse(&[
            "--stackdriver.project-id=p",
            "--stackdriver.api-address=nope",
        ])
        .unwrap_err();
        assert!(err.contains("--stackdriver.api-address"), "{err}");
    }

    #[test]
    fn boolean_flags_accept_the_kingpin_spellings() {
        let on = |args: &[&str]| {
            let mut a = vec!["--stackdriver.project-id=p"];
            a.extend_from_slice(args);
            parse(&a).unwrap().use_gke_resource
        };
        assert!(on(&["--stackdriver.use-gke-resource"]));
        assert!(on(&["--stackdriver.use-gke-resource=true"]));
        assert!(!on(&["--stackdriver.use-gke-resource=false"]));
        assert!(!on(&[
            "--stackdriver.use-gke-resource",
            "--no-stackdriver.use-gke-resource"
        ]));
    }

    #[test]
    fn prometheus_base_path_is_kept_as_a_directory() {
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--prometheus.api-address=http://h:9090/prom",
        ])
        .unwrap();
        assert_eq!(
            c.prometheus_url.join("api/v1/targets").unwrap().as_str(),
            "http://h:9090/prom/api/v1/targets"
        );
    }

    #[test]
    fn static_labels_skip_empty_values_and_are_sorted() {
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--stackdriver.generic.location=l",
            "--stackdriver.generic.namespace=n",
            "--stackdriver.kubernetes.cluster-name=c",
        ])
        .unwrap();
        let names: Vec<_> = c.static_labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "_generic_location",
                "_generic_namespace",
                "_kubernetes_cluster_name",
                "_stackdriver_project_id"
            ]
        );
    }
}
