//! Forgeries and mistakes the verifiers must reject: changed or reordered
//! leaves, tampered, truncated or extended proofs, wrong indices and sizes,
//! forks, and swapped arguments.

use super::super::merkle::{consistency_proof, inclusion_proof, root, MemoryNodeStore};
use super::super::proof::{
    empty_root, leaf_hash, verify_consistency, verify_inclusion, Hash, ProofError,
};
use super::reference::Reference;
use super::{leaf_data, tree_of};

/// Sizes up to this are checked exhaustively; proof shapes repeat with every
/// power of two, so this covers every shape of up to five levels.
const SIZE_MAX: u64 = 40;

struct Fixture {
    leaves: Vec<Vec<u8>>,
    store: MemoryNodeStore,
}

impl Fixture {
    fn new() -> Self {
        let leaves: Vec<Vec<u8>> = (0..as_usize(SIZE_MAX)).map(leaf_data).collect();
        let store = tree_of(&leaves);
        Self { leaves, store }
    }

    fn leaf(&self, index: u64) -> Hash {
        leaf_hash(&self.leaves[as_usize(index)])
    }

    fn root(&self, size: u64) -> Hash {
        root(&self.store, size).expect("root")
    }

    fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        inclusion_proof(&self.store, index, size).expect("inclusion proof")
    }

    fn consistency(&self, old_size: u64, new_size: u64) -> Vec<Hash> {
        consistency_proof(&self.store, old_size, new_size).expect("consistency proof")
    }

    /// Every (leaf index, tree size) pair up to SIZE_MAX.
    fn inclusion_cases() -> impl Iterator<Item = (u64, u64)> {
        (1..=SIZE_MAX).flat_map(|size| (0..size).map(move |index| (index, size)))
    }

    /// Every (old size, new size) pair with 0 < old < new <= SIZE_MAX.
    fn consistency_cases() -> impl Iterator<Item = (u64, u64)> {
        (2..=SIZE_MAX).flat_map(|new_size| (1..new_size).map(move |old_size| (old_size, new_size)))
    }
}

fn as_usize(value: u64) -> usize {
    usize::try_from(value).expect("test sizes fit in usize")
}

fn flip_bit(hash: &Hash, bit: usize) -> Hash {
    let mut changed = *hash;
    changed[(bit / 8) % changed.len()] ^= 1 << (bit % 8);
    changed
}

/// Proofs that differ from `proof` by dropping or adding one hash.
fn truncated_and_extended(proof: &[Hash], root: &Hash) -> Vec<(String, Vec<Hash>)> {
    let mut variants = Vec::new();
    if !proof.is_empty() {
        variants.push(("last dropped".to_owned(), proof[..proof.len() - 1].to_vec()));
        variants.push(("first dropped".to_owned(), proof[1..].to_vec()));
    }
    for (name, extra) in [
        ("zero", [0u8; 32]),
        ("root", *root),
        ("empty root", empty_root()),
    ] {
        let mut appended = proof.to_vec();
        appended.push(extra);
        variants.push((format!("{name} appended"), appended));
        let mut prepended = vec![extra];
        prepended.extend_from_slice(proof);
        variants.push((format!("{name} prepended"), prepended));
    }
    if let Some(last) = proof.last() {
        let mut repeated = proof.to_vec();
        repeated.push(*last);
        variants.push(("last repeated".to_owned(), repeated));
    }
    variants
}

#[test]
fn changed_leaf_fails_inclusion() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        let mut changed = fixture.leaves[as_usize(index)].clone();
        changed.push(b'!');
        assert_eq!(
            verify_inclusion(&leaf_hash(&changed), index, size, &proof, &tree_root),
            Err(ProofError::RootMismatch),
            "leaf {index} size {size}"
        );
        // A leaf hash passed where the data should be hashed is not the leaf.
        assert!(verify_inclusion(
            &leaf_hash(&fixture.leaf(index)),
            index,
            size,
            &proof,
            &tree_root
        )
        .is_err());
    }
}

