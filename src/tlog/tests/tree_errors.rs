//! The tree refuses requests it cannot answer truthfully and never
//! overwrites history.

use super::super::merkle::{
    append, consistency_proof, inclusion_proof, root, MemoryNodeStore, MerkleError, NodeStore,
};
use super::super::proof::{leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash};
use super::{leaf_data, tree_of};

fn ten_leaves() -> MemoryNodeStore {
    tree_of(&(0..10).map(leaf_data).collect::<Vec<_>>())
}

#[test]
fn append_with_a_stale_or_future_size_is_refused_and_changes_nothing() {
    let mut store = ten_leaves();
    let before = store.clone();
    for wrong_size in [0, 1, 9, 11, 1000] {
        assert!(
            matches!(
                append(&mut store, wrong_size, b"late"),
                Err(MerkleError::SizeMismatch { size_before }) if size_before == wrong_size
            ),
            "append at {wrong_size} was not refused"
        );
        assert_eq!(
            store, before,
            "refused append at {wrong_size} wrote to the store"
        );
    }
    append(&mut store, 10, b"on time").expect("append at the current size");
}

#[test]
fn sizes_beyond_the_stored_tree_are_refused() {
    let store = ten_leaves();
    assert!(matches!(
        root(&store, 11),
        Err(MerkleError::NodeMissing { .. })
    ));
    assert!(matches!(
        root(&store, 16),
        Err(MerkleError::NodeMissing { .. })
    ));
    assert!(matches!(
        inclusion_proof(&store, 3, 11),
        Err(MerkleError::NodeMissing { .. })
    ));
    assert!(matches!(
        consistency_proof(&store, 3, 12),
        Err(MerkleError::NodeMissing { .. })
    ));
    assert!(matches!(
        inclusion_proof(&store, 10, 10),
        Err(MerkleError::IndexOutOfRange {
            leaf_index: 10,
            size: 10
        })
    ));
    assert!(matches!(
        inclusion_proof(&store, 0, 0),
        Err(MerkleError::IndexOutOfRange { .. })
    ));
}

#[test]
fn consistency_proof_needs_ordered_non_empty_sizes() {
    let store = ten_leaves();
    assert!(matches!(
        consistency_proof(&store, 0, 5),
        Err(MerkleError::InvalidSizes {
            old_size: 0,
            new_size: 5
        })
    ));
    assert!(matches!(
        consistency_proof(&store, 6, 5),
        Err(MerkleError::InvalidSizes {
            old_size: 6,
            new_size: 5
        })
    ));
    assert_eq!(
        consistency_proof(&store, 5, 5).expect("equal sizes"),
        Vec::<Hash>::new()
    );
}

/// A store whose every call fails, as a broken disk or aborted transaction.
struct BrokenStore;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("disk on fire")]
struct DiskOnFire;

impl NodeStore for BrokenStore {
    type Error = DiskOnFire;

    fn get(&self, _level: u8, _index: u64) -> Result<Option<Hash>, DiskOnFire> {
        Err(DiskOnFire)
    }

    fn put(&mut self, _level: u8, _index: u64, _hash: Hash) -> Result<(), DiskOnFire> {
        Err(DiskOnFire)
    }
}

#[test]
fn store_failures_are_returned_with_their_cause() {
    let error = append(&mut BrokenStore, 0, b"leaf").expect_err("broken store");
    assert!(matches!(error, MerkleError::Store(DiskOnFire)));
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("disk on fire"));
    assert!(matches!(
        root(&BrokenStore, 3),
        Err(MerkleError::Store(DiskOnFire))
    ));
    assert!(matches!(
        inclusion_proof(&BrokenStore, 1, 3),
        Err(MerkleError::Store(DiskOnFire))
    ));
}

/// Pretends to hold a tree of `size` leaves, up to 2^64 - 1, that are all
/// the same leaf, so every complete node of a level has the same hash: a
/// consistent tree at the size limit without storage. Writes are ignored.
struct HugeStore {
    size: u64,
    level_hashes: Vec<Hash>,
}

impl HugeStore {
    fn new(size: u64) -> Self {
        let mut level_hashes = vec![leaf_hash(b"same leaf")];
        for level in 1..64 {
            let below = level_hashes[level - 1];
            level_hashes.push(node_hash(&below, &below));
        }
        Self { size, level_hashes }
    }
}

impl NodeStore for HugeStore {
    type Error = std::convert::Infallible;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        let end = (u128::from(index) + 1) << level;
        Ok((end <= u128::from(self.size)).then(|| self.level_hashes[usize::from(level)]))
    }

    fn put(&mut self, _level: u8, _index: u64, _hash: Hash) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn largest_tree_is_handled_without_overflow() {
    let mut full = HugeStore::new(u64::MAX);
    assert!(matches!(
        append(&mut full, u64::MAX, b"one too many"),
        Err(MerkleError::TreeFull)
    ));
    append(
        &mut HugeStore::new(u64::MAX - 1),
        u64::MAX - 1,
        b"last leaf",
    )
    .expect("last leaf fits");
    let full_root = root(&full, u64::MAX).expect("root of the largest tree");
    let leaf = leaf_hash(b"same leaf");
    for (index, proof_len) in [(u64::MAX - 1, 63), (0, 64), (1 << 63, 64)] {
        let proof = inclusion_proof(&full, index, u64::MAX).expect("inclusion proof at the limit");
        assert_eq!(proof.len(), proof_len, "leaf {index}");
        verify_inclusion(&leaf, index, u64::MAX, &proof, &full_root)
            .expect("proof at the limit verifies");
    }
    for old_size in [1, u64::MAX - 2, 1 << 63, (1 << 63) + 1] {
        let proof = consistency_proof(&full, old_size, u64::MAX).expect("consistency at the limit");
        let old_root = root(&full, old_size).expect("old root");
        verify_consistency(old_size, u64::MAX, &old_root, &full_root, &proof)
            .expect("proof at the limit verifies");
    }
}

#[test]
#[should_panic(expected = "only at the end of each level")]
fn memory_store_refuses_out_of_order_writes() {
    let mut store = MemoryNodeStore::new();
    let _ = store.put(0, 1, [0u8; 32]);
}
