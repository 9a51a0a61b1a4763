//! A throwaway certificate authority for `kyso dev` and for tests.
//!
//! This module is for making certificates on demand: a self-signed root, intermediates and
//! signer leaves, with exactly the validity, CA flag and key usage asked for, including
//! wrong ones (tests use it to forge expired, non-CA or self-signed certificates).
//!
//! It must never be the source of production trust, never read the clock (every time comes
//! from the [`CertSpec`]), and never generate RSA keys (ring cannot): RSA certificates use a
//! key the caller brings, made for instance by `openssl genpkey`.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use x509_parser::asn1_rs::Tag;
use x509_parser::x509::X509Name;
use zeroize::Zeroizing;

use super::cert::{parse_certificate, CertError};
use super::keys::{KeyError, SigningKey};
use super::KeyAlgorithm;

/// The latest instant a certificate time may take: 9999-12-31T23:59:59Z.
pub const CERTIFICATE_TIME_UNIX_MAX: i64 = 253_402_300_799;
/// The longest common name or organization accepted (the X.520 upper bound for both).
pub const NAME_LENGTH_CHARACTERS_MAX: usize = 64;
const SERIAL_LENGTH_BYTES: usize = 16;

/// Why a development certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// The spec cannot be turned into a certificate.
    #[error("invalid certificate spec: {0}")]
    InvalidSpec(String),
    /// RSA was asked for without a key.
    #[error("rsa keys cannot be generated here (ring has no rsa key generation): make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` and use issue_with_key or self_signed_with_key")]
    RsaKeyGenerationUnavailable,
    /// The issuer's certificate or key cannot be used to issue.
    #[error("the issuer cannot issue: {0}")]
    Issuer(String),
    /// The subject key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Generation(String),
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    RandomFailed,
}

impl From<rcgen::Error> for DevPkiError {
    fn from(error: rcgen::Error) -> Self {
        DevPkiError::Generation(error.to_string())
    }
}

/// The keyUsage bits a [`CertSpec`] may set. All false means no keyUsage extension at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsages {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

impl KeyUsages {
    /// digitalSignature and nonRepudiation: what a document signer needs.
    pub const SIGNER: KeyUsages =
        KeyUsages { digital_signature: true, non_repudiation: true, key_cert_sign: false, crl_sign: false };
    /// keyCertSign and cRLSign: what a CA needs.
    pub const CERTIFICATE_AUTHORITY: KeyUsages =
        KeyUsages { digital_signature: false, non_repudiation: false, key_cert_sign: true, crl_sign: true };
    /// No keyUsage extension.
    pub const NONE: KeyUsages =
        KeyUsages { digital_signature: false, non_repudiation: false, key_cert_sign: false, crl_sign: false };

    fn purposes(self) -> Vec<KeyUsagePurpose> {
        [
            (self.digital_signature, KeyUsagePurpose::DigitalSignature),
            (self.non_repudiation, KeyUsagePurpose::ContentCommitment),
            (self.key_cert_sign, KeyUsagePurpose::KeyCertSign),
            (self.crl_sign, KeyUsagePurpose::CrlSign),
        ]
        .into_iter()
        .filter_map(|(wanted, purpose)| wanted.then_some(purpose))
        .collect()
    }
}

/// What certificate to make. The subject is `O=organization, CN=common_name` (RFC 4514:
/// `CN=...,O=...`), encoded as UTF8String.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    pub common_name: String,
    pub organization: Option<String>,
    /// The subject key's algorithm. For [`KeyAlgorithm::Rsa`] the caller supplies the key
    /// ([`issue_with_key`], [`self_signed_with_key`]).
    pub algorithm: KeyAlgorithm,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// basicConstraints cA=true when set; otherwise an explicit cA=false.
    pub is_ca: bool,
    pub key_usage: KeyUsages,
    /// basicConstraints pathLenConstraint, for CAs only.
    pub path_length_max: Option<u8>,
}

impl CertSpec {
    /// A document signer: not a CA, digitalSignature and nonRepudiation.
    pub fn signer(common_name: &str, algorithm: KeyAlgorithm, not_before_unix: i64, not_after_unix: i64) -> Self {
        CertSpec {
            common_name: common_name.to_string(),
            organization: None,
            algorithm,
            not_before_unix,
            not_after_unix,
            is_ca: false,
            key_usage: KeyUsages::SIGNER,
            path_length_max: None,
        }
    }

    /// A CA without path length constraint: keyCertSign and cRLSign.
    pub fn certificate_authority(
        common_name: &str,
        algorithm: KeyAlgorithm,
        not_before_unix: i64,
        not_after_unix: i64,
    ) -> Self {
        CertSpec {
            is_ca: true,
            key_usage: KeyUsages::CERTIFICATE_AUTHORITY,
            ..CertSpec::signer(common_name, algorithm, not_before_unix, not_after_unix)
        }
    }
}

