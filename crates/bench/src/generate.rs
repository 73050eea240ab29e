//! `sidecar-bench generate`: a synthetic benchmark input of any size, so the catch-up benchmark
//! can show how the sidecar's cost grows with the number of series and of samples ([`run`]).
//!
//! Owns the generated WAL and the API answers that go with it. Must never write anything a real
//! Prometheus would not: values are deterministic functions of series ref and scrape number,
//! never NaN, counters never go down.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use prometheus_wal::record::encode::{encode_histogram_samples, encode_samples, encode_series};
use prometheus_wal::record::{Histogram, RecordType, RefHistogramSample, Span};
use prometheus_wal::segment::{FRAGMENT_HEADER_SIZE, PAGE_SIZE};
use prometheus_wal::writer::SegmentWriter;
use prometheus_wal::{Codec, Label, RefSample, RefSeries};
use serde_json::{Value, json};

/// Prometheus's default segment size.
const SEGMENT_SIZE: u64 = 128 << 20;
/// Most series in one series record (Prometheus writes a scrape's new series in one record;
/// splitting bounds the generator's memory for very large targets and changes nothing for a
/// reader).
pub const SERIES_PER_RECORD: usize = 10_000;
/// Oldest allowed first scrape, relative to now: leaves the benchmark hours to run before the
/// sidecar's 25 h age limit refuses points.
const MAX_SPAN: Duration = Duration::from_secs(12 * 3600);

/// `sidecar-bench generate` flags.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Series in total over all targets, the 5 scrape report series of each target included.
    #[arg(long)]
    series: u64,
    /// Samples of every series (scrapes of every target).
    #[arg(long, default_value_t = 10)]
    samples_per_series: u64,
    /// Scrape targets; the series are spread evenly over them.
    #[arg(long, default_value_t = 100)]
    targets: u64,
    /// Output directory (created; an existing `wal/` in it is emptied first).
    #[arg(long)]
    out: PathBuf,
    /// Time between two scrapes of a target.
    #[arg(long, default_value = "15s")]
    scrape_interval: humantime::Duration,
    /// Native histograms (schema 3, 20 populated buckets, in integer histogram records) instead
    /// of the classic ones.
    #[arg(long)]
    native_histograms: bool,
    /// One histogram per this many label blocks (of 6 other series each).
    #[arg(long, default_value_t = HISTOGRAM_EVERY)]
    histogram_every: u64,
}

/// The scrape report series Prometheus adds to every target, in its order.
pub(crate) const REPORT: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Finite bucket bounds of the generated histograms (the client libraries' defaults).
const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of a histogram, `+Inf` included.
const BUCKETS: usize = BOUNDS.len() + 1;
/// Series of one histogram: its buckets, `_sum` and `_count`.
const HISTOGRAM_SERIES: u64 = BUCKETS as u64 + 2;
/// One histogram per this many label blocks (see [`TargetPlan::new`]).
const HISTOGRAM_EVERY: u64 = 16;
/// Label blocks per metric family before the next block starts new families (`svc<g>_…`).
const BLOCKS_PER_FAMILY: u64 = 64;

const JOBS: [&str; 4] = ["api", "node", "db", "cache"];
const ZONES: [&str; 3] = ["us-east1-b", "us-east1-c", "us-east1-d"];

/// How one generated series' values move.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// One of [`REPORT`] (its index).
    Report(u8),
    Gauge,
    Counter,
    /// Bucket `i` (the last is `+Inf`) of the histogram whose first series has ref `first`.
    Bucket {
        first: u64,
        i: u8,
    },
    Sum {
        first: u64,
    },
    Count {
        first: u64,
    },
    /// A native histogram (one series; its samples are in histogram records).
    Native,
}

/// A metric family's metadata as a target reports it.
#[derive(Debug, Clone, Copy)]
struct Family {
    metric_type: &'static str,
    help: &'static str,
}

/// The series of one target: refs `first..first + kinds.len()`.
pub(crate) struct TargetPlan {
    job: &'static str,
    instance: String,
    zone: &'static str,
    pub(crate) first: u64,
    pub(crate) kinds: Vec<Kind>,
    /// Label sets, in ref order; emptied once written.
    pub(crate) labels: Vec<Vec<Label>>,
    /// Families by name.
    families: BTreeMap<String, Family>,
    /// Scrape offset within the interval (ms).
    pub(crate) offset_ms: i64,
}

