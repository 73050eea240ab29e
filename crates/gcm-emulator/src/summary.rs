//! The plain-text summary of what the emulator holds, served over HTTP (`--http-address`).
//!
//! Owns the page's text (counters, then one line per metric type with its kind, value type,
//! series and points) and the small HTTP server. It must never change the store.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::Emulator;

/// The summary as text: the counters line, then per project and metric type its kind, value
/// type, number of series and points.
pub fn render(emulator: &Emulator) -> String {
    let store = emulator.store();
    let mut out = String::new();
    let _ = writeln!(out, "{}", store.stats().summary_line());
    for project in store.projects() {
        let _ = writeln!(out, "\nprojects/{project}");
        let _ = writeln!(
            out,
            "{:<70} {:<10} {:<12} {:>7} {:>9}",
            "METRIC TYPE", "KIND", "VALUE TYPE", "SERIES", "POINTS"
        );
        for descriptor in store.metric_descriptors(&project) {
            let series = store.series(&project, &descriptor.r#type);
            let points: usize = series.iter().map(|s| s.points.len()).sum();
            let _ = writeln!(
                out,
                "{:<70} {:<10} {:<12} {:>7} {:>9}",
                descriptor.r#type,
                descriptor.metric_kind().as_str_name(),
                descriptor.value_type().as_str_name(),
                series.len(),
                points
            );
        }
    }
    out
}

/// Serves the summary at `/` on `addr` until the process ends; answers the bound address.
pub async fn serve(emulator: Emulator, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/", get(page)).with_state(emulator);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!(error = %err, "the summary HTTP server stopped");
        }
    });
    Ok(bound)
}

async fn page(State(emulator): State<Emulator>) -> String {
    render(&emulator)
}
