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
    pub const SIGNER: KeyUsages = KeyUsages {
        digital_signature: true,
        non_repudiation: true,
        key_cert_sign: false,
        crl_sign: false,
    };
    /// keyCertSign and cRLSign: what a CA needs.
    pub const CERTIFICATE_AUTHORITY: KeyUsages = KeyUsages {
        digital_signature: false,
        non_repudiation: false,
        key_cert_sign: true,
        crl_sign: true,
    };
    /// No keyUsage extension.
    pub const NONE: KeyUsages = KeyUsages {
        digital_signature: false,
        non_repudiation: false,
        key_cert_sign: false,
        crl_sign: false,
    };

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
    pub fn signer(
        common_name: &str,
        algorithm: KeyAlgorithm,
        not_before_unix: i64,
        not_after_unix: i64,
    ) -> Self {
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
        Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            self.key_pkcs8_der.to_vec(),
        )))
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
            "self_signed_ca needs is_ca = true; use self_signed for other self-signed certificates"
                .to_string(),
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
pub fn self_signed_with_key(
    spec: &CertSpec,
    key_pkcs8_der: &[u8],
) -> Result<IssuedCert, DevPkiError> {
    let key = load_key(spec, key_pkcs8_der)?;
    finish_self_signed(spec, key)
}

/// A certificate with a fresh key, signed by `issuer`. The issuer is not checked to be a
/// CA: tests rely on issuing from non-CA certificates.
pub fn issue(spec: &CertSpec, issuer: &IssuedCert) -> Result<IssuedCert, DevPkiError> {
    let key = generate_key(spec.algorithm)?;
    finish_issued(spec, key, issuer)
}

/// extendedKeyUsage with timeStamping (1.3.6.1.5.5.7.3.8) only: SEQUENCE { OID }.
const EXTENDED_KEY_USAGE_TIME_STAMPING_DER: [u8; 12] = [0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// A time-stamping authority's certificate issued by `issuer`: extendedKeyUsage
/// timeStamping only and critical (rcgen writes its own EKU non-critical, so the
/// extension is written by hand), keyUsage digitalSignature, not a CA.
pub fn issue_tsa(
    common_name: &str,
    algorithm: KeyAlgorithm,
    not_before_unix: i64,
    not_after_unix: i64,
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    let mut params = digital_signature_params(common_name, algorithm, not_before_unix, not_after_unix)?;
    let mut extended_key_usage = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 37], EXTENDED_KEY_USAGE_TIME_STAMPING_DER.to_vec());
    extended_key_usage.set_criticality(true);
    params.custom_extensions.push(extended_key_usage);
    sign_params(&params, algorithm, issuer)
}

/// A leaf that is not a CA, with keyUsage digitalSignature only.
fn digital_signature_params(common_name: &str, algorithm: KeyAlgorithm, not_before_unix: i64, not_after_unix: i64) -> Result<CertificateParams, DevPkiError> {
    params(&CertSpec {
        key_usage: KeyUsages { digital_signature: true, ..KeyUsages::NONE },
        ..CertSpec::signer(common_name, algorithm, not_before_unix, not_after_unix)
    })
}

/// A fresh key of `algorithm` and its certificate from `params`, signed by `issuer`.
fn sign_params(params: &CertificateParams, algorithm: KeyAlgorithm, issuer: &IssuedCert) -> Result<IssuedCert, DevPkiError> {
    let key = generate_key(algorithm)?;
    let certificate = params.signed_by(&key, &issuer_from(issuer)?)?;
    Ok(IssuedCert { cert_der: certificate.der().to_vec(), key_pkcs8_der: Zeroizing::new(key.serialize_der()) })
}

/// A certificate for a key the caller brings (unencrypted PKCS#8 DER, of `spec.algorithm`),
/// signed by `issuer`.
pub fn issue_with_key(
    spec: &CertSpec,
    key_pkcs8_der: &[u8],
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    let key = load_key(spec, key_pkcs8_der)?;
    finish_issued(spec, key, issuer)
}

fn finish_self_signed(spec: &CertSpec, key: KeyPair) -> Result<IssuedCert, DevPkiError> {
    let certificate = params(spec)?.self_signed(&key)?;
    Ok(IssuedCert {
        cert_der: certificate.der().to_vec(),
        key_pkcs8_der: Zeroizing::new(key.serialize_der()),
    })
}

