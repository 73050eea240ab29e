//! One validated configuration, built from the command line.
//!
//! Owns the meaning of every flag: URLs are parsed, the static resource labels are derived, and
//! every problem is reported as a [`ConfigError`] naming the flag, so `main` can exit with
//! status 2. It must never start anything or touch the network.

pub(crate) mod file;
pub(crate) mod flags;

use std::fmt;
use std::path::PathBuf;

use prometheus_wal::{Label, Labels};
use url::Url;

use crate::export::ShardBounds;
pub use crate::export::client::ApiAddress;
use crate::filter::SeriesFilter;
use crate::model::lanes::LANES;

pub use file::FileConfig;
pub use flags::{Flags, LogFormat, LogLevel, MonitoringBackend};

/// Default prefix of metric types when `--stackdriver.metrics-prefix` is empty.
pub const DEFAULT_METRICS_PREFIX: &str = "external.googleapis.com/prometheus";

/// Names of the static labels added to every target's discovered labels; the resource mapping
/// reads them like any discovered label.
pub(crate) mod static_label {
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

/// Where a first start begins reading samples (`--prometheus.wal-start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalStart {
    /// Everything the WAL holds.
    Oldest,
    /// Samples from the start of the process on.
    Now,
    /// Samples at most this old.
    MaxAge(std::time::Duration),
}

/// The sidecar's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `projects/<id>` target of every request.
    pub project_id: String,
    /// The Monitoring API endpoint.
    pub api: ApiAddress,
    /// How long a failing batch is retried before its points are dropped.
    pub retry_budget: std::time::Duration,
    /// Limits of the shard count.
    pub shards: ShardBounds,
    /// Store-in-files mode: requests are written here instead of being sent.
    pub store_in_files_directory: Option<PathBuf>,
    /// Prometheus base URL, always ending in `/`.
    pub prometheus_url: Url,
    /// WAL directory.
    pub wal_directory: PathBuf,
    /// Start position of a first start.
    pub wal_start: WalStart,
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
    /// `--monitoring.backend=stackdriver`: the sidecar's own metrics also go to Cloud
    /// Monitoring.
    pub self_metrics_to_monitoring: bool,
    /// `host:port` of the HTTP server (`:port` was expanded to `0.0.0.0:port`).
    pub web_listen_address: String,
    /// Serve `/statusz`.
    pub enable_statusz: bool,
    /// Which series are exported (`--include`, `--filter`).
    pub series_filter: SeriesFilter,
    /// The deprecated `--filter` was given: a warning is logged once logging is set up.
    pub deprecated_filter_used: bool,
    /// `--config-file`, if given.
    pub config_file: Option<PathBuf>,
    /// The configuration file's settings (empty without one).
    pub file: FileConfig,
}

