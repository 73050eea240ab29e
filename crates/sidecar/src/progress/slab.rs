//! Delivery states of WAL series, one 64-byte slot each in a slab, named by a dense [`AckId`].
//!
//! Owns the slots, their locking, and when a released id is handed out again: only once no
//! queued point can still name it. Must never decide what was delivered, and never does I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::file::{SavedBaseline, SavedSeries};

/// Segment `k` holds `FIRST << k` slots: the slab grows by doubling without moving a slot.
const FIRST_BITS: u32 = 10;
const FIRST: u64 = 1 << FIRST_BITS;
/// Enough segments for every `u32` id.
const SEGMENTS: usize = 23;

/// The name of one series' delivery state in the slab. Queued points carry it rather than a
/// reference-counted pointer, so queuing a point and completing it touch no reference count:
/// the reader never touches the slot at all, and the shard that records the delivery can
/// prefetch it by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckId(u32);

/// The last delivered point's time and the counter baseline it was measured from. Every field
/// is zero in a fresh slot: `last_t` holds the time with its sign bit flipped (zero is "none",
/// `i64::MIN`), and `has_baseline` says whether the other three mean anything.
#[derive(Debug, Default)]
#[repr(align(64))]
struct AckSlot {
    lock: AtomicU32,
    has_baseline: AtomicU32,
    last_t: AtomicU64,
    reset_ts: AtomicU64,
    reset_value: AtomicU64,
    previous: AtomicU64,
    labels_hash: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<AckSlot>() == 64);

/// The slot's fields as plain values (read or written under its lock).
#[derive(Debug, Clone, Copy)]
struct State {
    last_t: i64,
    baseline: Option<SavedBaseline>,
    labels_hash: u64,
}

const SIGN: u64 = 1 << 63;
const R: Ordering = Ordering::Relaxed;

impl AckSlot {
    fn locked<T>(&self, f: impl FnOnce(&AckSlot) -> T) -> T {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Held for a handful of stores: contention is rare and short.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let out = f(self);
        self.lock.store(0, Ordering::Release);
        out
    }

    /// Reads the fields; call under the lock.
    fn load(&self) -> State {
        let baseline = (self.has_baseline.load(R) != 0).then(|| SavedBaseline {
            reset_ts: self.reset_ts.load(R) as i64,
            reset_value: f64::from_bits(self.reset_value.load(R)),
            previous: f64::from_bits(self.previous.load(R)),
        });
        State {
            last_t: (self.last_t.load(R) ^ SIGN) as i64,
            baseline,
            labels_hash: self.labels_hash.load(R),
        }
    }

    /// Writes the fields; call under the lock.
    fn store(&self, s: State) {
        self.last_t.store(s.last_t as u64 ^ SIGN, R);
        self.labels_hash.store(s.labels_hash, R);
        self.set_baseline(s.baseline);
    }

    fn set_baseline(&self, baseline: Option<SavedBaseline>) {
        match baseline {
            Some(b) => {
                self.reset_ts.store(b.reset_ts as u64, R);
                self.reset_value.store(b.reset_value.to_bits(), R);
                self.previous.store(b.previous.to_bits(), R);
                self.has_baseline.store(1, R);
            }
            None => self.has_baseline.store(0, R),
        }
    }
}

/// Ids in and out of use.
#[derive(Debug, Default)]
struct Alloc {
    /// Ids below this have been handed out at least once.
    next: u64,
    /// Ids free to hand out again.
    free: Vec<AckId>,
    /// Released ids, with the record number every record before which must be delivered
    /// before the id is free (non-decreasing).
    released: VecDeque<(u64, AckId)>,
}

/// The slab. Slots never move; segments are allocated zeroed (untouched pages cost no memory)
/// as the number of series grows. A slot is written under its own tiny lock (the shard sending
/// the series, the reader when it skips or keeps a sample as a baseline, the progress keeper
/// reading a snapshot).
#[derive(Debug, Default)]
pub struct AckSlab {
    segments: [OnceLock<Box<[AckSlot]>>; SEGMENTS],
    alloc: Mutex<Alloc>,
}

