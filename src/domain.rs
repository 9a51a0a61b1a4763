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
///
/// Its encoding follows its `version` (see [`CERTIFICATION_RECORD_VERSION`]): a version 1
/// record has no `delivered_pdf` field at all, so records, commands and log leaves written
/// before the certified PDF keep decoding (and keep their bytes) after an upgrade
/// (`domain::tests::version_1_records_decode_and_keep_their_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Version 2 added the delivered PDF and its register number. Version 1 records still
/// decode (without it).
pub const CERTIFICATION_RECORD_VERSION: u8 = 2;

/// The oldest certification record version this build reads.
pub const CERTIFICATION_RECORD_VERSION_OLDEST: u8 = 1;

const CERTIFICATION_FIELDS: [&str; 11] = [
    "version",
    "lookup_code",
    "document_sha256",
    "kind",
    "agency_id",
    "signer_id",
    "dossier_id",
    "signed_at_unix",
    "cms_der",
    "revocation",
    "delivered_pdf",
];

impl Serialize for Certification {
    /// Panics on a version 1 record carrying a delivered PDF: that version cannot hold one.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let with_pdf = self.version >= 2;
        assert!(with_pdf || self.delivered_pdf.is_none(), "a version 1 certification record has no delivered pdf");
        let mut record = serializer.serialize_struct("Certification", if with_pdf { 11 } else { 10 })?;
        record.serialize_field("version", &self.version)?;
        record.serialize_field("lookup_code", &self.lookup_code)?;
        record.serialize_field("document_sha256", &self.document_sha256)?;
        record.serialize_field("kind", &self.kind)?;
        record.serialize_field("agency_id", &self.agency_id)?;
        record.serialize_field("signer_id", &self.signer_id)?;
        record.serialize_field("dossier_id", &self.dossier_id)?;
        record.serialize_field("signed_at_unix", &self.signed_at_unix)?;
        record.serialize_field("cms_der", &self.cms_der)?;
        record.serialize_field("revocation", &self.revocation)?;
        if with_pdf {
            record.serialize_field("delivered_pdf", &self.delivered_pdf)?;
        }
        record.end()
    }
}

impl<'de> Deserialize<'de> for Certification {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Record;
        impl<'de> serde::de::Visitor<'de> for Record {
            type Value = Certification;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a certification record")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Certification, A::Error> {
                use serde::de::Error;
                let missing = |field: &str| A::Error::custom(format!("certification record without {field}"));
                let version: u8 = seq.next_element()?.ok_or_else(|| missing("version"))?;
                if !(CERTIFICATION_RECORD_VERSION_OLDEST..=CERTIFICATION_RECORD_VERSION).contains(&version) {
                    return Err(A::Error::custom(format!(
                        "certification record version {version} is not {CERTIFICATION_RECORD_VERSION_OLDEST}-{CERTIFICATION_RECORD_VERSION}; upgrade this node"
                    )));
                }
                Ok(Certification {
                    version,
                    lookup_code: seq.next_element()?.ok_or_else(|| missing("lookup_code"))?,
                    document_sha256: seq.next_element()?.ok_or_else(|| missing("document_sha256"))?,
                    kind: seq.next_element()?.ok_or_else(|| missing("kind"))?,
                    agency_id: seq.next_element()?.ok_or_else(|| missing("agency_id"))?,
                    signer_id: seq.next_element()?.ok_or_else(|| missing("signer_id"))?,
                    dossier_id: seq.next_element()?.ok_or_else(|| missing("dossier_id"))?,
                    signed_at_unix: seq.next_element()?.ok_or_else(|| missing("signed_at_unix"))?,
                    cms_der: seq.next_element()?.ok_or_else(|| missing("cms_der"))?,
                    revocation: seq.next_element()?.ok_or_else(|| missing("revocation"))?,
                    delivered_pdf: if version >= 2 { seq.next_element()?.ok_or_else(|| missing("delivered_pdf"))? } else { None },
                })
            }
        }
        deserializer.deserialize_struct("Certification", &CERTIFICATION_FIELDS, Record)
    }
}

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

