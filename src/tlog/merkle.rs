//! The append-only RFC 9162 Merkle tree, kept in a node store the caller owns.
//!
//! The tree is stored as the hashes of its complete subtrees only: node
//! `(level, index)` covers leaves `[index << level, (index + 1) << level)` and
//! is written once, when its last leaf is appended, and never changes after.
//! Level 0 holds leaf hashes. Hashes of incomplete subtrees (the right edge of
//! a tree whose size is not a power of two) are never stored; they are
//! computed from complete ones when a root or proof needs them. Because
//! complete subtrees never change, the root and proofs of every historical
//! size up to the current one can be computed from the same store.
//!
//! The store is a trait so the tree can live inside the caller's
//! transactional storage, next to the leaves it commits to, and be written in
//! the same transaction.
//!
//! Cost, for a tree of `n` leaves, where `t` is the number of trailing one
//! bits of the size before an append (each lookup is one [`NodeStore::get`],
//! each write one [`NodeStore::put`]):
//!
//! | operation             | lookups                  | writes  | hashes      |
//! |-----------------------|--------------------------|---------|-------------|
//! | [`append`]            | at most `t + 2`          | `t + 1` | `t + 1`     |
//! | [`root`]              | one per one bit of `n`   | none    | fewer than 64 |
//! | [`inclusion_proof`]   | at most 2·⌈log2 n⌉ + 1   | none    | fewer than 64 |
//! | [`consistency_proof`] | at most 2·⌈log2 n⌉ + 2   | none    | fewer than 64 |
//!
//! All of these are O(log n); [`append`] is O(1) amortised.
//!
//! This module must never interpret leaf bytes, know what storage engine is
//! behind [`NodeStore`], overwrite a stored node, or decide which root is
//! trusted. It produces roots and proofs; signing them is the checkpoint
//! module's job and checking them is the proof module's.

use std::convert::Infallible;

use super::proof::{empty_root, leaf_hash, node_hash, Hash};

/// Largest number of leaves a tree can hold: sizes are `u64`, so the leaf at
/// index `u64::MAX` can never be appended.
pub const TREE_SIZE_MAX: u64 = u64::MAX;

/// Storage for the hashes of complete subtrees.
///
/// Node `(level, index)` covers leaves `[index << level, (index + 1) << level)`;
/// level 0 holds leaf hashes. Levels never exceed 63.
///
/// Implementations MUST return exactly the hash that was `put` for a node, or
/// `None` if none was; they MUST NOT invent, drop or reorder nodes. They may
/// wrap a transaction: [`append`] performs all its writes through `put` and
/// the caller commits or aborts them together with the leaf itself.
pub trait NodeStore {
    /// Failure of the underlying storage.
    type Error;

    /// Returns the stored hash of node `(level, index)`, or `None` if that
    /// subtree is not complete in the stored tree.
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;

    /// Stores the hash of the complete node `(level, index)`. [`append`]
    /// calls this once per node, in increasing index order within a level.
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Self::Error>;

    /// The hash of leaves `[start, end)` computed earlier, if the store keeps
    /// what roots and proofs compute (a cache). The hash of a range never
    /// changes once its last leaf exists, so a kept one stays right.
    fn computed(&self, _start: u64, _end: u64) -> Option<Hash> {
        None
    }

    /// Offers the hash of leaves `[start, end)`, just computed from stored
    /// nodes, for [`NodeStore::computed`] to return later; a store may drop it.
    fn keep_computed(&self, _start: u64, _end: u64, _hash: Hash) {}
}

/// Why a tree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError<E> {
    #[error("node store failed")]
    Store(#[source] E),
    #[error("node store has no hash for level {level} index {index}; the requested size is larger than the stored tree, or the store lost a node")]
    NodeMissing { level: u8, index: u64 },
    #[error("append was told the tree has {size_before} leaves but the store disagrees; pass the current tree size from the same transaction")]
    SizeMismatch { size_before: u64 },
    #[error("the tree holds the maximum number of leaves; start a new log")]
    TreeFull,
    #[error("leaf index {leaf_index} is not below tree size {size}; ask for a leaf that exists at that size")]
    IndexOutOfRange { leaf_index: u64, size: u64 },
    #[error("a consistency proof needs 0 < old size ({old_size}) <= new size ({new_size}); every tree extends the empty tree, so none is needed from size 0")]
    InvalidSizes { old_size: u64, new_size: u64 },
}

