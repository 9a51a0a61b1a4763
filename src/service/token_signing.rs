//! A certified PDF signed with the signer's own token (issue 15, item 2): the private key
//! never reaches kyso.
//!
//! 1. **Prepare** (`prepare_token_signature`): the same checks as certify (signer role,
//!    acting as the signer, registered for the agency, certificate valid and unrevoked,
//!    document archived for the agency), then, after a read barrier, the agency-year's
//!    next register number, the lookup code and the signing time are fixed, the PDF
//!    revision with the certification block and the performer's /Contents hole is built,
//!    and the CMS signed attributes (content-type, message-digest of the byte ranges,
//!    signing-time, ESS signing-certificate-v2 of the registered certificate) are made.
//!    The client gets a prepared id, the attributes' DER (what the token signs) and the
//!    SHA-256 of the byte ranges.
//! 2. **Complete** (`complete_token_signature`): the signature value from the token is put
//!    into the CMS, which is VERIFIED against the registered certificate over the prepared
//!    ranges before anything else (a wrong value: INVALID_ARGUMENT, nothing recorded);
//!    then, as in certify, the signature-time-stamp, the agency's seal signature, the
//!    delivered PDF stored as a blob, and one `Certify` command through Raft.
//!
//! The prepared register number is held by the prepared revision only, not reserved:
//! apply accepts it only if it is still the agency-year's next (`check_certifiable`).
//! If another certification took it meanwhile, Complete answers ABORTED and the client
//! prepares again (and signs the new revision); a number on a delivered PDF is always one
//! the log holds, and the register keeps no gap.
//!
//! Prepared state lives in memory on the preparing node only ([`PreparedTokenSignatures`]):
//! at most [`PREPARED_TOKEN_SIGNATURES_MAX`] entries and [`PREPARED_TOKEN_BYTES_MAX`]
//! bytes of PDF, each for [`PREPARED_TOKEN_SIGNATURE_SECONDS_MAX`]. A prepared id names
//! its node; Complete on another node is refused with FAILED_PRECONDITION naming it, and
//! a restart forgets every prepared signature (the client prepares again).
//!
//! In the record, a token-signed certification's CMS is the performer's PDF signature,
//! over the delivered PDF's first byte ranges, not over the scan; verify checks it there
//! (`service::verify`).

use std::collections::HashMap;
use std::sync::Mutex;

use kyso_cluster::Proposer;

use super::certified_pdf::{self, pdf_error};
use super::signing::{blocking, expect_certifications, first, CertifyItem};
use super::{fingerprint, now_unix, require_role, validate, Kyso, ServiceError};
use crate::access::{Caller, Role};
use crate::crypto::{self, KeyAlgorithm, RsaPadding, UnsignedCms};
use crate::domain::{Certification, DeliveredPdf, Sha256, Signer};
use crate::pdf::{self, PreparedSignature};
use crate::state::{Command, Outcome, Rejection};

/// Prepared token signatures one node holds at a time.
pub const PREPARED_TOKEN_SIGNATURES_MAX: usize = 64;
/// Bytes of prepared PDFs one node holds at a time.
pub const PREPARED_TOKEN_BYTES_MAX: usize = 512 * 1024 * 1024;
/// How long a prepared signature waits for its token's signature value.
pub const PREPARED_TOKEN_SIGNATURE_SECONDS_MAX: i64 = 15 * 60;
/// The largest signature value a token returns (RSA-8192 is 1,024 bytes).
pub const TOKEN_SIGNATURE_VALUE_BYTES_MAX: usize = 2_048;

/// What the client's token must sign, and what the prepared PDF will carry.
#[derive(Debug, Clone)]
pub struct TokenSignatureToSign {
    pub prepared_id: String,
    /// The node holding the prepared signature: Complete must go to it.
    pub node_id: u64,
    pub node_address: String,
    /// DER of the CMS signed attributes (SET OF, tag 0x31): the bytes the token signs.
    pub signed_attributes_der: Vec<u8>,
    /// SHA-256 of the PDF's two signed byte ranges (the message-digest attribute's value).
    pub byte_range_sha256: Sha256,
    pub byte_range: [usize; 4],
    pub key_algorithm: KeyAlgorithm,
    pub lookup_code: String,
    pub signed_at_unix: i64,
    pub register_year: i64,
    pub register_number: u64,
    pub expires_at_unix: i64,
}

