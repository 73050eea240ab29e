//! The Stackdriver Prometheus sidecar as a library: every stage of the pipeline, wired together by
//! `main.rs`. See `ARCHITECTURE.md` at the repository root for the map.

pub mod config;
pub mod export;
pub mod metadata;
pub mod observe;
pub mod prefetch;
pub mod progress;
pub mod promapi;
pub mod retrieval;
pub mod stats;
pub mod targets;
pub mod web;
