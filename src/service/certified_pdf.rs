//! The certified PDF of a certification: its number in the agency's register, the block's
//! facts, the performer's PAdES signature, and the delivered PDF stored as a blob of its
//! own before the certification is proposed.
//!
//! Numbering: the number is inside what is signed, signatures are made before proposing,
//! and apply is deterministic. So the proposing node reads its agency-year's next number
//! (after a read barrier), signs under it, and proposes; apply accepts a certification only
//! when its number is exactly the next one, and otherwise refuses it without remembering
//! the request id (`Rejection::RegisterNumberTaken`). The node then signs again under the
//! next number, at most `REGISTER_ATTEMPTS_MAX` times. One node numbers one certification
//! batch at a time (`Kyso::register_lock`), so races happen only between nodes. A refused
//! attempt leaves an unreferenced PDF blob in the store, never a number.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kyso_cluster::Proposer;

use super::signing::blocking;
use super::timestamp::StampSource;
use super::{fingerprint, now_unix, require_role, validate, Kyso, ServiceError};
use crate::crypto::{self, SigningKey};
use crate::access::{Caller, Role};
use crate::domain::{AgencySeal, Certification, DeliveredPdf, KeptCrl, Sha256, Signer};
use crate::state::{Command, Outcome};
use crate::pdf::{self, Block, BlockPlacement, BlockText, PdfError, ScanFormat, SignatureFields};

/// Attempts at numbering one batch before the caller hears UNAVAILABLE.
pub const REGISTER_ATTEMPTS_MAX: usize = 8;
/// Register entries in one ListRegister page.
pub const REGISTER_PAGE_ENTRIES_MAX: usize = 1_000;
/// Bytes reserved beyond the chain and the timestamp: attributes, signature, DER headers.
const SIGNATURE_MARGIN_BYTES: usize = 4 * 1024;

/// What the certified PDF prints and where, from configuration.
#[derive(Debug, Clone)]
pub struct PdfSettings {
    /// The public site; the QR code points at `{public_base_url}/v/{code}`.
    pub public_base_url: String,
    /// Display names of agencies, by id.
    pub agency_names: BTreeMap<String, String>,
    /// Per-agency register format and placement; agencies without an entry use the default.
    pub agencies: BTreeMap<String, crate::config::AgencyPdfConfig>,
}

impl Default for PdfSettings {
    fn default() -> Self {
        PdfSettings { public_base_url: "http://127.0.0.1:7480".into(), agency_names: BTreeMap::new(), agencies: BTreeMap::new() }
    }
}

/// One item of a batch whose scan can become a certified PDF.
pub(crate) struct PdfItem {
    /// Index in the batch.
    pub index: usize,
    pub document: Bytes,
    pub signer: Signer,
    pub key: Arc<SigningKey>,
}

impl<P: Proposer> Kyso<P> {
    /// Builds, signs and stores the certified PDF of every item, numbering them from the
    /// register's next numbers, and sets each certification's `delivered_pdf`.
    pub(crate) async fn deliver_pdfs(&self, certifications: &mut [Certification], items: &[PdfItem]) -> Result<(), ServiceError> {
        let mut next: HashMap<(String, i64), u64> = HashMap::new();
        for item in items {
            let certification = &mut certifications[item.index];
            let year = pdf::vietnam_year(certification.signed_at_unix);
            let slot = (certification.agency_id.clone(), year);
            let number = match next.get(&slot) {
                Some(number) => *number,
                None => self.state.register_next(&slot.0, year)?,
            };
            next.insert(slot, number + 1);
            let block = self.block(certification, &item.signer, year, number);
            let agency = self.agency_signer(&certification.agency_id)?;
            let performer = (item.signer.chain_der.clone(), item.key.clone());
            let delivered = self.sign_pdf(item.document.clone(), block, certification.signed_at_unix, performer, agency).await?;
            let hash = Sha256::digest(&delivered);
            let size_bytes = delivered.len() as u64;
            self.store_delivered(hash, Bytes::from(delivered)).await?;
            certification.delivered_pdf = Some(DeliveredPdf { sha256: hash, size_bytes, register_year: year, register_number: number });
        }
        Ok(())
    }

