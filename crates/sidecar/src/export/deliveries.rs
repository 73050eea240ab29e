//! Delivery recording: once a batch is done with (accepted, or given up and counted), each
//! tracked point's series state is recorded and the shard's delivery mark written, so that the
//! watermark can pass the points and a restart skips them. It must never send or decide a
//! point's fate; it records what the shard decided.

use std::ops::Range;
use std::sync::Arc;

use prometheus_wal::WalPosition;

use super::batch::Entry;
use crate::model::lanes::lane_of;
use crate::progress::{DeliveryTracker, Mark};

/// How many entries ahead the delivery states are loaded.
const PREFETCH_AHEAD: usize = 8;

/// One shard's delivery bookkeeping.
pub(super) struct Deliveries {
    tracker: Option<Arc<DeliveryTracker>>,
    /// The lanes the shard sends (their delivery marks are this shard's to write).
    lanes: Range<usize>,
    /// Tracked points of the current request per lane (indexed from `lanes.start`).
    completed_by_lane: Vec<u64>,
    /// Identity of the last tracked point of the current batch.
    last_mark: Option<Mark>,
}

impl Deliveries {
    /// Bookkeeping for the shard sending `lanes`, reporting to `tracker` (`None`: untracked).
    pub(super) fn new(tracker: Option<Arc<DeliveryTracker>>, lanes: Range<usize>) -> Deliveries {
        Deliveries {
            tracker,
            completed_by_lane: vec![0; lanes.len()],
            lanes,
            last_mark: None,
        }
    }

    /// A tracked point read at `position`, sample `index` of its record, joined the batch.
    pub(super) fn joined(&mut self, position: WalPosition, index: u64) {
        self.last_mark = Some(Mark { position, index });
    }

    /// The batch is done with: record each tracked point's series state, then let the
    /// watermark pass them.
    pub(super) fn record(&mut self, batch: &mut [Entry]) {
        let Some(tracker) = &self.tracker else {
            return;
        };
        // The delivery states lie far apart: start loading them a few points ahead, ready to
        // be written.
        for entry in batch.iter().take(PREFETCH_AHEAD) {
            if let Some(ack) = &entry.delivery {
                tracker.prefetch(ack);
            }
        }
        for i in 0..batch.len() {
            if let Some(ack) = batch
                .get(i + PREFETCH_AHEAD)
                .and_then(|e| e.delivery.as_ref())
            {
                tracker.prefetch(ack);
            }
            let entry = &mut batch[i];
            if let Some(ack) = entry.delivery.take() {
                tracker.delivered(ack, entry.point.end_ms);
                let lane = lane_of(entry.series.hash);
                if let Some(n) = self
                    .completed_by_lane
                    .get_mut(lane.wrapping_sub(self.lanes.start))
                {
                    *n += 1;
                }
            }
        }
        let start = self.lanes.start;
        let completed = self
            .completed_by_lane
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (start + i, *n));
        tracker.points_completed(self.lanes.clone(), completed, self.last_mark.take());
        self.completed_by_lane.fill(0);
    }
}
