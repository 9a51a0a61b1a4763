//! RFC 3161 time stamps: kyso's own time-stamping authority, and the client side used
//! when another TSA stamps kyso's signatures.
//!
//! The authority ([`TimeStampAuthority`]) answers a DER `TimeStampReq` with a granted
//! `TimeStampResp` whose token is a SignedData over a `TSTInfo` (x509-tsp types), signed
//! with the TSA key and carrying ESS signing-certificate-v2. The TSA certificate must have
//! extendedKeyUsage timeStamping only, marked critical (RFC 3161 section 2.3), which
//! [`check_tsa_certificate`] enforces before a node starts.
//!
//! Serial numbers are unique across a cluster without coordination: the TSA's node id in
//! the high 64 bits and 64 bits from the operating system's random generator in the low
//! 64 ([`serial_number`]). Two nodes never share an id; one node repeats a serial only if
//! its random generator repeats 64 bits: after 2^24 (16.7 million) tokens the chance of
//! any repeat is about 2^-17.
//!
//! Like the rest of `crypto`, it never reads the clock or the random generator itself: the
//! caller passes an [`Issue`] with genTime (the node's clock) and the random bits.

use der::asn1::{GeneralizedTime, Int, OctetString};
use der::oid::ObjectIdentifier;
use der::{Any, AnyRef, Decode as _, Encode as _};
use ring::digest;
use spki::AlgorithmIdentifier;
use x509_tsp::{Accuracy, MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use super::cert::{parse_certificate, CertError};
use super::cms::{self, CmsError, OID_CT_TST_INFO};
use super::keys::SigningKey;

/// The largest TimeStampReq accepted. A request is an imprint of at most 64 bytes, a
/// policy, a nonce and a flag: about 100 bytes; extensions are refused anyway.
pub const REQUEST_SIZE_BYTES_MAX: usize = 4 * 1024;
/// The largest TimeStampResp read from an external TSA.
pub const REPLY_SIZE_BYTES_MAX: usize = 64 * 1024;
/// The default TSA policy: under 1.3.6.1.4.1.32473, the enterprise number RFC 5612 sets
/// aside for documentation, so it names no real policy. Fine for `kyso dev` and tests; a
/// production TSA sets `[tsa] policy_oid` to the policy its PKI assigned. (The UUID arc
/// 2.25 would need no registration, but const-oid 0.9 holds only 32-bit arcs.)
pub const DEFAULT_POLICY_OID: &str = "1.3.6.1.4.1.32473.15.1";

const OID_SHA_256: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;
const OID_SHA_384: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_384;
const OID_SHA_512: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_512;

/// Why a time stamp could not be made, or a token or reply is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error("the time-stamp request is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("the time-stamp request is not a DER TimeStampReq (RFC 3161): {0}")]
    MalformedRequest(String),
    #[error("the message imprint uses hash algorithm {0}; use sha256, sha384 or sha512 (openssl ts -query -sha256)")]
    UnsupportedHash(String),
    #[error("the message imprint is {actual} bytes, but {algorithm} digests are {expected} bytes")]
    ImprintLength { algorithm: &'static str, actual: usize, expected: usize },
    #[error("the request asks for policy {requested}; this TSA issues only under policy {offered} (omit -tspolicy)")]
    UnacceptedPolicy { requested: String, offered: String },
    #[error("the request carries extensions, which this TSA does not support; send it without extensions")]
    UnacceptedExtension,
    #[error("the TSA certificate is not usable: {0}")]
    Certificate(String),
    #[error("the time-stamp reply is not acceptable: {0}")]
    BadReply(String),
    #[error("the time stamp's imprint covers other bytes than these")]
    ImprintMismatch,
    #[error("genTime {unix} is out of range")]
    TimeOutOfRange { unix: i64 },
    #[error(transparent)]
    Cms(#[from] CmsError),
}

/// The time and randomness of one token, fixed by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Issue {
    /// genTime: the node's clock, unix seconds.
    pub gen_time_unix: i64,
    /// The low 64 bits of the serial number.
    pub serial_random: u64,
}

/// A time-stamping authority: its certificate chain (TSA certificate first), key, policy,
/// stated accuracy and node id.
pub struct TimeStampAuthority {
    chain_der: Vec<Vec<u8>>,
    key: SigningKey,
    policy: ObjectIdentifier,
    accuracy_seconds: u64,
    node_id: u64,
}

impl std::fmt::Debug for TimeStampAuthority {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TimeStampAuthority").field("policy", &self.policy).field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl TimeStampAuthority {
    /// Checks that `key` belongs to the first certificate of `chain_der` and that the
    /// certificate is a TSA certificate ([`check_tsa_certificate`]).
    pub fn new(chain_der: Vec<Vec<u8>>, key: SigningKey, policy: &str, accuracy_seconds: u64, node_id: u64) -> Result<Self, TsaError> {
        let leaf = chain_der.first().ok_or_else(|| TsaError::Certificate("no certificate given".into()))?;
        check_tsa_certificate(leaf)?;
        if !key.public_key_matches(leaf) {
            return Err(TsaError::Certificate("the TSA key does not belong to the TSA certificate (the first of the chain)".into()));
        }
        let policy = parse_policy_oid(policy).map_err(TsaError::Certificate)?;
        Ok(TimeStampAuthority { chain_der, key, policy, accuracy_seconds, node_id })
    }

    /// The TSA certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.chain_der[0]
    }

    /// The chain, TSA certificate first.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    /// Answers a DER TimeStampReq with a granted DER TimeStampResp, or says precisely what
    /// is wrong with the request.
    pub fn respond(&self, request_der: &[u8], issue: Issue) -> Result<Vec<u8>, TsaError> {
        if request_der.len() > REQUEST_SIZE_BYTES_MAX {
            return Err(TsaError::TooLarge { size_bytes: request_der.len(), limit_bytes: REQUEST_SIZE_BYTES_MAX });
        }
        let request = TimeStampReq::from_der(request_der).map_err(|error| TsaError::MalformedRequest(error.to_string()))?;
        check_imprint(&request.message_imprint)?;
        if let Some(policy) = request.req_policy {
            if policy != self.policy {
                return Err(TsaError::UnacceptedPolicy { requested: policy.to_string(), offered: self.policy.to_string() });
            }
        }
        if request.extensions.as_ref().is_some_and(|extensions| !extensions.is_empty()) {
            return Err(TsaError::UnacceptedExtension);
        }
        let token = self.token(request.message_imprint, request.nonce, request.cert_req, issue)?;
        granted_reply(&token)
    }

    /// A TimeStampToken over SHA-256(`signature_value`), the certificates embedded: what a
    /// signature-time-stamp attribute holds.
    pub fn stamp_signature(&self, signature_value: &[u8], issue: Issue) -> Result<Vec<u8>, TsaError> {
        self.token(sha256_imprint(signature_value)?, None, true, issue)
    }

    fn token(&self, message_imprint: MessageImprint, nonce: Option<Int>, embed_certificates: bool, issue: Issue) -> Result<Vec<u8>, TsaError> {
        let out_of_range = || TsaError::TimeOutOfRange { unix: issue.gen_time_unix };
        let seconds = u64::try_from(issue.gen_time_unix).map_err(|_| out_of_range())?;
        let gen_time = GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(seconds)).map_err(|_| out_of_range())?;
        let tst_info = TstInfo {
            version: TspVersion::V1,
            policy: self.policy,
            message_imprint,
            serial_number: serial_number(self.node_id, issue.serial_random),
            gen_time,
            accuracy: Some(Accuracy { seconds: Some(self.accuracy_seconds), millis: None, micros: None }),
            ordering: false,
            nonce,
            tsa: None,
            extensions: None,
        };
        let tst_info_der = tst_info.to_der().map_err(|error| TsaError::Cms(CmsError::Malformed(error.to_string())))?;
        Ok(cms::sign_timestamp_token(&tst_info_der, issue.gen_time_unix, &self.chain_der, &self.key, embed_certificates)?)
    }
}