/// One prepared signature: everything Complete needs, fixed at Prepare.
struct PreparedEntry {
    /// The certification to record, without its CMS and delivered PDF hash yet.
    certification: Certification,
    pdf: PreparedSignature,
    cms: UnsignedCms,
    agency_name: String,
    expires_at_unix: i64,
}

impl PreparedEntry {
    fn size_bytes(&self) -> usize {
        self.pdf.byte_range()[3] + self.pdf.byte_range()[2]
    }
}

/// The bounded in-memory table of prepared signatures of one node.
pub(crate) struct PreparedTokenSignatures {
    node_id: u64,
    client_address: String,
    entries: Mutex<HashMap<String, PreparedEntry>>,
}

impl PreparedTokenSignatures {
    pub(crate) fn new(node_id: u64, client_address: String) -> Self {
        PreparedTokenSignatures { node_id, client_address, entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PreparedEntry>> {
        // A panic while holding this lock leaves a map that is still consistent (every
        // operation is a single insert or remove), so a poisoned lock is taken as it is.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops expired entries, then refuses when the table is full.
    fn check_room(&self, now_unix: i64, more_bytes: usize) -> Result<(), ServiceError> {
        self.check_room_in(&mut self.lock(), now_unix, more_bytes)
    }

    fn check_room_in(&self, entries: &mut HashMap<String, PreparedEntry>, now_unix: i64, more_bytes: usize) -> Result<(), ServiceError> {
        entries.retain(|_, entry| entry.expires_at_unix > now_unix);
        let held_bytes: usize = entries.values().map(PreparedEntry::size_bytes).sum();
        if entries.len() >= PREPARED_TOKEN_SIGNATURES_MAX || held_bytes + more_bytes > PREPARED_TOKEN_BYTES_MAX {
            return Err(ServiceError::ResourceExhausted(format!(
                "node {} holds {} prepared token signatures ({held_bytes} bytes; at most {PREPARED_TOKEN_SIGNATURES_MAX} and {PREPARED_TOKEN_BYTES_MAX} bytes); complete them or retry in a few minutes, when unused ones expire",
                self.node_id,
                entries.len()
            )));
        }
        Ok(())
    }

    /// Checks room and inserts under one lock, so concurrent prepares cannot overfill it.
    fn insert(&self, prepared_id: String, entry: PreparedEntry, now_unix: i64) -> Result<(), ServiceError> {
        let mut entries = self.lock();
        self.check_room_in(&mut entries, now_unix, entry.size_bytes())?;
        entries.insert(prepared_id, entry);
        Ok(())
    }

    /// Takes the entry out, so that one Complete at a time works on it; errors say why
    /// there is none here.
    fn take(&self, prepared_id: &str, now_unix: i64) -> Result<PreparedEntry, ServiceError> {
        let node_id = prepared_node(prepared_id)?;
        if node_id != self.node_id {
            return Err(ServiceError::FailedPrecondition(format!(
                "prepared signature {prepared_id} was prepared on node {node_id} and is held only there; this is node {}: call CompleteTokenSignature on node {node_id} (the node_address PrepareTokenSignature answered)",
                self.node_id
            )));
        }
        let entry = self.lock().remove(prepared_id).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no prepared signature {prepared_id} on node {}: it was completed, expired {PREPARED_TOKEN_SIGNATURE_SECONDS_MAX} s after it was prepared, is being completed by another call, or the node restarted; prepare the signature again",
                self.node_id
            ))
        })?;
        if entry.expires_at_unix <= now_unix {
            return Err(ServiceError::FailedPrecondition(format!(
                "prepared signature {prepared_id} expired at {}, {PREPARED_TOKEN_SIGNATURE_SECONDS_MAX} s after it was prepared; prepare the signature again",
                crypto::cert::format_unix_utc(entry.expires_at_unix)
            )));
        }
        Ok(entry)
    }

    /// Puts back an entry whose Complete failed for a reason the client may fix or retry.
    /// It held its place before `take`, so the table grows past its bound by at most the
    /// Completes in flight.
    fn put_back(&self, prepared_id: String, entry: PreparedEntry) {
        self.lock().insert(prepared_id, entry);
    }
}

