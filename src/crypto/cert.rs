//! X.509 certificates: parsing, trust anchors, and validation of a signer's chain.
//!
//! This module answers one question: at a given instant, does a chain of certificates lead
//! from a leaf that may sign documents to one of the configured trust anchors? It checks
//! every signature in the path, the validity period of every certificate in it (anchor
//! included), key usage, basic constraints, path length and issuer/subject chaining, and it
//! allows only an explicit list of algorithms.
//!
//! It must never read the clock (the caller passes the instant), never fetch anything (no
//! AIA chasing, no CRL or OCSP: revocation is out of scope here), and never accept a chain
//! on a partial check.
//!
//! Names are compared byte for byte (the common practice; RFC 5280's caseless matching is
//! not implemented), so a CA whose certificates encode its name differently in different
//! places will not chain.

use std::fmt::Write as _;

use der::Decode as _;
use ring::digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CERTIFICATE_POLICIES, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::KeyAlgorithm;

/// The most certificates a chain may hold, leaf and anchor included.
pub const CHAIN_LENGTH_MAX: usize = 8;
/// The most bytes [`parse_certificates`] reads; a bundle of anchors fits easily.
pub const CERTIFICATE_INPUT_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// The most certificates one PEM input may hold (a bundle of trust anchors, for instance).
pub const PEM_CERTIFICATES_COUNT_MAX: usize = 256;
/// The smallest RSA modulus accepted anywhere in a chain.
pub const RSA_MODULUS_BITS_MIN: usize = 2048;
/// The largest RSA modulus accepted (ring verifies up to this size).
pub const RSA_MODULUS_BITS_MAX: usize = 8192;

/// Why certificates could not be parsed, or a chain could not be validated.
///
/// Subjects and issuers in messages are RFC 4514 strings; times are UTC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// No certificate was given.
    #[error("no certificate given: supply a PEM (\"-----BEGIN CERTIFICATE-----\") or DER encoded certificate")]
    Empty,
    /// The input is larger than [`CERTIFICATE_INPUT_SIZE_BYTES_MAX`].
    #[error("certificate input is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// The bytes are not a well-formed certificate (or PEM of one).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A certificate in the chain expired before the instant of validation.
    #[error("certificate \"{subject}\" expired at {}: renew it", format_unix_utc(*not_after_unix))]
    Expired {
        subject: String,
        not_after_unix: i64,
    },
    /// A certificate in the chain is not valid yet at the instant of validation.
    #[error("certificate \"{subject}\" is not valid before {}: wait, or check the clocks", format_unix_utc(*not_before_unix))]
    NotYetValid {
        subject: String,
        not_before_unix: i64,
    },
    /// No configured trust anchor issued the chain's last certificate.
    #[error("no path to a configured trust anchor: no certificate for issuer \"{issuer}\"; include the intermediate certificates, or add the issuing CA to the trust anchors")]
    Untrusted { issuer: String },
    /// The leaf is self-signed; a signer must be issued by a CA.
    #[error("certificate \"{subject}\" is self-signed: a signer certificate must be issued by a trusted CA")]
    SelfSignedLeaf { subject: String },
    /// The leaf may not sign documents. A leaf without a keyUsage extension is rejected too:
    /// a signing certificate must say that it is one.
    #[error("certificate \"{subject}\" may not sign documents: its keyUsage must include digitalSignature or nonRepudiation")]
    WrongKeyUsage { subject: String },
    /// A signing certificate that asserts keyCertSign without basicConstraints cA=true:
    /// RFC 5280 4.2.1.3 allows keyCertSign only on CA certificates, so it is malformed,
    /// and one that is a CA is no signer.
    #[error("certificate \"{subject}\" asserts keyCertSign without basicConstraints cA=true (RFC 5280 4.2.1.3 forbids it); a signer needs a certificate without keyCertSign")]
    KeyCertSignWithoutCa { subject: String },
    /// A CA certificate offered as a signing certificate.
    #[error("certificate \"{subject}\" is a CA certificate (basicConstraints cA=true); sign with an end-entity certificate the CA issued")]
    CaAsSigner { subject: String },
    /// An issuer in the chain is not a CA (basicConstraints cA absent or false, or keyUsage
    /// present without keyCertSign).
    #[error("certificate \"{subject}\" is used as an issuer but is not a CA: it needs basicConstraints cA=true and, if keyUsage is present, keyCertSign")]
    IssuerNotCa { subject: String },
    /// An issuer's pathLenConstraint forbids as many intermediates as the chain has below it.
    #[error("certificate \"{subject}\" allows at most {path_length_max} intermediate CAs below it, but the chain has more")]
    PathLengthExceeded {
        subject: String,
        path_length_max: u32,
    },
    /// A signature in the chain does not verify with its issuer's key.
    #[error("the signature on certificate \"{subject}\" does not verify with its issuer's key: the certificate was altered or was issued by a different CA of the same name")]
    BadSignature { subject: String },
    /// A key or signature algorithm outside the allow-list.
    #[error("unsupported algorithm: {0}; signer keys may be rsa (2048 bits or more), ecdsa-p256 or ed25519")]
    UnsupportedAlgorithm(String),
    /// An RSA key smaller than [`RSA_MODULUS_BITS_MIN`].
    #[error("rsa key of {bits} bits is too small: use at least 2048 bits")]
    RsaKeyTooSmall { bits: usize },
    /// More certificates than [`CHAIN_LENGTH_MAX`].
    #[error("certificate chain has {length} certificates, more than the limit of {limit}")]
    ChainTooLong { length: usize, limit: usize },
    /// A critical extension this validator does not implement (name constraints, policy
    /// constraints, ...): accepting it would ignore a restriction the CA meant to impose.
    #[error("certificate \"{subject}\" has critical extension {oid}, which is not supported")]
    UnsupportedCriticalExtension { subject: String, oid: String },
    /// A trust anchor that is not self-signed.
    #[error("trust anchor \"{subject}\" is not self-signed: configure root CA certificates as trust anchors")]
    AnchorNotSelfSigned { subject: String },
}

/// A signer chain that validated, with the facts about its leaf that callers record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedChain {
    /// DER certificates, leaf first, up to and including the trust anchor.
    pub chain_der: Vec<Vec<u8>>,
    /// The leaf subject's first commonName, or empty if it has none.
    pub subject_common_name: String,
    /// The leaf subject as an RFC 4514 string.
    pub subject: String,
    /// The leaf issuer as an RFC 4514 string.
    pub issuer: String,
    /// The leaf serial number: lowercase hex, big-endian, without leading zero bytes.
    pub serial_hex: String,
    /// Start of the leaf's validity, unix seconds.
    pub not_before_unix: i64,
    /// End of the leaf's validity, unix seconds.
    pub not_after_unix: i64,
    /// The leaf's key algorithm.
    pub algorithm: KeyAlgorithm,
    /// SHA-256 of the leaf's DER encoding.
    pub fingerprint_sha256: [u8; 32],
}

/// The root CA certificates a signer chain must lead to.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    anchors_der: Vec<Vec<u8>>,
    /// SHA-256 over the anchors (each length-prefixed): what a [`ChainCache`] key names.
    digest: [u8; 32],
}

impl TrustAnchors {
    /// Trust anchors from DER certificates. Each must be a self-signed CA certificate
    /// (basicConstraints cA=true, keyCertSign if keyUsage is present) with an allowed key
    /// algorithm. Duplicates are dropped. Validity periods are checked when a chain is
    /// validated, not here.
    pub fn from_der_list(certificates_der: Vec<Vec<u8>>) -> Result<Self, CertError> {
        if certificates_der.is_empty() {
            return Err(CertError::Empty);
        }
        if certificates_der.len() > PEM_CERTIFICATES_COUNT_MAX {
            return Err(CertError::Malformed(format!(
                "{} trust anchors given, more than the limit of {PEM_CERTIFICATES_COUNT_MAX}",
                certificates_der.len()
            )));
        }
        let mut anchors_der: Vec<Vec<u8>> = Vec::with_capacity(certificates_der.len());
        for der in certificates_der {
            check_anchor(&der)?;
            if !anchors_der.contains(&der) {
                anchors_der.push(der);
            }
        }
        let digest = length_prefixed_digest(&anchors_der);
        Ok(TrustAnchors { anchors_der, digest })
    }

