//! Detached CMS (RFC 5652) signatures with CAdES-BES signed attributes.
//!
//! This module is for making and checking the one kind of signature kyso produces: a DER
//! `ContentInfo` holding `SignedData` without the content (detached), one signer identified
//! by issuer and serial number, the signer's chain in `certificates`, and four signed
//! attributes: content-type (id-data), message-digest, signing-time and ESS
//! signing-certificate-v2 (RFC 5035). Algorithms are an explicit list:
//!
//! | key        | digestAlgorithm   | signatureAlgorithm                     |
//! |------------|-------------------|----------------------------------------|
//! | rsa        | sha-256 (no params) | sha256WithRSAEncryption, NULL params |
//! | ecdsa-p256 | sha-256 (no params) | ecdsa-with-SHA256, no params         |
//! | ed25519    | sha-512 (no params) | id-Ed25519, no params (RFC 8419)     |
//!
//! The verifier also accepts rsaEncryption as the RSA signatureAlgorithm (what OpenSSL
//! writes) and NULL digest parameters.
//!
//! It must never read the clock (the caller fixes the signing time), never verify a
//! signature over a re-encoding of the signed attributes (der's decoder re-sorts SET OF;
//! the bytes as received are what was signed), and never decide trust: [`verify_detached`]
//! checks that the signature is internally sound, and the caller MUST validate the signer's
//! chain with `cert::validate_chain` at the signing time.

use der::asn1::{GeneralizedTime, ObjectIdentifier, OctetString, SetOfVec, UtcTime};
use der::{Any, AnyRef, DateTime, Decode as _, Encode as _, Sequence, Tagged as _};
use ring::digest;
use ring::signature;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;
use x509_cert::Certificate;

use ::cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use ::cms::content_info::{CmsVersion, ContentInfo};
use ::cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier, SignerInfo,
    SignerInfos,
};

use super::cert::{parse_certificate, signer_key_algorithm, CertError, CHAIN_LENGTH_MAX};
use super::keys::{KeyError, SigningKey};
use super::KeyAlgorithm;

/// The largest CMS input [`verify_detached`] reads. A signature with a chain of
/// [`CHAIN_LENGTH_MAX`] RSA-4096 certificates is well under 64 KiB.
pub const CMS_SIZE_BYTES_MAX: usize = 256 * 1024;
/// The most certificates a CMS may carry.
pub const CMS_CERTIFICATES_COUNT_MAX: usize = 2 * CHAIN_LENGTH_MAX;
/// The last year signing-time is written as UTCTime (RFC 5652 section 11.3).
const UTC_TIME_YEAR_MAX: u16 = 2049;

const OID_DATA: ObjectIdentifier = const_oid::db::rfc5911::ID_DATA;
const OID_SIGNED_DATA: ObjectIdentifier = const_oid::db::rfc5911::ID_SIGNED_DATA;
const OID_CONTENT_TYPE: ObjectIdentifier = const_oid::db::rfc5911::ID_CONTENT_TYPE;
const OID_MESSAGE_DIGEST: ObjectIdentifier = const_oid::db::rfc5911::ID_MESSAGE_DIGEST;
const OID_SIGNING_TIME: ObjectIdentifier = const_oid::db::rfc5911::ID_SIGNING_TIME;
const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier = const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;
const OID_SHA_256: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;
const OID_SHA_384: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_384;
const OID_SHA_512: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_512;
const OID_RSA_ENCRYPTION: ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const OID_SHA_256_WITH_RSA: ObjectIdentifier = const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION;
const OID_ECDSA_WITH_SHA_256: ObjectIdentifier = const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
const OID_ED25519: ObjectIdentifier = const_oid::db::rfc8410::ID_ED_25519;

const TAG_INTEGER: u8 = 0x02;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0: u8 = 0xA0;
const TAG_CONTEXT_1: u8 = 0xA1;