/// The node id a prepared id names: `n<node id>-<32 hex digits>`.
fn prepared_node(prepared_id: &str) -> Result<u64, ServiceError> {
    let malformed = || ServiceError::InvalidArgument(format!("prepared_id {prepared_id:?} is not one PrepareTokenSignature answered (n<node>-<32 hex digits>)"));
    let (node, random) = prepared_id.strip_prefix('n').and_then(|rest| rest.split_once('-')).ok_or_else(malformed)?;
    if random.len() != 32 || !random.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    node.parse().map_err(|_| malformed())
}

impl<P: Proposer> Kyso<P> {
    /// Builds the certified PDF's performer revision for a signer's token and returns
    /// what the token must sign (see the module documentation).
    #[tracing::instrument(skip(self, caller, item))]
    pub async fn prepare_token_signature(&self, caller: &Caller, mut item: CertifyItem) -> Result<TokenSignatureToSign, ServiceError> {
        require_role(caller, Role::Signer, "preparing a token signature")?;
        item.agency_id = validate::identifier("agency_id", &item.agency_id)?;
        // Before any check: on a follower, the dossier the caller just archived through it
        // (or the signer it just registered) must be applied here first.
        self.read_barrier().await?;
        let signed_at_unix = now_unix();
        let (signer, document) = self.check_certify_item(caller, &item, signed_at_unix).await?;
        if !certified_pdf::delivers_pdf(&document) {
            return Err(ServiceError::FailedPrecondition(format!(
                "document {} is not a PDF, JPEG or PNG scan, so it gets no certified pdf; sign it with kyso signer submit (a detached CMS) instead",
                Sha256::digest(&document)
            )));
        }
        let key_algorithm = token_key_algorithm(&signer)?;
        self.prepared_tokens.check_room(signed_at_unix, document.len())?;
        let year = pdf::vietnam_year(signed_at_unix);
        let number = self.state.register_next(&item.agency_id, year)?;
        let mut certification = self.new_certification(item, signer.id.clone(), signed_at_unix, Vec::new())?;
        certification.delivered_pdf = Some(DeliveredPdf { sha256: Sha256([0; 32]), size_bytes: 0, register_year: year, register_number: number });
        let block = self.block(&certification, &signer, year, number);
        let agency_name = block.text.agency_name.clone();
        let mut fields = certified_pdf::performer_fields(&signer.name, signed_at_unix);
        fields.contents_capacity_bytes = self.contents_capacity_bytes(&signer.chain_der);
        let chain_der = signer.chain_der.clone();
        let agency_chain = self.state.agency_seal(&certification.agency_id)?.map(|seal| seal.chain_der);
        let mut chains = vec![chain_der.as_slice()];
        chains.extend(agency_chain.as_deref());
        let validation = self.validation_data(&chains)?;
        let (prepared_pdf, cms) = blocking(move || {
            let unsigned = pdf::build_unsigned(&document, &block).and_then(|unsigned| certified_pdf::with_validation_data(unsigned, validation)).map_err(pdf_error)?;
            let prepared = pdf::prepare_signature(unsigned, &fields).map_err(pdf_error)?;
            let cms = crypto::prepare_detached_parts(&prepared.signed_parts(), signed_at_unix, &chain_der, key_algorithm, RsaPadding::Pkcs1v15)
                .map_err(|error| ServiceError::Internal(format!("cannot prepare the signed attributes: {error}")))?;
            Ok((prepared, cms))
        })
        .await?;
        let signed_attributes_der = cms.signed_attributes_der().map_err(|error| ServiceError::Internal(format!("cannot encode the signed attributes: {error}")))?;
        let byte_range_sha256 = ranges_sha256(&prepared_pdf);
        let prepared_id = format!("n{}-{}", self.prepared_tokens.node_id, &self.random_request_id("t")?[2..]);
        let answer = TokenSignatureToSign {
            prepared_id: prepared_id.clone(),
            node_id: self.prepared_tokens.node_id,
            node_address: self.prepared_tokens.client_address.clone(),
            signed_attributes_der,
            byte_range_sha256,
            byte_range: prepared_pdf.byte_range(),
            key_algorithm,
            lookup_code: certification.lookup_code.to_string(),
            signed_at_unix,
            register_year: year,
            register_number: number,
            expires_at_unix: signed_at_unix + PREPARED_TOKEN_SIGNATURE_SECONDS_MAX,
        };
        let entry = PreparedEntry { certification, pdf: prepared_pdf, cms, agency_name, expires_at_unix: answer.expires_at_unix };
        self.prepared_tokens.insert(prepared_id, entry, signed_at_unix)?;
        tracing::info!(prepared_id = %answer.prepared_id, register_number = number, "prepared a token signature");
        Ok(answer)
    }