/// Appends a leaf to the tree of `size_before` leaves and returns its leaf hash.
///
/// Writes the leaf hash, then the hash of every subtree the leaf completes:
/// one write plus one per trailing one bit of `size_before`, and as many
/// lookups plus two. The two extra lookups check that the store holds exactly
/// `size_before` leaves, so a stale size fails with
/// [`MerkleError::SizeMismatch`] instead of overwriting history.
///
/// The caller MUST serialise appends (one writer per tree) and MUST persist
/// the writes made through `put` atomically with the leaf data and the new
/// size; on error the caller MUST discard any writes already made.
pub fn append<S: NodeStore>(
    store: &mut S,
    size_before: u64,
    leaf_data: &[u8],
) -> Result<Hash, MerkleError<S::Error>> {
    if size_before == TREE_SIZE_MAX {
        return Err(MerkleError::TreeFull);
    }
    check_leaf_count(store, size_before)?;
    let leaf = leaf_hash(leaf_data);
    store
        .put(0, size_before, leaf)
        .map_err(MerkleError::Store)?;
    let mut hash = leaf;
    let mut index = size_before;
    let mut level: u8 = 0;
    // Every trailing one bit of the old size is a left sibling that the new
    // leaf completes into a parent.
    while index & 1 == 1 {
        let left = stored(store, level, index - 1)?;
        hash = node_hash(&left, &hash);
        index >>= 1;
        level += 1;
        store.put(level, index, hash).map_err(MerkleError::Store)?;
    }
    Ok(leaf)
}

/// Returns the root of the tree made of the first `size` leaves.
///
/// Works for every `size` up to the current tree size, so historical roots
/// can be recomputed; a larger `size` fails with [`MerkleError::NodeMissing`].
/// Performs one lookup per one bit of `size`.
pub fn root<S: NodeStore>(store: &S, size: u64) -> Result<Hash, MerkleError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(store, 0, size)
}

/// Returns the inclusion proof (RFC 9162 section 2.1.3.1) of the leaf at
/// `leaf_index` in the tree made of the first `size` leaves.
///
/// The proof lists sibling hashes from the leaf upwards. Performs at most
/// 2·⌈log2 size⌉ + 1 lookups. A `size` larger than the stored tree fails with
/// [`MerkleError::NodeMissing`].
pub fn inclusion_proof<S: NodeStore>(
    store: &S,
    leaf_index: u64,
    size: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    if leaf_index >= size {
        return Err(MerkleError::IndexOutOfRange { leaf_index, size });
    }
    let mut proof = Vec::with_capacity(super::proof::inclusion_proof_len(leaf_index, size));
    push_node_path(store, 0, leaf_index, size, &mut proof)?;
    Ok(proof)
}

/// Returns the consistency proof (RFC 9162 section 2.1.4.1) from the tree of
/// the first `old_size` leaves to the tree of the first `new_size` leaves.
///
/// Needs `0 < old_size <= new_size`; equal sizes give an empty proof. Performs
/// at most 2·⌈log2 new_size⌉ + 2 lookups. A `new_size` larger than the stored
/// tree fails with [`MerkleError::NodeMissing`], except when the sizes are
/// equal, which needs no lookup at all.
pub fn consistency_proof<S: NodeStore>(
    store: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, MerkleError<S::Error>> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidSizes { old_size, new_size });
    }
    if old_size == new_size {
        return Ok(Vec::new());
    }
    let mut proof = Vec::with_capacity(super::proof::consistency_proof_len(old_size, new_size));
    // The old tree's rightmost complete subtree is a node of the new tree;
    // the proof is that node followed by its path to the new root. When the
    // old tree is a power of two that node is the old root, which the
    // verifier already holds, so it is left out.
    let level = level_of(old_size.trailing_zeros());
    let index = (old_size - 1) >> level;
    if index != 0 {
        proof.push(stored(store, level, index)?);
    }
    push_node_path(store, level, index, new_size, &mut proof)?;
    Ok(proof)
}

/// Appends to `proof` the hashes linking complete node `(level, index)` to
/// the root of the tree of `size` leaves, bottom-up.
///
/// Up to the level where the node's path meets the path of the last leaf,
/// every level contributes its sibling: a stored node, except possibly the
/// right sibling at the meeting level, which may be incomplete and is then
/// computed. Above that level the path runs along the right edge of the tree,
/// and only levels where it is a right child contribute their left sibling.
fn push_node_path<S: NodeStore>(
    store: &S,
    level: u8,
    index: u64,
    size: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), MerkleError<S::Error>> {
    let last = (size - 1) >> level;
    let inner = u64::BITS - (index ^ last).leading_zeros();
    for step in 0..inner {
        let sibling_level = level_of(u32::from(level) + step);
        let sibling = (index >> step) ^ 1;
        proof.push(sibling_hash(store, sibling_level, sibling, size)?);
    }
    // `inner` reaches 64 when the paths meet only at the root of a tree of
    // more than 2^63 leaves; then no level is left above.
    let mut border = index.checked_shr(inner).unwrap_or(0);
    let mut border_level = u32::from(level) + inner;
    while border != 0 {
        if border & 1 == 1 {
            proof.push(stored(store, level_of(border_level), border - 1)?);
        }
        border >>= 1;
        border_level += 1;
    }
    Ok(())
}

