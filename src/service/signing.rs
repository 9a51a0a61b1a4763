//! Signing use cases: register signers, certify documents (one or a batch, server-side with
//! the signer's PIN), record a signature the signer made with its own token (client-side),
//! revoke.
//!
//! The node checks the caller may act as the signer, the signer's authority for the agency
//! and its certificate (valid and unrevoked now), reads the archived document
//! (hash-checked), unlocks the signer's key with the master key AND the signer's PIN (once
//! per batch), builds a detached CMS signature, checks it, and only then proposes the whole
//! signed record: the signing time, the lookup code and the signature are fixed before the
//! command enters the log.

use std::collections::HashMap;

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::{fingerprint, now_unix, require_role, validate, Kyso, ServiceError};
use crate::access::{Caller, Role};
use crate::crypto::cms::Covered;
use crate::crypto::{self, CertError, KeyError, MasterKey, SigningKey};
use crate::domain::{Certification, CertificationKind, Sha256, Signer, CERTIFICATION_RECORD_VERSION, PIN_FAILURES_MAX};
use crate::lookup::LookupCode;
use crate::state::{Command, Outcome, Rejection};
use super::certified_pdf;
use super::timestamp::StampPlan;

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
    /// The signer's own secret that, with the master key, seals `private_key`. Required
    /// with a key.
    pub pin: String,
}

/// A detached CMS signature the signer made with its own token, for an archived document.
#[derive(Debug, Clone)]
pub struct SubmittedSignature {
    pub item: CertifyItem,
    pub cms_der: Vec<u8>,
}

