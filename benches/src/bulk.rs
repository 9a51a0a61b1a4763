//! The bulk loader for the scale test: fills a node's data directory with N certifications
//! by applying real `CommandEnvelope`s through `StateStore` (the state machine the node
//! runs), in transactions of a node's own batch size, without gRPC.
//!
//! What is real and what is reused (this is the documented shortcut):
//! - The signer is registered with a `RegisterSigner` command carrying its validated chain
//!   and its key sealed under the data directory's master key, as the service does.
//! - Documents are archived by `ArchiveDossier` commands (8 files per dossier), then each
//!   is certified by its own `Certify` command of one certification, as `Certify` does.
//!   Every record goes through the full apply: request table, certification tables,
//!   document index and a transparency-log leaf.
//! - The first `samples` documents are real 8 KiB documents with their own CMS signature,
//!   and their bytes are written to the blob store: verification of these succeeds for
//!   real. Every other record ("filler") names a distinct document hash whose bytes do not
//!   exist, and carries one real CMS signature reused from a different document, so its
//!   record has the exact size and shape of a real one but would not verify.
//! - Lookup codes and filler hashes are derived from the record's index, so a benchmark
//!   can look up any record without a list of them ([`record_code`], [`record_document`]).
//!
//! The loader remembers how far it got in `data_dir/bench-load.json`, so a data directory
//! grows in stages (10 k, then 100 k, then 1 M) without reloading.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use kyso::archive::BlobStore;
use kyso::crypto::{MasterKey, TrustAnchors};
use kyso::domain::{ArchivedFile, Certification, CertificationKind, Dossier, Sha256, Signer, CERTIFICATION_RECORD_VERSION};
use kyso::lookup::LookupCode;
use kyso::state::command::COMMAND_VERSION;
use kyso::state::{Command, CommandEnvelope, Outcome, StateStore};
use kyso_cluster::{Entry, StateMachine};
use serde::{Deserialize, Serialize};

use crate::fixtures;
use crate::pki::{BenchPki, AGENCY};

/// Commands prepared per round of the loader (signatures made, blobs written).
pub const ENTRIES_PER_BATCH: usize = 10_000;
/// Commands applied per transaction (one fsync each): at most what a node applies in one
/// batch (`DriverConfig::batch_entries_max`), so that the state file's copy-on-write churn
/// (pages freed by a transaction and reused by later ones) is that of a node under full
/// load. Larger transactions free more pages at once and leave a larger state file.
pub fn entries_per_transaction() -> usize {
    kyso_cluster::DriverConfig::default().batch_entries_max
}
/// Files per archived dossier.
pub const FILES_PER_DOSSIER: u64 = 8;
/// Size of a sampled (real, verifiable) document.
pub const SAMPLE_DOCUMENT_SIZE_BYTES: usize = 8 * 1024;
/// Seed of the sampled documents' bytes.
const SAMPLE_SEED: u64 = 0x6b79_736f;
const PROGRESS_FILE: &str = "bench-load.json";

/// How far a data directory was loaded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub records: u64,
    pub samples: u64,
    pub applied_index: u64,
    pub signer_id: String,
    pub load_seconds_total: f64,
}

/// The lookup code of record `index`: 80 bits of SHA-256("kyso-bench-code" || index).
pub fn record_code(index: u64) -> LookupCode {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let digest = ring::digest::digest(&ring::digest::SHA256, &[b"kyso-bench-code".as_slice(), &index.to_be_bytes()].concat());
    let mut bits: u128 = 0;
    for byte in &digest.as_ref()[..10] {
        bits = (bits << 8) | u128::from(*byte);
    }
    let text: String = (0..16).rev().map(|position| ALPHABET[((bits >> (position * 5)) & 0x1f) as usize] as char).collect();
    // 16 characters of the alphabet always parse.
    LookupCode::parse(&text).expect("16 Crockford characters form a lookup code")
}

/// The bytes of sampled document `index`.
pub fn sample_document(index: u64) -> Vec<u8> {
    crate::target_kyso::document(SAMPLE_SEED, index, SAMPLE_DOCUMENT_SIZE_BYTES)
}

