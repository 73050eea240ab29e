//! Reading records out of one segment file: 32 KiB pages without a file header, holding
//! fragments (7-byte header: type byte, big-endian u16 length, big-endian CRC32C of the stored
//! data); a record is one `full` fragment or `first`, `middle`*, `last`.
//!
//! Owns that framing, checksums and reassembly, and nothing else: must never interpret a
//! record's payload or look at the directory.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::compression::{Codec, Decompressor};
use crate::error::{Corruption, WalError};

/// Size of a WAL page. Fragments never cross a page boundary.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Size of a fragment header: type byte, u16 length, u32 CRC32C.
pub const FRAGMENT_HEADER_SIZE: usize = 7;
/// Low 3 bits of the type byte: the fragment type.
const FRAGMENT_TYPE_MASK: u8 = 0x07;
/// Read buffer: several pages, so a sequential read needs one syscall per 128 KiB.
const BUF_SIZE: usize = 4 * PAGE_SIZE;

/// The fragment type from the low 3 bits of a fragment header's type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentType {
    /// `0`: the rest of the page is zero padding.
    PageTerm,
    /// `1`: a whole record.
    Full,
    /// `2`: the first fragment of a record.
    First,
    /// `3`: a fragment inside a record.
    Middle,
    /// `4`: the last fragment of a record.
    Last,
}

impl FragmentType {
    /// Parses the low 3 bits of a type byte; `None` for the unused values 5..=7.
    pub fn from_type_byte(b: u8) -> Option<FragmentType> {
        match b & FRAGMENT_TYPE_MASK {
            0 => Some(FragmentType::PageTerm),
            1 => Some(FragmentType::Full),
            2 => Some(FragmentType::First),
            3 => Some(FragmentType::Middle),
            4 => Some(FragmentType::Last),
            _ => None,
        }
    }

    /// The type's name as Prometheus spells it in messages.
    pub fn name(self) -> &'static str {
        match self {
            FragmentType::PageTerm => "page-padding",
            FragmentType::Full => "full",
            FragmentType::First => "first",
            FragmentType::Middle => "middle",
            FragmentType::Last => "last",
        }
    }
}

/// Where the bytes of a complete record are.
#[derive(Clone, Copy)]
enum Ready {
    /// A `full` fragment: its stored bytes are still in the read buffer.
    InBuffer {
        start: usize,
        len: usize,
        codec: Codec,
    },
    /// Reassembled from several fragments into `partial`.
    Assembled { codec: Codec },
}

/// Where the current record (the last one [`SegmentReader::advance`] found) is.
#[derive(Clone, Copy)]
enum Current {
    /// No record (before the first, or after an error).
    None,
    /// Uncompressed, `len` bytes at `start` in the read buffer.
    InBuffer { start: usize, len: usize },
    /// Uncompressed, in `partial`.
    Assembled,
    /// Decompressed, `len` bytes in the decompressor's buffer.
    Decoded { len: usize },
}

/// Outcome of looking at the next fragment.
enum Step {
    /// Not enough bytes yet.
    Pending,
    /// Consumed padding or a non-final fragment; look again.
    Continue,
    /// A record is complete.
    Ready(Ready),
}

/// Reads records from one segment file, tolerating a file that is still growing: running out of
/// bytes anywhere (inside a header, a fragment, a record split over pages, before the rest of a
/// padded page) is "no complete record yet", the position is kept and the next call retries.
///
/// Fragments never cross a page boundary, so the buffer never needs more than one page of
/// unconsumed bytes to make progress; records are handed out as borrowed slices of reused
/// buffers (no allocation per record once the buffers have grown).
pub struct SegmentReader<R = File> {
    src: R,
    path: PathBuf,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Absolute file offset of `buf[start]`.
    pos: u64,
    /// Bytes before this offset are skipped (the rest of a page whose framing was lost).
    skip_to: u64,
    /// Offset after the last complete (or skipped) record: the resume point.
    committed: u64,
    /// Offset of the first fragment of the record being returned or assembled.
    record_start: u64,
    /// Stored bytes of the record being assembled from `first` and `middle` fragments.
    partial: Vec<u8>,
    partial_open: bool,
    partial_codec: Codec,
    decompressor: Decompressor,
    current: Current,
}

impl SegmentReader<File> {
    /// Opens a segment file for reading from its start.
    pub fn open(path: impl AsRef<Path>) -> Result<SegmentReader<File>, WalError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| WalError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SegmentReader::new(file, path.to_path_buf()))
    }
}