/// Why a CMS signature could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// The CMS input is larger than [`CMS_SIZE_BYTES_MAX`].
    #[error("signature is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    /// The bytes are not DER CMS.
    #[error("malformed CMS signature: {0}")]
    Malformed(String),
    /// A ContentInfo of another type.
    #[error("CMS content type is {content_type}, expected signedData (1.2.840.113549.1.7.2)")]
    NotSignedData { content_type: String },
    /// Signed content other than id-data.
    #[error("signed content type is {content_type}, expected id-data (1.2.840.113549.1.7.1)")]
    UnsupportedContentType { content_type: String },
    /// The content is embedded; only detached signatures are accepted.
    #[error("the signature embeds its content: supply a detached signature")]
    NotDetached,
    /// Not exactly one SignerInfo.
    #[error("the signature has {count} signers, exactly one is supported")]
    SignerCount { count: usize },
    /// The signer is identified by subjectKeyIdentifier.
    #[error("the signer is identified by subject key identifier: only issuer and serial number is supported")]
    UnsupportedSignerIdentifier,
    /// No signed attributes.
    #[error("the signature has no signed attributes: a CAdES signature needs content-type, message-digest, signing-time and signing-certificate-v2")]
    SignedAttributesMissing,
    /// A required signed attribute is absent.
    #[error("the signed attribute {name} is missing")]
    MissingAttribute { name: &'static str },
    /// A signed attribute is repeated, multi-valued or does not decode.
    #[error("the signed attribute {name} is invalid: {reason}")]
    InvalidAttribute { name: &'static str, reason: String },
    /// The content-type attribute is not id-data.
    #[error("the content-type attribute does not match the signed content type")]
    ContentTypeMismatch,
    /// The content's digest differs from the message-digest attribute.
    #[error("the document does not match the signature: it was changed after signing, or the signature belongs to another document")]
    DigestMismatch,
    /// No certificate in the CMS matches the signer's issuer and serial number.
    #[error("the signer's certificate is not included in the signature")]
    SignerCertificateNotFound,
    /// An algorithm outside the allow-list, or a mismatched combination.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The signature over the signed attributes does not verify with the signer's key.
    #[error("the signature value does not verify with the signer certificate's key: the signature was altered or made by another key")]
    SignatureInvalid,
    /// The ESS signing-certificate-v2 attribute names another certificate.
    #[error("the signing-certificate-v2 attribute does not match the signer certificate: the certificate was swapped")]
    EssCertificateMismatch,
    /// `sign_detached` was given no certificates.
    #[error("no signer certificate given: supply the signer's chain, leaf first")]
    SignerChainEmpty,
    /// The signing key is not the leaf certificate's key.
    #[error("the signing key does not belong to the signer certificate (the first of the chain)")]
    KeyDoesNotMatchCertificate,
    /// A signing time before 1970 or after 9999.
    #[error("signing time {unix} is out of range (1970 to 9999)")]
    SigningTimeOutOfRange { unix: i64 },
    /// A certificate in the chain (or the signer certificate) is unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The key failed to sign.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What a verified signature says, for the caller to check further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCms {
    /// The signer's certificate, exactly as embedded.
    pub signer_cert_der: Vec<u8>,
    /// Every certificate embedded, in the order received (DER SET order, not chain order).
    pub certificates_der: Vec<Vec<u8>>,
    /// The signing-time attribute, unix seconds. Claimed by the signer, not proven.
    pub signing_time_unix: i64,
    /// The signer's key algorithm.
    pub algorithm: KeyAlgorithm,
}

/// ESS SigningCertificateV2 (RFC 5035). `policies` is carried but not interpreted.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Vec<Any>>,
}

/// ESS ESSCertIDv2. hashAlgorithm is DEFAULT sha-256: absent means SHA-256, and DER
/// requires leaving it out when it is SHA-256.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

/// ESS IssuerSerial: the certificate's issuer as GeneralNames, and its serial number.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

/// The algorithms that go with one key algorithm.
struct Suite {
    digest: &'static digest::Algorithm,
    digest_oid: ObjectIdentifier,
    signature_oid: ObjectIdentifier,
    /// RSA identifiers carry NULL parameters; the others carry none.
    signature_parameters_null: bool,
    verification: &'static dyn signature::VerificationAlgorithm,
}

