//! The canonical leaf of the transparency log: what is hashed into the Merkle tree for each
//! certification, revocation, signer registration and security event, with its actor. One encoding (postcard) with a
//! version; an offline verifier decodes the same bytes it hashes.

use serde::{Deserialize, Serialize};

use crate::access::{Actor, Principal};
use crate::domain::{Certification, Sha256, Signer, SignerRevocation};
use crate::lookup::LookupCode;

/// Version 2 added the actor to every leaf and the security events.
pub const LEAF_VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEvent {
    /// A certification as signed (its `revocation` is always `None` here).
    Certification(Certification),
    Revocation { lookup_code: LookupCode, document_sha256: Sha256, reason: String, revoked_at_unix: i64 },
    /// A signer as registered, without its sealed key.
    SignerRegistered(Signer),
    /// A client certificate's grants changed (no roles: access withdrawn).
    AccessChanged(Principal),
    /// A call refused with PERMISSION_DENIED (see `AuditEvent::Refused`).
    Refused { action: String, reason: String, suppressed_before: u64 },
    /// A signer certificate revoked by an imported CRL.
    SignerCertificateRevoked(SignerRevocation),
    /// A wrong PIN for a signer's key; `locked` once the count reached the limit.
    PinRejected { signer_id: String, failures: u32, locked: bool },
    /// An admin cleared a signer's wrong-PIN count.
    SignerUnlocked { signer_id: String },
    /// A signer re-sealed its key under a new PIN.
    SignerKeyReplaced { signer_id: String },
    /// A cluster membership change.
    ClusterChanged { change: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLeaf {
    pub version: u8,
    /// Who caused the event (the command's actor).
    pub actor: Actor,
    pub event: LogEvent,
}

impl LogLeaf {
    pub fn new(actor: Actor, event: LogEvent) -> LogLeaf {
        LogLeaf { version: LEAF_VERSION, actor, event }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard serialisation of owned data into a Vec")
    }

    /// Decodes leaf bytes; refuses versions this build does not know and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<LogLeaf, String> {
        let (leaf, rest): (LogLeaf, &[u8]) = postcard::take_from_bytes(bytes).map_err(|error| error.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the leaf", rest.len()));
        }
        if leaf.version != LEAF_VERSION {
            return Err(format!("leaf version {} is not {LEAF_VERSION}", leaf.version));
        }
        Ok(leaf)
    }
}
