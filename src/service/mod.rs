//! Use cases: archive, certify/sign, verify. A service validates input, fixes everything
//! random or time-dependent, proposes one command and reads state. It knows nothing of
//! gRPC or HTTP; adapters in `api` convert at the edge and map [`ServiceError`] to statuses.

pub mod archive;
pub mod backup;
pub mod forward;
pub mod certified_pdf;
pub mod cpu_pool;
pub mod log;
pub mod lookup;
pub mod received_pdf;
pub mod scrub;
pub mod security;
pub mod signing;
pub mod statistics;
pub mod timestamp;
pub mod token_signing;
pub mod unlocked;
pub mod validate;
pub mod verify;

use std::sync::Arc;

use bytes::Bytes;
use kyso_cluster::{ProposeError, Proposer};

use crate::access::{Actor, Caller, Role};
use crate::archive::{ArchiveError, BlobStore};
use crate::config::Limits;
use crate::crypto::{MasterKey, TrustAnchors};
use crate::state::command::COMMAND_VERSION;
use crate::state::{Command, CommandEnvelope, Outcome, Rejection, StateError, StateStore};

/// Every way a use case can fail, each with a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DataLoss(String),
    /// A race was lost (a prepared register number was taken meanwhile): redo the
    /// operation from its start.
    #[error("{0}")]
    Aborted(String),
    /// The command may or may not have been applied; retrying with the same request id is safe.
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Rejection> for ServiceError {
    fn from(rejection: Rejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            Rejection::RequestIdReused(_) | Rejection::AlreadyExists(_) => ServiceError::AlreadyExists(message),
            Rejection::NotFound(_) => ServiceError::NotFound(message),
            Rejection::FailedPrecondition(_) => ServiceError::FailedPrecondition(message),
            Rejection::PermissionDenied(_) => ServiceError::PermissionDenied(message),
            Rejection::Undecodable(_) => ServiceError::Internal(message),
            Rejection::RegisterNumberTaken { .. } => {
                ServiceError::Unavailable(format!("{message}; too many certifications raced for the register, retry"))
            }
        }
    }
}

impl From<StateError> for ServiceError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::Corrupt(message) => ServiceError::DataLoss(format!("state record is corrupt: {message}")),
            StateError::Storage(message) => ServiceError::Unavailable(format!("state store unavailable: {message}")),
        }
    }
}

impl From<ArchiveError> for ServiceError {
    fn from(error: ArchiveError) -> Self {
        let message = error.to_string();
        match error {
            ArchiveError::NotFound(_) => ServiceError::NotFound(message),
            ArchiveError::Corrupt { .. } | ArchiveError::SizeMismatch { .. } => ServiceError::DataLoss(message),
            ArchiveError::Unavailable(_) | ArchiveError::Refused(_) | ArchiveError::Spool(_) => {
                ServiceError::Unavailable(message)
            }
        }
    }
}

impl From<ProposeError> for ServiceError {
    fn from(error: ProposeError) -> Self {
        let message = error.to_string();
        match error {
            ProposeError::Busy => ServiceError::ResourceExhausted(message),
            ProposeError::TooLarge { .. } => ServiceError::InvalidArgument(message),
            ProposeError::Stopped(_) | ProposeError::NotLeader { .. } | ProposeError::Unavailable(_) => {
                ServiceError::Unavailable(message)
            }
            ProposeError::Unknown => ServiceError::OutcomeUnknown(message),
        }
    }
}

/// How many validated signer chains a node keeps (a commune has a handful of signers; a
/// province some thousands).
const CHAIN_CACHE_ENTRIES_MAX: usize = 4096;

