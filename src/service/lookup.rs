//! Public lookup: the facts about one certification that anyone holding its lookup code
//! may read. This is the privacy boundary of the public HTTP port: [`PublicCertification`]
//! holds no applicant data, dossier id, signer id, file name or request id, so no adapter
//! can show what it never receives.
//!
//! Reads come from the local replica without a read barrier: the public page must answer
//! even while the node cannot reach a quorum, and says so (`consistency: local`).

use kyso_cluster::Proposer;

use super::{Kyso, ServiceError};
use crate::domain::{CertificationKind, Revocation, Sha256};
use crate::lookup::LookupCode;

/// What the public may know about one certification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicCertification {
    pub lookup_code: LookupCode,
    pub kind: CertificationKind,
    pub agency_id: String,
    pub signer_name: String,
    pub signer_title: String,
    pub signed_at_unix: i64,
    pub document_sha256: Sha256,
    /// The certified PDF the citizen received, when one was delivered.
    pub delivered_pdf_sha256: Option<Sha256>,
    /// Present when the certification was revoked. Its reason is public text.
    pub revocation: Option<Revocation>,
}

impl<P: Proposer> Kyso<P> {
    /// The public facts for `code`, or `None` when no certification has it. The code is
    /// looked up by the hash of its canonical form, so the time taken says nothing about
    /// which prefixes exist.
    pub fn public_lookup(&self, code: &LookupCode) -> Result<Option<PublicCertification>, ServiceError> {
        let Some(certification) = self.state.certification(code)? else {
            return Ok(None);
        };
        let signer = self.state.signer(&certification.signer_id)?.ok_or_else(|| {
            ServiceError::DataLoss("a certification refers to a signer the state does not hold".into())
        })?;
        // Text recorded before the text rule (src/text.rs) existed may hold characters that
        // reorder or hide what is around them: the page, its JSON and the stamp show them
        // escaped, never raw.
        let shown = |text: String| crate::text::for_html(&text).into_owned();
        Ok(Some(PublicCertification {
            lookup_code: certification.lookup_code,
            kind: certification.kind,
            agency_id: shown(certification.agency_id),
            signer_name: shown(signer.name),
            signer_title: shown(signer.title),
            signed_at_unix: certification.signed_at_unix,
            document_sha256: certification.document_sha256,
            delivered_pdf_sha256: certification.delivered_pdf.as_ref().map(|pdf| pdf.sha256),
            revocation: certification.revocation.map(|revocation| Revocation { reason: shown(revocation.reason), ..revocation }),
        }))
    }
}
