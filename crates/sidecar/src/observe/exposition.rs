//! `/metrics`: the sidecar's counters in the Prometheus text exposition format (0.0.4).
//!
//! Owns the metric names, types and help texts. The names the original sidecar exported are
//! kept byte for byte (including its OpenCensus counters without a `_total` suffix) so existing
//! dashboards and alerts keep working; metrics the original did not have are named
//! `prometheus_sidecar_*` with Prometheus's usual suffixes. Rendering reads atomics and never
//! blocks the pipeline; it must never change a counter.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use super::RuntimeInfo;
use super::process::ProcessStats;
use crate::retrieval::aggregator::AggregateValue;
use crate::stats::{
    DropReason, ExemplarDrop, HistogramDrop, SEND_DURATION_BUCKETS, SampleSkip, Stats, unix_millis,
};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric kinds as the `# TYPE` line spells them.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A text exposition being written.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A family with a single unlabelled (or fixed-label) sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], v: f64) {
        self.family(name, kind, help);
        self.sample(name, labels, v);
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Integers print without a fraction; Rust's shortest round-trip form otherwise.
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Why read samples did not become points, as `points_dropped_total{reason}` labels them, with
/// the counter behind each.
pub fn read_drops(stats: &Stats) -> [(&'static str, u64); 7] {
    [
        ("stale_or_nan", stats.reader.skipped_count(SampleSkip::Nan)),
        ("filtered", stats.reader.skipped_count(SampleSkip::Filtered)),
        (
            "already_delivered",
            stats.reader.skipped_count(SampleSkip::AlreadyDelivered),
        ),
        (
            "unknown_series_ref",
            stats.reader.skipped_count(SampleSkip::UnknownRef),
        ),
        (
            "series_not_resolved",
            stats.reader.skipped_count(SampleSkip::UnresolvedSeries),
        ),
        (
            "out_of_order",
            stats.reader.skipped_count(SampleSkip::OutOfOrder),
        ),
        (
            "counter_baseline",
            stats.reader.skipped_count(SampleSkip::Baseline),
        ),
    ]
}

/// Renders every metric. `process` is `None` where `/proc` cannot be read.
pub fn render(
    stats: &Stats,
    info: &RuntimeInfo,
    process: Option<&ProcessStats>,
    aggregates: &[AggregateValue],
    now: SystemTime,
) -> String {
    let mut w = Writer::default();
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;

    // The original's OpenCensus views (names sanitised by its Prometheus exporter; counters
    // carry no `_total`).
    w.single(
        "prometheus_sidecar_samples_processed",
        Kind::Counter,
        "Samples found in WAL sample records.",
        &[],
        c(&stats.reader.samples_processed),
    );
    w.single(
        "prometheus_sidecar_batches_processed",
        Kind::Counter,
        "WAL sample records processed.",
        &[],
        c(&stats.reader.batches_processed),
    );
    w.single(
        "prometheus_sidecar_native_histograms_read_total",
        Kind::Counter,
        "Native histogram samples found in WAL histogram records (integer and float).",
        &[],
        c(&stats.reader.native_histograms_read),
    );
    w.single(
        "prometheus_sidecar_native_histogram_points_total",
        Kind::Counter,
        "Distribution points made from native histogram samples and queued for sending.",
        &[],
        c(&stats.reader.native_histogram_points),
    );
    w.single(
        "prometheus_sidecar_exemplars_read_total",
        Kind::Counter,
        "Exemplars found in WAL exemplar records.",
        &[],
        c(&stats.reader.exemplars_read),
    );
    w.single(
        "prometheus_sidecar_exemplars_attached_total",
        Kind::Counter,
        "Exemplars attached to a distribution point queued for sending.",
        &[],
        c(&stats.reader.exemplars_attached),
    );
    w.single(
        "prometheus_sidecar_wal_metadata_read_total",
        Kind::Counter,
        "Series metadata entries read from WAL metadata records (used ahead of the HTTP API).",
        &[],
        c(&stats.reader.wal_metadata_read),
    );
    w.single(
        "prometheus_sidecar_samples_produced",
        Kind::Counter,
        "Points produced from WAL samples and queued for sending.",
        &[],
        c(&stats.export.samples_produced),
    );
    w.family(
        "prometheus_sidecar_dropped_series",
        Kind::Counter,
        "Series that could not be resolved and are not exported, by reason.",
    );
    for reason in DropReason::ALL {
        w.sample(
            "prometheus_sidecar_dropped_series",
            &[("reason", reason.as_str())],
            stats.reader.series_dropped_count(reason) as f64,
        );
    }
    w.family(
        "prometheus_sidecar_dropped_series_by_metric",
        Kind::Counter,
        "Series not exported, by reason and metric name (at most 10000 names; more count as _other_).",
    );
    for (reason, metric, n) in stats.reader.series_dropped_by_metric() {
        w.sample(
            "prometheus_sidecar_dropped_series_by_metric",
            &[("reason", reason.as_str()), ("metric", &metric)],
            n as f64,
        );
    }
    let version_tag = format!("stackdriver-prometheus-sidecar/{}", info.version);
    w.single(
        "agent_googleapis_com_agent_uptime",
        Kind::Counter,
        "Seconds since the sidecar started.",
        &[("version", &version_tag)],
        now.duration_since(info.started).map_or(0, |d| d.as_secs()) as f64,
    );
    w.family(
        "agent_googleapis_com_agent_monitoring_point_count",
        Kind::Counter,
        "Points sent to the Monitoring API, by the gRPC status code they got (0 = accepted).",
    );
    for (code, n) in stats.export.point_status_counts().iter().enumerate() {
        if *n > 0 {
            w.sample(
                "agent_googleapis_com_agent_monitoring_point_count",
                &[("status", &code.to_string())],
                *n as f64,
            );
        }
    }

    // The original's remote-storage collectors, labelled with the API address.
    let queue: &[(&str, &str)] = &[("queue", &info.queue)];
    w.single(
        "prometheus_remote_storage_succeeded_samples_total",
        Kind::Counter,
        "Points accepted by the Monitoring API.",
        queue,
        c(&stats.export.points_sent),
    );
    w.single(
        "prometheus_remote_storage_failed_samples_total",
        Kind::Counter,
        "Points dropped because the API refused them or retries ran out.",
        queue,
        c(&stats.export.points_failed),
    );
    let hist = "prometheus_remote_storage_sent_batch_duration_seconds";
    w.family(
        hist,
        Kind::Histogram,
        "Duration of each CreateTimeSeries attempt, in seconds.",
    );
    let cumulative = stats.export.send_duration_cumulative();
    for (le, count) in SEND_DURATION_BUCKETS.iter().zip(cumulative) {
        let le = le.to_string();
        w.sample(
            &format!("{hist}_bucket"),
            &[("queue", &info.queue), ("le", &le)],
            count as f64,
        );
    }
    let total = cumulative[SEND_DURATION_BUCKETS.len()];
    w.sample(
        &format!("{hist}_bucket"),
        &[("queue", &info.queue), ("le", "+Inf")],
        total as f64,
    );
    w.sample(
        &format!("{hist}_sum"),
        queue,
        stats.export.send_micros.load(Relaxed) as f64 / 1e6,
    );
    w.sample(&format!("{hist}_count"), queue, total as f64);
    w.single(
        "prometheus_remote_storage_queue_length",
        Kind::Gauge,
        "Points queued and not yet taken by a shard.",
        queue,
        c(&stats.export.queue_length),
    );
    w.single(
        "prometheus_remote_storage_queue_capacity",
        Kind::Gauge,
        "Points each shard's queue holds before reading the WAL pauses.",
        queue,
        info.queue_points(stats.export.shards.load(Relaxed) as usize) as f64,
    );
    w.single(
        "prometheus_remote_storage_shards",
        Kind::Gauge,
        "Shards sending in parallel.",
        queue,
        c(&stats.export.shards),
    );
    w.single(
        "prometheus_sidecar_reader_blocked_seconds_total",
        Kind::Counter,
        "Time the WAL reader waited for room in full shard queues.",
        &[],
        c(&stats.export.reader_blocked_micros) / 1e6,
    );
    w.single(
        "prometheus_build_info",
        Kind::Gauge,
        "Build information; always 1. goversion names the toolchain (this build is not Go).",
        &[
            ("branch", info.branch),
            ("goversion", info.toolchain),
            ("revision", info.revision),
            ("version", info.version),
        ],
        1.0,
    );

    // Ours.
    w.single(
        "prometheus_sidecar_wal_lag_bytes",
        Kind::Gauge,
        "Bytes of WAL segments written by Prometheus and not read yet.",
        &[],
        c(&stats.lag.wal_lag_bytes),
    );
    w.single(
        "prometheus_sidecar_wal_lag_seconds",
        Kind::Gauge,
        "How far behind the reader is: age of the newest sample read while unread WAL remains, else 0.",
        &[],
        stats.lag.wal_lag_ms.load(Relaxed) as f64 / 1e3,
    );
    w.single(
        "prometheus_sidecar_wal_size_bytes",
        Kind::Gauge,
        "Total bytes of the WAL segments on disk.",
        &[],
        c(&stats.lag.wal_size_bytes),
    );
    let position = stats.reader.wal_position();
    w.single(
        "prometheus_sidecar_wal_segment",
        Kind::Gauge,
        "WAL segment the reader is in.",
        &[],
        position.segment as f64,
    );
    w.single(
        "prometheus_sidecar_wal_segment_offset_bytes",
        Kind::Gauge,
        "Byte offset of the reader in its WAL segment.",
        &[],
        position.offset as f64,
    );
    w.single(
        "prometheus_sidecar_wal_records_undecodable_total",
        Kind::Counter,
        "WAL records skipped because they could not be decoded.",
        &[],
        c(&stats.reader.records_undecodable),
    );
    w.single(
        "prometheus_sidecar_series_cached",
        Kind::Gauge,
        "Series in the reader's cache: those Prometheus still had at its last checkpoint, and \
         newer ones. Follows Prometheus's live series within a minute of each checkpoint.",
        &[],
        c(&stats.reader.series_cached),
    );
    let follow = stats.wal_follow.snapshot();
    w.single(
        "prometheus_sidecar_wal_truncations_total",
        Kind::Counter,
        "Times WAL segments not read yet had been deleted by Prometheus and reading went on from \
         the newest checkpoint and the first segment left (also at start-up, when the saved \
         position is in a deleted segment).",
        &[],
        follow.truncation_restarts as f64,
    );
    w.single(
        "prometheus_sidecar_wal_segments_skipped_total",
        Kind::Counter,
        "WAL segments deleted before they were read, or read to their end; their samples are lost \
         unless the checkpoint kept them.",
        &[],
        follow.segments_skipped as f64,
    );
    w.single(
        "prometheus_sidecar_wal_torn_records_total",
        Kind::Counter,
        "Incomplete records skipped at the end of a WAL segment (Prometheus crashed while writing).",
        &[],
        follow.torn_tails as f64,
    );
    w.single(
        "prometheus_sidecar_wal_corruptions_skipped_total",
        Kind::Counter,
        "Corrupt WAL fragments or pages skipped (checksum mismatch, bad framing).",
        &[],
        follow.corruptions_skipped as f64,
    );
    w.family(
        "prometheus_sidecar_points_dropped_total",
        Kind::Counter,
        "Samples read from the WAL that did not become points, by reason (counter_baseline: \
         first sample of a cumulative series, used as its start; already_delivered: sent before \
         a restart or older than --prometheus.wal-start).",
    );
    for (reason, n) in read_drops(stats) {
        w.sample(
            "prometheus_sidecar_points_dropped_total",
            &[("reason", reason)],
            n as f64,
        );
    }
    w.family(
        "prometheus_sidecar_histogram_points_dropped_total",
        Kind::Counter,
        "Histogram points not sent because the API would refuse them, by reason.",
    );
    for reason in HistogramDrop::ALL {
        w.sample(
            "prometheus_sidecar_histogram_points_dropped_total",
            &[("reason", reason.as_str())],
            stats.reader.histograms_dropped_count(reason) as f64,
        );
    }
    w.family(
        "prometheus_sidecar_exemplars_dropped_total",
        Kind::Counter,
        "Exemplars not sent, by reason (not_a_histogram: only distribution points hold them; \
         no_point: no point of the series covers the exemplar's time).",
    );
    for reason in ExemplarDrop::ALL {
        w.sample(
            "prometheus_sidecar_exemplars_dropped_total",
            &[("reason", reason.as_str())],
            stats.reader.exemplars_dropped_count(reason) as f64,
        );
    }
    w.family(
        "prometheus_sidecar_export_points_dropped_total",
        Kind::Counter,
        "Points taken by the senders and not written, by reason: a rule of the API they break \
         (checked before sending), retry_budget_exhausted (transient failures outlasted \
         --stackdriver.retry-budget) or rejected (refused by the API; codes in \
         agent_googleapis_com_agent_monitoring_point_count).",
    );
    for reason in crate::export::ExportDrop::ALL {
        w.sample(
            "prometheus_sidecar_export_points_dropped_total",
            &[("reason", reason.as_str())],
            stats.export.export_drops.count(reason) as f64,
        );
    }
    w.single(
        "prometheus_sidecar_send_retries_total",
        Kind::Counter,
        "CreateTimeSeries requests sent again after a transient failure.",
        &[],
        c(&stats.export.retries),
    );
    w.single(
        "prometheus_sidecar_last_successful_send_timestamp_seconds",
        Kind::Gauge,
        "When the Monitoring API last accepted points (Unix time; 0: never).",
        &[],
        stats
            .export
            .last_success()
            .map_or(0.0, |t| unix_millis(t) as f64 / 1e3),
    );

    // Aggregated counters of the config file, as the original's OpenCensus views showed them.
    for a in aggregates {
        w.single(&a.prometheus_name, Kind::Counter, &a.help, &[], a.value);
    }

    if let Some(p) = process {
        w.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent, in seconds.",
            &[],
            p.cpu_seconds,
        );
        w.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            &[],
            p.resident_bytes as f64,
        );
        w.single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            &[],
            p.virtual_bytes as f64,
        );
        w.single(
            "process_open_fds",
            Kind::Gauge,
            "Open file descriptors.",
            &[],
            p.open_fds as f64,
        );
        if let Some(max) = p.max_fds {
            w.single(
                "process_max_fds",
                Kind::Gauge,
                "Limit on open file descriptors (soft).",
                &[],
                max as f64,
            );
        }
        w.single(
            "process_threads",
            Kind::Gauge,
            "OS threads.",
            &[],
            p.threads as f64,
        );
        if let Some(start) = p.start_time_seconds {
            w.single(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since the Unix epoch, in seconds.",
                &[],
                start,
            );
        }
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info() -> RuntimeInfo {
        RuntimeInfo {
            queue: "http://127.0.0.1:9092/?auth=false".into(),
            shard_limits: (1, 200),
            capacity_per_shard: 600,
            ..RuntimeInfo::new(SystemTime::UNIX_EPOCH)
        }
    }

    /// The value of the sample line that starts with `series` (name plus labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn original_names_come_out_exactly() {
        let stats = Stats::default();
        stats.export.set_shards(4);
        stats.reader.samples_processed.fetch_add(7, Relaxed);
        stats.reader.batches_processed.fetch_add(2, Relaxed);
        stats.reader.native_histograms_read.fetch_add(5, Relaxed);
        stats.reader.native_histogram_points.fetch_add(4, Relaxed);
        stats.export.queued();
        stats.export.points_sent(1);
        stats.export.point_status(0, 1);
        stats.export.point_status(3, 2);
        stats
            .reader
            .series_dropped_metric(DropReason::TargetNotFound, "node_load1");
        let aggregates = [AggregateValue {
            name: "all requests".into(),
            prometheus_name: "all_requests".into(),
            help: "Requests of every job.".into(),
            value: 12.5,
        }];
        let text = render(
            &stats,
            &info(),
            None,
            &aggregates,
            SystemTime::UNIX_EPOCH + Duration::from_secs(90),
        );
        let q = r#"{queue="http://127.0.0.1:9092/?auth=false"}"#;
        for (series, want) in [
            ("prometheus_sidecar_samples_processed".to_string(), 7.0),
            ("prometheus_sidecar_batches_processed".into(), 2.0),
            ("prometheus_sidecar_native_histograms_read_total".into(), 5.0),
            ("prometheus_sidecar_native_histogram_points_total".into(), 4.0),
            ("prometheus_sidecar_samples_produced".into(), 1.0),
            (
                r#"prometheus_sidecar_dropped_series{reason="target_not_found"}"#.into(),
                1.0,
            ),
            (
                r#"prometheus_sidecar_dropped_series{reason="metadata_not_found"}"#.into(),
                0.0,
            ),
            (
                r#"prometheus_sidecar_dropped_series_by_metric{reason="target_not_found",metric="node_load1"}"#
                    .into(),
                1.0,
            ),
            (
                r#"agent_googleapis_com_agent_monitoring_point_count{status="0"}"#.into(),
                1.0,
            ),
            (
                r#"agent_googleapis_com_agent_monitoring_point_count{status="3"}"#.into(),
                2.0,
            ),
            (
                format!(
                    r#"agent_googleapis_com_agent_uptime{{version="stackdriver-prometheus-sidecar/{}"}}"#,
                    env!("CARGO_PKG_VERSION")
                ),
                90.0,
            ),
            (
                format!("prometheus_remote_storage_succeeded_samples_total{q}"),
                1.0,
            ),
            (
                format!("prometheus_remote_storage_failed_samples_total{q}"),
                0.0,
            ),
            (format!("prometheus_remote_storage_queue_length{q}"), 1.0),
            // 600 per shard, but 4 shards share at least 4096.
            (
                format!("prometheus_remote_storage_queue_capacity{q}"),
                1024.0,
            ),
            (format!("prometheus_remote_storage_shards{q}"), 4.0),
            ("all_requests".into(), 12.5),
        ] {
            assert_eq!(value(&text, &series), Some(want), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE prometheus_sidecar_samples_processed counter\n"));
        assert!(text.contains("# TYPE prometheus_remote_storage_shards gauge\n"));
        assert!(!text.contains("prometheus_sidecar_samples_processed_total"));
        assert!(text.contains("prometheus_build_info{branch="));
    }

    #[test]
    fn send_durations_form_a_cumulative_histogram() {
        let stats = Stats::default();
        stats.export.observe_send(Duration::from_millis(3), 1);
        stats.export.observe_send(Duration::from_millis(30), 1);
        stats.export.observe_send(Duration::from_secs(30), 1);
        let text = render(&stats, &info(), None, &[], SystemTime::UNIX_EPOCH);
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    "prometheus_remote_storage_sent_batch_duration_seconds_bucket{{queue=\"http://127.0.0.1:9092/?auth=false\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(b("0.005"), Some(1.0));
        assert_eq!(b("0.025"), Some(1.0));
        assert_eq!(b("0.05"), Some(2.0));
        assert_eq!(b("10"), Some(2.0));
        assert_eq!(b("+Inf"), Some(3.0));
        let sum = value(
            &text,
            "prometheus_remote_storage_sent_batch_duration_seconds_sum{queue=\"http://127.0.0.1:9092/?auth=false\"}",
        )
        .unwrap();
        assert!((sum - 30.033).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut w = Writer::default();
        w.sample("m", &[("a", "x\"y\\z\nw")], 1.0);
        assert_eq!(w.out, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }

    #[test]
    fn every_family_has_help_and_type_and_no_name_repeats() {
        let stats = Stats::default();
        let process = ProcessStats::read();
        let text = render(&stats, &info(), process.as_ref(), &[], SystemTime::now());
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(seen.insert(name.to_string()), "{name} declared twice");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        assert!(seen.contains("process_cpu_seconds_total"), "{text}");
    }
}
