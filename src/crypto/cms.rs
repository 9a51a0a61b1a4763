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
    CertificateSet, EncapsulatedContentInfo, SignedAttributes, SignedData, SignerIdentifier,
    SignerInfo, SignerInfos,
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
/// id-ct-TSTInfo (RFC 3161): the content type of a timestamp token (not in const-oid 0.9).
pub const OID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// id-aa-signatureTimeStampToken (RFC 3161 appendix A): the unsigned attribute holding a
/// timestamp token over the SignerInfo's SignatureValue.
pub const OID_SIGNATURE_TIME_STAMP_TOKEN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    const_oid::db::rfc5911::ID_AA_SIGNING_CERTIFICATE_V_2;
const OID_SHA_256: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;
const OID_SHA_384: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_384;
const OID_SHA_512: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_512;
const OID_RSA_ENCRYPTION: ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
const OID_SHA_256_WITH_RSA: ObjectIdentifier = const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION;
const OID_ECDSA_WITH_SHA_256: ObjectIdentifier = const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
const OID_ED25519: ObjectIdentifier = const_oid::db::rfc8410::ID_ED_25519;
const OID_RSASSA_PSS: ObjectIdentifier = const_oid::db::rfc5912::ID_RSASSA_PSS;
/// RSASSA-PSS-params (RFC 4055): hashAlgorithm sha-256, maskGenAlgorithm mgf1 with sha-256,
/// saltLength 32, trailerField default — the one PSS profile kyso makes and accepts.
const RSASSA_PSS_SHA256_PARAMETERS: [u8; 54] = [
    0x30, 0x34, // SEQUENCE
    0xA0, 0x0F, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, // [0] sha-256
    0xA1, 0x1C, 0x30, 0x1A, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08, // [1] mgf1
    0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, //     with sha-256
    0xA2, 0x03, 0x02, 0x01, 0x20, // [2] saltLength 32
];

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
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
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
    /// [`Covered::Sha256`] given for a signer whose digest is not SHA-256 (Ed25519): the
    /// caller must pass the content itself.
    #[error("this signer's digest is not SHA-256: sign and verify over the content")]
    DigestNotSha256,
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
    /// genTime of the signature-time-stamp token (CAdES-T), unix seconds, when it carries
    /// one; its imprint was checked against the SignatureValue, not the TSA's signature or
    /// trust.
    pub timestamp_unix: Option<i64>,
    /// The time stamp's authority certificate first, then the token's other embedded
    /// certificates (empty without a time stamp): what a caller validates to trust it.
    pub timestamp_chain_der: Vec<Vec<u8>>,
}

impl VerifiedCms {
    /// The signer's certificate first, then the other embedded certificates: the shape
    /// `cert::validate_chain` takes.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        let mut chain = vec![self.signer_cert_der.clone()];
        chain.extend(
            self.certificates_der
                .iter()
                .filter(|der| **der != self.signer_cert_der)
                .cloned(),
        );
        chain
    }
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
    sign_detached_parts(&[content], signing_time_unix, signer_chain_der, key, RsaPadding::Pkcs1v15)
}

/// How an RSA key signs; other keys ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    /// sha256WithRSAEncryption: the detached CMS kyso keeps beside a scan (what openssl
    /// and every archive verifier expect).
    Pkcs1v15,
    /// id-RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32): the signatures of certified PDFs.
    Pss,
}

/// [`sign_detached`] over content given as consecutive parts: a PDF signature covers the
/// file except its /Contents hole, two byte ranges that are never copied together.
pub fn sign_detached_parts(
    content_parts: &[&[u8]],
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    key: &SigningKey,
    rsa_padding: RsaPadding,
) -> Result<Vec<u8>, CmsError> {
    sign_detached_covered(Covered::Parts(content_parts), signing_time_unix, signer_chain_der, key, rsa_padding)
}

/// [`sign_detached`] over what `covered` names (see [`Covered`]).
pub fn sign_detached_covered(
    covered: Covered<'_>,
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    key: &SigningKey,
    rsa_padding: RsaPadding,
) -> Result<Vec<u8>, CmsError> {
    let content = SignedContent { content_type: OID_DATA, encapsulated: None, covered };
    sign_signed_data(&content, signing_time_unix, signer_chain_der, key, rsa_padding, true)
}

/// An RFC 3161 TimeStampToken: `tst_info_der` encapsulated with content type id-ct-TSTInfo
/// (SignedData version 3), signed with the same four attributes as a document signature
/// (signing-time = `gen_time_unix`, signing-certificate-v2 naming the TSA certificate, which
/// RFC 3161 section 2.4.1 requires). The chain is embedded only when `embed_certificates`
/// (the request's certReq).
pub fn sign_timestamp_token(
    tst_info_der: &[u8],
    gen_time_unix: i64,
    tsa_chain_der: &[Vec<u8>],
    key: &SigningKey,
    embed_certificates: bool,
) -> Result<Vec<u8>, CmsError> {
    let content = SignedContent { content_type: OID_CT_TST_INFO, encapsulated: Some(tst_info_der), covered: Covered::Parts(&[tst_info_der]) };
    sign_signed_data(&content, gen_time_unix, tsa_chain_der, key, RsaPadding::Pkcs1v15, embed_certificates)
}

/// What a SignedData signs: its content type, the content when it is encapsulated, and
/// the bytes digested (the content itself, possibly in parts).
struct SignedContent<'a> {
    content_type: ObjectIdentifier,
    encapsulated: Option<&'a [u8]>,
    covered: Covered<'a>,
}

/// What a detached signature covers: the content's bytes (in consecutive parts), or its
/// SHA-256 when the caller already holds it checked (a content-addressed blob whose hash
/// was verified as it was read), so that the content is not hashed again. A SHA-256 serves
/// only signers whose digest is SHA-256 (ECDSA P-256 and RSA; not Ed25519).
#[derive(Clone, Copy, Debug)]
pub enum Covered<'a> {
    Parts(&'a [&'a [u8]]),
    Sha256(&'a [u8; 32]),
}

impl Covered<'_> {
    fn digest(self, algorithm: &'static digest::Algorithm) -> Result<Vec<u8>, CmsError> {
        match self {
            Covered::Parts(parts) => Ok(digest_parts(algorithm, parts).as_ref().to_vec()),
            Covered::Sha256(sha256) if algorithm == &digest::SHA256 => Ok(sha256.to_vec()),
            Covered::Sha256(_) => Err(CmsError::DigestNotSha256),
        }
    }
}

/// Whether a signature by a key of `algorithm` digests its content with SHA-256, so that
/// [`Covered::Sha256`] can stand for the content.
pub fn digests_with_sha256(algorithm: KeyAlgorithm) -> bool {
    suite(algorithm).digest == &digest::SHA256
}

fn sign_signed_data(
    content: &SignedContent<'_>,
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    key: &SigningKey,
    rsa_padding: RsaPadding,
    embed_certificates: bool,
) -> Result<Vec<u8>, CmsError> {
    let leaf_der = signer_chain_der.first().ok_or(CmsError::SignerChainEmpty)?;
    if !key.public_key_matches(leaf_der) {
        return Err(CmsError::KeyDoesNotMatchCertificate);
    }
    let unsigned = prepare_signed_data(content, signing_time_unix, signer_chain_der, key.algorithm(), rsa_padding, embed_certificates)?;
    let signed_bytes = unsigned.signed_attributes_der()?;
    let signature_value = if unsigned.pss { key.sign_pss(&signed_bytes)? } else { key.sign(&signed_bytes)? };
    unsigned.complete(signature_value)
}

