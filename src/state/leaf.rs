//! The canonical leaf of the transparency log: what is hashed into the Merkle tree for each
//! certification, revocation, signer registration and security event, with its actor.
//! An offline verifier decodes the same bytes it hashes.
//!
//! The first byte of a leaf is its version. Version 3 (written since issue 20) is
//! `0x03 || protobuf(kyso.leaf.v3.LogLeaf)`, specified in proto/kyso/leaf/v3/leaf.proto
//! with test vectors in proto/testdata/leaf-v3/, so auditors in any language can read it.
//! Version 2 leaves are postcard (a Rust encoding whose first byte is the version, 0x02):
//! they stay decodable and keep their bytes, so every old root and checkpoint verifies.
//! This module must never re-encode an old leaf in the new version: a leaf's bytes are
//! fixed once appended.

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::access::{Actor, Principal, Role};
use crate::domain::{
    Certification, CertificationKind, DeliveredPdf, Sha256, Signer, SignerRevocation, CERTIFICATION_RECORD_VERSION,
    CERTIFICATION_RECORD_VERSION_OLDEST,
};
use crate::lookup::LookupCode;
use kyso_proto::leaf::v3 as pb;

/// Postcard leaves with the actor and the security events (before issue 20).
pub const LEAF_VERSION_POSTCARD: u8 = 2;
/// Protobuf leaves (proto/kyso/leaf/v3/leaf.proto): the version new leaves are written in.
pub const LEAF_VERSION: u8 = 3;

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

    /// The leaf's bytes in its own version's encoding.
    ///
    /// Panics on a version this build does not write, or on a certification carrying a
    /// revocation or a signer carrying its sealed key: leaves never hold either.
    pub fn encode(&self) -> Vec<u8> {
        match self.version {
            LEAF_VERSION_POSTCARD => postcard::to_stdvec(self).expect("postcard serialisation of owned data into a Vec"),
            LEAF_VERSION => {
                let mut bytes = vec![LEAF_VERSION];
                bytes.extend(to_proto(self).encode_to_vec());
                bytes
            }
            other => panic!("leaf version {other} has no encoder"),
        }
    }

    /// Decodes leaf bytes of version 2 or 3; refuses other versions, trailing bytes and
    /// (version 3) bytes that are not the deterministic encoding of what they decode to.
    pub fn decode(bytes: &[u8]) -> Result<LogLeaf, String> {
        match bytes.first() {
            Some(&LEAF_VERSION_POSTCARD) => decode_postcard(bytes),
            Some(&LEAF_VERSION) => decode_protobuf(bytes),
            Some(other) => Err(format!("leaf version {other} is not {LEAF_VERSION_POSTCARD} or {LEAF_VERSION}")),
            None => Err("an empty leaf".to_string()),
        }
    }
}

fn decode_postcard(bytes: &[u8]) -> Result<LogLeaf, String> {
    let (leaf, rest): (LogLeaf, &[u8]) = postcard::take_from_bytes(bytes).map_err(|error| error.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the leaf", rest.len()));
    }
    if leaf.version != LEAF_VERSION_POSTCARD {
        return Err(format!("leaf version {} is not {LEAF_VERSION_POSTCARD}", leaf.version));
    }
    Ok(leaf)
}

fn decode_protobuf(bytes: &[u8]) -> Result<LogLeaf, String> {
    let message = pb::LogLeaf::decode(&bytes[1..]).map_err(|error| format!("leaf protobuf: {error}"))?;
    let leaf = from_proto(message)?;
    if leaf.encode() != bytes {
        return Err("leaf bytes are not the deterministic encoding of the leaf (unknown, repeated or reordered fields)".to_string());
    }
    Ok(leaf)
}

