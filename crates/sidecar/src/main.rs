//! `stackdriver-prometheus-sidecar`: the whole data flow, wired on one screen.
//!
//! WAL follower (own thread) → reader: series cache, resolution, conversion → shard queues →
//! `CreateTimeSeries`. Exit codes: 0 after a clean shutdown, 2 for bad flags, 1 for a failure to
//! start or a fatal runtime error.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Parser;
use prometheus_wal::{FollowOptions, Follower};
use stackdriver_prometheus_sidecar::config::{Config, Flags, LogFormat, LogLevel, WalStart};
use stackdriver_prometheus_sidecar::export::{
    ExportConfig, Exporter, FileSink, GrpcSink, TimeSeriesSink, autoscale, client::connections_for,
};
use stackdriver_prometheus_sidecar::metadata::MetadataCache;
use stackdriver_prometheus_sidecar::observe::health::{self, HealthMonitor};
use stackdriver_prometheus_sidecar::observe::lag;
use stackdriver_prometheus_sidecar::observe::recent::RecentErrors;
use stackdriver_prometheus_sidecar::observe::self_export::{self, SelfResource};
use stackdriver_prometheus_sidecar::progress::{
    self, DeliveryMarks, DeliveryTracker, LoadedProgress, Resume,
};
use stackdriver_prometheus_sidecar::promapi::PromApi;
use stackdriver_prometheus_sidecar::retrieval::aggregator::CounterAggregator;
use stackdriver_prometheus_sidecar::retrieval::{
    PrometheusSources, Reader, ReaderExit, ReaderProgress, Resolver,
};
use stackdriver_prometheus_sidecar::shutdown::Shutdown;
use stackdriver_prometheus_sidecar::stats::Stats;
use stackdriver_prometheus_sidecar::targets::{self, TargetsCache};
use stackdriver_prometheus_sidecar::wal_lock::{self, WalLock};
use stackdriver_prometheus_sidecar::web;

/// Timeout of each Prometheus API request.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of each `CreateTimeSeries` call (the original's).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often delivery progress is saved.
const PROGRESS_SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// How often a progress line is logged.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait for a first access token at start-up.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for queued points to be sent at shutdown.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

/// Threads for the async side (shards, the HTTP/2 connection, the web server): the CPUs this
/// process may use (cgroup limits included) less the one the WAL reader keeps busy, at least
/// one and at most four. On two CPUs that is one: a second worker would only contend with the
/// reader for the same cores, costing a quarter more CPU per sample and slowing catch-up.
fn async_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4))
}

