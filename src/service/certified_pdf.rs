//! The certified PDF of a certification: its number in the agency's register, the block's
//! facts, the performer's PAdES signature, and the delivered PDF stored as a blob of its
//! own before the certification is proposed.
//!
//! Numbering: the number is inside what is signed, signatures are made before proposing,
//! and apply is deterministic. So the proposing node reads its agency-year's next number
//! (after a read barrier), signs under it, and proposes; apply accepts a certification only
//! when its number is exactly the next one, and otherwise refuses it without remembering
//! the request id (`Rejection::RegisterNumberTaken`). The node then signs again under the
//! next number, at most `REGISTER_ATTEMPTS_MAX` times. One node numbers one certification
//! batch at a time (`Kyso::register_lock`), so races happen only between nodes. A refused
//! attempt leaves an unreferenced PDF blob in the store, never a number.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::{Kyso, ServiceError};
use crate::crypto::{self, SigningKey};
use crate::domain::{Certification, DeliveredPdf, Sha256, Signer};
use crate::pdf::{self, Block, BlockPlacement, BlockText, PdfError, ScanFormat, SignatureFields};

/// Attempts at numbering one batch before the caller hears UNAVAILABLE.
pub const REGISTER_ATTEMPTS_MAX: usize = 8;
/// Bytes reserved in each signature for the timestamp token issue 15 adds.
const TIMESTAMP_TOKEN_ROOM_BYTES: usize = 8 * 1024;
/// Bytes reserved beyond the chain and the timestamp: attributes, signature, DER headers.
const SIGNATURE_MARGIN_BYTES: usize = 4 * 1024;

/// What the certified PDF prints and where, from configuration.
#[derive(Debug, Clone)]
pub struct PdfSettings {
    /// The public site; the QR code points at `{public_base_url}/v/{code}`.
    pub public_base_url: String,
    /// Display names of agencies, by id.
    pub agency_names: BTreeMap<String, String>,
    /// Per-agency register format and placement; agencies without an entry use the default.
    pub agencies: BTreeMap<String, crate::config::AgencyPdfConfig>,
}

impl Default for PdfSettings {
    fn default() -> Self {
        PdfSettings { public_base_url: "http://127.0.0.1:7480".into(), agency_names: BTreeMap::new(), agencies: BTreeMap::new() }
    }
}

/// One item of a batch whose scan can become a certified PDF.
pub(crate) struct PdfItem {
    /// Index in the batch.
    pub index: usize,
    pub document: Bytes,
    pub signer: Signer,
    pub key: Arc<SigningKey>,
}

impl<P: Proposer> Kyso<P> {
    /// Builds, signs and stores the certified PDF of every item, numbering them from the
    /// register's next numbers, and sets each certification's `delivered_pdf`.
    pub(crate) async fn deliver_pdfs(&self, certifications: &mut [Certification], items: &[PdfItem]) -> Result<(), ServiceError> {
        let mut next: HashMap<(String, i64), u64> = HashMap::new();
        for item in items {
            let certification = &mut certifications[item.index];
            let year = pdf::vietnam_year(certification.signed_at_unix);
            let slot = (certification.agency_id.clone(), year);
            let number = match next.get(&slot) {
                Some(number) => *number,
                None => self.state.register_next(&slot.0, year)?,
            };
            next.insert(slot, number + 1);
            let block = self.block(certification, &item.signer, year, number);
            let delivered = sign_pdf(item.document.clone(), block, certification.signed_at_unix, item.signer.chain_der.clone(), item.key.clone()).await?;
            let hash = Sha256::digest(&delivered);
            let size_bytes = delivered.len() as u64;
            self.store_delivered(hash, Bytes::from(delivered)).await?;
            certification.delivered_pdf = Some(DeliveredPdf { sha256: hash, size_bytes, register_year: year, register_number: number });
        }
        Ok(())
    }

    fn block(&self, certification: &Certification, signer: &Signer, year: i64, number: u64) -> Block {
        let settings = &self.pdf_settings;
        let agency = settings.agencies.get(&certification.agency_id).cloned().unwrap_or_default();
        let code = certification.lookup_code.to_string();
        Block {
            text: BlockText {
                kind: certification.kind,
                register_number: agency.number_format.replace("{number}", &format!("{number:02}")).replace("{year}", &year.to_string()),
                register_book: agency.book_format.replace("{year}", &year.to_string()),
                signed_at_unix: certification.signed_at_unix,
                performer_name: signer.name.clone(),
                performer_title: signer.title.clone(),
                agency_name: settings.agency_names.get(&certification.agency_id).cloned().unwrap_or_else(|| certification.agency_id.clone()),
                public_url: format!("{}/v/{code}", settings.public_base_url.trim_end_matches('/')),
                lookup_code: code,
            },
            placement: if agency.appended_page { BlockPlacement::AppendedPage } else { BlockPlacement::LastPage },
        }
    }

    /// Write-once, content-addressed, and on a majority of nodes (per-node storage) before
    /// the certification that references it is proposed.
    async fn store_delivered(&self, hash: Sha256, content: Bytes) -> Result<(), ServiceError> {
        self.blobs.put(&hash, content.clone()).await?;
        if let Some(peers) = &self.peer_blobs {
            peers.replicate(hash, content).await.map_err(|error| {
                ServiceError::Unavailable(format!("{error}; the certification was not recorded, retry when the cluster is healthy"))
            })?;
        }
        Ok(())
    }
}

/// Whether kyso delivers a certified PDF for this scan.
pub(crate) fn delivers_pdf(document: &[u8]) -> bool {
    ScanFormat::sniff(document).is_some()
}

/// Builds the PDF and signs it as the performer, on a blocking thread; checks the CMS over
/// the signed ranges before returning.
async fn sign_pdf(document: Bytes, block: Block, signed_at_unix: i64, chain_der: Vec<Vec<u8>>, key: Arc<SigningKey>) -> Result<Vec<u8>, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let unsigned = pdf::build_unsigned(&document, &block).map_err(pdf_error)?;
        let fields = SignatureFields {
            field_name: "kyso-performer".into(),
            signer_name: block.text.performer_name.clone(),
            reason: "Người thực hiện chứng thực".into(),
            signed_at_unix,
            contents_capacity_bytes: chain_der.iter().map(Vec::len).sum::<usize>() + TIMESTAMP_TOKEN_ROOM_BYTES + SIGNATURE_MARGIN_BYTES,
        };
        let prepared = pdf::prepare_signature(unsigned, &fields).map_err(pdf_error)?;
        let cms = crypto::sign_detached_parts(&prepared.signed_parts(), signed_at_unix, &chain_der, &key)
            .map_err(|error| ServiceError::Internal(format!("signing the pdf failed: {error}")))?;
        crypto::verify_detached_parts(&cms, &prepared.signed_parts())
            .map_err(|error| ServiceError::Internal(format!("fresh pdf signature does not verify: {error}")))?;
        prepared.complete(&cms).map_err(pdf_error)
    })
    .await
    .map_err(|error| ServiceError::Internal(format!("pdf task failed: {error}")))?
}

/// A scan kyso cannot turn into a certified PDF is the archived document's problem, not
/// the request's: FAILED_PRECONDITION, with what to do.
fn pdf_error(error: PdfError) -> ServiceError {
    let message = format!("the archived document cannot become a certified pdf: {error}");
    match error {
        PdfError::SignatureTooLarge { .. } | PdfError::Font(_) => ServiceError::Internal(message),
        _ => ServiceError::FailedPrecondition(message),
    }
}