/// A certificate and its private key.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_der: Vec<u8>,
    /// Unencrypted PKCS#8 DER, zeroized on drop.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IssuedCert")
            .field("cert_der_length_bytes", &self.cert_der.len())
            .field("key_pkcs8_der", &"<redacted>")
            .finish()
    }
}

impl IssuedCert {
    /// The certificate as a PEM "CERTIFICATE" block.
    pub fn cert_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.clone()))
    }

    /// The key as a PEM "PRIVATE KEY" block.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", self.key_pkcs8_der.to_vec())))
    }

    /// The key, ready to sign.
    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        SigningKey::from_pkcs8_der(&self.key_pkcs8_der)
    }
}

/// A self-signed CA certificate with a fresh key. `spec.is_ca` must be set.
pub fn self_signed_ca(spec: &CertSpec) -> Result<IssuedCert, DevPkiError> {
    if !spec.is_ca {
        return Err(DevPkiError::InvalidSpec(
            "self_signed_ca needs is_ca = true; use self_signed for other self-signed certificates".to_string(),
        ));
    }
    self_signed(spec)
}

/// A self-signed certificate with a fresh key, exactly as `spec` says (a CA or not).
pub fn self_signed(spec: &CertSpec) -> Result<IssuedCert, DevPkiError> {
    let key = generate_key(spec.algorithm)?;
    finish_self_signed(spec, key)
}

/// A self-signed certificate for a key the caller brings (unencrypted PKCS#8 DER).
pub fn self_signed_with_key(spec: &CertSpec, key_pkcs8_der: &[u8]) -> Result<IssuedCert, DevPkiError> {
    let key = load_key(spec, key_pkcs8_der)?;
    finish_self_signed(spec, key)
}

/// A certificate with a fresh key, signed by `issuer`. The issuer is not checked to be a
/// CA: tests rely on issuing from non-CA certificates.
pub fn issue(spec: &CertSpec, issuer: &IssuedCert) -> Result<IssuedCert, DevPkiError> {
    let key = generate_key(spec.algorithm)?;
    finish_issued(spec, key, issuer)
}

/// A certificate for a key the caller brings (unencrypted PKCS#8 DER, of `spec.algorithm`),
/// signed by `issuer`.
pub fn issue_with_key(spec: &CertSpec, key_pkcs8_der: &[u8], issuer: &IssuedCert) -> Result<IssuedCert, DevPkiError> {
    let key = load_key(spec, key_pkcs8_der)?;
    finish_issued(spec, key, issuer)
}

fn finish_self_signed(spec: &CertSpec, key: KeyPair) -> Result<IssuedCert, DevPkiError> {
    let certificate = params(spec)?.self_signed(&key)?;
    Ok(IssuedCert { cert_der: certificate.der().to_vec(), key_pkcs8_der: Zeroizing::new(key.serialize_der()) })
}

fn finish_issued(spec: &CertSpec, key: KeyPair, issuer: &IssuedCert) -> Result<IssuedCert, DevPkiError> {
    let issuer = issuer_from(issuer)?;
    let certificate = params(spec)?.signed_by(&key, &issuer)?;
    Ok(IssuedCert { cert_der: certificate.der().to_vec(), key_pkcs8_der: Zeroizing::new(key.serialize_der()) })
}

fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, DevPkiError> {
    match algorithm {
        KeyAlgorithm::Rsa => Err(DevPkiError::RsaKeyGenerationUnavailable),
        KeyAlgorithm::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
        KeyAlgorithm::Ed25519 => Ok(KeyPair::generate_for(&rcgen::PKCS_ED25519)?),
    }
}

/// Loads a caller's key after checking it against our own allow-list and the spec.
fn load_key(spec: &CertSpec, key_pkcs8_der: &[u8]) -> Result<KeyPair, DevPkiError> {
    let algorithm = SigningKey::from_pkcs8_der(key_pkcs8_der)?.algorithm();
    if algorithm != spec.algorithm {
        return Err(DevPkiError::InvalidSpec(format!(
            "the key is {algorithm} but the spec asks for {}",
            spec.algorithm
        )));
    }
    Ok(KeyPair::try_from(key_pkcs8_der)?)
}

fn check_name(what: &str, value: &str) -> Result<(), DevPkiError> {
    let length = value.chars().count();
    if length == 0 || length > NAME_LENGTH_CHARACTERS_MAX {
        return Err(DevPkiError::InvalidSpec(format!(
            "{what} must be 1 to {NAME_LENGTH_CHARACTERS_MAX} characters, got {length}"
        )));
    }
    Ok(())
}

