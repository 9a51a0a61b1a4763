//! The canonical leaf of the transparency log: what is hashed into the Merkle tree for each
//! certification, revocation and signer registration. One encoding (postcard) with a
//! version; an offline verifier decodes the same bytes it hashes.

use serde::{Deserialize, Serialize};

use crate::domain::{Certification, Sha256, Signer};
use crate::lookup::LookupCode;

pub const LEAF_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEvent {
    /// A certification as signed (its `revocation` is always `None` here).
    Certification(Certification),
    Revocation { lookup_code: LookupCode, document_sha256: Sha256, reason: String, revoked_at_unix: i64 },
    /// A signer as registered, without its sealed key.
    SignerRegistered(Signer),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLeaf {
    pub version: u8,
    pub event: LogEvent,
}

impl LogLeaf {
    pub fn new(event: LogEvent) -> LogLeaf {
        LogLeaf { version: LEAF_VERSION, event }
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