    /// Completes a prepared signature with the value the signer's token made over the
    /// signed attributes, and records the certification (see the module documentation).
    /// A retry with the same request id answers the recorded certification.
    #[tracing::instrument(skip(self, caller, signature_value), fields(request_id = %request_id))]
    pub async fn complete_token_signature(&self, caller: &Caller, request_id: &str, prepared_id: &str, signature_value: Vec<u8>) -> Result<Certification, ServiceError> {
        require_role(caller, Role::Signer, "completing a token signature")?;
        validate::request_id(request_id)?;
        if signature_value.is_empty() || signature_value.len() > TOKEN_SIGNATURE_VALUE_BYTES_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "signature_value is {} bytes; send the token's signature (1-{TOKEN_SIGNATURE_VALUE_BYTES_MAX} bytes; ECDSA as a DER ECDSA-Sig-Value)",
                signature_value.len()
            )));
        }
        let request_fingerprint = fingerprint(&[b"complete-token-signature", prepared_id.as_bytes(), &signature_value]);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_certifications(outcome).map(first);
        }
        let entry = self.prepared_tokens.take(prepared_id, now_unix())?;
        let result = self.finish_token_signature(caller, request_id, request_fingerprint, &entry, signature_value).await;
        match &result {
            // The number is gone for good: only a new Prepare helps.
            Err(ServiceError::Aborted(_)) | Ok(_) => {}
            Err(_) => self.prepared_tokens.put_back(prepared_id.to_string(), entry),
        }
        let certification = result?;
        crate::metrics::record_certifications(1);
        Ok(certification)
    }

    async fn finish_token_signature(
        &self,
        caller: &Caller,
        request_id: &str,
        request_fingerprint: [u8; 32],
        entry: &PreparedEntry,
        signature_value: Vec<u8>,
    ) -> Result<Certification, ServiceError> {
        let signer_id = &entry.certification.signer_id;
        if !caller.acts_as_signer(signer_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "{} may not sign as signer {signer_id}, for whom this signature was prepared; an admin grants signer ids with kyso access set",
                caller.actor
            )));
        }
        let (unsigned, prepared_pdf) = (entry.cms.clone(), entry.pdf.clone());
        let signer_id_text = signer_id.clone();
        let (cms, prepared_pdf) = blocking(move || {
            let cms = unsigned.complete(signature_value).map_err(|error| ServiceError::InvalidArgument(format!("the signature value cannot go into a CMS: {error}")))?;
            crypto::verify_detached_parts(&cms, &prepared_pdf.signed_parts()).map_err(|error| {
                ServiceError::InvalidArgument(format!(
                    "the signature value does not verify with signer {signer_id_text}'s registered certificate over the prepared signed attributes ({error}); sign signed_attributes_der with that certificate's key on the token (ECDSA P-256 over SHA-256, or RSA PKCS#1 v1.5 with SHA-256); nothing was recorded"
                ))
            })?;
            Ok((cms, prepared_pdf))
        })
        .await?;
        let now = now_unix();
        let signer = self.state.signer(signer_id)?.ok_or_else(|| ServiceError::NotFound(format!("signer {signer_id:?} is not registered any more")))?;
        self.check_signer_may_sign(&signer, now)?;
        let cms = self.stamp_cms(cms).await?;
        let signed_pdf = blocking({
            let cms = cms.clone();
            move || {
                crypto::verify_detached_parts(&cms, &prepared_pdf.signed_parts())
                    .map_err(|error| ServiceError::Internal(format!("the time-stamped token signature does not verify: {error}")))?;
                prepared_pdf.complete(&cms).map_err(pdf_error)
            }
        })
        .await?;
        let agency_id = &entry.certification.agency_id;
        let agency = self.agency_signer(agency_id)?;
        let delivered = self.seal_by_agency(signed_pdf, &entry.agency_name, entry.certification.signed_at_unix, agency).await?;
        let hash = Sha256::digest(&delivered);
        let size_bytes = delivered.len() as u64;
        self.store_delivered(hash, bytes::Bytes::from(delivered)).await?;
        let mut certification = entry.certification.clone();
        certification.cms_der = cms;
        if let Some(pdf) = certification.delivered_pdf.as_mut() {
            pdf.sha256 = hash;
            pdf.size_bytes = size_bytes;
        }
        let _numbering = self.register_lock.lock().await;
        match self.propose_for_outcome(&caller.actor, request_id, request_fingerprint, Command::Certify(vec![certification])).await? {
            Outcome::Rejected(Rejection::RegisterNumberTaken { agency_id, year, number, expected }) => Err(ServiceError::Aborted(format!(
                "register number {number} of agency {agency_id} for {year} was taken by another certification after this signature was prepared (the next is now {expected}); nothing was recorded: prepare the signature again and sign the new revision"
            ))),
            outcome => expect_certifications(outcome).map(first),
        }
    }
}

