//! Writing segment bytes the way Prometheus' `wlog.WL` does, for tests and tools.
//!
//! Owns the writer side of the page/fragment framing: records are compressed whole (kept raw
//! when compression does not make them smaller), split into fragments that never cross a page,
//! and each `log` call flushes the partial page without padding, exactly like Prometheus, so a
//! reader sees the same "file ends mid-page" situations as with a live Prometheus. Closing pads
//! the last page. It must never be used on a directory Prometheus is writing: it does not
//! rotate segments, fsync or lock anything.

use std::io::{self, Write};

use crate::compression::{Codec, SNAPPY_MASK, ZSTD_MASK};
use crate::segment::{FRAGMENT_HEADER_SIZE, FragmentType, PAGE_SIZE};

/// Writes records into one segment.
pub struct SegmentWriter<W: Write> {
    out: W,
    page: Box<[u8]>,
    /// Bytes of `page` filled with fragments.
    alloc: usize,
    /// Bytes of `page` already written to `out`.
    flushed: usize,
    codec: Codec,
    written: u64,
    compressed: Vec<u8>,
}

impl<W: Write> SegmentWriter<W> {
    /// A writer at the start of a new segment; `codec` is the WAL compression setting.
    pub fn new(out: W, codec: Codec) -> SegmentWriter<W> {
        SegmentWriter {
            out,
            page: vec![0; PAGE_SIZE].into_boxed_slice(),
            alloc: 0,
            flushed: 0,
            codec,
            written: 0,
            compressed: Vec::new(),
        }
    }

    /// Bytes written to the output so far: the segment file's size.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Appends one record and flushes what is written of the current page (no padding).
    pub fn log(&mut self, record: &[u8]) -> io::Result<()> {
        let flags = self.compress(record)?;
        let compressed = std::mem::take(&mut self.compressed);
        let stored = if flags != 0 { &compressed[..] } else { record };
        if PAGE_SIZE - self.alloc < FRAGMENT_HEADER_SIZE {
            self.flush_page(true)?;
        }
        let mut rest = stored;
        let mut first = true;
        while first || !rest.is_empty() {
            let n = rest
                .len()
                .min(PAGE_SIZE - self.alloc - FRAGMENT_HEADER_SIZE);
            let (part, tail) = rest.split_at(n);
            rest = tail;
            let ftype = match (first, rest.is_empty()) {
                (true, true) => FragmentType::Full,
                (true, false) => FragmentType::First,
                (false, true) => FragmentType::Last,
                (false, false) => FragmentType::Middle,
            };
            let type_byte = fragment_type_byte(ftype) | flags;
            let h = &mut self.page[self.alloc..self.alloc + FRAGMENT_HEADER_SIZE];
            h[0] = type_byte;
            // Cast: n is at most PAGE_SIZE - 7, which fits in u16.
            h[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            h[3..7].copy_from_slice(&crc32c::crc32c(part).to_be_bytes());
            self.alloc += FRAGMENT_HEADER_SIZE;
            self.page[self.alloc..self.alloc + n].copy_from_slice(part);
            self.alloc += n;
            if PAGE_SIZE - self.alloc < FRAGMENT_HEADER_SIZE {
                self.flush_page(true)?;
            }
            first = false;
        }
        self.compressed = compressed;
        self.flush_page(false)
    }

    /// The output, as written so far.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Returns the output without padding the last page, as a crashed Prometheus leaves a
    /// segment (or as a live one looks).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Pads the last page with zeros, as Prometheus does when it closes or rotates a segment,
    /// and returns the output.
    pub fn close(mut self) -> io::Result<W> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes the unflushed part of the page; with `pad`, zero-fills and completes the page.
    fn flush_page(&mut self, pad: bool) -> io::Result<()> {
        if pad {
            self.page[self.alloc..].fill(0);
            self.alloc = PAGE_SIZE;
        }
        self.out.write_all(&self.page[self.flushed..self.alloc])?;
        self.out.flush()?;
        self.written += (self.alloc - self.flushed) as u64;
        self.flushed = self.alloc;
        if self.alloc == PAGE_SIZE {
            self.alloc = 0;
            self.flushed = 0;
        }
        Ok(())
    }

    /// Compresses a record into `self.compressed` if that makes it smaller; returns the header
    /// flags (0: store `record` raw).
    fn compress(&mut self, record: &[u8]) -> io::Result<u8> {
        let flags = match self.codec {
            Codec::None => return Ok(0),
            Codec::Snappy => {
                self.compressed = snap::raw::Encoder::new()
                    .compress_vec(record)
                    .map_err(io::Error::other)?;
                SNAPPY_MASK
            }
            Codec::Zstd => {
                self.compressed = zstd::bulk::compress(record, 1)?;
                ZSTD_MASK
            }
        };
        Ok(if self.compressed.len() < record.len() {
            flags
        } else {
            0
        })
    }
}

fn fragment_type_byte(t: FragmentType) -> u8 {
    match t {
        FragmentType::PageTerm => 0,
        FragmentType::Full => 1,
        FragmentType::First => 2,
        FragmentType::Middle => 3,
        FragmentType::Last => 4,
    }
}