/// Parses a dotted OID such as `1.2.3.4`. Every arc must fit 32 bits: const-oid 0.9
/// overflows (and panics in debug builds) on larger ones, so they are refused first.
pub fn parse_policy_oid(text: &str) -> Result<ObjectIdentifier, String> {
    let arcs_ok = !text.is_empty() && text.split('.').all(|arc| !arc.is_empty() && arc.len() <= 10 && arc.bytes().all(|byte| byte.is_ascii_digit()) && arc.parse::<u32>().is_ok());
    if !arcs_ok {
        return Err(format!("{text:?} is not an OID of decimal arcs up to 4294967295 such as 1.2.3.4"));
    }
    ObjectIdentifier::new(text).map_err(|error| format!("{text:?} is not an OID: {error}"))
}

/// The serial number of a token: `node_id` in the high 64 bits, `random` in the low 64, as
/// a positive DER INTEGER (at most 17 bytes).
pub fn serial_number(node_id: u64, random: u64) -> Int {
    let value = (u128::from(node_id) << 64) | u128::from(random);
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|byte| *byte != 0).unwrap_or(bytes.len() - 1);
    let mut minimal = Vec::with_capacity(17);
    if bytes[first] & 0x80 != 0 {
        minimal.push(0);
    }
    minimal.extend_from_slice(&bytes[first..]);
    // At most 17 bytes with no leading 0xFF: always a valid INTEGER.
    Int::new(&minimal).expect("a 17-byte positive integer is valid")
}

