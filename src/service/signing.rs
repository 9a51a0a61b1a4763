//! Signing use cases: register signers, certify documents (one or a batch), revoke.
//!
//! The node checks the signer's authority and certificate, reads the archived document
//! (hash-checked), builds a detached CMS signature with the signer's sealed key, checks
//! that signature, and only then proposes the whole signed record: the signing time, the
//! lookup code and the signature are fixed before the command enters the log.

use std::collections::HashMap;

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::{fingerprint, now_unix, validate, Kyso, ServiceError};
use crate::crypto::{self, CertError, SigningKey};
use crate::domain::{Certification, CertificationKind, Sha256, Signer, CERTIFICATION_RECORD_VERSION};
use crate::lookup::LookupCode;
use crate::state::{Command, Outcome};

/// Agencies one signer may be registered to.
pub const SIGNER_AGENCIES_MAX: usize = 32;

#[derive(Debug, Clone)]
pub struct NewSigner {
    pub request_id: String,
    pub name: String,
    pub title: String,
    pub agency_ids: Vec<String>,
    /// PEM or DER, leaf first.
    pub certificate_chain: Vec<u8>,
    /// PKCS#8, PEM or DER; empty when the node holds no key for this signer.
    pub private_key: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct CertifyItem {
    pub document_sha256: Vec<u8>,
    pub kind: Option<CertificationKind>,
    pub agency_id: String,
    pub signer_id: String,
    pub dossier_id: String,
}

impl From<CertError> for ServiceError {
    fn from(error: CertError) -> Self {
        let message = error.to_string();
        match error {
            CertError::Expired { .. }
            | CertError::NotYetValid { .. }
            | CertError::Untrusted { .. }
            | CertError::SelfSignedLeaf { .. }
            | CertError::BadSignature { .. }
            | CertError::IssuerNotCa { .. }
            | CertError::PathLengthExceeded { .. } => {
                ServiceError::FailedPrecondition(message)
            }
            _ => ServiceError::InvalidArgument(message),
        }
    }
}

impl<P: Proposer> Kyso<P> {
    #[tracing::instrument(skip(self, request), fields(request_id = %request.request_id))]
    pub async fn register_signer(&self, request: NewSigner) -> Result<Signer, ServiceError> {
        self.check_new_signer(&request)?;
        let request_fingerprint = fingerprint(&[
            b"register-signer",
            request.name.as_bytes(),
            request.title.as_bytes(),
            request.agency_ids.join("\n").as_bytes(),
            &request.certificate_chain,
            &ring::digest::digest(&ring::digest::SHA256, &request.private_key).as_ref()[..],
        ]);
        if let Some(outcome) = self.earlier_outcome(&request.request_id, &request_fingerprint).await? {
            return expect_signer(outcome);
        }
        let chain = crypto::parse_certificates(&request.certificate_chain)?;
        let validated = crypto::validate_chain(&chain, &self.trust, now_unix())?;
        let id = hex::encode(validated.fingerprint_sha256);
        let sealed_key = self.seal_signer_key(&id, &request.private_key, &validated.chain_der[0])?;
        let signer = Signer {
            id,
            name: request.name,
            title: request.title,
            agency_ids: request.agency_ids,
            subject: validated.subject,
            issuer: validated.issuer,
            serial_hex: validated.serial_hex,
            not_before_unix: validated.not_before_unix,
            not_after_unix: validated.not_after_unix,
            key_algorithm: validated.algorithm.to_string(),
            chain_der: validated.chain_der,
            sealed_key,
            registered_at_unix: now_unix(),
        };
        expect_signer(self.propose(&request.request_id, request_fingerprint, Command::RegisterSigner(signer)).await?)
    }

