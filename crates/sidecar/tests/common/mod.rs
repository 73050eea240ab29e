//! Helpers shared by the integration tests: child processes that are always stopped, free
//! loopback ports, and an in-process emulator read back through the real Monitoring API.

#![allow(dead_code)]

pub mod fake_prometheus;
pub mod native;
pub mod native_exporter;
pub mod tables;
pub mod tls;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gcm_api::monitoring::metric_service_client::MetricServiceClient;
use gcm_api::monitoring::{
    ListMetricDescriptorsRequest, ListTimeSeriesRequest, TimeInterval, TimeSeries,
    list_time_series_request::TimeSeriesView,
};
use tonic::transport::Channel;

/// The path of a program the test needs, or a failure that says how to get it.
pub fn require_binary(name: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed; run scripts/install-deps.sh (or scripts/test.sh)");
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` until it holds, failing after `timeout`.
pub async fn wait_for(timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET path` on `address` (`host:port`) over plain HTTP/1.1: status code and body, `None` if
/// nothing answers.
pub fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of the sample `name` (without labels) on the `/metrics` page at `address`.
pub fn scrape_value(address: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(address, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A child process killed when dropped, with its output in a log file.
pub struct Child {
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `program` with `args`, stdout and stderr going to `log`.
    pub fn spawn(program: &Path, args: &[&str], log: &Path) -> Child {
        Child::spawn_with_env(program, args, &[], log)
    }

    /// Like [`Child::spawn`], with environment variables changed: `Some(value)` sets one,
    /// `None` removes it.
    pub fn spawn_with_env(
        program: &Path,
        args: &[&str],
        env: &[(&str, Option<&str>)],
        log: &Path,
    ) -> Child {
        let out = File::create(log).unwrap();
        let mut command = Command::new(program);
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Child {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        self.signal("TERM");
    }

    /// Sends SIGTERM and checks that the process exits with status 0 within 20 s.
    pub fn stop_gracefully(&mut self) {
        self.terminate();
        let status = self.wait(Duration::from_secs(20));
        assert_eq!(status, Some(0), "{}", self.log_tail(20));
    }

    /// Sends the signal named `name` (`TERM`, `HUP`, ...).
    pub fn signal(&mut self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit status (None on timeout or death by signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test runs the sidecar binary: the project (also the generic namespace), the
/// emulator, the WAL directory, the fake or real Prometheus and the web address.
pub struct SidecarSetup<'a> {
    pub project: &'a str,
    pub api: SocketAddr,
    pub wal: &'a Path,
    pub prometheus: &'a str,
    pub web: &'a str,
}

impl<'a> SidecarSetup<'a> {
    /// The usual set-up of project `project`.
    pub fn new(
        project: &'a str,
        api: &TestEmulator,
        wal: &'a Path,
        prometheus: &'a str,
        web: &'a str,
    ) -> SidecarSetup<'a> {
        SidecarSetup {
            project,
            api: api.addr,
            wal,
            prometheus,
            web,
        }
    }

    /// Starts the binary with `extra` flags after the usual ones, its output in `log`.
    pub fn spawn(&self, extra: &[&str], log: &Path) -> Child {
        let mut args = vec![
            format!("--stackdriver.project-id={}", self.project),
            format!("--stackdriver.api-address=http://{}/?auth=false", self.api),
            "--stackdriver.generic.location=here".to_string(),
            format!("--stackdriver.generic.namespace={}", self.project),
            format!("--prometheus.wal-directory={}", self.wal.display()),
            format!(
                "--prometheus.api-address={}/",
                self.prometheus.trim_end_matches('/')
            ),
            format!("--web.listen-address={}", self.web),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Child::spawn(
            Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
            &args,
            log,
        )
    }
}

/// An emulator serving on a loopback port for the duration of a test.
pub struct TestEmulator {
    pub addr: SocketAddr,
    pub emulator: gcm_emulator::Emulator,
    _running: gcm_emulator::RunningEmulator,
}

/// Starts the emulator in this process with the default rules, without its periodic log line.
pub async fn start_quiet_emulator() -> TestEmulator {
    start_emulator_with(gcm_emulator::EmulatorConfig {
        summary_interval: None,
        ..gcm_emulator::EmulatorConfig::default()
    })
    .await
}

/// Starts the emulator in this process.
pub async fn start_emulator() -> TestEmulator {
    start_emulator_with(gcm_emulator::EmulatorConfig::default()).await
}

/// Starts the emulator in this process with `config`.
pub async fn start_emulator_with(config: gcm_emulator::EmulatorConfig) -> TestEmulator {
    let emulator = gcm_emulator::Emulator::new(config);
    let running = emulator
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    TestEmulator {
        addr: running.addr,
        emulator,
        _running: running,
    }
}

/// Reads what an emulator holds through the real API.
pub struct EmulatorClient {
    client: MetricServiceClient<Channel>,
    project: String,
}

impl EmulatorClient {
    /// Connects to the emulator at `addr`.
    pub async fn connect(addr: SocketAddr, project: &str) -> EmulatorClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        EmulatorClient {
            client: MetricServiceClient::new(channel),
            project: format!("projects/{project}"),
        }
    }

    /// Every series of every metric type, with all its points.
    pub async fn all_series(&self) -> Vec<TimeSeries> {
        let mut client = self.client.clone();
        let descriptors = client
            .list_metric_descriptors(ListMetricDescriptorsRequest {
                name: self.project.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .metric_descriptors;
        let mut all = Vec::new();
        for d in descriptors {
            let mut page_token = String::new();
            loop {
                let resp = client
                    .list_time_series(ListTimeSeriesRequest {
                        name: self.project.clone(),
                        filter: format!("metric.type = \"{}\"", d.r#type),
                        interval: Some(TimeInterval {
                            end_time: Some(prost_types::Timestamp {
                                seconds: 4_000_000_000,
                                nanos: 0,
                            }),
                            start_time: Some(prost_types::Timestamp {
                                seconds: 0,
                                nanos: 0,
                            }),
                        }),
                        view: TimeSeriesView::Full as i32,
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                all.extend(resp.time_series);
                if resp.next_page_token.is_empty() {
                    break;
                }
                page_token = resp.next_page_token;
            }
        }
        all
    }
}

/// The JSON answer of the Prometheus at `prom` to the instant query `query`.
pub async fn prometheus_query(prom: &str, query: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Timestamps (ms) of every non-NaN sample of the last hour that the Prometheus at `prom` holds
/// for the one series `matchers` (PromQL label matchers) select.
pub async fn prometheus_sample_times(prom: &str, matchers: &[String]) -> Vec<i64> {
    let query = format!("{{{}}}[1h]", matchers.join(","));
    let body = prometheus_query(prom, &query).await;
    let result = body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(result.len(), 1, "{query}: {body}");
    result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v[1].as_str() != Some("NaN"))
        .map(|v| (v[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect()
}