    /// Trust anchors from PEM text holding one or more CERTIFICATE blocks (or one DER
    /// certificate); see [`TrustAnchors::from_der_list`].
    pub fn from_pem(input: &[u8]) -> Result<Self, CertError> {
        Self::from_der_list(parse_certificates(input)?)
    }

    /// The anchors' DER encodings.
    pub fn certificates_der(&self) -> &[Vec<u8>] {
        &self.anchors_der
    }

    /// How many anchors there are (never zero).
    pub fn len(&self) -> usize {
        self.anchors_der.len()
    }

    /// Always false: a `TrustAnchors` holds at least one anchor.
    pub fn is_empty(&self) -> bool {
        self.anchors_der.is_empty()
    }
}

/// Parses PEM (one or more CERTIFICATE blocks; text between blocks is ignored) or a single
/// DER certificate, and returns each certificate's DER encoding after checking that it
/// parses as X.509.
/// The prefix of the URI subject alternative name that binds a node certificate to its
/// cluster node id: `urn:kyso:node:<id>`.
pub const NODE_ID_URI_PREFIX: &str = "urn:kyso:node:";

/// The cluster node id a (node) certificate is bound to: the single
/// `urn:kyso:node:<id>` URI in its subject alternative names. `None` when it names none,
/// several, or an id that is not a positive integer.
pub fn node_id_of_certificate(der: &[u8]) -> Option<u64> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let mut ids = names.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_ID_URI_PREFIX),
        _ => None,
    });
    let id = ids.next()?;
    if ids.next().is_some() || id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    id.parse::<u64>().ok().filter(|id| *id > 0)
}

pub fn parse_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    if input.len() > CERTIFICATE_INPUT_SIZE_BYTES_MAX {
        return Err(CertError::TooLarge {
            size_bytes: input.len(),
            limit_bytes: CERTIFICATE_INPUT_SIZE_BYTES_MAX,
        });
    }
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(CertError::Empty);
    }
    if input.first() == Some(&0x30) {
        parse_certificate(input)?;
        return Ok(vec![input.to_vec()]);
    }
    if contains(input, b"-----BEGIN") {
        return parse_pem_certificates(input);
    }
    Err(CertError::Malformed(
        "input is neither PEM (\"-----BEGIN CERTIFICATE-----\") nor a DER certificate".to_string(),
    ))
}

/// Validates a signer chain at `at_unix` (unix seconds) against `anchors`.
///
/// `chain_der` is leaf first, then the intermediates in any order (as a CMS carries them);
/// the anchor itself may be included or left out, and certificates not on the path are
/// ignored. The caller MUST pass the instant that matters (for a signature,
/// its signing time) and MUST check revocation separately if it needs it.
pub fn validate_chain(
    chain_der: &[Vec<u8>],
    anchors: &TrustAnchors,
    at_unix: i64,
) -> Result<ValidatedChain, CertError> {
    validate_chain_spanned(chain_der, anchors, at_unix).map(|(chain, _)| chain)
}

/// [`validate_chain`], with the span of time in which every certificate of the path is
/// valid (where the same chain validates again: see [`ChainCache`]).
fn validate_chain_spanned(
    chain_der: &[Vec<u8>],
    anchors: &TrustAnchors,
    at_unix: i64,
) -> Result<(ValidatedChain, std::ops::RangeInclusive<i64>), CertError> {
    if chain_der.is_empty() {
        return Err(CertError::Empty);
    }
    if chain_der.len() > CHAIN_LENGTH_MAX {
        return Err(CertError::ChainTooLong {
            length: chain_der.len(),
            limit: CHAIN_LENGTH_MAX,
        });
    }
    let chain = chain_der
        .iter()
        .enumerate()
        .map(|(index, der)| {
            parse_certificate(der).map_err(|error| match error {
                CertError::Malformed(reason) => {
                    CertError::Malformed(format!("certificate {index} of the chain: {reason}"))
                }
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchors_parsed = anchors
        .anchors_der
        .iter()
        .map(|der| parse_certificate(der))
        .collect::<Result<Vec<_>, _>>()?;

    // `chain` is not empty: `chain_der` was checked above and every entry parsed.
    let leaf = &chain[0];
    if is_self_signed(leaf) {
        return Err(CertError::SelfSignedLeaf {
            subject: display_name(leaf.subject().as_raw()),
        });
    }
    let path = build_path(&chain, &anchors_parsed)?;
    if path.len() > CHAIN_LENGTH_MAX {
        return Err(CertError::ChainTooLong {
            length: path.len(),
            limit: CHAIN_LENGTH_MAX,
        });
    }
    let algorithm = check_leaf(leaf, at_unix)?;
    for (index, issuer) in path.iter().enumerate().skip(1) {
        // Certificates between this issuer and the leaf are intermediates.
        let intermediates_below = index - 1;
        check_issuer(issuer, at_unix, intermediates_below)?;
    }
    let valid_from = path.iter().map(|certificate| certificate.validity().not_before.timestamp()).max().unwrap_or(i64::MIN);
    let valid_until = path.iter().map(|certificate| certificate.validity().not_after.timestamp()).min().unwrap_or(i64::MAX);
    Ok((describe_leaf(leaf, &path, algorithm), valid_from..=valid_until))
}

/// SHA-256 over `parts`, each preceded by its length (so that no two lists collide).
pub(crate) fn length_prefixed_digest(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        let part = part.as_ref();
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Chains that validated against a set of trust anchors, each with the span of time in
/// which every certificate of its path is valid. Within that span [`validate_chain`] gives
/// the same answer again: the path, its signatures and its constraints do not depend on
/// the time, only the validity periods do. So a signer's chain is parsed and its
/// signatures checked once, not on every certification (both showed in certify's
/// profile). Only successes are kept; outside the span, or for other anchors (the key
/// names them), the chain is validated afresh. Bounded, least recently used out first (as
/// [`ISSUANCES_CHECKED`]).
pub struct ChainCache {
    entries: std::sync::Mutex<lru::LruCache<[u8; 32], CachedChain>>,
}

struct CachedChain {
    chain: std::sync::Arc<ValidatedChain>,
    valid: std::ops::RangeInclusive<i64>,
}

impl ChainCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN);
        ChainCache { entries: std::sync::Mutex::new(lru::LruCache::new(capacity)) }
    }

    /// [`validate_chain`], answered from the cache when `chain_der` validated against
    /// `anchors` before and `at_unix` is inside its span.
    pub fn validate(&self, chain_der: &[Vec<u8>], anchors: &TrustAnchors, at_unix: i64) -> Result<std::sync::Arc<ValidatedChain>, CertError> {
        let key = length_prefixed_digest(std::iter::once(anchors.digest.as_slice()).chain(chain_der.iter().map(Vec::as_slice)));
        if let Some(cached) = self.entries().get(&key) {
            if cached.valid.contains(&at_unix) {
                return Ok(cached.chain.clone());
            }
        }
        let (chain, valid) = validate_chain_spanned(chain_der, anchors, at_unix)?;
        let chain = std::sync::Arc::new(chain);
        self.entries().put(key, CachedChain { chain: chain.clone(), valid });
        Ok(chain)
    }

    /// How many chains are kept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, lru::LruCache<[u8; 32], CachedChain>> {
        // Each lookup and insertion is whole: a panic elsewhere cannot leave it half-done.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Classifies a signer's public key, enforcing the allow-list and RSA sizes. Shared with the
/// CMS verifier and with `SigningKey::public_key_matches`.
pub(crate) fn signer_key_algorithm(
    spki: &SubjectPublicKeyInfo<'_>,
) -> Result<KeyAlgorithm, CertError> {
    match classify_public_key(spki)? {
        PublicKeyKind::Rsa => Ok(KeyAlgorithm::Rsa),
        PublicKeyKind::EcdsaP256 => Ok(KeyAlgorithm::EcdsaP256),
        PublicKeyKind::Ed25519 => Ok(KeyAlgorithm::Ed25519),
        PublicKeyKind::EcdsaP384 => Err(CertError::UnsupportedAlgorithm(
            "ecdsa p-384 keys may issue certificates but not sign documents".to_string(),
        )),
    }
}

/// Parses one DER certificate with nothing after it.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    if der.is_empty() {
        return Err(CertError::Empty);
    }
    let (rest, certificate) = X509Certificate::from_der(der).map_err(|error| {
        CertError::Malformed(format!(
            "not a DER X.509 certificate (truncated or corrupted?): {error}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(CertError::Malformed(format!(
            "{} unexpected bytes after the certificate",
            rest.len()
        )));
    }
    if certificate.tbs_certificate.signature != certificate.signature_algorithm {
        return Err(CertError::Malformed(
            "the signature algorithm inside the certificate differs from the outer one".to_string(),
        ));
    }
    Ok(certificate)
}

/// An RFC 4514 rendering of a DER Name, for messages and records, with every character
/// that could reorder or hide text escaped (`text::for_terminal`): it reaches error
/// messages, logs and terminals. The certificate itself is kept as signed.
pub(crate) fn display_name(name_der: &[u8]) -> String {
    let rendered = match x509_cert::name::Name::from_der(name_der) {
        Ok(name) => name.to_string(),
        Err(_) => match x509_parser::x509::X509Name::from_der(name_der) {
            Ok((_, name)) => name.to_string(),
            Err(_) => format!("<unparsable name {}>", hex::encode(name_der)),
        },
    };
    crate::text::for_terminal(&rendered).into_owned()
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub(crate) fn format_unix_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let seconds_of_day = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

/// Key kinds allowed anywhere in a chain. Issuers may also use P-384.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PublicKeyKind {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

fn classify_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKeyKind, CertError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => bit_length(rsa.modulus),
            _ => {
                return Err(CertError::Malformed(
                    "rsa public key does not parse".to_string(),
                ))
            }
        };
        if bits < RSA_MODULUS_BITS_MIN {
            return Err(CertError::RsaKeyTooSmall { bits });
        }
        if bits > RSA_MODULUS_BITS_MAX {
            return Err(CertError::UnsupportedAlgorithm(format!(
                "rsa key of {bits} bits is larger than {RSA_MODULUS_BITS_MAX} bits"
            )));
        }
        return Ok(PublicKeyKind::Rsa);
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 => Ok(PublicKeyKind::EcdsaP256),
            Some(curve) if curve == OID_NIST_EC_P384 => Ok(PublicKeyKind::EcdsaP384),
            Some(curve) => Err(CertError::UnsupportedAlgorithm(format!(
                "elliptic curve {curve}"
            ))),
            None => Err(CertError::UnsupportedAlgorithm(
                "elliptic curve key without a named curve".to_string(),
            )),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(PublicKeyKind::Ed25519);
    }
    Err(CertError::UnsupportedAlgorithm(format!(
        "public key algorithm {algorithm}"
    )))
}