/// Segment and index in it of `id`.
fn locate(id: AckId) -> (usize, usize) {
    let b = u64::from(id.0) + FIRST;
    let k = 63 - b.leading_zeros() - FIRST_BITS;
    (k as usize, (b - (FIRST << k)) as usize)
}

/// `len` fresh slots, from memory the allocator hands out zeroed: for a large segment, pages
/// straight from the kernel, which take no memory until a slot in them is used.
fn zeroed_segment(len: usize) -> Box<[AckSlot]> {
    let layout = match std::alloc::Layout::array::<AckSlot>(len) {
        Ok(layout) if layout.size() > 0 => layout,
        _ => return (0..len).map(|_| AckSlot::default()).collect(),
    };
    // SAFETY: the layout's size is not zero.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<AckSlot>();
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` slots, which a
    // `Box<[AckSlot]>` of that length frees with; every slot is initialised, since an
    // `AckSlot` is only atomic integers, for which all-zero bytes are a valid value (and the
    // slot's fresh state).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

impl AckSlab {
    fn slot(&self, id: AckId) -> Option<&AckSlot> {
        let (k, i) = locate(id);
        self.segments.get(k)?.get()?.get(i)
    }

    /// A slot for a series with `labels_hash`, starting from what a previous run saved for it;
    /// released ids are reused once every record before their release number is delivered
    /// (`delivered_before`: the first record not known to be delivered). `None` only when
    /// every `u32` id is in use.
    pub fn allocate(
        &self,
        delivered_before: u64,
        labels_hash: u64,
        restored: Option<&SavedSeries>,
    ) -> Option<AckId> {
        let id = {
            let mut a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
            while let Some(&(before, id)) = a.released.front() {
                if before > delivered_before {
                    break;
                }
                a.released.pop_front();
                a.free.push(id);
            }
            match a.free.pop() {
                Some(id) => id,
                None => {
                    let id = AckId(u32::try_from(a.next).ok()?);
                    a.next += 1;
                    id
                }
            }
        };
        let (k, i) = locate(id);
        let segment = self.segments[k].get_or_init(|| zeroed_segment((FIRST << k) as usize));
        segment[i].locked(|s| {
            s.store(State {
                last_t: restored.map_or(i64::MIN, |r| r.last_t),
                baseline: restored.and_then(|r| r.baseline),
                labels_hash,
            })
        });
        Some(id)
    }

    /// `id` is no longer the state of its series; no record numbered `before` or later can
    /// have queued a point naming it.
    pub fn release(&self, id: AckId, before: u64) {
        let mut a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        a.released.push_back((before, id));
    }

    /// Records that the series' point ending at `t` was handled for good (sent, dropped, or
    /// used as the baseline), with the counter baseline it was measured from.
    pub fn delivered(&self, id: AckId, t: i64, baseline: Option<SavedBaseline>) {
        let Some(slot) = self.slot(id) else { return };
        slot.locked(|s| {
            if t >= (s.last_t.load(R) ^ SIGN) as i64 {
                s.last_t.store(t as u64 ^ SIGN, R);
                if baseline.is_some() {
                    s.set_baseline(baseline);
                }
            }
        });
    }

    /// The labels hash the slot was allocated for.
    pub fn labels_hash(&self, id: AckId) -> Option<u64> {
        self.slot(id).map(|s| s.locked(AckSlot::load).labels_hash)
    }

    /// What to save for the series `series_ref` whose state `id` is.
    pub fn snapshot(&self, id: AckId, series_ref: u64) -> Option<SavedSeries> {
        let s = self.slot(id)?.locked(AckSlot::load);
        Some(SavedSeries {
            series_ref,
            labels_hash: s.labels_hash,
            last_t: s.last_t,
            baseline: s.baseline,
        })
    }

    /// Asks the CPU to load the slot of `id`, ready to be written.
    #[inline]
    pub fn prefetch(&self, id: AckId) {
        if let Some(slot) = self.slot(id) {
            crate::prefetch::prefetch_write(slot);
        }
    }

    /// Ids handed out and not released.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        let a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        a.next as usize - a.free.len() - a.released.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_distinct_slots_across_segments() {
        assert_eq!(locate(AckId(0)), (0, 0));
        assert_eq!(locate(AckId(1023)), (0, 1023));
        assert_eq!(locate(AckId(1024)), (1, 0));
        assert_eq!(locate(AckId(3071)), (1, 2047));
        assert_eq!(locate(AckId(3072)), (2, 0));
        let (k, i) = locate(AckId(u32::MAX));
        assert!(k < SEGMENTS && i < (FIRST << k) as usize, "{k} {i}");
    }

    #[test]
    fn a_slot_keeps_the_latest_delivery_and_its_baseline() {
        let slab = AckSlab::default();
        let id = slab.allocate(0, 7, None).unwrap();
        assert_eq!(slab.snapshot(id, 3).unwrap().last_t, i64::MIN);
        let b = SavedBaseline {
            reset_ts: 5,
            reset_value: 1.5,
            previous: 2.5,
        };
        slab.delivered(id, 100, Some(b));
        slab.delivered(id, 90, None); // older: ignored
        slab.delivered(id, 110, None); // a gauge-like point keeps the baseline
        let s = slab.snapshot(id, 3).unwrap();
        assert_eq!((s.series_ref, s.labels_hash, s.last_t), (3, 7, 110));
        assert_eq!(s.baseline, Some(b));
        // Negative times order correctly too.
        let other = slab.allocate(0, 8, None).unwrap();
        slab.delivered(other, -5, None);
        slab.delivered(other, -10, None);
        assert_eq!(slab.snapshot(other, 4).unwrap().last_t, -5);
        assert_eq!(slab.labels_hash(other), Some(8));
    }

    #[test]
    fn a_released_id_is_reused_only_after_its_records_are_delivered() {
        let slab = AckSlab::default();
        let a = slab.allocate(0, 1, None).unwrap();
        slab.delivered(a, 50, None);
        slab.release(a, 10);
        let b = slab.allocate(9, 2, None).unwrap();
        assert_ne!(a, b, "record 9 may still hold a point naming it");
        let c = slab.allocate(10, 3, None).unwrap();
        assert_eq!(a, c);
        // Reused slots start afresh.
        let s = slab.snapshot(c, 1).unwrap();
        assert_eq!((s.labels_hash, s.last_t, s.baseline), (3, i64::MIN, None));
        assert_eq!(slab.in_use(), 2);
    }

    #[test]
    fn restored_state_and_many_series() {
        let slab = AckSlab::default();
        let saved = SavedSeries {
            series_ref: 9,
            labels_hash: 4,
            last_t: 9999,
            baseline: None,
        };
        let ids: Vec<AckId> = (0..5000)
            .map(|i| slab.allocate(0, i, (i == 4321).then_some(&saved)).unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            slab.delivered(*id, i as i64, None);
        }
        for (i, id) in ids.iter().enumerate() {
            let s = slab.snapshot(*id, 0).unwrap();
            let want = if i == 4321 { 9999 } else { i as i64 };
            assert_eq!((s.labels_hash, s.last_t), (i as u64, want));
        }
    }

    #[test]
    fn concurrent_writers_never_lose_the_newest_time() {
        let slab = std::sync::Arc::new(AckSlab::default());
        let id = slab.allocate(0, 0, None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let slab = slab.clone();
                std::thread::spawn(move || {
                    for t in 0..20_000i64 {
                        slab.delivered(id, t * 4 + w, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(slab.snapshot(id, 0).unwrap().last_t, 19_999 * 4 + 3);
    }
}