/// Seconds a client-side signing time may lie ahead of the node's clock.
pub const CLOCK_SKEW_SECONDS_MAX: i64 = 300;

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
    #[tracing::instrument(skip(self, caller, request), fields(request_id = %request.request_id))]
    pub async fn register_signer(&self, caller: &Caller, mut request: NewSigner) -> Result<Signer, ServiceError> {
        require_role(caller, Role::Admin, "registering a signer")?;
        self.check_new_signer(&mut request)?;
        let request_fingerprint = fingerprint(&[
            b"register-signer",
            request.name.as_bytes(),
            request.title.as_bytes(),
            request.agency_ids.join("\n").as_bytes(),
            &request.certificate_chain,
            ring::digest::digest(&ring::digest::SHA256, &request.private_key).as_ref(),
        ]);
        // The PIN is not in the fingerprint (stored for good: a hash of it would be a
        // PBKDF2-free guessing oracle). A retry proves it by opening the sealed key instead.
        if let Some(outcome) = self.earlier_outcome(&caller.actor, &request.request_id, &request_fingerprint).await? {
            let signer = expect_signer(outcome)?;
            if signer.sealed_key.is_some() {
                let current = self.state.signer(&signer.id)?.ok_or_else(|| ServiceError::Internal(format!("registered signer {} is gone", signer.id)))?;
                self.unseal_signer_pkcs8(caller, &current, &request.pin).await?;
            }
            return Ok(signer);
        }
        let chain = crypto::parse_certificates(&request.certificate_chain)?;
        let validated = crypto::validate_chain(&chain, &self.trust, now_unix())?;
        let id = hex::encode(validated.fingerprint_sha256);
        let sealed_key = self.seal_signer_key(&id, &request.private_key, &request.pin, &validated.chain_der[0]).await?;
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
        expect_signer(self.propose(&caller.actor, &request.request_id, request_fingerprint, Command::RegisterSigner(signer)).await?)
    }

    /// Checks a registration and normalises its text (NFC) in place. A name a reader could
    /// mistake for another registered signer's, or an agency id for another known
    /// agency's, is refused with the look-alike named.
    fn check_new_signer(&self, request: &mut NewSigner) -> Result<(), ServiceError> {
        validate::request_id(&request.request_id)?;
        request.name = validate::text("name", &request.name, self.limits.text_field_chars_max, true)?;
        request.title = validate::text("title", &request.title, self.limits.text_field_chars_max, true)?;
        if request.agency_ids.is_empty() || request.agency_ids.len() > SIGNER_AGENCIES_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a signer is registered to 1-{SIGNER_AGENCIES_MAX} agencies, got {}",
                request.agency_ids.len()
            )));
        }
        for agency in &mut request.agency_ids {
            *agency = validate::identifier("agency_ids", agency)?;
            self.check_agency_not_confusable(agency)?;
        }
        let signers = self.state.signers()?;
        validate::not_confusable("name", &request.name, signers.iter().map(|signer| signer.name.as_str()))?;
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
    /// key and the signer's PIN, bound to the signer id. The clear key never leaves this
    /// function.
    async fn seal_signer_key(&self, signer_id: &str, key_input: &[u8], pin: &str, leaf_der: &[u8]) -> Result<Option<Vec<u8>>, ServiceError> {
        if key_input.is_empty() {
            if !pin.is_empty() {
                return Err(ServiceError::InvalidArgument("a pin was sent without a private key; send both or neither".into()));
            }
            return Ok(None);
        }
        if pin.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "a server-held key needs the signer's pin: the key is sealed under the master key and the pin".into(),
            ));
        }
        crypto::check_pin(pin).map_err(|error| ServiceError::InvalidArgument(error.to_string()))?;
        let pkcs8 = pkcs8_der(key_input)?;
        let key = SigningKey::from_pkcs8_der(&pkcs8)
            .map_err(|error| ServiceError::InvalidArgument(format!("private key is not usable: {error}")))?;
        if !key.public_key_matches(leaf_der) {
            return Err(ServiceError::InvalidArgument(
                "private key does not match the certificate's public key; send the key issued with this certificate".into(),
            ));
        }
        Ok(Some(self.seal_with_pin(signer_id, pin, pkcs8).await?))
    }

    /// Seals a PKCS#8 key under the master key and `pin` on a blocking thread (PBKDF2 takes
    /// a fraction of a second by design).
    pub(crate) async fn seal_with_pin(&self, signer_id: &str, pin: &str, pkcs8: zeroize::Zeroizing<Vec<u8>>) -> Result<Vec<u8>, ServiceError> {
        let (master, pin, id, iterations) = (self.master_key.clone(), zeroize::Zeroizing::new(pin.to_string()), signer_id.to_string(), self.limits.pin_pbkdf2_iterations);
        tokio::task::spawn_blocking(move || crypto::seal_with_pin(&master, &pin, iterations, id.as_bytes(), &pkcs8))
            .await
            .map_err(|error| ServiceError::Internal(format!("sealing task failed: {error}")))?
            .map_err(|error| ServiceError::Internal(format!("cannot seal key: {error}")))
    }

    /// Signs every item and records them in one command: all or nothing. Each signer's key
    /// is unlocked once with `pin`, however many items it signs.
    #[tracing::instrument(skip(self, caller, items, pin), fields(request_id = %request_id, items = items.len()))]
    pub async fn certify(&self, caller: &Caller, request_id: &str, mut items: Vec<CertifyItem>, pin: &str) -> Result<Vec<Certification>, ServiceError> {
        require_role(caller, Role::Signer, "signing")?;
        validate::request_id(request_id)?;
        for item in &mut items {
            item.agency_id = validate::identifier("agency_id", &item.agency_id)?;
        }
        if items.is_empty() || items.len() > self.limits.certify_batch_items_max {
            return Err(ServiceError::InvalidArgument(format!(
                "a batch holds 1-{} documents, got {}",
                self.limits.certify_batch_items_max,
                items.len()
            )));
        }
        let request_fingerprint = certify_fingerprint(&items);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_certifications(outcome);
        }
        let signed_at_unix = now_unix();
        let mut keys: HashMap<String, std::sync::Arc<SigningKey>> = HashMap::new();
        let mut certifications = Vec::with_capacity(items.len());
        let mut pdf_items = Vec::new();
        for item in items {
            let signer = self.check_certify_item_before_reading(caller, &item, signed_at_unix)?;
            let document_sha256 = Sha256::from_slice(&item.document_sha256).expect("checked in check_certify_item_before_reading");
            // Whether the document exists (here or on a peer) before the PIN is tried.
            let head = self.blob_head(&document_sha256).await.map_err(not_archived(&document_sha256))?;
            let key = match keys.get(&signer.id) {
                Some(key) => key.clone(),
                None => {
                    let key = self.unseal_signer_key(caller, &signer, pin).await?;
                    keys.insert(signer.id.clone(), key.clone());
                    key
                }
            };
            // A scan's bytes go into its certified PDF, and a signer that does not sign a
            // SHA-256 digest needs them too: read whole, hash-checked. Any other file is
            // signed from the digest it was archived under, unread.
            let scan = certified_pdf::delivers_pdf(&head);
            let document = match scan || !crypto::cms::digests_with_sha256(key.algorithm()) {
                true => Some(self.get_blob(&document_sha256).await.map_err(not_archived(&document_sha256))?),
                false => None,
            };
            let cms_der = self.sign_and_check(document.clone(), document_sha256, signed_at_unix, signer.chain_der.clone(), key.clone()).await?;
            if let Some(document) = document.filter(|_| scan) {
                pdf_items.push(certified_pdf::PdfItem { index: certifications.len(), document, signer: signer.clone(), key });
            }
            certifications.push(self.new_certification(item, signer.id, signed_at_unix, cms_der)?);
        }
        let recorded = if pdf_items.is_empty() {
            expect_certifications(self.propose(&caller.actor, request_id, request_fingerprint, Command::Certify(certifications)).await?)?
        } else {
            self.certify_with_register(caller, request_id, request_fingerprint, certifications, &pdf_items).await?
        };
        crate::metrics::record_certifications(recorded.len());
        Ok(recorded)
    }

    /// Numbers, builds and signs the certified PDFs, and proposes; signs again under the
    /// next numbers when another node took them first (see `certified_pdf`).
    async fn certify_with_register(
        &self,
        caller: &Caller,
        request_id: &str,
        request_fingerprint: [u8; 32],
        mut certifications: Vec<Certification>,
        pdf_items: &[certified_pdf::PdfItem],
    ) -> Result<Vec<Certification>, ServiceError> {
        let _numbering = self.register_lock.lock().await;
        let mut last_rejection = None;
        for _ in 0..certified_pdf::REGISTER_ATTEMPTS_MAX {
            self.read_barrier().await?;
            self.deliver_pdfs(&mut certifications, pdf_items).await?;
            let command = Command::Certify(certifications.clone());
            match self.propose_for_outcome(&caller.actor, request_id, request_fingerprint, command).await? {
                Outcome::Rejected(rejection @ Rejection::RegisterNumberTaken { .. }) => {
                    tracing::info!(%rejection, "register number taken by another node; signing again under the next");
                    last_rejection = Some(rejection);
                }
                outcome => return expect_certifications(outcome),
            }
        }
        Err(last_rejection.map_or_else(|| ServiceError::Internal("no numbering attempt ran".into()), ServiceError::from))
    }

    /// Records a detached CMS signature that the signer made with its own token: it must
    /// verify over the archived document, be made with the signer's registered
    /// certificate, at a signing time when that certificate was valid and unrevoked, be
    /// recent, and never have been recorded before.
    #[tracing::instrument(skip(self, caller, submitted), fields(request_id = %request_id))]
    pub async fn submit_signature(&self, caller: &Caller, request_id: &str, submitted: SubmittedSignature) -> Result<Certification, ServiceError> {
        require_role(caller, Role::Signer, "submitting a signature")?;
        validate::request_id(request_id)?;
        let mut item = submitted.item;
        item.agency_id = validate::identifier("agency_id", &item.agency_id)?;
        let request_fingerprint = fingerprint(&[b"submit-signature", &certify_fingerprint(std::slice::from_ref(&item)), &submitted.cms_der]);
        self.read_barrier().await?;
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_certifications(outcome).map(first);
        }
        if let Some(code) = self.state.signature_recorded(&submitted.cms_der)? {
            return Err(ServiceError::AlreadyExists(format!(
                "this signature was already recorded as certification {code}; sign again to certify again"
            )));
        }
        let now = now_unix();
        let (signer, document) = self.check_certify_item(caller, &item, now).await?;
        let cms_der = submitted.cms_der;
        let verified = tokio::task::spawn_blocking({
            let cms_der = cms_der.clone();
            move || crypto::verify_detached(&cms_der, &document)
        })
        .await
        .map_err(|error| ServiceError::Internal(format!("verification task failed: {error}")))?
        .map_err(|error| ServiceError::InvalidArgument(format!("the signature does not verify over the archived document: {error}")))?;
        if hex::encode(Sha256::digest(&verified.signer_cert_der).0) != signer.id {
            return Err(ServiceError::InvalidArgument(format!(
                "the signature was made with another certificate than signer {}'s registered one; sign with the registered certificate",
                signer.id
            )));
        }
        let signed_at_unix = verified.signing_time_unix;
        if signed_at_unix > now + CLOCK_SKEW_SECONDS_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "the signing time {signed_at_unix} is in the future; check the signing computer's clock"
            )));
        }
        let age_max = self.limits.client_signature_age_seconds_max as i64;
        if now - signed_at_unix > age_max {
            return Err(ServiceError::FailedPrecondition(format!(
                "the signature was made {} s ago, more than {age_max} s; sign the document again",
                now - signed_at_unix
            )));
        }
        self.check_signer_may_sign(&signer, signed_at_unix)?;
        // The same signature in other bytes (an ECDSA signature is malleable, a CMS can be
        // re-encoded) names the same signer, document and signing time: re-used too.
        let document_sha256 = Sha256::from_slice(&item.document_sha256).expect("checked in check_certify_item");
        if let Some(earlier) = self
            .state
            .certifications_of(&document_sha256)?
            .into_iter()
            .find(|earlier| earlier.signer_id == signer.id && earlier.signed_at_unix == signed_at_unix)
        {
            return Err(ServiceError::AlreadyExists(format!(
                "certification {} already records a signature by this signer over this document made at {signed_at_unix}; sign again to certify again",
                earlier.lookup_code
            )));
        }
        let certification = self.new_certification(item, signer.id, signed_at_unix, cms_der)?;
        let outcome = self.propose(&caller.actor, request_id, request_fingerprint, Command::Certify(vec![certification])).await?;
        let certification = expect_certifications(outcome).map(first)?;
        crate::metrics::record_certifications(1);
        Ok(certification)
    }

    /// A certification of an item that passed `check_certify_item`, with a fresh lookup code.
    pub(super) fn new_certification(&self, item: CertifyItem, signer_id: String, signed_at_unix: i64, cms_der: Vec<u8>) -> Result<Certification, ServiceError> {
        Ok(Certification {
            version: CERTIFICATION_RECORD_VERSION,
            lookup_code: LookupCode::generate(&self.random).map_err(|_| ServiceError::Internal("system random source failed".into()))?,
            document_sha256: Sha256::from_slice(&item.document_sha256).expect("checked in check_certify_item"),
            kind: item.kind.expect("checked in check_certify_item"),
            agency_id: item.agency_id,
            signer_id,
            dossier_id: item.dossier_id,
            signed_at_unix,
            cms_der,
            revocation: None,
            delivered_pdf: None,
        })
    }

    /// The signer's chain is valid at `at_unix` and its certificate not revoked by then.
    pub(super) fn check_signer_may_sign(&self, signer: &Signer, at_unix: i64) -> Result<(), ServiceError> {
        self.chains.validate(&signer.chain_der, &self.trust, at_unix).map_err(|error| {
            ServiceError::PermissionDenied(format!("signer {} cannot sign now: {error}", signer.id))
        })?;
        if let Some(revocation) = self.state.signer_status(&signer.id)?.revoked_at(at_unix) {
            return Err(ServiceError::PermissionDenied(format!(
                "signer {} cannot sign: its certificate was revoked at {} ({}) by a crl of {}",
                signer.id,
                crate::crypto::cert::format_unix_utc(revocation.revoked_at_unix),
                revocation.reason,
                revocation.issuer
            )));
        }
        Ok(())
    }

    /// Everything a certification needs that can be checked before signing; returns the
    /// signer and the document's bytes.
    pub(super) async fn check_certify_item(&self, caller: &Caller, item: &CertifyItem, at_unix: i64) -> Result<(Signer, Bytes), ServiceError> {
        let signer = self.check_certify_item_before_reading(caller, item, at_unix)?;
        let hash = Sha256::from_slice(&item.document_sha256).expect("checked in check_certify_item_before_reading");
        let document = self.get_blob(&hash).await.map_err(not_archived(&hash))?;
        Ok((signer, document))
    }

    /// The checks of [`Self::check_certify_item`] that need no document bytes.
    fn check_certify_item_before_reading(&self, caller: &Caller, item: &CertifyItem, at_unix: i64) -> Result<Signer, ServiceError> {
        let hash = Sha256::from_slice(&item.document_sha256).ok_or_else(|| {
            ServiceError::InvalidArgument(format!(
                "document_sha256 must be 32 bytes, got {}",
                item.document_sha256.len()
            ))
        })?;
        if item.kind.is_none() {
            return Err(ServiceError::InvalidArgument("kind must be RESULT or CERTIFIED_COPY".into()));
        }
        validate::text("signer_id", &item.signer_id, 64, true)?;
        if !caller.acts_as_signer(&item.signer_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "{} may not sign as signer {}; an admin grants signer ids with kyso access set",
                caller.actor, item.signer_id
            )));
        }
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
        self.check_document_of_agency(&hash, &item.agency_id, &item.dossier_id)?;
        self.check_signer_may_sign(&signer, at_unix)?;
        Ok(signer)
    }

    /// The document must be a file of a dossier of the request's agency (of `dossier_id`
    /// when one is named); apply checks the same against replicated state.
    fn check_document_of_agency(&self, hash: &Sha256, agency_id: &str, dossier_id: &str) -> Result<(), ServiceError> {
        if dossier_id.is_empty() {
            if self.state.blob_agencies(hash)?.iter().any(|agency| agency == agency_id) {
                return Ok(());
            }
            if !self.state.blob_known(hash)? {
                return Err(ServiceError::NotFound(format!("document {hash} is not archived; upload it in a dossier first")));
            }
            return Err(ServiceError::PermissionDenied(crate::state::store::document_not_of_agency(hash, agency_id)));
        }
        let dossier = self
            .state
            .dossier(dossier_id)?
            .ok_or_else(|| ServiceError::NotFound(format!("dossier {dossier_id:?} does not exist")))?;
        if dossier.agency_id != agency_id || !dossier.files.iter().any(|file| &file.sha256 == hash) {
            return Err(ServiceError::PermissionDenied(format!(
                "document {hash} is not a file of dossier {dossier_id} of agency {agency_id}; certify only documents your agency archived"
            )));
        }
        Ok(())
    }

    /// Opens the signer's key with the master key and `pin`. A wrong PIN is counted in
    /// replicated state (so every node sees it) before the caller hears of it; at
    /// [`PIN_FAILURES_MAX`] the key locks until an admin unlocks it.
    ///
    /// A key opened with the same PIN within `limits.unlocked_key_seconds_max` is served
    /// from memory without PBKDF2 ([`super::unlocked`]); a lock applies either way.
    ///
    /// One unseal per signer runs at a time on this node: concurrent calls wait for it and
    /// take the key it opened (single flight; a cold node hit by 64 certifications runs
    /// one PBKDF2, not 64).
    pub(crate) async fn unseal_signer_key(&self, caller: &Caller, signer: &Signer, pin: &str) -> Result<std::sync::Arc<SigningKey>, ServiceError> {
        let held = |kyso: &Self| -> Result<Option<std::sync::Arc<SigningKey>>, ServiceError> {
            let Some(sealed) = &signer.sealed_key else { return Ok(None) };
            if kyso.state.signer_status(&signer.id)?.locked() {
                kyso.unlocked_keys.forget(&signer.id);
                return Err(locked(&signer.id));
            }
            Ok(kyso.unlocked_keys.get(&signer.id, sealed, pin))
        };
        if let Some(key) = held(self)? {
            return Ok(key);
        }
        let _turn = self.unseal_gates.turn(&signer.id).await;
        // Another call may have opened it (or a wrong PIN locked it) while this one waited.
        if let Some(key) = held(self)? {
            return Ok(key);
        }
        let pkcs8 = self.unseal_signer_pkcs8(caller, signer, pin).await?;
        let key = std::sync::Arc::new(
            SigningKey::from_pkcs8_der(&pkcs8).map_err(|error| ServiceError::Internal(format!("sealed key is unusable: {error}")))?,
        );
        if let Some(sealed) = &signer.sealed_key {
            self.unlocked_keys.insert(&signer.id, sealed, pin, key.clone());
        }
        Ok(key)
    }

    /// The signer's PKCS#8 key, opened as [`Kyso::unseal_signer_key`] describes.
    pub(crate) async fn unseal_signer_pkcs8(&self, caller: &Caller, signer: &Signer, pin: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        let sealed = signer.sealed_key.as_ref().ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "the node holds no private key for signer {}; register the signer with its key and pin, or submit a client-side signature",
                signer.id
            ))
        })?;
        if self.state.signer_status(&signer.id)?.locked() {
            return Err(locked(&signer.id));
        }
        if pin.is_empty() {
            return Err(ServiceError::InvalidArgument("send the signer's pin to unlock its key".into()));
        }
        let open = |master: MasterKey| {
            let (pin, id, sealed) = (zeroize::Zeroizing::new(pin.to_string()), signer.id.clone(), sealed.clone());
            async move {
                tokio::task::spawn_blocking(move || crypto::open_with_pin(&master, &pin, id.as_bytes(), &sealed))
                    .await
                    .map_err(|error| ServiceError::Internal(format!("unlock task failed: {error}")))
            }
        };
        crate::metrics::record_key_unseal();
        let mut opened = open(self.master_key.clone()).await?;
        if let (Err(KeyError::WrongMasterKey), Some(previous)) = (&opened, &self.previous_master_key) {
            opened = open(previous.clone()).await?;
            if let Ok(pkcs8) = &opened {
                self.reseal_under_current_master_key(caller, &signer.id, pin, pkcs8.clone()).await?;
            }
        }
        match opened {
            Ok(pkcs8) => Ok(pkcs8),
            Err(KeyError::WrongPin) => Err(self.count_wrong_pin(caller, &signer.id).await),
            Err(error) => Err(ServiceError::FailedPrecondition(format!("the key of signer {} cannot be unsealed: {error}", signer.id))),
        }
    }

    /// Master key rotation: a key that opened under the previous master key is sealed
    /// again under the current one (same PIN) and recorded, so the old key can be retired.
    async fn reseal_under_current_master_key(&self, caller: &Caller, signer_id: &str, pin: &str, pkcs8: zeroize::Zeroizing<Vec<u8>>) -> Result<(), ServiceError> {
        let sealed_key = self.seal_with_pin(signer_id, pin, pkcs8).await?;
        let request_id = self.random_request_id("reseal")?;
        let command = Command::ReplaceSignerKey { signer_id: signer_id.to_string(), sealed_key };
        match self.propose(&caller.actor, &request_id, fingerprint(&[request_id.as_bytes()]), command).await? {
            Outcome::Rejected(rejection) => Err(rejection.into()),
            _ => {
                tracing::info!(signer_id, "re-sealed a signer key under the current master key");
                Ok(())
            }
        }
    }

    async fn count_wrong_pin(&self, caller: &Caller, signer_id: &str) -> ServiceError {
        let request_id = match self.random_request_id("pin") {
            Ok(request_id) => request_id,
            Err(error) => return error,
        };
        let command = Command::PinRejected { signer_id: signer_id.to_string() };
        match self.propose(&caller.actor, &request_id, fingerprint(&[request_id.as_bytes()]), command).await {
            Ok(Outcome::SignerStatus(status)) if status.locked() => locked(signer_id),
            Ok(Outcome::SignerStatus(status)) => ServiceError::PermissionDenied(format!(
                "wrong pin for signer {signer_id}; {} more wrong pins lock the key",
                PIN_FAILURES_MAX - status.pin_failures
            )),
            Ok(other) => ServiceError::Internal(format!("unexpected outcome: {other:?}")),
            Err(error) => error,
        }
    }

    /// A fresh request id for a command the node proposes on its own (audit, PIN count).
    pub(crate) fn random_request_id(&self, prefix: &str) -> Result<String, ServiceError> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.random, &mut bytes)
            .map_err(|_| ServiceError::Internal("system random source failed".into()))?;
        Ok(format!("{prefix}-{}", hex::encode(bytes)))
    }

    /// Revokes a certification: an admin may revoke any, a signer those of the signers it
    /// acts as.
    #[tracing::instrument(skip(self, caller, reason), fields(request_id = %request_id))]
    pub async fn revoke(&self, caller: &Caller, request_id: &str, lookup_code: &str, reason: &str) -> Result<Certification, ServiceError> {
        validate::request_id(request_id)?;
        let code = LookupCode::parse(lookup_code).map_err(|error| ServiceError::InvalidArgument(error.to_string()))?;
        let reason = validate::text("reason", reason, self.limits.text_field_chars_max, true)?;
        let reason = reason.as_str();
        let request_fingerprint = fingerprint(&[b"revoke", code.as_str().as_bytes(), reason.as_bytes()]);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_certifications(outcome).map(first);
        }
        if !caller.has(Role::Admin) {
            let certification = self.state.certification(&code)?;
            let own = certification.is_some_and(|certification| caller.has(Role::Signer) && caller.acts_as_signer(&certification.signer_id));
            if !own {
                return Err(ServiceError::PermissionDenied(format!(
                    "{} may revoke only certifications of the signers it acts as",
                    caller.actor
                )));
            }
        }
        let command = Command::RevokeCertification { lookup_code: code, reason: reason.to_string(), revoked_at_unix: now_unix() };
        expect_certifications(self.propose(&caller.actor, request_id, request_fingerprint, command).await?).map(first)
    }
}

