//! The Stackdriver Prometheus sidecar as a library: every stage of the pipeline, wired together by
//! `main.rs`. See `ARCHITECTURE.md` at the repository root for the map.

pub mod config;
pub mod export;
pub mod filter;
pub mod metadata;
pub mod model;
pub mod observe;
pub(crate) mod prefetch;
pub mod progress;
pub mod promapi;
pub mod retrieval;
pub mod shutdown;
pub mod stats;
pub mod targets;
pub mod wal_lock;
pub mod web;

/// The sidecar's version, as `--version`, the user agent and `/metrics` give it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// rustls needs a process-wide crypto provider before the first TLS connection (the API
/// channel, the credentials' and Prometheus' HTTP clients); ring is the one built in.
/// Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
