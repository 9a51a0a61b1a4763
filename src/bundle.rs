//! Offline verification bundles: everything an agency needs to check a certified copy with
//! no network — the CMS signature, the signer's chain, the certification's log leaf, its
//! inclusion proof and the signed checkpoint the proof leads to. The file checked is the
//! certified document or the certified PDF delivered for it (whose hash the log leaf
//! names); a certification signed on a token is checked over that PDF's byte ranges.
//!
//! [`verify_bundle`] is what runs on the verifier's machine. It trusts nothing in the
//! bundle: the document is hashed locally, the leaf is decoded from the bytes that are
//! hashed into the log, the chain is validated against the caller's trust anchors and the
//! checkpoint against the caller's pinned log key. Revocation after export cannot be seen
//! offline; `status_at_export` reports what the node said when the bundle was made.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, TrustAnchors};
use crate::domain::Sha256;
use crate::state::{LogEvent, LogLeaf};
use crate::pdf::PERFORMER_FIELD_NAME;
use crate::tlog::{self, LogVerifier};

pub const BUNDLE_FORMAT: &str = "kyso-bundle/v1";
/// Largest bundle file accepted.
pub const BUNDLE_SIZE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Certifications in one bundle.
pub const BUNDLE_CERTIFICATIONS_MAX: usize = 256;
/// Elements of an inclusion proof (a tree of 2^64 leaves needs 64).
pub const AUDIT_PATH_LENGTH_MAX: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    /// Hex SHA-256 of the document.
    pub document_sha256: String,
    pub certifications: Vec<BundledCertification>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundledCertification {
    pub lookup_code: String,
    /// Base64 DER of the detached CMS SignedData.
    pub cms_signature: String,
    /// Base64 DER certificates, leaf first.
    pub signer_chain: Vec<String>,
    pub signer_name: String,
    pub signer_title: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Base64 of the log leaf's bytes.
    pub leaf_data: String,
    /// Base64 hashes of the audit path.
    pub inclusion_proof: Vec<String>,
    /// The C2SP signed note of a checkpoint of exactly `tree_size`.
    pub checkpoint: String,
    /// What the node reported when the bundle was made ("valid" or "revoked: ...").
    pub status_at_export: String,
}

/// Why a bundle does not check out; each names the step that failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BundleError {
    #[error("bundle is not valid JSON of format {BUNDLE_FORMAT}: {0}")]
    Malformed(String),
    #[error("the file's SHA-256 is {actual}, but the bundle is about {expected}: this is not the certified document")]
    DocumentMismatch { expected: String, actual: String },
    #[error("certification {code}: {reason}")]
    Certification { code: String, reason: String },
}

impl Bundle {
    /// Parses a bundle, enforcing size and count limits.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > BUNDLE_SIZE_BYTES_MAX {
            return Err(BundleError::Malformed(format!("{} bytes exceeds {BUNDLE_SIZE_BYTES_MAX}", bytes.len())));
        }
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(|error| BundleError::Malformed(error.to_string()))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(BundleError::Malformed(format!("format {:?}", bundle.format)));
        }
        if bundle.certifications.is_empty() || bundle.certifications.len() > BUNDLE_CERTIFICATIONS_MAX {
            return Err(BundleError::Malformed(format!(
                "{} certifications; a bundle holds 1-{BUNDLE_CERTIFICATIONS_MAX}",
                bundle.certifications.len()
            )));
        }
        Ok(bundle)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a bundle always serialises")
    }
}

/// What an offline check established for one certification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCertification {
    pub lookup_code: String,
    pub signer_subject: String,
    pub signer_name: String,
    pub signed_at_unix: i64,
    pub agency_id: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub status_at_export: String,
}

/// What the caller's file is to a certification of the bundle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The certified document (the scan) itself.
    Document,
    /// The certified PDF delivered for it, named by the certification's log leaf.
    DeliveredPdf,
}

/// Checks every certification in the bundle against `content` (the certified document, or
/// the certified PDF delivered for it), the caller's trust anchors and the caller's pinned
/// log key. The caller MUST obtain `trust` and `log_key` out of band (never from the
/// bundle).
pub fn verify_bundle(
    bundle: &Bundle,
    content: &[u8],
    trust: &TrustAnchors,
    log_key: &LogVerifier,
) -> Result<Vec<CheckedCertification>, BundleError> {
    let actual = Sha256::digest(content);
    let mismatch = || BundleError::DocumentMismatch { expected: bundle.document_sha256.clone(), actual: actual.to_hex() };
    let document = Sha256::from_hex(&bundle.document_sha256).ok_or_else(|| BundleError::Malformed(format!("document_sha256 {:?} is not 64 hex digits", bundle.document_sha256)))?;
    let delivered: Vec<Option<Sha256>> = bundle.certifications.iter().map(delivered_pdf_of).collect();
    let held = if actual == document {
        Held::Document
    } else if delivered.contains(&Some(actual)) {
        Held::DeliveredPdf
    } else {
        return Err(mismatch());
    };
    // Given a certified PDF, only the certifications that delivered it are checked: another
    // certification of the same document delivered another PDF.
    bundle
        .certifications
        .iter()
        .zip(&delivered)
        .filter(|(_, pdf)| held == Held::Document || **pdf == Some(actual))
        .map(|(item, _)| {
            check_one(item, &document, content, held, trust, log_key)
                .map_err(|reason| BundleError::Certification { code: item.lookup_code.clone(), reason })
        })
        .collect()
}

