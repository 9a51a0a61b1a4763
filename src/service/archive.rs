//! Archive use cases: store a dossier's files as blobs, then record the dossier.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kyso_cluster::Proposer;

use super::{fingerprint, now_unix, require_role, validate, Kyso, ServiceError};
use crate::access::{Caller, Role};
use crate::archive::{BlobStream, SpoolWriter, SpooledBlob};
use crate::domain::{ArchivedFile, Dossier, Sha256};
use crate::state::{Command, Outcome};

/// Arrivals one step of [`Kyso::fill_missing_blobs`] checks.
const BLOB_FILL_PAGE: usize = 1024;
/// Blobs fetched from peers at once by [`Kyso::fill_missing_blobs`].
const BLOB_FILL_CONCURRENCY: usize = 16;
/// Of those, blobs over `limits.blob_multipart_threshold_bytes`: each holds the parts of a
/// multipart write in memory while it is stored (about 3 × `blob_part_size_bytes`).
const BLOB_FILL_LARGE_CONCURRENCY: usize = 2;

/// What one pass of [`Kyso::fill_missing_blobs`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobFill {
    /// Archived blobs in the state when the pass started.
    pub archived: u64,
    /// Blobs fetched from peers.
    pub fetched: u64,
    /// Blobs no peer could supply (yet).
    pub missing: u64,
    /// The pass checked every one of the `archived` blobs (it did not run out of time).
    pub complete: bool,
    /// Blobs the pass looked at: the arrivals from the node's refill cursor on.
    pub checked: u64,
}

impl BlobFill {
    /// The node holds every blob of an archive that had `archived` blobs (blobs are only
    /// ever added, so a state with at least as many includes them all).
    pub fn holds_all(&self, archived: u64) -> bool {
        self.complete && self.missing == 0 && self.archived >= archived
    }
}

/// Dossier metadata as the client sent it, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewDossier {
    pub request_id: String,
    pub agency_id: String,
    pub procedure_code: String,
    pub dossier_number: String,
    pub received_date: String,
    pub private_fields: Vec<(String, String)>,
}

impl<P: Proposer> Kyso<P> {
    /// Checks dossier metadata, and that the caller is a clerk of its agency, before any
    /// file is received, so a bad request fails fast. Text fields are normalised (NFC) in
    /// place: the record and the request fingerprint hold the normalised form.
    pub fn check_new_dossier(&self, caller: &Caller, dossier: &mut NewDossier) -> Result<(), ServiceError> {
        require_role(caller, Role::Clerk, "archiving a dossier")?;
        validate::request_id(&dossier.request_id)?;
        dossier.agency_id = validate::identifier("agency_id", &dossier.agency_id)?;
        if !caller.acts_for_agency(&dossier.agency_id) {
            return Err(ServiceError::PermissionDenied(format!(
                "{} is not a clerk of agency {}",
                caller.actor, dossier.agency_id
            )));
        }
        self.check_agency_not_confusable(&dossier.agency_id)?;
        dossier.procedure_code = validate::identifier("procedure_code", &dossier.procedure_code)?;
        dossier.dossier_number = validate::identifier("dossier_number", &dossier.dossier_number)?;
        validate::date("received_date", &dossier.received_date)?;
        if dossier.private_fields.len() > self.limits.private_fields_max {
            return Err(ServiceError::InvalidArgument(format!(
                "{} private fields; the limit is {}",
                dossier.private_fields.len(),
                self.limits.private_fields_max
            )));
        }
        for (key, value) in &mut dossier.private_fields {
            *key = validate::identifier("private field name", key)?;
            *value = validate::text("private field value", value, self.limits.text_field_chars_max, false)?;
        }
        Ok(())
    }

    /// Refuses an agency id that a reader could mistake for another agency kyso knows (the
    /// agencies of registered signers and of grants).
    pub(crate) fn check_agency_not_confusable(&self, agency_id: &str) -> Result<(), ServiceError> {
        let mut known = self.state.known_agencies()?;
        for principal in &self.static_principals {
            known.extend(principal.agency_ids.iter().filter(|agency| agency.as_str() != crate::access::ANY).cloned());
        }
        validate::not_confusable("agency_id", agency_id, known.iter().map(String::as_str))
    }

