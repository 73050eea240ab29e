//! Errors of the WAL reader.
//!
//! Owns [`WalError`] (file, segment and directory level) and [`Corruption`] (what exactly was
//! wrong with the bytes). Every message names the file and, where there is one, the byte offset,
//! so that a log line alone is enough to find the bad bytes with a hex dump. This module must
//! never decide what is fatal: callers do (see [`WalError::is_corruption`]).

use std::io;
use std::path::PathBuf;

use crate::position::{RecordSource, WalPosition};
use crate::record::DecodeError;

/// An error reading or following a WAL directory.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Listing the WAL (or a checkpoint) directory failed (missing directory, permissions).
    #[error("WAL directory {path}: {source}")]
    Dir {
        /// The directory that could not be listed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Opening a segment file failed (e.g. it was deleted by a truncation).
    #[error("opening WAL segment {path}: {source}")]
    Open {
        /// The segment file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading a segment file failed (not "no more data": that is not an error).
    #[error("reading {path} at offset {offset}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in the file where the read was attempted.
        offset: u64,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes of a segment are not a valid WAL at this offset. The reader has already skipped
    /// the bad part and can go on.
    #[error("corrupt WAL segment {path} at offset {offset}: {kind}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in the file of the fragment (or record) that is bad.
        offset: u64,
        /// What was wrong.
        kind: Corruption,
    },
    /// A record payload could not be decoded (built by callers with
    /// [`WalRecord::decode_error`](crate::WalRecord::decode_error)).
    #[error("record from {from} ending at {position}: {error}")]
    Decode {
        /// The checkpoint or segment the record came from.
        from: RecordSource,
        /// Position just after the record.
        position: WalPosition,
        /// What was wrong inside the record.
        error: DecodeError,
    },
    /// The WAL directory was recreated under the follower (segment numbers went backwards).
    /// Series refs restart with a new WAL, so everything cached about them is void: open a new
    /// [`Follower`](crate::Follower) and reset state.
    #[error(
        "WAL directory {path} was recreated: newest segment is {newest:?}, below segment {current} being read"
    )]
    Recreated {
        /// The WAL directory.
        path: PathBuf,
        /// The segment the follower was reading.
        current: u64,
        /// The newest segment now present (`None`: none at all).
        newest: Option<u64>,
    },
}

impl WalError {
    /// True if the file or directory named by the error does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        match self {
            WalError::Dir { source, .. } | WalError::Open { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }

    /// True for errors about invalid bytes, after which the reader can go on (the bad part has
    /// been skipped); false for I/O and directory errors.
    pub fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corrupt { .. } | WalError::Decode { .. })
    }
}

/// What was wrong with the bytes of a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The stored CRC32C of a fragment does not match its data.
    #[error("checksum mismatch: header says {expected:#010x}, data has {actual:#010x}")]
    Checksum {
        /// CRC from the fragment header.
        expected: u32,
        /// CRC computed over the stored data.
        actual: u32,
    },
    /// A fragment header whose type (low 3 bits) is not 0..=4.
    #[error("invalid fragment type byte {0:#04x}")]
    InvalidFragmentType(u8),
    /// A fragment (or its header) would cross the 32 KiB page boundary.
    #[error(
        "fragment of {length} bytes does not fit in the {page_remaining} bytes left in the page"
    )]
    FragmentSpansPage {
        /// Data length from the header (0 when the header itself does not fit).
        length: usize,
        /// Bytes left in the page at the fragment start.
        page_remaining: usize,
    },
    /// Fragment sequence error: `full`/`first` while a record was open, or `middle`/`last`
    /// without one.
    #[error("unexpected {found} fragment {context}")]
    FragmentSequence {
        /// Name of the fragment type found.
        found: &'static str,
        /// "while a record is open" or "without a preceding first fragment".
        context: &'static str,
    },
    /// Non-zero bytes where the rest of a page must be zero padding.
    #[error("non-zero byte in page padding")]
    NonZeroPadding,
    /// A compressed record could not be decompressed.
    #[error("cannot decompress {codec} record: {reason}")]
    Decompress {
        /// "snappy" or "zstd".
        codec: &'static str,
        /// The decoder's message.
        reason: String,
    },
}
