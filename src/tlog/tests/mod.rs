//! Tests of the transparency log: published vectors, the RFC definitions as
//! an oracle, forgeries that must be rejected, checkpoints, and store cost.

mod checkpoints;
mod known_answers;
mod matches_rfc_definition;
mod reference;
mod rejections;
mod store_cost;
mod tree_errors;

use super::merkle::{append, MemoryNodeStore};
use super::proof::Hash;

/// Distinct, deterministic leaf contents of varying length.
pub fn leaf_data(index: usize) -> Vec<u8> {
    format!("leaf {index} {}", "x".repeat(index % 7)).into_bytes()
}

/// A memory store holding a tree of the given leaves, appended in order.
pub fn tree_of(leaves: &[Vec<u8>]) -> MemoryNodeStore {
    let mut store = MemoryNodeStore::new();
    for (size_before, data) in (0u64..).zip(leaves) {
        append(&mut store, size_before, data).expect("append to a memory store succeeds");
    }
    store
}

pub fn hash_from_hex(text: &str) -> Hash {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).expect("test vector is 64 hex digits");
    hash
}