fn finish_issued(
    spec: &CertSpec,
    key: KeyPair,
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    let issuer = issuer_from(issuer)?;
    let certificate = params(spec)?.signed_by(&key, &issuer)?;
    Ok(IssuedCert {
        cert_der: certificate.der().to_vec(),
        key_pkcs8_der: Zeroizing::new(key.serialize_der()),
    })
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
    for (what, unix) in [
        ("not_before_unix", spec.not_before_unix),
        ("not_after_unix", spec.not_after_unix),
    ] {
        if !(0..=CERTIFICATE_TIME_UNIX_MAX).contains(&unix) {
            return Err(DevPkiError::InvalidSpec(format!(
                "{what} is {unix}, outside 0 to {CERTIFICATE_TIME_UNIX_MAX} (1970 to 9999)"
            )));
        }
    }
    if spec.not_before_unix > spec.not_after_unix {
        return Err(DevPkiError::InvalidSpec(
            "not_before_unix is after not_after_unix".to_string(),
        ));
    }
    if spec.path_length_max.is_some() && !spec.is_ca {
        return Err(DevPkiError::InvalidSpec(
            "path_length_max is only meaningful for a CA".to_string(),
        ));
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
        u64::try_from(unix)
            .map_err(|_| DevPkiError::InvalidSpec(format!("time {unix} is before 1970")))
    };
    params.not_before =
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(seconds(spec.not_before_unix)?);
    params.not_after =
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(seconds(spec.not_after_unix)?);
    Ok(())
}

fn random_serial() -> Result<SerialNumber, DevPkiError> {
    let mut bytes = [0u8; SERIAL_LENGTH_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DevPkiError::RandomFailed)?;
    // Positive (high bit clear) and without a leading zero byte, so always 16 bytes long.
    bytes[0] = (bytes[0] & 0x7F) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// An rcgen issuer whose name is the issuer certificate's subject, byte for byte (as long
/// as it uses one attribute per RDN, no repeated types, and Printable/IA5/UTF8 strings).
fn issuer_from(issued: &IssuedCert) -> Result<Issuer<'static, KeyPair>, DevPkiError> {
    let certificate = parse_certificate(&issued.cert_der)
        .map_err(|error: CertError| DevPkiError::Issuer(error.to_string()))?;
    let signing_key = SigningKey::from_pkcs8_der(&issued.key_pkcs8_der)?;
    if !signing_key.public_key_matches(&issued.cert_der) {
        return Err(DevPkiError::Issuer(
            "its key does not belong to its certificate".to_string(),
        ));
    }
    let key = KeyPair::try_from(issued.key_pkcs8_der.as_slice())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(certificate.subject())?;
    Ok(Issuer::new(params, key))
}

fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, DevPkiError> {
    let unsupported = |reason: &str| {
        DevPkiError::Issuer(format!("its subject name cannot be reproduced: {reason}"))
    };
    let mut result = DistinguishedName::new();
    for relative_name in name.iter_rdn() {
        let mut attributes = relative_name.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(unsupported("multi-valued RDN"));
        };
        let components: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("oversized OID"))?
            .collect();
        let name_type = DnType::from_oid(&components);
        if result.get(&name_type).is_some() {
            return Err(unsupported("repeated attribute type"));
        }
        let text = attribute
            .as_str()
            .map_err(|_| unsupported("non-string attribute value"))?;
        let value = match attribute.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            _ => {
                return Err(unsupported(
                    "string type other than UTF8String, PrintableString or IA5String",
                ))
            }
        };
        result.push(name_type, value);
    }
    Ok(result)
}

/// What a TLS certificate is for: the extended key usages it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsUsage {
    /// serverAuth: a node's identity on its ports.
    Server,
    /// clientAuth: an agency client or an operator.
    Client,
    /// Both: a node that serves its ports and calls its peers with one certificate.
    ServerAndClient,
}

/// An ECDSA P-256 TLS certificate issued by `issuer`: `common_name` as subject, the
/// subject alternative names (DNS names or IP addresses) and the extended key usage of
/// `usage`, digitalSignature, valid from `not_before_unix` to `not_after_unix`.
pub fn issue_tls(
    common_name: &str,
    subject_alt_names: &[String],
    usage: TlsUsage,
    not_before_unix: i64,
    not_after_unix: i64,
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    issue_tls_with(common_name, subject_alt_names, None, usage, not_before_unix, not_after_unix, issuer)
}