    /// Checks one file's name and type before its bytes arrive; returns them normalised.
    pub fn check_file_start(&self, name: &str, content_type: &str, files_so_far: usize) -> Result<(String, String), ServiceError> {
        if files_so_far >= self.limits.dossier_files_max {
            return Err(ServiceError::ResourceExhausted(format!(
                "a dossier holds at most {} files; split it or ask the operator to raise limits.dossier_files_max",
                self.limits.dossier_files_max
            )));
        }
        Ok((validate::file_name(name)?, validate::text("content_type", content_type, 127, false)?))
    }

    /// A spool file to receive one uploaded file into (deleted when dropped).
    pub async fn new_upload_file(&self) -> Result<SpoolWriter, ServiceError> {
        Ok(self.blobs.spool().create().await?)
    }

    /// Stores one received file from the spool. The spool hashed the bytes as they were
    /// written; the blob store hashes them again as it reads them back.
    pub async fn store_file(&self, name: String, content_type: String, blob: SpooledBlob) -> Result<ArchivedFile, ServiceError> {
        self.blobs.put_file(&blob).await?;
        if let Some(peers) = &self.peer_blobs {
            // Per-node local storage in a cluster: a majority must hold the blob before the
            // dossier that references it is proposed. The copies stream from the store.
            peers.replicate(blob.hash, blob.size_bytes).await.map_err(|error| {
                ServiceError::Unavailable(format!("{error}; the dossier was not recorded, retry when the cluster is healthy"))
            })?;
        }
        Ok(ArchivedFile { name, content_type, size_bytes: blob.size_bytes, sha256: blob.hash })
    }

    /// Records a dossier whose files are all stored. Returns once the record is committed.
    #[tracing::instrument(skip(self, dossier, files), fields(request_id = %dossier.request_id, files = files.len()))]
    pub async fn archive_dossier(&self, caller: &Caller, mut dossier: NewDossier, files: Vec<ArchivedFile>) -> Result<Dossier, ServiceError> {
        self.check_new_dossier(caller, &mut dossier)?;
        if files.is_empty() {
            return Err(ServiceError::InvalidArgument("a dossier needs at least one file".into()));
        }
        dossier.private_fields.sort();
        let request_fingerprint = dossier_fingerprint(&dossier, &files);
        if let Some(outcome) = self.earlier_outcome(&caller.actor, &dossier.request_id, &request_fingerprint).await? {
            return expect_dossier(outcome);
        }
        let record = Dossier {
            id: self.new_dossier_id()?,
            agency_id: dossier.agency_id,
            procedure_code: dossier.procedure_code,
            dossier_number: dossier.dossier_number,
            received_date: dossier.received_date,
            private_fields: dossier.private_fields,
            files,
            archived_at_unix: now_unix(),
        };
        let outcome = self.propose(&caller.actor, &dossier.request_id, request_fingerprint, Command::ArchiveDossier(record)).await?;
        expect_dossier(outcome)
    }

    /// A dossier, to a clerk of its agency.
    pub async fn get_dossier(&self, caller: &Caller, id: &str) -> Result<Dossier, ServiceError> {
        require_role(caller, Role::Clerk, "reading a dossier")?;
        let id = validate::text("dossier_id", id, validate::IDENTIFIER_CHARS_MAX, true)?;
        let id = id.as_str();
        self.read_barrier().await?;
        let dossier = self.state.dossier(id)?.ok_or_else(|| ServiceError::NotFound(format!("dossier {id:?} does not exist")))?;
        if !caller.acts_for_agency(&dossier.agency_id) {
            return Err(ServiceError::PermissionDenied(format!("{} is not a clerk of the dossier's agency", caller.actor)));
        }
        Ok(dossier)
    }

