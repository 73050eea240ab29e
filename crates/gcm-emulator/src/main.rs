//! `gcm-emulator`: serve the Cloud Monitoring emulator, or watch one with `gcm-emulator top`.
//!
//! Owns the command line (flags map one to one onto [`EmulatorConfig`]), logging to stderr, the
//! wait for Ctrl-C or SIGTERM, and the exit codes: 2 for bad flags (clap's), 1 when the server
//! cannot start or `top` never reached the emulator. It must never hold emulator logic.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_emulator::{Emulator, EmulatorConfig, top};

#[derive(Parser, Debug)]
#[command(
    name = "gcm-emulator",
    version,
    about = "A local, in-memory Google Cloud Monitoring API that enforces the real API's rules.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log level (logs go to stderr).
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    log_level: LogLevel,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Poll a running emulator and print, per metric type, its kind, value type, series and
    /// points.
    Top(TopArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen_address: SocketAddr,
    /// How often to log a one-line summary; 0s never.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    summary_interval: Duration,
    /// Smallest gap between two points of one series; 0s disables the rule.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    sampling_period: Duration,
    /// Oldest end time accepted, back from now; 0s accepts any age (to replay old data).
    #[arg(long, default_value = "25h", value_parser = humantime::parse_duration)]
    max_point_age: Duration,
    /// Latest end time accepted, ahead of now; 0s accepts any future time.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_future_skew: Duration,
    /// Most label keys per metric (metric types under prometheus.googleapis.com allow 100).
    #[arg(long, default_value_t = 30)]
    max_metric_labels: usize,
    /// Keep only this many newest points per series (default: keep all).
    #[arg(long)]
    retain_points: Option<usize>,
    /// Refuse a whole request when one series has a field error, as the API did until about
    /// 2020, instead of writing the valid series.
    #[arg(long)]
    field_errors_reject_request: bool,
    /// Delay before answering each CreateTimeSeries.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    create_latency: Duration,
    /// Share (0 to 1) of CreateTimeSeries calls failing with --fault-code, chosen at random.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    fault_ratio: f64,
    /// gRPC code of injected failures: unavailable, internal, deadline-exceeded,
    /// resource-exhausted, aborted, invalid-argument or permission-denied.
    #[arg(long, default_value = "unavailable", value_parser = fault_code)]
    fault_code: tonic::Code,
    /// Share (0 to 1) of the series of each request refused as a partial failure
    /// (INVALID_ARGUMENT with a CreateTimeSeriesSummary); the others are written.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    partial_failure_ratio: f64,
    /// Start of an outage (every call answers UNAVAILABLE), counted from start-up; needs
    /// --outage-duration.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    outage_after: Duration,
    /// Length of the outage; 0s means none.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    outage_duration: Duration,
    /// Seed of the random choices of injected faults.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Address of an HTTP server showing a summary of what the emulator holds at `/`: plain
    /// text, or an HTML table when the request accepts text/html (a browser); not served when
    /// empty.
    #[arg(long, default_value = "")]
    http_address: String,
}

fn ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{raw:?} is not a number from 0 to 1")),
    }
}

fn fault_code(raw: &str) -> Result<tonic::Code, String> {
    use tonic::Code;
    Ok(match raw {
        "unavailable" => Code::Unavailable,
        "internal" => Code::Internal,
        "deadline-exceeded" => Code::DeadlineExceeded,
        "resource-exhausted" => Code::ResourceExhausted,
        "aborted" => Code::Aborted,
        "invalid-argument" => Code::InvalidArgument,
        "permission-denied" => Code::PermissionDenied,
        other => return Err(format!("{other:?} is not a supported code")),
    })
}

#[derive(Args, Debug)]
struct TopArgs {
    /// host:port of the emulator.
    #[arg(long, default_value = "127.0.0.1:9092")]
    address: String,
    /// Project whose metrics to show.
    #[arg(long)]
    project: String,
    /// Time between two tables.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl ServeArgs {
    fn config(&self) -> EmulatorConfig {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        EmulatorConfig {
            sampling_period: self.sampling_period,
            max_point_age: nonzero(self.max_point_age),
            max_future_skew: nonzero(self.max_future_skew),
            max_metric_labels: self.max_metric_labels,
            max_points_per_series: self.retain_points,
            field_errors_reject_request: self.field_errors_reject_request,
            summary_interval: nonzero(self.summary_interval),
            create_latency: self.create_latency,
            fault_ratio: self.fault_ratio,
            fault_code: self.fault_code,
            partial_failure_ratio: self.partial_failure_ratio,
            outage: nonzero(self.outage_duration).map(|duration| gcm_emulator::Outage {
                after: self.outage_after,
                duration,
            }),
            fault_seed: self.fault_seed,
        }
    }
}

fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let emulator = Emulator::new(args.config());
    let running = emulator
        .serve(args.listen_address)
        .await
        .with_context(|| format!("cannot listen on --listen-address {}", args.listen_address))?;
    if !args.http_address.is_empty() {
        let addr: SocketAddr = args
            .http_address
            .parse()
            .with_context(|| format!("--http-address {:?} is not host:port", args.http_address))?;
        let bound = gcm_emulator::summary::serve(emulator.clone(), addr)
            .await
            .with_context(|| format!("cannot listen on --http-address {addr}"))?;
        tracing::info!(addr = %bound, "gcm-emulator summary over HTTP");
    }
    stop_requested().await;
    tracing::info!("{}", emulator.store().stats().summary_line());
    running
        .shutdown()
        .await
        .context("server failed while shutting down")
}

async fn run_top(args: TopArgs) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", args.address))
        .with_context(|| format!("--address {:?} is not host:port", args.address))?
        .connect_timeout(Duration::from_secs(2));
    let mut client = MetricServiceClient::new(endpoint.connect_lazy());
    let clear = std::io::stdout().is_terminal();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticks = tokio::time::interval(args.interval);
    let stop = stop_requested();
    tokio::pin!(stop);
    let mut reached = false;
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => break,
        }
        match top::collect(&mut client, &args.project).await {
            Ok(rows) => {
                reached = true;
                if clear {
                    print!("\x1b[2J\x1b[H");
                }
                println!("{}", top::render(&rows));
            }
            Err(status) => {
                eprintln!("gcm-emulator top: {}: {}", args.address, status.message());
                last_error = Some(status);
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() + args.interval > d) {
            break;
        }
    }
    match (reached, last_error) {
        (false, Some(status)) => {
            anyhow::bail!(
                "never reached the emulator at {}: {}",
                args.address,
                status.message()
            )
        }
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    let result = match cli.command {
        Some(Command::Top(args)) => run_top(args).await,
        None => serve(cli.serve).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gcm-emulator: {err:#}");
            ExitCode::FAILURE
        }
    }
}