/// Hash of node `(level, index)` in the tree of `size` leaves, computing it
/// when the node runs past the last leaf.
fn sibling_hash<S: NodeStore>(
    store: &S,
    level: u8,
    index: u64,
    size: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    let start = index << level;
    // `start + 2^level - 1` is a leaf index of a node below the common
    // ancestor of two existing leaves, so it fits in a u64.
    let last_leaf = start + ((1u64 << level) - 1);
    if last_leaf < size {
        stored(store, level, index)
    } else {
        range_hash(store, start, size)
    }
}

/// Hash of leaves `[start, end)`, as RFC 9162's MTH defines it.
///
/// The caller guarantees `start < end` and that `start` is a multiple of the
/// largest power of two not above `end - start`, which holds for every node
/// of the RFC tree. The range splits into complete subtrees, one per one bit
/// of its length, largest first; they are folded right to left.
fn range_hash<S: NodeStore>(
    store: &S,
    start: u64,
    end: u64,
) -> Result<Hash, MerkleError<S::Error>> {
    assert!(start < end, "range_hash needs a non-empty range");
    let mut remaining = end - start;
    let mut right_end = end;
    if remaining.is_power_of_two() {
        // One complete subtree: a single lookup, nothing to compute or keep.
        return take_rightmost_subtree(store, &mut remaining, &mut right_end);
    }
    if let Some(hash) = store.computed(start, end) {
        return Ok(hash);
    }
    let mut folded = take_rightmost_subtree(store, &mut remaining, &mut right_end)?;
    while remaining != 0 {
        let node = take_rightmost_subtree(store, &mut remaining, &mut right_end)?;
        folded = node_hash(&node, &folded);
    }
    store.keep_computed(start, end, folded);
    Ok(folded)
}

/// Looks up the smallest complete subtree ending at `right_end`, the one
/// given by the lowest one bit of `remaining`, and removes it from the range.
/// The caller guarantees `remaining != 0`.
fn take_rightmost_subtree<S: NodeStore>(
    store: &S,
    remaining: &mut u64,
    right_end: &mut u64,
) -> Result<Hash, MerkleError<S::Error>> {
    let level_bits = remaining.trailing_zeros();
    let width = 1u64 << level_bits;
    let node_start = *right_end - width;
    assert!(
        node_start.is_multiple_of(width),
        "range_hash got an unaligned range"
    );
    *remaining -= width;
    *right_end = node_start;
    let level = level_of(level_bits);
    stored(store, level, node_start >> level)
}

/// Checks that the store holds exactly `size` leaves: the leaf before the
/// new one exists and the new one's slot is free.
fn check_leaf_count<S: NodeStore>(store: &S, size: u64) -> Result<(), MerkleError<S::Error>> {
    let slot_taken = store.get(0, size).map_err(MerkleError::Store)?.is_some();
    let previous_missing = match size.checked_sub(1) {
        Some(previous) => store
            .get(0, previous)
            .map_err(MerkleError::Store)?
            .is_none(),
        None => false,
    };
    if slot_taken || previous_missing {
        return Err(MerkleError::SizeMismatch { size_before: size });
    }
    Ok(())
}

fn stored<S: NodeStore>(store: &S, level: u8, index: u64) -> Result<Hash, MerkleError<S::Error>> {
    store
        .get(level, index)
        .map_err(MerkleError::Store)?
        .ok_or(MerkleError::NodeMissing { level, index })
}

/// Converts a level computed as `u32` to the store's `u8`.
fn level_of(level: u32) -> u8 {
    // Every node covers at most 2^63 leaves of a u64-indexed tree, so levels
    // stay below 64; anything else is a bug in this module.
    u8::try_from(level)
        .ok()
        .filter(|level| *level < 64)
        .expect("tree level is below 64")
}

/// A [`NodeStore`] in memory: one vector of hashes per level.
///
/// It is the in-memory twin of the caller's transactional store, for tests
/// and for tools that rebuild a tree from its leaves. It accepts writes only
/// in the order [`append`] makes them (each level grows by one at its end)
/// and panics otherwise, since any other order is a bug in the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryNodeStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryNodeStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl NodeStore for MemoryNodeStore {
    type Error = Infallible;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        let hashes = self.levels.get(usize::from(level));
        let hash = hashes
            .zip(usize::try_from(index).ok())
            .and_then(|(hashes, index)| hashes.get(index));
        Ok(hash.copied())
    }

    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Infallible> {
        let level = usize::from(level);
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        let hashes = &mut self.levels[level];
        assert_eq!(
            u64::try_from(hashes.len()).ok(),
            Some(index),
            "memory node store accepts writes only at the end of each level"
        );
        hashes.push(hash);
        Ok(())
    }
}
