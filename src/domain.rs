//! Domain types shared by every layer: dossiers, files, signers, certifications.
//!
//! These are plain data with one canonical encoding (postcard, through serde) wherever they
//! are replicated or hashed. They know nothing of gRPC, storage engines or consensus.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A SHA-256 digest: the address of a blob and the identity of a document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn digest(bytes: &[u8]) -> Sha256 {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Sha256(out)
    }

    /// Accepts exactly 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Sha256> {
        <[u8; 32]>::try_from(bytes).ok().map(Sha256)
    }

    /// Accepts 64 hex digits, either case.
    pub fn from_hex(text: &str) -> Option<Sha256> {
        let bytes = hex::decode(text.trim()).ok()?;
        Sha256::from_slice(&bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a certification attests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertificationKind {
    /// The result of an administrative procedure (kết quả giải quyết).
    Result,
    /// An electronic copy certified from a paper original (bản sao chứng thực).
    CertifiedCopy,
}

impl CertificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificationKind::Result => "result",
            CertificationKind::CertifiedCopy => "certified-copy",
        }
    }
}

/// One stored file of a dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    pub name: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: Sha256,
}

/// A citizen's dossier (hồ sơ) as received at the one-stop desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dossier {
    pub id: String,
    pub agency_id: String,
    pub procedure_code: String,
    pub dossier_number: String,
    /// "YYYY-MM-DD".
    pub received_date: String,
    /// Applicant details; never shown publicly. Sorted by key for one canonical encoding.
    pub private_fields: Vec<(String, String)>,
    pub files: Vec<ArchivedFile>,
    pub archived_at_unix: i64,
}

/// Key algorithms a signer may use.
pub use crate::crypto::KeyAlgorithm;

/// A person allowed to sign for one or more agencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Hex SHA-256 of the leaf certificate.
    pub id: String,
    pub name: String,
    pub title: String,
    pub agency_ids: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub key_algorithm: String,
    /// DER certificates, leaf first, up to and including the trust anchor.
    pub chain_der: Vec<Vec<u8>>,
    /// PKCS#8 key sealed with AES-256-GCM under the node's master key (associated data:
    /// the signer id). `None`: the node cannot sign for this signer.
    pub sealed_key: Option<Vec<u8>>,
    pub registered_at_unix: i64,
}

impl Signer {
    pub fn may_sign_for(&self, agency_id: &str) -> bool {
        self.agency_ids.iter().any(|agency| agency == agency_id)
    }
}

/// A revocation of a certification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: String,
    pub revoked_at_unix: i64,
}

/// One signed statement about one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    /// Record version; bump when the encoding changes.
    pub version: u8,
    pub lookup_code: crate::lookup::LookupCode,
    pub document_sha256: Sha256,
    pub kind: CertificationKind,
    pub agency_id: String,
    pub signer_id: String,
    /// Empty when the document is not tied to a dossier.
    pub dossier_id: String,
    pub signed_at_unix: i64,
    /// Detached CMS SignedData, DER.
    pub cms_der: Vec<u8>,
    pub revocation: Option<Revocation>,
    /// The certified PDF the citizen receives (a PDF, JPEG or PNG scan); `None` for other
    /// files and for signatures made on the signer's own token.
    pub delivered_pdf: Option<DeliveredPdf>,
}

/// Version 2 added the delivered PDF and its register number.
pub const CERTIFICATION_RECORD_VERSION: u8 = 2;

/// An agency's organisation certificate and its key, for the agency's signature on its
/// certified PDFs. The key is sealed under the master key alone (associated data: the
/// agency id); kyso opens it only while making a certification whose performer has just
/// signed the same PDF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencySeal {
    pub agency_id: String,
    /// RFC 4514 subject of the organisation certificate.
    pub subject: String,
    /// DER certificates, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    pub sealed_key: Vec<u8>,
    pub registered_at_unix: i64,
}

/// The certified PDF a certification delivered and its entry in the agency's register
/// (sổ chứng thực). The PDF is a blob of its own, addressed by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredPdf {
    pub sha256: Sha256,
    pub size_bytes: u64,
    /// The register's year (Vietnam time of the signing).
    pub register_year: i64,
    /// The number in the agency's register for that year: 1, 2, 3… without gaps.
    pub register_number: u64,
}

/// Wrong PINs in a row after which a signer's server-held key locks until an admin unlocks
/// it. A constant, not configuration: every replica must lock at the same count.
pub const PIN_FAILURES_MAX: u32 = 5;

/// A signer certificate's revocation, taken from an imported CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerRevocation {
    pub signer_id: String,
    pub serial_hex: String,
    /// The CRL issuer (RFC 4514).
    pub issuer: String,
    /// The CRL entry's revocationDate: signatures made at or after it are invalid.
    pub revoked_at_unix: i64,
    /// RFC 5280 reason name, e.g. "keyCompromise".
    pub reason: String,
    /// SHA-256 of the CRL it came from.
    pub crl_sha256: Sha256,
}

/// The security state kept beside a signer's record: wrong PINs and revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerStatus {
    /// Wrong PINs since the last success or unlock.
    pub pin_failures: u32,
    pub revocation: Option<SignerRevocation>,
}

impl SignerStatus {
    pub fn locked(&self) -> bool {
        self.pin_failures >= PIN_FAILURES_MAX
    }

    /// Whether the certificate was revoked at or before `at_unix`.
    pub fn revoked_at(&self, at_unix: i64) -> Option<&SignerRevocation> {
        self.revocation.as_ref().filter(|revocation| revocation.revoked_at_unix <= at_unix)
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