/// A CRL kept to embed in certified PDFs (the DSS of PAdES B-LT): the newest imported
/// per issuer name, when it is at most [`KEPT_CRL_SIZE_BYTES_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptCrl {
    /// SHA-256 of the issuer name's DER, as certificates' issuer fields carry it.
    pub issuer_name_sha256: Sha256,
    pub this_update_unix: i64,
    pub der: Vec<u8>,
}

impl KeptCrl {
    /// The key a CRL is kept under: SHA-256 of its issuer name's DER, which is also the
    /// issuer field of every certificate it speaks for.
    pub fn issuer_key(issuer_name_der: &[u8]) -> Sha256 {
        Sha256::digest(issuer_name_der)
    }
}

/// The largest CRL kept for embedding: every certified PDF whose chain it covers carries
/// it, so a larger one only revokes (its entries still apply) and is not embedded.
pub const KEPT_CRL_SIZE_BYTES_MAX: usize = 256 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as releases before the certified PDF wrote it.
    #[derive(Serialize)]
    struct CertificationV1 {
        version: u8,
        lookup_code: crate::lookup::LookupCode,
        document_sha256: Sha256,
        kind: CertificationKind,
        agency_id: String,
        signer_id: String,
        dossier_id: String,
        signed_at_unix: i64,
        cms_der: Vec<u8>,
        revocation: Option<Revocation>,
    }

    fn record(version: u8, delivered_pdf: Option<DeliveredPdf>) -> Certification {
        Certification {
            version,
            lookup_code: crate::lookup::LookupCode::parse("7K3MQ9TX2HRNB4WD").unwrap(),
            document_sha256: Sha256([7; 32]),
            kind: CertificationKind::CertifiedCopy,
            agency_id: "xa-a".into(),
            signer_id: "s1".into(),
            dossier_id: "d1".into(),
            signed_at_unix: 1_795_000_000,
            cms_der: vec![0x30, 0x00],
            revocation: Some(Revocation { reason: "sai".into(), revoked_at_unix: 1_795_000_001 }),
            delivered_pdf,
        }
    }

    #[test]
    fn version_1_records_decode_and_keep_their_bytes() {
        let old = record(1, None);
        let v1_bytes = postcard::to_stdvec(&CertificationV1 {
            version: 1,
            lookup_code: old.lookup_code.clone(),
            document_sha256: old.document_sha256,
            kind: old.kind,
            agency_id: old.agency_id.clone(),
            signer_id: old.signer_id.clone(),
            dossier_id: old.dossier_id.clone(),
            signed_at_unix: old.signed_at_unix,
            cms_der: old.cms_der.clone(),
            revocation: old.revocation.clone(),
        })
        .unwrap();
        // Followed by other data, as inside a command or a leaf: nothing is read past it.
        let mut framed = v1_bytes.clone();
        framed.push(0xAB);
        let (decoded, rest): (Certification, &[u8]) = postcard::take_from_bytes(&framed).unwrap();
        assert_eq!((decoded.clone(), rest), (old, &[0xAB][..]));
        assert_eq!(postcard::to_stdvec(&decoded).unwrap(), v1_bytes, "a version 1 record keeps its bytes");

        let new = record(2, Some(DeliveredPdf { sha256: Sha256([9; 32]), size_bytes: 10, register_year: 2026, register_number: 3 }));
        let bytes = postcard::to_stdvec(&new).unwrap();
        assert_eq!(postcard::from_bytes::<Certification>(&bytes).unwrap(), new);
        let mut future = bytes.clone();
        future[0] = CERTIFICATION_RECORD_VERSION + 1;
        assert!(postcard::from_bytes::<Certification>(&future).is_err(), "a record from a newer release is refused");
    }
}