#[test]
fn another_leaf_of_the_same_tree_fails_inclusion_at_this_index() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        for other in (0..size).filter(|other| *other != index) {
            assert!(
                verify_inclusion(&fixture.leaf(other), index, size, &proof, &tree_root).is_err(),
                "leaf {other} accepted at index {index} size {size}"
            );
        }
    }
}

#[test]
fn reordered_pair_of_leaves_changes_the_root_and_fails_inclusion() {
    let fixture = Fixture::new();
    let size = 13u64;
    let original_root = fixture.root(size);
    for first in 0..size {
        for second in (first + 1)..size {
            let mut reordered: Vec<Vec<u8>> = fixture.leaves[..as_usize(size)].to_vec();
            reordered.swap(as_usize(first), as_usize(second));
            let reordered_store = tree_of(&reordered);
            let reordered_root = root(&reordered_store, size).expect("root");
            assert_ne!(
                reordered_root, original_root,
                "swapping {first} and {second}"
            );
            // The reordered log's proof that leaf `second` sits at `first`
            // is internally valid but does not match the trusted root.
            let proof = inclusion_proof(&reordered_store, first, size).expect("proof");
            let moved = fixture.leaf(second);
            assert!(verify_inclusion(&moved, first, size, &proof, &reordered_root).is_ok());
            assert_eq!(
                verify_inclusion(&moved, first, size, &proof, &original_root),
                Err(ProofError::RootMismatch)
            );
            // Nor does the honest proof for `first` accept the moved leaf.
            let honest = fixture.inclusion(first, size);
            assert!(verify_inclusion(&moved, first, size, &honest, &original_root).is_err());
        }
    }
}

#[test]
fn tampered_inclusion_proof_element_fails() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        for position in 0..proof.len() {
            for bit in [0, 7, 100, 255] {
                let mut tampered = proof.clone();
                tampered[position] = flip_bit(&tampered[position], bit);
                assert_eq!(
                    verify_inclusion(&fixture.leaf(index), index, size, &tampered, &tree_root),
                    Err(ProofError::RootMismatch),
                    "leaf {index} size {size} element {position} bit {bit}"
                );
            }
        }
        assert!(verify_inclusion(
            &fixture.leaf(index),
            index,
            size,
            &proof,
            &flip_bit(&tree_root, 3)
        )
        .is_err());
    }
}

#[test]
fn truncated_or_extended_inclusion_proof_fails() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        for (variant, changed) in truncated_and_extended(&proof, &tree_root) {
            let result = verify_inclusion(&fixture.leaf(index), index, size, &changed, &tree_root);
            assert!(
                matches!(result, Err(ProofError::WrongProofLength { .. })),
                "leaf {index} size {size} {variant}: {result:?}"
            );
        }
    }
}

#[test]
fn wrong_leaf_index_fails_inclusion() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        for wrong in (0..size).filter(|wrong| *wrong != index) {
            assert!(
                verify_inclusion(&fixture.leaf(index), wrong, size, &proof, &tree_root).is_err(),
                "leaf {index} accepted at index {wrong} size {size}"
            );
        }
        for beyond in [size, size + 1, u64::MAX] {
            assert_eq!(
                verify_inclusion(&fixture.leaf(index), beyond, size, &proof, &tree_root),
                Err(ProofError::IndexOutOfRange {
                    leaf_index: beyond,
                    size
                })
            );
        }
    }
}

#[test]
fn inclusion_proof_fails_against_the_root_of_another_size() {
    let fixture = Fixture::new();
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        for other_size in ((index + 1)..=SIZE_MAX).filter(|other| *other != size) {
            assert!(
                verify_inclusion(
                    &fixture.leaf(index),
                    index,
                    other_size,
                    &proof,
                    &fixture.root(other_size)
                )
                .is_err(),
                "proof for size {size} accepted at size {other_size} (leaf {index})"
            );
        }
    }
}