fn check_spec(spec: &CertSpec) -> Result<(), DevPkiError> {
    check_name("common_name", &spec.common_name)?;
    if let Some(organization) = &spec.organization {
        check_name("organization", organization)?;
    }
    for (what, unix) in [("not_before_unix", spec.not_before_unix), ("not_after_unix", spec.not_after_unix)] {
        if !(0..=CERTIFICATE_TIME_UNIX_MAX).contains(&unix) {
            return Err(DevPkiError::InvalidSpec(format!(
                "{what} is {unix}, outside 0 to {CERTIFICATE_TIME_UNIX_MAX} (1970 to 9999)"
            )));
        }
    }
    if spec.not_before_unix > spec.not_after_unix {
        return Err(DevPkiError::InvalidSpec("not_before_unix is after not_after_unix".to_string()));
    }
    if spec.path_length_max.is_some() && !spec.is_ca {
        return Err(DevPkiError::InvalidSpec("path_length_max is only meaningful for a CA".to_string()));
    }
    Ok(())
}

fn params(spec: &CertSpec) -> Result<CertificateParams, DevPkiError> {
    check_spec(spec)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(organization) = &spec.organization {
        name.push(DnType::OrganizationName, organization.as_str());
    }
    name.push(DnType::CommonName, spec.common_name.as_str());
    params.distinguished_name = name;
    set_validity(&mut params, spec)?;
    params.serial_number = Some(random_serial()?);
    params.is_ca = match (spec.is_ca, spec.path_length_max) {
        (true, Some(length)) => IsCa::Ca(BasicConstraints::Constrained(length)),
        (true, None) => IsCa::Ca(BasicConstraints::Unconstrained),
        (false, _) => IsCa::ExplicitNoCa,
    };
    params.key_usages = spec.key_usage.purposes();
    Ok(params)
}

/// Sets rcgen's validity, which is a `time::OffsetDateTime`: building it from the epoch plus
/// a std `Duration` avoids depending on `time` directly. `check_spec` bounded both times to
/// 1970..=9999, so neither conversion nor addition can fail or overflow.
fn set_validity(params: &mut CertificateParams, spec: &CertSpec) -> Result<(), DevPkiError> {
    let seconds = |unix: i64| {
        u64::try_from(unix).map_err(|_| DevPkiError::InvalidSpec(format!("time {unix} is before 1970")))
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(seconds(spec.not_before_unix)?);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(seconds(spec.not_after_unix)?);
    Ok(())
}

fn random_serial() -> Result<SerialNumber, DevPkiError> {
    let mut bytes = [0u8; SERIAL_LENGTH_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| DevPkiError::RandomFailed)?;
    // Positive (high bit clear) and without a leading zero byte, so always 16 bytes long.
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// An rcgen issuer whose name is the issuer certificate's subject, byte for byte (as long
/// as it uses one attribute per RDN, no repeated types, and Printable/IA5/UTF8 strings).
fn issuer_from(issued: &IssuedCert) -> Result<Issuer<'static, KeyPair>, DevPkiError> {
    let certificate = parse_certificate(&issued.cert_der).map_err(|error: CertError| DevPkiError::Issuer(error.to_string()))?;
    let signing_key = SigningKey::from_pkcs8_der(&issued.key_pkcs8_der)?;
    if !signing_key.public_key_matches(&issued.cert_der) {
        return Err(DevPkiError::Issuer("its key does not belong to its certificate".to_string()));
    }
    let key = KeyPair::try_from(issued.key_pkcs8_der.as_slice())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(certificate.subject())?;
    Ok(Issuer::new(params, key))
}

fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, DevPkiError> {
    let unsupported = |reason: &str| DevPkiError::Issuer(format!("its subject name cannot be reproduced: {reason}"));
    let mut result = DistinguishedName::new();
    for relative_name in name.iter_rdn() {
        let mut attributes = relative_name.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(unsupported("multi-valued RDN"));
        };
        let components: Vec<u64> = attribute.attr_type().iter().ok_or_else(|| unsupported("oversized OID"))?.collect();
        let name_type = DnType::from_oid(&components);
        if result.get(&name_type).is_some() {
            return Err(unsupported("repeated attribute type"));
        }
        let text = attribute.as_str().map_err(|_| unsupported("non-string attribute value"))?;
        let value = match attribute.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            _ => return Err(unsupported("string type other than UTF8String, PrintableString or IA5String")),
        };
        result.push(name_type, value);
    }
    Ok(result)
}
