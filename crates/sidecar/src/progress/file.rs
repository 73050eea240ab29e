//! The progress files in the WAL directory: what has been delivered, saved so a restart resumes
//! exactly there ([`STATE_FILE`]), and also in the original sidecar's format ([`LEGACY_FILE`]).
//!
//! Owns both formats and replacing the files atomically (temporary file, fsync, rename,
//! directory fsync). Must never decide what to save.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use prometheus_wal::WalPosition;

use crate::model::NativeHistogram;

/// Our progress file (binary, checksummed): the WAL position below which every point was
/// acknowledged by the backend or deliberately dropped, for every series the end time of its last
/// delivered point and, for cumulative series, the baseline its values are measured from, and for
/// every histogram (an output series made of several WAL series) the end time of its last
/// delivered point and the whole state its distributions are measured from.
pub const STATE_FILE: &str = "stackdriver_sidecar.state";
/// The original sidecar's progress file (`{"offset": N}`), also written so an operator can switch
/// back and forth; when it is the only one (a switch from the original) it is read as an
/// approximate start.
pub const LEGACY_FILE: &str = "stackdriver_sidecar.json";
/// Segment size the original's offsets assume (its constant, whatever the real size).
const LEGACY_SEGMENT_SIZE: u64 = 128 * 1024 * 1024;
/// Safety margin the original subtracts when saving.
const LEGACY_MARGIN: u64 = 512 * 1024;

/// Current format, little-endian: this magic, the WAL position (segment, offset), the series
/// count and one `ENTRY_LEN` entry per series, the histogram count and each histogram's state
/// (in 8-byte words: hash, last time, kind, start time, then the base and previous values), then
/// a CRC-32C of all that. Files of the series-only format (`MAGIC_V1`) and of the format before
/// native histograms (`MAGIC_V2`, no kind word) are still read.
const MAGIC: &[u8; 8] = b"SDSCPRG3";
const MAGIC_V2: &[u8; 8] = b"SDSCPRG2";
const MAGIC_V1: &[u8; 8] = b"SDSCPRG1";
/// Kind words of the histogram section.
const CLASSIC: u64 = 0;
const NATIVE: u64 = 1;
const GAUGE: u64 = 2;
const ENTRY_LEN: usize = 8 + 8 + 8 + 1 + 8 + 8 + 8;

/// Where a counter's values are measured from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SavedBaseline {
    /// Start time of the current interval (ms).
    pub reset_ts: i64,
    /// Raw value subtracted from samples.
    pub reset_value: f64,
    /// Raw value of the last delivered sample (reset detection).
    pub previous: f64,
}

/// Delivery state of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SavedSeries {
    /// WAL series ref.
    pub series_ref: u64,
    /// Hash of its label set, so a ref reused by a recreated WAL is not mistaken for it.
    pub labels_hash: u64,
    /// End time (ms) of the last point delivered or dropped for good.
    pub last_t: i64,
    /// Baseline of a cumulative series.
    pub baseline: Option<SavedBaseline>,
}

/// Cumulative values of one histogram at one time, buckets sorted by bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedSnapshot {
    /// `_count`.
    pub count: f64,
    /// `_sum`.
    pub sum: f64,
    /// `(le, cumulative count)`.
    pub buckets: Vec<(f64, f64)>,
}

/// What a classic histogram's distributions are measured from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedClassic {
    /// Start of the current interval (ms).
    pub start_ms: i64,
    /// Subtracted from every value.
    pub base: SavedSnapshot,
    /// The last run's values (reset detection).
    pub previous: SavedSnapshot,
}

/// What a native histogram's distributions are measured from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedNative {
    /// Start of the current interval (ms).
    pub start_ms: i64,
    /// Subtracted from every sample.
    pub base: NativeHistogram,
    /// The last sample (reset detection).
    pub previous: NativeHistogram,
}

