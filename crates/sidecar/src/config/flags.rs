//! The command line: the original sidecar's flag names, defaults and meanings.
//!
//! Only flags whose feature works are declared, so an operator never passes a flag that silently
//! does nothing; an unknown flag is a usage error (exit 2). Parsing here is purely syntactic;
//! `config::Config::from_flags` checks meaning and combinations.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

use crate::VERSION;

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

    /// How long a batch is retried after transient failures (UNAVAILABLE, DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED, ABORTED, INTERNAL, connection errors) before its points are dropped
    /// and counted; the shard then moves on.
    #[arg(
        long = "stackdriver.retry-budget",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = humantime::parse_duration
    )]
    pub retry_budget: std::time::Duration,

    /// Fewest shards sending in parallel (also the number at start). Each shard has one request
    /// in flight; the count follows the measured send time and WAL backlog every 5 s (first after 1 s).
    #[arg(long = "stackdriver.min-shards", value_name = "N", default_value_t = 1)]
    pub min_shards: usize,

    /// Most shards sending in parallel (at most 1024). Setting it equal to
    /// `--stackdriver.min-shards` fixes the count.
    #[arg(
        long = "stackdriver.max-shards",
        value_name = "N",
        default_value_t = 200
    )]
    pub max_shards: usize,

    /// Write requests to files in this directory instead of sending them: one file
    /// `<random digits>.txt` per shard, holding concatenated binary CreateTimeSeriesRequests
    /// (without `name`), as the original's file mode.
    #[arg(
        long = "stackdriver.store-in-files-directory",
        value_name = "DIR",
        default_value = ""
    )]
    pub store_in_files_directory: String,

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

    /// Connect to the API host's restricted VIP addresses (199.36.153.4 to .7, port 443)
    /// instead of resolving its name, for VPC Service Controls; TLS still checks the API host's
    /// name.
    #[arg(
        long = "stackdriver.use-restricted-ips",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true",
        require_equals = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_use_restricted_ips"
    )]
    pub use_restricted_ips: bool,

    /// Turns --stackdriver.use-restricted-ips off.
    #[arg(
        long = "no-stackdriver.use-restricted-ips",
        hide = true,
        action = ArgAction::SetTrue,
        overrides_with = "use_restricted_ips"
    )]
    pub no_use_restricted_ips: bool,

    /// Directory of the Prometheus write-ahead log.
    #[arg(
        long = "prometheus.wal-directory",
        value_name = "DIR",
        default_value = "data/wal"
    )]
    pub wal_directory: String,

    /// Where to start on a first start, when the WAL directory holds no progress file:
    /// `oldest` (everything the WAL still holds, as the original), `now` (only samples from now
    /// on), or a maximum age such as `30m` or `2h`. After that, the sidecar resumes exactly where
    /// delivery stopped.
    #[arg(
        long = "prometheus.wal-start",
        value_name = "oldest|now|AGE",
        default_value = "oldest"
    )]
    pub wal_start: String,

    /// Base URL of the Prometheus server (readiness, targets and metadata API).
    #[arg(
        long = "prometheus.api-address",
        value_name = "URL",
        default_value = "http://127.0.0.1:9090/"
    )]
    pub prometheus_api_address: String,

    /// YAML file with `metric_renames`, `static_metadata` and `aggregated_counters`.
    #[arg(long = "config-file", value_name = "FILE", default_value = "")]
    pub config_file: String,

    /// PromQL series selector, such as `metric{a="b"}` or `{__name__=~"x.+",job="k"}`; only
    /// matching series are exported. Repeatable: a series matching any of them is exported.
    #[arg(long = "include", value_name = "SELECTOR", action = ArgAction::Append)]
    pub include: Vec<String>,

    /// Deprecated: use --include. One label matcher such as `job="k"`; all occurrences are
    /// joined into one selector, so a series must match every one of them.
    #[arg(long = "filter", value_name = "MATCHER", action = ArgAction::Append)]
    pub filter: Vec<String>,

    /// Only log messages at or above this level.
    #[arg(long = "log.level", value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Output format of log messages (written to standard error).
    #[arg(long = "log.format", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,

    /// Where the sidecar's own metrics go, repeatable: `prometheus` (`/metrics`, always
    /// served) and `stackdriver` (also sent to Cloud Monitoring every minute).
    #[arg(
        long = "monitoring.backend",
        value_name = "BACKEND",
        value_enum,
        action = ArgAction::Append,
        default_values_t = [MonitoringBackend::Prometheus]
    )]
    pub monitoring_backend: Vec<MonitoringBackend>,

    /// Address of the HTTP server for /metrics, /statusz, /-/healthy and /-/ready.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:9091"
    )]
    pub web_listen_address: String,

    /// Serve the /statusz diagnostics page.
    #[arg(
        long = "web.enable-statusz",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value = "true",
        default_missing_value = "true",
        require_equals = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_enable_statusz"
    )]
    pub enable_statusz: bool,

    /// Turns --web.enable-statusz off.
    #[arg(
        long = "no-web.enable-statusz",
        hide = true,
        action = ArgAction::SetTrue,
        overrides_with = "enable_statusz"
    )]
    pub no_enable_statusz: bool,
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

/// `--monitoring.backend` values: where the sidecar's own metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MonitoringBackend {
    /// `/metrics` (always served).
    Prometheus,
    /// Cloud Monitoring, every minute, through the export path.
    Stackdriver,
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

    /// The effective value of `--stackdriver.use-restricted-ips` after `--no-…` overrides.
    pub fn use_restricted_ips(&self) -> bool {
        self.use_restricted_ips && !self.no_use_restricted_ips
    }

    /// The effective value of `--web.enable-statusz` after `--no-…` overrides.
    pub fn enable_statusz(&self) -> bool {
        self.enable_statusz && !self.no_enable_statusz
    }
}