fn label(name: &str, value: impl Into<String>) -> Label {
    Label {
        name: name.to_string(),
        value: value.into(),
    }
}

impl TargetPlan {
    /// Target `t` with `series` series (at least the 5 report series), refs from `first`.
    ///
    /// After the report series come label blocks `k = 0, 1, …`, each 3 gauges and 3 counters
    /// with `k` in a label value, and every `every`th block a histogram (native when `native`);
    /// blocks `64 g … 64 g + 63` use families prefixed `svc<g>_`, so a large target also has many
    /// families (and many metadata entries), as real exporters do.
    pub(crate) fn new(
        t: u64,
        series: u64,
        first: u64,
        offset_ms: i64,
        (native, every): (bool, u64),
    ) -> TargetPlan {
        let mut plan = TargetPlan {
            job: JOBS[(t % JOBS.len() as u64) as usize],
            instance: format!("10.{}.{}.{}:9100", (t >> 16) & 255, (t >> 8) & 255, t & 255),
            zone: ZONES[(t % ZONES.len() as u64) as usize],
            first,
            kinds: Vec::with_capacity(series as usize),
            labels: Vec::with_capacity(series as usize),
            families: BTreeMap::new(),
            offset_ms,
        };
        for (i, name) in REPORT.iter().enumerate() {
            plan.push(name, Vec::new(), Kind::Report(i as u8), None);
        }
        let mut k = 0u64;
        while (plan.kinds.len() as u64) < series {
            let left = |p: &TargetPlan| series - p.kinds.len() as u64;
            let g = k / BLOCKS_PER_FAMILY;
            let family = |base: &str| {
                if g == 0 {
                    base.to_string()
                } else {
                    format!("svc{g}_{base}")
                }
            };
            let handler = format!("/api/v1/items/{k}");
            let gauge = Family {
                metric_type: "gauge",
                help: "A synthetic gauge.",
            };
            let counter = Family {
                metric_type: "counter",
                help: "A synthetic counter.",
            };
            if native && k.is_multiple_of(every) {
                let name = family("http_request_duration_seconds");
                let hist = Family {
                    metric_type: "histogram",
                    help: "A synthetic request latency native histogram.",
                };
                let labels = vec![label("handler", handler.clone()), label("method", "GET")];
                plan.push(&name, labels, Kind::Native, Some((name.as_str(), hist)));
            } else if k.is_multiple_of(every) && left(&plan) >= HISTOGRAM_SERIES {
                let name = family("http_request_duration_seconds");
                let hist = Family {
                    metric_type: "histogram",
                    help: "A synthetic request latency histogram.",
                };
                let base = vec![label("handler", handler.clone()), label("method", "GET")];
                let first = plan.next_ref();
                for i in 0..BUCKETS {
                    let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                    let mut l = base.clone();
                    l.push(label("le", le));
                    let kind = Kind::Bucket { first, i: i as u8 };
                    plan.push(
                        &format!("{name}_bucket"),
                        l,
                        kind,
                        Some((name.as_str(), hist)),
                    );
                }
                let sum = Kind::Sum { first };
                plan.push(
                    &format!("{name}_sum"),
                    base.clone(),
                    sum,
                    Some((name.as_str(), hist)),
                );
                let count = Kind::Count { first };
                plan.push(
                    &format!("{name}_count"),
                    base,
                    count,
                    Some((name.as_str(), hist)),
                );
            }
            let block: [(String, Vec<Label>, Kind, Family); 6] = [
                (
                    family("app_queue_depth"),
                    vec![label("queue", format!("q{k}"))],
                    Kind::Gauge,
                    gauge,
                ),
                (
                    family("node_filesystem_avail_bytes"),
                    vec![
                        label("device", format!("/dev/sd{k}")),
                        label("fstype", "ext4"),
                        label("mountpoint", format!("/data/{k}")),
                    ],
                    Kind::Gauge,
                    gauge,
                ),
                (
                    family("process_threads"),
                    vec![label("pool", format!("p{k}"))],
                    Kind::Gauge,
                    gauge,
                ),
                (
                    family("http_requests_total"),
                    vec![
                        label("code", "200"),
                        label("handler", handler.clone()),
                        label("method", "GET"),
                    ],
                    Kind::Counter,
                    counter,
                ),
                (
                    family("http_requests_total"),
                    vec![
                        label("code", "500"),
                        label("handler", handler),
                        label("method", "POST"),
                    ],
                    Kind::Counter,
                    counter,
                ),
                (
                    family("node_network_receive_bytes_total"),
                    vec![label("device", format!("eth{k}"))],
                    Kind::Counter,
                    counter,
                ),
            ];
            for (name, labels, kind, fam) in block {
                if left(&plan) == 0 {
                    break;
                }
                plan.push(&name, labels, kind, Some((name.as_str(), fam)));
            }
            k += 1;
        }
        plan
    }