/// A detached CMS whose signed attributes are fixed and whose signature value is made
/// elsewhere: by kyso's key store ([`sign_detached_parts`]) or by a signer's token, which
/// signs [`UnsignedCms::signed_attributes_der`] (a PKCS#11 `CKM_ECDSA` over their SHA-256,
/// or `CKM_SHA256_RSA_PKCS` over them). [`UnsignedCms::complete`] assembles the CMS.
///
/// The caller of `complete` with a value from outside MUST verify the result
/// ([`verify_detached_parts`]) before trusting it: `complete` does not check the value.
#[derive(Debug, Clone)]
pub struct UnsignedCms {
    content_type: ObjectIdentifier,
    encapsulated: Option<Vec<u8>>,
    /// The chain, leaf first, never empty.
    certificates: Vec<Certificate>,
    signed_attributes: SignedAttributes,
    algorithm: KeyAlgorithm,
    pss: bool,
    embed_certificates: bool,
}

impl UnsignedCms {
    /// The DER of the signed attributes with the SET OF tag (0x31): exactly the bytes the
    /// signature covers (RFC 5652 section 5.4).
    pub fn signed_attributes_der(&self) -> Result<Vec<u8>, CmsError> {
        // Inside SignerInfo the same bytes carry the [0] IMPLICIT tag instead.
        self.signed_attributes.to_der().map_err(encoding)
    }

    /// The algorithm of the leaf's key: what must make the signature value.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The CMS `ContentInfo` (DER) with `signature_value`: for ECDSA a DER
    /// ECDSA-Sig-Value, for RSA the PKCS#1 v1.5 (or, as prepared, PSS) signature.
    pub fn complete(self, signature_value: Vec<u8>) -> Result<Vec<u8>, CmsError> {
        let suite = suite(self.algorithm);
        let signature_algorithm = if self.pss {
            AlgorithmIdentifierOwned { oid: OID_RSASSA_PSS, parameters: Some(Any::from_der(&RSASSA_PSS_SHA256_PARAMETERS).map_err(encoding)?) }
        } else {
            algorithm_identifier(suite.signature_oid, suite.signature_parameters_null)
        };
        let leaf = &self.certificates[0];
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: leaf.tbs_certificate.issuer.clone(),
                serial_number: leaf.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: algorithm_identifier(suite.digest_oid, false),
            signed_attrs: Some(self.signed_attributes),
            signature_algorithm,
            signature: OctetString::new(signature_value).map_err(encoding)?,
            unsigned_attrs: None,
        };
        let certificate_set = CertificateSet::try_from(
            self.certificates
                .into_iter()
                .map(CertificateChoices::Certificate)
                .collect::<Vec<_>>(),
        )
        .map_err(|error| {
            CertError::Malformed(format!("the chain holds a certificate twice: {error}"))
        })?;
        let econtent = match &self.encapsulated {
            Some(bytes) => Some(Any::encode_from(&OctetString::new(bytes.as_slice()).map_err(encoding)?).map_err(encoding)?),
            None => None,
        };
        let signed_data = SignedData {
            // RFC 5652 section 5.1: version 3 when the content is not id-data.
            version: if self.content_type == OID_DATA { CmsVersion::V1 } else { CmsVersion::V3 },
            digest_algorithms: set_of(vec![algorithm_identifier(suite.digest_oid, false)])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: self.content_type,
                econtent,
            },
            certificates: self.embed_certificates.then_some(certificate_set),
            crls: None,
            signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(encoding)?,
        };
        let content_info = ContentInfo {
            content_type: OID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).map_err(encoding)?,
        };
        content_info.to_der().map_err(encoding)
    }
}

/// The [`UnsignedCms`] of a detached signature over `content_parts` by the leaf of
/// `signer_chain_der` (leaf first, embedded whole), whose key is `algorithm`.
pub fn prepare_detached_parts(
    content_parts: &[&[u8]],
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    algorithm: KeyAlgorithm,
    rsa_padding: RsaPadding,
) -> Result<UnsignedCms, CmsError> {
    let content = SignedContent { content_type: OID_DATA, encapsulated: None, covered: Covered::Parts(content_parts) };
    prepare_signed_data(&content, signing_time_unix, signer_chain_der, algorithm, rsa_padding, true)
}

