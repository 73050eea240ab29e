//! The last few warnings and errors logged, kept in memory for `/statusz`.
//!
//! A `tracing` layer beside the log output: it looks only at events of level WARN and above, so
//! the lock it takes is never on the per-sample path. It keeps a bounded number of entries and
//! must never block logging for long or grow without bound.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Entries kept.
pub const CAPACITY: usize = 20;

/// One warning or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentEvent {
    /// When it was logged.
    pub at: SystemTime,
    /// `WARN` or `ERROR`.
    pub level: Level,
    /// The module that logged it.
    pub target: String,
    /// The message followed by its fields as `key=value`.
    pub text: String,
}

/// Shared handle to the recent warnings and errors; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RecentErrors {
    events: Arc<Mutex<VecDeque<RecentEvent>>>,
}

impl RecentErrors {
    /// The entries, newest first.
    pub fn newest_first(&self) -> Vec<RecentEvent> {
        self.events
            .lock()
            .map(|e| e.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds an entry, forgetting the oldest beyond [`CAPACITY`].
    pub fn push(&self, event: RecentEvent) {
        if let Ok(mut events) = self.events.lock() {
            if events.len() >= CAPACITY {
                events.pop_front();
            }
            events.push_back(event);
        }
    }

    /// A layer that records warnings and errors here.
    pub fn layer(&self) -> RecentErrorsLayer {
        RecentErrorsLayer {
            recent: self.clone(),
        }
    }
}

/// The `tracing` layer feeding [`RecentErrors`].
#[derive(Debug, Clone)]
pub struct RecentErrorsLayer {
    recent: RecentErrors,
}

impl<S: Subscriber> Layer<S> for RecentErrorsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut text = TextVisitor::default();
        event.record(&mut text);
        self.recent.push(RecentEvent {
            at: SystemTime::now(),
            level,
            target: event.metadata().target().to_string(),
            text: text.finish(),
        });
    }
}

#[derive(Default)]
struct TextVisitor {
    message: String,
    fields: String,
}

impl TextVisitor {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for TextVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field, &format!("{value:?}"));
        }
    }
}

impl TextVisitor {
    fn field(&mut self, field: &Field, value: &str) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_are_kept_newest_first_and_info_is_not() {
        let recent = RecentErrors::default();
        let subscriber = tracing_subscriber::registry().with(recent.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("routine");
            tracing::warn!(shard = 2, error = %"boom", "request failed");
            tracing::error!("fatal");
        });
        let got = recent.newest_first();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].level, Level::ERROR);
        assert_eq!(got[0].text, "fatal");
        assert_eq!(got[1].text, "request failed shard=2 error=boom");
    }

    #[test]
    fn only_the_last_entries_are_kept() {
        let recent = RecentErrors::default();
        for i in 0..CAPACITY + 5 {
            recent.push(RecentEvent {
                at: SystemTime::UNIX_EPOCH,
                level: Level::WARN,
                target: "t".into(),
                text: i.to_string(),
            });
        }
        let got = recent.newest_first();
        assert_eq!(got.len(), CAPACITY);
        assert_eq!(got[0].text, (CAPACITY + 4).to_string());
        assert_eq!(got[CAPACITY - 1].text, "5");
    }
}
