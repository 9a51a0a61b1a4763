//! Conversions between kyso.v1 messages and domain types, at the edge only.

use kyso_proto::v1 as pb;

use crate::access::{Principal, Role};
use crate::domain::{ArchivedFile, Certification, CertificationKind, Dossier, Sha256, Signer, SignerRevocation};
use crate::service::log::SignedCheckpoint;
use crate::service::verify::{Verification, VerifiedCertification};
use crate::state::LogProof;

pub fn kind_from_proto(value: i32) -> Option<CertificationKind> {
    match pb::CertificationKind::try_from(value) {
        Ok(pb::CertificationKind::Result) => Some(CertificationKind::Result),
        Ok(pb::CertificationKind::CertifiedCopy) => Some(CertificationKind::CertifiedCopy),
        _ => None,
    }
}

pub fn kind_to_proto(kind: CertificationKind) -> pb::CertificationKind {
    match kind {
        CertificationKind::Result => pb::CertificationKind::Result,
        CertificationKind::CertifiedCopy => pb::CertificationKind::CertifiedCopy,
    }
}

pub fn file_to_proto(file: &ArchivedFile) -> pb::ArchivedFile {
    pb::ArchivedFile {
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size_bytes: file.size_bytes,
        sha256: file.sha256.0.to_vec(),
    }
}

pub fn dossier_to_proto(dossier: &Dossier) -> pb::Dossier {
    pb::Dossier {
        dossier_id: dossier.id.clone(),
        agency_id: dossier.agency_id.clone(),
        procedure_code: dossier.procedure_code.clone(),
        dossier_number: dossier.dossier_number.clone(),
        received_date: dossier.received_date.clone(),
        private_fields: dossier.private_fields.iter().cloned().collect(),
        files: dossier.files.iter().map(file_to_proto).collect(),
        archived_at_unix: dossier.archived_at_unix,
    }
}

pub fn signer_to_proto(signer: &Signer) -> pb::Signer {
    pb::Signer {
        signer_id: signer.id.clone(),
        name: signer.name.clone(),
        title: signer.title.clone(),
        agency_ids: signer.agency_ids.clone(),
        subject: signer.subject.clone(),
        issuer: signer.issuer.clone(),
        serial_hex: signer.serial_hex.clone(),
        not_before_unix: signer.not_before_unix,
        not_after_unix: signer.not_after_unix,
        key_algorithm: signer.key_algorithm.clone(),
        certificate_chain_der: signer.chain_der.clone(),
        has_server_key: signer.sealed_key.is_some(),
    }
}

pub fn certification_to_proto(certification: &Certification) -> pb::Certification {
    let (status, reason, revoked_at) = match &certification.revocation {
        Some(revocation) => (pb::CertificationStatus::Revoked, revocation.reason.clone(), revocation.revoked_at_unix),
        None => (pb::CertificationStatus::Valid, String::new(), 0),
    };
    pb::Certification {
        lookup_code: certification.lookup_code.to_string(),
        document_sha256: certification.document_sha256.0.to_vec(),
        kind: kind_to_proto(certification.kind) as i32,
        agency_id: certification.agency_id.clone(),
        signer_id: certification.signer_id.clone(),
        dossier_id: certification.dossier_id.clone(),
        signed_at_unix: certification.signed_at_unix,
        cms_signature: certification.cms_der.clone(),
        status: status as i32,
        revocation_reason: reason,
        revoked_at_unix: revoked_at,
        delivered_pdf_sha256: certification.delivered_pdf.as_ref().map(|pdf| pdf.sha256.0.to_vec()).unwrap_or_default(),
        register_year: certification.delivered_pdf.as_ref().map_or(0, |pdf| pdf.register_year),
        register_number: certification.delivered_pdf.as_ref().map_or(0, |pdf| pdf.register_number),
    }
}

pub fn checkpoint_to_proto(checkpoint: &SignedCheckpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        note: checkpoint.note.clone(),
        origin: checkpoint.origin.clone(),
        tree_size: checkpoint.tree_size,
        root_hash: checkpoint.root.to_vec(),
    }
}

pub fn inclusion_to_proto(proof: &LogProof, checkpoint: &SignedCheckpoint) -> pb::InclusionProof {
    pb::InclusionProof {
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        leaf_data: proof.leaf_data.clone(),
        audit_path: proof.audit_path.iter().map(|hash| hash.to_vec()).collect(),
        checkpoint: Some(checkpoint_to_proto(checkpoint)),
    }
}

fn verified_to_proto(verified: &VerifiedCertification) -> pb::VerifiedCertification {
    pb::VerifiedCertification {
        inclusion: verified.inclusion.as_ref().map(|(proof, checkpoint)| inclusion_to_proto(proof, checkpoint)),
        certification: Some(certification_to_proto(&verified.certification)),
        signer: Some(signer_to_proto(&verified.signer)),
        signature_valid: verified.signature_valid,
        chain_valid_at_signing: verified.chain_valid_at_signing,
        summary: verified.summary.clone(),
        signer_revocation: verified.signer_revocation.as_ref().map(signer_revocation_to_proto),
        signature_timestamp_unix: verified.timestamp_unix.unwrap_or(0),
    }
}

pub fn signer_revocation_to_proto(revocation: &SignerRevocation) -> pb::SignerRevocation {
    pb::SignerRevocation {
        signer_id: revocation.signer_id.clone(),
        serial_hex: revocation.serial_hex.clone(),
        issuer: revocation.issuer.clone(),
        revoked_at_unix: revocation.revoked_at_unix,
        reason: revocation.reason.clone(),
        crl_sha256: revocation.crl_sha256.0.to_vec(),
    }
}

pub fn principal_to_proto(principal: &Principal) -> pb::Principal {
    pb::Principal {
        certificate_sha256: principal.certificate_sha256.0.to_vec(),
        name: principal.name.clone(),
        roles: principal.roles.iter().map(|role| role.as_str().to_string()).collect(),
        agency_ids: principal.agency_ids.clone(),
        signer_ids: principal.signer_ids.clone(),
    }
}

pub fn principal_from_proto(request: &pb::SetAccessRequest) -> Result<Principal, tonic::Status> {
    let certificate_sha256 = Sha256::from_slice(&request.certificate_sha256).ok_or_else(|| {
        tonic::Status::invalid_argument(format!("certificate_sha256 must be 32 bytes, got {}", request.certificate_sha256.len()))
    })?;
    if request.roles.len() > 8 {
        return Err(tonic::Status::invalid_argument("at most 8 roles"));
    }
    let roles = request
        .roles
        .iter()
        .map(|name| {
            Role::parse(name).ok_or_else(|| {
                tonic::Status::invalid_argument(format!("unknown role {name:?}; use admin, clerk, signer, verifier or public"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Principal {
        certificate_sha256,
        name: request.name.clone(),
        roles,
        agency_ids: request.agency_ids.clone(),
        signer_ids: request.signer_ids.clone(),
    })
}

pub fn verification_to_proto(verification: &Verification, correlation_id: String) -> pb::VerifyResponse {
    pb::VerifyResponse {
        correlation_id,
        document_sha256: verification.document_sha256.0.to_vec(),
        certifications: verification.certifications.iter().map(verified_to_proto).collect(),
        error_code: 0,
        error_message: String::new(),
    }
}
