//! `/statusz`: one HTML page saying what the sidecar was told and how it is doing.
//!
//! The parsed-configuration rows keep the original's labels and exact row form
//! `<tr><th>LABEL</th><td>VALUE</td></tr>`; the page adds the WAL position and lag, the sending
//! state, health and readiness, dropped series by reason with examples, and recent errors.
//! Every value is HTML-escaped and passed through [`redact_credentials`]: credentials must never
//! appear on this page.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use super::WebState;
use crate::config::{Config, LogFormat, LogLevel, static_label};
use crate::observe::process;
use crate::observe::{exposition, health};
use crate::stats::{DropReason, ExemplarDrop};

/// Name in the title, as the original's `Status for <binary>`.
const PROGRAM: &str = "stackdriver-prometheus-sidecar";

/// The parts of the page fixed at start-up.
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// (label, value) rows of "Parsed configuration".
    pub config_rows: Vec<(&'static str, String)>,
    /// The WAL directory.
    pub wal_directory: PathBuf,
    /// (label, URL) links to the Cloud Console for this pod, node and cluster.
    pub console_links: Vec<(&'static str, String)>,
    /// `(<sysname> <release> …)`.
    pub host: String,
    /// Soft and hard limits of open files.
    pub fd_limits: Option<(String, String)>,
    /// (metric, selectors) of the configured aggregated counters, sorted by metric.
    pub aggregations: Vec<(String, String)>,
    /// (from, to) metric renames, sorted by from.
    pub renames: Vec<(String, String)>,
    /// (metric, type, value type) of the static metadata, in file order.
    pub static_metadata: Vec<(String, String, String)>,
}

impl StatusPage {
    /// The page for `config`; `env` looks up environment variables (`POD_NAME`, `NODE_NAME`,
    /// `NAMESPACE_NAME`, as the original read them).
    pub fn new(config: &Config, env: impl Fn(&str) -> Option<String>) -> StatusPage {
        StatusPage {
            config_rows: config_rows(config),
            wal_directory: config.wal_directory.clone(),
            console_links: console_links(config, env),
            host: process::host_details(),
            fd_limits: process::fd_limits(),
            aggregations: {
                let mut rows: Vec<(String, String)> = config
                    .file
                    .aggregated_counters
                    .iter()
                    .map(|a| (a.metric.clone(), go_list(a.filters.iter())))
                    .collect();
                rows.sort();
                rows
            },
            renames: {
                let mut rows: Vec<(String, String)> = config
                    .file
                    .metric_renames
                    .iter()
                    .map(|(from, to)| (from.clone(), to.clone()))
                    .collect();
                rows.sort();
                rows
            },
            static_metadata: config
                .file
                .static_metadata
                .iter()
                .map(|m| {
                    let value_type = match m.value_type.as_str() {
                        "" => "VALUE_TYPE_UNSPECIFIED".to_string(),
                        v => v.to_ascii_uppercase(),
                    };
                    (m.metric.clone(), m.metric_type.to_string(), value_type)
                })
                .collect(),
        }
    }
}

/// A list as Go's `fmt` prints a slice: `[a b]`.
fn go_list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    format!("[{}]", items.join(" "))
}

fn static_label_value(config: &Config, name: &str) -> String {
    config
        .static_labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.clone())
        .unwrap_or_default()
}