/// The number of significant bits in a big-endian unsigned integer.
fn bit_length(big_endian: &[u8]) -> usize {
    let significant = match big_endian.iter().position(|byte| *byte != 0) {
        Some(first) => &big_endian[first..],
        None => return 0,
    };
    // `significant[0]` exists and is non-zero: `position` found it.
    (significant.len() - 1) * 8 + (8 - significant[0].leading_zeros() as usize)
}

/// Signature algorithms accepted on certificates (and CRLs) of a chain: SHA-2 only.
pub(crate) const ISSUER_SIGNATURE_ALGORITHMS: [&Oid<'static>; 6] = [
    &OID_PKCS1_SHA256WITHRSA,
    &OID_PKCS1_SHA384WITHRSA,
    &OID_PKCS1_SHA512WITHRSA,
    &OID_SIG_ECDSA_WITH_SHA256,
    &OID_SIG_ECDSA_WITH_SHA384,
    &OID_SIG_ED25519,
];

/// Certificate signature algorithms accepted in a chain: SHA-2 only.
fn check_signature_algorithm(certificate: &X509Certificate<'_>) -> Result<(), CertError> {
    let algorithm = &certificate.signature_algorithm.algorithm;
    if ISSUER_SIGNATURE_ALGORITHMS.contains(&algorithm) {
        Ok(())
    } else {
        Err(CertError::UnsupportedAlgorithm(format!(
            "certificate \"{}\" is signed with algorithm {algorithm}; only sha-2 rsa, ecdsa and ed25519 signatures are accepted",
            display_name(certificate.subject().as_raw())
        )))
    }
}

fn is_self_signed(certificate: &X509Certificate<'_>) -> bool {
    certificate.subject().as_raw() == certificate.issuer().as_raw()
        && certificate.verify_signature(None).is_ok()
}

/// Whether `issuer` issued `certificate`: names chain and the signature verifies.
/// Err only for a disallowed signature algorithm.
fn issued_by(
    certificate: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
) -> Result<bool, CertError> {
    if certificate.issuer().as_raw() != issuer.subject().as_raw() {
        return Ok(false);
    }
    check_signature_algorithm(certificate)?;
    let checked = issuances_checked_key(certificate, issuer);
    if ISSUANCES_CHECKED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&checked).is_some() {
        return Ok(true);
    }
    let issued = certificate.verify_signature(Some(issuer.public_key())).is_ok();
    if issued {
        ISSUANCES_CHECKED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).put(checked, ());
    }
    Ok(issued)
}

/// How many issuer signatures [`ISSUANCES_CHECKED`] remembers.
const ISSUANCES_CHECKED_MAX: usize = 1024;

/// Certificate signatures already found to hold, by [`issuances_checked_key`]. Whether a
/// certificate's signature holds under a public key never changes, and every certify
/// validates its signer's chain again (the validity periods depend on the instant; the
/// signatures do not): remembering the answer saved about 8 % of a node's time under
/// certify load, one ECDSA verification per certificate per certification. Only successes
/// are kept, least recently used out first.
static ISSUANCES_CHECKED: std::sync::LazyLock<std::sync::Mutex<lru::LruCache<[u8; 32], ()>>> = std::sync::LazyLock::new(|| {
    std::sync::Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(ISSUANCES_CHECKED_MAX).expect("the bound is not zero")))
});

/// SHA-256 over the certificate's whole DER and the issuer's subjectPublicKeyInfo, each
/// preceded by its length: the same certificate under another key is another entry.
fn issuances_checked_key(certificate: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> [u8; 32] {
    length_prefixed_digest([certificate.as_raw(), issuer.public_key().raw])
}

/// Builds the path from the leaf to an anchor. At each step an anchor that issued the
/// current certificate ends the path; otherwise a not-yet-used supplied certificate that
/// issued it comes next. Returns leaf, intermediates and anchor, in that order. Each step
/// uses up one supplied certificate, so the loop ends after at most `chain.len()` steps.
fn build_path<'a>(
    chain: &'a [X509Certificate<'a>],
    anchors: &'a [X509Certificate<'a>],
) -> Result<Vec<&'a X509Certificate<'a>>, CertError> {
    // The caller passes a non-empty chain; `path` starts with its leaf and only grows.
    let mut path: Vec<&X509Certificate<'_>> = vec![&chain[0]];
    let mut used = vec![false; chain.len()];
    used[0] = true;
    loop {
        let current = path[path.len() - 1];
        let mut issuer_name_seen = false;
        for anchor in anchors {
            if issued_by(current, anchor)? {
                path.push(anchor);
                return Ok(path);
            }
            issuer_name_seen |= current.issuer().as_raw() == anchor.subject().as_raw();
        }
        let mut next = None;
        for (index, candidate) in chain.iter().enumerate() {
            if used[index] || current.issuer().as_raw() != candidate.subject().as_raw() {
                continue;
            }
            issuer_name_seen = true;
            if issued_by(current, candidate)? {
                next = Some(index);
                break;
            }
        }
        match next {
            Some(index) if is_self_signed(&chain[index]) => {
                // A root that is not one of ours: the chain ends outside the anchors.
                return Err(CertError::Untrusted {
                    issuer: display_name(chain[index].subject().as_raw()),
                });
            }
            Some(index) => {
                used[index] = true;
                path.push(&chain[index]);
            }
            None if issuer_name_seen => return Err(bad_signature(current)),
            None => {
                return Err(CertError::Untrusted {
                    issuer: display_name(current.issuer().as_raw()),
                })
            }
        }
    }
}