    fn next_ref(&self) -> u64 {
        self.first + self.kinds.len() as u64
    }

    /// Adds a series: `extra` plus the target's labels, sorted as Prometheus keeps them.
    fn push(
        &mut self,
        name: &str,
        mut labels: Vec<Label>,
        kind: Kind,
        family: Option<(&str, Family)>,
    ) {
        labels.extend([
            label("__name__", name),
            label("env", "prod"),
            label("instance", self.instance.clone()),
            label("job", self.job),
            label("zone", self.zone),
        ]);
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        self.kinds.push(kind);
        self.labels.push(labels);
        if let Some((family, f)) = family
            && !self.families.contains_key(family)
        {
            self.families.insert(family.to_string(), f);
        }
    }

    /// The target's labels, as `/api/v1/targets` and the metadata entries show them.
    fn target_labels(&self) -> Value {
        json!({"env": "prod", "instance": self.instance, "job": self.job, "zone": self.zone})
    }
}

/// A 64-bit mix (splitmix64's finaliser): values that look random but are reproducible.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Per-bucket observations per scrape of the histogram whose first ref is `first` (each 0 to 3,
/// never all 0).
fn bucket_weights(first: u64) -> [u64; BUCKETS] {
    let h = mix(first);
    let mut w = [0u64; BUCKETS];
    for (i, w) in w.iter_mut().enumerate() {
        *w = (h >> (4 * i)) & 3;
    }
    w[(first % BUCKETS as u64) as usize] += 1;
    w
}

/// The value of series `r` of kind `kind` at scrape `scrape`; `scraped` is the number of
/// samples the target's scrape returned (for the report series).
pub(crate) fn value(r: u64, kind: Kind, scrape: u64, scraped: u64) -> f64 {
    match kind {
        Kind::Report(0) => 1.0,
        Kind::Report(1) => 0.001 + (mix(r ^ (scrape << 40)) % 1000) as f64 / 1e5,
        Kind::Report(2 | 3) => scraped as f64,
        Kind::Report(_) => {
            if scrape == 0 {
                scraped as f64
            } else {
                0.0
            }
        }
        Kind::Gauge => (mix(r ^ (scrape << 40)) % 1_000_000) as f64 / 100.0,
        Kind::Counter => {
            let h = mix(r);
            let start = (h % 100_000) as f64;
            let rate = ((h >> 20) % 4096 + 1) as f64 / 4.0;
            start + rate * scrape as f64
        }
        Kind::Bucket { first, i } => {
            let w = bucket_weights(first);
            let below: u64 = w[..=i as usize].iter().sum();
            (histogram_scale(first, scrape) * below) as f64
        }
        Kind::Count { first } => {
            let total: u64 = bucket_weights(first).iter().sum();
            (histogram_scale(first, scrape) * total) as f64
        }
        // Not a float series: see [`native_value`].
        Kind::Native => 0.0,
        Kind::Sum { first } => {
            let w = bucket_weights(first);
            let per_scrape: f64 = w
                .iter()
                .enumerate()
                .map(|(i, &n)| n as f64 * BOUNDS.get(i).map_or(20.0, |b| b * 0.7))
                .sum();
            per_scrape * histogram_scale(first, scrape) as f64
        }
    }
}

/// Populated buckets of a generated native histogram.
const NATIVE_BUCKETS: u32 = 20;

/// The native histogram of series `r` at scrape `scrape`: schema 3, 20 consecutive populated
/// buckets from an offset of its own, counts growing with the scrapes, as a client library's
/// integer histogram (spans and deltas).
pub(crate) fn native_value(r: u64, scrape: u64) -> Histogram {
    let h = mix(r);
    let scale = histogram_scale(r, scrape);
    let counts: Vec<i64> = (0..NATIVE_BUCKETS as u64)
        .map(|j| (scale * (1 + ((h >> (2 * j)) & 3))) as i64)
        .collect();
    let mut previous = 0;
    let positive_deltas = counts
        .iter()
        .map(|c| {
            let d = c - previous;
            previous = *c;
            d
        })
        .collect();
    let zero_count = scale;
    let count = counts.iter().sum::<i64>() as u64 + zero_count;
    Histogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count,
        count,
        sum: count as f64 * 0.042,
        positive_spans: vec![Span {
            offset: -40 + (h % 16) as i32,
            length: NATIVE_BUCKETS,
        }],
        positive_deltas,
        ..Histogram::default()
    }
}

