//! The node's side of `kyso backup`: a consistent snapshot of the replicated state, taken
//! after a read barrier so that it holds every write acknowledged before the backup
//! began, with the transparency log's head signed at exactly the snapshot's size.
//!
//! The snapshot is the one Raft members exchange (`StateStore::backup_snapshot`, one read
//! transaction); the cluster keeps serving while it is taken and streamed. It holds the
//! sealed signer keys but never the master key or the log key (see SECURITY.md).

use kyso_cluster::Proposer;

use super::log::SignedCheckpoint;
use super::{Kyso, ServiceError};
use crate::domain::Sha256;
use crate::state::store::BackupSnapshot;

/// What a backup carries besides blob bytes.
pub struct Backup {
    pub snapshot: BackupSnapshot,
    /// A checkpoint of exactly `snapshot.tlog_size` leaves, signed with the log key.
    pub checkpoint: SignedCheckpoint,
    /// The log's verifier key line (C2SP signed note) that checks `checkpoint`.
    pub log_key: String,
    pub state_sha256: Sha256,
    pub created_at_unix: i64,
}

impl<P: Proposer> Kyso<P> {
    /// Takes the backup snapshot: read barrier first, then one read transaction on a
    /// blocking thread (the snapshot encodes every table).
    pub async fn backup(&self) -> Result<Backup, ServiceError> {
        self.read_barrier().await?;
        let state = self.state.clone();
        let snapshot = tokio::task::spawn_blocking(move || state.backup_snapshot())
            .await
            .map_err(|error| ServiceError::Internal(format!("the snapshot task failed: {error}")))??;
        let checkpoint = self.sign_checkpoint(snapshot.tlog_size, snapshot.tlog_root)?;
        let state_sha256 = Sha256::digest(&snapshot.bytes);
        Ok(Backup { checkpoint, log_key: self.log_key().0, state_sha256, created_at_unix: super::now_unix(), snapshot })
    }
}