/// jemalloc rather than the C library's allocator: every series' state is a few small
/// allocations made on the reader's thread, and points' buffers move between threads. On the
/// benchmark WAL it keeps about a tenth less memory resident (no header per small allocation:
/// several hundred thousand of them live at once) and costs less CPU per sample.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    let recent = RecentErrors::default();
    init_logging(config.log_level, config.log_format, &recent);
    // Before any TLS client exists (the API channel, the credentials' token requests).
    stackdriver_prometheus_sidecar::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "starting the async runtime failed");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, recent)) {
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

async fn run(config: Config, recent: RecentErrors) -> anyhow::Result<()> {
    tracing::info!(
        version = stackdriver_prometheus_sidecar::VERSION,
        wal = %config.wal_directory.display(),
        prometheus = %config.prometheus_url,
        api = %config.api.url,
        "starting stackdriver-prometheus-sidecar"
    );
    if config.deprecated_filter_used {
        tracing::warn!(
            "--filter is deprecated: use --include with a PromQL series selector instead \
             (all --filter matchers are joined into one selector)"
        );
    }
    let shutdown = Shutdown::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let stats = Arc::new(Stats::default());
    let mut export_config = ExportConfig::new(&config.project_id, config.shards.min);
    export_config.retry.budget = config.retry_budget;
    let health = Arc::new(HealthMonitor::new(health::DEFAULT_STALL_AFTER));
    let web = web::start(
        &config,
        &export_config,
        stats.clone(),
        health.clone(),
        recent,
        shutdown.clone(),
    )
    .await?;
    tokio::spawn(lag::run(
        stats.clone(),
        health,
        config.wal_directory.clone(),
        shutdown.clone(),
    ));

    // One sidecar per WAL directory: held until the process ends, after the last save.
    let Some(_lock) = take_wal_lock(&config.wal_directory, &stats, &shutdown).await? else {
        return Ok(());
    };
    progress::remove_stale_temporaries(&config.wal_directory);
    let mut follower = Follower::open(
        &config.wal_directory,
        FollowOptions {
            stop: shutdown.flag(),
            counters: stats.wal_follow.clone(),
            ..FollowOptions::default()
        },
    )
    .with_context(|| format!("opening the WAL in {}", config.wal_directory.display()))?;
    stats.milestones.mark_wal_open();

    let (resume, start_after_ms) = load_progress(&config)?;
    follower.resume_from(resume.position);
    let resume = resume.with_marks(progress::marks::load(&config.wal_directory));
    let marks =
        DeliveryMarks::create(&config.wal_directory, resume.marks()).with_context(|| {
            format!(
                "creating the delivery marks in {}",
                config.wal_directory.display()
            )
        })?;
    let tracker = Arc::new(DeliveryTracker::new(resume.position).with_marks(marks));
    resume.register_all(&tracker);

    let self_export;
    let exporter = match &config.store_in_files_directory {
        Some(dir) => {
            let sink = FileSink::new(dir).with_context(|| {
                format!("--stackdriver.store-in-files-directory {}", dir.display())
            })?;
            tracing::info!(dir = %dir.display(), "store-in-files mode: requests are written to files, not sent");
            let sink = Arc::new(sink);
            self_export = start_self_export(&config, sink.clone(), &stats, &shutdown);
            Exporter::start(sink, export_config, &stats, Some(tracker.clone()))
        }
        None => {
            let sink = GrpcSink::new(
                &config.api,
                SEND_TIMEOUT,
                connections_for(config.shards.max),
            )
            .map_err(|e| {
                anyhow!(
                    "--stackdriver.api-address={}: {e}{CREDENTIALS_HINT}",
                    config.api.url
                )
            })?;
            sink.check_credentials(CREDENTIALS_TIMEOUT)
                .await
                .map_err(|e| {
                    anyhow!(
                        "--stackdriver.api-address={}: Google credentials do not work: \
                         {e}{CREDENTIALS_HINT}",
                        config.api.url
                    )
                })?;
            let sink = Arc::new(sink);
            self_export = start_self_export(&config, sink.clone(), &stats, &shutdown);
            Exporter::start(sink, export_config, &stats, Some(tracker.clone()))
        }
    };

    let api = PromApi::new(config.prometheus_url.clone(), PROMETHEUS_TIMEOUT);
    let targets = Arc::new(TargetsCache::new(api.clone(), config.static_labels.clone()));
    let metadata = Arc::new(MetadataCache::new(
        api.clone(),
        config.file.static_metadata.clone(),
    ));
    let aggregator = Arc::new(CounterAggregator::new(
        config.file.aggregated_counters.clone(),
        &config.project_id,
    ));
    if !aggregator.is_empty()
        && let Some(saved) = progress::aggregates::load(&config.wal_directory)
    {
        tracing::info!(
            inputs = saved.inputs.len(),
            "aggregated counters continue from their saved totals"
        );
        aggregator.restore(&saved);
    }
    web.show_aggregates(aggregator.clone());
    tracing::info!(url = %config.prometheus_url, "waiting for Prometheus to be ready");
    if api.wait_ready(&shutdown).await.is_err() {
        exporter.finish().await;
        return Ok(());
    }
    tracing::info!("Prometheus is ready; reading the WAL");
    stats.milestones.mark_prometheus_ready();
    tokio::spawn(
        targets
            .clone()
            .run_refresher(targets::DEFAULT_REFRESH_INTERVAL, shutdown.clone()),
    );
    tokio::spawn(log_progress(stats.clone(), shutdown.clone()));
    tokio::spawn(autoscale::run(
        exporter.resharder(),
        autoscale::Inputs::of(&stats),
        config.shards,
        autoscale::TICK,
        shutdown.clone(),
    ));
    tokio::spawn(progress::run_keeper(
        config.wal_directory.clone(),
        tracker.clone(),
        PROGRESS_SAVE_INTERVAL,
        shutdown.clone(),
    ));

    let resolver = Resolver::new(
        PrometheusSources { targets, metadata },
        config.metrics_prefix.clone(),
        config.use_gke_resource,
    )
    .with_renames(config.file.metric_renames.clone());
    let reader = Reader::new(
        resolver,
        exporter.handle(),
        stats.reader.clone(),
        tokio::runtime::Handle::current(),
        ReaderProgress {
            tracker: tracker.clone(),
            resume,
            start_after_ms,
        },
    )
    .with_filter(config.series_filter.clone())
    .with_aggregator(aggregator)
    .with_stop(shutdown.flag());
    // Shutdown stops the follower, which ends the reader; the reader's end (error or not) also
    // ends every other task.
    let outcome = tokio::task::spawn_blocking(move || reader.run(&mut follower))
        .await
        .context("the WAL reader thread panicked")?;
    shutdown.trigger();

    if tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, exporter.finish())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?SHUTDOWN_FLUSH_TIMEOUT,
            points_queued = stats.export.queue_length.load(Ordering::Relaxed),
            api = %config.api.url,
            "not every queued point could be sent before shutdown"
        );
    }
    if let Some(task) = self_export
        && tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, task)
            .await
            .is_err()
    {
        tracing::warn!("the sidecar's own metrics could not be sent before shutdown");
    }
    let dir = config.wal_directory.clone();
    match tokio::task::spawn_blocking(move || progress::save(&dir, &tracker)).await {
        Ok(Ok(position)) => tracing::info!(%position, "progress saved"),
        Ok(Err(err)) => tracing::error!(error = %err, "saving progress at shutdown failed"),
        Err(err) => tracing::error!(error = %err, "saving progress at shutdown failed"),
    }
    stats.log_summary();
    if let Some(err) = web.fatal_error() {
        return Err(anyhow!(err));
    }
    match outcome {
        Ok(ReaderExit::Stopped) => Ok(()),
        Ok(ReaderExit::ExportClosed) => Err(anyhow!("the export stage stopped unexpectedly")),
        Err(err) => Err(anyhow::Error::new(err).context("following the WAL")),
    }
}

