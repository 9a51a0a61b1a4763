//! kyso-cluster: orders opaque commands into a log and applies them, in order and exactly
//! once, to a [`StateMachine`] that the caller implements.
//!
//! This crate never sees a document, a signer or a gRPC type of kyso: commands are bytes.
//! It holds two drivers behind the same [`Proposer`] contract, so the service layer does
//! not change when a node joins a cluster: the single-node driver ([`single::SingleNode`])
//! and the Raft driver ([`raft::RaftNode`], raft-rs with a raft-engine log and a tonic peer
//! transport). See `cluster/README.md` for the write and read paths step by step.

pub mod health;
#[cfg(test)]
pub(crate) mod memory_snapshot;
pub mod metrics;
pub mod raft;
pub mod single;

pub use health::{HealthBounds, Unhealthy};


use std::sync::Arc;

use bytes::Bytes;

/// One committed log entry handed to the state machine.
///
/// Under Raft, every log index reaches the state machine, so that indexes stay consecutive:
/// entries that carry no command (the no-op a new leader appends, membership changes) come
/// with empty `data`, and the state machine MUST apply them as no-ops (record the index,
/// answer an empty response).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Log index, strictly increasing by one across calls to [`StateMachine::apply`].
    pub index: u64,
    /// Raft term of the entry (always 1 on a single node).
    pub term: u64,
    /// The command, opaque to this crate.
    pub data: Bytes,
}

/// The replicated state, implemented by the application.
///
/// Implementations MUST be deterministic: the same entries applied to the same state
/// produce the same state and the same responses on every node. Anything random or
/// time-dependent belongs in the command, fixed before it is proposed.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies `entries` (consecutive, starting at `applied_index() + 1`) and records the
    /// last index as applied in the same atomic, durable transaction. Returns one response
    /// per entry. An `Err` means the state could not be written: the node stops.
    ///
    /// A command the application rejects (a duplicate, a missing signer) is not an error
    /// here: it is applied as a no-op and its rejection is encoded in the response.
    fn apply(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError>;

    /// Applies entries that a durable log holds (the Raft driver's applies): like
    /// [`StateMachine::apply`], but the commit may return before it is durable, as long as
    /// [`StateMachine::durable_index`] says how far the state would come back after a crash.
    /// The driver applies the log's entries after that index again on restart.
    fn apply_logged(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        self.apply(entries)
    }

    /// The last applied index a crash or a power loss cannot take back. The Raft log is
    /// never compacted past it. Without [`StateMachine::apply_logged`] of its own, every
    /// apply is durable and this is `applied_index()`.
    fn durable_index(&self) -> Result<u64, StateMachineError> {
        self.applied_index()
    }

    /// Makes the applied state durable when the state machine's own bound on how long it
    /// stays volatile is reached. The Raft driver calls it on every turn (at least once a
    /// tick), so that an idle node does not keep volatile applies.
    fn persist_if_due(&self) -> Result<(), StateMachineError> {
        Ok(())
    }

    /// The index of the last applied entry (0 for an empty state).
    fn applied_index(&self) -> Result<u64, StateMachineError>;

    /// A consistent, read-only view of the whole state at the applied index, to stream to a
    /// lagging member.
    ///
    /// Called by the Raft driver on its own thread, between two calls to `apply`, so the
    /// view's [`SnapshotSource::index`] MUST equal `applied_index()`. It MUST be cheap (open
    /// a read transaction; read nothing yet): the state is read later, by
    /// [`SnapshotSource::read`] on another thread, while the driver keeps applying.
    fn snapshot(&self) -> Result<Arc<dyn SnapshotSource>, StateMachineError>;

    /// Starts receiving a snapshot at `index` into a fresh staging area, leaving the live
    /// state untouched. Each piece produced by [`SnapshotSource::read`] on the sender is
    /// handed to [`SnapshotSink::write`] in order; a sink dropped before
    /// [`SnapshotSink::finish`] leaves an incomplete staging area that the next call
    /// discards. Called by the transport, off the driver thread, at most once at a time.
    fn receive_snapshot(&self, index: u64) -> Result<Box<dyn SnapshotSink>, StateMachineError>;

    /// Replaces the whole state by the snapshot staged at `index` (finished by a sink) and
    /// records `index` as applied, in one atomic, durable transaction: a crash leaves the
    /// old state or the new, never a mix. After it returns, `applied_index()` MUST be
    /// `index`. The driver may call it again with the same index after a crash, so it MUST
    /// succeed when `index` is already applied and nothing newer is staged.
    fn restore(&self, index: u64) -> Result<(), StateMachineError>;
}