fn prepare_signed_data(
    content: &SignedContent<'_>,
    signing_time_unix: i64,
    signer_chain_der: &[Vec<u8>],
    algorithm: KeyAlgorithm,
    rsa_padding: RsaPadding,
    embed_certificates: bool,
) -> Result<UnsignedCms, CmsError> {
    let leaf_der = signer_chain_der.first().ok_or(CmsError::SignerChainEmpty)?;
    if signer_chain_der.len() > CHAIN_LENGTH_MAX {
        return Err(CertError::ChainTooLong {
            length: signer_chain_der.len(),
            limit: CHAIN_LENGTH_MAX,
        }
        .into());
    }
    let certificates = signer_chain_der
        .iter()
        .map(|der| {
            Certificate::from_der(der).map_err(|error| CertError::Malformed(error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let suite = suite(algorithm);
    let content_digest = content.covered.digest(suite.digest)?;
    // One certificate per chain entry, and the chain has a first entry (`leaf_der`).
    let signed_attributes = signed_attributes(
        content.content_type,
        content_digest.as_ref(),
        signing_time_unix,
        leaf_der,
        &certificates[0],
    )?;
    Ok(UnsignedCms {
        content_type: content.content_type,
        encapsulated: content.encapsulated.map(<[u8]>::to_vec),
        certificates,
        signed_attributes,
        algorithm,
        pss: rsa_padding == RsaPadding::Pss && algorithm == KeyAlgorithm::Rsa,
        embed_certificates,
    })
}

/// The SignatureValue of the one signer of `cms_der`: what a signature-time-stamp covers.
pub fn signature_value(cms_der: &[u8]) -> Result<Vec<u8>, CmsError> {
    let (_, signed_data) = decode_signed_data(cms_der)?;
    Ok(single_signer(&signed_data)?.signature.as_bytes().to_vec())
}

/// Adds `token_der` (an RFC 3161 TimeStampToken over this CMS's SignatureValue) as the
/// unsigned attribute id-aa-signatureTimeStampToken: CAdES-T. Nothing signed changes; the
/// caller SHOULD verify the result (the SignedData is re-encoded, and the signed
/// attributes and certificates re-encode to the same bytes only because kyso wrote them
/// in DER order).
pub fn add_signature_timestamp(cms_der: &[u8], token_der: &[u8]) -> Result<Vec<u8>, CmsError> {
    let (_, mut signed_data) = decode_signed_data(cms_der)?;
    let mut signers = signed_data.signer_infos.0.into_vec();
    let [signer] = signers.as_mut_slice() else {
        return Err(CmsError::SignerCount { count: signers.len() });
    };
    let token = Any::from_der(token_der).map_err(malformed)?;
    signer.unsigned_attrs = Some(set_of(vec![attribute(OID_SIGNATURE_TIME_STAMP_TOKEN, token)?])?);
    signed_data.signer_infos = SignerInfos::try_from(signers).map_err(encoding)?;
    let content_info = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(encoding)?,
    };
    content_info.to_der().map_err(encoding)
}

/// The signature-time-stamp token of the one signer, if it carries one (DER, as embedded).
pub fn signature_timestamp_token(cms_der: &[u8]) -> Result<Option<Vec<u8>>, CmsError> {
    let (_, signed_data) = decode_signed_data(cms_der)?;
    timestamp_token_of(single_signer(&signed_data)?)
}

/// [`signature_timestamp_token`] of a signer already decoded: decoding a CMS is most of
/// what checking one costs, so each check decodes it once.
fn timestamp_token_of(signer: &SignerInfo) -> Result<Option<Vec<u8>>, CmsError> {
    let Some(attributes) = &signer.unsigned_attrs else {
        return Ok(None);
    };
    let mut tokens = attributes.iter().filter(|attribute| attribute.oid == OID_SIGNATURE_TIME_STAMP_TOKEN);
    let Some(attribute) = tokens.next() else {
        return Ok(None);
    };
    match attribute.values.as_slice() {
        [token] => Ok(Some(token.to_der().map_err(encoding)?)),
        values => Err(CmsError::InvalidAttribute {
            name: "signature-time-stamp",
            reason: format!("it has {} values, expected exactly one", values.len()),
        }),
    }
}

/// genTime (unix seconds) of the signature-time-stamp of `cms_der`'s one signer, when it
/// carries one whose imprint covers its SignatureValue; the TSA's signature and trust are
/// not checked. Needs no document: what verify answers report.
pub fn signature_timestamp_unix(cms_der: &[u8]) -> Result<Option<i64>, CmsError> {
    let (_, signed_data) = decode_signed_data(cms_der)?;
    let signer = single_signer(&signed_data)?;
    let Some(token) = timestamp_token_of(signer)? else {
        return Ok(None);
    };
    super::tsa::check_signature_token(&token, signer.signature.as_bytes())
        .map(|(gen_time_unix, _)| Some(gen_time_unix))
        .map_err(|error| CmsError::InvalidAttribute { name: "signature-time-stamp", reason: error.to_string() })
}

/// The DER of every certificate a CMS carries: those of its SignedData, then those of its
/// signature-time-stamp tokens. Pure decoding, no checks: what the state store keeps once
/// and refers to from each record (`state::packing`). Undecodable input gives none.
pub fn embedded_certificates(cms_der: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let Ok((_, signed_data)) = decode_signed_data(cms_der) else {
        return found;
    };
    collect_certificates(&signed_data, &mut found);
    for signer in signed_data.signer_infos.0.iter() {
        let Some(attributes) = &signer.unsigned_attrs else { continue };
        for attribute in attributes.iter().filter(|attribute| attribute.oid == OID_SIGNATURE_TIME_STAMP_TOKEN) {
            for token in attribute.values.iter() {
                let Ok(token_der) = token.to_der() else { continue };
                if let Ok((_, token_data)) = decode_signed_data(&token_der) {
                    collect_certificates(&token_data, &mut found);
                }
            }
        }
    }
    found
}

fn collect_certificates(signed_data: &SignedData, found: &mut Vec<Vec<u8>>) {
    let Some(certificates) = &signed_data.certificates else { return };
    for choice in certificates.0.iter() {
        if let CertificateChoices::Certificate(certificate) = choice {
            if let Ok(der) = certificate.to_der() {
                if !found.contains(&der) {
                    found.push(der);
                }
            }
        }
    }
}

/// The ContentInfo and its SignedData, size-checked.
pub(crate) fn decode_signed_data(cms_der: &[u8]) -> Result<(ContentInfo, SignedData), CmsError> {
    if cms_der.len() > CMS_SIZE_BYTES_MAX {
        return Err(CmsError::TooLarge {
            size_bytes: cms_der.len(),
            limit_bytes: CMS_SIZE_BYTES_MAX,
        });
    }
    let content_info = ContentInfo::from_der(cms_der).map_err(malformed)?;
    if content_info.content_type != OID_SIGNED_DATA {
        return Err(CmsError::NotSignedData {
            content_type: content_info.content_type.to_string(),
        });
    }
    let signed_data: SignedData = content_info.content.decode_as().map_err(malformed)?;
    Ok((content_info, signed_data))
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
    verify_detached_parts(cms_der, &[content])
}

/// [`verify_detached`] over content given as consecutive parts (see [`sign_detached_parts`]).
pub fn verify_detached_parts(cms_der: &[u8], content_parts: &[&[u8]]) -> Result<VerifiedCms, CmsError> {
    verify_detached_covered(cms_der, Covered::Parts(content_parts))
}

/// [`verify_detached`] over what `covered` names (see [`Covered`]).
pub fn verify_detached_covered(cms_der: &[u8], covered: Covered<'_>) -> Result<VerifiedCms, CmsError> {
    let (_, signed_data) = decode_signed_data(cms_der)?;
    check_encapsulated_content(&signed_data.encap_content_info)?;
    let signer = check_signer(cms_der, &signed_data, OID_DATA, covered)?;
    let signer_info = single_signer(&signed_data)?;
    let attributes = signer_info.signed_attrs.as_ref().ok_or(CmsError::SignedAttributesMissing)?;
    let signing_time_unix = signing_time_attribute(attributes)?;
    let (timestamp_unix, timestamp_chain_der) = match timestamp_token_of(signer_info)? {
        Some(token) => {
            let (gen_time_unix, verified) = super::tsa::check_signature_token(&token, signer_info.signature.as_bytes())
                .map_err(|error| CmsError::InvalidAttribute { name: "signature-time-stamp", reason: error.to_string() })?;
            (Some(gen_time_unix), verified.into_chain_der())
        }
        None => (None, Vec::new()),
    };
    Ok(VerifiedCms {
        timestamp_unix,
        timestamp_chain_der,
        signer_cert_der: signer.cert_der.to_vec(),
        certificates_der: signer.certificates.iter().map(|der| der.to_vec()).collect(),
        signing_time_unix,
        algorithm: signer.algorithm,
    })
}

/// A TimeStampToken whose signature checked out: the TSA certificate and every embedded
/// certificate (as received), and the encapsulated TSTInfo's DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub tsa_cert_der: Vec<u8>,
    pub certificates_der: Vec<Vec<u8>>,
    pub tst_info_der: Vec<u8>,
}

impl VerifiedToken {
    /// The TSA's certificate first, then the other embedded certificates: the shape
    /// `cert::validate_chain` takes. Moves the certificates, copies none: every stamped
    /// signature's check (certify's self-check included) builds it.
    pub fn into_chain_der(self) -> Vec<Vec<u8>> {
        let VerifiedToken { tsa_cert_der, certificates_der: mut chain, .. } = self;
        chain.retain(|der| *der != tsa_cert_der);
        chain.insert(0, tsa_cert_der);
        chain
    }
}

/// Checks an RFC 3161 TimeStampToken's own signature: eContent id-ct-TSTInfo, the
/// content-type and message-digest attributes over it, the signature by the embedded TSA
/// certificate (kyso's algorithm list), and ESS signing-certificate-v2 (RFC 5816) naming
/// that certificate. It does NOT decide whether the TSA is trusted or a TSA at all (see
/// `tsa::check_tsa_certificate`).
pub fn verify_timestamp_token(token_der: &[u8]) -> Result<VerifiedToken, CmsError> {
    let (_, signed_data) = decode_signed_data(token_der)?;
    let encapsulated = &signed_data.encap_content_info;
    if encapsulated.econtent_type != OID_CT_TST_INFO {
        return Err(CmsError::UnsupportedContentType { content_type: encapsulated.econtent_type.to_string() });
    }
    let econtent = encapsulated.econtent.as_ref().ok_or_else(|| CmsError::Malformed("the token encapsulates no TSTInfo".to_string()))?;
    let tst_info: OctetString = econtent.decode_as().map_err(malformed)?;
    let signer = check_signer(token_der, &signed_data, OID_CT_TST_INFO, Covered::Parts(&[tst_info.as_bytes()]))?;
    Ok(VerifiedToken {
        tsa_cert_der: signer.cert_der.to_vec(),
        certificates_der: signer.certificates.iter().map(|der| der.to_vec()).collect(),
        tst_info_der: tst_info.as_bytes().to_vec(),
    })
}

/// The one signer of a SignedData whose signature checked out.
struct CheckedSigner<'a> {
    cert_der: &'a [u8],
    certificates: Vec<&'a [u8]>,
    algorithm: KeyAlgorithm,
}

/// Checks the one SignerInfo of `signed_data` (decoded from `cms_der`): allowed
/// algorithms, the content-type attribute (`content_type`), the message-digest over
/// `content_parts`, the signature over the signed attributes as received, made by the
/// embedded certificate named by issuer and serial number, and ESS signing-certificate-v2.
fn check_signer<'a>(cms_der: &'a [u8], signed_data: &SignedData, content_type: ObjectIdentifier, covered: Covered<'_>) -> Result<CheckedSigner<'a>, CmsError> {
    let signer_info = single_signer(signed_data)?;
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
    check_algorithms(signed_data, signer_info, &suite, algorithm)?;

    let attributes = signer_info
        .signed_attrs
        .as_ref()
        .ok_or(CmsError::SignedAttributesMissing)?;
    let raw_attributes = raw
        .signed_attributes
        .ok_or(CmsError::SignedAttributesMissing)?;
    check_content_type_attribute(attributes, content_type)?;
    check_message_digest_attribute(attributes, suite.digest, covered)?;

    let suite = if is_rsa_pss(algorithm, &signer_info.signature_algorithm) {
        Suite { verification: &signature::RSA_PSS_2048_8192_SHA256, ..suite }
    } else {
        suite
    };
    check_signature_value(raw_attributes, signer_info, &signer_certificate, &suite)?;
    check_signing_certificate_attribute(attributes, signer_cert_der, signer_id)?;
    Ok(CheckedSigner { cert_der: signer_cert_der, certificates: raw.certificates, algorithm })
}

/// Verifies the signature over the signed attributes exactly as received.
fn check_signature_value(
    raw_attributes: &[u8],
    signer_info: &SignerInfo,
    signer_certificate: &x509_parser::certificate::X509Certificate<'_>,
    suite: &Suite,
) -> Result<(), CmsError> {
    let mut signed_bytes = raw_attributes.to_vec();
    // The [0] IMPLICIT tag becomes the SET OF tag; length and contents stay as received.
    // A DER element is at least two bytes long, so index 0 exists.
    signed_bytes[0] = TAG_SET;
    let public_key = signer_certificate
        .public_key()
        .subject_public_key
        .data
        .as_ref();
    signature::UnparsedPublicKey::new(suite.verification, public_key)
        .verify(&signed_bytes, signer_info.signature.as_bytes())
        .map_err(|_| CmsError::SignatureInvalid)
}

fn digest_parts(algorithm: &'static digest::Algorithm, parts: &[&[u8]]) -> digest::Digest {
    let mut context = digest::Context::new(algorithm);
    for part in parts {
        context.update(part);
    }
    context.finish()
}

fn malformed(error: der::Error) -> CmsError {
    CmsError::Malformed(error.to_string())
}

fn encoding(error: der::Error) -> CmsError {
    CmsError::Malformed(format!("encoding failed: {error}"))
}

fn algorithm_identifier(oid: ObjectIdentifier, null_parameters: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: null_parameters.then(|| Any::from(AnyRef::NULL)),
    }
}

