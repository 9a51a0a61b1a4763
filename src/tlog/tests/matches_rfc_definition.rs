//! The store-backed tree against the RFC 9162 definitions, for every tree
//! size from 1 to 300: every root, every inclusion proof and every
//! consistency proof, each also accepted by the verifiers.

use super::super::merkle::{append, consistency_proof, inclusion_proof, root, MemoryNodeStore};
use super::super::proof::{leaf_hash, verify_consistency, verify_inclusion};
use super::reference::Reference;
use super::{leaf_data, tree_of};

const SIZE_MAX: usize = 300;

fn leaves() -> Vec<Vec<u8>> {
    (0..SIZE_MAX).map(leaf_data).collect()
}

fn as_u64(value: usize) -> u64 {
    u64::try_from(value).expect("test sizes fit in u64")
}

#[test]
fn root_of_every_size_matches_rfc_definition_while_growing() {
    let leaves = leaves();
    let reference = Reference::new(&leaves);
    let mut store = MemoryNodeStore::new();
    for (size_before, data) in leaves.iter().enumerate() {
        let leaf = append(&mut store, as_u64(size_before), data).expect("append");
        assert_eq!(leaf, leaf_hash(data));
        assert_eq!(
            root(&store, as_u64(size_before + 1)).expect("root"),
            reference.root(size_before + 1)
        );
    }
}

#[test]
fn historical_root_of_every_size_matches_rfc_definition() {
    let leaves = leaves();
    let reference = Reference::new(&leaves);
    let store = tree_of(&leaves);
    for size in 0..=SIZE_MAX {
        assert_eq!(
            root(&store, as_u64(size)).expect("root"),
            reference.root(size),
            "size {size}"
        );
    }
}

#[test]
fn every_inclusion_proof_matches_rfc_definition_and_verifies() {
    let leaves = leaves();
    let reference = Reference::new(&leaves);
    let store = tree_of(&leaves);
    for size in 1..=SIZE_MAX {
        let tree_root = reference.root(size);
        for (index, data) in leaves[..size].iter().enumerate() {
            let proof = inclusion_proof(&store, as_u64(index), as_u64(size)).expect("proof");
            assert_eq!(
                proof,
                reference.path(index, size),
                "leaf {index} size {size}"
            );
            verify_inclusion(
                &leaf_hash(data),
                as_u64(index),
                as_u64(size),
                &proof,
                &tree_root,
            )
            .unwrap_or_else(|error| panic!("leaf {index} size {size}: {error}"));
        }
    }
}

#[test]
fn every_consistency_proof_matches_rfc_definition_and_verifies() {
    let leaves = leaves();
    let reference = Reference::new(&leaves);
    let store = tree_of(&leaves);
    for new_size in 1..=SIZE_MAX {
        let new_root = reference.root(new_size);
        for old_size in 1..=new_size {
            let proof =
                consistency_proof(&store, as_u64(old_size), as_u64(new_size)).expect("proof");
            assert_eq!(
                proof,
                reference.proof(old_size, new_size),
                "{old_size} -> {new_size}"
            );
            verify_consistency(
                as_u64(old_size),
                as_u64(new_size),
                &reference.root(old_size),
                &new_root,
                &proof,
            )
            .unwrap_or_else(|error| panic!("{old_size} -> {new_size}: {error}"));
        }
    }
}
