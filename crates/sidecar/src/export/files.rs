//! Store-in-files mode (`--stackdriver.store-in-files-directory`): requests are appended to local
//! files instead of being sent, byte-compatible with the original's files.
//!
//! Each shard gets its own new file `<dir>/<random digits>.txt`, created exclusively with mode
//! 0600 (the directory is created with mode 0700 when missing), and every request is appended as
//! the protobuf encoding of its `CreateTimeSeriesRequest` without the `name` field, with no
//! delimiter: read as one message, a file is one request holding every series. This module must
//! never batch or retry: write errors are reported as permanent failures, as the original's were.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tonic::Code;

use super::client::{SendError, TimeSeriesSink};
use super::request::without_name;

/// Writes requests to one file per shard in a directory.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    files: Mutex<HashMap<usize, File>>,
}

impl FileSink {
    /// Prepares the directory (created with mode 0700 when missing); files are created at each
    /// shard's first request.
    pub fn new(dir: &Path) -> io::Result<FileSink> {
        if !dir.is_dir() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        Ok(FileSink {
            dir: dir.to_path_buf(),
            files: Mutex::new(HashMap::new()),
        })
    }

    /// The files written so far, by shard.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.retain(|p| p.extension().is_some_and(|e| e == "txt"));
        paths.sort();
        paths
    }

    fn write(&self, shard: usize, request: &[u8]) -> io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let file = match files.entry(shard) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(create_unique(&self.dir)?),
        };
        file.write_all(without_name(request))
    }
}

/// Creates `<dir>/<random digits>.txt`, never reusing an existing name.
fn create_unique(dir: &Path) -> io::Result<File> {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    for _ in 0..100 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let name = format!("{}.txt", (seed >> 32) as u32);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(&name))
        {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no unused file name found",
    ))
}

impl TimeSeriesSink for FileSink {
    async fn create_time_series(&self, request: Bytes) -> Result<(), SendError> {
        self.create_time_series_from(0, request).await
    }

    async fn create_time_series_from(&self, shard: usize, request: Bytes) -> Result<(), SendError> {
        self.write(shard, &request).map_err(|err| {
            tracing::warn!(dir = %self.dir.display(), error = %err, "writing a request to a file failed");
            SendError::local(
                Code::Internal,
                format!("writing to {}: {err}", self.dir.display()),
                false,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::request::RequestBuilder;
    use crate::model::{Point, PointKind, PointValue, SeriesPrototype};
    use gcm_api::monitoring::CreateTimeSeriesRequest;
    use prost::Message;
    use std::os::unix::fs::PermissionsExt;

    fn request(value: f64) -> Bytes {
        let series = SeriesPrototype::new(
            "external.googleapis.com/prometheus/up".into(),
            &[],
            "generic_task",
            &[("job", "j".into())],
            PointKind::GaugeDouble,
        );
        let mut b = RequestBuilder::default();
        b.start("projects/p");
        b.push(
            &series,
            Point {
                start_ms: None,
                end_ms: 1_000,
                value: PointValue::Double(value),
            },
        );
        Bytes::copy_from_slice(b.bytes())
    }

    #[tokio::test]
    async fn each_shard_appends_requests_without_name_to_its_own_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let sink = FileSink::new(&dir).unwrap();
        sink.create_time_series_from(0, request(1.0)).await.unwrap();
        sink.create_time_series_from(1, request(2.0)).await.unwrap();
        sink.create_time_series_from(0, request(3.0)).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let paths = sink.paths();
        assert_eq!(paths.len(), 2);
        let mut series_per_file = Vec::new();
        for path in &paths {
            assert_eq!(mode(path), 0o600);
            let name = path.file_stem().unwrap().to_str().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_digit()), "{name}");
            // Concatenated messages read as one request holding every series.
            let req = CreateTimeSeriesRequest::decode(&*std::fs::read(path).unwrap()).unwrap();
            assert_eq!(req.name, "");
            series_per_file.push(req.time_series.len());
        }
        series_per_file.sort();
        assert_eq!(series_per_file, [1, 2]);
    }
}