fn set_of<T: der::DerOrd>(items: Vec<T>) -> Result<SetOfVec<T>, CmsError> {
    SetOfVec::try_from(items).map_err(encoding)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, CmsError> {
    Ok(Attribute {
        oid,
        values: set_of(vec![value])?,
    })
}

/// content-type, message-digest, signing-time and signing-certificate-v2, in DER SET order.
fn signed_attributes(
    content_type: ObjectIdentifier,
    content_digest: &[u8],
    signing_time_unix: i64,
    leaf_der: &[u8],
    leaf: &Certificate,
) -> Result<SignedAttributes, CmsError> {
    let content_type = Any::encode_from(&content_type).map_err(encoding)?;
    let message_digest =
        Any::encode_from(&OctetString::new(content_digest).map_err(encoding)?).map_err(encoding)?;
    let signing_time = Any::encode_from(&signing_time(signing_time_unix)?).map_err(encoding)?;
    let certificate_hash = digest::digest(&digest::SHA256, leaf_der);
    let signing_certificate = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(certificate_hash.as_ref()).map_err(encoding)?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(
                    leaf.tbs_certificate.issuer.clone(),
                )],
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
    let date_time = DateTime::from_unix_duration(std::time::Duration::from_secs(seconds))
        .map_err(|_| out_of_range())?;
    if date_time.year() <= UTC_TIME_YEAR_MAX {
        Ok(Time::UtcTime(
            UtcTime::from_date_time(date_time).map_err(|_| out_of_range())?,
        ))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(
            date_time,
        )))
    }
}

fn check_encapsulated_content(encapsulated: &EncapsulatedContentInfo) -> Result<(), CmsError> {
    if encapsulated.econtent_type != OID_DATA {
        return Err(CmsError::UnsupportedContentType {
            content_type: encapsulated.econtent_type.to_string(),
        });
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
        _ => Err(CmsError::SignerCount {
            count: signers.len(),
        }),
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
        Some(parameters) => {
            null_allowed && parameters.tag() == der::Tag::Null && parameters.value().is_empty()
        }
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
    if is_rsa_pss(algorithm, signature_algorithm) {
        return check_digest_listed(signed_data, digest_algorithm);
    }
    let rsa_encryption_accepted =
        algorithm == KeyAlgorithm::Rsa && signature_algorithm.oid == OID_RSA_ENCRYPTION;
    if !(signature_algorithm.oid == suite.signature_oid || rsa_encryption_accepted)
        || !parameters_ok(signature_algorithm, suite.signature_parameters_null)
    {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "signature algorithm {} with a {algorithm} signer; expected {}",
            signature_algorithm.oid, suite.signature_oid
        )));
    }
    check_digest_listed(signed_data, digest_algorithm)
}

fn check_digest_listed(signed_data: &SignedData, digest_algorithm: &AlgorithmIdentifierOwned) -> Result<(), CmsError> {
    if !signed_data
        .digest_algorithms
        .iter()
        .any(|listed| listed.oid == digest_algorithm.oid)
    {
        return Err(CmsError::Malformed(
            "the signer's digest algorithm is missing from SignedData.digestAlgorithms".to_string(),
        ));
    }
    Ok(())
}

/// An RSA signer's id-RSASSA-PSS with exactly kyso's parameters (SHA-256, MGF1, salt 32).
fn is_rsa_pss(algorithm: KeyAlgorithm, signature_algorithm: &AlgorithmIdentifierOwned) -> bool {
    algorithm == KeyAlgorithm::Rsa
        && signature_algorithm.oid == OID_RSASSA_PSS
        && signature_algorithm.parameters.as_ref().and_then(|parameters| parameters.to_der().ok()).as_deref()
            == Some(&RSASSA_PSS_SHA256_PARAMETERS[..])
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
        return Err(CmsError::InvalidAttribute {
            name,
            reason: "it appears more than once".to_string(),
        });
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
    let invalid = |error: der::Error| CmsError::InvalidAttribute {
        name,
        reason: error.to_string(),
    };
    T::from_der(&value.to_der().map_err(invalid)?).map_err(invalid)
}