fn suite(algorithm: KeyAlgorithm) -> Suite {
    match algorithm {
        KeyAlgorithm::Rsa => Suite {
            digest: &digest::SHA256,
            digest_oid: OID_SHA_256,
            signature_oid: OID_SHA_256_WITH_RSA,
            signature_parameters_null: true,
            verification: &signature::RSA_PKCS1_2048_8192_SHA256,
        },
        KeyAlgorithm::EcdsaP256 => Suite {
            digest: &digest::SHA256,
            digest_oid: OID_SHA_256,
            signature_oid: OID_ECDSA_WITH_SHA_256,
            signature_parameters_null: false,
            verification: &signature::ECDSA_P256_SHA256_ASN1,
        },
        KeyAlgorithm::Ed25519 => Suite {
            digest: &digest::SHA512,
            digest_oid: OID_SHA_512,
            signature_oid: OID_ED25519,
            signature_parameters_null: false,
            verification: &signature::ED25519,
        },
    }
}

/// Signs `content` and returns a detached DER CMS `ContentInfo`.
///
/// `signer_chain_der` is leaf first; every certificate in it is embedded. The leaf must be
/// `key`'s certificate. The caller fixes `signing_time_unix`, so the output depends only
/// on the arguments, except that ECDSA signature values are randomized (RSA PKCS#1 v1.5 and
/// Ed25519 are deterministic). The caller SHOULD validate the chain first.
pub fn sign_detached(
    content: &[u8],
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    key: &SigningKey,
) -> Result<Vec<u8>, CmsError> {
    let leaf_der = signer_chain_der.first().ok_or(CmsError::SignerChainEmpty)?;
    if signer_chain_der.len() > CHAIN_LENGTH_MAX {
        return Err(CertError::ChainTooLong { length: signer_chain_der.len(), limit: CHAIN_LENGTH_MAX }.into());
    }
    if !key.public_key_matches(leaf_der) {
        return Err(CmsError::KeyDoesNotMatchCertificate);
    }
    let certificates = signer_chain_der
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|error| CertError::Malformed(error.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = &certificates[0];
    let suite = suite(key.algorithm());

    let content_digest = digest::digest(suite.digest, content);
    let signed_attributes = signed_attributes(content_digest.as_ref(), signing_time_unix, leaf_der, leaf)?;
    // `SetOfVec` encodes with the SET tag (0x31), which is what RFC 5652 section 5.4 says to
    // sign; inside SignerInfo the same bytes carry the [0] IMPLICIT tag instead.
    let signature_value = key.sign(&signed_attributes.to_der().map_err(encoding)?)?;

    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: leaf.tbs_certificate.issuer.clone(),
            serial_number: leaf.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: algorithm_identifier(suite.digest_oid, false),
        signed_attrs: Some(signed_attributes),
        signature_algorithm: algorithm_identifier(suite.signature_oid, suite.signature_parameters_null),
        signature: OctetString::new(signature_value).map_err(encoding)?,
        unsigned_attrs: None,
    };
    let certificate_set = CertificateSet::try_from(
        certificates.into_iter().map(CertificateChoices::Certificate).collect::<Vec<_>>(),
    )
    .map_err(|error| CertError::Malformed(format!("the chain holds a certificate twice: {error}")))?;
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: set_of(vec![algorithm_identifier(suite.digest_oid, false)])?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: OID_DATA, econtent: None },
        certificates: Some(certificate_set),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(encoding)?,
    };
    let content_info = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(encoding)?,
    };
    content_info.to_der().map_err(encoding)
}