impl<R: Read> SegmentReader<R> {
    /// Reads a segment from `src`, positioned at the segment's start. `path` only names the
    /// segment in errors.
    pub fn new(src: R, path: PathBuf) -> SegmentReader<R> {
        SegmentReader {
            src,
            path,
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
            skip_to: 0,
            committed: 0,
            record_start: 0,
            partial: Vec::new(),
            partial_open: false,
            partial_codec: Codec::None,
            decompressor: Decompressor::new(),
            current: Current::None,
        }
    }

    /// The underlying source, e.g. to grow an in-memory segment in tests. Reading from it
    /// directly desynchronises the reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.src
    }

    /// The segment file this reader was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Byte offset just after the last complete record returned or skipped (or padding read):
    /// every byte before it has been accounted for.
    pub fn offset(&self) -> u64 {
        self.committed
    }

    /// Bytes read from the file past [`offset`](Self::offset) that do not form a complete record
    /// yet. After `next_record` returned `Ok(None)` this is everything up to the end of the file
    /// as it was then; once the segment is known to be complete, a non-zero value is a torn tail.
    pub fn pending_bytes(&self) -> u64 {
        (self.pos + (self.end - self.start) as u64).saturating_sub(self.committed)
    }

    /// Returns the next complete record's payload (decompressed: snappy or zstd applies to the
    /// whole record), `Ok(None)` when the bytes read so far end before the next record is
    /// complete (call again once the file has grown).
    ///
    /// A [`WalError::Corrupt`] is returned after the bad fragment (or the rest of its page, when
    /// the framing is lost) has been skipped, so the caller decides whether to go on; calling
    /// again continues behind it. I/O errors leave the position unchanged.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>, WalError> {
        Ok(if self.advance()? {
            Some(self.record())
        } else {
            None
        })
    }

    /// Moves to the next complete record: `Ok(true)` when there is one (read it with
    /// [`record`](Self::record)), `Ok(false)` when not yet. Errors as for
    /// [`next_record`](Self::next_record). Split from `record` so that callers looping over
    /// several readers can hold the borrow only when returning.
    pub fn advance(&mut self) -> Result<bool, WalError> {
        self.current = Current::None;
        let ready = loop {
            match self.step()? {
                Step::Pending => return Ok(false),
                Step::Continue => {}
                Step::Ready(ready) => break ready,
            }
        };
        self.committed = self.pos;
        let (codec, current) = match ready {
            Ready::InBuffer { start, len, codec } => (codec, Current::InBuffer { start, len }),
            Ready::Assembled { codec } => (codec, Current::Assembled),
        };
        if codec == Codec::None {
            self.current = current;
            return Ok(true);
        }
        let stored = match current {
            Current::InBuffer { start, len } => &self.buf[start..start + len],
            _ => &self.partial[..],
        };
        match self.decompressor.decompress(codec, stored) {
            Ok(len) => {
                self.current = Current::Decoded { len };
                Ok(true)
            }
            Err(kind) => Err(self.corrupt(self.record_start, kind)),
        }
    }

    /// The record found by the last successful [`advance`](Self::advance) (empty if it failed or
    /// found none).
    pub fn record(&self) -> &[u8] {
        match self.current {
            Current::None => &[],
            Current::InBuffer { start, len } => &self.buf[start..start + len],
            Current::Assembled => &self.partial,
            Current::Decoded { len } => self.decompressor.output(len),
        }
    }

    /// Looks at the fragment at the current position and consumes it when it is complete.
    fn step(&mut self) -> Result<Step, WalError> {
        if self.pos < self.skip_to {
            if !self.fill(1)? {
                return Ok(Step::Pending);
            }
            let n = (self.end - self.start).min((self.skip_to - self.pos) as usize);
            self.consume(n);
            if self.pos == self.skip_to && !self.partial_open {
                self.committed = self.pos;
            }
            return Ok(Step::Continue);
        }
        // Cast: the remainder of a division by PAGE_SIZE is below PAGE_SIZE.
        let page_remaining = PAGE_SIZE - (self.pos % PAGE_SIZE as u64) as usize;
        if !self.fill(1)? {
            return Ok(Step::Pending);
        }
        let frag_start = self.pos;
        let type_byte = self.buf[self.start];
        let Some(ftype) = FragmentType::from_type_byte(type_byte) else {
            return Err(
                self.lose_framing(page_remaining, Corruption::InvalidFragmentType(type_byte))
            );
        };
        if ftype == FragmentType::PageTerm {
            // Padding is only written with a complete page: until the whole rest of the page is
            // there, a zero byte may just be the end of what the writer flushed so far.
            if !self.fill(page_remaining)? {
                return Ok(Step::Pending);
            }
            let padding = &self.buf[self.start..self.start + page_remaining];
            let all_zero = padding.iter().all(|&b| b == 0);
            self.consume(page_remaining);
            if !all_zero {
                self.partial_open = false;
                self.committed = self.pos;
                return Err(self.corrupt(frag_start, Corruption::NonZeroPadding));
            }
            if !self.partial_open {
                self.committed = self.pos;
            }
            return Ok(Step::Continue);
        }
        if page_remaining < FRAGMENT_HEADER_SIZE {
            let kind = Corruption::FragmentSpansPage {
                length: 0,
                page_remaining,
            };
            return Err(self.lose_framing(page_remaining, kind));
        }
        if !self.fill(FRAGMENT_HEADER_SIZE)? {
            return Ok(Step::Pending);
        }
        let h = &self.buf[self.start..self.start + FRAGMENT_HEADER_SIZE];
        let len = u16::from_be_bytes([h[1], h[2]]) as usize;
        let expected_crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        let frag_len = FRAGMENT_HEADER_SIZE + len;
        if frag_len > page_remaining {
            let kind = Corruption::FragmentSpansPage {
                length: len,
                page_remaining,
            };
            return Err(self.lose_framing(page_remaining, kind));
        }
        if !self.fill(frag_len)? {
            return Ok(Step::Pending);
        }
        let data_start = self.start + FRAGMENT_HEADER_SIZE;
        let actual_crc = crc32c::crc32c(&self.buf[data_start..data_start + len]);
        if actual_crc != expected_crc {
            self.consume(frag_len);
            self.partial_open = false;
            self.committed = self.pos;
            let kind = Corruption::Checksum {
                expected: expected_crc,
                actual: actual_crc,
            };
            return Err(self.corrupt(frag_start, kind));
        }
        let codec = Codec::from_header(type_byte);
        match (ftype, self.partial_open) {
            (FragmentType::Full | FragmentType::First, true) => {
                // The open record can never complete. Drop it but keep this fragment: it is
                // valid and is read by the next call.
                self.partial_open = false;
                self.committed = self.pos;
                let kind = Corruption::FragmentSequence {
                    found: ftype.name(),
                    context: "while a record is open",
                };
                Err(self.corrupt(self.record_start, kind))
            }
            (FragmentType::Middle | FragmentType::Last, false) => {
                self.consume(frag_len);
                self.committed = self.pos;
                let kind = Corruption::FragmentSequence {
                    found: ftype.name(),
                    context: "without a preceding first fragment",
                };
                Err(self.corrupt(frag_start, kind))
            }
            (FragmentType::Full, false) => {
                self.consume(frag_len);
                self.record_start = frag_start;
                Ok(Step::Ready(Ready::InBuffer {
                    start: data_start,
                    len,
                    codec,
                }))
            }
            (FragmentType::First, false) => {
                self.partial.clear();
                self.partial
                    .extend_from_slice(&self.buf[data_start..data_start + len]);
                self.partial_open = true;
                // All fragments of a record carry the same bits; the first one's are used.
                self.partial_codec = codec;
                self.record_start = frag_start;
                self.consume(frag_len);
                Ok(Step::Continue)
            }
            (FragmentType::Middle, true) => {
                self.partial
                    .extend_from_slice(&self.buf[data_start..data_start + len]);
                self.consume(frag_len);
                Ok(Step::Continue)
            }
            (FragmentType::Last, true) => {
                self.partial
                    .extend_from_slice(&self.buf[data_start..data_start + len]);
                self.consume(frag_len);
                self.partial_open = false;
                Ok(Step::Ready(Ready::Assembled {
                    codec: self.partial_codec,
                }))
            }
            (FragmentType::PageTerm, _) => Ok(Step::Continue),
        }
    }

    /// The fragment header at the current position is unusable, so nothing in the rest of the
    /// page can be trusted: skip to the next page boundary (lazily, the bytes may not be there
    /// yet) and drop the open record.
    fn lose_framing(&mut self, page_remaining: usize, kind: Corruption) -> WalError {
        let at = self.pos;
        self.skip_to = self.pos + page_remaining as u64;
        self.partial_open = false;
        self.committed = self.pos;
        self.corrupt(at, kind)
    }

    fn corrupt(&self, offset: u64, kind: Corruption) -> WalError {
        WalError::Corrupt {
            path: self.path.clone(),
            offset,
            kind,
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    /// Makes sure at least `need` (at most one page) unconsumed bytes are buffered; false when
    /// the file ends before that.
    fn fill(&mut self, need: usize) -> Result<bool, WalError> {
        debug_assert!(need <= PAGE_SIZE);
        if self.end - self.start >= need {
            return Ok(true);
        }
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < need {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(WalError::Io {
                        path: self.path.clone(),
                        offset: self.pos + (self.end - self.start) as u64,
                        source,
                    });
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