/// The original's "Parsed configuration" rows, for the flags this sidecar has, in its order.
pub fn config_rows(config: &Config) -> Vec<(&'static str, String)> {
    let level = match config.log_level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let format = match config.log_format {
        LogFormat::Logfmt => "logfmt",
        LogFormat::Json => "json",
    };
    vec![
        (
            "Config filename",
            config
                .config_file
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
        ),
        (
            "Filter sets",
            go_list(config.series_filter.selectors().iter()),
        ),
        (
            "Generic labels: location",
            static_label_value(config, static_label::GENERIC_LOCATION),
        ),
        (
            "Generic labels: namespace",
            static_label_value(config, static_label::GENERIC_NAMESPACE),
        ),
        (
            "Kubernetes labels: cluster name",
            static_label_value(config, static_label::KUBERNETES_CLUSTER_NAME),
        ),
        (
            "Kubernetes labels: location",
            static_label_value(config, static_label::KUBERNETES_LOCATION),
        ),
        ("Listen address", config.web_listen_address.clone()),
        ("Log level", level.to_string()),
        ("Log format", format.to_string()),
        ("Metrics prefix", config.metrics_prefix.clone()),
        (
            "Project ID resource",
            format!("projects/{}", config.project_id),
        ),
        ("Prometheus URL", config.prometheus_url.to_string()),
        ("Stackdriver address", config.api.url.clone()),
        ("Use GKE resource", config.use_gke_resource.to_string()),
        ("WAL directory", config.wal_directory.display().to_string()),
    ]
}

fn console_links(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let location = static_label_value(config, static_label::KUBERNETES_LOCATION);
    let cluster = static_label_value(config, static_label::KUBERNETES_CLUSTER_NAME);
    let (Some(pod), Some(node), Some(ns)) =
        (env("POD_NAME"), env("NODE_NAME"), env("NAMESPACE_NAME"))
    else {
        return Vec::new();
    };
    let parts = [&config.project_id, &location, &cluster, &pod, &node, &ns];
    if parts.iter().any(|p| p.is_empty()) {
        return Vec::new();
    }
    let project = &config.project_id;
    let base = "https://console.cloud.google.com/kubernetes";
    vec![
        (
            "Pod",
            format!("{base}/pod/{location}/{cluster}/{ns}/{pod}?project={project}"),
        ),
        (
            "Node",
            format!("{base}/node/{location}/{cluster}/{node}?project={project}"),
        ),
        (
            "Cluster",
            format!("{base}/clusters/details/{location}/{cluster}?project={project}"),
        ),
    ]
}

/// Removes the user-information part (`user:password@`) of every URL in `text`.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("REDACTED@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// HTML-escapes after redacting credentials.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in redact_credentials(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    let d = now.duration_since(t).unwrap_or_default();
    format!(
        "{} ({} ago)",
        time(t),
        humantime::format_duration(Duration::from_secs(d.as_secs()))
    )
}

/// Metric names shown per drop reason, most dropped series first.
const TOP_METRICS: usize = 5;

