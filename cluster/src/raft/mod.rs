//! The Raft driver: replicates opaque commands to every member's [`StateMachine`] with
//! raft-rs, a raft-engine log and a tonic peer transport.
//!
//! - [`RaftNode`] is the handle the service layer uses: it implements [`crate::Proposer`]
//!   and offers the admin operations (status, add/remove a node, transfer leadership).
//! - [`config`] names every limit; [`RaftConfig::validate`] checks them.
//! - `replica` is one member as a synchronous value (RawNode + log + state machine + the
//!   Ready cycle); `driver` runs it on a dedicated thread; `transport` carries messages.
//! - `log_store` is the durable log (raft-engine, with an in-memory twin for tests).
//!
//! This module never interprets a command, and only `transport` and `codec` know tonic
//! and prost types.
//!
//! [`StateMachine`]: crate::StateMachine

pub mod codec;
pub mod config;
mod driver;
mod log_store;
mod logger;
mod node;
mod replica;
mod seed;
mod storage;
mod transport;

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod simulation;


pub use config::RaftConfig;
pub use node::{AdminError, NodeStatus, RaftNode, Role, StartError};
pub use seed::seed_restored_log;
pub use transport::{serve_peers, AuthenticatedPeer, PeerService};

/// Where a member can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    /// The member's Raft id: non-zero, unique in the cluster, never reused.
    pub id: u64,
    /// host:port of its peer service (see [`serve_peers`] and [`RaftNode::peer_service`]).
    pub raft_addr: String,
    /// host:port of its client API: what a follower names in `ProposeError::NotLeader`.
    pub client_addr: String,
}
