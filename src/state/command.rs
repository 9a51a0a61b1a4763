//! Commands: the only way the replicated state changes, one file's worth of types so the
//! whole write vocabulary reads in one place. One canonical encoding (postcard) with a
//! version byte; a node refuses versions it does not know instead of guessing.

use serde::{Deserialize, Serialize};

use crate::access::{Actor, Principal};
use crate::domain::{AgencySeal, Certification, Dossier, KeptCrl, Sha256, Signer, SignerRevocation, SignerStatus};
use crate::lookup::LookupCode;
use crate::statistics::VerificationCount;

/// Version of the command encoding this build writes and applies. Version 2 added the
/// actor and the security commands; version 3 the delivered PDF of a certification and
/// the agency seal; version 4 the verification tally; version 5 `ImportCrl`, which keeps
/// the CRL for certified PDFs' validation data.
pub const COMMAND_VERSION: u8 = 5;

/// The oldest command version this build applies: a version 2 command is a version 3
/// command that uses none of its additions (its certifications are version 1 records,
/// which still decode), so entries written before an upgrade replay unchanged.
pub const COMMAND_VERSION_OLDEST: u8 = 2;

/// A command with what every command carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub version: u8,
    /// Client-chosen idempotency key: a second command with the same id is not applied.
    pub request_id: String,
    /// SHA-256 over the client's request (not over this command, whose signature and codes
    /// differ between retries): tells a retry from a different request reusing the id.
    pub request_fingerprint: [u8; 32],
    /// When the proposing node accepted the request.
    pub issued_at_unix: i64,
    pub command: Command,
    /// Who asked: recorded in every log leaf the command appends.
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterSigner(Signer),
    ArchiveDossier(Dossier),
    /// One or many certifications, applied all or nothing.
    Certify(Vec<Certification>),
    RevokeCertification { lookup_code: LookupCode, reason: String, revoked_at_unix: i64 },
    /// Grants (or, with no roles, withdraws) a client certificate's access.
    SetAccess(Principal),
    /// Records a security-relevant event that changes no other state (a refused call, a
    /// membership change).
    Audit(AuditEvent),
    /// Signer certificates found revoked in a verified CRL (before version 5; still
    /// applied when replayed).
    RevokeSignerCertificates { crl_sha256: Sha256, issuer: String, revocations: Vec<SignerRevocation> },
    /// A wrong PIN for a signer's server-held key: counts toward the lock.
    PinRejected { signer_id: String },
    /// An admin clears a signer's wrong-PIN count.
    UnlockSigner { signer_id: String },
    /// The signer re-sealed its key under a new PIN.
    ReplaceSignerKey { signer_id: String, sealed_key: Vec<u8> },
    /// Registers (or replaces) an agency's organisation certificate and sealed key.
    RegisterAgencySeal(AgencySeal),
    /// Verifications one node answered since its previous tally, added to the statistics
    /// (at most [`TALLY_ENTRIES_PER_COMMAND_MAX`] lines).
    TallyVerifications(Vec<VerificationCount>),
    /// A verified CRL: the signer certificates it revokes and, when small enough, the CRL
    /// itself, kept (if newer than the one kept for its issuer) for certified PDFs' DSS.
    ImportCrl { crl_sha256: Sha256, issuer: String, revocations: Vec<SignerRevocation>, kept: Option<KeptCrl> },
}

/// Lines one verification tally carries at most.
pub const TALLY_ENTRIES_PER_COMMAND_MAX: usize = 1024;

/// Events recorded by [`Command::Audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// A call refused with PERMISSION_DENIED. `suppressed_before` counts refusals of the
    /// same actor that the node did not record (rate limit) since its previous entry.
    Refused { action: String, reason: String, suppressed_before: u64 },
    /// A cluster membership change an admin made.
    ClusterChanged { change: String },
}

