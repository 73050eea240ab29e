//! `--stackdriver.use-restricted-ips`: connections go to Google's restricted VIP addresses
//! (`restricted.googleapis.com`, 199.36.153.4/30, the range VPC Service Controls require) on port
//! 443, whatever the API host resolves to and whatever port its URL gives; the TLS name and the
//! `:authority` stay the API host's. The same four addresses and port as the original (its
//! manual resolver). Successive connections take the addresses in turn from a random start, and
//! a connection that fails moves on to the next address. This module only chooses addresses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The restricted VIP addresses.
pub const RESTRICTED_VIPS: [&str; 4] = [
    "199.36.153.4:443",
    "199.36.153.5:443",
    "199.36.153.6:443",
    "199.36.153.7:443",
];

/// Replaces [`RESTRICTED_VIPS`] (comma-separated `ip:port`), so that the behaviour can be
/// exercised where those addresses cannot be reached, as in tests.
pub const VIPS_OVERRIDE_ENV: &str = "STACKDRIVER_SIDECAR_RESTRICTED_VIPS";

/// The addresses to connect to, in turn.
#[derive(Debug, Clone)]
pub struct Addresses {
    all: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
}

impl Addresses {
    /// The restricted VIPs, or those of [`VIPS_OVERRIDE_ENV`] when it is set; an error names a
    /// malformed override.
    pub fn restricted() -> Result<Addresses, String> {
        let listed = match std::env::var(VIPS_OVERRIDE_ENV) {
            Ok(list) if !list.trim().is_empty() => list,
            _ => RESTRICTED_VIPS.join(","),
        };
        let all = listed
            .split(',')
            .map(|a| {
                a.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("{VIPS_OVERRIDE_ENV}: {a:?} is not ip:port: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
        Ok(Addresses {
            next: Arc::new(AtomicUsize::new(start % all.len().max(1))),
            all: all.into(),
        })
    }

    /// Every address, starting with the one whose turn it is (each call moves the turn on).
    pub fn in_turn(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let first = self.next.fetch_add(1, Relaxed);
        (0..self.all.len()).map(move |i| self.all[(first + i) % self.all.len()])
    }

    /// How the addresses read in a log line.
    pub fn describe(&self) -> String {
        let all: Vec<String> = self.all.iter().map(ToString::to_string).collect();
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vips_are_taken_in_turn_and_each_turn_lists_them_all() {
        let a = Addresses {
            all: RESTRICTED_VIPS
                .iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<_>>()
                .into(),
            next: Arc::new(AtomicUsize::new(3)),
        };
        let first: Vec<String> = a.in_turn().map(|s| s.to_string()).collect();
        assert_eq!(
            first,
            [
                "199.36.153.7:443",
                "199.36.153.4:443",
                "199.36.153.5:443",
                "199.36.153.6:443"
            ]
        );
        assert_eq!(a.in_turn().next().unwrap().to_string(), "199.36.153.4:443");
        assert!(a.describe().starts_with("199.36.153.4:443, "));
    }
}