/// Checks a detached CMS signature over `content`: structure and allowed algorithms, the
/// content-type and message-digest attributes, the signature over the signed attributes as
/// received, made by the embedded certificate named by issuer and serial number, and the
/// ESS signing-certificate-v2 hash of that certificate.
///
/// It does NOT decide whether the signer is trusted: the caller MUST run
/// `cert::validate_chain` on the signer's chain at `signing_time_unix` (or at the time it
/// recorded) against its trust anchors.
pub fn verify_detached(cms_der: &[u8], content: &[u8]) -> Result<VerifiedCms, CmsError> {
    if cms_der.len() > CMS_SIZE_BYTES_MAX {
        return Err(CmsError::TooLarge { size_bytes: cms_der.len(), limit_bytes: CMS_SIZE_BYTES_MAX });
    }
    let content_info = ContentInfo::from_der(cms_der).map_err(malformed)?;
    if content_info.content_type != OID_SIGNED_DATA {
        return Err(CmsError::NotSignedData { content_type: content_info.content_type.to_string() });
    }
    let signed_data: SignedData = content_info.content.decode_as().map_err(malformed)?;
    check_encapsulated_content(&signed_data.encap_content_info)?;
    let signer_info = single_signer(&signed_data)?;
    let raw = raw_parts(cms_der)?;
    if raw.certificates.len() > CMS_CERTIFICATES_COUNT_MAX {
        return Err(CmsError::Malformed(format!(
            "{} certificates embedded, more than the limit of {CMS_CERTIFICATES_COUNT_MAX}",
            raw.certificates.len()
        )));
    }
    let SignerIdentifier::IssuerAndSerialNumber(signer_id) = &signer_info.sid else {
        return Err(CmsError::UnsupportedSignerIdentifier);
    };
    let signer_cert_der = find_signer_certificate(&raw.certificates, signer_id)?;
    let signer_certificate = parse_certificate(signer_cert_der)?;
    let algorithm = signer_key_algorithm(signer_certificate.public_key())?;
    let suite = suite(algorithm);
    check_algorithms(&signed_data, signer_info, &suite, algorithm)?;

    let attributes = signer_info.signed_attrs.as_ref().ok_or(CmsError::SignedAttributesMissing)?;
    let raw_attributes = raw.signed_attributes.ok_or(CmsError::SignedAttributesMissing)?;
    check_content_type_attribute(attributes)?;
    check_message_digest_attribute(attributes, suite.digest, content)?;

    let mut signed_bytes = raw_attributes.to_vec();
    // The [0] IMPLICIT tag becomes the SET OF tag; length and contents stay as received.
    signed_bytes[0] = TAG_SET;
    signature::UnparsedPublicKey::new(suite.verification, signer_certificate.public_key().subject_public_key.data.as_ref())
        .verify(&signed_bytes, signer_info.signature.as_bytes())
        .map_err(|_| CmsError::SignatureInvalid)?;

    check_signing_certificate_attribute(attributes, signer_cert_der, signer_id)?;
    let signing_time_unix = signing_time_attribute(attributes)?;
    Ok(VerifiedCms {
        signer_cert_der: signer_cert_der.to_vec(),
        certificates_der: raw.certificates.iter().map(|der| der.to_vec()).collect(),
        signing_time_unix,
        algorithm,
    })
}

fn malformed(error: der::Error) -> CmsError {
    CmsError::Malformed(error.to_string())
}

fn encoding(error: der::Error) -> CmsError {
    CmsError::Malformed(format!("encoding failed: {error}"))
}

fn algorithm_identifier(oid: ObjectIdentifier, null_parameters: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid, parameters: null_parameters.then(|| Any::from(AnyRef::NULL)) }
}

fn set_of<T: der::DerOrd>(items: Vec<T>) -> Result<SetOfVec<T>, CmsError> {
    SetOfVec::try_from(items).map_err(encoding)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, CmsError> {
    Ok(Attribute { oid, values: set_of(vec![value])? })
}

/// content-type, message-digest, signing-time and signing-certificate-v2, in DER SET order.
fn signed_attributes(
    content_digest: &[u8],
    signing_time_unix: i64,
    leaf_der: &[u8],
    leaf: &Certificate,
) -> Result<SignedAttributes, CmsError> {
    let content_type = Any::encode_from(&OID_DATA).map_err(encoding)?;
    let message_digest = Any::encode_from(&OctetString::new(content_digest).map_err(encoding)?).map_err(encoding)?;
    let signing_time = Any::encode_from(&signing_time(signing_time_unix)?).map_err(encoding)?;
    let certificate_hash = digest::digest(&digest::SHA256, leaf_der);
    let signing_certificate = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(certificate_hash.as_ref()).map_err(encoding)?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(leaf.tbs_certificate.issuer.clone())],
                serial_number: leaf.tbs_certificate.serial_number.clone(),
            }),
        }],
        policies: None,
    };
    let signing_certificate = Any::encode_from(&signing_certificate).map_err(encoding)?;
    set_of(vec![
        attribute(OID_CONTENT_TYPE, content_type)?,
        attribute(OID_MESSAGE_DIGEST, message_digest)?,
        attribute(OID_SIGNING_TIME, signing_time)?,
        attribute(OID_SIGNING_CERTIFICATE_V2, signing_certificate)?,
    ])
}

