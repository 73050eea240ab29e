//! A Prometheus HTTP API that replays recorded answers: `/-/ready`, `/api/v1/targets` as captured,
//! and `/api/v1/targets/metadata` filtered from the captured unfiltered answer the way Prometheus
//! 2.42 filters it (equality matchers of `match_target` against each entry's target labels; an
//! exact `metric` family name, whose answer entries then carry no `metric` field).
//!
//! Only what the sidecar asks for is supported; anything else answers 404. It must never
//! invent answers a real Prometheus would not give.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The recorded answers.
pub struct Recorded {
    /// `GET /api/v1/targets`, raw bytes.
    pub targets: Vec<u8>,
    /// Entries of `GET /api/v1/targets/metadata` (no parameters).
    pub metadata: Vec<Value>,
}

impl Recorded {
    /// Reads `targets.json` and `metadata-all.json` from `dir`.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Recorded> {
        let targets = std::fs::read(dir.join("targets.json"))?;
        let all: Value = serde_json::from_slice(&std::fs::read(dir.join("metadata-all.json"))?)?;
        let metadata = all["data"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("metadata-all.json: no data array"))?
            .clone();
        Ok(Recorded { targets, metadata })
    }
}

/// Serves the recorded API on `127.0.0.1:0`; returns the address.
pub async fn serve(recorded: Recorded) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/-/ready",
            get(|| async { "Prometheus Server is Ready.\n" }),
        )
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/metadata", get(metadata))
        .with_state(Arc::new(recorded));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn targets(State(r): State<Arc<Recorded>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r.targets.clone(),
    )
        .into_response()
}

/// Parses `{a="b",c="d"}` (equality matchers only, which is all the sidecar sends).
fn parse_matchers(selector: &str) -> Option<Vec<(String, String)>> {
    let inner = selector.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    value.push(match e {
                        'n' => '\n',
                        other => other,
                    });
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                other => value.push(other),
            }
        }
        let end = end?;
        out.push((
            name.trim().trim_start_matches(',').trim().to_string(),
            value,
        ));
        rest = after[end + 1..].trim().trim_start_matches(',').trim();
    }
    Some(out)
}

async fn metadata(
    State(r): State<Arc<Recorded>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let matchers = match q.get("match_target").map(|s| parse_matchers(s)) {
        Some(Some(m)) => m,
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"status":"error","errorType":"bad_data","error":"invalid match_target"}),
                ),
            )
                .into_response();
        }
        None => Vec::new(),
    };
    let metric = q.get("metric");
    let data: Vec<Value> = r
        .metadata
        .iter()
        .filter(|e| {
            matchers
                .iter()
                .all(|(k, v)| e["target"][k.as_str()].as_str().unwrap_or("") == v.as_str())
        })
        .filter(|e| metric.is_none_or(|m| e["metric"].as_str() == Some(m.as_str())))
        .map(|e| {
            let mut e = e.clone();
            if metric.is_some()
                && let Some(o) = e.as_object_mut()
            {
                o.remove("metric");
            }
            e
        })
        .collect();
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_with_escapes() {
        assert_eq!(
            parse_matchers(r#"{job="node",instance="127.0.0.1:1"}"#).unwrap(),
            vec![
                ("job".to_string(), "node".to_string()),
                ("instance".to_string(), "127.0.0.1:1".to_string())
            ]
        );
        assert_eq!(
            parse_matchers(r#"{a="x\"y"}"#).unwrap(),
            vec![("a".to_string(), "x\"y".to_string())]
        );
        assert!(parse_matchers("job=\"x\"").is_none());
    }
}