/// [`issue_tls`], plus the URI subject alternative name `uri` when given.
fn issue_tls_with(
    common_name: &str,
    subject_alt_names: &[String],
    uri: Option<String>,
    usage: TlsUsage,
    not_before_unix: i64,
    not_after_unix: i64,
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    let mut params = digital_signature_params(common_name, KeyAlgorithm::EcdsaP256, not_before_unix, not_after_unix)?;
    params.subject_alt_names = CertificateParams::new(subject_alt_names.to_vec())?.subject_alt_names;
    if let Some(uri) = uri {
        params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(uri)?));
    }
    params.extended_key_usages = match usage {
        TlsUsage::Server => vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        TlsUsage::Client => vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        TlsUsage::ServerAndClient => {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth]
        }
    };
    sign_params(&params, KeyAlgorithm::EcdsaP256, issuer)
}

/// A node's TLS certificate (serverAuth and clientAuth) bound to cluster node `node_id`
/// by the URI subject alternative name `urn:kyso:node:<id>` beside `hosts`: the peer port
/// takes a member's identity from it.
pub fn issue_node_tls(
    node_id: u64,
    common_name: &str,
    hosts: &[String],
    not_before_unix: i64,
    not_after_unix: i64,
    issuer: &IssuedCert,
) -> Result<IssuedCert, DevPkiError> {
    let uri = format!("{}{node_id}", super::cert::NODE_ID_URI_PREFIX);
    issue_tls_with(common_name, hosts, Some(uri), TlsUsage::ServerAndClient, not_before_unix, not_after_unix, issuer)
}

/// One entry of a CRL made by [`issue_crl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntrySpec {
    /// The revoked certificate's DER, whose serial number the entry names.
    pub certificate_der: Vec<u8>,
    pub revoked_at_unix: i64,
    /// RFC 5280 reason code (1 = keyCompromise); `None` for no reason extension.
    pub reason_code: Option<u8>,
}

/// A DER CRL signed by `issuer`, valid from `this_update_unix` for `validity_seconds`.
pub fn issue_crl(
    issuer: &IssuedCert,
    entries: &[CrlEntrySpec],
    this_update_unix: i64,
    validity_seconds: i64,
) -> Result<Vec<u8>, DevPkiError> {
    let time = |unix: i64| {
        u64::try_from(unix)
            .map(|seconds| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(seconds))
            .map_err(|_| DevPkiError::InvalidSpec(format!("time {unix} is before 1970")))
    };
    let mut revoked_certs = Vec::with_capacity(entries.len());
    for entry in entries {
        let certificate = parse_certificate(&entry.certificate_der).map_err(|error| DevPkiError::InvalidSpec(error.to_string()))?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: SerialNumber::from_slice(certificate.raw_serial()),
            revocation_time: time(entry.revoked_at_unix)?,
            reason_code: entry.reason_code.map(reason_from_code).transpose()?,
            invalidity_date: None,
        });
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: time(this_update_unix)?,
        next_update: time(this_update_unix + validity_seconds.max(1))?,
        crl_number: random_serial()?,
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let mut issuer_params = CertificateParams::default();
    let certificate = parse_certificate(&issuer.cert_der).map_err(|error| DevPkiError::Issuer(error.to_string()))?;
    issuer_params.distinguished_name = distinguished_name(certificate.subject())?;
    issuer_params.key_usages = vec![KeyUsagePurpose::CrlSign, KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::try_from(issuer.key_pkcs8_der.as_slice())?;
    Ok(params.signed_by(&Issuer::new(issuer_params, key))?.der().to_vec())
}

