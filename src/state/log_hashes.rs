//! The Merkle log's hashes kept between reads.
//!
//! Every verify answers with an inclusion proof and the root it leads to: about
//! 2·log2(n) node lookups in the state store and the hashes of the tree's right edge,
//! recomputed on each read (14 % of a node's time under verify by hash, stop 34's
//! profile). Neither can change: a complete node is written once and never again (the
//! tree is append-only), and the hash of leaves `[start, end)` is fixed once leaf
//! `end - 1` exists. So a hash read or computed once is kept here, whatever tree size
//! later reads ask about: the upper levels, which every proof shares, and the right
//! edge of the current size stay in memory; redb is read for what is new.
//!
//! Only committed nodes may come in: [`KeptNodes`] wraps a read transaction's store,
//! never a write transaction's (whose nodes an abort would take back). Replacing the
//! whole state (a snapshot or a backup restored) empties what is kept; a read that began
//! before the replacement offers its hashes under the old generation, and they are
//! dropped (`super::kept`).

use std::cell::RefCell;
use std::sync::MutexGuard;

use super::kept::{Generation, Kept};
use crate::tlog::{self, NodeStore};

/// Hashes kept at most, nodes and computed ranges together: about 100 bytes each with
/// the LRU's bookkeeping (6.5 MiB). The upper levels of a tree of 10 million leaves
/// (levels 10 and up) are 20,000 nodes.
pub(crate) const LOG_HASHES_KEPT: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A stored complete node (level, index).
    Node(u8, u64),
    /// The computed hash of leaves [start, end).
    Range(u64, u64),
}

pub(crate) struct LogHashes(Kept<Key, tlog::Hash>);

impl LogHashes {
    pub fn new(generation: &Generation) -> Self {
        LogHashes(Kept::new(generation, LOG_HASHES_KEPT))
    }

    /// Forgets every hash (after the generation advanced).
    pub fn forget_all(&self) {
        self.0.forget_all();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `store` (a read transaction's committed nodes) with these hashes in front of it;
    /// `generation` as [`Generation::current`] gave it before the transaction began.
    pub fn in_front_of<S: NodeStore>(&self, store: S, generation: u64) -> KeptNodes<'_, S> {
        KeptNodes { store, kept: self, generation, held: RefCell::new(None) }
    }
}

/// A read transaction's node store with the kept hashes in front of it.
///
/// A proof and its root look up about 20 hashes in a row; the cache's lock is taken at the
/// first and held while they hit (one lock per proof, not per node), and let go before
/// the store is read on a miss, and when this is dropped. So keep at most one alive per
/// thread, and drop it before reading anything else (`inclusion_in` does): a second one
/// on the same thread would wait for the first's lock forever.
pub(crate) struct KeptNodes<'a, S> {
    store: S,
    kept: &'a LogHashes,
    generation: u64,
    held: RefCell<Option<MutexGuard<'a, lru::LruCache<Key, tlog::Hash>>>>,
}

impl<'a, S> KeptNodes<'a, S> {
    /// Runs `f` under the cache's lock, taking it unless this already holds it.
    fn held<R>(&self, f: impl FnOnce(&mut lru::LruCache<Key, tlog::Hash>) -> R) -> R {
        let mut held = self.held.borrow_mut();
        let entries = held.get_or_insert_with(|| self.kept.0.hold());
        f(entries)
    }

    fn let_go(&self) {
        self.held.borrow_mut().take();
    }
}