    /// Registers (or replaces) an agency's organisation certificate and key. Admin only.
    /// The chain must be valid now; the key is sealed under the master key alone, bound
    /// to the agency id.
    pub async fn register_agency_seal(&self, caller: &Caller, request_id: &str, agency_id: &str, certificate_chain: &[u8], private_key: &[u8]) -> Result<AgencySeal, ServiceError> {
        require_role(caller, Role::Admin, "registering an agency's organisation certificate")?;
        validate::request_id(request_id)?;
        validate::identifier("agency_id", agency_id)?;
        let request_fingerprint = fingerprint(&[b"register-agency-seal", agency_id.as_bytes(), certificate_chain, &Sha256::digest(private_key).0]);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, request_id, &request_fingerprint).await? {
            return expect_seal(outcome);
        }
        let chain = crypto::parse_certificates(certificate_chain)?;
        let validated = crypto::validate_chain(&chain, &self.trust, now_unix())?;
        let key = SigningKey::from_pem(private_key)
            .or_else(|_| SigningKey::from_pkcs8_der(private_key))
            .map_err(|error| ServiceError::InvalidArgument(format!("the agency's private key is not usable: {error}")))?;
        if !key.public_key_matches(&validated.chain_der[0]) {
            return Err(ServiceError::InvalidArgument("the agency's private key does not match its certificate; send the key issued with it".into()));
        }
        let pkcs8 = super::signing::pkcs8_der(private_key)?;
        let sealed_key = crypto::seal(&self.master_key, &seal_associated_data(agency_id), &pkcs8)
            .map_err(|error| ServiceError::Internal(format!("cannot seal the agency key: {error}")))?;
        let seal = AgencySeal {
            agency_id: agency_id.to_string(),
            subject: validated.subject,
            chain_der: validated.chain_der,
            sealed_key,
            registered_at_unix: now_unix(),
        };
        expect_seal(self.propose(&caller.actor, request_id, request_fingerprint, Command::RegisterAgencySeal(seal)).await?)
    }

    /// The agency's chain and opened key, when it has a seal. Called only from
    /// `deliver_pdfs`, after the performer's key was unlocked for the same certification,
    /// and from `token_signing`, after the performer's token signature verified.
    pub(crate) fn agency_signer(&self, agency_id: &str) -> Result<Option<(Vec<Vec<u8>>, Arc<SigningKey>)>, ServiceError> {
        let Some(seal) = self.state.agency_seal(agency_id)? else {
            return Ok(None);
        };
        let pkcs8 = crypto::open(&self.master_key, &seal_associated_data(agency_id), &seal.sealed_key)
            .map_err(|error| ServiceError::FailedPrecondition(format!("the key of agency {agency_id} cannot be unsealed: {error}; register the agency certificate again")))?;
        let key = SigningKey::from_pkcs8_der(&pkcs8).map_err(|error| ServiceError::Internal(format!("sealed agency key is unusable: {error}")))?;
        Ok(Some((seal.chain_der, Arc::new(key))))
    }

    /// A page of an agency's register for `year`: (number, printed label, certification).
    /// An admin reads every register; a verifier only those of the agencies it was granted
    /// (a register lists citizens' documents).
    pub async fn register_page(
        &self,
        caller: &Caller,
        agency_id: &str,
        year: i64,
        after_number: u64,
        page_size: usize,
    ) -> Result<Vec<(u64, String, Certification)>, ServiceError> {
        validate::identifier("agency_id", agency_id)?;
        if !caller.has(Role::Admin) && !caller.acts_for_agency(agency_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "{} may read only the registers of its own agencies, and {agency_id} is not one of them (ask an admin for a grant with kyso access set)",
                caller.actor
            )));
        }
        if !(2000..=9999).contains(&year) {
            return Err(ServiceError::InvalidArgument(format!("year must be 2000-9999, got {year}")));
        }
        self.read_barrier().await?;
        let page_size = if page_size == 0 { REGISTER_PAGE_ENTRIES_MAX } else { page_size.min(REGISTER_PAGE_ENTRIES_MAX) };
        let format = self.pdf_settings.agencies.get(agency_id).cloned().unwrap_or_default();
        let mut page = Vec::new();
        for (number, code) in self.state.register(agency_id, year, after_number, page_size)? {
            let code = crate::lookup::LookupCode::parse(&code).map_err(|error| ServiceError::DataLoss(format!("register entry {number}: {error}")))?;
            let certification = self
                .state
                .certification(&code)?
                .ok_or_else(|| ServiceError::DataLoss(format!("register entry {number} names a missing certification {code}")))?;
            page.push((number, number_label(&format, number, year), certification));
        }
        Ok(page)
    }

    pub(crate) fn block(&self, certification: &Certification, signer: &Signer, year: i64, number: u64) -> Block {
        let settings = &self.pdf_settings;
        let agency = settings.agencies.get(&certification.agency_id).cloned().unwrap_or_default();
        let code = certification.lookup_code.to_string();
        Block {
            text: BlockText {
                kind: certification.kind,
                register_number: number_label(&agency, number, year),
                register_book: agency.book_format.replace("{year}", &year.to_string()),
                signed_at_unix: certification.signed_at_unix,
                performer_name: signer.name.clone(),
                performer_title: signer.title.clone(),
                agency_name: settings.agency_names.get(&certification.agency_id).cloned().unwrap_or_else(|| certification.agency_id.clone()),
                public_url: format!("{}/v/{code}", settings.public_base_url.trim_end_matches('/')),
                lookup_code: code,
            },
            placement: if agency.appended_page { BlockPlacement::AppendedPage } else { BlockPlacement::LastPage },
        }
    }

    /// Write-once, content-addressed, and on a majority of nodes (per-node storage) before
    /// the certification that references it is proposed.
    pub(crate) async fn store_delivered(&self, hash: Sha256, content: Bytes) -> Result<(), ServiceError> {
        let size_bytes = content.len() as u64;
        self.blobs.put(&hash, content).await?;
        if let Some(peers) = &self.peer_blobs {
            peers.replicate(hash, size_bytes).await.map_err(|error| {
                ServiceError::Unavailable(format!("{error}; the certification was not recorded, retry when the cluster is healthy"))
            })?;
        }
        Ok(())
    }
}

