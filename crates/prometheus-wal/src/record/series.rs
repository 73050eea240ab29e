//! Series records (type 1): `ref be64, labels` repeated; and the label-set encoding shared with
//! exemplars.

use super::cursor::Cursor;
use super::{DecodeError, RecordType, open};
use crate::labels::{Label, Labels};

/// One series of a series record: the ref later samples use, and its labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RefSeries {
    /// The series ref (`chunks.HeadSeriesRef`), unique per label set while the WAL exists.
    pub series_ref: u64,
    /// The label set, sorted by name.
    pub labels: Labels,
}

/// Decodes a series record into `out` (cleared first).
pub fn decode_series(record: &[u8], out: &mut Vec<RefSeries>) -> Result<(), DecodeError> {
    out.clear();
    let (_, mut c) = open(record, &[RecordType::Series], "series")?;
    while !c.is_empty() {
        let series_ref = c.be64()?;
        let mut labels = Labels::new();
        decode_labels(&mut c, &mut labels)?;
        out.push(RefSeries { series_ref, labels });
    }
    Ok(())
}

/// `uvarint n`, then `n` × (uvarint-prefixed name, uvarint-prefixed value), into `out`
/// (cleared first), sorted by name.
pub(crate) fn decode_labels(c: &mut Cursor<'_>, out: &mut Labels) -> Result<(), DecodeError> {
    out.clear();
    // Each label takes at least its two length bytes.
    let n = c.count(2)?;
    out.reserve(n);
    for _ in 0..n {
        let name = c.uvarint_string()?;
        let value = c.uvarint_string()?;
        out.push(Label { name, value });
    }
    // Prometheus always writes label sets sorted; lookups rely on it, so enforce it cheaply.
    if !out.is_sorted_by(|a, b| a.name <= b.name) {
        out.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DecodeErrorKind;
    use crate::record::encode::encode_series;

    fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn decodes_what_was_encoded() {
        let series = vec![
            RefSeries {
                series_ref: 1,
                labels: vec![label("__name__", "up"), label("job", "node")],
            },
            RefSeries {
                series_ref: u64::MAX,
                labels: vec![],
            },
        ];
        let mut rec = Vec::new();
        encode_series(&series, &mut rec);
        let mut out = vec![RefSeries::default()];
        decode_series(&rec, &mut out).unwrap();
        assert_eq!(out, series);
    }

    #[test]
    fn unsorted_labels_are_sorted() {
        let mut rec = vec![1u8];
        rec.extend_from_slice(&7u64.to_be_bytes());
        rec.extend_from_slice(&[2, 1, b'z', 1, b'1', 1, b'a', 1, b'2']);
        let mut out = Vec::new();
        decode_series(&rec, &mut out).unwrap();
        assert_eq!(out[0].labels, vec![label("a", "2"), label("z", "1")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let mut rec = vec![1u8];
        rec.extend_from_slice(&7u64.to_be_bytes());
        rec.extend_from_slice(&[1, 1, b'a', 2, 0xff, b'x']);
        let mut out = Vec::new();
        decode_series(&rec, &mut out).unwrap();
        assert_eq!(out[0].labels[0].value, "\u{fffd}x");
    }

    #[test]
    fn truncated_and_forged_records_are_errors() {
        let mut out = Vec::new();
        // Ref cut short.
        let e = decode_series(&[1, 0, 0, 0], &mut out).unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::UnexpectedEnd { .. }));
        // A label count of 2^62 must not allocate.
        let mut rec = vec![1u8];
        rec.extend_from_slice(&7u64.to_be_bytes());
        rec.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert!(decode_series(&rec, &mut out).is_err());
        // Wrong type.
        let e = decode_series(&[2], &mut out).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::WrongType { expected: "series" });
        assert!(decode_series(&[], &mut out).is_err());
    }
}
