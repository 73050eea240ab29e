//! A bounds-checked reader over a record's bytes: big-endian integers, Go varints, strings.
//!
//! Owns the primitive encodings of `tsdb/encoding` and nothing else. Every read checks what
//! remains first, and every count read from the input is checked against what remains before
//! anything is allocated for it: no input can make it panic or allocate without bound.

use super::{DecodeError, DecodeErrorKind, RecordType};

/// Longest Go uvarint of a u64.
const MAX_VARINT_LEN: usize = 10;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    record: RecordType,
}

impl<'a> Cursor<'a> {
    /// A cursor past the record's type byte. `buf` must not be empty (the caller has read the
    /// type from it).
    pub(crate) fn after_type(buf: &'a [u8], record: RecordType) -> Cursor<'a> {
        Cursor {
            buf,
            pos: buf.len().min(1),
            record,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// An error at the current position.
    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            record: self.record,
            offset: self.pos,
            kind,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.error(DecodeErrorKind::UnexpectedEnd {
                needed: n as u64,
                remaining: self.remaining(),
            }));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn be64_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.be64()? as i64)
    }

    pub(crate) fn be64_f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.be64()?))
    }

    /// Go `binary.Uvarint`: 7 bits per byte, low group first, at most 10 bytes.
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut x: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let Some(&b) = self.buf.get(self.pos + i) else {
                return Err(self.error(DecodeErrorKind::UnexpectedEnd {
                    needed: i as u64 + 1,
                    remaining: self.remaining(),
                }));
            };
            if b < 0x80 {
                if i == MAX_VARINT_LEN - 1 && b > 1 {
                    return Err(self.error(DecodeErrorKind::VarintOverflow));
                }
                self.pos += i + 1;
                return Ok(x | (u64::from(b) << (7 * i)));
            }
            x |= u64::from(b & 0x7f) << (7 * i);
        }
        Err(self.error(DecodeErrorKind::VarintOverflow))
    }

    /// Go `binary.Varint`: zigzag-encoded signed integer.
    pub(crate) fn varint(&mut self) -> Result<i64, DecodeError> {
        Ok(zigzag_decode(self.uvarint()?))
    }

    /// A varint that must fit in an i32 (schemas, span offsets).
    pub(crate) fn varint_i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let at = self.pos;
        let v = self.varint()?;
        i32::try_from(v).map_err(|_| DecodeError {
            record: self.record,
            offset: at,
            kind: DecodeErrorKind::OutOfRange { field, value: v },
        })
    }

    /// A uvarint that must fit in a u32 (span lengths).
    pub(crate) fn uvarint_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let at = self.pos;
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| DecodeError {
            record: self.record,
            offset: at,
            kind: DecodeErrorKind::OutOfRange {
                field,
                value: i64::try_from(v).unwrap_or(i64::MAX),
            },
        })
    }

    /// uvarint length + that many raw bytes.
    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.take(n)
    }

    /// uvarint length-prefixed string; invalid UTF-8 is replaced (Prometheus 3 allows any bytes).
    pub(crate) fn uvarint_string(&mut self) -> Result<String, DecodeError> {
        let b = self.uvarint_bytes()?;
        Ok(match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        })
    }

    /// A uvarint element count, checked against the bytes left given that each element takes
    /// at least `min_entry_bytes`: a forged count can never cause a large allocation.
    pub(crate) fn count(&mut self, min_entry_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.uvarint()?;
        let fits = (self.remaining() / min_entry_bytes.max(1)) as u64;
        if n > fits {
            return Err(self.error(DecodeErrorKind::UnexpectedEnd {
                needed: n.saturating_mul(min_entry_bytes as u64),
                remaining: self.remaining(),
            }));
        }
        // Cast: n <= remaining bytes, which is a usize.
        Ok(n as usize)
    }
}

/// Decodes Go's zigzag encoding (`binary.PutVarint`).
pub fn zigzag_decode(ux: u64) -> i64 {
    ((ux >> 1) as i64) ^ -((ux & 1) as i64)
}

/// Encodes Go's zigzag encoding (`binary.PutVarint`).
pub fn zigzag_encode(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(bytes: &[u8]) -> Cursor<'_> {
        Cursor {
            buf: bytes,
            pos: 0,
            record: RecordType::Samples,
        }
    }

    #[test]
    fn zigzag_matches_go() {
        for (x, ux) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (i64::MAX, u64::MAX - 1),
        ] {
            assert_eq!(zigzag_encode(x), ux);
            assert_eq!(zigzag_decode(ux), x);
        }
        assert_eq!(zigzag_decode(u64::MAX), i64::MIN);
    }

    #[test]
    fn uvarint_reads_go_encodings() {
        assert_eq!(cursor(&[0x00]).uvarint().unwrap(), 0);
        assert_eq!(cursor(&[0x7f]).uvarint().unwrap(), 127);
        assert_eq!(cursor(&[0x80, 0x01]).uvarint().unwrap(), 128);
        assert_eq!(cursor(&[0xac, 0x02]).uvarint().unwrap(), 300);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(cursor(&max).uvarint().unwrap(), u64::MAX);
        // Negative deltas are common (out-of-order samples): -1 is 0x01.
        assert_eq!(cursor(&[0x01]).varint().unwrap(), -1);
        assert_eq!(cursor(&[0x03]).varint().unwrap(), -2);
    }

    #[test]
    fn uvarint_overflow_and_truncation_are_errors() {
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            cursor(&too_big).uvarint().unwrap_err().kind,
            DecodeErrorKind::VarintOverflow
        );
        let too_long = [0x80; 11];
        assert_eq!(
            cursor(&too_long).uvarint().unwrap_err().kind,
            DecodeErrorKind::VarintOverflow
        );
        assert!(matches!(
            cursor(&[0x80, 0x80]).uvarint().unwrap_err().kind,
            DecodeErrorKind::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            cursor(&[]).uvarint().unwrap_err().kind,
            DecodeErrorKind::UnexpectedEnd { .. }
        ));
    }

    #[test]
    fn huge_lengths_and_counts_are_rejected() {
        // Claims a 2^63-byte string.
        let mut c = cursor(&[
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, b'a',
        ]);
        assert!(matches!(
            c.uvarint_bytes().unwrap_err().kind,
            DecodeErrorKind::UnexpectedEnd { .. }
        ));
        // Claims 1000 labels with 3 bytes left.
        let mut c = cursor(&[0xe8, 0x07, 1, 2, 3]);
        assert!(c.count(2).is_err());
        let mut c = cursor(&[0x01, 1, 2]);
        assert_eq!(c.count(2).unwrap(), 1);
    }

    #[test]
    fn error_offsets_point_at_the_field() {
        let mut c = cursor(&[0, 0, 0, 0, 0, 0, 0, 1, 0x80]);
        assert_eq!(c.be64().unwrap(), 1);
        let e = c.uvarint().unwrap_err();
        assert_eq!(e.offset, 8);
    }
}
