//! RFC 9162 hashing and the store-free proof verifiers.
//!
//! This is the part of the log that auditors, monitors and offline clients
//! run: given a leaf hash, a proof and a root they already trust, it answers
//! "is this leaf in that tree" and "does this tree extend that older tree".
//! The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step,
//! and additionally check the proof length up front so that a wrong length
//! gets a precise error.
//!
//! This module must never accept a forgery, never read a node store, never
//! panic on hostile input and never decide which root is trusted: every
//! function takes the trusted root as an argument, and the caller MUST obtain
//! it from a checkpoint whose signature it has verified.

use ring::digest::{digest, Context, SHA256};

/// Size of every hash in the tree: SHA-256 output.
pub const HASH_SIZE_BYTES: usize = 32;

/// A SHA-256 hash of a leaf, an interior node or a whole tree.
pub type Hash = [u8; HASH_SIZE_BYTES];

/// Domain-separation prefix for leaf hashes (RFC 9162 section 2.1.1).
const LEAF_HASH_PREFIX: u8 = 0x00;

/// Domain-separation prefix for interior node hashes (RFC 9162 section 2.1.1).
const NODE_HASH_PREFIX: u8 = 0x01;

/// Why a proof was rejected.
///
/// Every variant means the same thing to a caller: the claim is not proven
/// and the data MUST NOT be trusted. The variants exist for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {leaf_index} is not below tree size {size}; request a proof for a leaf that exists at that size")]
    IndexOutOfRange { leaf_index: u64, size: u64 },
    #[error("proof has {actual} hashes but these sizes need exactly {expected}; the proof was truncated, padded or made for other sizes")]
    WrongProofLength { expected: usize, actual: usize },
    #[error("proof does not lead to the trusted root; the leaf is not in that tree or the proof was tampered with")]
    RootMismatch,
    #[error("old tree size {old_size} is larger than new tree size {new_size}; a log only grows, so pass the sizes in order")]
    OldSizeLargerThanNew { old_size: u64, new_size: u64 },
    #[error("consistency from an empty tree proves nothing; every tree extends the empty tree, so skip the check for old size 0")]
    OldTreeEmpty,
    #[error("trees of equal size have different roots; the log has forked and both checkpoints must be kept as evidence")]
    EqualSizeRootsDiffer,
    #[error("proof does not reproduce the trusted old root; the proof was tampered with or made for another tree")]
    OldRootMismatch,
    #[error("proof does not reproduce the trusted new root; the new tree does not extend the old one or the proof was tampered with")]
    NewRootMismatch,
}

/// Hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[LEAF_HASH_PREFIX]);
    context.update(data);
    to_hash(context.finish().as_ref())
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[NODE_HASH_PREFIX]);
    context.update(left);
    context.update(right);
    to_hash(context.finish().as_ref())
}

/// Root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b"").as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    // SHA-256 always yields HASH_SIZE_BYTES bytes, so a length mismatch here
    // is a broken invariant in ring, not an operating error.
    assert_eq!(
        bytes.len(),
        HASH_SIZE_BYTES,
        "sha-256 output has the wrong length"
    );
    let mut hash = [0u8; HASH_SIZE_BYTES];
    hash.copy_from_slice(bytes);
    hash
}

/// Number of bits needed to write `value`; 0 for 0.
fn bit_length(value: u64) -> u32 {
    u64::BITS - value.leading_zeros()
}

/// Number of hashes in the inclusion proof of `leaf_index` in a tree of
/// `size` leaves. The caller guarantees `leaf_index < size`.
pub(crate) fn inclusion_proof_len(leaf_index: u64, size: u64) -> usize {
    node_path_len(leaf_index, size - 1)
}

/// Number of hashes linking a node to the root, where `last` is the index at
/// the node's level of the node holding the tree's last leaf. Below the level
/// where the paths of `index` and `last` meet every level contributes one
/// sibling; above it only levels where the path is a right child do.
fn node_path_len(index: u64, last: u64) -> usize {
    let inner = bit_length(index ^ last);
    // `inner` reaches 64 when the paths meet only at the root of a tree of
    // more than 2^63 leaves; nothing of `index` is left above that.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old_size` to `new_size`.
/// The caller guarantees `0 < old_size < new_size`.
pub(crate) fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let last = (new_size - 1) >> level;
    // When old_size is a power of two the old root is itself a node of the
    // new tree, so the verifier supplies it and the proof omits it.
    let seed = usize::from(index != 0);
    seed + node_path_len(index, last)
}

/// Checks that `leaf_hash` is the leaf at `leaf_index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 section 2.1.3.2).
///
/// The caller MUST take `root` and `size` from a checkpoint whose signature it
/// has verified, and MUST compute `leaf_hash` itself with [`leaf_hash`] from
/// the leaf data it holds; a leaf hash supplied by the prover proves nothing.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if leaf_index >= size {
        return Err(ProofError::IndexOutOfRange { leaf_index, size });
    }
    let expected = inclusion_proof_len(leaf_index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // Steps 2 and 3.
    let mut first_node = leaf_index;
    let mut second_node = size - 1;
    let mut result = *leaf_hash;
    // Step 4.
    for sibling in proof {
        if second_node == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if first_node & 1 == 1 || first_node == second_node {
            result = node_hash(sibling, &result);
            while first_node & 1 == 0 && first_node != 0 {
                first_node >>= 1;
                second_node >>= 1;
            }
        } else {
            result = node_hash(&result, sibling);
        }
        first_node >>= 1;
        second_node >>= 1;
    }
    // Step 5.
    if second_node != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if result != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the
/// tree of `old_size` leaves with root `old_root` (RFC 9162 section 2.1.4.2).
///
/// RFC 9162 defines the check for `0 < old_size < new_size`. For equal sizes
/// the proof MUST be empty and the roots equal. An `old_size` of 0 is
/// rejected with [`ProofError::OldTreeEmpty`]: every tree extends the empty
/// tree, so there is nothing to prove, and accepting it would let a caller
/// believe it checked something.
///
/// The caller MUST take both roots from checkpoints whose signatures it has
/// verified; a root supplied alongside the proof proves nothing.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeLargerThanNew { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::OldTreeEmpty);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(ProofError::EqualSizeRootsDiffer);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old_size, new_size);
    // Step 1 (an empty proof) is covered: `expected` is at least 1 here.
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // Step 2: a power-of-two old tree is a node of the new tree and starts
    // the path itself.
    let old_root_slice = std::slice::from_ref(old_root);
    let prefix: &[Hash] = if old_size.is_power_of_two() {
        old_root_slice
    } else {
        &[]
    };
    let mut path = prefix.iter().chain(proof.iter());
    // Step 3.
    let mut first_node = old_size - 1;
    let mut second_node = new_size - 1;
    // Step 4.
    while first_node & 1 == 1 {
        first_node >>= 1;
        second_node >>= 1;
    }
    // Step 5. The path has at least one element: either the old root was
    // prepended or `expected >= 1` elements were checked above.
    let Some(seed) = path.next() else {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    };
    let mut first_root = *seed;
    let mut second_root = *seed;
    // Step 6.
    for sibling in path {
        if second_node == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if first_node & 1 == 1 || first_node == second_node {
            first_root = node_hash(sibling, &first_root);
            second_root = node_hash(sibling, &second_root);
            while first_node & 1 == 0 && first_node != 0 {
                first_node >>= 1;
                second_node >>= 1;
            }
        } else {
            second_root = node_hash(&second_root, sibling);
        }
        first_node >>= 1;
        second_node >>= 1;
    }
    // Step 7.
    if second_node != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if first_root != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if second_root != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}