/// How many scrapes' worth of observations a histogram holds at scrape `scrape`.
fn histogram_scale(first: u64, scrape: u64) -> u64 {
    1 + first % 50 + scrape
}

/// Writes segments, rolling to the next one as Prometheus does: when a record's stored bytes
/// do not fit in what is left of the current segment.
pub(crate) struct Wal {
    dir: PathBuf,
    segment: u64,
    writer: SegmentWriter<File>,
    /// Sizes of the segments written so far, the current one excluded.
    done: Vec<(String, u64)>,
    records: u64,
}

fn segment_name(n: u64) -> String {
    format!("{n:08}")
}

/// Unbuffered: each record reaches the file when it is logged, as with Prometheus (a live
/// writer's readers see it at once; the writer already writes whole pages at a time).
fn open_segment(dir: &Path, n: u64) -> anyhow::Result<SegmentWriter<File>> {
    let file = File::create(dir.join(segment_name(n)))?;
    Ok(SegmentWriter::new(file, Codec::Snappy))
}

impl Wal {
    pub(crate) fn create(dir: &Path) -> anyhow::Result<Wal> {
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment: 0,
            writer: open_segment(dir, 0)?,
            done: Vec::new(),
            records: 0,
        })
    }

    /// Record bytes that still fit in the current segment (fragment headers accounted for).
    fn room(&self) -> u64 {
        let (page, header) = (PAGE_SIZE as u64, FRAGMENT_HEADER_SIZE as u64);
        let offset = self.writer.offset();
        let (pages, full) = (SEGMENT_SIZE / page, offset / page);
        if full >= pages {
            return 0;
        }
        (page - offset % page).saturating_sub(header) + (page - header) * (pages - full - 1)
    }

    pub(crate) fn log(&mut self, record: &[u8]) -> anyhow::Result<()> {
        let room = self.room();
        // The writer stores a record raw unless compression makes it smaller: the raw length
        // bounds the stored one, and compressing to know is only needed near the end.
        if record.len() as u64 > room {
            let compressed = snap::raw::Encoder::new().compress_vec(record)?;
            if compressed.len().min(record.len()) as u64 > room {
                self.roll()?;
            }
        }
        self.writer.log(record)?;
        self.records += 1;
        Ok(())
    }

    fn roll(&mut self) -> anyhow::Result<()> {
        let next = open_segment(&self.dir, self.segment + 1)?;
        let finished = std::mem::replace(&mut self.writer, next);
        let size = finished.offset();
        let size = size.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
        finished.close()?;
        self.done.push((segment_name(self.segment), size));
        self.segment += 1;
        Ok(())
    }

    /// Pads and closes the last segment; returns every segment's name and size.
    pub(crate) fn finish(mut self) -> anyhow::Result<(Vec<(String, u64)>, u64)> {
        let size = self.writer.offset().div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
        self.writer.close()?;
        self.done.push((segment_name(self.segment), size));
        Ok((self.done, self.records))
    }
}

fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn write_json(path: &Path, value: &Value, pretty: bool) -> anyhow::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    if pretty {
        serde_json::to_writer_pretty(&mut out, value)?;
    } else {
        serde_json::to_writer(&mut out, value)?;
    }
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Target `t` of `targets` sharing `series` series, its refs from `first`, its scrapes offset
/// into the interval by its rank (so that scrapes are spread evenly, as Prometheus spreads them);
/// `histograms` says whether they are native and how many label blocks have one.
pub(crate) fn planned_target(
    t: u64,
    series: u64,
    targets: u64,
    interval_ms: i64,
    first: u64,
    histograms: (bool, u64),
) -> TargetPlan {
    let n = series / targets + u64::from(t < series % targets);
    let offset_ms = (t as i64 * interval_ms) / targets as i64;
    TargetPlan::new(t, n, first, offset_ms, histograms)
}

