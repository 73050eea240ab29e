//! Fault injection: the failures a test or a demo asks the emulator to pretend.
//!
//! Owns the random choices (a share of calls failing with a chosen code, a share of series
//! refused as partial failures) and the outage window, all from [`EmulatorConfig`]. It must never
//! judge a request on its merits: real rules live in [`crate::create`] and [`crate::validate`].

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use tonic::Status;

use crate::EmulatorConfig;

/// The state of injected faults: when serving began, and the random generator.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    started: OnceLock<Instant>,
    rng: Mutex<Option<u64>>,
}

impl Faults {
    /// Marks the start of serving (the outage window counts from the first call).
    pub(crate) fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// The failure this call answers with instead of being handled, if any.
    pub(crate) fn call_fault(&self, cfg: &EmulatorConfig) -> Option<Status> {
        if let (Some(outage), Some(started)) = (cfg.outage, self.started.get()) {
            let since = started.elapsed();
            if since >= outage.after && since < outage.after + outage.duration {
                return Some(Status::unavailable(
                    "The service is currently unavailable (injected outage).",
                ));
            }
        }
        (cfg.fault_ratio > 0.0 && self.draw(cfg) < cfg.fault_ratio).then(|| {
            Status::new(
                cfg.fault_code,
                format!("injected failure ({:?})", cfg.fault_code),
            )
        })
    }

    /// Which of `series` series of a handled request are refused as an injected partial failure.
    pub(crate) fn refused_series(&self, cfg: &EmulatorConfig, series: usize) -> Vec<bool> {
        if cfg.partial_failure_ratio <= 0.0 {
            return vec![false; series];
        }
        (0..series)
            .map(|_| self.draw(cfg) < cfg.partial_failure_ratio)
            .collect()
    }

    /// A uniform number in [0, 1) from a xorshift generator seeded with `cfg.fault_seed`.
    fn draw(&self, cfg: &EmulatorConfig) -> f64 {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut x = rng.unwrap_or(cfg.fault_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *rng = Some(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_share_of_failed_calls_follows_the_ratio() {
        let cfg = EmulatorConfig {
            fault_ratio: 0.3,
            ..EmulatorConfig::default()
        };
        let faults = Faults::default();
        let failed = (0..10_000)
            .filter(|_| faults.call_fault(&cfg).is_some())
            .count();
        assert!((2_700..3_300).contains(&failed), "{failed}");
    }

    #[test]
    fn calls_fail_during_the_outage_only() {
        let cfg = EmulatorConfig {
            outage: Some(crate::config::Outage {
                after: Duration::ZERO,
                duration: Duration::from_millis(200),
            }),
            ..EmulatorConfig::default()
        };
        let faults = Faults::default();
        assert!(faults.call_fault(&cfg).is_none(), "not serving yet");
        faults.start();
        assert_eq!(
            faults.call_fault(&cfg).map(|s| s.code()),
            Some(tonic::Code::Unavailable)
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(faults.call_fault(&cfg).is_none());
    }
}