/// The node's use cases over one consensus driver.
pub struct Kyso<P: Proposer> {
    pub(crate) state: Arc<StateStore>,
    pub(crate) blobs: BlobStore,
    pub(crate) proposer: P,
    pub(crate) trust: TrustAnchors,
    /// Signer chains that validated against `trust`, with the time span they hold in.
    pub(crate) chains: crate::crypto::ChainCache,
    pub(crate) master_key: MasterKey,
    /// The master key before a rotation: keys sealed under it are re-sealed on next use.
    pub(crate) previous_master_key: Option<MasterKey>,
    pub(crate) limits: Limits,
    /// Certificates granted roles by configuration (bootstrap operators), by fingerprint.
    pub(crate) static_principals: Vec<crate::access::Principal>,
    pub(crate) random: ring::rand::SystemRandom,
    pub(crate) log: log::LogIdentity,
    /// Copies of blobs on other nodes (per-node local storage in a cluster); `None` when
    /// the node is standalone or the object store is shared.
    pub(crate) peer_blobs: Option<Arc<dyn PeerBlobs>>,
    /// Signer keys opened by a recent PIN unlock (`limits.unlocked_key_seconds_max`).
    pub(crate) unlocked_keys: unlocked::UnlockedKeys,
    /// One PIN unseal per signer at a time (single flight).
    pub(crate) unseal_gates: unlocked::UnsealGates,
    /// Signature and chain answers per certification (`limits.verify_cache_entries_max`).
    pub(crate) check_cache: verify::CheckCache,
    /// The checkpoint signed last (see `log::sign_checkpoint`).
    pub(crate) last_checkpoint: std::sync::Mutex<Option<log::SignedCheckpoint>>,
    /// Held by the one blob fill pass that runs at a time (`fill_missing_blobs`).
    pub(crate) blob_fill: tokio::sync::Mutex<()>,
    /// When this node stops answering from its replica (see [`Kyso::check_health`]).
    pub(crate) health_bounds: kyso_cluster::HealthBounds,
    /// What certified PDFs print (agency names, register formats, the public site).
    pub(crate) pdf_settings: certified_pdf::PdfSettings,
    /// Held while a batch is numbered in the register, signed and proposed, so that one
    /// node never races itself for a number (see `certified_pdf`).
    pub(crate) register_lock: tokio::sync::Mutex<()>,
    /// Verifications answered here and not yet in the replicated statistics.
    pub(crate) verification_tally: statistics::VerificationTally,
    /// The node's time-stamping authority and where signatures get their time stamps.
    pub(crate) timestamps: timestamp::Timestamps,
    /// PDF revisions prepared for a signer's token, held on this node until completed
    /// or expired (see `token_signing`).
    pub(crate) prepared_tokens: token_signing::PreparedTokenSignatures,
}