/// Logs what Prometheus logs for scrapes: a target's series records at its first scrape, then a
/// samples record per scrape. Keeps the plans (without their label sets, once logged).
#[derive(Default)]
pub(crate) struct Scraper {
    pub(crate) plans: Vec<TargetPlan>,
    buf: Vec<u8>,
    refs: Vec<RefSeries>,
    batch: Vec<RefSample>,
    natives: Vec<RefHistogramSample>,
}

impl Scraper {
    /// Logs the series records of a new target (at most [`SERIES_PER_RECORD`] series each) and
    /// keeps its plan as the next target.
    pub(crate) fn log_series(&mut self, wal: &mut Wal, mut plan: TargetPlan) -> anyhow::Result<()> {
        let mut r = plan.first;
        let mut labels = std::mem::take(&mut plan.labels).into_iter().peekable();
        while labels.peek().is_some() {
            self.refs.clear();
            for l in labels.by_ref().take(SERIES_PER_RECORD) {
                self.refs.push(RefSeries {
                    series_ref: r,
                    labels: l,
                });
                r += 1;
            }
            encode_series(&self.refs, &mut self.buf);
            wal.log(&self.buf)?;
        }
        self.refs.clear();
        self.plans.push(plan);
        Ok(())
    }

    /// Logs scrape number `scrape` of target `t` at time `ts` (ms); returns its sample count.
    pub(crate) fn log_scrape(
        &mut self,
        wal: &mut Wal,
        t: usize,
        scrape: u64,
        ts: i64,
    ) -> anyhow::Result<u64> {
        let Some(plan) = self.plans.get(t) else {
            bail!("target {t} has not been logged");
        };
        let scraped = plan.kinds.len() as u64 - REPORT.len() as u64;
        self.batch.clear();
        self.natives.clear();
        for (i, &kind) in plan.kinds.iter().enumerate() {
            let series_ref = plan.first + i as u64;
            if let Kind::Native = kind {
                self.natives.push(RefHistogramSample {
                    series_ref,
                    t: ts,
                    st: 0,
                    h: native_value(series_ref, scrape),
                });
                continue;
            }
            self.batch.push(RefSample {
                series_ref,
                t: ts,
                v: value(series_ref, kind, scrape, scraped),
            });
        }
        encode_samples(&self.batch, &mut self.buf);
        wal.log(&self.buf)?;
        // A commit's histograms follow its float samples.
        if !self.natives.is_empty() {
            encode_histogram_samples(RecordType::HistogramSamples, &self.natives, &mut self.buf);
            wal.log(&self.buf)?;
        }
        Ok((self.batch.len() + self.natives.len()) as u64)
    }
}

/// Writes `targets.json` and `metadata-all.json` for `plans` (the `/api/v1/targets` and
/// unfiltered `/api/v1/targets/metadata` answers); `last_scrape` gives a target's last scrape
/// time (ms). Returns the number of metadata entries.
pub(crate) fn write_api_answers(
    out: &Path,
    plans: &[TargetPlan],
    interval: Duration,
    last_scrape: impl Fn(&TargetPlan) -> i64,
) -> anyhow::Result<usize> {
    let interval_text = humantime::format_duration(interval).to_string();
    let active: Vec<Value> = plans
        .iter()
        .map(|p| {
            json!({
                "discoveredLabels": {
                    "__address__": p.instance,
                    "__metrics_path__": "/metrics",
                    "__scheme__": "http",
                    "__scrape_interval__": interval_text,
                    "__scrape_timeout__": interval_text,
                    "env": "prod",
                    "job": p.job,
                    "zone": p.zone,
                },
                "labels": p.target_labels(),
                "scrapePool": p.job,
                "scrapeUrl": format!("http://{}/metrics", p.instance),
                "globalUrl": format!("http://{}/metrics", p.instance),
                "lastError": "",
                "lastScrape": rfc3339_ms(last_scrape(p)),
                "lastScrapeDuration": 0.002,
                "health": "up",
                "scrapeInterval": interval_text,
                "scrapeTimeout": interval_text,
            })
        })
        .collect();
    write_json(
        &out.join("targets.json"),
        &json!({"status": "success", "data": {"activeTargets": active, "droppedTargets": []}}),
        false,
    )?;
    let metadata: Vec<Value> = plans
        .iter()
        .flat_map(|p| {
            p.families.iter().map(|(name, f)| {
                json!({
                    "target": p.target_labels(),
                    "metric": name,
                    "type": f.metric_type,
                    "help": f.help,
                    "unit": "",
                })
            })
        })
        .collect();
    let entries = metadata.len();
    write_json(
        &out.join("metadata-all.json"),
        &json!({"status": "success", "data": metadata}),
        false,
    )?;
    Ok(entries)
}

