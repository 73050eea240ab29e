//! `sidecar-bench`: how fast and how lean the sidecar catches up on a recorded WAL.
//!
//! Serves the recorded Prometheus API answers from a local replay server, runs the sidecar binary
//! against a copy of the WAL and a counting `CreateTimeSeries` sink on loopback, waits until every
//! WAL sample is processed and every produced point delivered, and prints samples/s,
//! CPU-seconds per million samples (from the process's own accounting in `/proc`), peak resident
//! memory and bytes per series; when the input's `walcount.json` says how many points must
//! arrive (inputs made by `sidecar-bench generate`), checks that exactly those did. Linux only.
//!
//! `sidecar-bench generate` writes such an input, of any size ([`generate`]).

mod generate;
mod live;
mod replay;
mod shift;
mod sink;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use prometheus_wal::record::decode_histogram_samples;
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{
    Codec, Follower, RecordSource, RecordType, decode_samples, decode_series, record_type,
};

/// Command line: a benchmark run, or `generate`.
#[derive(Debug, Parser)]
#[command(
    name = "sidecar-bench",
    about = "Catch-up benchmark of stackdriver-prometheus-sidecar",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a synthetic input (WAL, targets.json, metadata-all.json, walcount.json).
    Generate(generate::GenerateArgs),
    /// Measures the steady-state cost while a WAL grows at a live rate.
    Live(live::LiveArgs),
}

/// Flags of a benchmark run.
#[derive(Debug, clap::Args)]
struct Args {
    /// Directory holding `wal/`, `targets.json` and `metadata-all.json`.
    #[arg(long, required = true)]
    input: Option<PathBuf>,
    /// The sidecar binary to measure.
    #[arg(long, default_value = "target/release/stackdriver-prometheus-sidecar")]
    sidecar: PathBuf,
    /// Give up after this long.
    #[arg(long, default_value = "15m")]
    timeout: humantime::Duration,
    /// Extra flags for the sidecar (after `--`); one the bench gives itself (such as
    /// `--log.level`) replaces the bench's.
    #[arg(last = true)]
    extra: Vec<String>,
}

/// What the WAL holds.
struct WalCounts {
    samples: u64,
    series: u64,
    bytes: u64,
    decode: Duration,
    /// Oldest and newest sample timestamps (ms).
    min_t: i64,
    max_t: i64,
}

fn count_wal(dir: &Path) -> anyhow::Result<WalCounts> {
    let start = Instant::now();
    let mut follower = Follower::open_to_end(dir)?;
    let (mut series_buf, mut samples_buf) = (Vec::new(), Vec::new());
    let mut histograms_buf = Vec::new();
    let (mut samples, mut series) = (0u64, 0u64);
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    while let Some(record) = follower.next_record()? {
        match record_type(record.data) {
            RecordType::Series => {
                decode_series(record.data, &mut series_buf)?;
                series += series_buf.len() as u64;
            }
            RecordType::Samples => {
                decode_samples(record.data, &mut samples_buf)?;
                samples += samples_buf.len() as u64;
                for s in &samples_buf {
                    min_t = min_t.min(s.t);
                    max_t = max_t.max(s.t);
                }
            }
            // Native histogram samples count as samples too (one point each).
            RecordType::HistogramSamples => {
                decode_histogram_samples(record.data, &mut histograms_buf)?;
                samples += histograms_buf.len() as u64;
            }
            _ => {}
        }
    }
    let bytes = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    Ok(WalCounts {
        samples,
        series,
        bytes,
        decode: start.elapsed(),
        min_t,
        max_t,
    })
}

/// The number of points the input's `walcount.json` says must be delivered, if it says so.
fn expected_points(input: &Path) -> anyhow::Result<Option<u64>> {
    let path = input.join("walcount.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let count: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(count["expected_points"].as_u64())
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn copy_wal(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file()
            && e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Copies the WAL re-encoded with every timed record `shift_ms` later ([`shift`]), so that a
/// recorded input stays inside the API's 25-hour window (which the sidecar enforces) whenever the
/// benchmark runs. Each segment becomes a segment of the same name; records without times are
/// copied as they are.
fn copy_wal_shifted(from: &Path, to: &Path, shift_ms: i64) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut follower = Follower::open_to_end(from)?;
    let mut writer: Option<(u64, SegmentWriter<std::fs::File>)> = None;
    let mut buf = Vec::new();
    while let Some(record) = follower.next_record()? {
        let RecordSource::Segment(index) = record.source else {
            bail!("inputs with a checkpoint cannot be shifted in time; use a fresh input");
        };
        if writer.as_ref().map(|(i, _)| *i) != Some(index) {
            if let Some((_, w)) = writer.take() {
                w.close()?;
            }
            let file = std::fs::File::create(to.join(format!("{index:08}")))?;
            writer = Some((index, SegmentWriter::new(file, Codec::Snappy)));
        }
        let data: &[u8] = if shift::shift_record(record.data, shift_ms, &mut buf)? {
            &buf
        } else {
            record.data
        };
        if let Some((_, w)) = writer.as_mut() {
            w.log(data)?;
        }
    }
    if let Some((_, w)) = writer {
        w.close()?;
    }
    Ok(())
}

/// CPU seconds (user + system) and peak RSS bytes of a process, from `/proc`.
fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
    Some((ticks / 100.0, hwm_kb * 1024))
}

/// Voluntary and involuntary context switches of the live threads of `pid`.
fn context_switches(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            let value = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if line.starts_with("voluntary_ctxt_switches:") {
                total.0 += value(line).unwrap_or(0);
            } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                total.1 += value(line).unwrap_or(0);
            }
        }
    }
    total
}