fn check_content_type_attribute(attributes: &SignedAttributes, expected: ObjectIdentifier) -> Result<(), CmsError> {
    const NAME: &str = "content-type";
    let value = single_attribute_value(attributes, OID_CONTENT_TYPE, NAME)?;
    let content_type: ObjectIdentifier = decode_attribute(value, NAME)?;
    if content_type != expected {
        return Err(CmsError::ContentTypeMismatch);
    }
    Ok(())
}

fn check_message_digest_attribute(
    attributes: &SignedAttributes,
    digest_algorithm: &'static digest::Algorithm,
    covered: Covered<'_>,
) -> Result<(), CmsError> {
    const NAME: &str = "message-digest";
    let value = single_attribute_value(attributes, OID_MESSAGE_DIGEST, NAME)?;
    let claimed: OctetString = decode_attribute(value, NAME)?;
    let actual = covered.digest(digest_algorithm)?;
    if claimed.as_bytes() != actual.as_slice() {
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
    let first = signing_certificate
        .certs
        .first()
        .ok_or(CmsError::InvalidAttribute {
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
        let issuer_matches = issuer_serial.issuer.iter().any(
            |name| matches!(name, GeneralName::DirectoryName(name) if *name == signer_id.issuer),
        );
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
    i64::try_from(time.to_unix_duration().as_secs()).map_err(|_| CmsError::InvalidAttribute {
        name: NAME,
        reason: "out of range".to_string(),
    })
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
        return Err(CmsError::Malformed(
            "multi-byte DER tags are not supported".to_string(),
        ));
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
            let length = length_bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, rest)
        }
        _ => {
            return Err(CmsError::Malformed(
                "unsupported DER length encoding".to_string(),
            ))
        }
    };
    if rest.len() < length {
        return Err(truncated());
    }
    let header_length = bytes.len() - rest.len();
    let (encoding, remaining) = bytes.split_at(header_length + length);
    *input = remaining;
    Ok(Tlv {
        tag,
        contents: &encoding[header_length..],
        encoding,
    })
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
    Ok(RawParts {
        signed_attributes,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::{validate_chain, TrustAnchors};
    use crate::crypto::testutil::{
        openssl, openssl_ok, path_text, test_chain, TestChain, NOW_UNIX,
    };

    const DOCUMENT: &[u8] = b"%PDF-1.7\nan agreement between two parties\n";
    const ALGORITHMS: [KeyAlgorithm; 3] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa,
        KeyAlgorithm::Ed25519,
    ];

    fn sign(chain: &TestChain, content: &[u8], signing_time_unix: i64) -> Vec<u8> {
        let key = chain.leaf.signing_key().expect("leaf key");
        sign_detached(content, signing_time_unix, &chain.chain_der(), &key).expect("sign")
    }

    fn signer_info_of(cms_der: &[u8]) -> (SignedData, SignerInfo) {
        let content_info = ContentInfo::from_der(cms_der).expect("content info");
        let signed_data: SignedData = content_info.content.decode_as().expect("signed data");
        let signer_info = signed_data.signer_infos.0.as_slice()[0].clone();
        (signed_data, signer_info)
    }

    fn reencode(content_info_content: &SignedData) -> Vec<u8> {
        ContentInfo {
            content_type: OID_SIGNED_DATA,
            content: Any::encode_from(content_info_content).expect("encode"),
        }
        .to_der()
        .expect("encode")
    }

    /// What a token does: sign the prepared attributes elsewhere, hand the value back.
    #[test]
    fn a_signature_value_made_elsewhere_completes_a_cms_that_verifies_and_a_wrong_one_does_not() {
        let parts: [&[u8]; 2] = [b"%PDF-1.7 before the hole", b" after the hole %%EOF"];
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa] {
            let chain = test_chain(algorithm);
            let unsigned = prepare_detached_parts(&parts, NOW_UNIX, &chain.chain_der(), algorithm, RsaPadding::Pkcs1v15).expect("prepare");
            let attributes = unsigned.signed_attributes_der().expect("attributes");
            assert_eq!(attributes[0], TAG_SET, "the token signs the SET OF encoding");
            let value = chain.leaf.signing_key().expect("leaf key").sign(&attributes).expect("sign");
            let cms_der = unsigned.clone().complete(value).expect("complete");
            let verified = verify_detached_parts(&cms_der, &parts).expect("verifies");
            assert_eq!(verified.signing_time_unix, NOW_UNIX);
            assert_eq!(verified.signer_cert_der, chain.chain_der()[0]);

            let wrong = chain.root.signing_key().expect("another key").sign(&attributes).expect("sign");
            let forged = unsigned.complete(wrong).expect("complete");
            assert!(matches!(verify_detached_parts(&forged, &parts), Err(CmsError::SignatureInvalid)), "{algorithm:?}: another key's value must not verify");
        }
    }

    #[test]
    fn detached_signature_verifies_for_each_algorithm() {
        for algorithm in ALGORITHMS {
            let chain = test_chain(algorithm);
            let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
            let verified = verify_detached(&cms_der, DOCUMENT)
                .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            assert_eq!(verified.signer_cert_der, chain.leaf.cert_der, "{algorithm}");
            assert_eq!(verified.signing_time_unix, NOW_UNIX, "{algorithm}");
            assert_eq!(verified.algorithm, algorithm);
            let mut embedded = verified.certificates_der.clone();
            let mut expected = chain.chain_der();
            embedded.sort();
            expected.sort();
            assert_eq!(
                embedded, expected,
                "{algorithm}: the whole chain is embedded"
            );
            // What the caller does next: validate the embedded chain at the signing time.
            let anchors =
                TrustAnchors::from_der_list(vec![chain.root.cert_der.clone()]).expect("anchors");
            let validated =
                validate_chain(&verified.chain_der(), &anchors, verified.signing_time_unix)
                    .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            assert_eq!(validated.chain_der[0], chain.leaf.cert_der);
        }
    }

    /// Certify signs from the blob's checked SHA-256: the CMS must be the one signing the
    /// bytes would give (same attributes; ECDSA values are random), checkable both ways,
    /// and its self-check must still refuse another key's signature value.
    #[test]
    fn signing_from_the_sha256_gives_a_cms_that_verifies_over_the_content_and_a_wrong_value_fails() {
        let sha256: [u8; 32] = digest::digest(&digest::SHA256, DOCUMENT).as_ref().try_into().expect("32 bytes");
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa] {
            assert!(digests_with_sha256(algorithm));
            let chain = test_chain(algorithm);
            let key = chain.leaf.signing_key().expect("leaf key");
            let from_digest = sign_detached_covered(Covered::Sha256(&sha256), NOW_UNIX, &chain.chain_der(), &key, RsaPadding::Pkcs1v15).expect("sign");
            let from_bytes = sign(&chain, DOCUMENT, NOW_UNIX);
            assert_eq!(signer_info_of(&from_digest).1.signed_attrs, signer_info_of(&from_bytes).1.signed_attrs, "{algorithm}: the same signed attributes");
            verify_detached(&from_digest, DOCUMENT).unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            verify_detached_covered(&from_bytes, Covered::Sha256(&sha256)).unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            let other: [u8; 32] = [7; 32];
            assert!(matches!(verify_detached_covered(&from_digest, Covered::Sha256(&other)), Err(CmsError::DigestMismatch)), "{algorithm}");

            let (mut signed_data, mut signer_info) = signer_info_of(&from_digest);
            let attributes = signer_info.signed_attrs.as_ref().expect("attributes").to_der().expect("der");
            let wrong = chain.root.signing_key().expect("another key").sign(&attributes).expect("sign");
            signer_info.signature = OctetString::new(wrong).expect("octets");
            signed_data.signer_infos = SignerInfos::try_from(vec![signer_info]).expect("set");
            let error = verify_detached_covered(&reencode(&signed_data), Covered::Sha256(&sha256)).expect_err("a faulty key's value");
            assert!(matches!(error, CmsError::SignatureInvalid), "{algorithm}: {error:?}");
        }
        assert!(!digests_with_sha256(KeyAlgorithm::Ed25519), "Ed25519 signs SHA-512 digests");
        let chain = test_chain(KeyAlgorithm::Ed25519);
        let key = chain.leaf.signing_key().expect("leaf key");
        assert!(matches!(sign_detached_covered(Covered::Sha256(&sha256), NOW_UNIX, &chain.chain_der(), &key, RsaPadding::Pkcs1v15), Err(CmsError::DigestNotSha256)));
        let over_bytes = sign(&chain, DOCUMENT, NOW_UNIX);
        assert!(matches!(verify_detached_covered(&over_bytes, Covered::Sha256(&sha256)), Err(CmsError::DigestNotSha256)), "verify says to pass the content");
    }

    #[test]
    fn one_changed_content_byte_fails_as_digest_mismatch() {
        for algorithm in ALGORITHMS {
            let chain = test_chain(algorithm);
            let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
            let mut changed = DOCUMENT.to_vec();
            changed[10] ^= 0x20;
            let error = verify_detached(&cms_der, &changed).expect_err("changed content");
            assert!(
                matches!(error, CmsError::DigestMismatch),
                "{algorithm}: {error:?}"
            );
        }
    }

    #[test]
    fn signature_moved_to_another_document_fails() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let signature_of_first = sign(&chain, b"first document", NOW_UNIX);
        assert!(verify_detached(&signature_of_first, b"first document").is_ok());
        let error = verify_detached(&signature_of_first, b"second document").expect_err("moved");
        assert!(matches!(error, CmsError::DigestMismatch), "{error:?}");
    }

    #[test]
    fn structure_and_algorithm_identifiers_follow_the_profile() {
        for algorithm in ALGORITHMS {
            let chain = test_chain(algorithm);
            let (signed_data, signer_info) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
            let (digest_oid, signature_oid, signature_parameters) = match algorithm {
                KeyAlgorithm::Rsa => (
                    OID_SHA_256,
                    OID_SHA_256_WITH_RSA,
                    Some(Any::from(AnyRef::NULL)),
                ),
                KeyAlgorithm::EcdsaP256 => (OID_SHA_256, OID_ECDSA_WITH_SHA_256, None),
                KeyAlgorithm::Ed25519 => (OID_SHA_512, OID_ED25519, None),
            };
            assert_eq!(signed_data.version, CmsVersion::V1);
            assert_eq!(signer_info.version, CmsVersion::V1);
            assert!(matches!(
                signer_info.sid,
                SignerIdentifier::IssuerAndSerialNumber(_)
            ));
            assert_eq!(
                signed_data.encap_content_info,
                EncapsulatedContentInfo {
                    econtent_type: OID_DATA,
                    econtent: None
                }
            );
            assert!(signed_data.crls.is_none());
            assert_eq!(
                signed_data.digest_algorithms.as_slice(),
                [AlgorithmIdentifierOwned {
                    oid: digest_oid,
                    parameters: None
                }]
            );
            assert_eq!(
                signer_info.digest_alg,
                AlgorithmIdentifierOwned {
                    oid: digest_oid,
                    parameters: None
                }
            );
            assert_eq!(
                signer_info.signature_algorithm,
                AlgorithmIdentifierOwned {
                    oid: signature_oid,
                    parameters: signature_parameters
                },
                "{algorithm}"
            );
            assert!(signer_info.unsigned_attrs.is_none());
        }
    }

    #[test]
    fn signed_attributes_are_the_four_cades_ones_in_der_order() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
        let raw = raw_parts(&cms_der).expect("raw parts");
        let mut attributes_bytes = next_tlv(&mut raw.signed_attributes.expect("present"))
            .expect("tlv")
            .contents;
        let mut encodings = Vec::new();
        while !attributes_bytes.is_empty() {
            encodings.push(next_tlv(&mut attributes_bytes).expect("attribute").encoding);
        }
        let mut sorted = encodings.clone();
        sorted.sort();
        assert_eq!(encodings, sorted, "SET OF in DER order");
        let mut oids: Vec<ObjectIdentifier> = encodings
            .iter()
            .map(|encoding| Attribute::from_der(encoding).expect("attribute").oid)
            .collect();
        oids.sort();
        let mut expected = vec![
            OID_CONTENT_TYPE,
            OID_MESSAGE_DIGEST,
            OID_SIGNING_TIME,
            OID_SIGNING_CERTIFICATE_V2,
        ];
        expected.sort();
        assert_eq!(oids, expected);

        let (_, signer_info) = signer_info_of(&cms_der);
        let attributes = signer_info.signed_attrs.expect("signed attributes");
        let ess: SigningCertificateV2 = decode_attribute(
            single_attribute_value(&attributes, OID_SIGNING_CERTIFICATE_V2, "ess").expect("ess"),
            "ess",
        )
        .expect("decodes");
        assert_eq!(ess.certs.len(), 1);
        assert!(
            ess.certs[0].hash_algorithm.is_none(),
            "SHA-256 is the DEFAULT and must be left out"
        );
        assert_eq!(
            ess.certs[0].cert_hash.as_bytes(),
            digest::digest(&digest::SHA256, &chain.leaf.cert_der).as_ref()
        );
        assert!(ess.certs[0].issuer_serial.is_some());
        let message_digest: OctetString = decode_attribute(
            single_attribute_value(&attributes, OID_MESSAGE_DIGEST, "md").expect("md"),
            "md",
        )
        .expect("md");
        assert_eq!(
            message_digest.as_bytes(),
            digest::digest(&digest::SHA256, DOCUMENT).as_ref()
        );
    }

    /// The encoded signing-time value (tag, length, contents) in a signature.
    fn signing_time_encoding(cms_der: &[u8]) -> Vec<u8> {
        let (_, signer_info) = signer_info_of(cms_der);
        let attributes = signer_info.signed_attrs.expect("signed attributes");
        single_attribute_value(&attributes, OID_SIGNING_TIME, "signing-time")
            .expect("present")
            .to_der()
            .expect("der")
    }

    #[test]
    fn signing_time_is_utc_time_through_2049_and_generalized_time_after() {
        let chain = test_chain(KeyAlgorithm::Ed25519);
        let last_utc_second = 2_524_607_999; // 2049-12-31T23:59:59Z
        let cms_der = sign(&chain, DOCUMENT, last_utc_second);
        assert_eq!(
            signing_time_encoding(&cms_der),
            [&[0x17, 13][..], b"491231235959Z"].concat()
        );
        assert_eq!(
            verify_detached(&cms_der, DOCUMENT)
                .expect("verifies")
                .signing_time_unix,
            last_utc_second
        );

        let cms_der = sign(&chain, DOCUMENT, last_utc_second + 1);
        assert_eq!(
            signing_time_encoding(&cms_der),
            [&[0x18, 15][..], b"20500101000000Z"].concat()
        );
        assert_eq!(
            verify_detached(&cms_der, DOCUMENT)
                .expect("verifies")
                .signing_time_unix,
            last_utc_second + 1
        );

        let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
        assert_eq!(
            signing_time_encoding(&cms_der),
            [&[0x17, 13][..], b"260101000000Z"].concat()
        );
    }

    #[test]
    fn signing_time_before_1970_is_refused() {
        let chain = test_chain(KeyAlgorithm::Ed25519);
        let key = chain.leaf.signing_key().expect("key");
        let error = sign_detached(DOCUMENT, -1, &chain.chain_der(), &key).expect_err("before 1970");
        assert!(
            matches!(error, CmsError::SigningTimeOutOfRange { unix: -1 }),
            "{error:?}"
        );
    }

    #[test]
    fn signing_is_deterministic_apart_from_the_signature_value() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa] {
            let chain = test_chain(algorithm);
            assert_eq!(
                sign(&chain, DOCUMENT, NOW_UNIX),
                sign(&chain, DOCUMENT, NOW_UNIX),
                "{algorithm}"
            );
        }
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let (first_data, mut first) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
        let (second_data, mut second) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
        assert_eq!(first_data.certificates, second_data.certificates);
        first.signature = OctetString::new(Vec::new()).expect("empty");
        second.signature = OctetString::new(Vec::new()).expect("empty");
        assert_eq!(first, second);
    }

    #[test]
    fn altered_signature_value_fails_as_signature_invalid() {
        for algorithm in ALGORITHMS {
            let chain = test_chain(algorithm);
            let (mut signed_data, mut signer_info) =
                signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
            let mut signature = signer_info.signature.as_bytes().to_vec();
            let middle = signature.len() / 2;
            signature[middle] ^= 0x01;
            signer_info.signature = OctetString::new(signature).expect("octets");
            signed_data.signer_infos = SignerInfos::try_from(vec![signer_info]).expect("set");
            let error = verify_detached(&reencode(&signed_data), DOCUMENT).expect_err("altered");
            assert!(
                matches!(error, CmsError::SignatureInvalid),
                "{algorithm}: {error:?}"
            );
        }
    }

    /// Offsets of the signed attributes and of the signature value's contents in `cms_der`.
    fn signed_attributes_and_signature_ranges(
        cms_der: &[u8],
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let offset = |slice: &[u8]| slice.as_ptr() as usize - cms_der.as_ptr() as usize;
        let raw = raw_parts(cms_der).expect("raw");
        let attributes = raw.signed_attributes.expect("present");
        let attributes_start = offset(attributes);
        let mut after = &cms_der[attributes_start + attributes.len()..];
        expect_tlv(&mut after, TAG_SEQUENCE, "signatureAlgorithm").expect("algorithm");
        let signature = expect_tlv(&mut after, 0x04, "signature").expect("signature");
        let signature_start = offset(signature.contents);
        (
            attributes_start..attributes_start + attributes.len(),
            signature_start..signature_start + signature.contents.len(),
        )
    }

    #[test]
    fn signed_attributes_are_verified_as_received_never_re_encoded() {
        // Ed25519 signatures have a fixed length, so a new one fits in place of the old.
        let chain = test_chain(KeyAlgorithm::Ed25519);
        let key = chain.leaf.signing_key().expect("key");
        let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
        let (attributes_range, signature_range) = signed_attributes_and_signature_ranges(&cms_der);

        // Reverse the attributes: the same SET, no longer in DER order.
        let mut attributes_field = &cms_der[attributes_range.clone()];
        let field = next_tlv(&mut attributes_field).expect("field");
        let header_length = field.encoding.len() - field.contents.len();
        let mut contents = field.contents;
        let mut elements = Vec::new();
        while !contents.is_empty() {
            elements.push(next_tlv(&mut contents).expect("attribute").encoding);
        }
        elements.reverse();
        let mut reordered = field.encoding[..header_length].to_vec();
        elements
            .iter()
            .for_each(|element| reordered.extend_from_slice(element));
        assert_ne!(&reordered[..], field.encoding);

        // Reordered attributes with the old signature: the bytes signed changed, so it fails.
        let mut tampered = cms_der.clone();
        tampered[attributes_range.clone()].copy_from_slice(&reordered);
        assert!(matches!(
            verify_detached(&tampered, DOCUMENT),
            Err(CmsError::SignatureInvalid)
        ));

        // Reordered attributes signed as they are: a verifier that re-sorted them before
        // checking (as der's decoder does) would reject this; the bytes as received verify.
        let mut to_sign = reordered.clone();
        to_sign[0] = TAG_SET;
        let signature = key.sign(&to_sign).expect("sign");
        tampered[signature_range].copy_from_slice(&signature);
        let verified =
            verify_detached(&tampered, DOCUMENT).expect("the received bytes are what was signed");
        assert_eq!(verified.signing_time_unix, NOW_UNIX);
    }

    #[test]
    fn signing_certificate_attribute_naming_another_certificate_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let (_, signer_info) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
        let attributes = signer_info.signed_attrs.expect("signed attributes");
        let SignerIdentifier::IssuerAndSerialNumber(signer_id) = &signer_info.sid else {
            panic!("issuer and serial")
        };
        assert!(
            check_signing_certificate_attribute(&attributes, &chain.leaf.cert_der, signer_id)
                .is_ok()
        );
        let other = chain.intermediate.as_ref().expect("intermediate");
        let error = check_signing_certificate_attribute(&attributes, &other.cert_der, signer_id)
            .expect_err("swapped");
        assert!(
            matches!(error, CmsError::EssCertificateMismatch),
            "{error:?}"
        );
    }

    #[test]
    fn signature_without_the_signer_certificate_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let (mut signed_data, _) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
        let intermediate =
            Certificate::from_der(&chain.intermediate.as_ref().expect("intermediate").cert_der)
                .expect("parse");
        signed_data.certificates = Some(
            CertificateSet::try_from(vec![CertificateChoices::Certificate(intermediate)])
                .expect("set"),
        );
        let error =
            verify_detached(&reencode(&signed_data), DOCUMENT).expect_err("no signer certificate");
        assert!(
            matches!(error, CmsError::SignerCertificateNotFound),
            "{error:?}"
        );
    }

    #[test]
    fn key_that_is_not_the_leaf_key_is_refused() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let root_key = chain.root.signing_key().expect("root key");
        let error = sign_detached(DOCUMENT, NOW_UNIX, &chain.chain_der(), &root_key)
            .expect_err("wrong key");
        assert!(
            matches!(error, CmsError::KeyDoesNotMatchCertificate),
            "{error:?}"
        );
        let error = sign_detached(DOCUMENT, NOW_UNIX, &[], &root_key).expect_err("no chain");
        assert!(matches!(error, CmsError::SignerChainEmpty), "{error:?}");
    }

    #[test]
    fn garbage_truncated_and_oversized_input_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let cms_der = sign(&chain, DOCUMENT, NOW_UNIX);
        for length in [0, 1, 10, cms_der.len() / 2, cms_der.len() - 1] {
            let error = verify_detached(&cms_der[..length], DOCUMENT).expect_err("truncated");
            assert!(
                matches!(error, CmsError::Malformed(_)),
                "truncated to {length}: {error:?}"
            );
        }
        assert!(matches!(
            verify_detached(b"not a signature at all", DOCUMENT),
            Err(CmsError::Malformed(_))
        ));
        let oversized = vec![0x30; CMS_SIZE_BYTES_MAX + 1];
        assert!(matches!(
            verify_detached(&oversized, DOCUMENT),
            Err(CmsError::TooLarge { .. })
        ));
    }

    #[test]
    fn content_info_of_another_type_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let (signed_data, _) = signer_info_of(&sign(&chain, DOCUMENT, NOW_UNIX));
        let other = ContentInfo {
            content_type: OID_DATA,
            content: Any::encode_from(&signed_data).expect("encode"),
        };
        let error = verify_detached(&other.to_der().expect("encode"), DOCUMENT)
            .expect_err("not signed data");
        assert!(matches!(error, CmsError::NotSignedData { .. }), "{error:?}");
    }

    /// Files for the openssl CLI: CA.pem (root only), DOC, SIG (DER), signer and key PEMs.
    struct OpensslFiles {
        directory: tempfile::TempDir,
    }

    impl OpensslFiles {
        fn new(chain: &TestChain) -> Self {
            let files = OpensslFiles {
                directory: tempfile::tempdir().expect("temporary directory"),
            };
            std::fs::write(files.path("CA.pem"), chain.root.cert_pem()).expect("write");
            std::fs::write(files.path("DOC"), DOCUMENT).expect("write");
            std::fs::write(files.path("signer.pem"), chain.leaf.cert_pem()).expect("write");
            std::fs::write(files.path("signer.key"), chain.leaf.key_pem().as_bytes())
                .expect("write");
            let intermediates: String = chain
                .intermediate
                .iter()
                .map(|certificate| certificate.cert_pem())
                .collect();
            std::fs::write(files.path("intermediates.pem"), intermediates).expect("write");
            files
        }

        fn path(&self, name: &str) -> String {
            path_text(&self.directory.path().join(name))
        }

        fn verify(&self, signature: &str, document: &str) -> std::process::Output {
            openssl(&[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                &self.path(signature),
                "-content",
                &self.path(document),
                "-CAfile",
                &self.path("CA.pem"),
                "-purpose",
                "any",
                "-cades",
                "-out",
                "/dev/null",
            ])
        }
    }

    fn assert_openssl_verifies_our_signature(algorithm: KeyAlgorithm) {
        let chain = test_chain(algorithm);
        let files = OpensslFiles::new(&chain);
        std::fs::write(files.path("SIG"), sign(&chain, DOCUMENT, NOW_UNIX)).expect("write");

        let output = files.verify("SIG", "DOC");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{algorithm}: openssl rejected our signature: {stderr}"
        );
        assert!(
            stderr.contains("Verification successful"),
            "{algorithm}: {stderr}"
        );

        let mut flipped = DOCUMENT.to_vec();
        flipped[0] ^= 0x01;
        std::fs::write(files.path("FLIPPED"), flipped).expect("write");
        let output = files.verify("SIG", "FLIPPED");
        assert!(
            !output.status.success(),
            "{algorithm}: openssl accepted a changed document"
        );

        let printed = openssl_ok(&[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            &files.path("SIG"),
        ]);
        let printed = String::from_utf8_lossy(&printed.stdout);
        let start = printed
            .find("signedAttrs:")
            .expect("openssl prints signedAttrs");
        let end = start
            + printed[start..]
                .find("signatureAlgorithm:")
                .expect("and signatureAlgorithm");
        let signed_attributes = &printed[start..end];
        let objects: Vec<&str> = signed_attributes
            .lines()
            .filter_map(|line| line.trim().strip_prefix("object: "))
            .collect();
        assert_eq!(
            objects,
            [
                "contentType (1.2.840.113549.1.9.3)",
                "signingTime (1.2.840.113549.1.9.5)",
                "messageDigest (1.2.840.113549.1.9.4)",
                "id-smime-aa-signingCertificateV2 (1.2.840.113549.1.9.16.2.47)",
            ],
            "{algorithm}: four signed attributes in DER order:\n{signed_attributes}"
        );
        for expected in [
            "OBJECT:pkcs7-data (1.2.840.113549.1.7.1)".to_string(),
            "UTCTIME:Jan  1 00:00:00 2026 GMT".to_string(),
            // The ESS certHash comes first: no hashAlgorithm, so SHA-256.
            format!(
                "OCTET STRING      [HEX DUMP]:{}",
                hex::encode_upper(digest::digest(&digest::SHA256, &chain.leaf.cert_der))
            ),
        ] {
            assert!(
                signed_attributes.contains(&expected),
                "{algorithm}: no {expected} in:\n{signed_attributes}"
            );
        }
    }

    #[test]
    fn openssl_verifies_our_ecdsa_p256_signature() {
        assert_openssl_verifies_our_signature(KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn openssl_verifies_our_rsa_signature() {
        assert_openssl_verifies_our_signature(KeyAlgorithm::Rsa);
    }

    #[test]
    fn signature_made_by_openssl_verifies() {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa] {
            let chain = test_chain(algorithm);
            let files = OpensslFiles::new(&chain);
            let (document, signer, key, output) = (
                files.path("DOC"),
                files.path("signer.pem"),
                files.path("signer.key"),
                files.path("OPENSSL_SIG"),
            );
            let intermediates = files.path("intermediates.pem");
            let mut args = vec![
                "cms", "-sign", "-binary", "-in", &document, "-signer", &signer, "-inkey", &key,
                "-md", "sha256", "-cades", "-outform", "DER", "-out", &output,
            ];
            if chain.intermediate.is_some() {
                args.extend(["-certfile", &intermediates]);
            }
            openssl_ok(&args);
            let cms_der = std::fs::read(files.path("OPENSSL_SIG")).expect("read");
            let verified = verify_detached(&cms_der, DOCUMENT)
                .unwrap_or_else(|error| panic!("{algorithm}: {error}"));
            assert_eq!(verified.signer_cert_der, chain.leaf.cert_der);
            assert_eq!(verified.algorithm, algorithm);
            assert!(matches!(
                verify_detached(&cms_der, b"other"),
                Err(CmsError::DigestMismatch)
            ));
        }
    }

    #[test]
    fn signature_embedding_its_content_is_rejected() {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let files = OpensslFiles::new(&chain);
        openssl_ok(&[
            "cms",
            "-sign",
            "-nodetach",
            "-binary",
            "-in",
            &files.path("DOC"),
            "-signer",
            &files.path("signer.pem"),
            "-inkey",
            &files.path("signer.key"),
            "-outform",
            "DER",
            "-out",
            &files.path("ATTACHED"),
        ]);
        let cms_der = std::fs::read(files.path("ATTACHED")).expect("read");
        assert!(matches!(
            verify_detached(&cms_der, DOCUMENT),
            Err(CmsError::NotDetached)
        ));
    }

    #[test]
    fn signer_certificate_with_a_small_rsa_key_is_rejected() {
        // ring refuses to sign with such a key, so openssl makes the signature.
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| path_text(&directory.path().join(name));
        std::fs::write(path("DOC"), DOCUMENT).expect("write");
        openssl_ok(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            &path("small.key"),
            "-subj",
            "/CN=Small",
            "-days",
            "1",
            "-out",
            &path("small.pem"),
        ]);
        openssl_ok(&[
            "cms",
            "-sign",
            "-binary",
            "-in",
            &path("DOC"),
            "-signer",
            &path("small.pem"),
            "-inkey",
            &path("small.key"),
            "-md",
            "sha256",
            "-cades",
            "-outform",
            "DER",
            "-out",
            &path("SIG"),
        ]);
        let cms_der = std::fs::read(path("SIG")).expect("read");
        let error = verify_detached(&cms_der, DOCUMENT).expect_err("small key");
        assert!(
            matches!(
                error,
                CmsError::Cert(CertError::RsaKeyTooSmall { bits: 1024 })
            ),
            "{error:?}"
        );
    }
}
