//! Verifying a PDF received from elsewhere (issue 15, item 3): every signature in it
//! checked by `pdf::signatures` against the node's trust anchors, and tied to the kyso
//! certification it belongs to when the node knows it.
//!
//! A signature belongs to a certification when a revision of the file that contains it
//! (a signature's signed revision, or the whole file) hashes to a certification's
//! delivered PDF or document: the certified PDF kyso delivered is then a prefix of the
//! received file, and everything signed inside that prefix is what kyso delivered.
//!
//! It never stores the file, and reads the replica as it stands: callers that promise
//! linearizable answers (gRPC Verify) wait for the read barrier first.

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::verify::{Verification, VerifySubject, VerifyView};
use super::{Kyso, ServiceError};
use crate::domain::{Certification, Sha256};
use crate::lookup::LookupCode;
use crate::pdf::{PdfError, SignatureCheck};

/// One signature of a received PDF and the certification it belongs to, if known.
#[derive(Debug, Clone)]
pub struct ReceivedSignature {
    pub check: SignatureCheck,
    pub lookup_code: Option<LookupCode>,
}

/// The signatures of a received PDF, each with its certification's lookup code if known:
/// facts the file itself shows and public lookup codes, nothing else (what the public
/// page may read).
#[derive(Debug, Clone)]
pub struct ReceivedSignatures {
    /// SHA-256 of the whole file as received.
    pub file_sha256: Sha256,
    /// In the order they were made.
    pub signatures: Vec<ReceivedSignature>,
    /// The first revision of the file (a signed revision, or the whole file) that is a
    /// recorded certification's delivered PDF or document.
    pub certified_revision_sha256: Option<Sha256>,
}

/// What a received PDF proves, for an agency's Verify.
#[derive(Debug, Clone)]
pub struct ReceivedPdf {
    /// SHA-256 of the whole file as received.
    pub file_sha256: Sha256,
    /// In the order they were made.
    pub signatures: Vec<ReceivedSignature>,
    /// The verification of the certification the file belongs to (of its scan, with
    /// revocation and log proof), when one matched.
    pub certifications: Option<Verification>,
}

impl<P: Proposer> Kyso<P> {
    /// Checks the signatures of `pdf` and finds its certification. INVALID_ARGUMENT for a
    /// file over [`crate::config::Limits::received_pdf_size_bytes_max`] or one that is not
    /// a readable PDF; NOT_FOUND when it carries no signature and no certification of it
    /// is recorded. The caller decides on the read barrier (see the module comment).
    #[tracing::instrument(skip_all, fields(size_bytes = pdf.len()))]
    pub async fn verify_received_pdf(&self, pdf: Bytes, view: VerifyView) -> Result<ReceivedPdf, ServiceError> {
        let ReceivedSignatures { file_sha256, signatures, certified_revision_sha256 } = self.received_pdf_signatures(pdf).await?;
        let certifications = match certified_revision_sha256 {
            Some(hash) => Some(self.verify_after_barrier(VerifySubject::Sha256(hash.0.to_vec()), view).await?),
            None => None,
        };
        if signatures.is_empty() && certifications.is_none() {
            return Err(ServiceError::NotFound(
                "the pdf carries no signature and no certification of it is recorded; check that this is the signed file".into(),
            ));
        }
        Ok(ReceivedPdf { file_sha256, signatures, certifications })
    }

    /// The signatures of `pdf` and the lookup codes they belong to, read from this
    /// replica. INVALID_ARGUMENT as [`Kyso::verify_received_pdf`]; no signature is an
    /// empty list, not an error.
    pub async fn received_pdf_signatures(&self, pdf: Bytes) -> Result<ReceivedSignatures, ServiceError> {
        let limit = self.limits.received_pdf_size_bytes_max();
        if pdf.len() > limit {
            return Err(ServiceError::InvalidArgument(format!(
                "the pdf is {} bytes, more than the limit of {limit} bytes (limits.verify_message_size_bytes_max less 4 KiB); verify it by sha256 instead",
                pdf.len()
            )));
        }
        let trust = self.trust.clone();
        let file = pdf.clone();
        let checks = tokio::task::spawn_blocking(move || crate::pdf::check_signatures(&file, &trust))
            .await
            .map_err(|error| ServiceError::Internal(format!("the pdf check stopped: {error}")))?
            .map_err(received_pdf_error)?;
        let file_sha256 = Sha256::digest(&pdf);
        let (signatures, certified_revision_sha256) = self.match_certifications(checks, file_sha256, pdf.len())?;
        Ok(ReceivedSignatures { file_sha256, signatures, certified_revision_sha256 })
    }

    /// Gives each signature the lookup code of the first revision at or after its own
    /// that is a recorded certification's delivered PDF or document; returns the hash of
    /// the first such revision.
    fn match_certifications(
        &self,
        checks: Vec<SignatureCheck>,
        file_sha256: Sha256,
        file_len: usize,
    ) -> Result<(Vec<ReceivedSignature>, Option<Sha256>), ServiceError> {
        let mut revisions: Vec<(usize, Sha256)> = checks
            .iter()
            .filter_map(|check| Some((check.byte_range.map(|[_, _, start, len]| start + len)?, check.signed_revision_sha256?)))
            .collect();
        revisions.push((file_len, file_sha256));
        let mut signatures: Vec<ReceivedSignature> = checks.into_iter().map(|check| ReceivedSignature { check, lookup_code: None }).collect();
        let mut first_match = None;
        for (end, hash) in revisions {
            let Some(certification) = self.certification_of_revision(&hash)? else { continue };
            first_match.get_or_insert(hash);
            for signature in signatures.iter_mut().filter(|signature| signature.lookup_code.is_none()) {
                if signature.check.byte_range.is_some_and(|[_, _, start, len]| start + len <= end) {
                    signature.lookup_code = Some(certification.lookup_code.clone());
                }
            }
        }
        Ok((signatures, first_match))
    }

    /// The certification whose delivered PDF or document is exactly `hash`.
    fn certification_of_revision(&self, hash: &Sha256) -> Result<Option<Certification>, ServiceError> {
        Ok(self.state.certifications_of(hash)?.into_iter().find(|certification| {
            certification.document_sha256 == *hash || certification.delivered_pdf.as_ref().is_some_and(|pdf| pdf.sha256 == *hash)
        }))
    }
}

/// A received file kyso cannot read, told to the caller who sent it.
fn received_pdf_error(error: PdfError) -> ServiceError {
    let message = match error {
        PdfError::Encrypted => "the pdf is encrypted; kyso checks the signatures of unencrypted pdfs only".to_string(),
        PdfError::Unparseable(detail) | PdfError::MalformedXref(detail) => format!("the file is not a readable pdf ({detail})"),
        PdfError::TooLarge { what, size, limit } => format!("the {what} is {size}, more than the limit of {limit}"),
        other => format!("the pdf cannot be checked: {other}"),
    };
    ServiceError::InvalidArgument(message)
}