impl Config {
    /// The value of the static label `name` (empty when not set).
    fn static_label(&self, name: &str) -> &str {
        self.static_labels
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| l.value.as_str())
    }

    /// Where the sidecar itself runs, for its own metrics' resource: the generic location and
    /// namespace flags, else the Kubernetes location and cluster name (empty when neither).
    pub fn own_location_and_namespace(&self) -> (&str, &str) {
        let pick = |first: &'static str, second: &'static str| {
            let v = self.static_label(first);
            if v.is_empty() {
                self.static_label(second)
            } else {
                v
            }
        };
        (
            pick(
                static_label::GENERIC_LOCATION,
                static_label::KUBERNETES_LOCATION,
            ),
            pick(
                static_label::GENERIC_NAMESPACE,
                static_label::KUBERNETES_CLUSTER_NAME,
            ),
        )
    }

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
        let mut api = parse_api_address(&flags.api_address)?;
        api.restricted_ips = flags.use_restricted_ips();
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
        crate::model::validate::check_metric_prefix(&metrics_prefix).map_err(|message| {
            ConfigError {
                flag: "--stackdriver.metrics-prefix",
                message,
            }
        })?;
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
        let series_filter =
            SeriesFilter::from_flags(&flags.include, &flags.filter).map_err(|e| ConfigError {
                flag: e.flag,
                message: e.message,
            })?;
        let config_file =
            (!flags.config_file.is_empty()).then(|| PathBuf::from(&flags.config_file));
        let file = match &config_file {
            Some(path) => file::load(path).map_err(|e| ConfigError {
                flag: "--config-file",
                message: format!("{}: {e}", path.display()),
            })?,
            None => FileConfig::default(),
        };
        Ok(Config {
            project_id,
            api,
            retry_budget: flags.retry_budget,
            shards: parse_shard_bounds(flags.min_shards, flags.max_shards)?,
            store_in_files_directory: (!flags.store_in_files_directory.is_empty())
                .then(|| PathBuf::from(&flags.store_in_files_directory)),
            prometheus_url,
            wal_directory: PathBuf::from(&flags.wal_directory),
            wal_start: parse_wal_start(&flags.wal_start)?,
            metrics_prefix,
            use_gke_resource: flags.use_gke_resource(),
            self_metrics_to_monitoring: flags
                .monitoring_backend
                .contains(&MonitoringBackend::Stackdriver),
            static_labels,
            log_level: flags.log_level,
            log_format: flags.log_format,
            web_listen_address: parse_listen_address(&flags.web_listen_address)?,
            enable_statusz: flags.enable_statusz(),
            series_filter,
            deprecated_filter_used: !flags.filter.is_empty(),
            config_file,
            file,
        })
    }
}

/// Accepts what Go's `net.Listen` does for TCP: `host:port`, `[v6]:port` and `:port` (every
/// interface). The host is resolved when the server binds, not here.
fn parse_listen_address(raw: &str) -> Result<String, ConfigError> {
    const FLAG: &str = "--web.listen-address";
    let invalid = |why: &str| ConfigError {
        flag: FLAG,
        message: format!("{raw:?} {why}; expected host:port, such as 0.0.0.0:9091"),
    };
    let (host, port) = raw.rsplit_once(':').ok_or_else(|| invalid("has no port"))?;
    port.parse::<u16>()
        .map_err(|_| invalid("has an invalid port"))?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(v6) = bare {
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| invalid("has an invalid IPv6 address"))?;
    } else if host.contains(':') || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(invalid("has an invalid host"));
    }
    Ok(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        raw.to_string()
    })
}

fn parse_shard_bounds(min: usize, max: usize) -> Result<ShardBounds, ConfigError> {
    if min == 0 {
        return Err(ConfigError {
            flag: "--stackdriver.min-shards",
            message: "must be at least 1".into(),
        });
    }
    if max > LANES {
        return Err(ConfigError {
            flag: "--stackdriver.max-shards",
            message: format!("{max} is more than the {LANES} shards there can be"),
        });
    }
    if max < min {
        return Err(ConfigError {
            flag: "--stackdriver.max-shards",
            message: format!("{max} is less than --stackdriver.min-shards ({min})"),
        });
    }
    Ok(ShardBounds { min, max })
}

fn parse_wal_start(raw: &str) -> Result<WalStart, ConfigError> {
    match raw {
        "oldest" => Ok(WalStart::Oldest),
        "now" => Ok(WalStart::Now),
        age => humantime::parse_duration(age)
            .map(WalStart::MaxAge)
            .map_err(|e| ConfigError {
                flag: "--prometheus.wal-start",
                message: format!("{raw:?} is not oldest, now or an age such as 2h: {e}"),
            }),
    }
}