/// Blob copies on other nodes, for clusters with per-node local storage. Implemented by
/// the node's adapter, which knows how nodes talk. Neither direction holds a whole blob in
/// memory: pushes stream from this node's store, fetches stream into its spool.
pub trait PeerBlobs: Send + Sync + 'static {
    /// Copies the blob `hash` of `size_bytes`, which this node's store already holds, to
    /// enough other voters that, with this node's copy, a majority holds it. Fails if a
    /// majority cannot be reached.
    fn replicate(
        &self,
        hash: crate::domain::Sha256,
        size_bytes: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
    /// Fetches a blob of `size_bytes` this node lacks from any peer into the spool; the
    /// implementation checks its hash and size.
    fn fetch(
        &self,
        hash: crate::domain::Sha256,
        size_bytes: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::archive::SpooledBlob, String>> + Send + '_>>;
}

impl<P: Proposer> Kyso<P> {
    pub fn new(
        state: Arc<StateStore>,
        blobs: BlobStore,
        proposer: P,
        trust: TrustAnchors,
        master_key: MasterKey,
        limits: Limits,
        log: log::LogIdentity,
    ) -> Self {
        let random = ring::rand::SystemRandom::new();
        // Fails only when the OS has no random source, in which case nothing here works.
        let unlocked_keys = unlocked::UnlockedKeys::new(std::time::Duration::from_secs(limits.unlocked_key_seconds_max), &random)
            .expect("the system random source is unavailable");
        Kyso {
            unlocked_keys,
            unseal_gates: unlocked::UnsealGates::default(),
            check_cache: verify::CheckCache::new(limits.verify_cache_entries_max),
            last_checkpoint: std::sync::Mutex::new(None),
            blob_fill: tokio::sync::Mutex::new(()),
            pdf_settings: certified_pdf::PdfSettings::default(),
            register_lock: tokio::sync::Mutex::new(()),
            verification_tally: statistics::VerificationTally::default(),
            timestamps: timestamp::Timestamps::default(),
            prepared_tokens: token_signing::PreparedTokenSignatures::new(0, String::new()),
            state,
            blobs,
            proposer,
            trust,
            chains: crate::crypto::ChainCache::new(CHAIN_CACHE_ENTRIES_MAX),
            master_key,
            previous_master_key: None,
            limits,
            static_principals: Vec::new(),
            random,
            log,
            peer_blobs: None,
            health_bounds: kyso_cluster::HealthBounds::default(),
        }
    }

    /// Bounds of quorum contact and apply lag past which the node is not ready.
    pub fn with_health_bounds(mut self, bounds: kyso_cluster::HealthBounds) -> Self {
        self.health_bounds = bounds;
        self
    }

    /// Whether this node may answer from its replica: its driver runs, it heard from a
    /// quorum recently and applied what it knows is committed. Callers that serve reads
    /// without a read barrier (the public page, health) MUST check this first.
    pub fn check_health(&self) -> Result<(), kyso_cluster::Unhealthy> {
        self.proposer.check_health(&self.health_bounds)
    }

    /// This node's cluster id and client address: where a signature prepared here must be
    /// completed (see `token_signing`).
    pub fn with_node_identity(mut self, node_id: u64, client_address: String) -> Self {
        self.prepared_tokens = token_signing::PreparedTokenSignatures::new(node_id, client_address);
        self
    }

    /// Accepts keys sealed under `previous` (a master key rotation in progress).
    pub fn with_previous_master_key(mut self, previous: Option<MasterKey>) -> Self {
        self.previous_master_key = previous;
        self
    }

    /// Grants roles to certificates by configuration (checked before replicated grants).
    pub fn with_static_principals(mut self, principals: Vec<crate::access::Principal>) -> Self {
        self.static_principals = principals;
        self
    }

    /// The grants of a client certificate: configuration first, then replicated state.
    pub fn principal(&self, certificate_sha256: &crate::domain::Sha256) -> Result<Option<crate::access::Principal>, ServiceError> {
        if let Some(principal) = self.static_principals.iter().find(|principal| &principal.certificate_sha256 == certificate_sha256) {
            return Ok(Some(principal.clone()));
        }
        Ok(self.state.principal(certificate_sha256)?)
    }

    /// What certified PDFs print: agency names, register formats, the public site.
    pub fn with_pdf_settings(mut self, settings: certified_pdf::PdfSettings) -> Self {
        self.pdf_settings = settings;
        self
    }

    /// Replicates blobs to peers before proposing, and fetches missing ones from them.
    pub fn with_peer_blobs(mut self, peer_blobs: Arc<dyn PeerBlobs>) -> Self {
        self.peer_blobs = Some(peer_blobs);
        self
    }

    pub fn proposer(&self) -> &P {
        &self.proposer
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Returns the stored outcome of an earlier request with this id, if any: the same
    /// request again gets the same answer without new work; a different one is refused.
    ///
    /// Waits for a read barrier first: every check a write makes against state (the request
    /// id, the signer, the archived blob) must see every write acknowledged before it, on
    /// whichever node serves it.
    ///
    /// The fingerprint is bound to the actor: another caller reusing the id is refused
    /// rather than shown the first caller's answer.
    pub(crate) async fn earlier_outcome(&self, actor: &Actor, request_id: &str, fingerprint: &[u8; 32]) -> Result<Option<Outcome>, ServiceError> {
        self.read_barrier().await?;
        let fingerprint = bind_actor(fingerprint, actor);
        match self.state.request_outcome(actor, request_id, &fingerprint)? {
            None => Ok(None),
            Some((stored, outcome)) if stored == fingerprint => Ok(Some(outcome)),
            Some(_) => Err(Rejection::RequestIdReused(request_id.to_string()).into()),
        }
    }

    /// Proposes a command and waits for it to be committed and applied.
    pub(crate) async fn propose(&self, actor: &Actor, request_id: &str, fingerprint: [u8; 32], command: Command) -> Result<Outcome, ServiceError> {
        match self.propose_for_outcome(actor, request_id, fingerprint, command).await? {
            Outcome::Rejected(rejection) => Err(rejection.into()),
            outcome => Ok(outcome),
        }
    }

    /// [`Kyso::propose`] with a rejection returned as the outcome it is.
    pub(crate) async fn propose_for_outcome(&self, actor: &Actor, request_id: &str, fingerprint: [u8; 32], command: Command) -> Result<Outcome, ServiceError> {
        let envelope = CommandEnvelope {
            version: COMMAND_VERSION,
            request_id: request_id.to_string(),
            request_fingerprint: bind_actor(&fingerprint, actor),
            issued_at_unix: now_unix(),
            command,
            actor: actor.clone(),
        };
        let response = self.proposer.propose(Bytes::from(envelope.encode())).await?;
        Ok(Outcome::decode(&response)?)
    }

    /// Waits until local state includes every acknowledged write.
    pub(crate) async fn read_barrier(&self) -> Result<(), ServiceError> {
        Ok(self.proposer.read_barrier().await?)
    }
}

/// Refuses a caller that lacks `role`. The RPC table in `api::auth` already checked the
/// role of network callers; services check again for calls that do not pass through it.
pub(crate) fn require_role(caller: &Caller, role: Role, what: &str) -> Result<(), ServiceError> {
    if caller.has(role) {
        return Ok(());
    }
    Err(ServiceError::PermissionDenied(format!("{what} needs the {role} role; {} does not hold it", caller.actor)))
}

fn bind_actor(fingerprint: &[u8; 32], actor: &Actor) -> [u8; 32] {
    crate::service::fingerprint(&[fingerprint, &actor.fingerprint_part()])
}

/// Seconds since the Unix epoch. Called only before proposing, never while applying.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// SHA-256 over length-prefixed parts: the fingerprint of a client request.
pub fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    crate::crypto::cert::length_prefixed_digest(parts)
}