/// The sidecar's own counters, from its `/metrics`.
#[derive(Debug, Default)]
struct SidecarCounts {
    processed: f64,
    produced: f64,
    succeeded: f64,
    failed: f64,
    /// Points refused by the sidecar's own validation before sending.
    invalid: f64,
    /// Shards at the time of the scrape.
    shards: f64,
}

async fn scrape(client: &reqwest::Client, url: &str) -> Option<SidecarCounts> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let mut c = SidecarCounts::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        let v: f64 = value.parse().unwrap_or(0.0);
        match metric {
            // Native histogram samples are samples of the input too.
            "prometheus_sidecar_samples_processed"
            | "prometheus_sidecar_native_histograms_read_total" => c.processed += v,
            "prometheus_sidecar_samples_produced" => c.produced += v,
            "prometheus_remote_storage_succeeded_samples_total" => c.succeeded += v,
            "prometheus_remote_storage_failed_samples_total" => c.failed += v,
            "prometheus_sidecar_export_points_dropped_total" => c.invalid += v,
            "prometheus_remote_storage_shards" => c.shards = v,
            _ => {}
        }
    }
    Some(c)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the sidecar binary against the WAL directory `wal`, the replayed Prometheus API at
/// `prom` and the sink at `sink`, serving its own metrics on `web`, logging into `log`.
fn start_sidecar(
    sidecar: &Path,
    log: &Path,
    wal: &Path,
    prom: std::net::SocketAddr,
    sink: std::net::SocketAddr,
    web: std::net::SocketAddr,
    extra: &[String],
) -> anyhow::Result<Killed> {
    let log = std::fs::File::create(log)?;
    let defaults = [
        "--stackdriver.project-id=bench".to_string(),
        format!("--stackdriver.api-address=http://{sink}/?auth=false"),
        "--stackdriver.generic.location=bench".to_string(),
        "--stackdriver.generic.namespace=bench".to_string(),
        format!("--prometheus.wal-directory={}", wal.display()),
        format!("--prometheus.api-address=http://{prom}/"),
        format!("--web.listen-address={web}"),
        "--log.level=warn".to_string(),
    ];
    let child = std::process::Command::new(sidecar)
        .args(without_overridden(&defaults, extra))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", sidecar.display()))?;
    Ok(Killed(child))
}

/// The flags of `defaults` that `extra` does not give again: a flag after `--` replaces the
/// bench's own (the sidecar, like the original, refuses most flags given twice).
fn without_overridden<'a>(defaults: &'a [String], extra: &[String]) -> Vec<&'a String> {
    let name = |flag: &str| flag.split('=').next().unwrap_or_default().to_string();
    let given: Vec<String> = extra.iter().map(|f| name(f)).collect();
    defaults
        .iter()
        .filter(|d| !given.contains(&name(d)))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Generate(g)) => generate::run(&g),
        Some(Command::Live(l)) => runtime()?.block_on(live::run(l)),
        None => runtime()?.block_on(bench(cli.run)),
    }
}

