//! `sidecar-bench live`: the sidecar's steady-state cost while a WAL grows at a live rate
//! ([`run`]).
//!
//! Owns the writer thread and the measurement. Linux only; must never touch anything but its
//! own temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::generate::{Scraper, Wal, planned_target, write_api_answers};
use crate::{Killed, context_switches, now_ms, process_usage, replay, scrape, sink, start_sidecar};

/// `sidecar-bench live` flags.
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// Series in total over all targets; the ingest rate is series / scrape interval.
    #[arg(long, default_value_t = 750_000)]
    series: u64,
    /// Scrape targets; the series are spread evenly over them.
    #[arg(long, default_value_t = 250)]
    targets: u64,
    /// Time between two scrapes of a target.
    #[arg(long, default_value = "15s")]
    scrape_interval: humantime::Duration,
    /// Time from the start before measuring (at least two scrape intervals, so that every
    /// series has been seen and every counter has its baseline).
    #[arg(long, default_value = "35s")]
    warmup: humantime::Duration,
    /// Length of the measured window.
    #[arg(long, default_value = "60s")]
    duration: humantime::Duration,
    /// The sidecar binary to measure.
    #[arg(long, default_value = "target/release/stackdriver-prometheus-sidecar")]
    sidecar: PathBuf,
    /// Extra flags for the sidecar (after `--`); one the bench gives itself (such as
    /// `--log.level`) replaces the bench's.
    #[arg(last = true)]
    extra: Vec<String>,
}

/// What the writer thread shares with the measurement.
#[derive(Default)]
struct Progress {
    samples: AtomicU64,
    stop: AtomicBool,
}

/// Appends scrapes to a new WAL in `dir` on the clock until told to stop: the targets' scrapes
/// spread evenly over the interval, a target's series records at its first scrape, then one
/// samples record per scrape, each record reaching the file when it is logged (as Prometheus's
/// writer does), with sample timestamps taken from the clock.
fn write_live(
    dir: PathBuf,
    args: (u64, u64, Duration),
    start: Instant,
    start_ms: i64,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let (series, targets, interval) = args;
    let interval_ms = i64::try_from(interval.as_millis())?;
    let mut wal = Wal::create(&dir)?;
    let mut scraper = Scraper::default();
    let mut next_ref = 1u64;
    for scrape in 0u64.. {
        for t in 0..targets {
            let offset_ms = (t as i64 * interval_ms) / targets as i64;
            let due_ms = scrape as i64 * interval_ms + offset_ms;
            let due = start + Duration::from_millis(due_ms as u64);
            loop {
                if progress.stop.load(Ordering::Relaxed) {
                    wal.finish()?;
                    return Ok(());
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(100)));
            }
            if scrape == 0 {
                let plan = planned_target(t, series, targets, interval_ms, next_ref, (false, 16));
                next_ref += plan.kinds.len() as u64;
                scraper.log_series(&mut wal, plan)?;
            }
            let n = scraper.log_scrape(&mut wal, t as usize, scrape, start_ms + due_ms)?;
            progress.samples.fetch_add(n, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// One look at the sidecar, the writer and the sink.
struct Reading {
    at: Instant,
    cpu: f64,
    rss: u64,
    written: u64,
    processed: f64,
    delivered: u64,
    /// Voluntary context switches (the sidecar's threads waking up).
    switches: u64,
}

async fn read(
    pid: u32,
    client: &reqwest::Client,
    metrics: &str,
    progress: &Progress,
    sink: &sink::SinkCounts,
) -> anyhow::Result<Reading> {
    let (cpu, rss) = process_usage(pid).context("reading /proc")?;
    let counts = scrape(client, metrics)
        .await
        .context("scraping the sidecar's /metrics")?;
    Ok(Reading {
        at: Instant::now(),
        cpu,
        rss,
        written: progress.samples.load(Ordering::Relaxed),
        processed: counts.processed,
        delivered: sink.points.load(Ordering::Relaxed),
        switches: context_switches(pid).0,
    })
}

/// Sleeps `d`, failing early if the sidecar exits.
async fn watch(child: &mut Killed, d: Duration, log: &std::path::Path) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(Some(status)) = child.0.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the sidecar exited early ({status}):\n{log}");
        }
    }
    Ok(())
}