fn to_proto(leaf: &LogLeaf) -> pb::LogLeaf {
    use pb::log_leaf::Event;
    let event = match &leaf.event {
        LogEvent::Certification(certification) => Event::Certification(certification_to_proto(certification)),
        LogEvent::Revocation { lookup_code, document_sha256, reason, revoked_at_unix } => Event::Revocation(pb::Revocation {
            lookup_code: lookup_code.as_str().to_string(),
            document_sha256: document_sha256.0.to_vec(),
            reason: reason.clone(),
            revoked_at_unix: *revoked_at_unix,
        }),
        LogEvent::SignerRegistered(signer) => Event::SignerRegistered(signer_to_proto(signer)),
        LogEvent::AccessChanged(principal) => Event::AccessChanged(pb::Principal {
            certificate_sha256: principal.certificate_sha256.0.to_vec(),
            name: principal.name.clone(),
            roles: principal.roles.iter().map(|role| role.as_str().to_string()).collect(),
            agency_ids: principal.agency_ids.clone(),
            signer_ids: principal.signer_ids.clone(),
        }),
        LogEvent::Refused { action, reason, suppressed_before } => {
            Event::Refused(pb::Refused { action: action.clone(), reason: reason.clone(), suppressed_before: *suppressed_before })
        }
        LogEvent::SignerCertificateRevoked(revocation) => Event::SignerCertificateRevoked(pb::SignerRevocation {
            signer_id: revocation.signer_id.clone(),
            serial_hex: revocation.serial_hex.clone(),
            issuer: revocation.issuer.clone(),
            revoked_at_unix: revocation.revoked_at_unix,
            reason: revocation.reason.clone(),
            crl_sha256: revocation.crl_sha256.0.to_vec(),
        }),
        LogEvent::PinRejected { signer_id, failures, locked } => {
            Event::PinRejected(pb::PinRejected { signer_id: signer_id.clone(), failures: *failures, locked: *locked })
        }
        LogEvent::SignerUnlocked { signer_id } => Event::SignerUnlocked(pb::SignerOnly { signer_id: signer_id.clone() }),
        LogEvent::SignerKeyReplaced { signer_id } => Event::SignerKeyReplaced(pb::SignerOnly { signer_id: signer_id.clone() }),
        LogEvent::ClusterChanged { change } => Event::ClusterChanged(pb::ClusterChanged { change: change.clone() }),
    };
    pb::LogLeaf {
        actor: Some(pb::Actor {
            name: leaf.actor.name.clone(),
            certificate_sha256: leaf.actor.certificate_sha256.map(|hash| hash.0.to_vec()).unwrap_or_default(),
        }),
        event: Some(event),
    }
}

fn certification_to_proto(certification: &Certification) -> pb::Certification {
    assert!(certification.revocation.is_none(), "a certification leaf never carries a revocation");
    pb::Certification {
        record_version: u32::from(certification.version),
        lookup_code: certification.lookup_code.as_str().to_string(),
        document_sha256: certification.document_sha256.0.to_vec(),
        kind: match certification.kind {
            CertificationKind::Result => pb::CertificationKind::Result,
            CertificationKind::CertifiedCopy => pb::CertificationKind::CertifiedCopy,
        } as i32,
        agency_id: certification.agency_id.clone(),
        signer_id: certification.signer_id.clone(),
        dossier_id: certification.dossier_id.clone(),
        signed_at_unix: certification.signed_at_unix,
        cms_der: certification.cms_der.clone(),
        delivered_pdf: certification.delivered_pdf.as_ref().map(|delivered| pb::DeliveredPdf {
            sha256: delivered.sha256.0.to_vec(),
            size_bytes: delivered.size_bytes,
            register_year: delivered.register_year,
            register_number: delivered.register_number,
        }),
    }
}

fn signer_to_proto(signer: &Signer) -> pb::Signer {
    assert!(signer.sealed_key.is_none(), "a signer leaf never carries the sealed key");
    pb::Signer {
        id: signer.id.clone(),
        name: signer.name.clone(),
        title: signer.title.clone(),
        agency_ids: signer.agency_ids.clone(),
        subject: signer.subject.clone(),
        issuer: signer.issuer.clone(),
        serial_hex: signer.serial_hex.clone(),
        not_before_unix: signer.not_before_unix,
        not_after_unix: signer.not_after_unix,
        key_algorithm: signer.key_algorithm.clone(),
        chain_der: signer.chain_der.clone(),
        registered_at_unix: signer.registered_at_unix,
    }
}