/// With `--monitoring.backend=stackdriver`, starts sending the sidecar's own metrics every
/// minute through an exporter of their own on `sink`; the task ends after a last send once
/// shutdown is triggered.
fn start_self_export<S: TimeSeriesSink>(
    config: &Config,
    sink: Arc<S>,
    stats: &Arc<Stats>,
    shutdown: &Shutdown,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.self_metrics_to_monitoring {
        return None;
    }
    // Its own counters: the /metrics figures stay those of the WAL's points.
    let own_stats = Stats::default();
    let exporter = Exporter::start(
        sink,
        ExportConfig::new(&config.project_id, 1),
        &own_stats,
        None,
    );
    let (location, namespace) = config.own_location_and_namespace();
    let resource = SelfResource::new(&config.project_id, location, namespace);
    tracing::info!(
        every = ?self_export::INTERVAL,
        "--monitoring.backend=stackdriver: the sidecar's own metrics are also sent to Cloud Monitoring"
    );
    Some(tokio::spawn(self_export::run(
        exporter,
        stats.clone(),
        resource,
        std::time::SystemTime::now(),
        shutdown.clone(),
    )))
}

/// Takes the WAL directory's lock, waiting (and saying so on `/-/ready`) while another sidecar
/// holds it; `None` when shutdown comes first.
async fn take_wal_lock(
    wal: &std::path::Path,
    stats: &Stats,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<WalLock>> {
    let milestones = &stats.milestones;
    wal_lock::lock(wal, shutdown, |holder| {
        milestones.waiting_for_lock(holder.map(ToString::to_string));
    })
    .await
    .with_context(|| {
        format!(
            "--prometheus.wal-directory={}: cannot lock it (the lock file {} is created there)",
            wal.display(),
            wal_lock::LOCK_FILE
        )
    })
}

/// What to do about credentials that do not load, appended to the error.
const CREDENTIALS_HINT: &str = " (set GOOGLE_APPLICATION_CREDENTIALS to a service-account key \
     file, log in with `gcloud auth application-default login`, or run where the metadata \
     server answers; a local endpoint without credentials takes ?auth=false)";

/// Where to resume: the saved progress, or `--prometheus.wal-start` on a first start. Fails when
/// the WAL directory is not writable (progress could never be saved).
fn load_progress(config: &Config) -> anyhow::Result<(Resume, Option<i64>)> {
    let dir = &config.wal_directory;
    let probe = dir.join(".stackdriver_sidecar.write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "the WAL directory {} must be writable: progress is saved there",
                dir.display()
            )
        })?;
    let loaded = progress::file::load(dir).unwrap_or_else(|err| {
        tracing::warn!(
            dir = %dir.display(),
            error = %err,
            "ignoring an unusable progress file; starting per --prometheus.wal-start (points may be sent again)"
        );
        LoadedProgress::None
    });
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let start_after_ms = match (&loaded, config.wal_start) {
        (LoadedProgress::None, WalStart::Now) => Some(now_ms),
        (LoadedProgress::None, WalStart::MaxAge(age)) => Some(now_ms - age.as_millis() as i64),
        _ => None,
    };
    match &loaded {
        LoadedProgress::None => tracing::info!(start = ?config.wal_start, "no saved progress"),
        LoadedProgress::Exact(p) => tracing::info!(
            position = %p.position,
            series = p.series.len(),
            "resuming where delivery stopped"
        ),
        LoadedProgress::Legacy(position) => tracing::info!(
            %position,
            "resuming from the original sidecar's progress file (counters start afresh)"
        ),
    }
    Ok((Resume::new(loaded), start_after_ms))
}

async fn watch_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("Received {name}, exiting gracefully...");
    shutdown.trigger();
    // The first signal asks for a graceful shutdown (bounded by SHUTDOWN_FLUSH_TIMEOUT); an
    // operator who signals again does not want to wait: exit at once, as 128 + the signal.
    let code = tokio::select! {
        _ = term.recv() => 128 + 15,
        _ = int.recv() => 128 + 2,
    };
    tracing::warn!("second signal received: exiting at once without flushing or saving");
    std::process::exit(code);
}

async fn log_progress(stats: Arc<Stats>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(PROGRESS_LOG_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => stats.log_summary(),
            _ = shutdown.triggered() => return,
        }
    }
}

fn init_logging(level: LogLevel, format: LogFormat, recent: &RecentErrors) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

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
            .finish()
            .with(recent.layer())
            .init(),
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_name(false)
            .with_span_path(false)
            .subscriber_builder()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .finish()
            .with(recent.layer())
            .init(),
    }
}
