//! The tree's work grows with log2 of its size: counted store calls, not
//! timings, so the test is deterministic on any machine.

use std::cell::Cell;
use std::convert::Infallible;

use super::super::merkle::{
    append, consistency_proof, inclusion_proof, root, MemoryNodeStore, NodeStore,
};
use super::super::proof::{leaf_hash, verify_consistency, verify_inclusion, Hash};

const LEAF_COUNT: u64 = 100_000;

/// A memory store that counts the calls made to it.
#[derive(Default)]
struct CountingStore {
    inner: MemoryNodeStore,
    gets: Cell<u64>,
    puts: Cell<u64>,
}

impl CountingStore {
    /// Calls made since the last `take_calls`, as (gets, puts).
    fn take_calls(&self) -> (u64, u64) {
        (self.gets.replace(0), self.puts.replace(0))
    }
}

impl NodeStore for CountingStore {
    type Error = Infallible;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get(level, index)
    }

    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Infallible> {
        self.puts.set(self.puts.get() + 1);
        self.inner.put(level, index, hash)
    }
}

/// ceil(log2(n)) for n >= 1.
fn ceil_log2(n: u64) -> u64 {
    u64::from(u64::BITS - (n - 1).leading_zeros())
}

fn leaf_data(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn grown_tree() -> CountingStore {
    let mut store = CountingStore::default();
    for size_before in 0..LEAF_COUNT {
        append(&mut store, size_before, &leaf_data(size_before)).expect("append");
    }
    store.take_calls();
    store
}

#[test]
fn append_touches_the_store_logarithmically_and_constantly_on_average() {
    let mut store = CountingStore::default();
    let mut total_calls = 0u64;
    let mut worst_calls = 0u64;
    for size_before in 0..LEAF_COUNT {
        append(&mut store, size_before, &leaf_data(size_before)).expect("append");
        let (gets, puts) = store.take_calls();
        let size = size_before + 1;
        assert!(
            gets <= ceil_log2(size) + 2,
            "append at size {size_before}: {gets} gets"
        );
        assert!(
            puts <= ceil_log2(size) + 1,
            "append at size {size_before}: {puts} puts"
        );
        total_calls += gets + puts;
        worst_calls = worst_calls.max(gets + puts);
    }
    // Each append completes one parent on average, so about five calls.
    assert!(
        total_calls <= 6 * LEAF_COUNT,
        "{total_calls} calls for {LEAF_COUNT} appends"
    );
    // The bound is reached: the leaf that completes a subtree of 2^16 leaves.
    assert!(
        worst_calls >= 2 * 16,
        "worst append made only {worst_calls} calls"
    );
}

#[test]
fn proofs_and_roots_touch_the_store_logarithmically() {
    let store = grown_tree();
    let sizes = [
        1, 2, 3, 1023, 1024, 1025, 65_535, 65_536, 65_537, 99_999, LEAF_COUNT,
    ];
    for size in sizes {
        let inclusion_bound = 2 * ceil_log2(size) + 1;
        let consistency_bound = 2 * ceil_log2(size) + 2;
        let tree_root = root(&store, size).expect("root");
        let (gets, puts) = store.take_calls();
        assert!(
            gets <= ceil_log2(size) + 1 && puts == 0,
            "root at size {size}: {gets} gets"
        );

        // Every leaf of the full tree, a sample of the smaller ones.
        let step = if size == LEAF_COUNT { 1 } else { 97 };
        for index in (0..size).step_by(step).chain([size - 1]) {
            let proof = inclusion_proof(&store, index, size).expect("inclusion proof");
            let (gets, puts) = store.take_calls();
            assert!(
                gets <= inclusion_bound && puts == 0,
                "inclusion of {index} at size {size}: {gets} gets"
            );
            let leaf = leaf_hash(&leaf_data(index));
            verify_inclusion(&leaf, index, size, &proof, &tree_root)
                .expect("inclusion proof verifies");
        }

        for old_size in (1..size)
            .step_by(89)
            .chain([size - 1])
            .filter(|old| *old >= 1)
        {
            let proof = consistency_proof(&store, old_size, size).expect("consistency proof");
            let (gets, puts) = store.take_calls();
            assert!(
                gets <= consistency_bound && puts == 0,
                "consistency {old_size} -> {size}: {gets} gets"
            );
            let old_root = root(&store, old_size).expect("old root");
            store.take_calls();
            verify_consistency(old_size, size, &old_root, &tree_root, &proof)
                .expect("consistency proof verifies");
        }
    }
}