/// UTCTime through 2049, GeneralizedTime from 2050 (RFC 5652 section 11.3).
fn signing_time(unix: i64) -> Result<Time, CmsError> {
    let out_of_range = || CmsError::SigningTimeOutOfRange { unix };
    let seconds = u64::try_from(unix).map_err(|_| out_of_range())?;
    let date_time =
        DateTime::from_unix_duration(std::time::Duration::from_secs(seconds)).map_err(|_| out_of_range())?;
    if date_time.year() <= UTC_TIME_YEAR_MAX {
        Ok(Time::UtcTime(UtcTime::from_date_time(date_time).map_err(|_| out_of_range())?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(date_time)))
    }
}

fn check_encapsulated_content(encapsulated: &EncapsulatedContentInfo) -> Result<(), CmsError> {
    if encapsulated.econtent_type != OID_DATA {
        return Err(CmsError::UnsupportedContentType { content_type: encapsulated.econtent_type.to_string() });
    }
    if encapsulated.econtent.is_some() {
        return Err(CmsError::NotDetached);
    }
    Ok(())
}

fn single_signer(signed_data: &SignedData) -> Result<&SignerInfo, CmsError> {
    let signers = signed_data.signer_infos.0.as_slice();
    match signers {
        [signer] => Ok(signer),
        _ => Err(CmsError::SignerCount { count: signers.len() }),
    }
}

fn find_signer_certificate<'a>(
    certificates: &[&'a [u8]],
    signer_id: &IssuerAndSerialNumber,
) -> Result<&'a [u8], CmsError> {
    for der in certificates {
        let certificate = Certificate::from_der(der).map_err(|error| {
            CmsError::Malformed(format!("an embedded certificate does not parse: {error}"))
        })?;
        if certificate.tbs_certificate.issuer == signer_id.issuer
            && certificate.tbs_certificate.serial_number == signer_id.serial_number
        {
            return Ok(der);
        }
    }
    Err(CmsError::SignerCertificateNotFound)
}

/// Parameters must be absent, or NULL where `null_allowed`.
fn parameters_ok(identifier: &AlgorithmIdentifierOwned, null_allowed: bool) -> bool {
    match &identifier.parameters {
        None => true,
        Some(parameters) => null_allowed && parameters.tag() == der::Tag::Null && parameters.value().is_empty(),
    }
}

fn check_algorithms(
    signed_data: &SignedData,
    signer_info: &SignerInfo,
    suite: &Suite,
    algorithm: KeyAlgorithm,
) -> Result<(), CmsError> {
    let digest_algorithm = &signer_info.digest_alg;
    if digest_algorithm.oid != suite.digest_oid || !parameters_ok(digest_algorithm, true) {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "digest algorithm {} with a {algorithm} signer; expected {}",
            digest_algorithm.oid, suite.digest_oid
        )));
    }
    let signature_algorithm = &signer_info.signature_algorithm;
    let rsa_encryption_accepted = algorithm == KeyAlgorithm::Rsa && signature_algorithm.oid == OID_RSA_ENCRYPTION;
    if !(signature_algorithm.oid == suite.signature_oid || rsa_encryption_accepted)
        || !parameters_ok(signature_algorithm, suite.signature_parameters_null)
    {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "signature algorithm {} with a {algorithm} signer; expected {}",
            signature_algorithm.oid, suite.signature_oid
        )));
    }
    if !signed_data.digest_algorithms.iter().any(|listed| listed.oid == digest_algorithm.oid) {
        return Err(CmsError::Malformed(
            "the signer's digest algorithm is missing from SignedData.digestAlgorithms".to_string(),
        ));
    }
    Ok(())
}

/// The one value of the one attribute with `oid`.
fn single_attribute_value<'a>(
    attributes: &'a SignedAttributes,
    oid: ObjectIdentifier,
    name: &'static str,
) -> Result<&'a Any, CmsError> {
    let mut matching = attributes.iter().filter(|attribute| attribute.oid == oid);
    let attribute = matching.next().ok_or(CmsError::MissingAttribute { name })?;
    if matching.next().is_some() {
        return Err(CmsError::InvalidAttribute { name, reason: "it appears more than once".to_string() });
    }
    match attribute.values.as_slice() {
        [value] => Ok(value),
        values => Err(CmsError::InvalidAttribute {
            name,
            reason: format!("it has {} values, expected exactly one", values.len()),
        }),
    }
}

