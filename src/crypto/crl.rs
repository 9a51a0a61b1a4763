//! Certificate revocation lists: parse a CRL (PEM or DER, with x509-parser) and check its
//! signature against the CA certificates the caller trusts to issue it.
//!
//! This module answers one question: which certificate serial numbers did this CA declare
//! revoked, when and why? It must never fetch a CRL (the operator imports it), never read
//! the clock (the caller decides what a stale CRL means), and never return entries of a
//! CRL whose signature did not verify.

use ring::digest;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

use super::cert::{display_name, parse_certificate, serial_hex, ISSUER_SIGNATURE_ALGORITHMS};

/// The largest CRL input accepted, PEM or DER.
pub const CRL_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The most entries one CRL may list.
pub const CRL_ENTRIES_COUNT_MAX: usize = 500_000;

/// Why a CRL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    #[error("crl is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("malformed crl: {0}; supply a DER or PEM (\"-----BEGIN X509 CRL-----\") certificate revocation list")]
    Malformed(String),
    #[error("crl lists {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("crl is signed with algorithm {0}; only sha-2 rsa, ecdsa and ed25519 signatures are accepted")]
    UnsupportedAlgorithm(String),
    #[error("no trusted ca named \"{issuer}\" signed this crl: import crls issued by a trust anchor or by an intermediate of a registered signer")]
    UntrustedIssuer { issuer: String },
}

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntry {
    /// Serial number, lowercase hex without leading zero bytes (as `ValidatedChain::serial_hex`).
    pub serial_hex: String,
    pub revoked_at_unix: i64,
    /// RFC 5280 reason name, e.g. "keyCompromise"; "unspecified" when absent.
    pub reason: String,
}

/// A CRL whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCrl {
    /// The issuer as an RFC 4514 string.
    pub issuer: String,
    /// The issuer name's DER, to match certificates' issuer fields byte for byte.
    pub issuer_der: Vec<u8>,
    pub this_update_unix: i64,
    pub next_update_unix: Option<i64>,
    pub entries: Vec<CrlEntry>,
    /// SHA-256 of the CRL's DER.
    pub sha256: [u8; 32],
    /// DER of the trusted certificates whose key verified the CRL's signature. A CRL
    /// speaks only for certificates that one of these keys issued: two CAs may share a
    /// subject name, and one's CRL must never revoke the other's certificates.
    pub verified_by_der: Vec<Vec<u8>>,
    /// The CRL's DER (a PEM input decoded).
    pub der: Vec<u8>,
}

impl VerifiedCrl {
    /// Whether `certificate_der` was issued under the name AND the key that signed this
    /// CRL (its issuer field names the CRL's issuer and its signature verifies with the
    /// key of a certificate that verified the CRL).
    pub fn covers(&self, certificate_der: &[u8]) -> bool {
        let Ok(certificate) = parse_certificate(certificate_der) else { return false };
        certificate.issuer().as_raw() == self.issuer_der.as_slice()
            && self.verified_by_der.iter().any(|issuer_der| {
                parse_certificate(issuer_der).is_ok_and(|issuer| certificate.verify_signature(Some(issuer.public_key())).is_ok())
            })
    }
}

/// Parses `input` (DER, or PEM with one "X509 CRL" block) and checks its signature with the
/// key of one of `issuers_der` (DER certificates) whose subject is the CRL's issuer and
/// that may sign CRLs (a CA; keyUsage, if present, with cRLSign).
///
/// The caller MUST pass only certificates it trusts (trust anchors, or intermediates that
/// chain to them) and decides what to do with an old `this_update`.
pub fn verify_crl(input: &[u8], issuers_der: &[Vec<u8>]) -> Result<VerifiedCrl, CrlError> {
    if input.len() > CRL_SIZE_BYTES_MAX {
        return Err(CrlError::TooLarge { size_bytes: input.len(), limit_bytes: CRL_SIZE_BYTES_MAX });
    }
    let der = crl_der(input)?;
    let (rest, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|error| CrlError::Malformed(format!("not a DER crl (truncated or corrupted?): {error}")))?;
    if !rest.is_empty() {
        return Err(CrlError::Malformed(format!("{} unexpected bytes after the crl", rest.len())));
    }
    check_algorithm(&crl.signature_algorithm.algorithm)?;
    if crl.tbs_cert_list.signature != crl.signature_algorithm {
        return Err(CrlError::Malformed("the signature algorithm inside the crl differs from the outer one".into()));
    }
    let issuer_raw = crl.issuer().as_raw();
    let verified_by_der: Vec<Vec<u8>> = issuers_der
        .iter()
        .filter(|issuer_der| {
        let Ok(issuer) = parse_certificate(issuer_der) else { return false };
        let is_ca = issuer.basic_constraints().ok().flatten().is_some_and(|constraints| constraints.value.ca);
        let may_sign_crls = match issuer.key_usage() {
            Ok(Some(usage)) => usage.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        issuer.subject().as_raw() == issuer_raw && is_ca && may_sign_crls && crl.verify_signature(issuer.public_key()).is_ok()
        })
        .cloned()
        .collect();
    if verified_by_der.is_empty() {
        return Err(CrlError::UntrustedIssuer { issuer: display_name(issuer_raw) });
    }
    let count = crl.iter_revoked_certificates().count();
    if count > CRL_ENTRIES_COUNT_MAX {
        return Err(CrlError::TooManyEntries { count, limit: CRL_ENTRIES_COUNT_MAX });
    }
    let entries = crl
        .iter_revoked_certificates()
        .map(|entry| CrlEntry {
            serial_hex: serial_hex(entry.raw_serial()),
            revoked_at_unix: entry.revocation_date.timestamp(),
            reason: entry.reason_code().map(|(_, code)| reason_name(code.0)).unwrap_or("unspecified").to_string(),
        })
        .collect();
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest::digest(&digest::SHA256, &der).as_ref());
    let (issuer, issuer_der) = (display_name(issuer_raw), issuer_raw.to_vec());
    let (this_update_unix, next_update_unix) = (crl.last_update().timestamp(), crl.next_update().map(|time| time.timestamp()));
    drop(crl);
    Ok(VerifiedCrl { issuer, issuer_der, this_update_unix, next_update_unix, entries, sha256, verified_by_der, der })
}