fn bad_signature(certificate: &X509Certificate<'_>) -> CertError {
    CertError::BadSignature {
        subject: display_name(certificate.subject().as_raw()),
    }
}

fn check_validity(certificate: &X509Certificate<'_>, at_unix: i64) -> Result<(), CertError> {
    let not_before_unix = certificate.validity().not_before.timestamp();
    let not_after_unix = certificate.validity().not_after.timestamp();
    let subject = || display_name(certificate.subject().as_raw());
    if at_unix < not_before_unix {
        return Err(CertError::NotYetValid {
            subject: subject(),
            not_before_unix,
        });
    }
    if at_unix > not_after_unix {
        return Err(CertError::Expired {
            subject: subject(),
            not_after_unix,
        });
    }
    Ok(())
}

/// Rejects critical extensions this validator does not enforce.
fn check_critical_extensions(certificate: &X509Certificate<'_>) -> Result<(), CertError> {
    let understood: [&Oid<'static>; 7] = [
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        &OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        &OID_X509_EXT_CERTIFICATE_POLICIES,
    ];
    for extension in certificate.extensions() {
        if extension.critical && !understood.iter().any(|oid| **oid == extension.oid) {
            return Err(CertError::UnsupportedCriticalExtension {
                subject: display_name(certificate.subject().as_raw()),
                oid: extension.oid.to_id_string(),
            });
        }
    }
    Ok(())
}

fn malformed_extension(
    certificate: &X509Certificate<'_>,
    error: impl std::fmt::Display,
) -> CertError {
    CertError::Malformed(format!(
        "certificate \"{}\": bad extension: {error}",
        display_name(certificate.subject().as_raw())
    ))
}

/// Leaf policy: allowed signer key, keyUsage for signing, validity, critical extensions.
/// The extended key usage is not checked: document-signing profiles disagree on it.
fn check_leaf(leaf: &X509Certificate<'_>, at_unix: i64) -> Result<KeyAlgorithm, CertError> {
    let algorithm = signer_key_algorithm(leaf.public_key())?;
    check_critical_extensions(leaf)?;
    let key_usage = leaf
        .key_usage()
        .map_err(|error| malformed_extension(leaf, error))?;
    let may_sign = key_usage
        .as_ref()
        .is_some_and(|usage| usage.value.digital_signature() || usage.value.non_repudiation());
    if !may_sign {
        return Err(CertError::WrongKeyUsage {
            subject: display_name(leaf.subject().as_raw()),
        });
    }
    let is_ca = leaf
        .basic_constraints()
        .map_err(|error| malformed_extension(leaf, error))?
        .is_some_and(|constraints| constraints.value.ca);
    if is_ca {
        return Err(CertError::CaAsSigner { subject: display_name(leaf.subject().as_raw()) });
    }
    if key_usage.is_some_and(|usage| usage.value.key_cert_sign()) {
        return Err(CertError::KeyCertSignWithoutCa { subject: display_name(leaf.subject().as_raw()) });
    }
    check_validity(leaf, at_unix)?;
    Ok(algorithm)
}

/// Issuer policy: a CA allowed to sign certificates, within its path length, valid now.
fn check_issuer(
    issuer: &X509Certificate<'_>,
    at_unix: i64,
    intermediates_below: usize,
) -> Result<(), CertError> {
    let subject = || display_name(issuer.subject().as_raw());
    classify_public_key(issuer.public_key())?;
    check_critical_extensions(issuer)?;
    let constraints = issuer
        .basic_constraints()
        .map_err(|error| malformed_extension(issuer, error))?;
    let Some(constraints) = constraints.filter(|constraints| constraints.value.ca) else {
        return Err(CertError::IssuerNotCa { subject: subject() });
    };
    let key_usage = issuer
        .key_usage()
        .map_err(|error| malformed_extension(issuer, error))?;
    if key_usage.is_some_and(|usage| !usage.value.key_cert_sign()) {
        return Err(CertError::IssuerNotCa { subject: subject() });
    }
    if let Some(path_length_max) = constraints.value.path_len_constraint {
        // Self-issued intermediates are counted too: stricter than RFC 5280, never looser.
        if u64::try_from(intermediates_below).unwrap_or(u64::MAX) > u64::from(path_length_max) {
            return Err(CertError::PathLengthExceeded {
                subject: subject(),
                path_length_max,
            });
        }
    }
    check_validity(issuer, at_unix)
}

/// Load-time checks for an anchor: parses, is self-signed with an allowed signature
/// algorithm, and would pass as an issuer (validity aside).
fn check_anchor(der: &[u8]) -> Result<(), CertError> {
    let anchor = parse_certificate(der)?;
    check_signature_algorithm(&anchor)?;
    if !is_self_signed(&anchor) {
        return Err(CertError::AnchorNotSelfSigned {
            subject: display_name(anchor.subject().as_raw()),
        });
    }
    let validity = anchor.validity();
    // Validate at an instant inside its own period so that only the CA properties count.
    check_issuer(&anchor, validity.not_before.timestamp(), 0)
}