/// Refuses a certificate that is not a TSA certificate: extendedKeyUsage must be present,
/// critical, and timeStamping only; keyUsage, if present, only digitalSignature and
/// nonRepudiation (what `openssl ts -verify` requires too).
pub fn check_tsa_certificate(cert_der: &[u8]) -> Result<(), TsaError> {
    let certificate = parse_certificate(cert_der).map_err(|error: CertError| TsaError::Certificate(error.to_string()))?;
    let extended = certificate
        .extended_key_usage()
        .map_err(|error| TsaError::Certificate(format!("its extendedKeyUsage does not parse: {error}")))?
        .ok_or_else(|| TsaError::Certificate("it has no extendedKeyUsage; a TSA certificate needs timeStamping, critical".into()))?;
    if !extended.critical {
        return Err(TsaError::Certificate("its extendedKeyUsage is not critical (RFC 3161 section 2.3)".into()));
    }
    let usage = extended.value;
    let others = usage.any || usage.server_auth || usage.client_auth || usage.code_signing || usage.email_protection || usage.ocsp_signing || !usage.other.is_empty();
    if !usage.time_stamping || others {
        return Err(TsaError::Certificate("its extendedKeyUsage must be timeStamping and nothing else".into()));
    }
    if let Ok(Some(key_usage)) = certificate.key_usage() {
        let key_usage = key_usage.value;
        if key_usage.key_cert_sign() || key_usage.crl_sign() || key_usage.key_encipherment() || key_usage.data_encipherment() || key_usage.key_agreement() {
            return Err(TsaError::Certificate("its keyUsage allows more than digitalSignature and nonRepudiation".into()));
        }
    }
    Ok(())
}

/// A request for a token over SHA-256(`signature_value`) with `nonce`, asking for the
/// TSA's certificate: what kyso sends to an external TSA.
pub fn request_for_signature(signature_value: &[u8], nonce: u64) -> Result<Vec<u8>, TsaError> {
    let request = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: sha256_imprint(signature_value)?,
        req_policy: None,
        nonce: Some(positive_int(nonce)),
        cert_req: true,
        extensions: None,
    };
    request.to_der().map_err(|error| TsaError::Cms(CmsError::Malformed(error.to_string())))
}

