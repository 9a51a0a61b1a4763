//! What reads keep between them, and the one rule that keeps it true.
//!
//! Verify reads parts of the state that never change once written: the log's leaves
//! and complete nodes (the log is append-only), the certification a leaf records. Each
//! cache of them is a bounded LRU ([`Kept`]). Only replacing the whole state (a Raft
//! snapshot or a backup installed) changes such a part, so every cache of one store
//! shares one [`Generation`]: a read takes it BEFORE it begins its transaction, and an
//! install advances it after its commit, then empties every cache. What a read offers
//! under an older generation is dropped, so a read that began before the install cannot
//! put a part of the replaced state back.
//!
//! Why the order holds: [`Kept::keep`] compares the generation while it holds the
//! cache's lock, and [`Kept::forget_all`] takes that lock after the generation moved.
//! An offer that saw the old generation went in before the emptying; one that comes
//! after sees the new generation and is dropped.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The state's generation, shared by every cache of one store.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    /// What a read takes before it begins its transaction.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Called after the state was replaced, BEFORE the caches are emptied.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A bounded cache of parts of the state that never change within a generation.
pub(crate) struct Kept<K: Hash + Eq, V> {
    generation: Generation,
    entries: Mutex<lru::LruCache<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Kept<K, V> {
    pub fn new(generation: &Generation, capacity: usize) -> Self {
        let capacity = std::num::NonZeroUsize::new(capacity.max(1)).expect("at least 1");
        Kept { generation: generation.clone(), entries: Mutex::new(lru::LruCache::new(capacity)) }
    }

    /// The cache's lock, also for a caller that looks up many keys in a row
    /// ([`Kept::keep_held`] to keep under it). Never held while the store is read.
    pub fn hold(&self) -> MutexGuard<'_, lru::LruCache<K, V>> {
        // A cache: a panic while it was held leaves at worst a missing entry.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.hold().get(key).cloned()
    }

    /// [`Kept::keep`] under a lock [`Kept::hold`] gave.
    pub fn keep_held(&self, entries: &mut lru::LruCache<K, V>, read_began: u64, key: K, value: V) {
        if self.generation.current() == read_began {
            entries.put(key, value);
        }
    }

    /// Keeps `value`, read by a read that took generation `read_began`, unless the state
    /// was replaced since.
    pub fn keep(&self, read_began: u64, key: K, value: V) {
        self.keep_held(&mut self.hold(), read_began, key, value);
    }

    /// The kept value of `key`, or `load`'s, kept for later reads.
    pub fn get_or_load<E>(&self, read_began: u64, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(kept) = self.get(&key) {
            return Ok(kept);
        }
        let loaded = load()?;
        self.keep(read_began, key, loaded.clone());
        Ok(loaded)
    }

    /// Empties the cache (after [`Generation::advance`]).
    pub fn forget_all(&self) {
        self.hold().clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.hold().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_older_than_the_state_keeps_nothing_and_a_current_one_does() {
        let generation = Generation::default();
        let kept: Kept<u64, &str> = Kept::new(&generation, 4);
        let stale = generation.current();
        kept.keep(stale, 1, "old state");
        generation.advance();
        kept.forget_all();
        assert_eq!(kept.get(&1), None, "emptied with the state it came from");
        kept.keep(stale, 2, "old state, offered late");
        assert_eq!(kept.len(), 0, "an offer from a read that began before the install is dropped");
        let loaded = kept.get_or_load::<()>(generation.current(), 3, || Ok("new state")).unwrap();
        assert_eq!(loaded, "new state");
        assert_eq!(kept.get_or_load::<()>(generation.current(), 3, || Err(())).unwrap(), "new state", "kept, not loaded again");
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_forgets_the_least_recent() {
        let generation = Generation::default();
        let kept: Kept<u64, u64> = Kept::new(&generation, 3);
        for key in 0..3 {
            kept.keep(generation.current(), key, key * 10);
        }
        assert_eq!(kept.get(&0), Some(0), "touch 0: 1 is now the least recent");
        kept.keep(generation.current(), 3, 30);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.get(&1), None);
        assert_eq!(kept.get(&0), Some(0));
    }
}