/// Decodes an attribute value. The value is re-encoded only to be decoded again: its
/// meaning is needed here, not its exact bytes.
fn decode_attribute<T: der::DecodeOwned>(value: &Any, name: &'static str) -> Result<T, CmsError> {
    let invalid = |error: der::Error| CmsError::InvalidAttribute { name, reason: error.to_string() };
    T::from_der(&value.to_der().map_err(invalid)?).map_err(invalid)
}

fn check_content_type_attribute(attributes: &SignedAttributes) -> Result<(), CmsError> {
    const NAME: &str = "content-type";
    let value = single_attribute_value(attributes, OID_CONTENT_TYPE, NAME)?;
    let content_type: ObjectIdentifier = decode_attribute(value, NAME)?;
    if content_type != OID_DATA {
        return Err(CmsError::ContentTypeMismatch);
    }
    Ok(())
}

fn check_message_digest_attribute(
    attributes: &SignedAttributes,
    digest_algorithm: &'static digest::Algorithm,
    content: &[u8],
) -> Result<(), CmsError> {
    const NAME: &str = "message-digest";
    let value = single_attribute_value(attributes, OID_MESSAGE_DIGEST, NAME)?;
    let claimed: OctetString = decode_attribute(value, NAME)?;
    let actual = digest::digest(digest_algorithm, content);
    if claimed.as_bytes() != actual.as_ref() {
        return Err(CmsError::DigestMismatch);
    }
    Ok(())
}

fn check_signing_certificate_attribute(
    attributes: &SignedAttributes,
    signer_cert_der: &[u8],
    signer_id: &IssuerAndSerialNumber,
) -> Result<(), CmsError> {
    const NAME: &str = "signing-certificate-v2";
    let value = single_attribute_value(attributes, OID_SIGNING_CERTIFICATE_V2, NAME)?;
    let signing_certificate: SigningCertificateV2 = decode_attribute(value, NAME)?;
    // The first ESSCertIDv2 names the signer's own certificate (RFC 5035 section 5.4.1).
    let first = signing_certificate.certs.first().ok_or(CmsError::InvalidAttribute {
        name: NAME,
        reason: "it lists no certificate".to_string(),
    })?;
    let hash_algorithm = match &first.hash_algorithm {
        None => &digest::SHA256,
        Some(identifier) if identifier.oid == OID_SHA_256 => &digest::SHA256,
        Some(identifier) if identifier.oid == OID_SHA_384 => &digest::SHA384,
        Some(identifier) if identifier.oid == OID_SHA_512 => &digest::SHA512,
        Some(identifier) => {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signing-certificate-v2 hash algorithm {}",
                identifier.oid
            )))
        }
    };
    if first.cert_hash.as_bytes() != digest::digest(hash_algorithm, signer_cert_der).as_ref() {
        return Err(CmsError::EssCertificateMismatch);
    }
    if let Some(issuer_serial) = &first.issuer_serial {
        let issuer_matches = issuer_serial
            .issuer
            .iter()
            .any(|name| matches!(name, GeneralName::DirectoryName(name) if *name == signer_id.issuer));
        if !issuer_matches || issuer_serial.serial_number != signer_id.serial_number {
            return Err(CmsError::EssCertificateMismatch);
        }
    }
    Ok(())
}

fn signing_time_attribute(attributes: &SignedAttributes) -> Result<i64, CmsError> {
    const NAME: &str = "signing-time";
    let value = single_attribute_value(attributes, OID_SIGNING_TIME, NAME)?;
    let time: Time = decode_attribute(value, NAME)?;
    i64::try_from(time.to_unix_duration().as_secs())
        .map_err(|_| CmsError::InvalidAttribute { name: NAME, reason: "out of range".to_string() })
}

/// Byte ranges of the received encoding that must not be re-encoded.
struct RawParts<'a> {
    /// The SignerInfo's signedAttrs, whole, with its [0] tag.
    signed_attributes: Option<&'a [u8]>,
    /// Each embedded X.509 certificate (other certificate formats are skipped).
    certificates: Vec<&'a [u8]>,
}

/// One DER element.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    encoding: &'a [u8],
}