/// The document hash of record `index`, given how many records are samples.
pub fn record_document(index: u64, samples: u64) -> Sha256 {
    if index < samples {
        Sha256::digest(&sample_document(index))
    } else {
        Sha256::digest(&[b"kyso-bench-filler".as_slice(), &index.to_be_bytes()].concat())
    }
}

pub struct BulkLoader {
    data_dir: PathBuf,
    store: Arc<StateStore>,
    blobs: BlobStore,
    signer: fixtures::Signer,
    progress: Progress,
    filler_cms: Vec<u8>,
}

impl BulkLoader {
    /// Opens (or creates) the data directory and registers the benchmark signer once.
    /// `samples` is fixed by the first call for a directory.
    pub fn open(data_dir: &Path, pki: &BenchPki, samples: u64) -> anyhow::Result<BulkLoader> {
        std::fs::create_dir_all(data_dir)?;
        let store = Arc::new(StateStore::open(&data_dir.join("state.redb"))?);
        // The node's own layout and default limits: blobs/ and spool/ under the data directory.
        let spool = kyso::archive::Spool::open(&data_dir.join("spool"))?;
        let limits = kyso::archive::WriteLimits::from_limits(&kyso::config::Limits::default());
        let blobs = BlobStore::local(&data_dir.join("blobs"), spool, limits)?;
        let key = pki.signer.signing_key()?;
        let signer = fixtures::Signer { algorithm: key.algorithm(), ca: pki.ca.clone(), leaf: pki.signer.clone(), key };
        let progress_path = data_dir.join(PROGRESS_FILE);
        let progress: Progress = match std::fs::read(&progress_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).context("bench-load.json is unreadable")?,
            Err(_) => Progress { samples, ..Progress::default() },
        };
        // A node started on the directory between stages applies entries of its own (a
        // verification tally when it stops, a leader's no-op): the loader continues after
        // them. Fewer applied entries than the loader wrote means another store.
        let applied = store.applied()?;
        if applied < progress.applied_index {
            bail!(
                "{} says {} entries were applied but the store has only {applied}; use a fresh directory",
                progress_path.display(),
                progress.applied_index
            );
        }
        let mut progress = progress;
        progress.applied_index = applied;
        let filler_cms = signer.cms(b"kyso bench: this signature is reused by filler records", kyso::service::now_unix())?;
        let mut loader = BulkLoader { data_dir: data_dir.to_path_buf(), store, blobs, signer, progress, filler_cms };
        if loader.progress.signer_id.is_empty() {
            loader.progress.signer_id = loader.register_signer(pki)?;
        }
        loader.save_progress()?;
        Ok(loader)
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    fn register_signer(&mut self, pki: &BenchPki) -> anyhow::Result<String> {
        let anchors = TrustAnchors::from_der_list(vec![pki.ca.cert_der.clone()])?;
        let now = kyso::service::now_unix();
        let validated = kyso::crypto::validate_chain(&pki.chain_der(), &anchors, now)?;
        let id = hex::encode(validated.fingerprint_sha256);
        let master = MasterKey::load_or_create(&self.data_dir.join("master.key"))?;
        let sealed = kyso::crypto::seal(&master, id.as_bytes(), &pki.signer.key_pkcs8_der)?;
        let signer = Signer {
            id: id.clone(),
            name: "Nguyễn Văn Bench".into(),
            title: "Chủ tịch UBND xã Bench".into(),
            agency_ids: vec![AGENCY.into()],
            subject: validated.subject,
            issuer: validated.issuer,
            serial_hex: validated.serial_hex,
            not_before_unix: validated.not_before_unix,
            not_after_unix: validated.not_after_unix,
            key_algorithm: validated.algorithm.to_string(),
            chain_der: validated.chain_der,
            sealed_key: Some(sealed),
            registered_at_unix: now,
        };
        let envelope = envelope("bulk-signer".into(), Command::RegisterSigner(signer));
        self.apply(vec![envelope.encode()])?;
        Ok(id)
    }