/// The first common name of a certificate's subject, as written ("" when it has none).
fn common_name(certificate: &X509Certificate<'_>) -> String {
    certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|common_name| common_name.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The subject (RFC 4514, escaped for display) and the first common name (escaped the
/// same way) of a DER certificate, without judging the certificate: what a report on a
/// signature of unknown trust shows. Only a chain checked by [`validate_chain`] says who
/// the signer is.
pub fn subject_names(der: &[u8]) -> Result<(String, String), CertError> {
    let certificate = parse_certificate(der)?;
    let common_name = crate::text::for_terminal(&common_name(&certificate)).into_owned();
    Ok((display_name(certificate.subject().as_raw()), common_name))
}

/// The issuer name's DER of a DER certificate, or `None` for a self-signed one (a trust
/// anchor, which no CRL speaks for): where a CRL for it is looked up.
pub fn issuer_name_der(der: &[u8]) -> Result<Option<Vec<u8>>, CertError> {
    let certificate = parse_certificate(der)?;
    let issuer = certificate.issuer().as_raw();
    Ok((issuer != certificate.subject().as_raw()).then(|| issuer.to_vec()))
}

fn describe_leaf(
    leaf: &X509Certificate<'_>,
    path: &[&X509Certificate<'_>],
    algorithm: KeyAlgorithm,
) -> ValidatedChain {
    let subject_common_name = common_name(leaf);
    let fingerprint = digest::digest(&digest::SHA256, leaf.as_raw());
    let mut fingerprint_sha256 = [0u8; 32];
    fingerprint_sha256.copy_from_slice(fingerprint.as_ref());
    ValidatedChain {
        chain_der: path
            .iter()
            .map(|certificate| certificate.as_raw().to_vec())
            .collect(),
        subject_common_name,
        subject: display_name(leaf.subject().as_raw()),
        issuer: display_name(leaf.issuer().as_raw()),
        serial_hex: serial_hex(leaf.raw_serial()),
        not_before_unix: leaf.validity().not_before.timestamp(),
        not_after_unix: leaf.validity().not_after.timestamp(),
        algorithm,
        fingerprint_sha256,
    }
}

pub(crate) fn serial_hex(raw_serial: &[u8]) -> String {
    let first_significant = raw_serial
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(raw_serial.len());
    let significant = &raw_serial[first_significant..];
    if significant.is_empty() {
        return "00".to_string();
    }
    let mut text = String::with_capacity(significant.len() * 2);
    for byte in significant {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn parse_pem_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let blocks = pem::parse_many(input)
        .map_err(|error| CertError::Malformed(format!("invalid PEM: {error}")))?;
    if blocks.is_empty() {
        return Err(CertError::Malformed(
            "no complete PEM block found".to_string(),
        ));
    }
    if blocks.len() > PEM_CERTIFICATES_COUNT_MAX {
        return Err(CertError::Malformed(format!(
            "{} PEM blocks, more than the limit of {PEM_CERTIFICATES_COUNT_MAX}",
            blocks.len()
        )));
    }
    let mut certificates = Vec::with_capacity(blocks.len());
    for (index, block) in blocks.into_iter().enumerate() {
        if block.tag() != "CERTIFICATE" {
            return Err(CertError::Malformed(format!(
                "PEM block {index} is \"{}\", expected \"CERTIFICATE\"",
                block.tag()
            )));
        }
        let der = block.into_contents();
        parse_certificate(&der).map_err(|error| match error {
            CertError::Malformed(reason) => {
                CertError::Malformed(format!("PEM block {index}: {reason}"))
            }
            CertError::Empty => CertError::Malformed(format!("PEM block {index} is empty")),
            other => other,
        })?;
        certificates.push(der);
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::devpki::{self, CertSpec, IssuedCert, KeyUsages};
    use crate::crypto::testutil::{
        ca_spec, openssl_ok, path_text, signer_spec, test_chain, DAY_SECONDS, NOW_UNIX,
    };

    fn anchors_of(root: &IssuedCert) -> TrustAnchors {
        TrustAnchors::from_der_list(vec![root.cert_der.clone()]).expect("root is a valid anchor")
    }

    fn ecdsa_root() -> IssuedCert {
        devpki::self_signed_ca(&ca_spec("Kyso Test Root", KeyAlgorithm::EcdsaP256)).expect("root")
    }

    fn issue_leaf(spec: &CertSpec, issuer: &IssuedCert) -> IssuedCert {
        devpki::issue(spec, issuer).expect("leaf")
    }

    fn assert_accepted(algorithm: KeyAlgorithm) {
        let chain = test_chain(algorithm);
        let validated = validate_chain(&chain.chain_der(), &anchors_of(&chain.root), NOW_UNIX)
            .unwrap_or_else(|error| panic!("{algorithm} chain rejected: {error}"));
        let mut expected_chain = chain.chain_der();
        expected_chain.push(chain.root.cert_der.clone());
        assert_eq!(
            validated.chain_der, expected_chain,
            "leaf first, up to and including the anchor"
        );
        assert_eq!(validated.algorithm, algorithm);
        assert_eq!(
            validated.subject_common_name,
            format!(
                "Alice {}",
                if algorithm == KeyAlgorithm::Rsa {
                    "RSA".to_string()
                } else {
                    algorithm.to_string()
                }
            )
        );
    }

    #[test]
    fn ecdsa_leaf_with_intermediate_is_accepted() {
        assert_accepted(KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn rsa_leaf_with_openssl_made_key_is_accepted() {
        assert_accepted(KeyAlgorithm::Rsa);
    }

    #[test]
    fn ed25519_leaf_with_intermediate_is_accepted() {
        assert_accepted(KeyAlgorithm::Ed25519);
    }

    #[test]
    fn chain_that_includes_the_anchor_is_accepted() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let mut chain_der = chain.chain_der();
        chain_der.push(chain.root.cert_der.clone());
        let validated =
            validate_chain(&chain_der, &anchors_of(&chain.root), NOW_UNIX).expect("accepted");
        assert_eq!(validated.chain_der, chain_der);
    }

    #[test]
    fn validated_facts_match_what_openssl_reports() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let validated = validate_chain(&chain.chain_der(), &anchors_of(&chain.root), NOW_UNIX)
            .expect("accepted");
        let directory = tempfile::tempdir().expect("temporary directory");
        let leaf_path = directory.path().join("leaf.pem");
        std::fs::write(&leaf_path, chain.leaf.cert_pem()).expect("write leaf");
        let output = openssl_ok(&[
            "x509",
            "-noout",
            "-in",
            &path_text(&leaf_path),
            "-serial",
            "-fingerprint",
            "-sha256",
            "-subject",
            "-issuer",
            "-nameopt",
            "RFC2253",
            "-startdate",
            "-enddate",
        ]);
        let report = String::from_utf8(output.stdout).expect("openssl prints text");
        let field = |name: &str| {
            report
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_else(|| panic!("openssl printed no {name}: {report}"))
                .to_string()
        };
        assert_eq!(field("serial="), validated.serial_hex.to_uppercase());
        assert_eq!(
            field("sha256 Fingerprint=").replace(':', ""),
            hex::encode_upper(validated.fingerprint_sha256)
        );
        assert_eq!(field("subject="), validated.subject);
        assert_eq!(validated.subject, "CN=Alice ecdsa-p256,O=Kyso Test");
        assert_eq!(field("issuer="), validated.issuer);
        assert_eq!(field("notBefore="), "Jan  1 00:00:00 2020 GMT");
        assert_eq!(
            validated.not_before_unix,
            crate::crypto::testutil::WIDE_NOT_BEFORE_UNIX
        );
        assert_eq!(
            validated.not_after_unix,
            crate::crypto::testutil::WIDE_NOT_AFTER_UNIX
        );
    }

    #[test]
    fn expired_leaf_is_rejected_as_expired() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Expired", KeyAlgorithm::EcdsaP256);
        spec.not_before_unix = NOW_UNIX - 30 * DAY_SECONDS;
        spec.not_after_unix = NOW_UNIX - DAY_SECONDS;
        let leaf = issue_leaf(&spec, &root);
        let error =
            validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX).expect_err("expired");
        assert_eq!(
            error,
            CertError::Expired {
                subject: "CN=Expired,O=Kyso Test".to_string(),
                not_after_unix: NOW_UNIX - DAY_SECONDS
            }
        );
        assert!(
            error
                .to_string()
                .contains("expired at 2025-12-31T00:00:00Z"),
            "{error}"
        );
    }

    #[test]
    fn leaf_is_valid_through_its_last_second_and_expired_after() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Edge", KeyAlgorithm::EcdsaP256);
        spec.not_after_unix = NOW_UNIX;
        let leaf = issue_leaf(&spec, &root);
        let chain = [leaf.cert_der];
        assert!(validate_chain(&chain, &anchors_of(&root), NOW_UNIX).is_ok());
        assert!(matches!(
            validate_chain(&chain, &anchors_of(&root), NOW_UNIX + 1),
            Err(CertError::Expired { .. })
        ));
    }

    #[test]
    fn leaf_not_yet_valid_is_rejected_as_not_yet_valid() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Future", KeyAlgorithm::EcdsaP256);
        spec.not_before_unix = NOW_UNIX + DAY_SECONDS;
        let leaf = issue_leaf(&spec, &root);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX)
            .expect_err("not yet valid");
        assert!(
            matches!(error, CertError::NotYetValid { not_before_unix, .. } if not_before_unix == NOW_UNIX + DAY_SECONDS),
            "{error:?}"
        );
    }

    #[test]
    fn a_cached_chain_answers_as_a_fresh_validation_inside_its_span_and_is_validated_again_outside_it() {
        let root = ecdsa_root();
        let mut intermediate_spec = ca_spec("Short Intermediate", KeyAlgorithm::EcdsaP256);
        intermediate_spec.not_after_unix = NOW_UNIX + DAY_SECONDS;
        let intermediate = devpki::issue(&intermediate_spec, &root).expect("intermediate");
        let leaf = issue_leaf(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &intermediate);
        let chain = vec![leaf.cert_der.clone(), intermediate.cert_der.clone()];
        let anchors = anchors_of(&root);
        let cache = ChainCache::new(8);

        let first = cache.validate(&chain, &anchors, NOW_UNIX).expect("valid now");
        assert_eq!(*first, validate_chain(&chain, &anchors, NOW_UNIX).expect("valid now"));
        assert_eq!(cache.len(), 1);
        let again = cache.validate(&chain, &anchors, NOW_UNIX + 60).expect("still valid");
        assert!(std::sync::Arc::ptr_eq(&first, &again), "inside the span the kept validation answers");

        // The intermediate's last second is the end of the span; a second later the chain
        // is validated again and fails as a fresh validation does.
        cache.validate(&chain, &anchors, NOW_UNIX + DAY_SECONDS).expect("valid through the intermediate's last second");
        let cached = cache.validate(&chain, &anchors, NOW_UNIX + DAY_SECONDS + 1).expect_err("the intermediate expired");
        let fresh = validate_chain(&chain, &anchors, NOW_UNIX + DAY_SECONDS + 1).expect_err("the intermediate expired");
        assert_eq!(cached.to_string(), fresh.to_string());
        assert!(matches!(&cached, CertError::Expired { subject, .. } if subject == "CN=Short Intermediate,O=Kyso Test"), "{cached:?}");
        let before = cache.validate(&chain, &anchors, leaf_not_before(&leaf) - 1).expect_err("before the leaf's validity");
        assert!(matches!(before, CertError::NotYetValid { .. }), "{before:?}");

        // Other anchors never get the kept answer.
        let other_root = devpki::self_signed_ca(&ca_spec("Other Root", KeyAlgorithm::EcdsaP256)).expect("root");
        let untrusted = cache.validate(&chain, &anchors_of(&other_root), NOW_UNIX).expect_err("another root");
        assert!(matches!(untrusted, CertError::Untrusted { .. }), "{untrusted:?}");
        // Nor does another chain, and a full cache lets the least recently used go.
        let small = ChainCache::new(1);
        small.validate(&chain, &anchors, NOW_UNIX).expect("valid");
        let bob = issue_leaf(&signer_spec("Bob", KeyAlgorithm::EcdsaP256), &intermediate);
        let bob_chain = vec![bob.cert_der.clone(), intermediate.cert_der.clone()];
        let validated = small.validate(&bob_chain, &anchors, NOW_UNIX).expect("valid");
        assert!(validated.subject.contains("Bob"), "{}", validated.subject);
        assert_eq!(small.len(), 1);
    }

    fn leaf_not_before(leaf: &IssuedCert) -> i64 {
        parse_certificate(&leaf.cert_der).expect("parses").validity().not_before.timestamp()
    }

    #[test]
    fn expired_intermediate_is_rejected_as_expired() {
        let root = ecdsa_root();
        let mut intermediate_spec = ca_spec("Old Intermediate", KeyAlgorithm::EcdsaP256);
        intermediate_spec.not_after_unix = NOW_UNIX - DAY_SECONDS;
        let intermediate = devpki::issue(&intermediate_spec, &root).expect("intermediate");
        let leaf = issue_leaf(
            &signer_spec("Alice", KeyAlgorithm::EcdsaP256),
            &intermediate,
        );
        let error = validate_chain(
            &[leaf.cert_der, intermediate.cert_der],
            &anchors_of(&root),
            NOW_UNIX,
        )
        .expect_err("expired intermediate");
        assert!(
            matches!(&error, CertError::Expired { subject, .. } if subject == "CN=Old Intermediate,O=Kyso Test"),
            "{error:?}"
        );
    }

    #[test]
    fn expired_anchor_is_rejected_as_expired() {
        let mut root_spec = ca_spec("Old Root", KeyAlgorithm::EcdsaP256);
        root_spec.not_after_unix = NOW_UNIX - DAY_SECONDS;
        let root = devpki::self_signed_ca(&root_spec).expect("root");
        let leaf = issue_leaf(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &root);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX)
            .expect_err("expired root");
        assert!(
            matches!(&error, CertError::Expired { subject, .. } if subject == "CN=Old Root,O=Kyso Test"),
            "{error:?}"
        );
    }

    #[test]
    fn leaf_without_key_usage_is_rejected_as_wrong_key_usage() {
        let root = ecdsa_root();
        let mut spec = signer_spec("No Usage", KeyAlgorithm::EcdsaP256);
        spec.key_usage = KeyUsages::NONE;
        let leaf = issue_leaf(&spec, &root);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX)
            .expect_err("no key usage");
        assert_eq!(
            error,
            CertError::WrongKeyUsage {
                subject: "CN=No Usage,O=Kyso Test".to_string()
            }
        );
    }

    #[test]
    fn leaf_with_key_usage_lacking_signature_bits_is_rejected_as_wrong_key_usage() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Crl Only", KeyAlgorithm::EcdsaP256);
        spec.key_usage = KeyUsages {
            crl_sign: true,
            ..KeyUsages::NONE
        };
        let leaf = issue_leaf(&spec, &root);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX)
            .expect_err("wrong usage");
        assert!(
            matches!(error, CertError::WrongKeyUsage { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_leaf_asserting_key_cert_sign_without_ca_is_refused_as_a_signer() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Not A CA", KeyAlgorithm::EcdsaP256);
        spec.key_usage = KeyUsages { digital_signature: true, key_cert_sign: true, ..KeyUsages::NONE };
        let leaf = issue_leaf(&spec, &root);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX).expect_err("keyCertSign without cA");
        assert!(matches!(error, CertError::KeyCertSignWithoutCa { .. }), "{error:?}");
        assert!(error.to_string().contains("RFC 5280 4.2.1.3"), "{error}");
        let mut ca_spec = signer_spec("A CA", KeyAlgorithm::EcdsaP256);
        ca_spec.is_ca = true;
        ca_spec.key_usage = KeyUsages { digital_signature: true, key_cert_sign: true, ..KeyUsages::NONE };
        let ca_leaf = issue_leaf(&ca_spec, &root);
        let error = validate_chain(&[ca_leaf.cert_der], &anchors_of(&root), NOW_UNIX).expect_err("a CA as signer");
        assert!(matches!(error, CertError::CaAsSigner { .. }), "{error:?}");
    }

    #[test]
    fn leaf_with_only_non_repudiation_is_accepted() {
        let root = ecdsa_root();
        let mut spec = signer_spec("Notary", KeyAlgorithm::EcdsaP256);
        spec.key_usage = KeyUsages {
            non_repudiation: true,
            ..KeyUsages::NONE
        };
        let leaf = issue_leaf(&spec, &root);
        assert!(validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX).is_ok());
    }

    #[test]
    fn self_signed_leaf_is_rejected_as_self_signed() {
        let root = ecdsa_root();
        let leaf = devpki::self_signed(&signer_spec("Selfie", KeyAlgorithm::EcdsaP256))
            .expect("self-signed");
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&root), NOW_UNIX)
            .expect_err("self-signed");
        assert_eq!(
            error,
            CertError::SelfSignedLeaf {
                subject: "CN=Selfie,O=Kyso Test".to_string()
            }
        );
    }

    #[test]
    fn self_signed_leaf_is_rejected_even_when_it_is_an_anchor() {
        let spec = CertSpec {
            is_ca: true,
            key_usage: KeyUsages {
                key_cert_sign: true,
                ..KeyUsages::SIGNER
            },
            ..signer_spec("Both", KeyAlgorithm::EcdsaP256)
        };
        let leaf = devpki::self_signed(&spec).expect("self-signed");
        let anchors = TrustAnchors::from_der_list(vec![leaf.cert_der.clone()]).expect("a CA");
        let error = validate_chain(&[leaf.cert_der], &anchors, NOW_UNIX).expect_err("self-signed");
        assert!(
            matches!(error, CertError::SelfSignedLeaf { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn leaf_from_another_ca_is_untrusted() {
        let trusted_root = ecdsa_root();
        let other_root =
            devpki::self_signed_ca(&ca_spec("Other Root", KeyAlgorithm::EcdsaP256)).expect("root");
        let leaf = issue_leaf(
            &signer_spec("Mallory", KeyAlgorithm::EcdsaP256),
            &other_root,
        );
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&trusted_root), NOW_UNIX)
            .expect_err("untrusted");
        assert_eq!(
            error,
            CertError::Untrusted {
                issuer: "CN=Other Root,O=Kyso Test".to_string()
            }
        );
    }

    #[test]
    fn leaf_from_impostor_ca_with_the_anchor_name_has_a_bad_signature() {
        let trusted_root = ecdsa_root();
        let impostor = ecdsa_root();
        let leaf = issue_leaf(&signer_spec("Mallory", KeyAlgorithm::EcdsaP256), &impostor);
        let error = validate_chain(&[leaf.cert_der], &anchors_of(&trusted_root), NOW_UNIX)
            .expect_err("impostor");
        assert_eq!(
            error,
            CertError::BadSignature {
                subject: "CN=Mallory,O=Kyso Test".to_string()
            }
        );
    }

    /// A chain once validated is validated again on every certify, from memory for its
    /// signatures: what is remembered must not carry over to another key under the same
    /// name, to a certificate changed by one byte, or past a certificate's validity.
    #[test]
    fn a_remembered_issuer_signature_holds_only_for_that_certificate_under_that_key() {
        let root = ecdsa_root();
        let impostor = ecdsa_root();
        let mut spec = signer_spec("Remembered", KeyAlgorithm::EcdsaP256);
        spec.not_after_unix = NOW_UNIX + DAY_SECONDS;
        let leaf = issue_leaf(&spec, &root);
        for _ in 0..2 {
            validate_chain(std::slice::from_ref(&leaf.cert_der), &anchors_of(&root), NOW_UNIX).expect("valid, then remembered");
        }
        // The impostor root has the trusted root's name, not its key.
        let error = validate_chain(std::slice::from_ref(&leaf.cert_der), &anchors_of(&impostor), NOW_UNIX).expect_err("other key");
        assert!(matches!(error, CertError::BadSignature { .. }), "{error:?}");
        // The remembered chain still expires.
        let error = validate_chain(std::slice::from_ref(&leaf.cert_der), &anchors_of(&root), NOW_UNIX + 2 * DAY_SECONDS).expect_err("expired");
        assert!(matches!(error, CertError::Expired { .. }), "{error:?}");
        // One byte of the signature value changed: checked afresh, and refused.
        let mut forged = leaf.cert_der.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x01;
        let error = validate_chain(&[forged], &anchors_of(&root), NOW_UNIX).expect_err("forged");
        assert!(matches!(error, CertError::BadSignature { .. } | CertError::Malformed(_)), "{error:?}");
    }

    #[test]
    fn chain_ending_at_an_unknown_root_is_untrusted() {
        let trusted_root = ecdsa_root();
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let mut chain_der = chain.chain_der();
        chain_der.push(chain.root.cert_der.clone());
        let error = validate_chain(&chain_der, &anchors_of(&trusted_root), NOW_UNIX)
            .expect_err("untrusted");
        assert!(matches!(error, CertError::Untrusted { .. }), "{error:?}");
    }

    #[test]
    fn intermediates_in_any_order_are_accepted() {
        let root = ecdsa_root();
        let upper =
            devpki::issue(&ca_spec("Upper", KeyAlgorithm::EcdsaP256), &root).expect("upper");
        let lower =
            devpki::issue(&ca_spec("Lower", KeyAlgorithm::EcdsaP256), &upper).expect("lower");
        let leaf = issue_leaf(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &lower);
        let unrelated = devpki::issue(&ca_spec("Unrelated", KeyAlgorithm::EcdsaP256), &root)
            .expect("unrelated");
        let supplied = [
            leaf.cert_der.clone(),
            unrelated.cert_der,
            upper.cert_der.clone(),
            lower.cert_der.clone(),
        ];
        let validated = validate_chain(&supplied, &anchors_of(&root), NOW_UNIX).expect("accepted");
        assert_eq!(
            validated.chain_der,
            vec![leaf.cert_der, lower.cert_der, upper.cert_der, root.cert_der]
        );
    }

    #[test]
    fn missing_intermediate_is_untrusted() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let error = validate_chain(
            std::slice::from_ref(&chain.leaf.cert_der),
            &anchors_of(&chain.root),
            NOW_UNIX,
        )
        .expect_err("intermediate missing");
        assert_eq!(
            error,
            CertError::Untrusted {
                issuer: "CN=Kyso Test ecdsa-p256 Intermediate,O=Kyso Test".to_string()
            }
        );
    }

    #[test]
    fn altered_leaf_has_a_bad_signature() {
        let root = ecdsa_root();
        let leaf = issue_leaf(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &root);
        let mut altered = leaf.cert_der.clone();
        // Change one letter of the subject's common name: still parses, no longer signed.
        let position = altered
            .windows(5)
            .position(|window| window == b"Alice")
            .expect("name in DER");
        altered[position] = b'M';
        let error = validate_chain(&[altered], &anchors_of(&root), NOW_UNIX).expect_err("altered");
        assert!(matches!(error, CertError::BadSignature { .. }), "{error:?}");
    }

    #[test]
    fn intermediate_without_ca_flag_is_rejected_as_issuer_not_ca() {
        let root = ecdsa_root();
        let mut intermediate_spec = ca_spec("Not A CA", KeyAlgorithm::EcdsaP256);
        intermediate_spec.is_ca = false;
        let intermediate = devpki::issue(&intermediate_spec, &root).expect("intermediate");
        let leaf = issue_leaf(
            &signer_spec("Alice", KeyAlgorithm::EcdsaP256),
            &intermediate,
        );
        let error = validate_chain(
            &[leaf.cert_der, intermediate.cert_der],
            &anchors_of(&root),
            NOW_UNIX,
        )
        .expect_err("not a CA");
        assert_eq!(
            error,
            CertError::IssuerNotCa {
                subject: "CN=Not A CA,O=Kyso Test".to_string()
            }
        );
    }

    #[test]
    fn intermediate_without_key_cert_sign_is_rejected_as_issuer_not_ca() {
        let root = ecdsa_root();
        let mut intermediate_spec = ca_spec("No CertSign", KeyAlgorithm::EcdsaP256);
        intermediate_spec.key_usage = KeyUsages {
            crl_sign: true,
            ..KeyUsages::NONE
        };
        let intermediate = devpki::issue(&intermediate_spec, &root).expect("intermediate");
        let leaf = issue_leaf(
            &signer_spec("Alice", KeyAlgorithm::EcdsaP256),
            &intermediate,
        );
        let error = validate_chain(
            &[leaf.cert_der, intermediate.cert_der],
            &anchors_of(&root),
            NOW_UNIX,
        )
        .expect_err("no keyCertSign");
        assert!(matches!(error, CertError::IssuerNotCa { .. }), "{error:?}");
    }

    #[test]
    fn path_length_constraint_of_the_root_is_enforced() {
        let mut root_spec = ca_spec("Strict Root", KeyAlgorithm::EcdsaP256);
        root_spec.path_length_max = Some(0);
        let root = devpki::self_signed_ca(&root_spec).expect("root");
        let direct_leaf = issue_leaf(&signer_spec("Direct", KeyAlgorithm::EcdsaP256), &root);
        assert!(validate_chain(&[direct_leaf.cert_der], &anchors_of(&root), NOW_UNIX).is_ok());

        let intermediate = devpki::issue(&ca_spec("Intermediate", KeyAlgorithm::EcdsaP256), &root)
            .expect("intermediate");
        let leaf = issue_leaf(
            &signer_spec("Alice", KeyAlgorithm::EcdsaP256),
            &intermediate,
        );
        let error = validate_chain(
            &[leaf.cert_der, intermediate.cert_der],
            &anchors_of(&root),
            NOW_UNIX,
        )
        .expect_err("path too long");
        assert_eq!(
            error,
            CertError::PathLengthExceeded {
                subject: "CN=Strict Root,O=Kyso Test".to_string(),
                path_length_max: 0
            }
        );
    }

    #[test]
    fn chain_longer_than_the_limit_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let chain_der = vec![chain.leaf.cert_der.clone(); CHAIN_LENGTH_MAX + 1];
        let error =
            validate_chain(&chain_der, &anchors_of(&chain.root), NOW_UNIX).expect_err("too long");
        assert_eq!(
            error,
            CertError::ChainTooLong {
                length: CHAIN_LENGTH_MAX + 1,
                limit: CHAIN_LENGTH_MAX
            }
        );
    }

    #[test]
    fn empty_chain_is_rejected_as_empty() {
        let root = ecdsa_root();
        assert_eq!(
            validate_chain(&[], &anchors_of(&root), NOW_UNIX),
            Err(CertError::Empty)
        );
    }

    #[test]
    fn truncated_der_is_rejected_as_malformed() {
        let root = ecdsa_root();
        let leaf = issue_leaf(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &root);
        let truncated = leaf.cert_der[..leaf.cert_der.len() - 10].to_vec();
        assert!(matches!(
            parse_certificates(&truncated),
            Err(CertError::Malformed(_))
        ));
        let error =
            validate_chain(&[truncated], &anchors_of(&root), NOW_UNIX).expect_err("truncated");
        assert!(
            matches!(&error, CertError::Malformed(reason) if reason.contains("certificate 0")),
            "{error:?}"
        );
    }

    #[test]
    fn der_with_trailing_bytes_is_rejected_as_malformed() {
        let root = ecdsa_root();
        let mut der = root.cert_der.clone();
        der.extend_from_slice(&[0, 0]);
        let error = parse_certificates(&der).expect_err("trailing bytes");
        assert!(
            matches!(&error, CertError::Malformed(reason) if reason.contains("2 unexpected bytes")),
            "{error:?}"
        );
    }

    #[test]
    fn garbage_pem_is_rejected_as_malformed() {
        let garbage =
            b"-----BEGIN CERTIFICATE-----\nthis is *not* base64!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certificates(garbage),
            Err(CertError::Malformed(_))
        ));
        let not_a_certificate =
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certificates(not_a_certificate),
            Err(CertError::Malformed(_))
        ));
        assert!(matches!(
            parse_certificates(b"hello, world"),
            Err(CertError::Malformed(_))
        ));
    }

    #[test]
    fn pem_private_key_block_is_rejected_as_malformed() {
        let root = ecdsa_root();
        let error =
            parse_certificates(root.key_pem().as_bytes()).expect_err("a key, not a certificate");
        assert!(
            matches!(&error, CertError::Malformed(reason) if reason.contains("PRIVATE KEY")),
            "{error:?}"
        );
    }

    #[test]
    fn empty_input_is_rejected_as_empty() {
        assert_eq!(parse_certificates(b""), Err(CertError::Empty));
        assert_eq!(parse_certificates(b" \n\t"), Err(CertError::Empty));
    }

    #[test]
    fn oversized_input_is_rejected_as_too_large() {
        let input = vec![b' '; CERTIFICATE_INPUT_SIZE_BYTES_MAX + 1];
        assert!(matches!(
            parse_certificates(&input),
            Err(CertError::TooLarge { .. })
        ));
    }

    #[test]
    fn pem_bundle_yields_each_certificate_in_order() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let intermediate = chain.intermediate.as_ref().expect("ecdsa chains have one");
        let bundle = format!(
            "leaf\n{}intermediate\n{}",
            chain.leaf.cert_pem(),
            intermediate.cert_pem()
        );
        let parsed = parse_certificates(bundle.as_bytes()).expect("bundle");
        assert_eq!(
            parsed,
            vec![chain.leaf.cert_der.clone(), intermediate.cert_der.clone()]
        );
        assert_eq!(
            parse_certificates(&chain.leaf.cert_der).expect("der"),
            vec![chain.leaf.cert_der.clone()]
        );
    }

    #[test]
    fn trust_anchors_load_from_a_pem_bundle() {
        let first = ecdsa_root();
        let second =
            devpki::self_signed_ca(&ca_spec("Second Root", KeyAlgorithm::Ed25519)).expect("root");
        let bundle = format!(
            "{}{}{}",
            first.cert_pem(),
            second.cert_pem(),
            first.cert_pem()
        );
        let anchors = TrustAnchors::from_pem(bundle.as_bytes()).expect("anchors");
        assert_eq!(anchors.len(), 2, "duplicates are dropped");
        let leaf = issue_leaf(&signer_spec("Bob", KeyAlgorithm::EcdsaP256), &second);
        assert!(validate_chain(&[leaf.cert_der], &anchors, NOW_UNIX).is_ok());
    }

    #[test]
    fn trust_anchor_that_is_not_a_ca_is_refused() {
        let not_ca = devpki::self_signed(&signer_spec("Leafy", KeyAlgorithm::EcdsaP256))
            .expect("self-signed");
        let error = TrustAnchors::from_der_list(vec![not_ca.cert_der]).expect_err("not a CA");
        assert!(matches!(error, CertError::IssuerNotCa { .. }), "{error:?}");
    }

    #[test]
    fn trust_anchor_that_is_not_self_signed_is_refused() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let intermediate = chain.intermediate.expect("ecdsa chains have one");
        let error =
            TrustAnchors::from_der_list(vec![intermediate.cert_der]).expect_err("not self-signed");
        assert!(
            matches!(error, CertError::AnchorNotSelfSigned { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn no_trust_anchors_is_refused() {
        assert!(matches!(
            TrustAnchors::from_der_list(Vec::new()),
            Err(CertError::Empty)
        ));
    }

    /// Issues a leaf with the openssl CLI (independent of rcgen), from our CA, with a key
    /// made by `openssl req`. Returns the leaf DER.
    fn openssl_issued_leaf(root: &IssuedCert, new_key: &[&str], key_usage: &str) -> Vec<u8> {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| path_text(&directory.path().join(name));
        std::fs::write(path("ca.pem"), root.cert_pem()).expect("write");
        std::fs::write(path("ca.key"), root.key_pem().as_bytes()).expect("write");
        std::fs::write(
            path("ext.cnf"),
            format!("keyUsage = critical, {key_usage}\nbasicConstraints = CA:FALSE\n"),
        )
        .expect("write");
        let mut request = vec!["req", "-new"];
        request.extend_from_slice(new_key);
        let (key_path, csr_path) = (path("leaf.key"), path("leaf.csr"));
        request.extend_from_slice(&[
            "-nodes",
            "-keyout",
            &key_path,
            "-subj",
            "/O=Kyso Test/CN=OpenSSL Leaf",
            "-out",
            &csr_path,
        ]);
        openssl_ok(&request);
        openssl_ok(&[
            "x509",
            "-req",
            "-in",
            &path("leaf.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-set_serial",
            "4660",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &path("ext.cnf"),
            "-outform",
            "DER",
            "-out",
            &path("leaf.der"),
        ]);
        std::fs::read(path("leaf.der")).expect("read leaf")
    }

    fn real_now_unix() -> i64 {
        let elapsed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        i64::try_from(elapsed.as_secs()).expect("fits")
    }

    #[test]
    fn leaf_issued_by_the_openssl_cli_is_accepted() {
        let root = ecdsa_root();
        let leaf = openssl_issued_leaf(
            &root,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            "digitalSignature",
        );
        // openssl stamps the validity from the real clock.
        let validated =
            validate_chain(&[leaf], &anchors_of(&root), real_now_unix()).expect("accepted");
        assert_eq!(validated.subject, "CN=OpenSSL Leaf,O=Kyso Test");
        assert_eq!(validated.serial_hex, "1234");
    }

    #[test]
    fn rsa_leaf_below_2048_bits_is_rejected_as_too_small() {
        let root = ecdsa_root();
        let leaf = openssl_issued_leaf(&root, &["-newkey", "rsa:1024"], "digitalSignature");
        let error =
            validate_chain(&[leaf], &anchors_of(&root), real_now_unix()).expect_err("small key");
        assert_eq!(error, CertError::RsaKeyTooSmall { bits: 1024 });
    }

    #[test]
    fn p384_leaf_is_rejected_as_unsupported_algorithm() {
        let root = ecdsa_root();
        let leaf = openssl_issued_leaf(
            &root,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
            "digitalSignature",
        );
        let error =
            validate_chain(&[leaf], &anchors_of(&root), real_now_unix()).expect_err("p-384 signer");
        assert!(
            matches!(error, CertError::UnsupportedAlgorithm(_)),
            "{error:?}"
        );
    }

    #[test]
    fn unix_times_format_as_utc_dates() {
        assert_eq!(format_unix_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_utc(NOW_UNIX), "2026-01-01T00:00:00Z");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix_utc(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(format_unix_utc(-1), "1969-12-31T23:59:59Z");
    }
}