/// Runs `sidecar-bench generate`: writes, into one directory, what `sidecar-bench --input`
/// reads: `wal/` (segments as Prometheus 2.42 writes them: snappy-compressed records, rolled
/// before a record would cross 128 MiB, the last page of each segment padded), `targets.json` and
/// `metadata-all.json` (the `/api/v1/targets` and unfiltered `/api/v1/targets/metadata` answers
/// the replay server serves), and `walcount.json` (counts, parameters, and the number of points
/// the sidecar must deliver).
///
/// The WAL looks like `T` targets scraped `M` times at a fixed interval: per scrape of a target,
/// one samples record (all of its series at the scrape's timestamp), preceded at its first
/// scrape by the series records of its new series (at most [`SERIES_PER_RECORD`] per record).
/// Each target has the 5 scrape report series (`up`, `scrape_*`) and a mix of gauges, counters
/// (monotonic) and classic histograms (`_bucket` per bound, `_sum`, `_count`, adjacent in each
/// scrape, bucket counts adding up). The last scrape is just before the time of generation, so
/// the input must be used within hours: the sidecar refuses points older than 25 h.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (series, samples, targets) = (args.series, args.samples_per_series, args.targets);
    ensure!(targets > 0, "--targets must be at least 1");
    ensure!(samples > 0, "--samples-per-series must be at least 1");
    ensure!(
        series >= targets * (REPORT.len() as u64 + 1),
        "--series must be at least {} per target (5 report series and one more)",
        REPORT.len() + 1
    );
    let interval = Duration::from(args.scrape_interval);
    let interval_ms = i64::try_from(interval.as_millis())?;
    ensure!(interval_ms > 0, "--scrape-interval must be at least 1ms");
    let span = interval * u32::try_from(samples)?;
    if span > MAX_SPAN {
        bail!(
            "{samples} scrapes every {} span {}: more than {} before now, too close to the \
             sidecar's 25 h age limit",
            args.scrape_interval,
            humantime::format_duration(span),
            humantime::format_duration(MAX_SPAN)
        );
    }

    let wal_dir = args.out.join("wal");
    fs::create_dir_all(&wal_dir).with_context(|| format!("creating {}", wal_dir.display()))?;
    for e in fs::read_dir(&wal_dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            fs::remove_file(e.path())?;
        } else if e.file_name().to_string_lossy().starts_with("checkpoint.") {
            fs::remove_dir_all(e.path())?;
        }
    }

    // The last scrape of the last target is just before now.
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let base_ms = now_ms - i64::try_from(samples)? * interval_ms;

    let mut next_ref = 1u64;
    let mut wal = Wal::create(&wal_dir)?;
    let mut scraper = Scraper::default();
    let mut total_samples = 0u64;
    for scrape in 0..samples {
        for t in 0..targets {
            if scrape == 0 {
                // Built at the target's first scrape, so only one target's label sets are ever
                // held in memory.
                let plan = planned_target(
                    t,
                    series,
                    targets,
                    interval_ms,
                    next_ref,
                    (args.native_histograms, args.histogram_every.max(1)),
                );
                next_ref += plan.kinds.len() as u64;
                scraper.log_series(&mut wal, plan)?;
            }
            let ts = base_ms + scrape as i64 * interval_ms + scraper.plans[t as usize].offset_ms;
            total_samples += scraper.log_scrape(&mut wal, t as usize, scrape, ts)?;
        }
    }
    let plans = scraper.plans;
    let (segments, records) = wal.finish()?;
    let wal_bytes: u64 = segments.iter().map(|(_, s)| s).sum();

    // What the sidecar must deliver: a point per sample of gauges, none for the first sample of
    // counters and histograms (their baseline), and a histogram's parts make one point.
    let (mut gauges, mut counters, mut histograms, mut parts) = (0u64, 0u64, 0u64, 0u64);
    let mut natives = 0u64;
    for plan in &plans {
        for kind in &plan.kinds {
            match kind {
                Kind::Report(_) | Kind::Gauge => gauges += 1,
                Kind::Counter => counters += 1,
                Kind::Count { .. } => {
                    histograms += 1;
                    parts += 1;
                }
                Kind::Bucket { .. } | Kind::Sum { .. } => parts += 1,
                Kind::Native => natives += 1,
            }
        }
    }
    let expected_points = gauges * samples + (counters + histograms + natives) * (samples - 1);

    let metadata_entries = write_api_answers(&args.out, &plans, interval, |p| {
        base_ms + (samples as i64 - 1) * interval_ms + p.offset_ms
    })?;

    let min_t = base_ms;
    let max_t =
        base_ms + (samples as i64 - 1) * interval_ms + plans.last().map_or(0, |p| p.offset_ms);
    let series_records = plans
        .iter()
        .map(|p| p.kinds.len().div_ceil(SERIES_PER_RECORD) as u64)
        .sum::<u64>();
    write_json(
        &args.out.join("walcount.json"),
        &json!({
            "generated_by": "sidecar-bench generate",
            "generated_at": rfc3339_ms(now_ms),
            "parameters": {
                "series": series,
                "samples_per_series": samples,
                "targets": targets,
                "scrape_interval_ms": interval_ms,
            },
            "wal_dir": "wal",
            "checkpoints": [],
            "segments": segments.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "segment_bytes": segments.iter().cloned().collect::<BTreeMap<_, _>>(),
            "bytes": wal_bytes,
            "series": next_ref - 1,
            "samples": total_samples,
            "float_samples": total_samples - natives * samples,
            "native_histogram_samples": natives * samples,
            "records": records,
            "records_by_type": {
                "series": series_records,
                "samples": samples * targets,
                "histogram_samples": records - series_records - samples * targets,
            },
            "series_by_kind": {
                "gauge": gauges,
                "counter": counters,
                "histogram_part": parts,
            },
            "histograms": histograms,
            "native_histograms": natives,
            "metadata_entries": metadata_entries,
            "min_t": min_t,
            "max_t": max_t,
            "min_t_utc": rfc3339_ms(min_t),
            "max_t_utc": rfc3339_ms(max_t),
            "expected_points": expected_points,
        }),
        true,
    )?;
    println!(
        "generated {}: {} series ({gauges} gauge, {counters} counter, {histograms} histograms \
         in {parts} series, {natives} native histograms) on {targets} targets, {total_samples} samples, {} segments, \
         {wal_bytes} WAL bytes, {metadata_entries} metadata entries, {expected_points} points \
         to deliver; {:.1} s",
        args.out.display(),
        next_ref - 1,
        segments.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_wal::{Follower, RecordType, decode_samples, decode_series, record_type};
    use std::collections::HashMap;

    #[test]
    fn native_histograms_replace_classic_ones_and_grow_every_scrape() {
        use prometheus_wal::record::decode_histogram_samples;
        let dir = tempfile::tempdir().unwrap();
        let args = GenerateArgs {
            series: 2_000,
            samples_per_series: 3,
            targets: 2,
            out: dir.path().to_path_buf(),
            scrape_interval: "15s".parse().unwrap(),
            native_histograms: true,
            histogram_every: HISTOGRAM_EVERY,
        };
        run(&args).unwrap();
        let mut follower = Follower::open_to_end(dir.path().join("wal")).unwrap();
        let (mut series, mut natives) = (Vec::new(), Vec::new());
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut last: HashMap<u64, u64> = HashMap::new();
        let mut histogram_samples = 0;
        while let Some(record) = follower.next_record().unwrap() {
            match record_type(record.data) {
                RecordType::Series => {
                    decode_series(record.data, &mut series).unwrap();
                    for s in &series {
                        let name = s.labels.iter().find(|l| l.name == "__name__").unwrap();
                        assert!(!name.value.ends_with("_bucket"), "{name:?}");
                        names.insert(s.series_ref, name.value.clone());
                    }
                }
                RecordType::HistogramSamples => {
                    decode_histogram_samples(record.data, &mut natives).unwrap();
                    for s in &natives {
                        assert!(names[&s.series_ref].ends_with("_seconds"));
                        assert_eq!(s.h.positive_deltas.len(), NATIVE_BUCKETS as usize);
                        if let Some(count) = last.insert(s.series_ref, s.h.count) {
                            assert!(s.h.count > count);
                        }
                        histogram_samples += 1;
                    }
                }
                RecordType::Samples => {}
                other => panic!("unexpected record {other:?}"),
            }
        }
        let count: Value =
            serde_json::from_slice(&fs::read(dir.path().join("walcount.json")).unwrap()).unwrap();
        let n = count["native_histograms"].as_u64().unwrap();
        assert!(n > 0);
        assert_eq!(histogram_samples, n * 3);
        assert_eq!(count["native_histogram_samples"], n * 3);
        assert_eq!(count["series_by_kind"]["histogram_part"], 0);
    }

    #[test]
    fn generated_wal_decodes_to_the_planned_series_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let args = GenerateArgs {
            series: 1_000,
            samples_per_series: 3,
            targets: 4,
            out: dir.path().to_path_buf(),
            scrape_interval: "15s".parse().unwrap(),
            native_histograms: false,
            histogram_every: HISTOGRAM_EVERY,
        };
        run(&args).unwrap();
        let mut follower = Follower::open_to_end(dir.path().join("wal")).unwrap();
        let (mut series, mut samples) = (Vec::new(), Vec::new());
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut last: HashMap<u64, (i64, f64)> = HashMap::new();
        let mut n = 0;
        while let Some(record) = follower.next_record().unwrap() {
            match record_type(record.data) {
                RecordType::Series => {
                    decode_series(record.data, &mut series).unwrap();
                    for s in &series {
                        assert!(s.labels.windows(2).all(|w| w[0].name < w[1].name));
                        let name = s.labels.iter().find(|l| l.name == "__name__").unwrap();
                        names.insert(s.series_ref, name.value.clone());
                    }
                }
                RecordType::Samples => {
                    decode_samples(record.data, &mut samples).unwrap();
                    n += samples.len();
                    for s in &samples {
                        let name = &names[&s.series_ref];
                        if let Some((t, v)) = last.insert(s.series_ref, (s.t, s.v)) {
                            assert!(s.t > t);
                            if name.ends_with("_total") || name.ends_with("_count") {
                                assert!(s.v > v, "{name} went from {v} to {}", s.v);
                            }
                        }
                    }
                }
                other => panic!("unexpected record {other:?}"),
            }
        }
        assert_eq!(names.len(), 1_000);
        assert_eq!(n, 3_000);
        let count: Value =
            serde_json::from_slice(&fs::read(dir.path().join("walcount.json")).unwrap()).unwrap();
        assert_eq!(count["samples"], 3_000);
        let (g, c, h) = (
            count["series_by_kind"]["gauge"].as_u64().unwrap(),
            count["series_by_kind"]["counter"].as_u64().unwrap(),
            count["histograms"].as_u64().unwrap(),
        );
        assert!(g > 0 && c > 0 && h > 0);
        assert_eq!(count["expected_points"], g * 3 + (c + h) * 2);
        let recorded = crate::replay::Recorded::load(dir.path()).unwrap();
        assert!(!recorded.metadata.is_empty());
        let targets: Value = serde_json::from_slice(&recorded.targets).unwrap();
        assert_eq!(
            targets["data"]["activeTargets"].as_array().unwrap().len(),
            4
        );
    }

    #[test]
    fn histogram_buckets_add_up_to_the_count() {
        for first in [1u64, 77, 12_345] {
            for scrape in 0..3 {
                let inf = value(
                    first,
                    Kind::Bucket {
                        first,
                        i: BUCKETS as u8 - 1,
                    },
                    scrape,
                    0,
                );
                assert_eq!(inf, value(first, Kind::Count { first }, scrape, 0));
                let buckets: Vec<f64> = (0..BUCKETS as u8)
                    .map(|i| value(first, Kind::Bucket { first, i }, scrape, 0))
                    .collect();
                assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
                assert!(inf > 0.0);
            }
        }
    }

    #[test]
    fn segments_roll_before_a_record_would_cross_128_mib() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path()).unwrap();
        // Incompressible records of 1 MiB: 127 fit in a 128 MiB segment with its headers.
        let mut x = 1u64;
        let record: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x = mix(x);
                x as u8
            })
            .collect();
        for _ in 0..130 {
            wal.log(&record).unwrap();
        }
        let (segments, records) = wal.finish().unwrap();
        assert_eq!(records, 130);
        assert_eq!(segments.len(), 2);
        assert!(segments[0].1 <= SEGMENT_SIZE);
        let on_disk = fs::metadata(dir.path().join("00000000")).unwrap().len();
        assert_eq!(on_disk, segments[0].1);
        let mut follower = Follower::open_to_end(dir.path()).unwrap();
        let mut n = 0;
        while let Some(r) = follower.next_record().unwrap() {
            assert_eq!(r.data, &record[..]);
            n += 1;
        }
        assert_eq!(n, 130);
    }
}