/// The certification number as the agency prints it.
fn number_label(agency: &crate::config::AgencyPdfConfig, number: u64, year: i64) -> String {
    agency.number_format.replace("{number}", &format!("{number:02}")).replace("{year}", &year.to_string())
}

/// Whether kyso delivers a certified PDF for this scan.
pub(crate) fn delivers_pdf(document: &[u8]) -> bool {
    ScanFormat::sniff(document).is_some()
}

pub(crate) type ChainAndKey = (Vec<Vec<u8>>, Arc<SigningKey>);

impl<P: Proposer> Kyso<P> {
    /// Builds the PDF and signs it as the performer, then (when the agency has a seal) as
    /// the agency; each CMS gets its signature-time-stamp and is checked over its ranges
    /// before it is kept.
    async fn sign_pdf(&self, document: Bytes, block: Block, signed_at_unix: i64, performer: ChainAndKey, agency: Option<ChainAndKey>) -> Result<Vec<u8>, ServiceError> {
        let performer_name = block.text.performer_name.clone();
        let agency_name = block.text.agency_name.clone();
        let mut chains = vec![performer.0.as_slice()];
        chains.extend(agency.as_ref().map(|agency| agency.0.as_slice()));
        let validation = self.validation_data(&chains)?;
        let unsigned = blocking(move || pdf::build_unsigned(&document, &block).and_then(|unsigned| with_validation_data(unsigned, validation)).map_err(pdf_error)).await?;
        let signed = self.sign_once(unsigned, performer_fields(&performer_name, signed_at_unix), performer).await?;
        self.seal_by_agency(signed, &agency_name, signed_at_unix, agency).await
    }

    /// The validation data of PAdES B-LT for a PDF signed by `chains` and time-stamped by
    /// the node's own authority: every certificate of those chains and the CRL kyso keeps
    /// for each issuer among them (imported with ImportCrl). `None` when kyso keeps no such
    /// CRL: the PDF then stays B-T. An external authority's chain is not known before its
    /// first reply, so its certificates ride only in its tokens.
    pub(crate) fn validation_data(&self, chains: &[&[Vec<u8>]]) -> Result<Option<pdf::ValidationData>, ServiceError> {
        let own_authority = match &self.timestamps.source {
            StampSource::Own(authority) => Some(authority.chain_der()),
            _ => None,
        };
        let mut data = pdf::ValidationData::default();
        for certificate in chains.iter().copied().chain(own_authority).flatten() {
            if data.certificates.contains(certificate) {
                continue;
            }
            data.certificates.push(certificate.clone());
            let issuer = crypto::issuer_name_der(certificate).map_err(|error| ServiceError::Internal(format!("a signing chain's certificate cannot be read: {error}")))?;
            if let Some(kept) = issuer.map(|issuer| self.state.kept_crl(&KeptCrl::issuer_key(&issuer))).transpose()?.flatten() {
                if !data.crls.contains(&kept.der) {
                    data.crls.push(kept.der);
                }
            }
        }
        Ok((!data.crls.is_empty()).then_some(data))
    }