/// RFC 9162's verifier learns the tree size only from how the proof combines,
/// so a wrong size claimed against the right root is accepted exactly when
/// the path has the same shape in both trees (for example leaf 0 at sizes 5
/// to 8). The leaf is then still in the tree with that root, so no false
/// membership is proven; but the size is not, which is why the caller must
/// take size and root from the same signed checkpoint.
#[test]
fn wrong_tree_size_is_rejected_unless_the_path_has_the_same_shape() {
    let fixture = Fixture::new();
    let mut rejected = 0usize;
    let mut same_shape = 0usize;
    for (index, size) in Fixture::inclusion_cases() {
        let proof = fixture.inclusion(index, size);
        let tree_root = fixture.root(size);
        let sides = Reference::path_sides(as_usize(index), as_usize(size));
        for wrong in ((index + 1)..=(2 * size)).filter(|wrong| *wrong != size) {
            let accepted =
                verify_inclusion(&fixture.leaf(index), index, wrong, &proof, &tree_root).is_ok();
            let indistinguishable =
                Reference::path_sides(as_usize(index), as_usize(wrong)) == sides;
            assert_eq!(
                accepted, indistinguishable,
                "leaf {index} size {size} claimed as {wrong}"
            );
            if accepted {
                same_shape += 1;
            } else {
                rejected += 1;
            }
        }
    }
    // Both outcomes occur, so the equivalence above is tested both ways.
    assert!(
        rejected > 0 && same_shape > 0,
        "{rejected} rejected, {same_shape} same-shape"
    );
    let proof = fixture.inclusion(0, 5);
    assert!(verify_inclusion(&fixture.leaf(0), 0, 6, &proof, &fixture.root(5)).is_ok());
}

#[test]
fn inclusion_in_an_empty_tree_is_rejected() {
    let leaf = leaf_hash(b"anything");
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &empty_root()),
        Err(ProofError::IndexOutOfRange {
            leaf_index: 0,
            size: 0
        })
    );
}

#[test]
fn single_leaf_tree_proves_only_its_own_leaf() {
    let leaf = leaf_hash(b"only");
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
    assert_eq!(
        verify_inclusion(&leaf_hash(b"other"), 0, 1, &[], &leaf),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf).is_err());
}

#[test]
fn tampered_consistency_proof_element_fails() {
    let fixture = Fixture::new();
    for (old_size, new_size) in Fixture::consistency_cases() {
        let proof = fixture.consistency(old_size, new_size);
        let (old_root, new_root) = (fixture.root(old_size), fixture.root(new_size));
        for position in 0..proof.len() {
            for bit in [0, 9, 200] {
                let mut tampered = proof.clone();
                tampered[position] = flip_bit(&tampered[position], bit);
                assert!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &tampered)
                        .is_err(),
                    "{old_size} -> {new_size} element {position} bit {bit}"
                );
            }
        }
    }
}

#[test]
fn truncated_or_extended_consistency_proof_fails() {
    let fixture = Fixture::new();
    for (old_size, new_size) in Fixture::consistency_cases() {
        let proof = fixture.consistency(old_size, new_size);
        let (old_root, new_root) = (fixture.root(old_size), fixture.root(new_size));
        for (variant, changed) in truncated_and_extended(&proof, &new_root) {
            let result = verify_consistency(old_size, new_size, &old_root, &new_root, &changed);
            assert!(
                matches!(result, Err(ProofError::WrongProofLength { .. })),
                "{old_size} -> {new_size} {variant}: {result:?}"
            );
        }
        assert!(verify_consistency(old_size, new_size, &old_root, &new_root, &[]).is_err());
    }
}

#[test]
fn consistency_with_swapped_sizes_or_roots_fails() {
    let fixture = Fixture::new();
    for (old_size, new_size) in Fixture::consistency_cases() {
        let proof = fixture.consistency(old_size, new_size);
        let (old_root, new_root) = (fixture.root(old_size), fixture.root(new_size));
        assert_eq!(
            verify_consistency(new_size, old_size, &new_root, &old_root, &proof),
            Err(ProofError::OldSizeLargerThanNew {
                old_size: new_size,
                new_size: old_size
            })
        );
        assert!(verify_consistency(old_size, new_size, &new_root, &old_root, &proof).is_err());
    }
}