/// `<ul>` of already-escaped items; empty when there are none.
fn bullet_list(items: impl Iterator<Item = String>) -> String {
    let items: String = items.map(|i| format!("<li>{i}</li>")).collect();
    if items.is_empty() {
        items
    } else {
        format!("<ul>{items}</ul>")
    }
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(
        out,
        "<tr><th>{}</th><td>{}</td></tr>",
        esc(label),
        esc(value)
    );
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#202124}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #dadce0}\
table{border-collapse:collapse}th,td{text-align:left;vertical-align:top;padding:3px 12px 3px 0}\
th{font-weight:600}.ok{color:#188038}.bad{color:#d93025}code{font-size:0.95em}";

/// A configuration section: a table of `<td>` rows under `header`, or `none`.
fn section<'a>(
    out: &mut String,
    title: &str,
    id: &str,
    header: &str,
    rows: impl Iterator<Item = Vec<&'a str>>,
) {
    let _ = writeln!(out, "<h2>{title}</h2>");
    let rows: Vec<String> = rows
        .map(|cells| {
            let cells: String = cells
                .iter()
                .map(|c| format!("<td>{}</td>", esc(c)))
                .collect();
            format!("<tr>{cells}</tr>\n")
        })
        .collect();
    if rows.is_empty() {
        let _ = writeln!(out, "<p id=\"{id}\">none</p>");
    } else {
        let _ = write!(
            out,
            "<table id=\"{id}\">\n{header}\n{}</table>\n",
            rows.concat()
        );
    }
}

/// Renders the page.
pub fn render(page: &StatusPage, state: &WebState, now: SystemTime) -> String {
    let stats = &state.stats;
    let info = &state.info;
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Status for {PROGRAM}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Status for {PROGRAM}</h1>\n"
    );

    let healthy = state.health.healthy(Instant::now());
    let ready = health::ready(stats);
    out.push_str("<table id=\"overview\">\n");
    row(&mut out, "Start time", &time(info.started));
    let uptime = now.duration_since(info.started).unwrap_or_default();
    row(
        &mut out,
        "Uptime",
        &humantime::format_duration(Duration::from_secs(uptime.as_secs())).to_string(),
    );
    row(&mut out, "Version", info.version);
    row(
        &mut out,
        "Build",
        &format!("revision {}, branch {}", info.revision, info.branch),
    );
    row(&mut out, "Host details", &page.host);
    if let Some((soft, hard)) = &page.fd_limits {
        row(
            &mut out,
            "FD limits",
            &format!("(soft={soft}, hard={hard})"),
        );
    }
    for (label, v) in [("Healthy", &healthy), ("Ready", &ready)] {
        let class = if v.ok { "ok" } else { "bad" };
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td class=\"{class}\">{}</td></tr>",
            esc(&v.reason)
        );
    }
    out.push_str("</table>\n<p><a href=\"/metrics\">Metrics</a>");
    for (label, url) in &page.console_links {
        let _ = write!(
            out,
            " · <a href=\"{}\">{label} in the Cloud Console</a>",
            esc(url)
        );
    }
    out.push_str("</p>\n");

    out.push_str("<h2>Parsed configuration</h2>\n<table id=\"config\">\n");
    for (label, value) in &page.config_rows {
        row(&mut out, label, value);
    }
    out.push_str("</table>\n");

    section(
        &mut out,
        "Aggregations",
        "aggregations",
        "<tr><th>metric</th><th>filters</th></tr>",
        page.aggregations
            .iter()
            .map(|(m, f)| vec![m.as_str(), f.as_str()]),
    );
    section(
        &mut out,
        "Metric renames",
        "renames",
        "<tr><th>from</th><th>to</th></tr>",
        page.renames
            .iter()
            .map(|(f, t)| vec![f.as_str(), t.as_str()]),
    );
    section(
        &mut out,
        "Static metadata",
        "static-metadata",
        "<tr><th>metric</th><th>type</th><th>unit</th></tr>",
        page.static_metadata
            .iter()
            .map(|(m, t, v)| vec![m.as_str(), t.as_str(), v.as_str()]),
    );

    out.push_str("<h2>WAL</h2>\n<table id=\"wal\">\n");
    row(
        &mut out,
        "Directory",
        &page.wal_directory.display().to_string(),
    );
    let position = stats.reader.wal_position();
    row(&mut out, "Read position", &position.to_string());
    row(
        &mut out,
        "Size",
        &format!("{} bytes", stats.lag.wal_size_bytes.load(Relaxed)),
    );
    row(
        &mut out,
        "Behind",
        &format!(
            "{} bytes, {:.0} s",
            stats.lag.wal_lag_bytes.load(Relaxed),
            stats.lag.wal_lag_ms.load(Relaxed) as f64 / 1e3
        ),
    );
    let newest = stats
        .reader
        .newest_sample_ms()
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or("none yet".to_string(), |ms| {
            ago(now, SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        });
    row(&mut out, "Newest sample read", &newest);
    row(
        &mut out,
        "Samples read",
        &format!(
            "{} in {} records",
            stats.reader.samples_processed.load(Relaxed),
            stats.reader.batches_processed.load(Relaxed)
        ),
    );
    row(
        &mut out,
        "Native histograms",
        &format!(
            "{} read, {} queued as points",
            stats.reader.native_histograms_read.load(Relaxed),
            stats.reader.native_histogram_points.load(Relaxed)
        ),
    );
    let exemplars_dropped: u64 = ExemplarDrop::ALL
        .iter()
        .map(|r| stats.reader.exemplars_dropped_count(*r))
        .sum();
    row(
        &mut out,
        "Exemplars",
        &format!(
            "{} read, {} attached to points, {} not sent",
            stats.reader.exemplars_read.load(Relaxed),
            stats.reader.exemplars_attached.load(Relaxed),
            exemplars_dropped
        ),
    );
    row(
        &mut out,
        "Metadata read from the WAL",
        &format!(
            "{} series entries",
            stats.reader.wal_metadata_read.load(Relaxed)
        ),
    );
    row(
        &mut out,
        "Undecodable records skipped",
        &stats.reader.records_undecodable.load(Relaxed).to_string(),
    );
    let follow = stats.wal_follow.snapshot();
    row(
        &mut out,
        "WAL segments deleted unread",
        &format!(
            "{} (in {} truncations)",
            follow.segments_skipped, follow.truncation_restarts
        ),
    );
    out.push_str("</table>\n");

    out.push_str("<h2>Sending</h2>\n<table id=\"sending\">\n");
    row(&mut out, "Monitoring API", &info.queue);
    let shards = stats.export.shards.load(Relaxed);
    let per_shard = info.queue_points(shards as usize);
    row(
        &mut out,
        "Shards",
        &format!(
            "{shards} (from {} to {})",
            info.shard_limits.0, info.shard_limits.1
        ),
    );
    row(
        &mut out,
        "Queue length",
        &format!(
            "{} of {} ({} per shard)",
            stats.export.queue_length.load(Relaxed),
            shards as usize * per_shard,
            per_shard
        ),
    );
    for (label, v) in [
        ("Points produced", &stats.export.samples_produced),
        ("Points accepted", &stats.export.points_sent),
        ("Points failed", &stats.export.points_failed),
        ("Requests", &stats.export.requests),
        ("Retries", &stats.export.retries),
    ] {
        row(&mut out, label, &v.load(Relaxed).to_string());
    }
    let last = stats
        .export
        .last_success()
        .map_or("never".into(), |t| ago(now, t));
    row(&mut out, "Last accepted batch", &last);
    out.push_str("</table>\n");

    out.push_str(
        "<h2>Dropped series</h2>\n<table id=\"dropped\">\n\
         <tr><th>reason</th><th>series</th><th>recent examples</th><th>top metrics</th></tr>\n",
    );
    let by_metric = stats.reader.series_dropped_by_metric();
    for reason in DropReason::ALL {
        let examples = stats.reader.dropped_examples(reason);
        let list = bullet_list(examples.iter().map(|e| format!("<code>{}</code>", esc(e))));
        let mut top: Vec<(&str, u64)> = by_metric
            .iter()
            .filter(|(r, _, _)| *r == reason)
            .map(|(_, name, n)| (name.as_str(), *n))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top = bullet_list(
            top.iter()
                .take(TOP_METRICS)
                .map(|(name, n)| format!("<code>{}</code>: {n}", esc(name))),
        );
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{list}</td><td>{top}</td></tr>",
            reason.as_str(),
            stats.reader.series_dropped_count(reason)
        );
    }
    out.push_str("</table>\n");

    out.push_str(
        "<h2>Samples not sent</h2>\n<table id=\"samples-not-sent\">\n\
         <tr><th>reason</th><th>samples</th></tr>\n",
    );
    for (reason, n) in exposition::read_drops(stats) {
        let _ = writeln!(out, "<tr><td>{reason}</td><td>{n}</td></tr>");
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Recent errors</h2>\n");
    let recent = state.recent.newest_first();
    if recent.is_empty() {
        out.push_str("<p id=\"errors\">none</p>\n");
    } else {
        out.push_str(
            "<table id=\"errors\">\n<tr><th>time</th><th>level</th><th>where</th><th>message</th></tr>\n",
        );
        for e in recent {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&time(e.at)),
                e.level,
                esc(&e.target),
                esc(&e.text)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;
    use crate::observe::RuntimeInfo;
    use crate::observe::health::HealthMonitor;
    use crate::observe::recent::{RecentErrors, RecentEvent};
    use crate::stats::Stats;
    use clap::Parser;
    use std::sync::Arc;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec![
            "sidecar",
            "--stackdriver.project-id=proj",
            "--stackdriver.api-address=http://127.0.0.1:9092/?auth=false",
        ];
        argv.extend_from_slice(args);
        Config::from_flags(&Flags::try_parse_from(argv).unwrap()).unwrap()
    }

    fn state(page: StatusPage) -> (WebState, Arc<StatusPage>) {
        let page = Arc::new(page);
        let state = WebState {
            stats: Arc::new(Stats::default()),
            info: Arc::new(RuntimeInfo::new(SystemTime::now())),
            health: Arc::new(HealthMonitor::new(Duration::from_secs(300))),
            recent: RecentErrors::default(),
            status_page: Some(page.clone()),
            aggregates: Default::default(),
        };
        (state, page)
    }

    #[test]
    fn configuration_rows_have_the_original_labels_and_form() {
        let c = config(&[
            "--stackdriver.kubernetes.location=europe-west1",
            "--stackdriver.kubernetes.cluster-name=prod",
            "--web.listen-address=127.0.0.1:9091",
            "--log.level=debug",
        ]);
        let (state, page) = state(StatusPage::new(&c, |_| None));
        let html = render(&page, &state, SystemTime::now());
        for expected in [
            "<tr><th>Kubernetes labels: location</th><td>europe-west1</td></tr>",
            "<tr><th>Kubernetes labels: cluster name</th><td>prod</td></tr>",
            "<tr><th>Generic labels: location</th><td></td></tr>",
            "<tr><th>Listen address</th><td>127.0.0.1:9091</td></tr>",
            "<tr><th>Log level</th><td>debug</td></tr>",
            "<tr><th>Log format</th><td>logfmt</td></tr>",
            "<tr><th>Project ID resource</th><td>projects/proj</td></tr>",
            "<tr><th>Prometheus URL</th><td>http://127.0.0.1:9090/</td></tr>",
            "<tr><th>Stackdriver address</th><td>http://127.0.0.1:9092/?auth=false</td></tr>",
            "<tr><th>Use GKE resource</th><td>false</td></tr>",
            "<tr><th>WAL directory</th><td>data/wal</td></tr>",
            "<tr><th>Metrics prefix</th><td>external.googleapis.com/prometheus</td></tr>",
        ] {
            assert!(html.contains(expected), "missing {expected}");
        }
        assert!(html.contains("<title>Status for stackdriver-prometheus-sidecar</title>"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn configuration_file_sections_are_listed_sorted_or_say_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sidecar.yml");
        std::fs::write(
            &file,
            "metric_renames:\n  - {from: z_rule, to: z}\n  - {from: a:rule, to: a_rule}\n\
             static_metadata:\n  - {metric: a:rule, type: counter, value_type: int64}\n\
             aggregated_counters:\n  - {metric: all_requests, filters: ['{job=\"x\"}', 'up']}\n",
        )
        .unwrap();
        let arg = format!("--config-file={}", file.display());
        let c = config(&[&arg, "--include={job=\"node\"}"]);
        let (full, page) = state(StatusPage::new(&c, |_| None));
        let html = render(&page, &full, SystemTime::now());
        for expected in [
            format!(
                "<tr><th>Config filename</th><td>{}</td></tr>",
                file.display()
            ),
            "<tr><th>Filter sets</th><td>[{job=&#34;node&#34;}]</td></tr>".into(),
            "<tr><td>a:rule</td><td>a_rule</td></tr>\n<tr><td>z_rule</td><td>z</td></tr>".into(),
            "<tr><td>a:rule</td><td>counter</td><td>INT64</td></tr>".into(),
            "<tr><td>all_requests</td><td>[{job=&#34;x&#34;} up]</td></tr>".into(),
        ] {
            assert!(html.contains(&expected), "missing {expected} in\n{html}");
        }
        let (empty, page) = state(StatusPage::new(&config(&[]), |_| None));
        let html = render(&page, &empty, SystemTime::now());
        assert!(html.contains("<h2>Metric renames</h2>\n<p id=\"renames\">none</p>"));
        assert!(html.contains("<tr><th>Filter sets</th><td>[]</td></tr>"));
    }

    #[test]
    fn credentials_never_appear() {
        let c = config(&["--prometheus.api-address=http://admin:s3cret@prom.example:9090/"]);
        let (state, page) = state(StatusPage::new(&c, |_| None));
        state.recent.push(RecentEvent {
            at: SystemTime::now(),
            level: tracing::Level::WARN,
            target: "t".into(),
            text: "GET https://bob:hunter2@prom.example/api/v1/targets failed".into(),
        });
        let html = render(&page, &state, SystemTime::now());
        for secret in ["s3cret", "hunter2", "admin", "bob"] {
            assert!(!html.contains(secret), "{secret} leaked");
        }
        assert!(html.contains("http://REDACTED@prom.example:9090/"));
        assert!(html.contains("https://REDACTED@prom.example/api/v1/targets"));
    }

    #[test]
    fn redaction_keeps_urls_without_credentials() {
        assert_eq!(
            redact_credentials("a http://h:1/x?u=a@b and ftp://u@h"),
            "a http://h:1/x?u=a@b and ftp://REDACTED@h"
        );
    }

    #[test]
    fn values_are_html_escaped() {
        let c = config(&["--stackdriver.generic.namespace=<b>x</b>&"]);
        let (state, page) = state(StatusPage::new(&c, |_| None));
        let html = render(&page, &state, SystemTime::now());
        assert!(html.contains("<td>&lt;b&gt;x&lt;/b&gt;&amp;</td>"));
    }

    #[test]
    fn dropped_series_show_counts_and_examples() {
        let c = config(&[]);
        let (state, page) = state(StatusPage::new(&c, |_| None));
        state
            .stats
            .reader
            .series_dropped_metric(DropReason::MetadataNotFound, "my_metric");
        state
            .stats
            .reader
            .remember_dropped_example(DropReason::MetadataNotFound, "my_metric{job=\"a\"}".into());
        let html = render(&page, &state, SystemTime::now());
        assert!(html.contains(
            "<tr><td>metadata_not_found</td><td>1</td><td><ul><li><code>my_metric{job=&#34;a&#34;}</code></li></ul></td>\
             <td><ul><li><code>my_metric</code>: 1</li></ul></td></tr>"
        ), "{html}");
        assert!(html.contains("<tr><td>target_not_found</td><td>0</td><td></td><td></td></tr>"));
    }

    #[test]
    fn console_links_need_every_kubernetes_detail() {
        let c = config(&[
            "--stackdriver.kubernetes.location=l",
            "--stackdriver.kubernetes.cluster-name=c",
        ]);
        let env = |k: &str| Some(format!("{}-v", k.to_lowercase()));
        let links = console_links(&c, env);
        assert_eq!(
            links[0].1,
            "https://console.cloud.google.com/kubernetes/pod/l/c/namespace_name-v/pod_name-v?project=proj"
        );
        assert_eq!(links.len(), 3);
        assert!(console_links(&c, |k| (k != "NODE_NAME").then(|| "x".into())).is_empty());
        assert!(console_links(&config(&[]), env).is_empty());
    }
}