fn from_proto(message: pb::LogLeaf) -> Result<LogLeaf, String> {
    use pb::log_leaf::Event;
    let actor = message.actor.ok_or("the leaf has no actor")?;
    let actor = Actor {
        name: actor.name,
        certificate_sha256: if actor.certificate_sha256.is_empty() { None } else { Some(sha256(&actor.certificate_sha256)?) },
    };
    let event = match message.event.ok_or("the leaf has no event")? {
        Event::Certification(certification) => LogEvent::Certification(certification_from_proto(certification)?),
        Event::Revocation(revocation) => LogEvent::Revocation {
            lookup_code: lookup_code(&revocation.lookup_code)?,
            document_sha256: sha256(&revocation.document_sha256)?,
            reason: revocation.reason,
            revoked_at_unix: revocation.revoked_at_unix,
        },
        Event::SignerRegistered(signer) => LogEvent::SignerRegistered(signer_from_proto(signer)),
        Event::AccessChanged(principal) => LogEvent::AccessChanged(Principal {
            certificate_sha256: sha256(&principal.certificate_sha256)?,
            name: principal.name,
            roles: principal.roles.iter().map(|role| role_named(role)).collect::<Result<_, _>>()?,
            agency_ids: principal.agency_ids,
            signer_ids: principal.signer_ids,
        }),
        Event::Refused(refused) => {
            LogEvent::Refused { action: refused.action, reason: refused.reason, suppressed_before: refused.suppressed_before }
        }
        Event::SignerCertificateRevoked(revocation) => LogEvent::SignerCertificateRevoked(SignerRevocation {
            signer_id: revocation.signer_id,
            serial_hex: revocation.serial_hex,
            issuer: revocation.issuer,
            revoked_at_unix: revocation.revoked_at_unix,
            reason: revocation.reason,
            crl_sha256: sha256(&revocation.crl_sha256)?,
        }),
        Event::PinRejected(rejected) => {
            LogEvent::PinRejected { signer_id: rejected.signer_id, failures: rejected.failures, locked: rejected.locked }
        }
        Event::SignerUnlocked(only) => LogEvent::SignerUnlocked { signer_id: only.signer_id },
        Event::SignerKeyReplaced(only) => LogEvent::SignerKeyReplaced { signer_id: only.signer_id },
        Event::ClusterChanged(changed) => LogEvent::ClusterChanged { change: changed.change },
    };
    Ok(LogLeaf { version: LEAF_VERSION, actor, event })
}

fn certification_from_proto(certification: pb::Certification) -> Result<Certification, String> {
    let version = u8::try_from(certification.record_version)
        .ok()
        .filter(|version| (CERTIFICATION_RECORD_VERSION_OLDEST..=CERTIFICATION_RECORD_VERSION).contains(version))
        .ok_or_else(|| {
            format!(
                "certification record version {} is not {CERTIFICATION_RECORD_VERSION_OLDEST}-{CERTIFICATION_RECORD_VERSION}",
                certification.record_version
            )
        })?;
    if version < 2 && certification.delivered_pdf.is_some() {
        return Err(format!("a version {version} certification record carries no delivered pdf"));
    }
    let delivered_pdf = match certification.delivered_pdf {
        Some(delivered) => Some(DeliveredPdf {
            sha256: sha256(&delivered.sha256)?,
            size_bytes: delivered.size_bytes,
            register_year: delivered.register_year,
            register_number: delivered.register_number,
        }),
        None => None,
    };
    let kind = match pb::CertificationKind::try_from(certification.kind) {
        Ok(pb::CertificationKind::Result) => CertificationKind::Result,
        Ok(pb::CertificationKind::CertifiedCopy) => CertificationKind::CertifiedCopy,
        _ => return Err(format!("certification kind {} is unknown", certification.kind)),
    };
    Ok(Certification {
        version,
        lookup_code: lookup_code(&certification.lookup_code)?,
        document_sha256: sha256(&certification.document_sha256)?,
        kind,
        agency_id: certification.agency_id,
        signer_id: certification.signer_id,
        dossier_id: certification.dossier_id,
        signed_at_unix: certification.signed_at_unix,
        cms_der: certification.cms_der,
        revocation: None,
        delivered_pdf,
    })
}

fn signer_from_proto(signer: pb::Signer) -> Signer {
    Signer {
        id: signer.id,
        name: signer.name,
        title: signer.title,
        agency_ids: signer.agency_ids,
        subject: signer.subject,
        issuer: signer.issuer,
        serial_hex: signer.serial_hex,
        not_before_unix: signer.not_before_unix,
        not_after_unix: signer.not_after_unix,
        key_algorithm: signer.key_algorithm,
        chain_der: signer.chain_der,
        sealed_key: None,
        registered_at_unix: signer.registered_at_unix,
    }
}

fn sha256(bytes: &[u8]) -> Result<Sha256, String> {
    <[u8; 32]>::try_from(bytes).map(Sha256).map_err(|_| format!("a hash of {} bytes, not 32", bytes.len()))
}

fn lookup_code(text: &str) -> Result<LookupCode, String> {
    LookupCode::parse(text).map_err(|error| format!("lookup code {text:?}: {error}"))
}

fn role_named(text: &str) -> Result<Role, String> {
    [Role::Admin, Role::Clerk, Role::Signer, Role::Verifier, Role::Public, Role::Node]
        .into_iter()
        .find(|role| role.as_str() == text)
        .ok_or_else(|| format!("role {text:?} is unknown"))
}