/// The token of an external TSA's reply to [`request_for_signature`]: the reply must be
/// granted and its token's TSTInfo must name the same imprint and nonce.
pub fn token_from_reply(reply_der: &[u8], signature_value: &[u8], nonce: u64) -> Result<Vec<u8>, TsaError> {
    let bad = |reason: String| TsaError::BadReply(reason);
    if reply_der.len() > REPLY_SIZE_BYTES_MAX {
        return Err(bad(format!("{} bytes, more than the limit of {REPLY_SIZE_BYTES_MAX}", reply_der.len())));
    }
    let reply = TimeStampResp::from_der(reply_der).map_err(|error| bad(format!("not a DER TimeStampResp: {error}")))?;
    use cmpv2::status::PkiStatus;
    if !matches!(reply.status.status, PkiStatus::Accepted | PkiStatus::GrantedWithMods) {
        let text = reply.status.status_string.iter().flatten().map(|text| text.as_str()).collect::<Vec<_>>().join("; ");
        return Err(bad(format!("the TSA refused: status {:?} {text}", reply.status.status)));
    }
    let token = reply.time_stamp_token.ok_or_else(|| bad("granted without a token".into()))?;
    let token_der = token.to_der().map_err(|error| bad(error.to_string()))?;
    check_signature_token(&token_der, signature_value)?;
    let info = token_info(&token_der)?;
    let imprint = &info.message_imprint;
    if imprint.hash_algorithm.oid != OID_SHA_256 || imprint.hashed_message.as_bytes() != digest::digest(&digest::SHA256, signature_value).as_ref() {
        return Err(bad("the token covers other data than the signature sent".into()));
    }
    if info.nonce != Some(positive_int(nonce)) {
        return Err(bad("the token's nonce differs from the request's (a replayed or misrouted reply)".into()));
    }
    Ok(token_der)
}

/// The TSTInfo inside a TimeStampToken (not its signature: see [`check_signature_token`]).
pub fn token_info(token_der: &[u8]) -> Result<TstInfo, TsaError> {
    let bad = |reason: String| TsaError::BadReply(reason);
    let (_, signed_data) = cms::decode_signed_data(token_der)?;
    if signed_data.encap_content_info.econtent_type != OID_CT_TST_INFO {
        return Err(bad(format!("the token's content is {}, not id-ct-TSTInfo", signed_data.encap_content_info.econtent_type)));
    }
    let econtent = signed_data.encap_content_info.econtent.ok_or_else(|| bad("the token has no TSTInfo".into()))?;
    let octets: OctetString = econtent.decode_as().map_err(|error| bad(format!("the token's content is not an OCTET STRING: {error}")))?;
    TstInfo::from_der(octets.as_bytes()).map_err(|error| bad(format!("the TSTInfo does not decode: {error}")))
}

/// Checks a signature-time-stamp token: its own signature by the embedded TSA certificate
/// (`cms::verify_timestamp_token`), that certificate being a TSA certificate, and its
/// imprint covering `signature_value` (with the algorithm the token names); returns its
/// genTime (unix seconds) and the token's check. It does NOT decide whether the TSA is
/// trusted: its chain is not validated against any anchor.
pub fn check_signature_token(token_der: &[u8], signature_value: &[u8]) -> Result<(i64, cms::VerifiedToken), TsaError> {
    check_token_over(token_der, &[signature_value]).map_err(|error| match error {
        TsaError::ImprintMismatch => TsaError::BadReply("the time stamp covers another signature value".into()),
        other => other,
    })
}

/// Checks a TimeStampToken over the concatenation of `parts` (a PDF document time stamp's
/// two byte ranges, or one signature value): its own signature, its certificate being a
/// TSA certificate, and its imprint; returns its genTime (unix seconds) and the token's
/// check (for the caller to judge the TSA's chain). An imprint over other bytes is
/// [`TsaError::ImprintMismatch`].
pub fn check_token_over(token_der: &[u8], parts: &[&[u8]]) -> Result<(i64, cms::VerifiedToken), TsaError> {
    let verified = cms::verify_timestamp_token(token_der).map_err(|error| TsaError::BadReply(format!("the token's signature does not verify: {error}")))?;
    check_tsa_certificate(&verified.tsa_cert_der)?;
    let info = TstInfo::from_der(&verified.tst_info_der).map_err(|error| TsaError::BadReply(format!("the TSTInfo does not decode: {error}")))?;
    let (algorithm, _) = hash_algorithm(&info.message_imprint.hash_algorithm.oid)?;
    let mut context = digest::Context::new(algorithm);
    for part in parts {
        context.update(part);
    }
    if info.message_imprint.hashed_message.as_bytes() != context.finish().as_ref() {
        return Err(TsaError::ImprintMismatch);
    }
    let gen_time_unix = i64::try_from(info.gen_time.to_unix_duration().as_secs()).map_err(|_| TsaError::BadReply("genTime out of range".into()))?;
    Ok((gen_time_unix, verified))
}

