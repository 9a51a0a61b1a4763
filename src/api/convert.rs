//! Conversions between kyso.v1 messages and domain types, at the edge only.

use kyso_proto::v1 as pb;

use crate::access::{Principal, Role};
use crate::domain::{ArchivedFile, Certification, CertificationKind, Dossier, Sha256, Signer, SignerRevocation};
use crate::service::log::SignedCheckpoint;
use crate::service::received_pdf::{ReceivedPdf, ReceivedSignature};
use crate::service::verify::{Verification, VerifiedCertification, VerifyView};
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
    signer_fields_to_proto(signer, signer.chain_der.clone())
}

fn signer_fields_to_proto(signer: &Signer, certificate_chain_der: Vec<Vec<u8>>) -> pb::Signer {
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
        certificate_chain_der,
        has_server_key: signer.sealed_key.is_some(),
    }
}

pub fn certification_to_proto(certification: &Certification) -> pb::Certification {
    certification_fields_to_proto(certification, certification.cms_der.clone())
}

fn certification_fields_to_proto(certification: &Certification, cms_signature: Vec<u8>) -> pb::Certification {
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
        cms_signature,
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

/// A request's view: INVALID_ARGUMENT for a number the enum does not name.
pub fn verify_view_from_proto(value: i32) -> Result<VerifyView, tonic::Status> {
    match pb::VerifyView::try_from(value) {
        Ok(pb::VerifyView::Unspecified | pb::VerifyView::Full) => Ok(VerifyView::Full),
        Ok(pb::VerifyView::Summary) => Ok(VerifyView::Summary),
        Err(_) => Err(tonic::Status::invalid_argument(format!(
            "view {value} is not a verify view; leave it unset or use 1 (VERIFY_VIEW_FULL) for the full answer, 2 (VERIFY_VIEW_SUMMARY) for the verdict alone"
        ))),
    }
}

/// One certification as `view` shows it: the summary leaves out the CMS and the chain (the
/// service read no proof for it), without copying them first.
fn verified_to_proto(verified: &VerifiedCertification, view: VerifyView) -> pb::VerifiedCertification {
    let (certification, signer) = match view {
        VerifyView::Full => (certification_to_proto(&verified.certification), signer_to_proto(&verified.signer)),
        VerifyView::Summary => (
            certification_fields_to_proto(&verified.certification, Vec::new()),
            signer_fields_to_proto(&verified.signer, Vec::new()),
        ),
    };
    pb::VerifiedCertification {
        inclusion: verified.inclusion.as_ref().map(|(proof, checkpoint)| inclusion_to_proto(proof, checkpoint)),
        certification: Some(certification),
        signer: Some(signer),
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

pub fn verification_to_proto(verification: &Verification, correlation_id: String, view: VerifyView) -> pb::VerifyResponse {
    pb::VerifyResponse {
        correlation_id,
        document_sha256: verification.document_sha256.0.to_vec(),
        certifications: verification.certifications.iter().map(|verified| verified_to_proto(verified, view)).collect(),
        error_code: 0,
        error_message: String::new(),
        pdf_signatures: Vec::new(),
    }
}

/// The answer for a received PDF: its signatures, and the certification it belongs to.
pub fn received_pdf_to_proto(received: &ReceivedPdf, correlation_id: String, view: VerifyView) -> pb::VerifyResponse {
    let certifications = received
        .certifications
        .as_ref()
        .map(|verification| verification.certifications.iter().map(|verified| verified_to_proto(verified, view)).collect());
    pb::VerifyResponse {
        correlation_id,
        document_sha256: received.file_sha256.0.to_vec(),
        certifications: certifications.unwrap_or_default(),
        error_code: 0,
        error_message: String::new(),
        pdf_signatures: received.signatures.iter().map(pdf_signature_to_proto).collect(),
    }
}

fn pdf_signature_to_proto(signature: &ReceivedSignature) -> pb::PdfSignatureReport {
    let check = &signature.check;
    let signer = check.signer.as_ref();
    pb::PdfSignatureReport {
        field_name: check.field_name.clone(),
        sub_filter: check.sub_filter.clone(),
        signer_common_name: signer.map(|signer| signer.common_name.clone()).unwrap_or_default(),
        signer_subject: signer.map(|signer| signer.subject.clone()).unwrap_or_default(),
        signer_certificate_sha256: signer.map(|signer| signer.certificate_sha256.0.to_vec()).unwrap_or_default(),
        signing_time_unix: check.signing_time_unix.unwrap_or(0),
        timestamp_unix: check.timestamp_unix.unwrap_or(0),
        timestamp_trusted: check.timestamp_trusted,
        signer_trusted: check.signer_trusted,
        covers_whole_file: check.covers_whole_file,
        changed_after_signature: check.changed_after_signature,
        cryptographically_valid: check.cryptographically_valid,
        reason: check.defect.as_ref().map(ToString::to_string).unwrap_or_default(),
        reason_vi: check.defect.as_ref().map(|defect| defect.vietnamese().to_string()).unwrap_or_default(),
        lookup_code: signature.lookup_code.as_ref().map(ToString::to_string).unwrap_or_default(),
        byte_range: check.byte_range.map(|range| range.iter().map(|&offset| offset as u64).collect()).unwrap_or_default(),
        signed_revision_sha256: check.signed_revision_sha256.map(|hash| hash.0.to_vec()).unwrap_or_default(),
    }
}
