//! The replicated state: the commands that change it and the deterministic state machine
//! that applies them to an embedded transactional store (redb).
//!
//! Everything random or time-dependent (ids, lookup codes, signing times, signatures) is
//! fixed in the command before it is proposed; applying a command reads nothing but the
//! command and the current state. This module never sees gRPC types or object storage.

pub mod command;
pub mod leaf;
mod kept;
mod log_hashes;
pub mod packing;
pub mod store;

pub use command::{Command, CommandEnvelope, Outcome, Rejection};
pub use leaf::{LogEvent, LogLeaf};
pub use store::{LogProof, Proofs, StateError, StateStore, VerifyRecord};
