//! The aggregated counters' state, saved next to the progress ([`AGGREGATES_FILE`]) so a restart
//! continues their totals and start time instead of starting them from zero: each aggregate's
//! total (by configured name), when its points started and were last made (WAL time), and each
//! input series' last sample. The reader hands a consistent snapshot over ([`AggregatesSlot`]);
//! the keeper writes the newest one. Replaying samples a snapshot already counted adds nothing
//! (an input ignores samples not newer than its last), so the snapshot may lag the WAL position
//! saved with it. Owns the file format; must never decide what the state is.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file, in the WAL directory.
pub const AGGREGATES_FILE: &str = "stackdriver_sidecar.aggregates";

/// Format: this magic, then little-endian words, then a CRC-32C of all that.
const MAGIC: &[u8; 8] = b"SDSCAGG1";

/// One aggregate's running total.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTotal {
    /// The aggregate's `metric` as configured.
    pub metric: String,
    /// Sum of the increases counted so far.
    pub total: f64,
}

/// The last sample of one series feeding aggregates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SavedInput {
    /// Hash of the series' label set (its identity across Prometheus restarts).
    pub labels_hash: u64,
    /// Its last sample's time (ms).
    pub t: i64,
    /// Its last sample's value.
    pub v: f64,
}

/// Everything saved about the aggregates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedAggregates {
    /// Start of every aggregate's points (ms, WAL time), once the first sample was read.
    pub start_ms: Option<i64>,
    /// End of the last points made (ms, WAL time).
    pub last_ms: Option<i64>,
    /// Totals, in configuration order.
    pub totals: Vec<SavedTotal>,
    /// Inputs' last samples.
    pub inputs: Vec<SavedInput>,
}

/// Where the reader leaves its newest snapshot for the next save.
#[derive(Debug, Default)]
pub struct AggregatesSlot(Mutex<Option<Arc<SavedAggregates>>>);

impl AggregatesSlot {
    /// Replaces the snapshot to save.
    pub fn set(&self, state: SavedAggregates) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Arc::new(state));
        }
    }

    /// The snapshot set since the last call, if any (each one is written once).
    pub fn take(&self) -> Option<Arc<SavedAggregates>> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

fn option_word(v: Option<i64>) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = u8::from(v.is_some());
    out[1..].copy_from_slice(&v.unwrap_or(0).to_le_bytes());
    out
}

/// The file's bytes.
pub fn encode(state: &SavedAggregates) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + state.inputs.len() * 24);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&option_word(state.start_ms));
    b.extend_from_slice(&option_word(state.last_ms));
    b.extend_from_slice(&(state.totals.len() as u64).to_le_bytes());
    for t in &state.totals {
        b.extend_from_slice(&(t.metric.len() as u64).to_le_bytes());
        b.extend_from_slice(t.metric.as_bytes());
        b.extend_from_slice(&t.total.to_bits().to_le_bytes());
    }
    b.extend_from_slice(&(state.inputs.len() as u64).to_le_bytes());
    for i in &state.inputs {
        b.extend_from_slice(&i.labels_hash.to_le_bytes());
        b.extend_from_slice(&i.t.to_le_bytes());
        b.extend_from_slice(&i.v.to_bits().to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Reads bytes written by [`encode`]; every length is checked against what is present.
pub fn decode(bytes: &[u8]) -> Result<SavedAggregates, String> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("unknown format (bad header)".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err("checksum mismatch (file damaged)".into());
    }
    let mut r = Reader {
        b: body,
        at: MAGIC.len(),
    };
    let start_ms = r.option()?;
    let last_ms = r.option()?;
    let n = r.count(16)?;
    let mut totals = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.count(1)?;
        let metric = String::from_utf8(r.bytes(len)?.to_vec()).map_err(|e| e.to_string())?;
        let total = f64::from_bits(r.word()?);
        totals.push(SavedTotal { metric, total });
    }
    let n = r.count(24)?;
    let mut inputs = Vec::with_capacity(n);
    for _ in 0..n {
        inputs.push(SavedInput {
            labels_hash: r.word()?,
            t: r.word()? as i64,
            v: f64::from_bits(r.word()?),
        });
    }
    if r.at != body.len() {
        return Err(format!("{} unexpected bytes at the end", body.len() - r.at));
    }
    Ok(SavedAggregates {
        start_ms,
        last_ms,
        totals,
        inputs,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| format!("cut short at byte {}", self.at))?;
        let out = &self.b[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn word(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn option(&mut self) -> Result<Option<i64>, String> {
        let present = self.bytes(1)?[0] == 1;
        let v = self.word()? as i64;
        Ok(present.then_some(v))
    }

    /// A count of items of at least `min_len` bytes each, checked against the bytes left.
    fn count(&mut self, min_len: usize) -> Result<usize, String> {
        let n = self.word()?;
        let left = (self.b.len() - self.at) as u64;
        if n > left / min_len as u64 {
            return Err(format!("{n} items announced, {left} bytes left"));
        }
        Ok(n as usize)
    }
}

/// Writes `state` into `dir`, replacing the file atomically.
pub fn save(dir: &Path, state: &SavedAggregates) -> io::Result<()> {
    let tmp = super::temporary_path(dir, AGGREGATES_FILE);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&encode(state))?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(AGGREGATES_FILE))
}

/// The state saved in `dir`; `None` when there is none. A damaged file is reported and ignored
/// (the aggregates then start from zero, as on a first start).
pub fn load(dir: &Path) -> Option<SavedAggregates> {
    let path = dir.join(AGGREGATES_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the aggregated counters' state; they start from zero");
            return None;
        }
    };
    match decode(&bytes) {
        Ok(state) => Some(state),
        Err(reason) => {
            tracing::warn!(file = %path.display(), reason, "ignoring a damaged aggregated counters' state; they start from zero");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedAggregates {
        SavedAggregates {
            start_ms: Some(1_000),
            last_ms: None,
            totals: vec![
                SavedTotal {
                    metric: "requests".into(),
                    total: 42.5,
                },
                SavedTotal {
                    metric: "errors/é".into(),
                    total: 0.0,
                },
            ],
            inputs: vec![SavedInput {
                labels_hash: 7,
                t: -3,
                v: 1e300,
            }],
        }
    }

    #[test]
    fn the_state_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        save(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()), Some(sample()));
        assert_eq!(
            decode(&encode(&SavedAggregates::default())),
            Ok(SavedAggregates::default())
        );
    }

    #[test]
    fn damaged_or_cut_files_are_refused_not_misread() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        // A count that the bytes cannot hold, with a valid checksum.
        let mut huge = encode(&SavedAggregates::default());
        huge.truncate(huge.len() - 4);
        let at = 8 + 9 + 9;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&huge);
        huge.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