    /// Adds the agency's signature after the performer's, when the agency has a seal.
    pub(crate) async fn seal_by_agency(&self, signed: Vec<u8>, agency_name: &str, signed_at_unix: i64, agency: Option<ChainAndKey>) -> Result<Vec<u8>, ServiceError> {
        match agency {
            Some(agency) => self.sign_once(signed, signature_fields(pdf::AGENCY_FIELD_NAME, agency_name, "Cơ quan thực hiện chứng thực", signed_at_unix), agency).await,
            None => Ok(signed),
        }
    }

    /// Bytes reserved for a CMS by a signer with `chain_der`: the chain, the time-stamp
    /// token and a margin.
    pub(crate) fn contents_capacity_bytes(&self, chain_der: &[Vec<u8>]) -> usize {
        chain_der.iter().map(Vec::len).sum::<usize>() + self.timestamps.token_room_bytes() + SIGNATURE_MARGIN_BYTES
    }

    /// One signature: prepare the revision and sign its ranges (blocking), time-stamp the
    /// CMS, then verify it over the ranges and write it into the hole (blocking).
    async fn sign_once(&self, pdf: Vec<u8>, mut fields: SignatureFields, (chain_der, key): ChainAndKey) -> Result<Vec<u8>, ServiceError> {
        fields.contents_capacity_bytes = self.contents_capacity_bytes(&chain_der);
        let signed_at_unix = fields.signed_at_unix;
        let (prepared, cms) = blocking(move || {
            let prepared = pdf::prepare_signature(pdf, &fields).map_err(pdf_error)?;
            let cms = crypto::sign_detached_parts(&prepared.signed_parts(), signed_at_unix, &chain_der, &key, crypto::RsaPadding::Pss)
                .map_err(|error| ServiceError::Internal(format!("signing the pdf failed: {error}")))?;
            Ok((prepared, cms))
        })
        .await?;
        let cms = self.stamp_cms(cms).await?;
        blocking(move || {
            crypto::verify_detached_parts(&cms, &prepared.signed_parts())
                .map_err(|error| ServiceError::Internal(format!("fresh pdf signature does not verify: {error}")))?;
            prepared.complete(&cms).map_err(pdf_error)
        })
        .await
    }
}

/// `unsigned` with a DSS revision when there is validation data to embed.
pub(crate) fn with_validation_data(unsigned: Vec<u8>, validation: Option<pdf::ValidationData>) -> Result<Vec<u8>, PdfError> {
    match validation {
        Some(data) => pdf::append_dss(unsigned, &data),
        None => Ok(unsigned),
    }
}

/// The performer's signature fields; the capacity is set by the caller.
pub(crate) fn performer_fields(performer_name: &str, signed_at_unix: i64) -> SignatureFields {
    signature_fields(pdf::PERFORMER_FIELD_NAME, performer_name, "Người thực hiện chứng thực", signed_at_unix)
}

/// The fields of one signature; its capacity is set by `sign_once`.
fn signature_fields(field_name: &str, signer_name: &str, reason: &str, signed_at_unix: i64) -> SignatureFields {
    SignatureFields { field_name: field_name.into(), signer_name: signer_name.into(), reason: reason.into(), signed_at_unix, contents_capacity_bytes: 0 }
}

fn seal_associated_data(agency_id: &str) -> Vec<u8> {
    format!("agency-seal/{agency_id}").into_bytes()
}

fn expect_seal(outcome: Outcome) -> Result<AgencySeal, ServiceError> {
    match outcome {
        Outcome::AgencySeal(seal) => Ok(seal),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("unexpected outcome: {other:?}"))),
    }
}

/// A scan kyso cannot turn into a certified PDF is the archived document's problem, not
/// the request's: FAILED_PRECONDITION, with what to do.
pub(crate) fn pdf_error(error: PdfError) -> ServiceError {
    let message = format!("the archived document cannot become a certified pdf: {error}");
    match error {
        PdfError::SignatureTooLarge { .. } | PdfError::Font(_) => ServiceError::Internal(message),
        _ => ServiceError::FailedPrecondition(message),
    }
}
