//! `stackdriver-prometheus-sidecar`: the whole data flow, wired on one screen.
//!
//! WAL follower (own thread) → reader: series cache, resolution, conversion → shard queues →
//! `CreateTimeSeries`. Exit codes: 0 after a clean shutdown, 2 for bad flags, 1 for a failure to
//! start or a fatal runtime error (the original exits 0 after runtime failures; we do not).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Parser;
use prometheus_wal::{FollowOptions, Follower};
use stackdriver_prometheus_sidecar::config::{Config, Flags, LogFormat, LogLevel};
use stackdriver_prometheus_sidecar::export::{ExportConfig, Exporter, GrpcSink};
use stackdriver_prometheus_sidecar::metadata::MetadataCache;
use stackdriver_prometheus_sidecar::promapi::PromApi;
use stackdriver_prometheus_sidecar::retrieval::{PrometheusSources, Reader, ReaderExit, Resolver};
use stackdriver_prometheus_sidecar::stats::Stats;
use stackdriver_prometheus_sidecar::targets::TargetsCache;
use tokio_util::sync::CancellationToken;

/// Shards sending in parallel.
const SHARDS: usize = 4;
/// Timeout of each Prometheus API request.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of each `CreateTimeSeries` call (the original's).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the targets cache is refreshed (the original's).
const TARGETS_REFRESH: Duration = Duration::from_secs(180);
/// How often a progress line is logged.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait for queued points to be sent at shutdown.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let config = match Config::from_flags(&flags) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("Error parsing commandline arguments: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "starting the async runtime failed");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => {
            tracing::info!("See you next time!");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "exiting after a fatal error");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        version = stackdriver_prometheus_sidecar::config::flags::VERSION,
        wal = %config.wal_directory.display(),
        prometheus = %config.prometheus_url,
        api = %config.api.url,
        "starting stackdriver-prometheus-sidecar"
    );
    let cancel = CancellationToken::new();
    tokio::spawn(watch_signals(cancel.clone()));
    let stats = Arc::new(Stats::default());

    let stop_reading = Arc::new(AtomicBool::new(false));
    let mut follower = Follower::open(
        &config.wal_directory,
        FollowOptions {
            stop: stop_reading.clone(),
            ..FollowOptions::default()
        },
    )
    .with_context(|| format!("opening the WAL in {}", config.wal_directory.display()))?;

    let sink = GrpcSink::new(&config.api, SEND_TIMEOUT)
        .map_err(|e| anyhow!("--stackdriver.api-address: {e}"))?;
    let exporter = Exporter::start(
        Arc::new(sink),
        ExportConfig::new(&config.project_id, SHARDS),
        stats.clone(),
    );

    let api = PromApi::new(config.prometheus_url.clone(), PROMETHEUS_TIMEOUT);
    let targets = Arc::new(TargetsCache::new(api.clone(), config.static_labels.clone()));
    let metadata = Arc::new(MetadataCache::new(api.clone(), Vec::new()));
    tracing::info!(url = %config.prometheus_url, "waiting for Prometheus to be ready");
    if api.wait_ready(&cancel).await.is_err() {
        exporter.finish().await;
        return Ok(());
    }
    tracing::info!("Prometheus is ready; reading the WAL");
    tokio::spawn(
        targets
            .clone()
            .run_refresher(TARGETS_REFRESH, cancel.clone()),
    );
    tokio::spawn(log_progress(stats.clone(), cancel.clone()));

    let resolver = Resolver::new(
        PrometheusSources { targets, metadata },
        config.metrics_prefix.clone(),
        config.use_gke_resource,
    );
    let reader = Reader::new(
        resolver,
        exporter.handle(),
        stats.clone(),
        tokio::runtime::Handle::current(),
    );
    let reader_thread = tokio::task::spawn_blocking(move || reader.run(&mut follower));

    // Stop reading on a signal; the reader's end (error or not) also ends the process.
    let stopper = {
        let cancel = cancel.clone();
        let stop_reading = stop_reading.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            tracing::info!("Received SIGTERM, exiting gracefully...");
            stop_reading.store(true, Ordering::Relaxed);
        })
    };
    let outcome = reader_thread
        .await
        .context("the WAL reader thread panicked")?;
    cancel.cancel();
    let _ = stopper.await;

    if tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, exporter.finish())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?SHUTDOWN_FLUSH_TIMEOUT,
            "not every queued point could be sent before shutdown"
        );
    }
    stats.log_summary();
    match outcome {
        Ok(ReaderExit::Stopped) => Ok(()),
        Ok(ReaderExit::ExportClosed) => Err(anyhow!("the export stage stopped unexpectedly")),
        Err(err) => Err(anyhow::Error::new(err).context("following the WAL")),
    }
}

async fn watch_signals(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    cancel.cancel();
}

async fn log_progress(stats: Arc<Stats>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(PROGRESS_LOG_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => stats.log_summary(),
            _ = cancel.cancelled() => return,
        }
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    // Libraries (HTTP/2, gRPC) log at most warnings unless the sidecar itself is quieter.
    let ours = level.as_str().to_ascii_lowercase();
    let libraries = if level < tracing::Level::WARN {
        &ours
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{libraries},stackdriver_prometheus_sidecar={ours},prometheus_wal={ours}"
    ));
    match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter.clone())
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_name(false)
            .with_span_path(false)
            .subscriber_builder()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}