    /// Reads a whole blob that some dossier archived into memory (hash-checked), for
    /// certify and verify, which need the bytes. Refuses blobs over `file_size_bytes_max`
    /// (possible when the limit was lowered after they were archived).
    pub async fn get_blob(&self, hash: &Sha256) -> Result<Bytes, ServiceError> {
        let size_bytes = self
            .state
            .blob_size(hash)?
            .ok_or_else(|| ServiceError::NotFound(format!("no archived file has SHA-256 {hash}")))?;
        if size_bytes > self.limits.file_size_bytes_max {
            return Err(ServiceError::FailedPrecondition(format!(
                "document {hash} has {size_bytes} bytes, over limits.file_size_bytes_max ({}) that certify and verify read into memory; ask the operator to raise the limit",
                self.limits.file_size_bytes_max
            )));
        }
        match self.blobs.get(hash, size_bytes).await {
            Err(crate::archive::ArchiveError::NotFound(_)) if self.peer_blobs.is_some() => {
                self.fetch_from_peers(hash).await?;
                Ok(self.blobs.get(hash, size_bytes).await?)
            }
            other => Ok(other?),
        }
    }

    /// The first bytes of an archived blob (up to [`crate::pdf::SNIFF_BYTES`]), for certify
    /// to tell a scan, whose bytes go into the certified PDF, from any other file, which is
    /// signed from its stored digest without being read. Fetched from a peer first when
    /// this node lacks the blob, as `get_blob` does.
    pub async fn blob_head(&self, hash: &Sha256) -> Result<Bytes, ServiceError> {
        let size_bytes = self
            .state
            .blob_size(hash)?
            .ok_or_else(|| ServiceError::NotFound(format!("no archived file has SHA-256 {hash}")))?;
        let bytes = size_bytes.min(crate::pdf::SNIFF_BYTES);
        match self.blobs.head_bytes(hash, bytes).await {
            Err(crate::archive::ArchiveError::NotFound(_)) if self.peer_blobs.is_some() => {
                self.fetch_from_peers(hash).await?;
                Ok(self.blobs.head_bytes(hash, bytes).await?)
            }
            other => Ok(other?),
        }
    }

    /// A blob the replicated state references but this node lacks (it missed the upload, or
    /// caught up from a snapshot): fetch it from a peer into the spool, check its hash and
    /// size, and keep it (the store re-hashes it from the spool as it writes).
    async fn fetch_from_peers(&self, hash: &Sha256) -> Result<(), ServiceError> {
        let peers = self.peer_blobs.as_ref().expect("checked by the caller");
        let size_bytes = self
            .state
            .blob_size(hash)?
            .ok_or_else(|| ServiceError::NotFound(format!("no archived file has SHA-256 {hash}")))?;
        let received = peers.fetch(*hash, size_bytes).await.map_err(ServiceError::Unavailable)?;
        if &received.hash != hash || received.size_bytes != size_bytes {
            return Err(ServiceError::DataLoss(format!("a peer sent {} bytes that do not hash to {hash}", received.size_bytes)));
        }
        self.blobs.put_file(&received).await?;
        tracing::info!(%hash, size_bytes, "fetched a missing blob from a peer");
        Ok(())
    }

