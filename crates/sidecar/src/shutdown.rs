//! Shutdown: one signal every task of the process watches. Triggered by SIGTERM/SIGINT, by a
//! fatal failure of a task (the HTTP server), or by the reader's end; async tasks await it, and
//! blocking code (the WAL follower, the reader waiting on Prometheus) polls its flag. It only
//! signals; it must never wait for anything or decide what stopping means to a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// The process's shutdown signal; cheap to clone, every clone sees the same signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A signal not triggered yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every task to stop. Triggering twice is harmless.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.token.cancel();
    }

    /// Whether shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Waits until shutdown is asked for.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// The flag blocking code polls (the WAL follower's stop flag): set when triggered.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// A guard that triggers shutdown when dropped (for tasks that must end with their owner).
    pub fn trigger_on_drop(&self) -> TriggerOnDrop {
        TriggerOnDrop(self.clone())
    }
}

/// Triggers its [`Shutdown`] when dropped.
#[derive(Debug)]
pub struct TriggerOnDrop(Shutdown);

impl Drop for TriggerOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger_and_the_flag_follows() {
        let shutdown = Shutdown::new();
        let flag = shutdown.flag();
        let waiter = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { shutdown.triggered().await })
        };
        assert!(!shutdown.is_triggered());
        assert!(!flag.load(Ordering::Relaxed));
        drop(shutdown.clone().trigger_on_drop());
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
        assert!(flag.load(Ordering::Relaxed));
    }
}
