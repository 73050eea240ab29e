//! Reading and following the Prometheus TSDB write-ahead log (WAL), as Prometheus 2.x and 3.x
//! write it.
//!
//! The WAL directory holds numbered segment files (`00000012`, ...) and checkpoint directories
//! (`checkpoint.00000011/`, a small WAL of their own holding what is left of segments
//! `<= 11`). Each segment is a sequence of 32 KiB pages of CRC-protected fragments that make up
//! records, optionally snappy- or zstd-compressed per record; each record starts with a type
//! byte (series, samples, histograms, ...).
//!
//! The crate is layered like Prometheus' `tsdb/wlog` and `tsdb/record`:
//!
//! * [`segment`]: one segment file -> record payloads (framing, checksums, decompression),
//!   tolerant of a file that is still being written;
//! * [`record`]: record payload -> typed entries ([`RefSeries`], [`RefSample`], histograms, ...),
//!   decoded into caller-provided buffers;
//! * [`dir`]: which segments and checkpoints exist;
//! * [`Follower`]: the newest checkpoint, then every segment after it, then the live segment and
//!   the ones that follow, surviving crashes (torn tails), corruption and truncation;
//! * [`writer`] and [`record::encode`]: the same format written out, for tests and tools.
//!
//! ```no_run
//! use prometheus_wal::{FollowOptions, Follower, RecordType, record_type, decode_samples};
//!
//! let mut follower = Follower::open("/prometheus/wal", FollowOptions::default())?;
//! let mut samples = Vec::new();
//! while let Some(rec) = follower.next_record()? {
//!     if record_type(rec.data) == RecordType::Samples {
//!         decode_samples(rec.data, &mut samples)?;
//!         println!("{} samples up to {}", samples.len(), rec.position);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate never touches the network and knows nothing about where samples go.

mod compression;
pub mod dir;
mod error;
mod follow;
mod labels;
mod position;
pub mod record;
pub mod segment;
pub mod writer;

pub use compression::Codec;
pub use dir::{bytes_after, list_checkpoints, list_segments, newest_checkpoint, wal_size};
pub use error::{Corruption, WalError};
pub use follow::{FollowCounters, FollowOptions, FollowStats, Follower, Next, WalRecord};
pub use labels::{Label, Labels};
pub use position::{RecordSource, WalPosition};
pub use record::{
    DecodeError, DecodeErrorKind, RecordType, RefSample, RefSeries, STALE_NAN_BITS, decode_samples,
    decode_series, is_stale_marker, record_type,
};
pub use segment::SegmentReader;
