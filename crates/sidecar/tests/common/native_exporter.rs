//! A scrape target for a real Prometheus: native histograms served at `/metrics` in the protobuf
//! exposition format (varint-delimited `io.prometheus.client.MetricFamily` messages, field
//! numbers of client_model's `metrics.proto`), from a state the test changes between scrapes.
//! Each histogram also carries classic buckets, one of them with an exemplar, since Prometheus
//! 2.42 reads a native histogram's exemplar only from its classic buckets.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_wal::record::{CounterResetHint, Span};
use prost::Message;

use super::native::Observed;

/// The media type Prometheus asks for when it scrapes native histograms.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Summary = 2,
    Untyped = 3,
    Histogram = 4,
    GaugeHistogram = 5,
}

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricFamily {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub help: String,
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

/// `io.prometheus.client.Metric` (histograms only).
#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

/// `io.prometheus.client.Histogram`: classic buckets and the native (exponential) fields.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(uint64, tag = "1")]
    pub sample_count: u64,
    #[prost(double, tag = "2")]
    pub sample_sum: f64,
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(double, tag = "4")]
    pub sample_count_float: f64,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, tag = "7")]
    pub zero_count: u64,
    #[prost(double, tag = "8")]
    pub zero_count_float: f64,
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    #[prost(double, repeated, tag = "11")]
    pub negative_count: Vec<f64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(double, repeated, tag = "14")]
    pub positive_count: Vec<f64>,
}

/// `io.prometheus.client.BucketSpan`.
#[derive(Clone, PartialEq, Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// `io.prometheus.client.Bucket` (a classic bucket).
#[derive(Clone, PartialEq, Message)]
pub struct Bucket {
    #[prost(uint64, tag = "1")]
    pub cumulative_count: u64,
    #[prost(double, tag = "2")]
    pub upper_bound: f64,
    #[prost(message, optional, tag = "3")]
    pub exemplar: Option<Exemplar>,
    #[prost(double, tag = "4")]
    pub cumulative_count_float: f64,
}

/// `io.prometheus.client.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(message, optional, tag = "3")]
    pub timestamp: Option<prost_types::Timestamp>,
}

/// An exemplar of the latest observation: its value, trace and span ids, and time.
#[derive(Debug, Clone)]
pub struct Traced {
    pub value: f64,
    pub trace_id: String,
    pub span_id: String,
    pub at: SystemTime,
}

/// One native histogram the exporter serves.
#[derive(Debug, Clone)]
pub struct NativeFamily {
    pub name: String,
    /// A gauge histogram (`GAUGE_HISTOGRAM`) rather than a counter one (`HISTOGRAM`).
    pub gauge: bool,
    pub labels: Vec<(String, String)>,
    pub observed: Observed,
    /// Every observation counted in `observed`, for the classic buckets.
    pub values: Vec<f64>,
    pub exemplar: Option<Traced>,
}

impl NativeFamily {
    pub fn new(name: &str, gauge: bool, schema: i32, zero_threshold: f64) -> NativeFamily {
        NativeFamily {
            name: name.to_string(),
            gauge,
            labels: Vec::new(),
            observed: Observed::new(schema, zero_threshold),
            values: Vec::new(),
            exemplar: None,
        }
    }