impl<P: Proposer> Kyso<P> {
    /// Signs on a blocking thread (RSA signing takes milliseconds), adds the
    /// signature-time-stamp (the own TSA's in the same trip, an external TSA's through
    /// `stamp_cms`), and verifies the result, time stamp included, before it may enter the
    /// log. For a SHA-256 signer both the signature and its check take `document_sha256`,
    /// the digest the document was archived under (content-addressed: the upload hashed
    /// the bytes it stored), and `document` may be `None`; the self-check still verifies
    /// the signature value over the signed attributes, which is what a faulty key would get
    /// wrong. Any other signer covers `document`, read by `get_blob` (hash-checked).
    async fn sign_and_check(
        &self,
        document: Option<Bytes>,
        document_sha256: Sha256,
        signed_at_unix: i64,
        chain_der: Vec<Vec<u8>>,
        key: std::sync::Arc<SigningKey>,
    ) -> Result<Vec<u8>, ServiceError> {
        let by_digest = crypto::cms::digests_with_sha256(key.algorithm());
        let document = match document {
            Some(document) => document,
            None if by_digest => Bytes::new(),
            None => return Err(ServiceError::Internal("a signer that does not sign a SHA-256 digest needs the document's bytes".into())),
        };
        let sign = {
            let document = document.clone();
            move || {
                let covered = if by_digest { Covered::Sha256(&document_sha256.0) } else { Covered::Parts(&[&document]) };
                crypto::cms::sign_detached_covered(covered, signed_at_unix, &chain_der, &key, crypto::RsaPadding::Pkcs1v15)
                    .map_err(|error| ServiceError::Internal(format!("signing failed: {error}")))
            }
        };
        let check = move |cms: Vec<u8>| {
            let covered = if by_digest { Covered::Sha256(&document_sha256.0) } else { Covered::Parts(&[&document]) };
            crypto::cms::verify_detached_covered(&cms, covered)
                .map_err(|error| ServiceError::Internal(format!("fresh signature does not verify: {error}")))?;
            Ok(cms)
        };
        let own = match self.stamp_plan()? {
            StampPlan::None => None,
            StampPlan::Own(authority, issue) => Some((authority, issue)),
            StampPlan::Fetch => {
                let cms = self.stamp_cms(blocking(sign).await?).await?;
                return blocking(move || check(cms)).await;
            }
        };
        // No network in between: one trip to a blocking thread, not two (each hand-off
        // between threads showed in the profile of certify).
        blocking(move || {
            let cms = sign()?;
            let cms = match own {
                Some((authority, issue)) => super::timestamp::stamp_with_own(&authority, cms, issue)?,
                None => cms,
            };
            check(cms)
        })
        .await
    }
}

