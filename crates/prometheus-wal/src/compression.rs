//! Per-record decompression (snappy block format, zstd frames).
//!
//! Owns the compression bits of the fragment header and a reusable output buffer, so that
//! decompressing records does not allocate once the buffer has grown to the largest record.
//! It must never trust a length claimed by the input: the decompressed size is bounded before
//! anything is allocated.

use std::io::Read;

use crate::error::Corruption;

/// Header bit: the record is snappy-compressed (block format, not the framed format).
pub const SNAPPY_MASK: u8 = 1 << 3;
/// Header bit: the record is zstd-compressed (one zstd frame; Prometheus 2.46+).
pub const ZSTD_MASK: u8 = 1 << 4;

/// Largest decompressed record accepted, far above anything Prometheus writes (records are
/// bounded by the segment size, at most 256 MiB). Guards against a forged size in a header.
pub const MAX_DECODED_RECORD: usize = 512 << 20;

/// Snappy expands at most ~21x (a 3-byte copy op yields 64 bytes); a claimed length above this
/// bound is corruption, checked before allocating.
const SNAPPY_MAX_RATIO: usize = 32;

/// How a record's stored bytes are encoded, from its fragments' header bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None,
    /// Snappy block format.
    Snappy,
    /// A zstd frame.
    Zstd,
}

impl Codec {
    /// The codec named by a fragment header's type byte. Snappy is checked before zstd, as
    /// Prometheus does.
    pub fn from_header(type_byte: u8) -> Codec {
        if type_byte & SNAPPY_MASK != 0 {
            Codec::Snappy
        } else if type_byte & ZSTD_MASK != 0 {
            Codec::Zstd
        } else {
            Codec::None
        }
    }
}

/// Decompresses records into one reused buffer.
pub(crate) struct Decompressor {
    snappy: snap::raw::Decoder,
    /// Created on the first zstd record: most WALs never have one.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    out: Vec<u8>,
}

impl Decompressor {
    pub(crate) fn new() -> Decompressor {
        Decompressor {
            snappy: snap::raw::Decoder::new(),
            zstd: None,
            out: Vec::new(),
        }
    }

    /// Decompresses `input` (a whole record's stored bytes) into the internal buffer and
    /// returns the decoded length; the record is then [`output`](Self::output).
    pub(crate) fn decompress(&mut self, codec: Codec, input: &[u8]) -> Result<usize, Corruption> {
        match codec {
            Codec::None => {
                self.out.clear();
                self.out.extend_from_slice(input);
                Ok(input.len())
            }
            Codec::Snappy => self.snappy(input),
            Codec::Zstd => self.zstd(input),
        }
    }

    /// The first `len` decoded bytes, as returned by [`decompress`](Self::decompress).
    pub(crate) fn output(&self, len: usize) -> &[u8] {
        &self.out[..len.min(self.out.len())]
    }

    fn snappy(&mut self, input: &[u8]) -> Result<usize, Corruption> {
        let err = |reason: String| Corruption::Decompress {
            codec: "snappy",
            reason,
        };
        let len = snap::raw::decompress_len(input).map_err(|e| err(e.to_string()))?;
        let bound = input
            .len()
            .saturating_mul(SNAPPY_MAX_RATIO)
            .min(MAX_DECODED_RECORD);
        if len > bound {
            return Err(err(format!(
                "claims {len} decoded bytes from {} stored bytes",
                input.len()
            )));
        }
        // The buffer only grows (to the largest record seen) so steady state does not re-zero it.
        if self.out.len() < len {
            self.out.resize(len, 0);
        }
        let n = self
            .snappy
            .decompress(input, &mut self.out[..len])
            .map_err(|e| err(e.to_string()))?;
        Ok(n)
    }

    fn zstd(&mut self, input: &[u8]) -> Result<usize, Corruption> {
        let err = |reason: String| Corruption::Decompress {
            codec: "zstd",
            reason,
        };
        let content_size = zstd::zstd_safe::get_frame_content_size(input)
            .map_err(|_| err("not a zstd frame".to_string()))?;
        match content_size {
            Some(size) => {
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s <= MAX_DECODED_RECORD)
                    .ok_or_else(|| err(format!("frame claims {size} decoded bytes")))?;
                let dec = match &mut self.zstd {
                    Some(dec) => dec,
                    slot => slot
                        .insert(zstd::bulk::Decompressor::new().map_err(|e| err(e.to_string()))?),
                };
                self.out.clear();
                self.out.reserve(size);
                dec.decompress_to_buffer(input, &mut self.out)
                    .map_err(|e| err(e.to_string()))?;
            }
            None => {
                // Frame without a content size: stream it, bounded.
                self.out.clear();
                let mut stream = zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| err(e.to_string()))?
                    .take(MAX_DECODED_RECORD as u64 + 1);
                stream
                    .read_to_end(&mut self.out)
                    .map_err(|e| err(e.to_string()))?;
                if self.out.len() > MAX_DECODED_RECORD {
                    return Err(err("decoded record too large".to_string()));
                }
            }
        }
        Ok(self.out.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(d: &mut Decompressor, codec: Codec, input: &[u8]) -> Vec<u8> {
        let n = d.decompress(codec, input).unwrap();
        d.output(n).to_vec()
    }

    #[test]
    fn snappy_round_trip() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let enc = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut d = Decompressor::new();
        assert_eq!(decode(&mut d, Codec::Snappy, &enc), &data[..]);
        // A smaller record after a larger one returns exactly its own bytes.
        let small = snap::raw::Encoder::new().compress_vec(b"abc").unwrap();
        assert_eq!(decode(&mut d, Codec::Snappy, &small), b"abc");
        assert_eq!(decode(&mut d, Codec::None, b"raw"), b"raw");
    }

    #[test]
    fn snappy_huge_claimed_length_is_rejected_without_allocating() {
        // Preamble varint claiming ~4 GiB, then nothing.
        let input = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let err = Decompressor::new()
            .decompress(Codec::Snappy, &input)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Corruption::Decompress {
                    codec: "snappy",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zstd_round_trip_with_and_without_content_size() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        let with_size = zstd::bulk::compress(&data, 1).unwrap();
        let mut d = Decompressor::new();
        assert_eq!(decode(&mut d, Codec::Zstd, &with_size), &data[..]);

        let mut streamed = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 1).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        enc.finish().unwrap();
        assert_eq!(decode(&mut d, Codec::Zstd, &streamed), &data[..]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decompressor::new();
        assert!(d.decompress(Codec::Zstd, b"\x01\x02\x03").is_err());
        assert!(d.decompress(Codec::Snappy, b"\x05\x00").is_err());
    }

    #[test]
    fn header_bits_select_codec() {
        assert_eq!(Codec::from_header(0x01), Codec::None);
        assert_eq!(Codec::from_header(0x09), Codec::Snappy);
        assert_eq!(Codec::from_header(0x11), Codec::Zstd);
        assert_eq!(Codec::from_header(0x19), Codec::Snappy);
    }
}
