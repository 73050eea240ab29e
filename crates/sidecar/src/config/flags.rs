//! The command line: the original sidecar's flag names, defaults and meanings.
//!
//! Only flags whose feature works are declared, so an operator never passes a flag that silently
//! does nothing; an unknown flag is a usage error (exit 2). Parsing here is purely syntactic;
//! `config::Config::from_flags` checks meaning and combinations.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

/// Where the original published the sidecar's own version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Raw command-line flags, as typed by the operator.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "stackdriver-prometheus-sidecar",
    version = VERSION,
    about = "Follows a Prometheus write-ahead log and sends its samples to Google Cloud Monitoring.",
    long_about = None,
    max_term_width = 100
)]
pub struct Flags {
    /// Google Cloud project that receives the metrics (written as `projects/<id>`).
    #[arg(long = "stackdriver.project-id", value_name = "ID", required = true)]
    pub project_id: String,

    /// Address of the Cloud Monitoring API. Only host, port and the query parameter `auth` are
    /// used; `?auth=false` sends in plaintext without credentials (for local emulators).
    #[arg(
        long = "stackdriver.api-address",
        value_name = "URL",
        default_value = "https://monitoring.googleapis.com:443/"
    )]
    pub api_address: String,

    /// Value of the `location` label of Kubernetes resources (k8s_container, k8s_pod, k8s_node).
    #[arg(
        long = "stackdriver.kubernetes.location",
        value_name = "LOCATION",
        default_value = ""
    )]
    pub kubernetes_location: String,

    /// Value of the `cluster_name` label of Kubernetes resources.
    #[arg(
        long = "stackdriver.kubernetes.cluster-name",
        value_name = "NAME",
        default_value = ""
    )]
    pub kubernetes_cluster_name: String,

    /// Value of the `location` label of the generic_task resource.
    #[arg(
        long = "stackdriver.generic.location",
        value_name = "LOCATION",
        default_value = ""
    )]
    pub generic_location: String,

    /// Value of the `namespace` label of the generic_task resource.
    #[arg(
        long = "stackdriver.generic.namespace",
        value_name = "NAMESPACE",
        default_value = ""
    )]
    pub generic_namespace: String,

    /// Prefix of metric types; empty means `external.googleapis.com/prometheus`.
    /// The metric type is `<prefix>/<metric name>`.
    #[arg(
        long = "stackdriver.metrics-prefix",
        value_name = "PREFIX",
        default_value = ""
    )]
    pub metrics_prefix: String,

    /// Use the legacy gke_container resource for every series instead of the resource list.
    #[arg(
        long = "stackdriver.use-gke-resource",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        require_equals = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_use_gke_resource"
    )]
    pub use_gke_resource: bool,

    /// Turns --stackdriver.use-gke-resource off.
    #[arg(
        long = "no-stackdriver.use-gke-resource",
        hide = true,
        action = ArgAction::SetTrue,
        overrides_with = "use_gke_resource"
    )]
    pub no_use_gke_resource: bool,

    /// Directory of the Prometheus write-ahead log.
    #[arg(
        long = "prometheus.wal-directory",
        value_name = "DIR",
        default_value = "data/wal"
    )]
    pub wal_directory: String,

    /// Base URL of the Prometheus server (readiness, targets and metadata API).
    #[arg(
        long = "prometheus.api-address",
        value_name = "URL",
        default_value = "http://127.0.0.1:9090/"
    )]
    pub prometheus_api_address: String,

    /// Only log messages at or above this level.
    #[arg(long = "log.level", value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Output format of log messages (written to standard error).
    #[arg(long = "log.format", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
}

/// `--log.level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-series details.
    Debug,
    /// Normal operation.
    Info,
    /// Problems that lose or delay data.
    Warn,
    /// Failures only.
    Error,
}

/// `--log.format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, one event per line.
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl Flags {
    /// The effective value of `--stackdriver.use-gke-resource` after `--no-…` overrides.
    pub fn use_gke_resource(&self) -> bool {
        self.use_gke_resource && !self.no_use_gke_resource
    }
}
