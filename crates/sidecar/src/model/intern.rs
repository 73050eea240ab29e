//! Interning: one shared copy of values many series have in common. Every series scraped from
//! one target has the same encoded resource, every series of a metric the same metric type,
//! and WAL series that map to one Cloud Monitoring series share one prototype. Entries are
//! weak: a value lives as long as its last user, and dead entries are pruned as the table
//! grows. It only stores; it must never decide what the values mean.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use ahash::AHashMap;

/// Live values by a hash of their content.
pub struct Interner<T: ?Sized> {
    by_hash: AHashMap<u64, Weak<T>>,
    prune_at: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Interner<T> {
        Interner {
            by_hash: AHashMap::new(),
            prune_at: 0,
        }
    }
}

impl<T: ?Sized> Interner<T> {
    /// The live value stored under `hash` if `same` says it equals `wanted`; otherwise the
    /// value `make` makes of `wanted`, stored under `hash` from now on.
    pub fn intern<V>(
        &mut self,
        hash: u64,
        wanted: V,
        same: impl FnOnce(&T, &V) -> bool,
        make: impl FnOnce(V) -> Arc<T>,
    ) -> Arc<T> {
        if let Some(existing) = self.by_hash.get(&hash).and_then(Weak::upgrade)
            && same(&existing, &wanted)
        {
            return existing;
        }
        if self.by_hash.len() >= self.prune_at {
            self.by_hash.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (self.by_hash.len() * 2).max(1024);
        }
        let shared = make(wanted);
        self.by_hash.insert(hash, Arc::downgrade(&shared));
        shared
    }

    /// Entries in the table, dead ones not yet pruned included.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.by_hash.len()
    }
}

/// Encoded pieces shared process-wide (resources, metric types).
static BYTES: Mutex<Option<Interner<[u8]>>> = Mutex::new(None);

/// The shared copy of `bytes` (made now if no live one exists).
pub fn share(bytes: &[u8]) -> Arc<[u8]> {
    let hash = xxhash_rust::xxh3::xxh3_64(bytes);
    let mut guard = BYTES.lock().unwrap_or_else(PoisonError::into_inner);
    guard.get_or_insert_with(Interner::default).intern(
        hash,
        bytes,
        |existing, bytes| existing == *bytes,
        Arc::from,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_are_shared_while_alive() {
        let a = share(b"resource one");
        let b = share(b"resource one");
        assert!(Arc::ptr_eq(&a, &b));
        let c = share(b"resource two");
        assert_eq!(&*c, b"resource two");
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        // Gone with its last user: a new copy, equal in content.
        assert_eq!(&*share(b"resource one"), b"resource one");
    }

    #[test]
    fn a_hash_collision_keeps_both_values_correct() {
        let mut table: Interner<str> = Interner::default();
        let a = table.intern(7, "a", |v, w| v == *w, Arc::from);
        let b = table.intern(7, "b", |v, w| v == *w, Arc::from);
        assert_eq!((&*a, &*b), ("a", "b"));
    }

    #[test]
    fn dead_entries_are_pruned_as_the_table_grows() {
        let mut table: Interner<u64> = Interner::default();
        for i in 0..5000u64 {
            drop(table.intern(i, i, |v, w| v == w, Arc::new));
        }
        assert!(table.entries() <= 2048, "{}", table.entries());
    }
}