    fn check_new_signer(&self, request: &NewSigner) -> Result<(), ServiceError> {
        validate::request_id(&request.request_id)?;
        validate::text("name", &request.name, self.limits.text_field_chars_max, true)?;
        validate::text("title", &request.title, self.limits.text_field_chars_max, true)?;
        if request.agency_ids.is_empty() || request.agency_ids.len() > SIGNER_AGENCIES_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a signer is registered to 1-{SIGNER_AGENCIES_MAX} agencies, got {}",
                request.agency_ids.len()
            )));
        }
        for agency in &request.agency_ids {
            validate::identifier("agency_ids", agency)?;
        }
        if request.certificate_chain.len() > self.limits.certificate_chain_size_bytes_max {
            return Err(ServiceError::InvalidArgument(format!(
                "certificate chain is {} bytes; the limit is {}",
                request.certificate_chain.len(),
                self.limits.certificate_chain_size_bytes_max
            )));
        }
        Ok(())
    }

    /// Parses the key, checks it matches the certificate, and seals it under the master
    /// key bound to the signer id. The clear key never leaves this function.
    fn seal_signer_key(&self, signer_id: &str, key_input: &[u8], leaf_der: &[u8]) -> Result<Option<Vec<u8>>, ServiceError> {
        if key_input.is_empty() {
            return Ok(None);
        }
        let pkcs8 = pkcs8_der(key_input)?;
        let key = SigningKey::from_pkcs8_der(&pkcs8)
            .map_err(|error| ServiceError::InvalidArgument(format!("private key is not usable: {error}")))?;
        if !key.public_key_matches(leaf_der) {
            return Err(ServiceError::InvalidArgument(
                "private key does not match the certificate's public key; send the key issued with this certificate".into(),
            ));
        }
        let sealed = crypto::seal(&self.master_key, signer_id.as_bytes(), &pkcs8)
            .map_err(|error| ServiceError::Internal(format!("cannot seal key: {error}")))?;
        Ok(Some(sealed))
    }

    /// Signs every item and records them in one command: all or nothing.
    #[tracing::instrument(skip(self, items), fields(request_id = %request_id, items = items.len()))]
    pub async fn certify(&self, request_id: &str, items: Vec<CertifyItem>) -> Result<Vec<Certification>, ServiceError> {
        validate::request_id(request_id)?;
        if items.is_empty() || items.len() > self.limits.certify_batch_items_max {
            return Err(ServiceError::InvalidArgument(format!(
                "a batch holds 1-{} documents, got {}",
                self.limits.certify_batch_items_max,
                items.len()
            )));
        }
        let request_fingerprint = certify_fingerprint(&items);
        if let Some(outcome) = self.earlier_outcome(request_id, &request_fingerprint).await? {
            return expect_certifications(outcome);
        }
        let signed_at_unix = now_unix();
        let mut keys: HashMap<String, std::sync::Arc<SigningKey>> = HashMap::new();
        let mut certifications = Vec::with_capacity(items.len());
        for item in items {
            let (signer, document) = self.check_certify_item(&item, signed_at_unix).await?;
            let key = match keys.get(&signer.id) {
                Some(key) => key.clone(),
                None => {
                    let key = std::sync::Arc::new(self.unseal_signer_key(&signer)?);
                    keys.insert(signer.id.clone(), key.clone());
                    key
                }
            };
            let cms_der = sign_and_check(document, signed_at_unix, signer.chain_der.clone(), key).await?;
            certifications.push(Certification {
                version: CERTIFICATION_RECORD_VERSION,
                lookup_code: LookupCode::generate(&self.random)
                    .map_err(|_| ServiceError::Internal("system random source failed".into()))?,
                document_sha256: Sha256::from_slice(&item.document_sha256).expect("checked in check_certify_item"),
                kind: item.kind.expect("checked in check_certify_item"),
                agency_id: item.agency_id,
                signer_id: signer.id,
                dossier_id: item.dossier_id,
                signed_at_unix,
                cms_der,
                revocation: None,
            });
        }
        expect_certifications(self.propose(request_id, request_fingerprint, Command::Certify(certifications)).await?)
    }

    /// Everything a certification needs that can be checked before signing; returns the
    /// signer and the document's bytes.
    async fn check_certify_item(&self, item: &CertifyItem, at_unix: i64) -> Result<(Signer, Bytes), ServiceError> {
        let hash = Sha256::from_slice(&item.document_sha256).ok_or_else(|| {
            ServiceError::InvalidArgument(format!(
                "document_sha256 must be 32 bytes, got {}",
                item.document_sha256.len()
            ))
        })?;
        if item.kind.is_none() {
            return Err(ServiceError::InvalidArgument("kind must be RESULT or CERTIFIED_COPY".into()));
        }
        validate::identifier("agency_id", &item.agency_id)?;
        validate::text("signer_id", &item.signer_id, 64, true)?;
        let signer = self
            .state
            .signer(&item.signer_id)?
            .ok_or_else(|| ServiceError::NotFound(format!("signer {:?} is not registered", item.signer_id)))?;
        if !signer.may_sign_for(&item.agency_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "signer {} is not registered for agency {}; it signs for {}",
                signer.id,
                item.agency_id,
                signer.agency_ids.join(", ")
            )));
        }
        if !item.dossier_id.is_empty() && self.state.dossier(&item.dossier_id)?.is_none() {
            return Err(ServiceError::NotFound(format!("dossier {:?} does not exist", item.dossier_id)));
        }
        crypto::validate_chain(&signer.chain_der, &self.trust, at_unix).map_err(|error| {
            ServiceError::FailedPrecondition(format!("signer {} cannot sign now: {error}", signer.id))
        })?;
        let document = self.get_blob(&hash).await.map_err(|error| match error {
            ServiceError::NotFound(_) => {
                ServiceError::NotFound(format!("document {hash} is not archived; upload it in a dossier first"))
            }
            other => other,
        })?;
        Ok((signer, document))
    }

    fn unseal_signer_key(&self, signer: &Signer) -> Result<SigningKey, ServiceError> {
        let sealed = signer.sealed_key.as_ref().ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "the node holds no private key for signer {}; register the signer with its key",
                signer.id
            ))
        })?;
        let pkcs8 = crypto::open(&self.master_key, signer.id.as_bytes(), sealed).map_err(|error| {
            ServiceError::FailedPrecondition(format!(
                "the key of signer {} cannot be unsealed with this node's master key: {error}",
                signer.id
            ))
        })?;
        SigningKey::from_pkcs8_der(&pkcs8).map_err(|error| ServiceError::Internal(format!("sealed key is unusable: {error}")))
    }

    #[tracing::instrument(skip(self, reason), fields(request_id = %request_id))]
    pub async fn revoke(&self, request_id: &str, lookup_code: &str, reason: &str) -> Result<Certification, ServiceError> {
        validate::request_id(request_id)?;
        let code = LookupCode::parse(lookup_code).map_err(|error| ServiceError::InvalidArgument(error.to_string()))?;
        validate::text("reason", reason, self.limits.text_field_chars_max, true)?;
        let request_fingerprint = fingerprint(&[b"revoke", code.as_str().as_bytes(), reason.as_bytes()]);
        if let Some(outcome) = self.earlier_outcome(request_id, &request_fingerprint).await? {
            return expect_certifications(outcome).map(first);
        }
        let command = Command::RevokeCertification { lookup_code: code, reason: reason.to_string(), revoked_at_unix: now_unix() };
        expect_certifications(self.propose(request_id, request_fingerprint, command).await?).map(first)
    }
}