/// What a histogram's distributions are measured from.
#[derive(Debug, Clone, PartialEq)]
pub enum SavedHistogramState {
    /// A classic histogram (or one of custom buckets).
    Classic(SavedClassic),
    /// A native histogram.
    Native(SavedNative),
    /// A gauge histogram: nothing to measure from; only the time of its last point matters.
    Gauge,
}

impl SavedHistogramState {
    /// Heap bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        match self {
            SavedHistogramState::Classic(c) => {
                16 * (c.base.buckets.capacity() + c.previous.buckets.capacity())
            }
            SavedHistogramState::Gauge => 0,
            SavedHistogramState::Native(n) => {
                16 * (n.base.positive.capacity()
                    + n.base.negative.capacity()
                    + n.previous.positive.capacity()
                    + n.previous.negative.capacity())
            }
        }
    }
}

/// Delivery state of one histogram output series.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedHistogram {
    /// The output series' identity hash.
    pub hash: u64,
    /// End time (ms) of the last point delivered, dropped for good, or taken as baseline.
    pub last_t: i64,
    /// The state after that point.
    pub state: SavedHistogramState,
}

/// Everything saved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedProgress {
    /// Every record ending at or before this position was fully delivered.
    pub position: WalPosition,
    /// Per-series state.
    pub series: Vec<SavedSeries>,
    /// Per-histogram state.
    pub histograms: Vec<SavedHistogram>,
}

/// What was found at start-up.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadedProgress {
    /// No progress file: a first start.
    None,
    /// Our own file: an exact resume.
    Exact(SavedProgress),
    /// Only the original sidecar's file: resume near this position, counters start afresh.
    Legacy(WalPosition),
}

/// A progress file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The content is not what we write.
    #[error("{path} is not a valid progress file: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the progress saved in `dir`; our file wins over the original's.
pub fn load(dir: &Path) -> Result<LoadedProgress, ProgressError> {
    let path = dir.join(STATE_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            return decode(&bytes)
                .map(LoadedProgress::Exact)
                .map_err(|reason| ProgressError::Invalid { path, reason });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(ProgressError::Read { path, source }),
    }
    let path = dir.join(LEGACY_FILE);
    match fs::read(&path) {
        Ok(bytes) => decode_legacy(&bytes)
            .map(LoadedProgress::Legacy)
            .map_err(|reason| ProgressError::Invalid { path, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LoadedProgress::None),
        Err(source) => Err(ProgressError::Read { path, source }),
    }
}

/// Saves `progress` in `dir`, replacing both files atomically.
pub fn save(dir: &Path, progress: &SavedProgress) -> io::Result<()> {
    save_streamed(dir, progress.position, &progress.histograms, |write| {
        all_series(progress, write)
    })
}

fn all_series(progress: &SavedProgress, write: &mut SeriesWriter<'_>) -> io::Result<()> {
    write(progress.series.len(), &mut progress.series.iter().copied())
}

/// Writes the series section: given the number of series and an iterator over exactly that
/// many.
pub type SeriesWriter<'a> =
    dyn FnMut(usize, &mut dyn Iterator<Item = SavedSeries>) -> io::Result<()> + 'a;

/// Saves like [`save`], the series coming from `series`, which is handed the function that
/// writes them: it can hold a lock over its source while they are written, so that no copy of
/// every series' state is ever collected in memory.
pub fn save_streamed(
    dir: &Path,
    position: WalPosition,
    histograms: &[SavedHistogram],
    series: impl FnOnce(&mut SeriesWriter<'_>) -> io::Result<()>,
) -> io::Result<()> {
    write_atomically(dir, STATE_FILE, |w| encode(w, position, histograms, series))?;
    let legacy =
        (position.segment * LEGACY_SEGMENT_SIZE + position.offset).saturating_sub(LEGACY_MARGIN);
    write_atomically(dir, LEGACY_FILE, |w| write!(w, "{{\"offset\":{legacy}}}"))?;
    // The renames are durable once the directory is.
    File::open(dir)?.sync_all()
}

fn write_atomically(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = super::temporary_path(dir, name);
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 16, &file);
    fill(&mut w)?;
    w.flush()?;
    drop(w);
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))
}

