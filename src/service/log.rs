//! Transparency-log use cases: signed checkpoints, inclusion and consistency proofs, and
//! entries for auditors. Checkpoints are signed on demand with the log's Ed25519 key; as
//! Ed25519 signatures are deterministic, every node holding the log key signs the same
//! tree head into the same note.

use kyso_cluster::Proposer;

use super::{Kyso, ServiceError};
use crate::lookup::LookupCode;
use crate::state::LogProof;
use crate::tlog::{self, LogSigner};

/// Entries returned by one `GetEntries` call.
pub const LOG_ENTRIES_PER_CALL_MAX: u64 = 1000;

/// The log's identity: its origin line and signing key.
pub struct LogIdentity {
    pub origin: String,
    pub signer: LogSigner,
}

/// A checkpoint and its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub note: String,
    pub origin: String,
    pub tree_size: u64,
    pub root: [u8; 32],
}

impl<P: Proposer> Kyso<P> {
    /// The signed checkpoint of (`tree_size`, `root`). Ed25519 signatures are
    /// deterministic, so the last one signed is kept and handed out again while the tree
    /// has not grown: verify answers between two commits sign nothing.
    pub(super) fn sign_checkpoint(&self, tree_size: u64, root: [u8; 32]) -> Result<SignedCheckpoint, ServiceError> {
        let mut last = self.last_checkpoint.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(signed) = last.as_ref().filter(|signed| signed.tree_size == tree_size && signed.root == root) {
            return Ok(signed.clone());
        }
        let checkpoint = tlog::Checkpoint::new(&self.log.origin, tree_size, root)
            .map_err(|error| ServiceError::Internal(format!("cannot build checkpoint: {error}")))?;
        let signed = SignedCheckpoint {
            note: tlog::sign_checkpoint(&checkpoint, &self.log.signer),
            origin: self.log.origin.clone(),
            tree_size,
            root,
        };
        *last = Some(signed.clone());
        Ok(signed)
    }

    /// The log's verifier key line (C2SP signed-note) and the origin it signs for.
    pub fn log_key(&self) -> (String, String) {
        (self.log.signer.verifier().to_string(), self.log.origin.clone())
    }

    /// The latest checkpoint of this node's replica.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, ServiceError> {
        self.read_barrier().await?;
        let (size, root) = self.state.tlog_head()?;
        self.sign_checkpoint(size, root)
    }

    /// Inclusion proof of a leaf at `tree_size` (0 = latest), with a checkpoint of that size.
    pub async fn inclusion_by_index(&self, leaf_index: u64, tree_size: u64) -> Result<(LogProof, SignedCheckpoint), ServiceError> {
        self.read_barrier().await?;
        let proof = self.state.tlog_inclusion(leaf_index, tree_size)?.ok_or_else(|| {
            ServiceError::NotFound(format!(
                "leaf {leaf_index} is not in a tree of size {tree_size}; ask for a larger size or the latest checkpoint (0)"
            ))
        })?;
        let checkpoint = self.sign_checkpoint(proof.tree_size, proof.root)?;
        Ok((proof, checkpoint))
    }

    /// Inclusion proof of a certification's leaf, found by its lookup code.
    pub async fn inclusion_by_code(&self, code: &str, tree_size: u64) -> Result<(LogProof, SignedCheckpoint), ServiceError> {
        let code = LookupCode::parse(code).map_err(|error| ServiceError::InvalidArgument(error.to_string()))?;
        self.read_barrier().await?;
        let leaf_index = self
            .state
            .certification_leaf(&code)?
            .ok_or_else(|| ServiceError::NotFound(format!("no certification has lookup code {code}")))?;
        self.inclusion_by_index(leaf_index, tree_size).await
    }

    /// Proof that the tree of `first_size` is a prefix of the tree of `second_size`.
    pub async fn consistency(&self, first_size: u64, second_size: u64) -> Result<(Vec<[u8; 32]>, SignedCheckpoint), ServiceError> {
        self.read_barrier().await?;
        let second_size = if second_size == 0 { self.state.tlog_size()? } else { second_size };
        if first_size == 0 || first_size > second_size {
            return Err(ServiceError::InvalidArgument(format!(
                "need 0 < first_size <= second_size, got {first_size} and {second_size}"
            )));
        }
        let proof = self.state.tlog_consistency(first_size, second_size)?.ok_or_else(|| {
            ServiceError::NotFound(format!("the log has fewer than {second_size} leaves"))
        })?;
        let checkpoint = self.sign_checkpoint(second_size, self.state.tlog_root(second_size)?)?;
        Ok((proof, checkpoint))
    }

    /// Leaves in `[start, end)`, at most [`LOG_ENTRIES_PER_CALL_MAX`].
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, ServiceError> {
        if end <= start || end - start > LOG_ENTRIES_PER_CALL_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "ask for 1-{LOG_ENTRIES_PER_CALL_MAX} entries with start < end, got [{start}, {end})"
            )));
        }
        self.read_barrier().await?;
        Ok(self.state.tlog_entries(start, end)?)
    }
}