fn granted_reply(token_der: &[u8]) -> Result<Vec<u8>, TsaError> {
    let encoding = |error: der::Error| TsaError::Cms(CmsError::Malformed(error.to_string()));
    let reply = TimeStampResp {
        status: cmpv2::status::PkiStatusInfo { status: cmpv2::status::PkiStatus::Accepted, status_string: None, fail_info: None },
        time_stamp_token: Some(x509_tsp::TimeStampToken::from_der(token_der).map_err(encoding)?),
    };
    reply.to_der().map_err(encoding)
}

fn sha256_imprint(data: &[u8]) -> Result<MessageImprint, TsaError> {
    Ok(MessageImprint {
        hash_algorithm: AlgorithmIdentifier { oid: OID_SHA_256, parameters: None },
        hashed_message: OctetString::new(digest::digest(&digest::SHA256, data).as_ref()).map_err(|error| TsaError::Cms(CmsError::Malformed(error.to_string())))?,
    })
}

fn hash_algorithm(oid: &ObjectIdentifier) -> Result<(&'static digest::Algorithm, &'static str), TsaError> {
    if *oid == OID_SHA_256 {
        Ok((&digest::SHA256, "sha256"))
    } else if *oid == OID_SHA_384 {
        Ok((&digest::SHA384, "sha384"))
    } else if *oid == OID_SHA_512 {
        Ok((&digest::SHA512, "sha512"))
    } else {
        Err(TsaError::UnsupportedHash(oid.to_string()))
    }
}

fn check_imprint(imprint: &MessageImprint) -> Result<(), TsaError> {
    let (algorithm, name) = hash_algorithm(&imprint.hash_algorithm.oid)?;
    let parameters_ok = match &imprint.hash_algorithm.parameters {
        None => true,
        Some(parameters) => *parameters == Any::from(AnyRef::NULL),
    };
    if !parameters_ok {
        return Err(TsaError::MalformedRequest(format!("the {name} algorithm identifier carries parameters other than NULL")));
    }
    let actual = imprint.hashed_message.as_bytes().len();
    if actual != algorithm.output_len() {
        return Err(TsaError::ImprintLength { algorithm: name, actual, expected: algorithm.output_len() });
    }
    Ok(())
}

