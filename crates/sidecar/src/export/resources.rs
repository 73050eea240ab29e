//! Process-wide sharing of the encoded pieces many series have in common: every series scraped
//! from one target has the same resource, and every series of a metric the same metric type, so
//! those protobuf bytes are kept once and referenced by each series' prototype (about a hundred
//! and fifty bytes per series saved). It only stores bytes; it must never decide what they
//! mean.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use ahash::AHashMap;

/// Encoded resources by hash; entries whose last prototype is gone are pruned as it grows.
#[derive(Default)]
struct Table {
    by_hash: AHashMap<u64, Weak<[u8]>>,
    prune_at: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// The shared copy of `bytes` (made now if no live one exists).
pub fn share(bytes: &[u8]) -> Arc<[u8]> {
    let hash = xxhash_rust::xxh3::xxh3_64(bytes);
    let mut guard = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = guard.get_or_insert_with(Table::default);
    if let Some(existing) = table.by_hash.get(&hash).and_then(Weak::upgrade)
        && *existing == *bytes
    {
        return existing;
    }
    if table.by_hash.len() >= table.prune_at {
        table.by_hash.retain(|_, w| w.strong_count() > 0);
        table.prune_at = (table.by_hash.len() * 2).max(1024);
    }
    let shared: Arc<[u8]> = Arc::from(bytes);
    table.by_hash.insert(hash, Arc::downgrade(&shared));
    shared
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
}