    /// Loads records until the directory holds `target` certifications; returns the
    /// seconds it took.
    pub async fn load_to(&mut self, target: u64) -> anyhow::Result<f64> {
        let began = Instant::now();
        while self.progress.records < target {
            let first = self.progress.records;
            // Whole dossiers per batch: FILES_PER_DOSSIER certifications + one dossier each.
            let per_batch = (ENTRIES_PER_BATCH as u64 / (FILES_PER_DOSSIER + 1)) * FILES_PER_DOSSIER;
            let last = (first + per_batch).min(target);
            let commands = self.batch(first, last).await?;
            self.apply(commands)?;
            self.progress.records = last;
            self.save_progress()?;
        }
        let seconds = began.elapsed().as_secs_f64();
        self.progress.load_seconds_total += seconds;
        self.save_progress()?;
        Ok(seconds)
    }

    /// Commands for records `first..last`: a dossier per FILES_PER_DOSSIER documents, then
    /// one Certify command per document.
    async fn batch(&self, first: u64, last: u64) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut commands = Vec::new();
        let now = kyso::service::now_unix();
        let mut dossier_start = first;
        while dossier_start < last {
            let dossier_end = (dossier_start + FILES_PER_DOSSIER).min(last);
            let mut files = Vec::new();
            let mut certifications = Vec::new();
            for index in dossier_start..dossier_end {
                let (file, certification) = self.record(index, now).await?;
                files.push(file);
                certifications.push(certification);
            }
            let dossier = Dossier {
                id: format!("bulk-{dossier_start:010}"),
                agency_id: AGENCY.into(),
                procedure_code: "2.000815".into(),
                dossier_number: format!("HS-BULK-{dossier_start}"),
                received_date: "2026-11-24".into(),
                private_fields: vec![("applicant_name".into(), "Lê Văn Bench".into())],
                files,
                archived_at_unix: now,
            };
            commands.push(envelope(format!("bulk-dossier-{dossier_start}"), Command::ArchiveDossier(dossier)).encode());
            for certification in certifications {
                let request_id = format!("bulk-certify-{}", certification.lookup_code.as_str());
                commands.push(envelope(request_id, Command::Certify(vec![certification])).encode());
            }
            dossier_start = dossier_end;
        }
        Ok(commands)
    }

    async fn record(&self, index: u64, now: i64) -> anyhow::Result<(ArchivedFile, Certification)> {
        let samples = self.progress.samples;
        let document_sha256 = record_document(index, samples);
        let (size_bytes, cms_der) = if index < samples {
            let content = sample_document(index);
            let cms = self.signer.cms(&content, now)?;
            self.blobs.put(&document_sha256, Bytes::from(content)).await?;
            (SAMPLE_DOCUMENT_SIZE_BYTES as u64, cms)
        } else {
            // A signature is recorded once: each filler gets its own bytes (the end of the
            // signature value carries the index; fillers are never verified).
            let mut cms = self.filler_cms.clone();
            let tail = cms.len() - 8;
            cms[tail..].copy_from_slice(&index.to_be_bytes());
            (SAMPLE_DOCUMENT_SIZE_BYTES as u64, cms)
        };
        let file = ArchivedFile {
            name: format!("ban-sao-{index}.pdf"),
            content_type: "application/pdf".into(),
            size_bytes,
            sha256: document_sha256,
        };
        let certification = Certification {
            version: CERTIFICATION_RECORD_VERSION,
            lookup_code: record_code(index),
            document_sha256,
            kind: CertificationKind::CertifiedCopy,
            agency_id: AGENCY.into(),
            signer_id: self.progress.signer_id.clone(),
            dossier_id: String::new(),
            signed_at_unix: now,
            cms_der,
            revocation: None,
            delivered_pdf: None,
        };
        Ok((file, certification))
    }

    /// Applies encoded commands as consecutive log entries, in transactions of
    /// [`entries_per_transaction`]; any rejection is a loader bug.
    fn apply(&mut self, commands: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let mut commands = commands;
        while commands.len() > entries_per_transaction() {
            let rest = commands.split_off(entries_per_transaction());
            self.apply_transaction(commands)?;
            commands = rest;
        }
        self.apply_transaction(commands)
    }

    fn apply_transaction(&mut self, commands: Vec<Vec<u8>>) -> anyhow::Result<()> {
        let first = self.progress.applied_index + 1;
        let entries: Vec<Entry> = commands
            .into_iter()
            .enumerate()
            .map(|(offset, data)| Entry { index: first + offset as u64, term: 1, data: Bytes::from(data) })
            .collect();
        let count = entries.len() as u64;
        let responses = StateMachine::apply(self.store.as_ref(), &entries)?;
        for (entry, response) in entries.iter().zip(responses) {
            if let Outcome::Rejected(rejection) = Outcome::decode(&response).map_err(|error| anyhow::anyhow!("{error}"))? {
                bail!("the state machine rejected bulk entry {}: {rejection}", entry.index);
            }
        }
        self.progress.applied_index += count;
        Ok(())
    }

    fn save_progress(&self) -> anyhow::Result<()> {
        let path = self.data_dir.join(PROGRESS_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&self.progress)?).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn envelope(request_id: String, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        version: COMMAND_VERSION,
        request_fingerprint: kyso::service::fingerprint(&[b"kyso-bench-bulk", request_id.as_bytes()]),
        request_id,
        issued_at_unix: kyso::service::now_unix(),
        command,
        actor: kyso::access::Actor::local("kyso-bench-bulk"),
    }
}