fn positive_int(value: u64) -> Int {
    serial_number(0, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::devpki::{self, CertSpec};
    use crate::crypto::KeyAlgorithm;

    fn authority() -> (TimeStampAuthority, Vec<u8>) {
        let now = 1_700_000_000;
        let ca = devpki::self_signed_ca(&CertSpec::certificate_authority("test CA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400)).unwrap();
        let tsa = devpki::issue_tsa("test TSA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400, &ca).unwrap();
        let key = tsa.signing_key().unwrap();
        (TimeStampAuthority::new(vec![tsa.cert_der.clone(), ca.cert_der.clone()], key, DEFAULT_POLICY_OID, 1, 7).unwrap(), ca.cert_der)
    }

    const ISSUE: Issue = Issue { gen_time_unix: 1_700_000_100, serial_random: 0x8000_0000_0000_0001 };

    #[test]
    fn a_reply_to_our_own_request_carries_the_imprint_nonce_and_a_node_serial() {
        let (authority, _) = authority();
        let request = request_for_signature(b"signature", 42).unwrap();
        let reply = authority.respond(&request, ISSUE).unwrap();
        let token = token_from_reply(&reply, b"signature", 42).unwrap();
        let info = token_info(&token).unwrap();
        assert_eq!(info.serial_number.as_bytes(), [0x07, 0x80, 0, 0, 0, 0, 0, 0, 0x01], "node id 7 high, random low");
        assert_eq!(info.gen_time.to_unix_duration().as_secs(), 1_700_000_100);
        assert_eq!(info.accuracy.unwrap().seconds, Some(1));
        assert_eq!(check_signature_token(&token, b"signature").unwrap().0, 1_700_000_100);
        assert!(matches!(check_signature_token(&token, b"other"), Err(TsaError::BadReply(_))));
        assert!(matches!(token_from_reply(&reply, b"signature", 43), Err(TsaError::BadReply(message)) if message.contains("nonce")));
        assert!(matches!(token_from_reply(&reply, b"other", 42), Err(TsaError::BadReply(message)) if message.contains("another signature value")));
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let (authority, _) = authority();
        assert!(matches!(authority.respond(b"\x30\x03\x02\x01\x01", ISSUE), Err(TsaError::MalformedRequest(_))));
        assert!(matches!(authority.respond(&vec![0x30; REQUEST_SIZE_BYTES_MAX + 1], ISSUE), Err(TsaError::TooLarge { .. })));
        let mut request = TimeStampReq::from_der(&request_for_signature(b"x", 1).unwrap()).unwrap();
        request.message_imprint.hashed_message = OctetString::new(vec![0u8; 20]).unwrap();
        assert!(matches!(authority.respond(&request.to_der().unwrap(), ISSUE), Err(TsaError::ImprintLength { actual: 20, .. })));
        request.message_imprint.hash_algorithm.oid = const_oid::db::rfc5912::ID_SHA_1;
        assert!(matches!(authority.respond(&request.to_der().unwrap(), ISSUE), Err(TsaError::UnsupportedHash(_))));
        let mut request = TimeStampReq::from_der(&request_for_signature(b"x", 1).unwrap()).unwrap();
        request.req_policy = Some(ObjectIdentifier::new_unwrap("1.2.3.4"));
        assert!(matches!(authority.respond(&request.to_der().unwrap(), ISSUE), Err(TsaError::UnacceptedPolicy { .. })));
    }

    #[test]
    fn only_a_critical_time_stamping_certificate_can_be_a_tsa() {
        let now = 1_700_000_000;
        let ca = devpki::self_signed_ca(&CertSpec::certificate_authority("test CA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400)).unwrap();
        let signer = devpki::issue(&CertSpec::signer("a signer", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400), &ca).unwrap();
        let refused = TimeStampAuthority::new(vec![signer.cert_der.clone()], signer.signing_key().unwrap(), DEFAULT_POLICY_OID, 1, 1);
        assert!(matches!(refused, Err(TsaError::Certificate(message)) if message.contains("no extendedKeyUsage")));
        let tsa = devpki::issue_tsa("test TSA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400, &ca).unwrap();
        let wrong_key = TimeStampAuthority::new(vec![tsa.cert_der.clone()], signer.signing_key().unwrap(), DEFAULT_POLICY_OID, 1, 1);
        assert!(matches!(wrong_key, Err(TsaError::Certificate(message)) if message.contains("does not belong")));
    }

    #[test]
    fn a_stamped_cms_verifies_and_a_token_over_another_signature_is_refused() {
        let (authority, tsa_ca) = authority();
        let now = 1_700_000_000;
        let signer_ca = devpki::self_signed_ca(&CertSpec::certificate_authority("signer CA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400)).unwrap();
        let signer = devpki::issue(&CertSpec::signer("a signer", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400), &signer_ca).unwrap();
        let chain = vec![signer.cert_der.clone(), signer_ca.cert_der.clone()];
        let key = signer.signing_key().unwrap();
        let cms_der = cms::sign_detached(b"document", now, &chain, &key).unwrap();
        let token = authority.stamp_signature(&cms::signature_value(&cms_der).unwrap(), ISSUE).unwrap();
        let stamped = cms::add_signature_timestamp(&cms_der, &token).unwrap();
        let verified = cms::verify_detached(&stamped, b"document").unwrap();
        assert_eq!(verified.timestamp_unix, Some(ISSUE.gen_time_unix));
        let tsa_cert = cms::verify_timestamp_token(&token).unwrap().tsa_cert_der;
        assert_eq!(verified.timestamp_chain_der, vec![tsa_cert, tsa_ca], "the TSA's certificate first, then its CA, as the token carries them");
        assert_eq!(cms::signature_timestamp_token(&stamped).unwrap(), Some(token));
        assert_eq!(cms::signature_timestamp_unix(&stamped).unwrap(), Some(ISSUE.gen_time_unix));
        let unstamped = cms::verify_detached(&cms_der, b"document").unwrap();
        assert_eq!(unstamped.timestamp_unix, None, "an unstamped CMS (stored before) still verifies");
        assert!(unstamped.timestamp_chain_der.is_empty());
        assert_eq!(cms::signature_timestamp_unix(&cms_der).unwrap(), None);

        let other = cms::sign_detached(b"other", now, &chain, &key).unwrap();
        let foreign = authority.stamp_signature(&cms::signature_value(&other).unwrap(), ISSUE).unwrap();
        let mismatched = cms::add_signature_timestamp(&cms_der, &foreign).unwrap();
        assert!(matches!(cms::verify_detached(&mismatched, b"document"), Err(CmsError::InvalidAttribute { name: "signature-time-stamp", .. })));
        assert!(matches!(cms::signature_timestamp_unix(&mismatched), Err(CmsError::InvalidAttribute { name: "signature-time-stamp", .. })));
    }

    #[test]
    fn a_token_with_a_broken_signature_or_from_a_non_tsa_certificate_is_refused() {
        let (authority, _) = authority();
        let token = authority.stamp_signature(b"signature", ISSUE).unwrap();
        assert_eq!(check_signature_token(&token, b"signature").unwrap().0, ISSUE.gen_time_unix);
        // The TSTInfo's genTime is inside what the TSA signed: change one digit of it.
        let mut forged = token.clone();
        let at = forged.windows(15).position(|window| window == b"20231114221500Z").expect("genTime in the token");
        forged[at + 3] = b'4';
        assert!(matches!(check_signature_token(&forged, b"signature"), Err(TsaError::BadReply(message)) if message.contains("does not verify")));

        let now = 1_700_000_000;
        let ca = devpki::self_signed_ca(&CertSpec::certificate_authority("test CA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400)).unwrap();
        let signer = devpki::issue(&CertSpec::signer("not a TSA", KeyAlgorithm::EcdsaP256, now - 10, now + 86_400), &ca).unwrap();
        let tst_info = TstInfo::from_der(&cms::verify_timestamp_token(&token).unwrap().tst_info_der).unwrap().to_der().unwrap();
        let impostor = cms::sign_timestamp_token(&tst_info, ISSUE.gen_time_unix, &[signer.cert_der.clone()], &signer.signing_key().unwrap(), true).unwrap();
        assert!(matches!(check_signature_token(&impostor, b"signature"), Err(TsaError::Certificate(message)) if message.contains("extendedKeyUsage")));
    }

    #[test]
    fn policy_oids_with_arcs_over_32_bits_are_refused_not_panicked_on() {
        assert!(parse_policy_oid(DEFAULT_POLICY_OID).is_ok());
        assert!(parse_policy_oid("2.25.255917410530658227815106536931473592891").unwrap_err().contains("4294967295"));
        assert!(parse_policy_oid("1.2..3").is_err());
        assert!(parse_policy_oid("kyso").is_err());
    }

    #[test]
    fn serial_numbers_are_positive_and_minimal() {
        assert_eq!(serial_number(0, 1).as_bytes(), [1]);
        assert_eq!(serial_number(0, 0x80).as_bytes(), [0, 0x80]);
        assert_eq!(serial_number(u64::MAX, u64::MAX).as_bytes().len(), 17);
        assert_ne!(serial_number(1, 5), serial_number(2, 5), "the node id tells two nodes' serials apart");
    }
}
