//! Verification: every certification of a document, its signer, whether the signature and
//! the signer's chain hold, and whether it was revoked.
//!
//! Reads are linearizable: they wait for a read barrier, so a verify that starts after a
//! certify was acknowledged sees it.
//!
//! Whether a certification's signature holds over its document, whether the signer's
//! chain was valid at signing time, and the time its time stamp gives never change: the
//! document is content-addressed, the CMS and the chain are written once, the trust
//! anchors are fixed for the process. Those three answers are kept per lookup code in a
//! bounded [`CheckCache`], so a repeated verify reads neither the blob nor re-runs the
//! cryptography, nor decodes the CMS. What can change (revocation of the
//! certification or of the signer's certificate, the log proof) is read fresh every time.

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::{Kyso, ServiceError};
use crate::crypto;
use crate::crypto::cms::Covered;
use crate::crypto::cert::format_unix_utc;
use crate::domain::{Certification, Sha256, Signer, SignerRevocation, SignerStatus};
use crate::state::{LogProof, Proofs, VerifyRecord};
use crate::lookup::LookupCode;

/// What the verifier presents.
#[derive(Debug, Clone)]
pub enum VerifySubject {
    File(Bytes),
    Sha256(Vec<u8>),
    LookupCode(String),
}

/// How much evidence a verify answer carries with its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyView {
    /// The CMS, the signer's chain and the inclusion proof: the answer can be checked
    /// offline.
    #[default]
    Full,
    /// The verdict alone: no inclusion proof is read or signed, and the answer leaves out
    /// the CMS and the chain.
    Summary,
}

#[derive(Debug, Clone)]
pub struct VerifiedCertification {
    pub certification: Certification,
    pub signer: Signer,
    pub signature_valid: bool,
    pub chain_valid_at_signing: bool,
    /// The signer certificate's revocation (from an imported CRL), if any; the summary says
    /// whether it came before the signature (invalid) or after (still valid).
    pub signer_revocation: Option<SignerRevocation>,
    pub summary: String,
    /// Proof of inclusion in the transparency log at the current tree size; `None` in the
    /// summary view.
    pub inclusion: Option<(crate::state::LogProof, super::log::SignedCheckpoint)>,
    /// genTime of the CMS's signature-time-stamp (CAdES-T), when it carries one; `None`
    /// for certifications made without `[tsa]` (or before time stamps existed).
    pub timestamp_unix: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Verification {
    pub document_sha256: Sha256,
    pub certifications: Vec<VerifiedCertification>,
}

impl<P: Proposer> Kyso<P> {
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, subject: VerifySubject) -> Result<Verification, ServiceError> {
        self.read_barrier().await?;
        self.verify_after_barrier(subject, VerifyView::Full).await
    }

    /// Waits until this replica holds every write acknowledged before the call; one wait
    /// covers every verification of requests that had arrived before it began (what
    /// VerifyStream shares among a batch).
    pub async fn verify_barrier(&self) -> Result<(), ServiceError> {
        self.read_barrier().await
    }