/// The runtime of a measuring run (one thread: the replay server and the sink are light).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Needed when reqwest is built with TLS elsewhere in the workspace; plain HTTP is all we use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let input = args.input.context("--input is required")?;
    let wal_in = input.join("wal");
    let counts = count_wal(&wal_in).with_context(|| format!("reading {}", wal_in.display()))?;
    let expected = expected_points(&input)?;
    println!(
        "input: {} samples, {} series, {} WAL bytes (decoded here in {:.2} s)",
        counts.samples,
        counts.series,
        counts.bytes,
        counts.decode.as_secs_f64()
    );
    if counts.samples > 0 {
        let age_h = |t: i64| (now_ms() - t) as f64 / 3.6e6;
        println!(
            "sample ages: oldest {:.2} h, newest {:.2} h",
            age_h(counts.min_t),
            age_h(counts.max_t)
        );
    }

    let work = tempfile::tempdir()?;
    let wal = work.path().join("wal");
    // A recorded input older than a few hours is moved forward in time (its newest sample one
    // minute ago), or the sidecar would refuse its points as too old.
    let newest_age_ms = now_ms() - counts.max_t;
    if counts.samples > 0 && newest_age_ms > 6 * 3_600_000 {
        let shift = newest_age_ms - 60_000;
        println!(
            "moving the input's samples {:.1} h forward in time (re-encoding the WAL)",
            shift as f64 / 3.6e6
        );
        copy_wal_shifted(&wal_in, &wal, shift)?;
    } else {
        copy_wal(&wal_in, &wal)?;
    }
    let prom = replay::serve(replay::Recorded::load(&input)?).await?;
    let (sink_addr, sink) = sink::serve().await?;
    let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    let started = Instant::now();
    let mut child = start_sidecar(
        &args.sidecar,
        &work.path().join("sidecar.log"),
        &wal,
        prom,
        sink_addr,
        web,
        &args.extra,
    )?;
    let pid = child.0.id();

    let client = reqwest::Client::new();
    let metrics_url = format!("http://{web}/metrics");
    let deadline = started + Duration::from_secs(args.timeout.as_secs());
    let mut read_at = None;
    let mut most_shards = 0.0f64;
    let (cpu, rss, switches, done_at) = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(status)) = child.0.try_wait() {
            let log = std::fs::read_to_string(work.path().join("sidecar.log")).unwrap_or_default();
            bail!("the sidecar exited early ({status}):\n{log}");
        }
        let usage = process_usage(pid);
        let counts_now = scrape(&client, &metrics_url).await;
        if let Some(c) = &counts_now {
            most_shards = most_shards.max(c.shards);
        }
        if read_at.is_none()
            && let Some(c) = &counts_now
            && c.processed >= counts.samples as f64
        {
            read_at = Some(Instant::now());
        }
        if let Some(c) = counts_now
            && c.processed >= counts.samples as f64
            && c.produced <= c.succeeded + c.failed + c.invalid
        {
            println!(
                "sidecar counts: processed {} produced {} accepted {} failed {} not sent (invalid) {}",
                c.processed, c.produced, c.succeeded, c.failed, c.invalid
            );
            let (cpu, rss) = usage.context("reading /proc")?;
            break (cpu, rss, context_switches(pid), Instant::now());
        }
        if Instant::now() > deadline {
            bail!("not done after {}", args.timeout);
        }
    };
    let (first, last) = sink
        .times
        .lock()
        .ok()
        .and_then(|t| *t)
        .context("the sink received nothing")?;
    let wall = done_at - started;
    let points = sink.points.load(Ordering::Relaxed);
    let m = counts.samples as f64 / 1e6;
    println!("sidecar: {}", args.sidecar.display());
    let bytes = sink.bytes.load(Ordering::Relaxed);
    println!(
        "delivered: {points} points in {} requests, {:.2} GB of request bodies ({:.0} bytes per \
         point)",
        sink.requests.load(Ordering::Relaxed),
        bytes as f64 / 1e9,
        bytes as f64 / points.max(1) as f64
    );
    println!(
        "first point after {:.2} s; every WAL sample read after {:.2} s; last point after \
         {:.2} s; all delivered after {:.2} s",
        (first - started).as_secs_f64(),
        read_at.map_or(wall, |t| t - started).as_secs_f64(),
        (last - started).as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "throughput: {:.0} samples/s (WAL samples / time to deliver everything)",
        counts.samples as f64 / wall.as_secs_f64()
    );
    println!("cpu: {cpu:.2} s = {:.3} CPU-s per million samples", cpu / m);
    println!(
        "context switches: {} voluntary, {} involuntary; most shards at once: {most_shards}",
        switches.0, switches.1
    );
    println!(
        "peak RSS: {:.1} MB = {:.0} bytes per series",
        rss as f64 / 1e6,
        rss as f64 / counts.series as f64
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.0.wait();
    if let Some(expected) = expected {
        if points != expected {
            bail!("delivered {points} points, expected {expected} (walcount.json)");
        }
        println!("check: delivered exactly the {expected} points walcount.json expects");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_after_the_separator_replace_the_bench_defaults() {
        let defaults = [
            "--log.level=warn".to_string(),
            "--web.listen-address=127.0.0.1:1".to_string(),
        ];
        let kept = without_overridden(&defaults, &["--log.level".to_string(), "debug".to_string()]);
        assert_eq!(kept, vec![&defaults[1]]);
        let kept = without_overridden(&defaults, &["--log.level=info".to_string()]);
        assert_eq!(kept, vec![&defaults[1]]);
        assert_eq!(without_overridden(&defaults, &[]).len(), 2);
    }
}