/// Reads how far a data directory was loaded.
pub fn read_progress(data_dir: &Path) -> anyhow::Result<Progress> {
    let path = data_dir.join(PROGRESS_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}; bulk-load the directory first", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Makes a stopped, loaded data directory the founding (only) voter of a new Raft cluster,
/// as `kyso restore --node-id` does with a backup: a Raft log that starts right after the
/// state's applied index. Returns that index. Other members join it with `join = true` and
/// AddNode, receiving the whole state as a streamed snapshot (the catch-up benchmark).
pub fn seed_cluster(data_dir: &Path, member: kyso_cluster::raft::PeerAddress) -> anyhow::Result<u64> {
    let applied = StateStore::open(&data_dir.join("state.redb"))?.applied()?;
    kyso_cluster::raft::seed_restored_log(&data_dir.join("raft"), applied, &member)
        .map_err(|error| anyhow::anyhow!("cannot write the Raft log of {}: {error}", data_dir.display()))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyso::crypto::KeyAlgorithm;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loaded_records_are_found_by_code_and_by_hash_and_samples_verify() {
        let dir = tempfile::tempdir().unwrap();
        let pki = BenchPki::create(&dir.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
        let data_dir = dir.path().join("data");
        let mut loader = BulkLoader::open(&data_dir, &pki, 5).unwrap();
        loader.load_to(20).await.unwrap();
        drop(loader);
        // A second stage continues where the first stopped.
        let mut loader = BulkLoader::open(&data_dir, &pki, 5).unwrap();
        loader.load_to(30).await.unwrap();
        assert_eq!(loader.progress().records, 30);
        let store = loader.store();
        assert_eq!(store.tlog_size().unwrap(), 31, "one leaf per certification plus the signer");
        for index in [0, 4, 5, 29] {
            let certification = store.certification(&record_code(index)).unwrap().expect("found by code");
            assert_eq!(certification.document_sha256, record_document(index, 5));
            assert_eq!(store.certifications_of(&record_document(index, 5)).unwrap().len(), 1);
        }
        let sample = store.certification(&record_code(4)).unwrap().unwrap();
        kyso::crypto::verify_detached(&sample.cms_der, &sample_document(4)).expect("a sample's signature verifies");
        let filler = store.certification(&record_code(12)).unwrap().unwrap();
        assert!(filler.cms_der.len().abs_diff(sample.cms_der.len()) < 8, "fillers have a real record's size");
        assert!(store.certification(&record_code(30)).unwrap().is_none());
        let applied = store.applied().unwrap();
        assert_eq!(applied, loader.progress().applied_index);
        drop(loader);

        let member = || kyso_cluster::raft::PeerAddress { id: 1, raft_addr: "127.0.0.1:1".into(), client_addr: "127.0.0.1:2".into() };
        assert_eq!(seed_cluster(&data_dir, member()).unwrap(), applied, "the log starts after the state's applied index");
        let again = seed_cluster(&data_dir, member()).unwrap_err().to_string();
        assert!(again.contains("already holds a Raft log"), "a second seed is refused: {again}");
    }
}