    /// Fetches from peers every archived blob this node has no copy of: after it joined
    /// through a snapshot (a replaced member starts with no blobs), or when an archive's
    /// copies went out while it was down or cut off. Without this, each replacement of a
    /// member drops copies for good, and enough of them lose documents (found by the
    /// 5-node soak).
    ///
    /// Work follows what may be missing, not the archive: the state lists blobs in the
    /// order they arrived (`StateStore::blob_arrivals`) and this node keeps a cursor below
    /// which it holds every blob (`blob_fill_cursor`). A pass checks only the blobs from the
    /// cursor on, [`BLOB_FILL_PAGE`] at a time (one existence check each, absent ones
    /// fetched [`BLOB_FILL_CONCURRENCY`] at a time), and moves the cursor up to the first
    /// blob it could not get. A snapshot install resets the cursor (every blob is checked
    /// once more). One pass runs at a time; a pass stops at `budget` and then says it is
    /// not complete.
    pub async fn fill_missing_blobs(&self, budget: Duration) -> Result<BlobFill, ServiceError> {
        let deadline = tokio::time::Instant::now() + budget;
        if self.peer_blobs.is_none() {
            return Ok(BlobFill { archived: self.state.blob_count()?, complete: true, ..BlobFill::default() });
        }
        let Ok(_pass) = tokio::time::timeout_at(deadline, self.blob_fill.lock()).await else {
            return Ok(BlobFill::default());
        };
        // Blobs are never removed from the state, so every blob counted here is among the
        // arrivals read below, even if more arrive meanwhile.
        let mut fill = BlobFill { archived: self.state.blob_count()?, ..BlobFill::default() };
        let large_fetches = tokio::sync::Semaphore::new(BLOB_FILL_LARGE_CONCURRENCY);
        let mut first_error = None;
        let started_at = self.state.blob_fill_cursor()?;
        let mut next = started_at;
        // Every arrival before `held_below` is held here (or was fetched by this pass).
        let mut held_below: Option<u64> = None;
        loop {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let page = self.state.blob_arrivals(next, BLOB_FILL_PAGE)?;
            let Some(&(last, _)) = page.last() else {
                fill.complete = true;
                break;
            };
            let large = &large_fetches;
            let outcomes: Vec<(u64, Result<bool, String>)> = futures::stream::iter(page)
                .map(|(sequence, hash)| async move {
                    let fetch = async {
                        if self.blobs.contains(&hash).await? {
                            return Ok::<bool, ServiceError>(false);
                        }
                        let is_large = self.state.blob_size(&hash)?.unwrap_or(0) > self.limits.blob_multipart_threshold_bytes;
                        // Acquiring fails only on a closed semaphore; this one is never closed.
                        let _permit = if is_large { large.acquire().await.ok() } else { None };
                        self.fetch_from_peers(&hash).await?;
                        Ok(true)
                    };
                    let outcome = match tokio::time::timeout_at(deadline, fetch).await {
                        Ok(Ok(fetched)) => Ok(fetched),
                        Ok(Err(error)) => Err(format!("{hash}: {error}")),
                        Err(_) => Err(format!("{hash}: the pass ran out of time")),
                    };
                    (sequence, outcome)
                })
                .buffer_unordered(BLOB_FILL_CONCURRENCY)
                .collect()
                .await;
            for (sequence, outcome) in outcomes {
                fill.checked += 1;
                match outcome {
                    Ok(fetched) => fill.fetched += u64::from(fetched),
                    Err(error) => {
                        fill.missing += 1;
                        held_below = Some(held_below.map_or(sequence, |lowest| lowest.min(sequence)));
                        first_error.get_or_insert(error);
                    }
                }
            }
            next = last + 1;
        }
        let cursor = held_below.unwrap_or(next);
        if cursor > started_at {
            self.state.advance_blob_fill_cursor(started_at, cursor)?;
        }
        if let Some(error) = first_error {
            tracing::warn!(missing = fill.missing, %error, "no peer could supply some missing blobs yet");
        }
        Ok(fill)
    }

    /// Stores a blob replica pushed by another node, received into the spool, only if its
    /// bytes hash to `hash`, the key the sender claimed.
    pub async fn store_replica(&self, hash: Sha256, received: SpooledBlob) -> Result<(), ServiceError> {
        if received.hash != hash {
            return Err(ServiceError::InvalidArgument(format!(
                "replica bytes ({} received) do not hash to {hash}; the sender's copy may be damaged or its stream was cut",
                received.size_bytes
            )));
        }
        Ok(self.blobs.put_file(&received).await?)
    }