/// The DER of a CRL given as DER or PEM (not parsed further).
pub fn crl_der(input: &[u8]) -> Result<Vec<u8>, CrlError> {
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    if input.starts_with(b"-----BEGIN") || input.iter().take(64).all(u8::is_ascii) {
        let block = pem::parse(input).map_err(|error| CrlError::Malformed(format!("invalid PEM: {error}")))?;
        if block.tag() != "X509 CRL" {
            return Err(CrlError::Malformed(format!("PEM block is \"{}\", expected \"X509 CRL\"", block.tag())));
        }
        return Ok(block.into_contents());
    }
    Err(CrlError::Malformed("input is neither PEM nor DER".into()))
}

fn check_algorithm(algorithm: &Oid<'_>) -> Result<(), CrlError> {
    if ISSUER_SIGNATURE_ALGORITHMS.contains(&algorithm) {
        Ok(())
    } else {
        Err(CrlError::UnsupportedAlgorithm(algorithm.to_id_string()))
    }
}

/// RFC 5280 section 5.3.1 names.
fn reason_name(code: u8) -> &'static str {
    match code {
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::devpki::{self, CrlEntrySpec};
    use crate::crypto::testutil::{ca_spec, signer_spec, NOW_UNIX};
    use crate::crypto::KeyAlgorithm;

    fn ca() -> devpki::IssuedCert {
        devpki::self_signed_ca(&ca_spec("Kyso CRL Root", KeyAlgorithm::EcdsaP256)).unwrap()
    }

    #[test]
    fn crl_signed_by_the_ca_lists_its_revoked_serials_with_time_and_reason() {
        let root = ca();
        let leaf = devpki::issue(&signer_spec("Revoked Signer", KeyAlgorithm::EcdsaP256), &root).unwrap();
        let entry = CrlEntrySpec { certificate_der: leaf.cert_der.clone(), revoked_at_unix: NOW_UNIX - 60, reason_code: Some(1) };
        let der = devpki::issue_crl(&root, &[entry], NOW_UNIX, 86_400).unwrap();
        let pem = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        for input in [der.clone(), pem.into_bytes()] {
            let crl = verify_crl(&input, &[root.cert_der.clone()]).unwrap();
            assert_eq!(crl.entries.len(), 1);
            let serial = serial_hex(parse_certificate(&leaf.cert_der).unwrap().raw_serial());
            assert_eq!(crl.entries[0].serial_hex, serial);
            assert_eq!(crl.entries[0].revoked_at_unix, NOW_UNIX - 60);
            assert_eq!(crl.entries[0].reason, "keyCompromise");
            assert_eq!(crl.this_update_unix, NOW_UNIX);
        }
    }

    #[test]
    fn crl_from_another_ca_with_the_same_name_is_untrusted() {
        let root = ca();
        let impostor = ca();
        let der = devpki::issue_crl(&impostor, &[], NOW_UNIX, 86_400).unwrap();
        assert!(matches!(verify_crl(&der, &[root.cert_der.clone()]), Err(CrlError::UntrustedIssuer { .. })));
    }

    #[test]
    fn truncated_or_garbage_crl_is_malformed() {
        let root = ca();
        let der = devpki::issue_crl(&root, &[], NOW_UNIX, 86_400).unwrap();
        assert!(matches!(verify_crl(&der[..der.len() / 2], &[root.cert_der.clone()]), Err(CrlError::Malformed(_))));
        assert!(matches!(verify_crl(b"hello", &[root.cert_der.clone()]), Err(CrlError::Malformed(_))));
        let certificate_pem = root.cert_pem();
        assert!(matches!(verify_crl(certificate_pem.as_bytes(), &[root.cert_der.clone()]), Err(CrlError::Malformed(_))));
    }

    #[test]
    fn oversize_crl_is_refused_before_parsing() {
        let input = vec![0x30; CRL_SIZE_BYTES_MAX + 1];
        assert!(matches!(verify_crl(&input, &[]), Err(CrlError::TooLarge { .. })));
    }

    #[test]
    fn altered_crl_does_not_verify() {
        let root = ca();
        let leaf = devpki::issue(&signer_spec("Someone", KeyAlgorithm::EcdsaP256), &root).unwrap();
        let entry = CrlEntrySpec { certificate_der: leaf.cert_der.clone(), revoked_at_unix: NOW_UNIX, reason_code: None };
        let mut der = devpki::issue_crl(&root, &[entry], NOW_UNIX, 86_400).unwrap();
        // Flip a bit inside the revocation date of the entry (well inside the signed part).
        let position = der.len() / 2;
        der[position] ^= 0x01;
        assert!(verify_crl(&der, &[root.cert_der.clone()]).is_err());
    }
}