/// The key algorithm a token signs with for `signer`: ECDSA P-256 or RSA.
fn token_key_algorithm(signer: &Signer) -> Result<KeyAlgorithm, ServiceError> {
    let leaf = signer.chain_der.first().ok_or_else(|| ServiceError::DataLoss(format!("signer {} has no certificate", signer.id)))?;
    let unreadable = |error: crypto::CertError| ServiceError::DataLoss(format!("signer {}'s certificate does not parse: {error}", signer.id));
    let certificate = crypto::cert::parse_certificate(leaf).map_err(unreadable)?;
    let algorithm = crypto::cert::signer_key_algorithm(certificate.public_key()).map_err(unreadable)?;
    match algorithm {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Rsa => Ok(algorithm),
        KeyAlgorithm::Ed25519 => Err(ServiceError::FailedPrecondition(format!(
            "signer {} has an Ed25519 certificate; token signing takes ECDSA P-256 or RSA certificates",
            signer.id
        ))),
    }
}

fn ranges_sha256(prepared: &PreparedSignature) -> Sha256 {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in prepared.signed_parts() {
        context.update(part);
    }
    Sha256::from_slice(context.finish().as_ref()).expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CertificationKind;

    const NOW_UNIX: i64 = 1_795_000_000;

    /// A prepared entry of a real PDF revision and signed attributes, expiring at `expires_at_unix`.
    fn entry(expires_at_unix: i64) -> PreparedEntry {
        let chain = crate::crypto::testutil::test_chain(KeyAlgorithm::EcdsaP256);
        let fields = pdf::SignatureFields { contents_capacity_bytes: 4096, ..certified_pdf::performer_fields("Nguyễn Văn An", NOW_UNIX) };
        let prepared = pdf::prepare_signature(crate::cli::dev::sample_pdf("scan"), &fields).expect("prepare");
        let cms = crypto::prepare_detached_parts(&prepared.signed_parts(), NOW_UNIX, &chain.chain_der(), KeyAlgorithm::EcdsaP256, RsaPadding::Pkcs1v15).expect("attributes");
        let certification = Certification {
            version: crate::domain::CERTIFICATION_RECORD_VERSION,
            lookup_code: crate::lookup::LookupCode::parse("7K3MQ9TX2HRNB4WD").unwrap(),
            document_sha256: Sha256([7; 32]),
            kind: CertificationKind::CertifiedCopy,
            agency_id: "xa-a".into(),
            signer_id: "s1".into(),
            dossier_id: String::new(),
            signed_at_unix: NOW_UNIX,
            cms_der: Vec::new(),
            revocation: None,
            delivered_pdf: None,
        };
        PreparedEntry { certification, pdf: prepared, cms, agency_name: "xa-a".into(), expires_at_unix }
    }

    fn id(index: usize) -> String {
        format!("n1-{index:032x}")
    }

    #[test]
    fn an_expired_prepared_signature_is_refused_with_when_it_expired_and_a_full_table_refuses_more() {
        let table = PreparedTokenSignatures::new(1, "127.0.0.1:7400".into());
        table.insert(id(0), entry(NOW_UNIX + 10), NOW_UNIX).expect("room");
        let expired = table.take(&id(0), NOW_UNIX + 10).err().expect("expired");
        assert!(matches!(&expired, ServiceError::FailedPrecondition(message) if message.contains("expired at") && message.contains("prepare the signature again")), "{expired:?}");
        let gone = table.take(&id(0), NOW_UNIX + 11).err().expect("gone");
        assert!(matches!(gone, ServiceError::NotFound(_)), "{gone:?}");

        let one = entry(NOW_UNIX + PREPARED_TOKEN_SIGNATURE_SECONDS_MAX);
        for index in 0..PREPARED_TOKEN_SIGNATURES_MAX {
            table.insert(id(index), entry(NOW_UNIX + PREPARED_TOKEN_SIGNATURE_SECONDS_MAX), NOW_UNIX).expect("room");
        }
        let full = table.insert(id(PREPARED_TOKEN_SIGNATURES_MAX), one, NOW_UNIX).err().expect("full");
        assert!(matches!(&full, ServiceError::ResourceExhausted(message) if message.contains("retry in a few minutes")), "{full:?}");
        // Expired entries make room again.
        table.check_room(NOW_UNIX + PREPARED_TOKEN_SIGNATURE_SECONDS_MAX, 0).expect("every entry expired");
        assert_eq!(table.lock().len(), 0);
        let taken = table.take(&id(3), NOW_UNIX).err().expect("dropped when it expired");
        assert!(matches!(taken, ServiceError::NotFound(_)));
    }

    #[test]
    fn a_prepared_id_names_its_node_and_anything_else_is_refused() {
        assert_eq!(prepared_node("n3-0123456789abcdef0123456789abcdef").unwrap(), 3);
        for bad in ["", "3-0123456789abcdef0123456789abcdef", "n3-0123", "nX-0123456789abcdef0123456789abcdef", "n3-0123456789abcdef0123456789abcdeg"] {
            assert!(matches!(prepared_node(bad), Err(ServiceError::InvalidArgument(_))), "{bad:?}");
        }
        let table = PreparedTokenSignatures::new(1, "127.0.0.1:7400".into());
        let elsewhere = table.take("n2-0123456789abcdef0123456789abcdef", 0).err().expect("refused");
        assert!(matches!(&elsewhere, ServiceError::FailedPrecondition(message) if message.contains("node 2")), "{elsewhere:?}");
        let unknown = table.take("n1-0123456789abcdef0123456789abcdef", 0).err().expect("refused");
        assert!(matches!(&unknown, ServiceError::NotFound(message) if message.contains("prepare the signature again")), "{unknown:?}");
    }
}