/// The hash of the certified PDF the item's log leaf names, if it decodes and names one.
fn delivered_pdf_of(item: &BundledCertification) -> Option<Sha256> {
    let leaf = LogLeaf::decode(&BASE64.decode(&item.leaf_data).ok()?).ok()?;
    match leaf.event {
        LogEvent::Certification(certification) => certification.delivered_pdf.map(|pdf| pdf.sha256),
        _ => None,
    }
}

/// Checks the recorded CMS over what it signed and returns the certificate that made it.
/// Over the document: a detached CMS; when it does not verify there and the certification
/// has a certified PDF, it was signed on a token over that PDF, which the caller must then
/// pass. Over the certified PDF: the signature field holding exactly the recorded CMS (a
/// token's), or else the performer's PDF signature, checked over its byte ranges.
fn check_cms(cms: &[u8], content: &[u8], held: Held, has_pdf: bool) -> Result<Vec<u8>, String> {
    match held {
        Held::Document => crypto::verify_detached(cms, content).map(|verified| verified.signer_cert_der).map_err(|error| {
            if has_pdf {
                format!("signature does not verify over the document: {error}; it may cover the certified pdf (signed on a token): pass the certified pdf as --file")
            } else {
                format!("signature does not verify: {error}")
            }
        }),
        Held::DeliveredPdf => {
            let fields = crate::pdf::read_signatures(content).map_err(|error| format!("the certified pdf cannot be read: {error}"))?;
            let signed: Vec<_> = fields.iter().filter_map(|field| field.signed.as_ref().ok().map(|ranges| (field, ranges))).collect();
            let (_, ranges) = signed
                .iter()
                .find(|(_, ranges)| ranges.cms_der == cms)
                .or_else(|| signed.iter().find(|(field, _)| field.field_name == PERFORMER_FIELD_NAME))
                .ok_or_else(|| format!("the certified pdf has no {PERFORMER_FIELD_NAME} signature"))?;
            crypto::verify_detached_parts(&ranges.cms_der, &ranges.parts(content))
                .map(|verified| verified.signer_cert_der)
                .map_err(|error| format!("the certified pdf's {PERFORMER_FIELD_NAME} signature does not verify: {error}"))
        }
    }
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(text).map_err(|error| format!("{field} is not base64: {error}"))
}

fn check_one(
    item: &BundledCertification,
    document: &Sha256,
    content: &[u8],
    held: Held,
    trust: &TrustAnchors,
    log_key: &LogVerifier,
) -> Result<CheckedCertification, String> {
    let leaf_data = decode_base64("leaf_data", &item.leaf_data)?;
    let leaf = LogLeaf::decode(&leaf_data).map_err(|error| format!("log leaf cannot be decoded: {error}"))?;
    let LogEvent::Certification(certification) = leaf.event else {
        return Err("the log leaf is not a certification".into());
    };
    let cms = decode_base64("cms_signature", &item.cms_signature)?;
    if &certification.document_sha256 != document {
        return Err("the log leaf certifies a different document".into());
    }
    if certification.cms_der != cms {
        return Err("the CMS signature differs from the one recorded in the log".into());
    }
    if certification.lookup_code.to_string() != item.lookup_code {
        return Err(format!("the log leaf has lookup code {}", certification.lookup_code));
    }
    let signer_cert_der = check_cms(&cms, content, held, certification.delivered_pdf.is_some())?;
    let chain: Vec<Vec<u8>> = item
        .signer_chain
        .iter()
        .map(|certificate| decode_base64("signer_chain", certificate))
        .collect::<Result<_, _>>()?;
    if chain.first() != Some(&signer_cert_der) {
        return Err("the signer chain does not start with the certificate that made the signature".into());
    }
    let validated = crypto::validate_chain(&chain, trust, certification.signed_at_unix)
        .map_err(|error| format!("signer's certificate was not valid at signing time: {error}"))?;
    check_inclusion(item, &leaf_data, log_key)?;
    Ok(CheckedCertification {
        lookup_code: item.lookup_code.clone(),
        signer_subject: validated.subject,
        signer_name: item.signer_name.clone(),
        signed_at_unix: certification.signed_at_unix,
        agency_id: certification.agency_id,
        leaf_index: item.leaf_index,
        tree_size: item.tree_size,
        status_at_export: item.status_at_export.clone(),
    })
}

fn check_inclusion(item: &BundledCertification, leaf_data: &[u8], log_key: &LogVerifier) -> Result<(), String> {
    let checkpoint = tlog::open_checkpoint(&item.checkpoint, log_key)
        .map_err(|error| format!("checkpoint is not signed by the pinned log key: {error}"))?;
    if checkpoint.origin() != log_key.name() {
        return Err(format!("checkpoint is for log {:?}, not {:?}", checkpoint.origin(), log_key.name()));
    }
    if checkpoint.size() != item.tree_size {
        return Err(format!("checkpoint covers {} leaves, the proof claims {}", checkpoint.size(), item.tree_size));
    }
    if item.inclusion_proof.len() > AUDIT_PATH_LENGTH_MAX {
        return Err("inclusion proof is too long".into());
    }
    let path: Vec<[u8; 32]> = item
        .inclusion_proof
        .iter()
        .map(|hash| {
            decode_base64("inclusion_proof", hash)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "proof hash is not 32 bytes".to_string()))
        })
        .collect::<Result<_, _>>()?;
    tlog::verify_inclusion(&tlog::leaf_hash(leaf_data), item.leaf_index, item.tree_size, &path, checkpoint.root())
        .map_err(|error| format!("the certification is not in the log at the checkpoint: {error}"))
}
