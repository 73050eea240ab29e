//! The HTTP server on `--web.listen-address`: `/metrics`, `/statusz`, `/-/healthy`, `/-/ready`.
//!
//! Owns the routes and their answers; the numbers come from [`Stats`], the verdicts from
//! `observe::health`. Binding happens at start-up so a taken port fails the start (exit 1).
//! Handlers only read shared state: they must never block the pipeline or change what it does.

pub(crate) mod statusz;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::export::ExportConfig;
use crate::observe::RuntimeInfo;
use crate::observe::exposition;
use crate::observe::health::{self, HealthMonitor, Verdict};
use crate::observe::process::ProcessStats;
use crate::observe::recent::RecentErrors;
use crate::retrieval::aggregator::CounterAggregator;
use crate::stats::Stats;
pub use statusz::StatusPage;

/// Everything the handlers read.
#[derive(Clone)]
pub struct WebState {
    /// The pipeline's counters.
    pub stats: Arc<Stats>,
    /// Build and export facts.
    pub info: Arc<RuntimeInfo>,
    /// Liveness rules, fed by the lag monitor.
    pub health: Arc<HealthMonitor>,
    /// Recent warnings and errors.
    pub recent: RecentErrors,
    /// The static part of `/statusz`; `None` when `--web.enable-statusz=false`.
    pub status_page: Option<Arc<StatusPage>>,
    /// The aggregated counters, once the pipeline has made them.
    pub aggregates: Arc<OnceLock<Arc<CounterAggregator>>>,
}

/// The running server, as `main` sees it.
pub struct WebHandle {
    failure: Arc<Mutex<Option<String>>>,
    aggregates: Arc<OnceLock<Arc<CounterAggregator>>>,
}

impl WebHandle {
    /// Shows the aggregated counters' totals on `/metrics` from now on.
    pub fn show_aggregates(&self, aggregator: Arc<CounterAggregator>) {
        let _ = self.aggregates.set(aggregator);
    }

    /// Why the server stopped while the sidecar was running, if it did (fatal: the sidecar
    /// was cancelled so it can exit non-zero).
    pub fn fatal_error(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// Binds `--web.listen-address` (an error here is a start-up failure), then serves the routes
/// until `cancel` fires. A server that fails later triggers `cancel` (the sidecar then exits
/// non-zero).
pub async fn start(
    config: &Config,
    export: &ExportConfig,
    stats: Arc<Stats>,
    health: Arc<HealthMonitor>,
    recent: RecentErrors,
    shutdown: Shutdown,
) -> std::io::Result<WebHandle> {
    let listener = bind(&config.web_listen_address).await?;
    let address = listener.local_addr()?;
    let info = RuntimeInfo {
        queue: config.api.url.clone(),
        shard_limits: (config.shards.min, config.shards.max),
        capacity_per_shard: export.capacity_per_shard,
        ..RuntimeInfo::new(SystemTime::now())
    };
    let state = WebState {
        stats: stats.clone(),
        info: Arc::new(info),
        health: health.clone(),
        recent,
        status_page: config
            .enable_statusz
            .then(|| Arc::new(StatusPage::new(config, |name| std::env::var(name).ok()))),
        aggregates: Arc::new(OnceLock::new()),
    };
    let failure = Arc::new(Mutex::new(None));
    let handle = WebHandle {
        failure: failure.clone(),
        aggregates: state.aggregates.clone(),
    };
    tokio::spawn(async move {
        if let Err(err) = serve(listener, state, shutdown.clone()).await {
            tracing::error!(%address, error = %err, "the HTTP server for /metrics and /-/healthy stopped");
            if let Ok(mut f) = failure.lock() {
                *f = Some(format!("HTTP server on {address}: {err}"));
            }
            shutdown.trigger();
        }
    });
    tracing::info!(%address, "serving /metrics, /statusz, /-/healthy and /-/ready");
    Ok(handle)
}

/// Binds the listening socket; the error says which address could not be used.
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on --web.listen-address={address}: {e}"),
        )
    })
}

/// The routes.
pub fn router(state: WebState) -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready));
    if state.status_page.is_some() {
        router = router.route("/statusz", get(statusz));
    }
    router.with_state(state)
}

/// Serves until `cancel` fires. An error here is fatal for the sidecar.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.triggered().await })
        .await
}

async fn index(State(state): State<WebState>) -> Response {
    let mut text = String::from(
        "stackdriver-prometheus-sidecar\n\n/metrics     self-metrics (Prometheus text format)\n\
         /-/healthy   liveness: 200 while alive and making progress, else 503 with the reason\n\
         /-/ready     readiness: 200 once Prometheus is ready and a first batch was accepted\n",
    );
    if state.status_page.is_some() {
        text.push_str("/statusz     status page\n");
    }
    plain(StatusCode::OK, text)
}

async fn metrics(State(state): State<WebState>) -> Response {
    let process = ProcessStats::read();
    let aggregates = state
        .aggregates
        .get()
        .map(|a| a.values())
        .unwrap_or_default();
    let body = exposition::render(
        &state.stats,
        &state.info,
        process.as_ref(),
        &aggregates,
        SystemTime::now(),
    );
    ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body).into_response()
}

async fn healthy(State(state): State<WebState>) -> Response {
    verdict(state.health.healthy(Instant::now()))
}

async fn ready(State(state): State<WebState>) -> Response {
    verdict(health::ready(&state.stats))
}

async fn statusz(State(state): State<WebState>) -> Response {
    let Some(page) = state.status_page.as_ref() else {
        return plain(StatusCode::NOT_FOUND, "statusz is disabled\n".into());
    };
    let html = statusz::render(page, &state, SystemTime::now());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn verdict(v: Verdict) -> Response {
    let code = if v.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    plain(code, format!("{}\n", v.reason))
}

fn plain(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