impl<S: NodeStore> NodeStore for KeptNodes<'_, S> {
    type Error = S::Error;

    fn get(&self, level: u8, index: u64) -> Result<Option<tlog::Hash>, S::Error> {
        if let Some(hash) = self.held(|entries| entries.get(&Key::Node(level, index)).copied()) {
            return Ok(Some(hash));
        }
        self.let_go();
        let found = self.store.get(level, index)?;
        if let Some(hash) = found {
            self.held(|entries| self.kept.0.keep_held(entries, self.generation, Key::Node(level, index), hash));
        }
        Ok(found)
    }

    fn put(&mut self, level: u8, index: u64, hash: tlog::Hash) -> Result<(), S::Error> {
        // Reads only: a write would make a node the store has not committed.
        self.let_go();
        self.store.put(level, index, hash)
    }

    fn computed(&self, start: u64, end: u64) -> Option<tlog::Hash> {
        self.held(|entries| entries.get(&Key::Range(start, end)).copied())
    }

    fn keep_computed(&self, start: u64, end: u64, hash: tlog::Hash) {
        self.held(|entries| self.kept.0.keep_held(entries, self.generation, Key::Range(start, end), hash));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use super::*;
    use crate::tlog::MemoryNodeStore;

    /// A store that counts its lookups.
    struct Counting<'a> {
        nodes: &'a MemoryNodeStore,
        lookups: Cell<usize>,
    }

    impl NodeStore for &Counting<'_> {
        type Error = Infallible;
        fn get(&self, level: u8, index: u64) -> Result<Option<tlog::Hash>, Infallible> {
            self.lookups.set(self.lookups.get() + 1);
            self.nodes.get(level, index)
        }
        fn put(&mut self, _level: u8, _index: u64, _hash: tlog::Hash) -> Result<(), Infallible> {
            unreachable!("reads only")
        }
    }

    /// A tree of `leaves` leaves whose data is `label` and the leaf's index.
    fn tree(leaves: u64, label: &str) -> MemoryNodeStore {
        let mut nodes = MemoryNodeStore::new();
        for index in 0..leaves {
            tlog::append(&mut nodes, index, format!("{label} {index}").as_bytes()).expect("append");
        }
        nodes
    }

    #[test]
    fn kept_hashes_give_the_same_roots_and_proofs_at_every_size() {
        let nodes = tree(70, "leaf");
        let generation = Generation::default();
        let kept = LogHashes::new(&generation);
        for size in 1..=70u64 {
            // Twice: the second pass reads what the first kept.
            for _ in 0..2 {
                let front = kept.in_front_of(nodes.clone(), generation.current());
                assert_eq!(tlog::root(&front, size).unwrap(), tlog::root(&nodes, size).unwrap(), "root at {size}");
                for leaf in [0, size / 2, size - 1] {
                    assert_eq!(
                        tlog::inclusion_proof(&front, leaf, size).unwrap(),
                        tlog::inclusion_proof(&nodes, leaf, size).unwrap(),
                        "proof of {leaf} at {size}"
                    );
                }
                for old in [1, size / 2 + 1, size] {
                    assert_eq!(
                        tlog::consistency_proof(&front, old, size).unwrap(),
                        tlog::consistency_proof(&nodes, old, size).unwrap(),
                        "consistency {old} -> {size}"
                    );
                }
            }
        }
        assert!(kept.len() > 0);
    }

    #[test]
    fn a_second_proof_at_the_same_size_reads_nothing_from_the_store() {
        let nodes = tree(1000, "leaf");
        let counting = Counting { nodes: &nodes, lookups: Cell::new(0) };
        let generation = Generation::default();
        let kept = LogHashes::new(&generation);
        let front = kept.in_front_of(&counting, generation.current());
        let first = (tlog::inclusion_proof(&front, 517, 1000).unwrap(), tlog::root(&front, 1000).unwrap());
        let cold = counting.lookups.get();
        assert!(cold >= 10, "a first proof in a tree of 1000 reads at least its path ({cold} lookups)");
        let second = (tlog::inclusion_proof(&front, 517, 1000).unwrap(), tlog::root(&front, 1000).unwrap());
        assert_eq!(first, second);
        assert_eq!(counting.lookups.get(), cold, "the second proof and root came from the kept hashes");
        // A neighbour's proof shares every level above its own pair of leaves.
        tlog::inclusion_proof(&front, 516, 1000).unwrap();
        assert_eq!(counting.lookups.get(), cold + 1, "only leaf 517's own hash was new");
    }

    #[test]
    fn hashes_offered_by_a_read_older_than_a_clear_are_dropped() {
        let old_tree = tree(9, "leaf");
        let generation = Generation::default();
        let kept = LogHashes::new(&generation);
        let stale = generation.current();
        generation.advance();
        kept.forget_all();
        tlog::root(&kept.in_front_of(old_tree.clone(), stale), 9).unwrap();
        assert_eq!(kept.len(), 0, "a read from before the state was replaced keeps nothing");
        // The replacing state's tree is another: its root must not come from the old one.
        let new_tree = tree(9, "other");
        let front = kept.in_front_of(new_tree.clone(), generation.current());
        assert_eq!(tlog::root(&front, 9).unwrap(), tlog::root(&new_tree, 9).unwrap());
        assert_ne!(tlog::root(&front, 9).unwrap(), tlog::root(&old_tree, 9).unwrap());
    }
}
