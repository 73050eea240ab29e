//! One sidecar per WAL directory: an exclusive `flock` on `stackdriver_sidecar.lock` in the WAL
//! directory, held for the life of the process (as Prometheus locks its data directory). The
//! kernel releases it when the process ends, however it ends, so a `kill -9` never leaves a
//! stale lock. A second process waits for it, saying who holds it, and takes over from what the
//! first saved. This module must never read or write progress itself.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file's name in the WAL directory (not a segment name: Prometheus ignores it).
pub const LOCK_FILE: &str = "stackdriver_sidecar.lock";

/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How often a waiting process says so at warning level.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// The lock, held until dropped.
#[derive(Debug)]
pub struct WalLock {
    _file: File,
    path: PathBuf,
}

impl WalLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock, as the holder wrote it into the lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// Its process id (in its own PID namespace).
    pub pid: Option<u32>,
    /// The host (or pod) it runs on.
    pub host: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.pid, &self.host) {
            (Some(pid), Some(host)) => write!(f, "pid {pid} on {host}"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            (None, Some(host)) => write!(f, "a process on {host}"),
            (None, None) => f.write_str("another process"),
        }
    }
}

impl Holder {
    fn parse(text: &str) -> Holder {
        let mut holder = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => holder.pid = v.trim().parse().ok(),
                Some(("host", v)) if !v.trim().is_empty() => holder.host = Some(v.trim().into()),
                _ => {}
            }
        }
        holder
    }
}

/// The lock of `wal`, or who holds it now. Errors are those of creating or locking the file.
pub fn try_lock(wal: &Path) -> io::Result<Result<WalLock, Holder>> {
    let path = wal.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            // A holder writing its name at this moment reads as unknown; that is all.
            let _ = file.read_to_string(&mut text);
            return Ok(Err(Holder::parse(&text)));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.rewind()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    write!(file, "pid={}\nhost={}\n", std::process::id(), host.trim())?;
    file.flush()?;
    Ok(Ok(WalLock { _file: file, path }))
}

/// Takes the lock of `wal`, waiting while another process holds it: `waiting` is called with
/// the holder at once and then at every try, and a warning is logged every [`WARN_EVERY`].
/// Returns `None` when `stop` fires first.
pub async fn lock(
    wal: &Path,
    stop: &crate::shutdown::Shutdown,
    mut waiting: impl FnMut(Option<&Holder>),
) -> io::Result<Option<WalLock>> {
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        match try_lock(wal)? {
            Ok(lock) => {
                if warned.is_some() {
                    tracing::info!(lock = %lock.path().display(), "took over the WAL directory's lock");
                }
                waiting(None);
                return Ok(Some(lock));
            }
            Err(holder) => {
                waiting(Some(&holder));
                let now = tokio::time::Instant::now();
                if warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
                    warned = Some(now);
                    tracing::warn!(
                        lock = %wal.join(LOCK_FILE).display(),
                        holder = %holder,
                        "another sidecar is using this WAL directory; waiting for it to exit \
                         (one sidecar per WAL: two would send every point twice)"
                    );
                }
            }
        }
        tokio::select! {
            () = stop.triggered() => return Ok(None),
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_is_free_once_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap().unwrap();
        let holder = try_lock(dir.path()).unwrap().unwrap_err();
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.to_string().starts_with("pid "), "{holder}");
        drop(first);
        let again = try_lock(dir.path()).unwrap();
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn the_holder_is_read_leniently() {
        assert_eq!(Holder::parse(""), Holder::default());
        assert_eq!(Holder::parse("").to_string(), "another process");
        let h = Holder::parse("pid=12\nhost=pod-a\n");
        assert_eq!(h.to_string(), "pid 12 on pod-a");
        assert_eq!(Holder::parse("pid=x\nhost=\n"), Holder::default());
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(try_lock(&dir.path().join("nope")).is_err());
    }
}