#[test]
fn consistency_proof_fails_for_other_sizes_with_their_roots() {
    let fixture = Fixture::new();
    for (old_size, new_size) in Fixture::consistency_cases() {
        let proof = fixture.consistency(old_size, new_size);
        let (old_root, new_root) = (fixture.root(old_size), fixture.root(new_size));
        for other_old in (1..new_size).filter(|other| *other != old_size) {
            assert!(
                verify_consistency(
                    other_old,
                    new_size,
                    &fixture.root(other_old),
                    &new_root,
                    &proof
                )
                .is_err(),
                "proof {old_size} -> {new_size} accepted as {other_old} -> {new_size}"
            );
        }
        for other_new in ((old_size + 1)..=SIZE_MAX).filter(|other| *other != new_size) {
            assert!(
                verify_consistency(
                    old_size,
                    other_new,
                    &old_root,
                    &fixture.root(other_new),
                    &proof
                )
                .is_err(),
                "proof {old_size} -> {new_size} accepted as {old_size} -> {other_new}"
            );
        }
    }
}

#[test]
fn forked_history_fails_consistency() {
    let fixture = Fixture::new();
    let new_size = 29u64;
    for old_size in 1..new_size {
        for rewritten in 0..old_size {
            // The log showed a client a tree where one old leaf differed.
            let mut forked = fixture.leaves[..as_usize(old_size)].to_vec();
            forked[as_usize(rewritten)].push(b'?');
            let forked_root = root(&tree_of(&forked), old_size).expect("root");
            let proof = fixture.consistency(old_size, new_size);
            assert!(
                verify_consistency(
                    old_size,
                    new_size,
                    &forked_root,
                    &fixture.root(new_size),
                    &proof
                )
                .is_err(),
                "fork at leaf {rewritten} of {old_size} accepted"
            );
        }
    }
}

#[test]
fn consistency_from_an_empty_tree_is_rejected() {
    let fixture = Fixture::new();
    assert_eq!(
        verify_consistency(0, 5, &empty_root(), &fixture.root(5), &[]),
        Err(ProofError::OldTreeEmpty)
    );
    assert_eq!(
        verify_consistency(0, 0, &empty_root(), &empty_root(), &[]),
        Err(ProofError::OldTreeEmpty)
    );
}

#[test]
fn equal_sizes_need_equal_roots_and_an_empty_proof() {
    let fixture = Fixture::new();
    let (root_7, root_8) = (fixture.root(7), fixture.root(8));
    assert_eq!(verify_consistency(7, 7, &root_7, &root_7, &[]), Ok(()));
    assert_eq!(
        verify_consistency(7, 7, &root_7, &root_8, &[]),
        Err(ProofError::EqualSizeRootsDiffer)
    );
    assert_eq!(
        verify_consistency(7, 7, &root_7, &root_7, &[root_7]),
        Err(ProofError::WrongProofLength {
            expected: 0,
            actual: 1
        })
    );
}

#[test]
fn hostile_sizes_and_proofs_are_rejected_without_panic() {
    let leaf = leaf_hash(b"leaf");
    let sizes = [
        1,
        2,
        3,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    let indices = [
        0,
        1,
        (1 << 63) - 1,
        1 << 63,
        u64::MAX - 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    for proof_len in 0..=70 {
        let proof: Vec<Hash> = (0..proof_len).map(|position| [position; 32]).collect();
        for size in sizes {
            for index in indices {
                let result = verify_inclusion(&leaf, index, size, &proof, &[0xaa; 32]);
                assert!(
                    result.is_err(),
                    "leaf {index} size {size} proof of {proof_len}"
                );
            }
            for old_size in sizes.iter().chain(&[0]) {
                let result = verify_consistency(*old_size, size, &leaf, &[0xaa; 32], &proof);
                assert!(result.is_err(), "{old_size} -> {size} proof of {proof_len}");
            }
        }
    }
}