fn encode<W: Write>(
    w: &mut W,
    position: WalPosition,
    histograms: &[SavedHistogram],
    series: impl FnOnce(&mut SeriesWriter<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut crc = 0u32;
    let mut put = |w: &mut W, b: &[u8]| -> io::Result<()> {
        crc = crc32c::crc32c_append(crc, b);
        w.write_all(b)
    };
    // Without native or gauge histograms the file is written in the previous format, which
    // earlier versions read: going back to one loses nothing unless those are in use.
    let kinds = histograms
        .iter()
        .any(|h| !matches!(h.state, SavedHistogramState::Classic(_)));
    put(w, if kinds { MAGIC } else { MAGIC_V2 })?;
    put(w, &position.segment.to_le_bytes())?;
    put(w, &position.offset.to_le_bytes())?;
    let mut write_series = |n: usize, iter: &mut dyn Iterator<Item = SavedSeries>| {
        put(w, &(n as u64).to_le_bytes())?;
        let mut written = 0usize;
        let mut entry = [0u8; ENTRY_LEN];
        for s in iter.take(n) {
            entry[0..8].copy_from_slice(&s.series_ref.to_le_bytes());
            entry[8..16].copy_from_slice(&s.labels_hash.to_le_bytes());
            entry[16..24].copy_from_slice(&s.last_t.to_le_bytes());
            let b = s.baseline.unwrap_or(SavedBaseline {
                reset_ts: 0,
                reset_value: 0.0,
                previous: 0.0,
            });
            entry[24] = u8::from(s.baseline.is_some());
            entry[25..33].copy_from_slice(&b.reset_ts.to_le_bytes());
            entry[33..41].copy_from_slice(&b.reset_value.to_bits().to_le_bytes());
            entry[41..49].copy_from_slice(&b.previous.to_bits().to_le_bytes());
            put(w, &entry)?;
            written += 1;
        }
        if written == n {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{written} series states for a count of {n}"
            )))
        }
    };
    series(&mut write_series)?;
    put(w, &(histograms.len() as u64).to_le_bytes())?;
    for h in histograms {
        put(w, &h.hash.to_le_bytes())?;
        put(w, &h.last_t.to_le_bytes())?;
        match &h.state {
            SavedHistogramState::Classic(c) => {
                if kinds {
                    put(w, &CLASSIC.to_le_bytes())?;
                }
                put(w, &c.start_ms.to_le_bytes())?;
                for snap in [&c.base, &c.previous] {
                    put(w, &snap.count.to_bits().to_le_bytes())?;
                    put(w, &snap.sum.to_bits().to_le_bytes())?;
                    put(w, &(snap.buckets.len() as u64).to_le_bytes())?;
                    for (le, v) in &snap.buckets {
                        put(w, &le.to_bits().to_le_bytes())?;
                        put(w, &v.to_bits().to_le_bytes())?;
                    }
                }
            }
            SavedHistogramState::Gauge => {
                put(w, &GAUGE.to_le_bytes())?;
                put(w, &0i64.to_le_bytes())?;
            }
            SavedHistogramState::Native(n) => {
                put(w, &NATIVE.to_le_bytes())?;
                put(w, &n.start_ms.to_le_bytes())?;
                for h in [&n.base, &n.previous] {
                    put(w, &i64::from(h.schema).to_le_bytes())?;
                    for v in [h.zero_threshold, h.zero_count, h.count, h.sum] {
                        put(w, &v.to_bits().to_le_bytes())?;
                    }
                    for side in [&h.positive, &h.negative] {
                        put(w, &(side.len() as u64).to_le_bytes())?;
                        for (i, c) in side {
                            put(w, &i64::from(*i).to_le_bytes())?;
                            put(w, &c.to_bits().to_le_bytes())?;
                        }
                    }
                }
            }
        }
    }
    w.write_all(&crc.to_le_bytes())
}