fn reason_from_code(code: u8) -> Result<rcgen::RevocationReason, DevPkiError> {
    use rcgen::RevocationReason::*;
    Ok(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        6 => CertificateHold,
        8 => RemoveFromCrl,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        other => return Err(DevPkiError::InvalidSpec(format!("crl reason code {other} is not defined"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::{parse_certificates, validate_chain, TrustAnchors};
    use crate::crypto::testutil::{
        ca_spec, openssl_ok, path_text, rsa_keys, signer_spec, NOW_UNIX,
    };
    use x509_parser::certificate::X509Certificate;
    use x509_parser::prelude::FromDer as _;

    fn parsed(der: &[u8]) -> X509Certificate<'_> {
        X509Certificate::from_der(der).expect("parses").1
    }

    #[test]
    fn issued_certificate_carries_exactly_what_the_spec_asks() {
        let mut root_spec = ca_spec("Spec Root", KeyAlgorithm::EcdsaP256);
        root_spec.path_length_max = Some(1);
        let root = self_signed_ca(&root_spec).expect("root");
        let mut spec = signer_spec("Spec Leaf", KeyAlgorithm::Ed25519);
        spec.not_before_unix = 1_700_000_000;
        spec.not_after_unix = 1_800_000_000;
        spec.key_usage = KeyUsages {
            non_repudiation: true,
            ..KeyUsages::NONE
        };
        let leaf = issue(&spec, &root).expect("leaf");

        let root_certificate = parsed(&root.cert_der);
        let constraints = root_certificate
            .basic_constraints()
            .expect("ok")
            .expect("present")
            .value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(1));
        let root_usage = root_certificate
            .key_usage()
            .expect("ok")
            .expect("present")
            .value;
        assert!(
            root_usage.key_cert_sign() && root_usage.crl_sign() && !root_usage.digital_signature()
        );

        let leaf_certificate = parsed(&leaf.cert_der);
        assert_eq!(
            leaf_certificate.validity().not_before.timestamp(),
            1_700_000_000
        );
        assert_eq!(
            leaf_certificate.validity().not_after.timestamp(),
            1_800_000_000
        );
        assert!(
            !leaf_certificate
                .basic_constraints()
                .expect("ok")
                .expect("explicit")
                .value
                .ca
        );
        let usage = leaf_certificate
            .key_usage()
            .expect("ok")
            .expect("present")
            .value;
        assert!(usage.non_repudiation() && !usage.digital_signature() && !usage.key_cert_sign());
        assert_eq!(
            leaf_certificate.issuer().as_raw(),
            root_certificate.subject().as_raw()
        );
        assert_eq!(
            leaf_certificate.subject().to_string(),
            "O=Kyso Test, CN=Spec Leaf"
        );
        assert_eq!(leaf_certificate.raw_serial().len(), SERIAL_LENGTH_BYTES);
        assert_eq!(
            leaf.signing_key().expect("key").algorithm(),
            KeyAlgorithm::Ed25519
        );
    }

    #[test]
    fn certificates_without_key_usage_have_no_key_usage_extension() {
        let mut spec = signer_spec("Bare", KeyAlgorithm::EcdsaP256);
        spec.key_usage = KeyUsages::NONE;
        let certificate = self_signed(&spec).expect("certificate");
        assert!(parsed(&certificate.cert_der)
            .key_usage()
            .expect("ok")
            .is_none());
    }

    #[test]
    fn serial_numbers_differ_between_certificates() {
        let spec = ca_spec("Root", KeyAlgorithm::EcdsaP256);
        let first = self_signed_ca(&spec).expect("first");
        let second = self_signed_ca(&spec).expect("second");
        assert_ne!(
            parsed(&first.cert_der).raw_serial(),
            parsed(&second.cert_der).raw_serial()
        );
    }

    #[test]
    fn rsa_without_a_key_is_refused_with_advice() {
        let error =
            self_signed_ca(&ca_spec("Root", KeyAlgorithm::Rsa)).expect_err("no rsa generation");
        assert!(matches!(error, DevPkiError::RsaKeyGenerationUnavailable));
        assert!(error.to_string().contains("openssl genpkey"), "{error}");
    }

    #[test]
    fn rsa_certificates_are_made_with_a_supplied_key() {
        let [root_key, leaf_key] = rsa_keys();
        let root =
            self_signed_with_key(&ca_spec("RSA Root", KeyAlgorithm::Rsa), root_key).expect("root");
        let leaf = issue_with_key(&signer_spec("RSA Leaf", KeyAlgorithm::Rsa), leaf_key, &root)
            .expect("leaf");
        assert_eq!(leaf.key_pkcs8_der.as_slice(), leaf_key.as_slice());
        assert!(leaf
            .signing_key()
            .expect("key")
            .public_key_matches(&leaf.cert_der));
    }

    #[test]
    fn key_of_another_algorithm_than_the_spec_is_refused() {
        let error = self_signed_with_key(&ca_spec("Root", KeyAlgorithm::EcdsaP256), &rsa_keys()[0])
            .expect_err("mismatch");
        assert!(
            matches!(&error, DevPkiError::InvalidSpec(reason) if reason.contains("the key is rsa")),
            "{error}"
        );
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut inverted = signer_spec("Inverted", KeyAlgorithm::EcdsaP256);
        inverted.not_before_unix = NOW_UNIX;
        inverted.not_after_unix = NOW_UNIX - 1;
        let mut before_1970 = signer_spec("Old", KeyAlgorithm::EcdsaP256);
        before_1970.not_before_unix = -1;
        let mut after_9999 = signer_spec("Far", KeyAlgorithm::EcdsaP256);
        after_9999.not_after_unix = CERTIFICATE_TIME_UNIX_MAX + 1;
        let empty_name = signer_spec("", KeyAlgorithm::EcdsaP256);
        let mut leaf_with_path_length = signer_spec("Leaf", KeyAlgorithm::EcdsaP256);
        leaf_with_path_length.path_length_max = Some(0);
        for spec in [
            inverted,
            before_1970,
            after_9999,
            empty_name,
            leaf_with_path_length,
        ] {
            assert!(
                matches!(self_signed(&spec), Err(DevPkiError::InvalidSpec(_))),
                "{spec:?}"
            );
        }
        let not_a_ca = signer_spec("Leaf", KeyAlgorithm::EcdsaP256);
        assert!(matches!(
            self_signed_ca(&not_a_ca),
            Err(DevPkiError::InvalidSpec(_))
        ));
    }

    #[test]
    fn issuer_whose_key_is_not_its_certificates_is_refused() {
        let root = self_signed_ca(&ca_spec("Root", KeyAlgorithm::EcdsaP256)).expect("root");
        let other = self_signed_ca(&ca_spec("Other", KeyAlgorithm::EcdsaP256)).expect("other");
        let mixed = IssuedCert {
            cert_der: root.cert_der.clone(),
            key_pkcs8_der: other.key_pkcs8_der.clone(),
        };
        let error =
            issue(&signer_spec("Leaf", KeyAlgorithm::EcdsaP256), &mixed).expect_err("mismatch");
        assert!(matches!(error, DevPkiError::Issuer(_)), "{error:?}");
    }

    #[test]
    fn openssl_made_ca_can_issue_and_its_chain_validates() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| path_text(&directory.path().join(name));
        openssl_ok(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &path("ca.key"),
            "-subj",
            "/C=DE/O=OpenSSL Made/CN=OpenSSL Root",
            "-days",
            "3650",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &path("ca.pem"),
        ]);
        let cert_der = parse_certificates(&std::fs::read(path("ca.pem")).expect("read"))
            .expect("pem")
            .remove(0);
        let key_pem = std::fs::read(path("ca.key")).expect("read");
        let key_pkcs8_der = pem::parse(&key_pem).expect("pem").into_contents();
        let root = IssuedCert {
            cert_der,
            key_pkcs8_der: Zeroizing::new(key_pkcs8_der),
        };
        let leaf = issue(&signer_spec("Alice", KeyAlgorithm::EcdsaP256), &root).expect("leaf");
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        )
        .expect("fits");
        let anchors = TrustAnchors::from_der_list(vec![root.cert_der.clone()]).expect("anchor");
        let validated = validate_chain(&[leaf.cert_der], &anchors, now)
            .expect("the issuer name is reproduced exactly");
        assert_eq!(validated.issuer, "CN=OpenSSL Root,O=OpenSSL Made,C=DE");
    }

    #[test]
    fn pem_helpers_round_trip() {
        let root = self_signed_ca(&ca_spec("Root", KeyAlgorithm::Ed25519)).expect("root");
        assert_eq!(
            parse_certificates(root.cert_pem().as_bytes()).expect("pem"),
            vec![root.cert_der.clone()]
        );
        let key = SigningKey::from_pem(root.key_pem().as_bytes()).expect("key pem");
        assert!(key.public_key_matches(&root.cert_der));
        assert!(!format!("{root:?}").contains(&hex::encode(&root.key_pkcs8_der[..])));
    }
}
