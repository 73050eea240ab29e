//! A local, in-memory Google Cloud Monitoring API that enforces the real API's rules.
//!
//! The emulator serves `google.monitoring.v3.MetricService` over gRPC (plaintext, no
//! authentication) and keeps every point it accepts in memory. Its purpose is that a request it
//! accepts is one Google would accept, and a request it refuses is refused with the status code
//! and the kind of message Google gives, including the `CreateTimeSeriesSummary` of partial
//! failures. Tests start it in-process on `127.0.0.1:0`; the `gcm-emulator` binary serves it
//! from the command line and its `top` subcommand shows what arrived.
//!
//! ```no_run
//! use gcm_emulator::{Emulator, EmulatorConfig};
//! # async fn run() -> std::io::Result<()> {
//! let emulator = Emulator::new(EmulatorConfig { max_point_age: None, ..Default::default() });
//! let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await?;
//! // point a client at http://{running.addr} ...
//! let accepted = emulator.store().stats().points_accepted;
//! running.shutdown().await?;
//! # let _ = accepted;
//! # Ok(())
//! # }
//! ```
//!
//! # Rules enforced by `CreateTimeSeries`
//!
//! Request level (the whole request is refused with `INVALID_ARGUMENT`, nothing is written):
//! `name` is `projects/<id>`; 1 to 200 series.
//!
//! Series level (the series is refused, the others are written, and the answer is
//! `INVALID_ARGUMENT` with a `CreateTimeSeriesSummary`; see [`EmulatorConfig::field_errors_reject_request`]
//! for the older whole-request behaviour):
//! * no series twice in one request (same metric type and labels, same resource type and labels);
//! * a metric type `<writable domain>/<path>` (`custom.`, `external.`, `workload.` or
//!   `prometheus.googleapis.com`; colons only under `prometheus.googleapis.com`);
//! * label keys `[A-Za-z][A-Za-z0-9_]*` of at most 100 characters, values of at most 1024 bytes;
//! * a monitored resource with a type; exactly one point with a value;
//! * GAUGE or CUMULATIVE (DELTA cannot be auto-created); BOOL, INT64, DOUBLE or DISTRIBUTION
//!   values agreeing with the declared value type;
//! * distributions per `google.api.Distribution` (see `distribution.rs`), at most 200 buckets;
//! * GAUGE: no start time or start == end; CUMULATIVE: start < end;
//! * end time within [now − 25 h, now + 5 min] (configurable);
//! * kind and value type equal to the metric descriptor's (the first accepted write creates it);
//!   at most 30 label keys per descriptor (100 under `prometheus.googleapis.com`);
//! * end times strictly increasing per series; a cumulative start time equal to the previous one
//!   or at/after the previous end; ends at least the sampling period (5 s) apart.
//!
//! # Fault injection
//!
//! [`EmulatorConfig`] can make calls fail as the real API sometimes does: a share of calls
//! answered with a chosen code (`fault_ratio`, `fault_code`), a share of series refused as partial
//! failures (`partial_failure_ratio`), and an outage window when every call answers UNAVAILABLE
//! (`outage`); tests can also queue failures with [`Emulator::fail_next_creates`].

mod create;
mod distribution;
mod faults;
mod filter;
mod identity;
mod list;
mod reason;
mod service;
mod store;
mod time;
mod validate;

pub mod config;
pub mod summary;
pub mod top;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use gcm_api::MetricServiceServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::{EmulatorConfig, Outage};
pub use create::MAX_SERIES_PER_REQUEST;
pub use reason::RejectReason;
pub use store::{Stats, Store, StoredSeries};

use service::{EmulatorService, Shared};

/// An emulator: its configuration and its store. Cloning shares both.
#[derive(Clone, Debug, Default)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Emulator {
    /// An empty emulator enforcing `config`.
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                ..Default::default()
            }),
        }
    }

    /// The rules it enforces.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// What it accepted so far, and its counters.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Makes the next `count` `CreateTimeSeries` calls answer `status` without looking at
    /// them, to test how a client copes with failures (for example `Status::unavailable`).
    pub fn fail_next_creates(&self, count: usize, status: tonic::Status) {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        faults.extend(std::iter::repeat_n(status, count));
    }

    /// The gRPC service alone, to be served by a server the caller builds (with TLS, or with
    /// interceptors that look at each call's metadata). [`Emulator::serve`] is the usual way.
    /// The outage window counts from this call.
    pub fn service(&self) -> MetricServiceServer<impl gcm_api::MetricService + use<>> {
        self.shared.injected.start();
        MetricServiceServer::new(EmulatorService {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Serves on `addr` (port 0 picks a free one) until the returned handle is shut down or
    /// dropped. Fails only if the address cannot be bound.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(());

        let service = self.service();
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    // Both an explicit shutdown and a dropped handle end the wait.
                    let _ = server_stopped.changed().await;
                }),
        );
        if let Some(every) = self.shared.config.summary_interval.filter(|d| !d.is_zero()) {
            tokio::spawn(log_summaries(self.clone(), every, stopped));
        }
        tracing::info!(%addr, "gcm-emulator serving google.monitoring.v3.MetricService");
        Ok(RunningEmulator { addr, stop, server })
    }
}

/// Logs the store's summary line every `every` until `stopped` fires.
async fn log_summaries(
    emulator: Emulator,
    every: std::time::Duration,
    mut stopped: watch::Receiver<()>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                tracing::info!("{}", emulator.store().stats().summary_line());
            }
            _ = stopped.changed() => return,
        }
    }
}

/// A serving emulator. Dropping it stops the server; [`RunningEmulator::shutdown`] also waits
/// for it to finish.
#[derive(Debug)]
pub struct RunningEmulator {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: watch::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningEmulator {
    /// `http://<addr>`, the endpoint a client connects to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets calls in progress finish, and waits for the server.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let RunningEmulator { stop, server, .. } = self;
        drop(stop);
        match server.await {
            Ok(result) => result.map_err(std::io::Error::other),
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}
