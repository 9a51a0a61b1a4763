//! Real signers and real certification records for the benchmarks: the same crypto and
//! encoding the node uses, so sizes and costs are the node's own.

use anyhow::Context;
use kyso::crypto::devpki::{self, CertSpec, IssuedCert};
use kyso::crypto::{KeyAlgorithm, SigningKey};
use kyso::domain::{Certification, CertificationKind, Sha256, CERTIFICATION_RECORD_VERSION};
use kyso::lookup::LookupCode;

/// Size of the document signed by default: the 100 KB of the shared CMS measurements.
pub const DOCUMENT_SIZE_BYTES_DEFAULT: usize = 100 * 1024;

/// A signer with its CA, ready to sign.
pub struct Signer {
    pub algorithm: KeyAlgorithm,
    pub ca: IssuedCert,
    pub leaf: IssuedCert,
    pub key: SigningKey,
}

impl Signer {
    /// A fresh CA (ECDSA P-256) and a leaf of `algorithm` issued by it. RSA-2048 keys come
    /// from the openssl CLI.
    pub fn new(algorithm: KeyAlgorithm) -> anyhow::Result<Signer> {
        let now = kyso::service::now_unix();
        let ca = devpki::self_signed_ca(&CertSpec::certificate_authority(
            "kyso bench CA",
            KeyAlgorithm::EcdsaP256,
            now - 86_400,
            now + 3650 * 86_400,
        ))?;
        let spec = CertSpec::signer("Nguyễn Văn Bench", algorithm, now - 3600, now + 365 * 86_400);
        let leaf = match algorithm {
            KeyAlgorithm::Rsa => {
                let dir = std::env::temp_dir().join(format!("kyso-bench-rsa-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let key = crate::pki::openssl_rsa_pkcs8(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                devpki::issue_with_key(&spec, &key?, &ca)?
            }
            _ => devpki::issue(&spec, &ca)?,
        };
        let key = leaf.signing_key().context("the issued key does not load")?;
        Ok(Signer { algorithm, ca, leaf, key })
    }

    /// Leaf first, then the CA: the chain a registered signer carries and every CMS embeds.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.cert_der.clone(), self.ca.cert_der.clone()]
    }

    /// A detached CMS over `document`, exactly as the node builds it.
    pub fn cms(&self, document: &[u8], signed_at_unix: i64) -> anyhow::Result<Vec<u8>> {
        Ok(kyso::crypto::sign_detached(document, signed_at_unix, &self.chain_der(), &self.key)?)
    }

    /// A certification record as the state machine stores it.
    pub fn certification(&self, document: &[u8], signer_id: &str, code: LookupCode) -> anyhow::Result<Certification> {
        let signed_at_unix = kyso::service::now_unix();
        Ok(Certification {
            version: CERTIFICATION_RECORD_VERSION,
            lookup_code: code,
            document_sha256: Sha256::digest(document),
            kind: CertificationKind::CertifiedCopy,
            agency_id: crate::pki::AGENCY.into(),
            signer_id: signer_id.into(),
            dossier_id: String::new(),
            signed_at_unix,
            cms_der: self.cms(document, signed_at_unix)?,
            revocation: None,
            delivered_pdf: None,
        })
    }
}

/// Sizes of one certification record signed by `algorithm` over a `document_size` document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordSize {
    pub algorithm: String,
    /// The CMS SignedData alone (DER).
    pub cms_bytes: usize,
    /// The record as stored in the certifications table (postcard).
    pub record_bytes: usize,
}

pub fn record_size(algorithm: KeyAlgorithm, document_size: usize) -> anyhow::Result<RecordSize> {
    let signer = Signer::new(algorithm)?;
    let document = crate::target_kyso::document(1, 1, document_size);
    let signer_id = hex::encode(Sha256::digest(&signer.leaf.cert_der).0);
    let code = LookupCode::generate(&ring::rand::SystemRandom::new()).map_err(|_| anyhow::anyhow!("random source failed"))?;
    let certification = signer.certification(&document, &signer_id, code)?;
    Ok(RecordSize {
        algorithm: algorithm.to_string(),
        cms_bytes: certification.cms_der.len(),
        record_bytes: postcard::to_stdvec(&certification)?.len(),
    })
}