    /// Opens a blob that some dossier archived for a streamed read; the stream ends with
    /// DATA_LOSS if the bytes do not hash to `hash`. Only a caller allowed to read the
    /// document gets it ([`Kyso::check_may_read_document`]).
    ///
    /// A copy this node lacks is fetched from a peer, except for another node's request
    /// (no fan-out). A node's request also skips the read barrier: it asks for a blob its
    /// own state references, and a node whose state does not know it yet answers
    /// NOT_FOUND and the asker tries another (a refill fetches thousands; a ReadIndex round
    /// each would make it crawl).
    pub async fn open_blob(&self, caller: &Caller, hash: &Sha256) -> Result<BlobStream, ServiceError> {
        let from_node = caller.has(Role::Node);
        if !from_node {
            self.read_barrier().await?;
        }
        if !self.state.blob_known(hash)? {
            return Err(ServiceError::NotFound(format!("no archived file has SHA-256 {hash}")));
        }
        if !from_node {
            self.check_may_read_document(caller, hash)?;
        }
        if !from_node && self.peer_blobs.is_some() && !self.blobs.contains(hash).await? {
            self.fetch_from_peers(hash).await?;
        }
        Ok(self.blobs.open(hash).await?)
    }

    /// Dossier content is read only within an agency: a clerk reads the files its agencies
    /// archived; a signer the files of the agencies its signers sign for, and the
    /// documents it certified; a verifier the files of the agencies it was granted. Nodes
    /// read everything (they hold the copies). Document hashes are public (log, lookup
    /// page), so nothing weaker than this would keep agencies apart.
    pub fn check_may_read_document(&self, caller: &Caller, hash: &Sha256) -> Result<(), ServiceError> {
        if caller.has(Role::Node) {
            return Ok(());
        }
        for agency in self.state.blob_agencies(hash)? {
            if (caller.has(Role::Clerk) || caller.has(Role::Verifier)) && caller.acts_for_agency(&agency) {
                return Ok(());
            }
            if caller.has(Role::Signer) && self.signs_for_agency(caller, &agency)? {
                return Ok(());
            }
        }
        if caller.has(Role::Signer) {
            let certified = self.state.certifications_of(hash)?;
            if certified.iter().any(|certification| caller.acts_as_signer(&certification.signer_id)) {
                return Ok(());
            }
        }
        Err(ServiceError::PermissionDenied(format!(
            "{} may read only documents of its own agencies; document {hash} is not one of them (ask an admin for a grant with kyso access set)",
            caller.actor
        )))
    }

    /// Whether one of the signers the caller acts as is registered for `agency_id`.
    fn signs_for_agency(&self, caller: &Caller, agency_id: &str) -> Result<bool, ServiceError> {
        if caller.signer_ids.iter().any(|id| id == crate::access::ANY) {
            return Ok(self.state.signers()?.iter().any(|signer| signer.may_sign_for(agency_id)));
        }
        for id in &caller.signer_ids {
            if self.state.signer(id)?.is_some_and(|signer| signer.may_sign_for(agency_id)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn new_dossier_id(&self) -> Result<String, ServiceError> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.random, &mut bytes)
            .map_err(|_| ServiceError::Internal("system random source failed".into()))?;
        Ok(hex::encode(bytes))
    }
}

fn dossier_fingerprint(dossier: &NewDossier, files: &[ArchivedFile]) -> [u8; 32] {
    let mut parts: Vec<Vec<u8>> = vec![
        b"archive-dossier".to_vec(),
        dossier.agency_id.as_bytes().to_vec(),
        dossier.procedure_code.as_bytes().to_vec(),
        dossier.dossier_number.as_bytes().to_vec(),
        dossier.received_date.as_bytes().to_vec(),
    ];
    for (key, value) in &dossier.private_fields {
        parts.push(key.as_bytes().to_vec());
        parts.push(value.as_bytes().to_vec());
    }
    for file in files {
        parts.push(file.name.as_bytes().to_vec());
        parts.push(file.sha256.0.to_vec());
    }
    let borrowed: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    fingerprint(&borrowed)
}

fn expect_dossier(outcome: Outcome) -> Result<Dossier, ServiceError> {
    match outcome {
        Outcome::Dossier(dossier) => Ok(dossier),
        Outcome::Rejected(rejection) => Err(rejection.into()),
        other => Err(ServiceError::Internal(format!("archive produced an unexpected outcome: {other:?}"))),
    }
}
