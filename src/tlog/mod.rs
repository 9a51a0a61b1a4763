//! A tamper-evident transparency log in the style of Certificate Transparency.
//!
//! The log is an append-only RFC 9162 Merkle tree over opaque leaf bytes.
//! The log operator appends leaves ([`merkle`]), periodically signs the tree
//! head as a C2SP checkpoint ([`checkpoint`], over the signed-note envelope in
//! [`note`]), and serves inclusion and consistency proofs. Clients, auditors
//! and monitors check those proofs offline with [`proof`], which needs no
//! store and no network.
//!
//! - [`proof`]: hashing and the store-free verifiers.
//! - [`merkle`]: the tree, kept in a caller-supplied [`NodeStore`].
//! - [`note`]: Ed25519 signed notes and verifier keys.
//! - [`checkpoint`]: signed tree heads.
//!
//! This module must never know about storage engines, RPC frameworks or
//! documents: leaves are opaque bytes, nodes live behind [`NodeStore`], and
//! checkpoints are text. It must never decide on its own which root or key is
//! trusted; callers pin the log's verifier key and pass trusted roots in.

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;

#[cfg(test)]
mod tests;

pub use checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError};
pub use merkle::{
    append, consistency_proof, inclusion_proof, root, MemoryNodeStore, MerkleError, NodeStore,
};
pub use note::{open_note, sign_note, LogSigner, LogVerifier, NoteError};
pub use proof::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, ProofError,
};