/// A document the state names but no store holds is "not archived" to the caller.
fn not_archived(hash: &Sha256) -> impl FnOnce(ServiceError) -> ServiceError + '_ {
    move |error| match error {
        ServiceError::NotFound(_) => ServiceError::NotFound(format!("document {hash} is not archived; upload it in a dossier first")),
        other => other,
    }
}

/// Runs `work` on the node's signing threads, one per core (signing and its self-check,
/// building a certified PDF): see [`super::cpu_pool`].
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static) -> Result<T, ServiceError> {
    super::cpu_pool::run(work)
        .await
        .map_err(|error| ServiceError::Internal(format!("signing task failed: {error}")))?
}

/// Accepts a PKCS#8 key as PEM ("PRIVATE KEY") or DER.
pub(crate) fn pkcs8_der(input: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
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

fn locked(signer_id: &str) -> ServiceError {
    ServiceError::PermissionDenied(format!(
        "the key of signer {signer_id} is locked after {PIN_FAILURES_MAX} wrong pins; an admin unlocks it with kyso signer unlock"
    ))
}

pub(super) fn first(mut certifications: Vec<Certification>) -> Certification {
    // A revocation outcome always carries exactly the revoked certification.
    certifications.swap_remove(0)
}

pub(crate) fn expect_signer(outcome: Outcome) -> Result<Signer, ServiceError> {
    match outcome {
        Outcome::Signer(signer) => Ok(signer),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}

pub(super) fn expect_certifications(outcome: Outcome) -> Result<Vec<Certification>, ServiceError> {
    match outcome {
        Outcome::Certifications(certifications) if !certifications.is_empty() => Ok(certifications),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}