/// Reads one DER element off the front of `input`. Single-byte tags and definite lengths of
/// at most four bytes only, which is all CMS signatures of our size use.
fn next_tlv<'a>(input: &mut &'a [u8]) -> Result<Tlv<'a>, CmsError> {
    let truncated = || CmsError::Malformed("truncated DER element".to_string());
    let bytes: &'a [u8] = input;
    let (&tag, rest) = bytes.split_first().ok_or_else(truncated)?;
    if tag & 0x1F == 0x1F {
        return Err(CmsError::Malformed("multi-byte DER tags are not supported".to_string()));
    }
    let (&first_length_byte, rest) = rest.split_first().ok_or_else(truncated)?;
    let (length, rest) = match first_length_byte {
        short if short < 0x80 => (usize::from(short), rest),
        0x81..=0x84 => {
            let count = usize::from(first_length_byte & 0x7F);
            if rest.len() < count {
                return Err(truncated());
            }
            let (length_bytes, rest) = rest.split_at(count);
            let length = length_bytes.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, rest)
        }
        _ => return Err(CmsError::Malformed("unsupported DER length encoding".to_string())),
    };
    if rest.len() < length {
        return Err(truncated());
    }
    let header_length = bytes.len() - rest.len();
    let (encoding, remaining) = bytes.split_at(header_length + length);
    *input = remaining;
    Ok(Tlv { tag, contents: &encoding[header_length..], encoding })
}

fn expect_tlv<'a>(input: &mut &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, CmsError> {
    let element = next_tlv(input)?;
    if element.tag != tag {
        return Err(CmsError::Malformed(format!(
            "expected {what} (tag 0x{tag:02x}), found tag 0x{:02x}",
            element.tag
        )));
    }
    Ok(element)
}

/// Walks ContentInfo / SignedData / the first SignerInfo to find the exact received bytes
/// of the signed attributes and of each certificate. Called after the typed decode has
/// succeeded, so the structure is known to be well-formed DER.
fn raw_parts(cms_der: &[u8]) -> Result<RawParts<'_>, CmsError> {
    let mut input = cms_der;
    let content_info = expect_tlv(&mut input, TAG_SEQUENCE, "ContentInfo")?;
    let mut content_info_fields = content_info.contents;
    expect_tlv(&mut content_info_fields, TAG_OID, "contentType")?;
    let explicit_content = expect_tlv(&mut content_info_fields, TAG_CONTEXT_0, "content")?;
    let mut explicit_contents = explicit_content.contents;
    let signed_data = expect_tlv(&mut explicit_contents, TAG_SEQUENCE, "SignedData")?;

    let mut fields = signed_data.contents;
    expect_tlv(&mut fields, TAG_INTEGER, "SignedData.version")?;
    expect_tlv(&mut fields, TAG_SET, "digestAlgorithms")?;
    expect_tlv(&mut fields, TAG_SEQUENCE, "encapContentInfo")?;
    let mut certificates = Vec::new();
    let mut next = next_tlv(&mut fields)?;
    if next.tag == TAG_CONTEXT_0 {
        let mut choices = next.contents;
        while !choices.is_empty() {
            let choice = next_tlv(&mut choices)?;
            if choice.tag == TAG_SEQUENCE {
                certificates.push(choice.encoding);
            }
        }
        next = next_tlv(&mut fields)?;
    }
    if next.tag == TAG_CONTEXT_1 {
        next = next_tlv(&mut fields)?;
    }
    if next.tag != TAG_SET {
        return Err(CmsError::Malformed("expected signerInfos".to_string()));
    }
    let mut signer_infos = next.contents;
    let signer_info = expect_tlv(&mut signer_infos, TAG_SEQUENCE, "SignerInfo")?;
    let mut signer_fields = signer_info.contents;
    expect_tlv(&mut signer_fields, TAG_INTEGER, "SignerInfo.version")?;
    next_tlv(&mut signer_fields)?; // sid
    expect_tlv(&mut signer_fields, TAG_SEQUENCE, "digestAlgorithm")?;
    let candidate = next_tlv(&mut signer_fields)?;
    let signed_attributes = (candidate.tag == TAG_CONTEXT_0).then_some(candidate.encoding);
    Ok(RawParts { signed_attributes, certificates })
}