    /// Observes each of `values`; the last one becomes the exemplar.
    pub fn observe(&mut self, values: &[f64]) {
        for &v in values {
            self.observed.observe(v);
            self.values.push(v);
            let n = self.values.len() as u64;
            let seed = self.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
            });
            self.exemplar = Some(Traced {
                value: v,
                trace_id: format!("{seed:016x}{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                span_id: format!("{:016x}", seed.rotate_left(17) ^ n),
                at: SystemTime::now(),
            });
        }
    }

    /// Starts over empty at `schema`, as a restarted client does (the exemplar stays).
    pub fn reset(&mut self, schema: i32) {
        self.observed = Observed::new(schema, self.observed.zero_threshold);
        self.values.clear();
    }

    /// The family as Prometheus reads it.
    pub fn family(&self) -> MetricFamily {
        let kind = if self.gauge {
            MetricType::GaugeHistogram
        } else {
            MetricType::Histogram
        };
        MetricFamily {
            name: self.name.clone(),
            help: format!("Native histogram {} of the end-to-end test.", self.name),
            r#type: Some(kind as i32),
            metric: vec![Metric {
                label: pairs(&self.labels),
                timestamp_ms: None,
                histogram: Some(self.histogram()),
            }],
        }
    }

    /// Native fields from the observations, classic buckets at 1 and +Inf, the exemplar on the
    /// classic bucket its value falls in.
    fn histogram(&self) -> Histogram {
        let h = self.observed.integer(CounterResetHint::Unknown);
        let spans = |s: &[Span]| {
            s.iter()
                .map(|s| BucketSpan {
                    offset: s.offset,
                    length: s.length,
                })
                .collect()
        };
        let below_one = self.values.iter().filter(|v| **v <= 1.0).count() as u64;
        let mut bucket = vec![
            Bucket {
                cumulative_count: below_one,
                upper_bound: 1.0,
                ..Bucket::default()
            },
            Bucket {
                cumulative_count: h.count,
                upper_bound: f64::INFINITY,
                ..Bucket::default()
            },
        ];
        if let Some(e) = &self.exemplar {
            let at = e.at.duration_since(UNIX_EPOCH).unwrap();
            let i = usize::from(e.value > 1.0);
            bucket[i].exemplar = Some(Exemplar {
                label: pairs(&[
                    ("trace_id".to_string(), e.trace_id.clone()),
                    ("span_id".to_string(), e.span_id.clone()),
                ]),
                value: e.value,
                timestamp: Some(prost_types::Timestamp {
                    seconds: at.as_secs() as i64,
                    nanos: at.subsec_nanos() as i32,
                }),
            });
        }
        Histogram {
            sample_count: h.count,
            sample_sum: h.sum,
            bucket,
            schema: Some(h.schema),
            zero_threshold: Some(h.zero_threshold),
            zero_count: h.zero_count,
            negative_span: spans(&h.negative_spans),
            negative_delta: h.negative_deltas,
            positive_span: spans(&h.positive_spans),
            positive_delta: h.positive_deltas,
            ..Histogram::default()
        }
    }
}

fn pairs(labels: &[(String, String)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| LabelPair {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// The body of a scrape: every family, length-delimited.
pub fn encode(families: &[NativeFamily]) -> Vec<u8> {
    let mut body = Vec::new();
    for f in families {
        f.family().encode_length_delimited(&mut body).unwrap();
    }
    body
}

/// The exporter: a thread answering on a loopback port until the test process ends.
pub struct NativeExporter {
    pub addr: SocketAddr,
    families: Arc<Mutex<Vec<NativeFamily>>>,
    scrapes: Arc<AtomicUsize>,
    accept: Arc<Mutex<Option<String>>>,
}

impl NativeExporter {
    /// Serves `families` on a free loopback port.
    pub fn start(families: Vec<NativeFamily>) -> NativeExporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let exporter = NativeExporter {
            addr: listener.local_addr().unwrap(),
            families: Arc::new(Mutex::new(families)),
            scrapes: Arc::new(AtomicUsize::new(0)),
            accept: Arc::new(Mutex::new(None)),
        };
        let (families, scrapes, accept) = (
            exporter.families.clone(),
            exporter.scrapes.clone(),
            exporter.accept.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A broken connection only loses that scrape.
                let _ = answer(stream, &families, &scrapes, &accept);
            }
        });
        exporter
    }

    /// Changes the state the next scrapes see.
    pub fn update(&self, change: impl FnOnce(&mut Vec<NativeFamily>)) {
        change(&mut self.families.lock().unwrap());
    }

    /// How many times `/metrics` was served.
    pub fn scrapes(&self) -> usize {
        self.scrapes.load(Ordering::SeqCst)
    }

    /// The `Accept` header of the latest scrape.
    pub fn last_accept(&self) -> Option<String> {
        self.accept.lock().unwrap().clone()
    }

    /// Waits until `/metrics` was served `n` times, failing after `timeout`.
    pub async fn wait_scrapes(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.scrapes() < n {
            assert!(
                Instant::now() < deadline,
                "scrape {n} did not come within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one request and answers it, closing the connection.
fn answer(
    stream: TcpStream,
    families: &Mutex<Vec<NativeFamily>>,
    scrapes: &AtomicUsize,
    accept: &Mutex<Option<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut accepted = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("accept")
        {
            accepted = Some(value.trim().to_string());
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let mut stream = stream;
    if path != "/metrics" {
        let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return stream.write_all(head.as_bytes());
    }
    let body = {
        let families = families.lock().unwrap();
        let body = encode(&families);
        *accept.lock().unwrap() = accepted;
        scrapes.fetch_add(1, Ordering::SeqCst);
        body
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}