/// Runs `sidecar-bench live`. A writer thread appends to a fresh WAL what Prometheus appends
/// when it scrapes `T` targets every interval (see `write_live`), and the sidecar follows
/// that WAL with the Prometheus API answers replayed and the counting sink as its backend. After
/// a warm-up (every series seen, every counter's baseline taken), the sidecar's CPU time is
/// measured over a window and printed as a share of one core and per sample, with how far its
/// reading lagged behind the writer.
pub async fn run(args: LiveArgs) -> anyhow::Result<()> {
    let (series, targets) = (args.series, args.targets);
    let interval = Duration::from(args.scrape_interval);
    ensure!(targets > 0, "--targets must be at least 1");
    ensure!(
        series >= targets * 6,
        "--series must be at least 6 per target (5 report series and one more)"
    );
    ensure!(
        interval >= Duration::from_millis(100),
        "--scrape-interval must be at least 100ms"
    );
    let interval_ms = i64::try_from(interval.as_millis())?;
    let rate = series as f64 / interval.as_secs_f64();
    println!(
        "live: {series} series on {targets} targets every {} = {rate:.0} samples/s; warm-up {}, \
         measured {}",
        args.scrape_interval, args.warmup, args.duration
    );

    let work = tempfile::tempdir()?;
    let api = work.path().join("api");
    std::fs::create_dir_all(&api)?;
    // The API answers are planned up front (label sets dropped at once); the writer plans each
    // target again at its first scrape, identically.
    let mut plans = Vec::with_capacity(targets as usize);
    let mut next_ref = 1u64;
    for t in 0..targets {
        let mut plan = planned_target(t, series, targets, interval_ms, next_ref, (false, 16));
        next_ref += plan.kinds.len() as u64;
        plan.labels = Vec::new();
        plans.push(plan);
    }
    let start_ms = now_ms();
    write_api_answers(&api, &plans, interval, |_| start_ms)?;
    drop(plans);
    let prom = replay::serve(replay::Recorded::load(&api)?).await?;
    let (sink_addr, sink) = sink::serve().await?;
    let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    let wal = work.path().join("wal");
    std::fs::create_dir_all(&wal)?;
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let writer = {
        let (wal, progress) = (wal.clone(), progress.clone());
        std::thread::spawn(move || {
            let result = write_live(wal, (series, targets, interval), start, start_ms, progress);
            if let Err(err) = &result {
                eprintln!("WAL writer failed: {err:#}");
            }
            result
        })
    };
    let log = work.path().join("sidecar.log");
    let mut child = start_sidecar(&args.sidecar, &log, &wal, prom, sink_addr, web, &args.extra)?;
    let pid = child.0.id();
    let client = reqwest::Client::new();
    let metrics = format!("http://{web}/metrics");

    watch(&mut child, args.warmup.into(), &log).await?;
    let before = read(pid, &client, &metrics, &progress, &sink).await?;
    watch(&mut child, args.duration.into(), &log).await?;
    let after = read(pid, &client, &metrics, &progress, &sink).await?;
    progress.stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the WAL writer panicked"))?;
    written.context("writing the WAL")?;

    let secs = (after.at - before.at).as_secs_f64();
    let samples = after.written.saturating_sub(before.written);
    let cpu = after.cpu - before.cpu;
    println!("sidecar: {}", args.sidecar.display());
    println!(
        "window: {secs:.1} s; WAL samples written {samples} ({:.0}/s); read by the sidecar {:.0}; \
         points delivered {}",
        samples as f64 / secs,
        after.processed - before.processed,
        after.delivered.saturating_sub(before.delivered)
    );
    println!(
        "cpu: {cpu:.2} s in the window = {:.2} % of one core = {:.2} µs per sample",
        100.0 * cpu / secs,
        1e6 * cpu / samples.max(1) as f64
    );
    println!(
        "wake-ups: {:.0} voluntary context switches per second",
        after.switches.saturating_sub(before.switches) as f64 / secs
    );
    println!(
        "samples written but not yet read at the end: {:.0} (a scrape interval holds {series})",
        after.written as f64 - after.processed
    );
    println!(
        "peak RSS: {:.1} MB = {:.0} bytes per series; cpu before the window (warm-up) {:.2} s",
        after.rss as f64 / 1e6,
        after.rss as f64 / series as f64,
        before.cpu
    );
    if after.written as f64 - after.processed > series as f64 {
        bail!("the sidecar fell more than a scrape interval behind the writer");
    }
    Ok(())
}