/// What applying a command produced; the response to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Signer(Signer),
    Dossier(Dossier),
    Certifications(Vec<Certification>),
    Rejected(Rejection),
    Principal(Principal),
    /// An audit entry was appended at this leaf index.
    Audited(u64),
    SignerRevocations(Vec<SignerRevocation>),
    SignerStatus(SignerStatus),
    AgencySeal(AgencySeal),
    /// A verification tally was added: this many lines.
    Tallied(u64),
    /// How a request row remembers `Certifications` (issue 16): by lookup code, read back
    /// from the records as they stand. Never returned by apply.
    CertificationsByCode(Vec<LookupCode>),
    /// How a request row remembers `Dossier` (record layout 3): by id, read back from the
    /// dossier (which never changes once archived), without its private fields once the
    /// row's retention passed. Never returned by apply.
    DossierById(String),
}

/// Why the state machine refused a command (it was applied as a no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("request id {0:?} was already used for a different request; choose a new request id")]
    RequestIdReused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("command cannot be decoded: {0}")]
    Undecodable(String),
    /// A certification's register number is not its agency-year's next one (another node
    /// or request took it first). Not remembered under the request id: the proposer signs
    /// again under the next number and proposes with the same id.
    #[error("register number {number} of agency {agency_id} for {year} is taken; the next is {expected}")]
    RegisterNumberTaken { agency_id: String, year: i64, number: u64, expected: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode command: {0}")]
pub struct EncodeError(String);

impl CommandEnvelope {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_stdvec(self).expect("postcard serialisation of owned data into a Vec")
    }

    pub fn decode(bytes: &[u8]) -> Result<CommandEnvelope, Rejection> {
        let envelope: CommandEnvelope =
            postcard::from_bytes(bytes).map_err(|error| Rejection::Undecodable(error.to_string()))?;
        if !(COMMAND_VERSION_OLDEST..=COMMAND_VERSION).contains(&envelope.version) {
            return Err(Rejection::Undecodable(format!(
                "command version {} is not {COMMAND_VERSION_OLDEST}-{COMMAND_VERSION}; upgrade every node to the same release",
                envelope.version
            )));
        }
        Ok(envelope)
    }
}

impl Outcome {
    /// The outcome as a request row keeps it after its retention: no private dossier
    /// fields, no sealed key. Ids, hashes and certifications (all public) stay.
    pub fn without_private_details(&self) -> Outcome {
        match self {
            Outcome::Dossier(dossier) => Outcome::Dossier(Dossier { private_fields: Vec::new(), ..dossier.clone() }),
            Outcome::Signer(signer) => Outcome::Signer(Signer { sealed_key: None, ..signer.clone() }),
            other => other.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard serialisation of owned data into a Vec")
    }

    pub fn decode(bytes: &[u8]) -> Result<Outcome, Rejection> {
        postcard::from_bytes(bytes).map_err(|error| Rejection::Undecodable(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CertificationKind, Sha256};

    #[test]
    fn commands_written_before_an_upgrade_still_decode() {
        let certification = Certification {
            version: 1,
            lookup_code: LookupCode::parse("7K3MQ9TX2HRNB4WD").unwrap(),
            document_sha256: Sha256([7; 32]),
            kind: CertificationKind::Result,
            agency_id: "xa-a".into(),
            signer_id: "s1".into(),
            dossier_id: String::new(),
            signed_at_unix: 1_795_000_000,
            cms_der: vec![0x30, 0x00],
            revocation: None,
            delivered_pdf: None,
        };
        let envelope = |version| CommandEnvelope {
            version,
            request_id: "r".into(),
            request_fingerprint: [1; 32],
            issued_at_unix: 1_795_000_000,
            command: Command::Certify(vec![certification.clone()]),
            actor: Actor::local("test"),
        };
        for version in COMMAND_VERSION_OLDEST..=COMMAND_VERSION {
            assert_eq!(CommandEnvelope::decode(&envelope(version).encode()).unwrap(), envelope(version));
        }
        for version in [COMMAND_VERSION_OLDEST - 1, COMMAND_VERSION + 1] {
            let refused = CommandEnvelope::decode(&envelope(version).encode()).unwrap_err().to_string();
            assert!(refused.contains("upgrade every node"), "{refused}");
        }
    }
}