/// Reads the histogram section (`kinds`: each histogram has a kind word, from version 3 on);
/// every length is checked against the bytes present.
fn decode_histograms(b: &[u8], kinds: bool) -> Result<Vec<SavedHistogram>, String> {
    let mut at = 0usize;
    let mut word = |what: &str| -> Result<u64, String> {
        if b.len() < at + 8 {
            return Err(format!("histogram section cut short in {what}"));
        }
        at += 8;
        Ok(u64_at(b, at - 8))
    };
    let most = (b.len() / 16) as u64;
    let count = word("its count")?;
    let mut out = Vec::new();
    for _ in 0..count {
        let hash = word("a histogram")?;
        let last_t = word("a histogram")? as i64;
        let kind = if kinds { word("a histogram")? } else { CLASSIC };
        let start_ms = word("a histogram")? as i64;
        let state = match kind {
            CLASSIC => {
                let mut snaps = [SavedSnapshot::default(), SavedSnapshot::default()];
                for snap in &mut snaps {
                    snap.count = f64::from_bits(word("a histogram")?);
                    snap.sum = f64::from_bits(word("a histogram")?);
                    let n = word("a histogram")?;
                    if n > most {
                        return Err(format!("a histogram announces {n} buckets"));
                    }
                    for _ in 0..n {
                        let le = f64::from_bits(word("a bucket")?);
                        let v = f64::from_bits(word("a bucket")?);
                        snap.buckets.push((le, v));
                    }
                }
                let [base, previous] = snaps;
                SavedHistogramState::Classic(SavedClassic {
                    start_ms,
                    base,
                    previous,
                })
            }
            NATIVE => {
                let mut hs = [NativeHistogram::default(), NativeHistogram::default()];
                for h in &mut hs {
                    h.schema = i32::try_from(word("a native histogram")? as i64)
                        .map_err(|_| "a native histogram's schema is out of range".to_string())?;
                    h.zero_threshold = f64::from_bits(word("a native histogram")?);
                    h.zero_count = f64::from_bits(word("a native histogram")?);
                    h.count = f64::from_bits(word("a native histogram")?);
                    h.sum = f64::from_bits(word("a native histogram")?);
                    for side in [&mut h.positive, &mut h.negative] {
                        let n = word("a native histogram")?;
                        if n > most {
                            return Err(format!("a native histogram announces {n} buckets"));
                        }
                        for _ in 0..n {
                            let i = i32::try_from(word("a bucket")? as i64)
                                .map_err(|_| "a bucket index is out of range".to_string())?;
                            side.push((i, f64::from_bits(word("a bucket")?)));
                        }
                        if side.windows(2).any(|w| w[0].0 >= w[1].0) {
                            return Err("a native histogram's buckets are not in order".into());
                        }
                    }
                }
                let [base, previous] = hs;
                SavedHistogramState::Native(SavedNative {
                    start_ms,
                    base,
                    previous,
                })
            }
            GAUGE => SavedHistogramState::Gauge,
            other => return Err(format!("unknown histogram kind {other}")),
        };
        out.push(SavedHistogram {
            hash,
            last_t,
            state,
        });
    }
    if at != b.len() {
        return Err(format!("{} unexpected bytes at the end", b.len() - at));
    }
    Ok(out)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn decode(bytes: &[u8]) -> Result<SavedProgress, String> {
    const HEADER: usize = 8 + 8 + 8 + 8;
    let magic = bytes.get(..8).unwrap_or_default();
    if bytes.len() < HEADER + 4 || ![&MAGIC[..], MAGIC_V2, MAGIC_V1].contains(&magic) {
        return Err("unknown format (bad header)".into());
    }
    let v1 = magic == MAGIC_V1;
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != want {
        return Err("checksum mismatch (file damaged)".into());
    }
    let count = u64_at(body, 24);
    let series_end = (count as u128) * ENTRY_LEN as u128 + HEADER as u128;
    let fits = if v1 {
        series_end == body.len() as u128
    } else {
        series_end + 8 <= body.len() as u128
    };
    if !fits {
        return Err(format!(
            "{count} entries announced, {} bytes present",
            body.len()
        ));
    }
    let series_end = series_end as usize;
    let histograms = if v1 {
        Vec::new()
    } else {
        decode_histograms(&body[series_end..], magic == &MAGIC[..])?
    };
    let series = body[HEADER..series_end]
        .chunks_exact(ENTRY_LEN)
        .map(|e| SavedSeries {
            series_ref: u64_at(e, 0),
            labels_hash: u64_at(e, 8),
            last_t: u64_at(e, 16) as i64,
            baseline: (e[24] == 1).then(|| SavedBaseline {
                reset_ts: u64_at(e, 25) as i64,
                reset_value: f64::from_bits(u64_at(e, 33)),
                previous: f64::from_bits(u64_at(e, 41)),
            }),
        })
        .collect();
    Ok(SavedProgress {
        position: WalPosition {
            segment: u64_at(body, 8),
            offset: u64_at(body, 16),
        },
        series,
        histograms,
    })
}

fn decode_legacy(bytes: &[u8]) -> Result<WalPosition, String> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        offset: i64,
    }
    let v: Legacy = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    // The original may have saved a negative offset (its margin applied near the start).
    let offset = v.offset.max(0) as u64;
    Ok(WalPosition {
        segment: offset / LEGACY_SEGMENT_SIZE,
        offset: offset % LEGACY_SEGMENT_SIZE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedProgress {
        SavedProgress {
            position: WalPosition {
                segment: 7,
                offset: 123_456,
            },
            series: vec![
                SavedSeries {
                    series_ref: 1,
                    labels_hash: 99,
                    last_t: 1_700_000_000_000,
                    baseline: None,
                },
                SavedSeries {
                    series_ref: 2,
                    labels_hash: 98,
                    last_t: -5,
                    baseline: Some(SavedBaseline {
                        reset_ts: 1_699_999_999_999,
                        reset_value: 12.5,
                        previous: 40.0,
                    }),
                },
            ],
            histograms: vec![
                SavedHistogram {
                    hash: 0xdead_beef,
                    last_t: 1_700_000_000_500,
                    state: SavedHistogramState::Classic(SavedClassic {
                        start_ms: 1_699_000_000_000,
                        base: SavedSnapshot {
                            count: 3.0,
                            sum: 1.5,
                            buckets: vec![(0.1, 1.0), (f64::INFINITY, 3.0)],
                        },
                        previous: SavedSnapshot {
                            count: 10.0,
                            sum: 4.0,
                            buckets: vec![(0.1, 4.0), (f64::INFINITY, 10.0)],
                        },
                    }),
                },
                SavedHistogram {
                    hash: 0xfeed,
                    last_t: 1_700_000_000_600,
                    state: SavedHistogramState::Native(SavedNative {
                        start_ms: 1_699_000_000_001,
                        base: NativeHistogram {
                            schema: -2,
                            zero_threshold: 1e-128,
                            zero_count: 1.0,
                            count: 4.0,
                            sum: -7.5,
                            positive: vec![(-3, 1.0), (2, 1.0)],
                            negative: vec![(0, 1.0)],
                        },
                        previous: NativeHistogram {
                            schema: 8,
                            count: 9.0,
                            sum: 12.0,
                            positive: vec![(i32::MIN, 2.0), (i32::MAX, 7.0)],
                            ..NativeHistogram::default()
                        },
                    }),
                },
                SavedHistogram {
                    hash: 0xbeef,
                    last_t: 1_700_000_000_700,
                    state: SavedHistogramState::Gauge,
                },
            ],
        }
    }

    #[test]
    fn files_without_native_histograms_are_written_as_version_2() {
        let mut v2 = sample();
        v2.histograms.truncate(1);
        let mut buf = Vec::new();
        encode(&mut buf, v2.position, &v2.histograms, |w| {
            all_series(&v2, w)
        })
        .unwrap();
        // Only classic histograms: written in version 2, without the kind word after each
        // histogram's time, so that earlier versions read it.
        assert_eq!(&buf[..8], MAGIC_V2);
        let at = 8 * 4 + 2 * ENTRY_LEN + 8 + 8 * 2;
        assert_eq!(u64_at(&buf, at), 1_699_000_000_000, "the start time");
        assert_eq!(decode(&buf).unwrap(), v2);
    }

    #[test]
    fn version_1_files_are_still_read() {
        let mut v1 = sample();
        v1.histograms.clear();
        let mut buf = Vec::new();
        encode(&mut buf, v1.position, &v1.histograms, |w| {
            all_series(&v1, w)
        })
        .unwrap();
        // A version 1 file is the same without the histogram count.
        let mut body = buf[..buf.len() - 4 - 8].to_vec();
        body[..8].copy_from_slice(MAGIC_V1);
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&body).unwrap(), v1);
    }

    #[test]
    fn an_impossible_bucket_count_is_rejected() {
        let mut buf = Vec::new();
        let p = sample();
        encode(&mut buf, p.position, &p.histograms, |w| all_series(&p, w)).unwrap();
        let mut body = buf[..buf.len() - 4].to_vec();
        // The base snapshot's bucket count of the one histogram.
        let at = 8 * 4 + 2 * ENTRY_LEN + 8 + 8 * 4 + 8 * 2;
        assert_eq!(u64_at(&body, at), 2);
        body[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&body).unwrap_err().contains("buckets"));
    }

    #[test]
    fn saved_progress_loads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), LoadedProgress::Exact(sample()));
        assert!(!super::super::temporary_path(dir.path(), STATE_FILE).exists());
    }

    #[test]
    fn no_file_is_a_first_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), LoadedProgress::None);
    }

    #[test]
    fn the_original_sidecars_file_is_read_and_written() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(LEGACY_FILE),
            format!("{{\"offset\": {}}}", 3 * LEGACY_SEGMENT_SIZE + 1000),
        )
        .unwrap();
        assert_eq!(
            load(dir.path()).unwrap(),
            LoadedProgress::Legacy(WalPosition {
                segment: 3,
                offset: 1000
            })
        );
        fs::write(dir.path().join(LEGACY_FILE), "{\"offset\": -524288}").unwrap();
        assert_eq!(
            load(dir.path()).unwrap(),
            LoadedProgress::Legacy(WalPosition::default())
        );
        save(dir.path(), &sample()).unwrap();
        let legacy = fs::read_to_string(dir.path().join(LEGACY_FILE)).unwrap();
        let want = 7 * LEGACY_SEGMENT_SIZE + 123_456 - LEGACY_MARGIN;
        assert_eq!(legacy, format!("{{\"offset\":{want}}}"));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample()).unwrap();
        let path = dir.path().join(STATE_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("stackdriver_sidecar.state") && err.contains("checksum"),
            "{err}"
        );
        fs::write(&path, &bytes[..20]).unwrap();
        assert!(load(dir.path()).is_err());
        fs::write(dir.path().join(STATE_FILE), b"").unwrap();
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn truncated_entry_list_is_rejected_not_misread() {
        let mut buf = Vec::new();
        let p = sample();
        encode(&mut buf, p.position, &p.histograms, |w| all_series(&p, w)).unwrap();
        // Claim more entries than present, with a matching checksum.
        let mut body = buf[..buf.len() - 4].to_vec();
        body[24..32].copy_from_slice(&1000u64.to_le_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&body).unwrap_err().contains("entries"));
    }
}