/// Signs on a blocking thread (RSA signing takes milliseconds) and verifies the result
/// before it may enter the log.
async fn sign_and_check(
    document: Bytes,
    signed_at_unix: i64,
    chain_der: Vec<Vec<u8>>,
    key: std::sync::Arc<SigningKey>,
) -> Result<Vec<u8>, ServiceError> {
    tokio::task::spawn_blocking(move || {
        let cms = crypto::sign_detached(&document, signed_at_unix, &chain_der, &key)
            .map_err(|error| ServiceError::Internal(format!("signing failed: {error}")))?;
        crypto::verify_detached(&cms, &document)
            .map_err(|error| ServiceError::Internal(format!("fresh signature does not verify: {error}")))?;
        Ok(cms)
    })
    .await
    .map_err(|error| ServiceError::Internal(format!("signing task failed: {error}")))?
}

/// Accepts a PKCS#8 key as PEM ("PRIVATE KEY") or DER.
fn pkcs8_der(input: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
    if input.starts_with(b"-----BEGIN") {
        let block = pem::parse(input)
            .map_err(|error| ServiceError::InvalidArgument(format!("private key PEM is malformed: {error}")))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(ServiceError::InvalidArgument(format!(
                "private key PEM is {:?}; convert it to PKCS#8 (\"PRIVATE KEY\") with `openssl pkcs8 -topk8 -nocrypt`",
                block.tag()
            )));
        }
        return Ok(zeroize::Zeroizing::new(block.into_contents()));
    }
    Ok(zeroize::Zeroizing::new(input.to_vec()))
}

fn certify_fingerprint(items: &[CertifyItem]) -> [u8; 32] {
    let mut parts: Vec<Vec<u8>> = vec![b"certify".to_vec()];
    for item in items {
        parts.push(item.document_sha256.clone());
        parts.push(item.kind.map(|kind| kind.as_str()).unwrap_or("").as_bytes().to_vec());
        parts.push(item.agency_id.as_bytes().to_vec());
        parts.push(item.signer_id.as_bytes().to_vec());
        parts.push(item.dossier_id.as_bytes().to_vec());
    }
    let borrowed: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    fingerprint(&borrowed)
}

fn first(mut certifications: Vec<Certification>) -> Certification {
    // A revocation outcome always carries exactly the revoked certification.
    certifications.swap_remove(0)
}

fn expect_signer(outcome: Outcome) -> Result<Signer, ServiceError> {
    match outcome {
        Outcome::Signer(signer) => Ok(signer),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}

fn expect_certifications(outcome: Outcome) -> Result<Vec<Certification>, ServiceError> {
    match outcome {
        Outcome::Certifications(certifications) if !certifications.is_empty() => Ok(certifications),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}