/// A point-in-time view of the state, streamed to members that need a snapshot.
///
/// Holds the state machine's read view (for redb, one read transaction) until dropped.
pub trait SnapshotSource: Send + Sync {
    /// The applied index the view reflects.
    fn index(&self) -> u64;

    /// Reads the whole view, in order, handing it to `emit` in pieces of about
    /// `piece_size_bytes` (a single record larger than that comes alone), so that memory
    /// stays bounded whatever the state's size. Each piece is self-contained for
    /// [`SnapshotSink::write`]. Stops at the first error `emit` returns. May be called again
    /// (another member, a retry): every call yields the same bytes.
    fn read(&self, piece_size_bytes: usize, emit: &mut dyn FnMut(Vec<u8>) -> Result<(), StateMachineError>) -> Result<(), StateMachineError>;
}

/// The receiving end of a streamed snapshot (see [`StateMachine::receive_snapshot`]).
pub trait SnapshotSink: Send {
    /// Writes one piece to the staging area (bounded memory: one piece at a time).
    fn write(&mut self, piece: &[u8]) -> Result<(), StateMachineError>;

    /// Checks that every piece arrived (the stream's own trailer) and makes the staged
    /// state durable, ready for [`StateMachine::restore`].
    fn finish(self: Box<Self>) -> Result<(), StateMachineError>;
}

/// A failure of the state machine's storage. Fatal for the node.
#[derive(Debug, thiserror::Error)]
#[error("state machine storage failed: {0}")]
pub struct StateMachineError(pub String);

/// Why a proposal did not produce a response.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// The proposal queue is full; the caller may retry later.
    #[error("too many proposals in flight; retry shortly")]
    Busy,
    /// The command is larger than the log accepts.
    #[error("command of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    /// The node stopped (storage failure or shutdown); the outcome of proposals in flight
    /// is unknown.
    #[error("node stopped: {0}")]
    Stopped(String),
    /// This node is not the leader; `leader` is the leader's client address if known.
    #[error("not the leader")]
    NotLeader { leader: Option<String> },
    /// Leadership changed while the proposal was in flight: it may or may not have been
    /// applied. Retrying with the same request id is safe.
    #[error("outcome unknown: leadership changed while the command was in flight")]
    Unknown,
    /// No leader confirmed this node's state in time (no quorum reachable, or an election
    /// in progress); nothing was changed. The caller may retry later or on another node.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
}

/// What the service layer needs from a consensus driver.
#[allow(async_fn_in_trait)]
pub trait Proposer: Send + Sync + 'static {
    /// Proposes a command and waits until it is committed and applied locally; returns the
    /// state machine's response for it.
    fn propose(
        &self,
        command: Bytes,
    ) -> impl std::future::Future<Output = Result<Bytes, ProposeError>> + Send;

    /// Waits until the local state reflects every write acknowledged before this call
    /// (a linearizable read point).
    fn read_barrier(&self) -> impl std::future::Future<Output = Result<(), ProposeError>> + Send;

    /// Whether this node may serve from its replica now (see [`health`]): an error names
    /// why not, and whether only a restart helps ([`Unhealthy::is_fatal`]).
    fn check_health(&self, bounds: &HealthBounds) -> Result<(), Unhealthy>;
}

/// Limits of the proposal pipeline.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Proposals waiting to be appended; beyond this, `propose` answers `Busy`.
    pub proposal_queue_depth_max: usize,
    /// Entries applied in one batch (one transaction, one fsync).
    pub batch_entries_max: usize,
    /// Bytes of commands in one batch.
    pub batch_size_bytes_max: usize,
    /// Size of a single command.
    pub command_size_bytes_max: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            proposal_queue_depth_max: 4096,
            batch_entries_max: 512,
            batch_size_bytes_max: 4 * 1024 * 1024,
            command_size_bytes_max: 1024 * 1024,
        }
    }
}
