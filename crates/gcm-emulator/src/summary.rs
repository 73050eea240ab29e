//! The summary of what the emulator holds, served over HTTP (`--http-address`).
//!
//! Owns the page in two forms, plain text for terminals and scripts and an HTML table for a
//! browser (chosen by the request's `Accept` header), both made from the same rows: the counters
//! line, then per project and metric type its kind, value type, series and points. It also owns
//! the small HTTP server. It must never change the store.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::Emulator;

/// One metric type of one project, as the summary shows it.
struct Row {
    metric_type: String,
    kind: &'static str,
    value_type: &'static str,
    series: usize,
    points: usize,
}

/// Per project (sorted), its metric types (sorted).
fn rows(emulator: &Emulator) -> Vec<(String, Vec<Row>)> {
    let store = emulator.store();
    store
        .projects()
        .into_iter()
        .map(|project| {
            let rows = store
                .metric_descriptors(&project)
                .into_iter()
                .map(|descriptor| {
                    let series = store.series(&project, &descriptor.r#type);
                    Row {
                        kind: descriptor.metric_kind().as_str_name(),
                        value_type: descriptor.value_type().as_str_name(),
                        series: series.len(),
                        points: series.iter().map(|s| s.points.len()).sum(),
                        metric_type: descriptor.r#type,
                    }
                })
                .collect();
            (project, rows)
        })
        .collect()
}

/// The summary as text: the counters line, then per project and metric type its kind, value
/// type, number of series and points.
pub fn render(emulator: &Emulator) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", emulator.store().stats().summary_line());
    for (project, rows) in rows(emulator) {
        let _ = writeln!(out, "\nprojects/{project}");
        let _ = writeln!(
            out,
            "{:<70} {:<10} {:<12} {:>7} {:>9}",
            "METRIC TYPE", "KIND", "VALUE TYPE", "SERIES", "POINTS"
        );
        for row in rows {
            let _ = writeln!(
                out,
                "{:<70} {:<10} {:<12} {:>7} {:>9}",
                row.metric_type, row.kind, row.value_type, row.series, row.points
            );
        }
    }
    out
}

/// The same summary as an HTML page: the counters line, then one table per project.
pub fn render_html(emulator: &Emulator) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>gcm-emulator</title>\n<style>\
         body{font-family:sans-serif;margin:1.5em}\
         table{border-collapse:collapse;margin-bottom:1.5em}\
         th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
         td.n{text-align:right}</style></head>\n<body>\n<h1>gcm-emulator</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p id=\"counters\">{}</p>",
        escape(&emulator.store().stats().summary_line())
    );
    let projects = rows(emulator);
    if projects.is_empty() {
        out.push_str("<p>Nothing written yet.</p>\n");
    }
    for (project, rows) in projects {
        let _ = writeln!(out, "<h2>projects/{}</h2>", escape(&project));
        out.push_str(
            "<table>\n<tr><th>Metric type</th><th>Kind</th><th>Value type</th>\
             <th>Series</th><th>Points</th></tr>\n",
        );
        for row in rows {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                escape(&row.metric_type),
                row.kind,
                row.value_type,
                row.series,
                row.points
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// `text` with the characters HTML gives a meaning to replaced by entities.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
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

/// HTML for a client that asks for it (a browser), plain text otherwise (curl, scripts).
async fn page(State(emulator): State<Emulator>, headers: HeaderMap) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if wants_html {
        Html(render_html(&emulator)).into_response()
    } else {
        render(&emulator).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
