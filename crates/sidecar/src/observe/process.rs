//! Process figures (CPU, memory, file descriptors, threads) and host details, read from Linux's
//! `/proc`; the values behind the standard `process_*` metrics and the `/statusz` header.
//!
//! Reads files only; on systems without `/proc` everything is `None` and the metrics are left
//! out. It must never fail the caller.

use std::fs;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`). It is part of the kernel's ABI and
/// 100 on every architecture Debian supports, so it is not queried at run time.
const USER_HZ: f64 = 100.0;

/// One reading of this process's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Virtual memory size.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft limit on open file descriptors (`None`: unlimited or unreadable).
    pub max_fds: Option<u64>,
    /// OS threads.
    pub threads: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` when it is not there.
    pub fn read() -> Option<ProcessStats> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_boot_time(&s));
        let open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        parse(&stat, &status, &limits, boot_time, open_fds)
    }
}

/// Builds the figures from the text of `/proc/self/{stat,status,limits}`.
fn parse(
    stat: &str,
    status: &str,
    limits: &str,
    boot_time: Option<u64>,
    open_fds: u64,
) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // `fields[0]` is field 3 of proc(5); field N is `fields[N - 3]`.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22);
    Some(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / USER_HZ,
        resident_bytes: status_kib(status, "VmRSS:").unwrap_or(0) * 1024,
        virtual_bytes: status_kib(status, "VmSize:").unwrap_or(0) * 1024,
        open_fds,
        max_fds: parse_max_fds(limits),
        threads: status_kib(status, "Threads:").or(field(20)).unwrap_or(0),
        start_time_seconds: match (boot_time, start_ticks) {
            (Some(boot), Some(ticks)) => Some(boot as f64 + ticks as f64 / USER_HZ),
            _ => None,
        },
    })
}

/// The number after `key` in `/proc/self/status` (kB for memory lines).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Soft and hard limits of open files, as text (`unlimited` where so).
pub fn fd_limits() -> Option<(String, String)> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let mut parts = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace();
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// `(<sysname> <release> <version> <machine> <nodename> <domainname>)`, as the original's
/// start-up line and status page show the host.
pub fn host_details() -> String {
    let read = |name: &str| {
        fs::read_to_string(format!("/proc/sys/kernel/{name}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    if !std::path::Path::new("/proc/sys/kernel/ostype").exists() {
        return format!("({})", std::env::consts::OS);
    }
    format!(
        "({} {} {} {} {} {})",
        read("ostype"),
        read("osrelease"),
        read("version"),
        std::env::consts::ARCH,
        read("hostname"),
        read("domainname"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (stackdriver (x)) S 1 1234 1234 0 -1 4194560 2000 0 0 0 \
                        250 150 0 0 20 0 7 0 360000 99999744 3000 18446744073709551615";
    const STATUS: &str = "Name:\tsidecar\nVmSize:\t   97656 kB\nVmRSS:\t   12000 kB\nThreads:\t7\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            1024                 524288               files\n";

    #[test]
    fn proc_files_give_cpu_memory_fds_and_start_time() {
        let p = parse(STAT, STATUS, LIMITS, Some(1_700_000_000), 9).unwrap();
        assert_eq!(p.cpu_seconds, 4.0);
        assert_eq!(p.resident_bytes, 12000 * 1024);
        assert_eq!(p.virtual_bytes, 97656 * 1024);
        assert_eq!(p.open_fds, 9);
        assert_eq!(p.max_fds, Some(1024));
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_time_seconds, Some(1_700_003_600.0));
    }

    #[test]
    fn garbled_stat_gives_nothing_rather_than_wrong_numbers() {
        assert_eq!(parse("1234 (x S 1", STATUS, LIMITS, None, 0), None);
        assert_eq!(parse("1234 (x) S 1 2", STATUS, LIMITS, None, 0), None);
    }

    #[test]
    fn this_process_can_be_read_on_linux() {
        if cfg!(target_os = "linux") {
            let p = ProcessStats::read().unwrap();
            assert!(
                p.resident_bytes > 0 && p.open_fds > 0 && p.threads > 0,
                "{p:?}"
            );
            assert!(host_details().starts_with("(Linux "), "{}", host_details());
        }
    }
}