/// The port written in `raw`'s authority, if any (`scheme://[user@]host[:port]/…`).
fn explicit_port(raw: &str) -> Option<u16> {
    let rest = raw.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // An IPv6 literal's colons are inside its brackets.
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port,
    };
    after_host.rsplit_once(':')?.1.parse().ok()
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
    // The port as written, even when it is the scheme's default (which `Url` leaves out):
    // `http://host:80/` is port 80. Without one, gRPC's default, 443.
    let port = url.port().or_else(|| explicit_port(raw)).unwrap_or(443);
    let mut auth = true;
    for (key, value) in url.query_pairs() {
        if key == "auth" {
            // Same spellings as Go's strconv.ParseBool; anything else keeps auth on, as the
            // original does.
            auth = !matches!(&*value, "0" | "f" | "F" | "false" | "FALSE" | "False");
        }
    }
    Ok(ApiAddress {
        url: raw.to_string(),
        host,
        port,
        auth,
        restricted_ips: false,
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
    // The base is a directory: `http://h/prom` means `http://h/prom/` (API paths keep `prom`).
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
        let c = parse_raw(&["sidecar", "--stackdriver.project-id=p"]).unwrap();
        assert_eq!(
            (c.api.host.as_str(), c.api.port, c.api.auth),
            ("monitoring.googleapis.com", 443, true)
        );
        assert_eq!(c.retry_budget, std::time::Duration::from_secs(300));
        assert_eq!(c.store_in_files_directory, None);
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
    fn a_port_equal_to_the_schemes_default_is_kept() {
        let port = |address: &str| {
            parse(&[
                "--stackdriver.project-id=p",
                &format!("--stackdriver.api-address={address}"),
            ])
            .unwrap()
            .api
            .port
        };
        assert_eq!(port("http://127.0.0.1:80/?auth=false"), 80);
        assert_eq!(port("http://[::1]:80/?auth=false"), 80);
        assert_eq!(port("https://monitoring.googleapis.com:443/"), 443);
        assert_eq!(port("https://user@example.com:80/"), 80);
        // Without a port: gRPC's default, whatever the scheme.
        assert_eq!(port("http://127.0.0.1/?auth=false"), 443);
        assert_eq!(port("http://[::1]/"), 443);
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
    fn monitoring_backends_are_repeatable_and_checked() {
        let backends = |args: &[&str]| {
            let mut a = vec!["--stackdriver.project-id=p"];
            a.extend_from_slice(args);
            parse(&a).map(|c| c.self_metrics_to_monitoring)
        };
        assert_eq!(backends(&[]), Ok(false));
        assert_eq!(backends(&["--monitoring.backend=prometheus"]), Ok(false));
        assert_eq!(backends(&["--monitoring.backend=stackdriver"]), Ok(true));
        assert_eq!(
            backends(&[
                "--monitoring.backend=prometheus",
                "--monitoring.backend=stackdriver"
            ]),
            Ok(true)
        );
        let err = backends(&["--monitoring.backend=influx"]).unwrap_err();
        assert!(err.contains("--monitoring.backend"), "{err}");
        assert!(err.contains("stackdriver"), "{err}");
    }

    #[test]
    fn a_metrics_prefix_every_point_would_be_refused_for_is_refused() {
        let prefix = |p: &str| parse(&["--stackdriver.project-id=p", p]);
        let err = prefix("--stackdriver.metrics-prefix=test.googleapis.com/x").unwrap_err();
        assert!(err.contains("--stackdriver.metrics-prefix"), "{err}");
        assert!(err.contains("\"test.googleapis.com\""), "{err}");
        assert!(
            err.contains("custom.googleapis.com, external.googleapis.com"),
            "{err}"
        );
        for bad in [
            "custom.googleapis.com/a//b",
            "custom.googleapis.com/a/",
            "custom.googleapis.com/a:b",
        ] {
            let err = prefix(&format!("--stackdriver.metrics-prefix={bad}")).unwrap_err();
            assert!(
                err.contains("not a valid metric type prefix"),
                "{bad}: {err}"
            );
        }
        for good in [
            "custom.googleapis.com",
            "external.googleapis.com/prometheus",
            "workload.googleapis.com/a.b-c/d",
            "prometheus.googleapis.com/rules:x",
        ] {
            let c = prefix(&format!("--stackdriver.metrics-prefix={good}")).unwrap();
            assert_eq!(c.metrics_prefix, good);
        }
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
    fn web_flags_default_to_the_original_and_accept_go_listen_forms() {
        let c = parse(&["--stackdriver.project-id=p"]).unwrap();
        assert_eq!(c.web_listen_address, "0.0.0.0:9091");
        assert!(c.enable_statusz);
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--web.listen-address=:9999",
            "--no-web.enable-statusz",
        ])
        .unwrap();
        assert_eq!(c.web_listen_address, "0.0.0.0:9999");
        assert!(!c.enable_statusz);
        for ok in ["127.0.0.1:1", "[::1]:9091", "localhost:9091"] {
            let arg = format!("--web.listen-address={ok}");
            let c = parse(&["--stackdriver.project-id=p", &arg]).unwrap();
            assert_eq!(c.web_listen_address, ok);
        }
        for bad in ["9091", "127.0.0.1:99999", "::1:9091", "[zz]:1", "a b:1"] {
            let arg = format!("--web.listen-address={bad}");
            let err = parse(&["--stackdriver.project-id=p", &arg]).unwrap_err();
            assert!(err.contains("--web.listen-address"), "{bad}: {err}");
        }
    }

    #[test]
    fn wal_start_accepts_oldest_now_and_an_age() {
        let start = |v: &str| parse(&["--stackdriver.project-id=p", v]).map(|c| c.wal_start);
        assert_eq!(
            parse(&["--stackdriver.project-id=p"]).unwrap().wal_start,
            WalStart::Oldest
        );
        assert_eq!(start("--prometheus.wal-start=now").unwrap(), WalStart::Now);
        assert_eq!(
            start("--prometheus.wal-start=90m").unwrap(),
            WalStart::MaxAge(std::time::Duration::from_secs(5400))
        );
        let err = start("--prometheus.wal-start=yesterday").unwrap_err();
        assert!(err.contains("--prometheus.wal-start"), "{err}");
    }

    #[test]
    fn include_and_filter_flags_build_the_series_filter() {
        let c = parse(&["--stackdriver.project-id=p"]).unwrap();
        assert!(c.series_filter.is_empty());
        assert!(!c.deprecated_filter_used);
        let c = parse(&[
            "--stackdriver.project-id=p",
            "--include=up",
            r#"--include={job="node"}"#,
            r#"--filter=job="prom""#,
            r#"--filter=__name__="x""#,
        ])
        .unwrap();
        assert_eq!(c.series_filter.selectors().len(), 3);
        assert!(c.deprecated_filter_used);
    }

    #[test]
    fn selector_errors_name_their_flag() {
        let err = parse(&["--stackdriver.project-id=p", "--include={a-b=\"c\"}"]).unwrap_err();
        assert!(err.contains("--include"), "{err}");
        let err = parse(&["--stackdriver.project-id=p", "--filter=job!==\"x\""]).unwrap_err();
        assert!(err.contains("--filter"), "{err}");
        let err = parse(&["--stackdriver.project-id=p", "--include="]).unwrap_err();
        assert!(err.contains("--include"), "{err}");
    }

    #[test]
    fn config_file_errors_name_the_flag_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sidecar.yml");
        std::fs::write(&path, "static_metadata:\n  - metric: a\n    type: nope\n").unwrap();
        let arg = format!("--config-file={}", path.display());
        let err = parse(&["--stackdriver.project-id=p", &arg]).unwrap_err();
        assert!(err.contains("--config-file"), "{err}");
        assert!(err.contains("sidecar.yml: line 3:"), "{err}");
        let missing = format!("--config-file={}", dir.path().join("missing.yml").display());
        let err = parse(&["--stackdriver.project-id=p", &missing]).unwrap_err();
        assert!(err.contains("reading file"), "{err}");
        std::fs::write(&path, "metric_renames:\n  - from: a\n    to: b\n").unwrap();
        let c = parse(&["--stackdriver.project-id=p", &arg]).unwrap();
        assert_eq!(c.file.metric_renames["a"], "b");
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
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
