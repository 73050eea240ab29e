//! Listing a WAL directory: segment files and checkpoint directories.
//!
//! Owns the naming rules: a segment is any regular file whose whole name is decimal digits
//! (Prometheus writes 8, older tools 6; any width parses); a checkpoint is a directory named
//! `checkpoint.` + digits (`checkpoint.N.tmp`, still being written, does not match). Everything
//! else (the sidecar's `stackdriver_sidecar.json`, `series_state.json`, ...) is ignored. Never
//! reads file contents; never fails because an entry vanished while listing (Prometheus
//! deletes old segments at any time).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::position::WalPosition;

/// A segment file in a WAL (or checkpoint) directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// The file name parsed as an integer.
    pub index: u64,
    /// Full path of the file.
    pub path: PathBuf,
}

/// A completed checkpoint directory, `checkpoint.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDir {
    /// N: the checkpoint covers segments `<= N`.
    pub index: u64,
    /// Full path of the directory.
    pub path: PathBuf,
}

/// Prefix of checkpoint directory names.
const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// Segment files in `dir`, sorted by index.
pub fn list_segments(dir: impl AsRef<Path>) -> Result<Vec<SegmentFile>, WalError> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for (name, path, is_dir) in entries(dir)? {
        if let (Some(index), false) = (parse_index(&name), is_dir) {
            out.push(SegmentFile { index, path });
        }
    }
    out.sort_by_key(|s| s.index);
    Ok(out)
}

/// Checkpoint directories in `dir`, sorted by index.
pub fn list_checkpoints(dir: impl AsRef<Path>) -> Result<Vec<CheckpointDir>, WalError> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for (name, path, is_dir) in entries(dir)? {
        let Some(index) = name.strip_prefix(CHECKPOINT_PREFIX).and_then(parse_index) else {
            continue;
        };
        if is_dir {
            out.push(CheckpointDir { index, path });
        } else {
            tracing::warn!(path = %path.display(), "ignoring non-directory with a checkpoint name");
        }
    }
    out.sort_by_key(|c| c.index);
    Ok(out)
}

/// The checkpoint with the highest index, if any.
pub fn newest_checkpoint(dir: impl AsRef<Path>) -> Result<Option<CheckpointDir>, WalError> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Total bytes of the segment files in `dir` (checkpoints not included).
pub fn wal_size(dir: impl AsRef<Path>) -> Result<u64, WalError> {
    Ok(list_segments(dir)?.iter().map(|s| file_size(&s.path)).sum())
}

/// Bytes of segment data after `pos`: the rest of segment `pos.segment` and all later
/// segments. This is how far a reader at `pos` is behind the writer.
pub fn bytes_after(dir: impl AsRef<Path>, pos: WalPosition) -> Result<u64, WalError> {
    Ok(list_segments(dir)?
        .iter()
        .filter(|s| s.index >= pos.segment)
        .map(|s| {
            let size = file_size(&s.path);
            if s.index == pos.segment {
                size.saturating_sub(pos.offset)
            } else {
                size
            }
        })
        .sum())
}

/// Size of a file, 0 if it vanished (deleted by a truncation since it was listed).
fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Parses a name made only of decimal digits.
fn parse_index(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// (name, path, is_dir) of the entries of `dir` with UTF-8 names; entries that vanish while
/// being looked at are skipped.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, WalError> {
    let dir_err = |source: io::Error| WalError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => match fs::metadata(&path) {
                Ok(m) => m.is_dir(),
                Err(_) => continue,
            },
            Ok(t) => t.is_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(dir_err(e)),
        };
        out.push((name, path, is_dir));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_segments_and_checkpoints_ignoring_everything_else() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in [
            "00000012",
            "000010",
            "00000011",
            "stackdriver_sidecar.json",
            "12a",
            "series_state.json",
        ] {
            fs::write(d.join(f), b"x").unwrap();
        }
        for cp in [
            "checkpoint.00000009",
            "checkpoint.000011",
            "checkpoint.00000013.tmp",
            "checkpoint.x",
            "00000099",
        ] {
            fs::create_dir(d.join(cp)).unwrap();
        }
        fs::write(d.join("checkpoint.00000020"), b"not a dir").unwrap();

        let segs: Vec<u64> = list_segments(d).unwrap().iter().map(|s| s.index).collect();
        assert_eq!(segs, vec![10, 11, 12]);
        let cps: Vec<u64> = list_checkpoints(d)
            .unwrap()
            .iter()
            .map(|c| c.index)
            .collect();
        assert_eq!(cps, vec![9, 11]);
        let newest = newest_checkpoint(d).unwrap().unwrap();
        assert_eq!(newest.path, d.join("checkpoint.000011"));
        assert_eq!(wal_size(d).unwrap(), 3);
    }

    #[test]
    fn bytes_after_counts_the_rest_of_the_wal() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("00000001"), vec![0u8; 100]).unwrap();
        fs::write(tmp.path().join("00000002"), vec![0u8; 50]).unwrap();
        let at = |segment, offset| WalPosition { segment, offset };
        assert_eq!(bytes_after(tmp.path(), at(1, 40)).unwrap(), 110);
        assert_eq!(bytes_after(tmp.path(), at(2, 50)).unwrap(), 0);
        assert_eq!(bytes_after(tmp.path(), at(0, 0)).unwrap(), 150);
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let err = list_segments("/nonexistent/wal").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/wal"), "{err}");
    }

    #[test]
    fn index_parsing_accepts_only_digits() {
        assert_eq!(parse_index("00000000"), Some(0));
        assert_eq!(parse_index("123"), Some(123));
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("+1"), None);
        assert_eq!(parse_index("99999999999999999999999"), None);
    }
}