    /// [`Kyso::verify`] without its read barrier: the caller MUST have completed
    /// [`Kyso::verify_barrier`] after the request arrived.
    pub async fn verify_after_barrier(&self, subject: VerifySubject, view: VerifyView) -> Result<Verification, ServiceError> {
        let (document_sha256, records, content) = self.read_for_verify(subject, view)?;
        if records.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "no certification of document {document_sha256} is recorded; check the file or ask the issuing office"
            )));
        }
        let cached: Vec<Option<Checked>> = records.iter().map(|record| self.check_cache.get(&record.certification.lookup_code)).collect();
        let content = match content {
            Some(content) => Some(content),
            None if cached.iter().any(Option::is_none) => Some(self.get_blob(&document_sha256).await?),
            None => None,
        };
        let mut verified = Vec::with_capacity(records.len());
        for (VerifyRecord { certification, signer, signer_status, proof }, cached) in records.into_iter().zip(cached) {
            let signer = signer.ok_or_else(|| {
                ServiceError::DataLoss(format!("certification names signer {} that is not recorded", certification.signer_id))
            })?;
            let checked = match (cached, &content) {
                (Some(checked), _) => checked,
                (None, Some(content)) => {
                    let checked = Checked {
                        // A token that does not cover the signature already made `signature` fail.
                        timestamp_unix: crypto::cms::signature_timestamp_unix(&certification.cms_der).ok().flatten(),
                        signature: self.check_signature(&certification, content).await?,
                        chain: self.chains.validate(&signer.chain_der, &self.trust, certification.signed_at_unix)
                            .map(drop)
                            .map_err(|error| error.to_string()),
                    };
                    self.check_cache.put(certification.lookup_code.clone(), checked.clone());
                    checked
                }
                (None, None) => return Err(ServiceError::Internal("a verify check was neither cached nor given the document".into())),
            };
            verified.push(self.check_certification(certification, signer, signer_status, proof, checked)?);
        }
        Ok(Verification { document_sha256, certifications: verified })
    }

    /// Whether the certification's CMS holds over what it signed: the scan, or, for a
    /// certified PDF signed with the signer's token (`token_signing`), whose one signature
    /// is the performer's PDF signature, the ranges of the delivered PDF it covers.
    ///
    /// `scan` hashes to `certification.document_sha256` (`get_blob` checked it, or it was
    /// looked up by its hash), so a SHA-256 signature is checked against that digest: a
    /// token's signature then fails at once on its message-digest, without hashing the scan.
    async fn check_signature(&self, certification: &Certification, scan: &[u8]) -> Result<Result<(), String>, ServiceError> {
        let over_scan = match crypto::cms::verify_detached_covered(&certification.cms_der, Covered::Sha256(&certification.document_sha256.0)) {
            Err(crypto::CmsError::DigestNotSha256) => crypto::verify_detached(&certification.cms_der, scan),
            checked => checked,
        }
        .map(drop)
        .map_err(|error| error.to_string());
        let Some(delivered) = certification.delivered_pdf.as_ref().filter(|_| over_scan.is_err()) else {
            return Ok(over_scan);
        };
        let pdf = self.get_blob(&delivered.sha256).await?;
        Ok(match crate::pdf::signature_ranges(&pdf, &certification.cms_der) {
            Some(ranges) => crypto::verify_detached_parts(&certification.cms_der, &ranges).map(drop).map_err(|error| error.to_string()),
            None => over_scan,
        })
    }

    /// Resolves the subject to the hash of the certified document and what a verify reads
    /// of its certifications ([`StateStore::verify_read`](crate::state::StateStore::verify_read):
    /// a delivered PDF's file or hash names the scan it was made from; a lookup code names
    /// its own document), with the scan's bytes when the client sent them.
    fn read_for_verify(&self, subject: VerifySubject, view: VerifyView) -> Result<(Sha256, Vec<VerifyRecord>, Option<Bytes>), ServiceError> {
        let proofs = match view {
            VerifyView::Full => Proofs::Included,
            VerifyView::Summary => Proofs::Left,
        };
        match subject {
            VerifySubject::File(content) => {
                let hash = Sha256::digest(&content);
                let (scan, records) = self.state.verify_read(&hash, true, proofs)?;
                // The bytes are the scan's only when the file is the scan.
                Ok((scan, records, (scan == hash).then_some(content)))
            }
            VerifySubject::Sha256(bytes) => {
                let hash = Sha256::from_slice(&bytes).ok_or_else(|| {
                    ServiceError::InvalidArgument(format!("sha256 must be 32 bytes, got {}", bytes.len()))
                })?;
                let (scan, records) = self.state.verify_read(&hash, true, proofs)?;
                Ok((scan, records, None))
            }
            VerifySubject::LookupCode(text) => {
                let code = LookupCode::parse(&text).map_err(|error| ServiceError::InvalidArgument(error.to_string()))?;
                // The code names its own document, even one that is also a delivered PDF.
                let (scan, records) = self
                    .state
                    .verify_read_code(&code, proofs)?
                    .ok_or_else(|| ServiceError::NotFound(format!("no certification has lookup code {code}")))?;
                Ok((scan, records, None))
            }
        }
    }

    fn check_certification(
        &self,
        certification: Certification,
        signer: Signer,
        signer_status: SignerStatus,
        proof: Option<LogProof>,
        checked: Checked,
    ) -> Result<VerifiedCertification, ServiceError> {
        let Checked { signature, chain, timestamp_unix } = checked;
        let signer_revocation = signer_status.revocation;
        let revoked_before_signing =
            signer_revocation.as_ref().filter(|revocation| revocation.revoked_at_unix <= certification.signed_at_unix);
        let summary = match (&certification.revocation, &signature, &chain, revoked_before_signing, &signer_revocation) {
            (_, Err(error), _, _, _) => format!("invalid: the signature does not verify ({error})"),
            (_, _, Err(error), _, _) => format!("invalid: the signer's certificate was not valid at signing time ({error})"),
            (_, _, _, Some(revocation), _) => format!(
                "invalid: the signer's certificate was revoked at {} ({}), before this signature was made at {}",
                format_unix_utc(revocation.revoked_at_unix),
                revocation.reason,
                format_unix_utc(certification.signed_at_unix)
            ),
            (Some(revocation), _, _, _, _) => format!("revoked: {}", revocation.reason),
            (None, Ok(_), Ok(_), None, Some(revocation)) => format!(
                "valid: signed at {}, before the signer's certificate was revoked at {} ({})",
                format_unix_utc(certification.signed_at_unix),
                format_unix_utc(revocation.revoked_at_unix),
                revocation.reason
            ),
            (None, Ok(_), Ok(_), None, None) => "valid".to_string(),
        };
        let inclusion = proof.map(|proof| self.sign_checkpoint(proof.tree_size, proof.root).map(|checkpoint| (proof, checkpoint))).transpose()?;
        Ok(VerifiedCertification {
            timestamp_unix,
            inclusion,
            signature_valid: signature.is_ok(),
            chain_valid_at_signing: chain.is_ok(),
            signer_revocation,
            summary,
            certification,
            signer,
        })
    }
}

/// The answers about one certification that never change (see the module comment).
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    signature: Result<(), String>,
    chain: Result<(), String>,
    /// genTime of the signature-time-stamp: decoding the CMS for it took 16 % of a node's
    /// time under verify load.
    timestamp_unix: Option<i64>,
}

/// [`Checked`] answers by lookup code, least recently used dropped first; at most
/// `limits.verify_cache_entries_max` (0: nothing is kept).
pub(crate) struct CheckCache {
    entries: Option<std::sync::Mutex<lru::LruCache<LookupCode, Checked>>>,
}

impl CheckCache {
    pub fn new(capacity: usize) -> CheckCache {
        CheckCache { entries: std::num::NonZeroUsize::new(capacity).map(|capacity| std::sync::Mutex::new(lru::LruCache::new(capacity))) }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, lru::LruCache<LookupCode, Checked>>> {
        self.entries.as_ref().map(|entries| entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn get(&self, code: &LookupCode) -> Option<Checked> {
        self.lock()?.get(code).cloned()
    }

    fn put(&self, code: LookupCode, checked: Checked) {
        if let Some(mut entries) = self.lock() {
            entries.put(code, checked);
        }
    }
}
