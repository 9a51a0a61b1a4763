//! The state machine on redb: tables, deterministic apply, and the queries services read.
//!
//! Each batch of committed entries is applied in ONE write transaction that also records
//! the last applied index, then committed durably (fsync): a crash leaves either the whole
//! batch or none of it, and an entry is never applied twice across restarts.

use std::path::Path;

use bytes::Bytes;
use kyso_cluster::{Entry, StateMachine, StateMachineError};
use redb::{ReadableTableMetadata, 
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable, TableDefinition,
    WriteTransaction,
};

use super::command::{AuditEvent, Command, CommandEnvelope, Outcome, Rejection};
use super::leaf::{LogEvent, LogLeaf};
use super::kept::{Generation, Kept};
use super::log_hashes::LogHashes;
use super::packing::{self, CertificationRow, StoredCertification};
use crate::access::{Actor, Principal};
use crate::tlog;
use crate::domain::{AgencySeal, Certification, Dossier, KeptCrl, Revocation, Sha256, Signer, SignerRevocation, SignerStatus};
use crate::lookup::LookupCode;
use crate::statistics::{DayStatistics, Summary, VerificationCount};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Request outcomes for deduplication. Keys are `caller <actor hex> <request id>` (request
/// ids are scoped per caller: printable ASCII without spaces, so the forms never meet) ->
/// `RequestRow`; rows written before scoping are keyed by the bare request id ->
/// `(fingerprint, Outcome)` and are only read, never written again.
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
/// Request rows still holding their full outcome, by the time they were issued:
/// (issued_at_unix, key) -> (). Derived from REQUESTS (rebuilt on open and after a
/// snapshot install), never part of a snapshot or of the state digest.
const REQUEST_DETAILS: TableDefinition<(i64, &str), ()> = TableDefinition::new("request_details");
const DOSSIERS: TableDefinition<&str, &[u8]> = TableDefinition::new("dossiers");
const SIGNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("signers");
/// Certifications keyed by the SHA-256 of their lookup code (see `LookupCode::index_key`).
const CERTIFICATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("certifications");
const CERTIFICATIONS_BY_DOCUMENT: MultimapTableDefinition<&[u8], &[u8]> =
    MultimapTableDefinition::new("certifications_by_document");
/// Blobs referenced by a dossier: hash -> size in bytes.
const BLOBS: TableDefinition<&[u8], u64> = TableDefinition::new("blobs");
/// Merkle log before record layout 3: hashes of complete subtrees, one to a row,
/// (level, index) -> 32 bytes. Read only by the migration, which empties and deletes it.
const TLOG_NODES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tlog_nodes");
/// Merkle log: hashes of complete subtrees, [`NODES_PER_BUCKET`] to a row, (level, index /
/// NODES_PER_BUCKET) -> the hashes of that run of nodes, 32 bytes each, in index order.
/// Nodes are only ever appended at the end of their level, so a row grows until full and
/// never changes after; a full row (4,064 bytes) fills one 4 KiB page by itself. One row
/// per node left the table's pages half empty: redb splits a full page in the middle, and
/// in an append-only table the left half is never filled again.
const TLOG_NODE_BUCKETS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tlog_node_buckets");
/// Log nodes per row of [`TLOG_NODE_BUCKETS`].
pub const NODES_PER_BUCKET: u64 = 127;
/// Merkle log before record layout 3: leaf index -> the leaf's stored form, one to a row.
/// Read only by the migration, which empties and deletes it.
const TLOG_LEAVES: TableDefinition<u64, &[u8]> = TableDefinition::new("tlog_leaves");
/// Merkle log: consecutive leaves in rows of at most [`LEAF_ROW_BYTES_MAX`] bytes, index
/// of the row's first leaf -> each leaf's stored form (`state::packing`) with its length
/// (u32 big-endian) before it. Leaves are only appended: the last row grows until the
/// next leaf would not fit, then a new row starts, so every row but the last fills one
/// 4 KiB page (one row per leaf left these pages about half empty, for the reason given
/// at [`TLOG_NODE_BUCKETS`]). Where rows end depends only on the leaves' stored sizes, so
/// every replica cuts them alike.
const TLOG_LEAF_BUCKETS: TableDefinition<u64, &[u8]> = TableDefinition::new("tlog_leaf_buckets");
/// The largest row of [`TLOG_LEAF_BUCKETS`] that grows by another leaf: a redb leaf page
/// of 4,096 bytes holds one u64 key and a value of 4,080 bytes.
const LEAF_ROW_BYTES_MAX: usize = 4_080;
/// Lookup-code key -> index of the certification's leaf. Written before the layout of
/// issue 16 only: `certifications` rows hold the index since, and migration empties it.
const CERTIFICATION_LEAVES: TableDefinition<&[u8], u64> = TableDefinition::new("certification_leaves");
/// Agencies whose dossiers hold a blob: hash -> agency id. Derived from DOSSIERS (kept in
/// the same apply transaction, rebuilt on open when missing and after a snapshot install):
/// never part of a snapshot or of the state digest.
const BLOB_AGENCIES: MultimapTableDefinition<&[u8], &str> = MultimapTableDefinition::new("blob_agencies");
/// Blobs in the order they first appeared in the state: sequence number -> hash. Derived
/// from BLOBS (written by the same apply, rebuilt in hash order on open when missing and
/// after a snapshot install), never part of a snapshot or of the state digest. The
/// background refill walks it from its cursor ([`BLOB_FILL_CURSOR`]), so a pass checks the
/// blobs that arrived since the last one and those still missing, not the whole archive.
const BLOB_ARRIVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("blob_arrivals");
/// Security records, by key prefix: `principal/<certificate sha256 hex>` -> Principal,
/// `signer-status/<signer id>` -> SignerStatus, `signature/<sha256 hex of a CMS>` -> the
/// lookup code of the certification that recorded it (replay detection),
/// `certificate/<sha256 hex>` -> a certificate's DER, kept once for every packed leaf that
/// carries it (`state::packing`).
const SECURITY: TableDefinition<&str, &[u8]> = TableDefinition::new("security");
/// The agencies' registers (sổ chứng thực): `last/<agency>/<year>` -> the last number
/// given, `entry/<agency>/<year>/<number, 12 digits>` -> the lookup code it went to;
/// and their seals: `seal/<agency>` -> AgencySeal.
const REGISTER: TableDefinition<&str, &[u8]> = TableDefinition::new("register");
/// Statistics: (Vietnam day, agency id) -> `statistics::DayStatistics`. Updated while
/// commands apply, by the days of the commands' own timestamps; part of snapshots and of
/// the state digest (verification tallies exist nowhere else).
const STATISTICS: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("statistics");

fn register_last_key(agency_id: &str, year: i64) -> String {
    format!("last/{agency_id}/{year}")
}
fn agency_seal_key(agency_id: &str) -> String {
    format!("seal/{agency_id}")
}
fn register_entry_key(agency_id: &str, year: i64, number: u64) -> String {
    format!("entry/{agency_id}/{year}/{number:012}")
}

fn principal_key(hash: &Sha256) -> String {
    format!("principal/{hash}")
}
fn signer_status_key(signer_id: &str) -> String {
    format!("signer-status/{signer_id}")
}
fn kept_crl_key(issuer_name_sha256: &Sha256) -> String {
    format!("crl/{issuer_name_sha256}")
}
fn signature_key(cms_der: &[u8]) -> String {
    format!("signature/{}", Sha256::digest(cms_der))
}

const APPLIED_INDEX: &str = "applied_index";
const TLOG_SIZE: &str = "tlog_size";
/// Set once BLOB_AGENCIES holds every dossier's files (data directories from before it
/// existed are indexed on first open).
const BLOB_AGENCIES_INDEXED: &str = "blob_agencies_indexed";
/// Set once REQUEST_DETAILS indexes every request row.
const REQUEST_DETAILS_INDEXED: &str = "request_details_indexed";
/// Set once BLOB_ARRIVALS lists every blob.
const BLOB_ARRIVALS_INDEXED: &str = "blob_arrivals_indexed";
/// This node's refill cursor: every blob that arrived before this sequence number is held
/// in its own storage. Local, not replicated; reset when a snapshot replaces the state.
const BLOB_FILL_CURSOR: &str = "blob_fill_cursor";
/// The record layout the tables hold: absent (or 1) before issue 16, [`RECORD_LAYOUT`] since.
const RECORD_LAYOUT_KEY: &str = "record_layout";
/// Layout 2: each record stored once (`state::packing`).
const RECORD_LAYOUT_EACH_RECORD_ONCE: u64 = 2;
/// Layout 3: layout 2, with request rows naming their dossier by id and the log's leaves
/// and nodes kept many to a row ([`TLOG_LEAF_BUCKETS`], [`TLOG_NODE_BUCKETS`]).
pub const RECORD_LAYOUT: u64 = 3;
/// Rows rewritten per transaction while a data directory is migrated (few in tests, so
/// that they migrate in several transactions).
const MIGRATION_ROWS_PER_TRANSACTION: usize = if cfg!(test) { 100 } else { 20_000 };
/// Set once STATISTICS counts every record (data directories from before it are counted
/// from their dossiers and certifications on first open; verifications start at zero).
const STATISTICS_INDEXED: &str = "statistics_indexed";

/// How long a request row keeps its full outcome (a retry within it gets the same answer,
/// private dossier fields included). After it a row keeps what deduplication needs: the
/// fingerprint and the outcome without private fields or sealed keys. Measured by the
/// commands' own issue times, so every replica strips the same rows at the same entry.
pub const REQUEST_DETAILS_RETENTION_SECONDS: i64 = 30 * 86_400;
/// Rows stripped while applying one entry, so apply stays bounded however many expire.
const REQUEST_DETAILS_STRIPPED_PER_ENTRY_MAX: usize = 64;

/// A request's stored outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RequestRow {
    fingerprint: [u8; 32],
    issued_at_unix: i64,
    /// False once the retention passed and the outcome lost its private details.
    detailed: bool,
    outcome: Outcome,
}

/// The key of a request row: request ids belong to the caller that chose them.
pub fn request_key(actor: &Actor, request_id: &str) -> String {
    format!("caller {} {request_id}", hex::encode(actor.fingerprint_part()))
}

fn is_scoped_request_key(key: &str) -> bool {
    key.starts_with("caller ")
}

/// One certification as a verify reads it ([`StateStore::verify_read`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyRecord {
    pub certification: Certification,
    /// `None` only if the state is corrupt (a certification names an unknown signer).
    pub signer: Option<Signer>,
    pub signer_status: SignerStatus,
    /// Inclusion at the current tree size; `None` for a record that predates the log, or
    /// when the read was asked to leave proofs out.
    pub proof: Option<LogProof>,
}

/// Whether a verify read computes each certification's inclusion proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proofs {
    Included,
    /// Left out: no inclusion proof is made, so the log's node hashes are not read (the
    /// certifications themselves still come from their log leaves).
    Left,
}

/// A leaf with its audit path to the root of a tree of `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub root: [u8; 32],
    pub leaf_data: Vec<u8>,
    pub audit_path: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store failed: {0}")]
    Storage(String),
    #[error("state record is corrupt: {0}")]
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for StateError {
    fn from(error: E) -> Self {
        StateError::Storage(error.into().to_string())
    }
}

/// Logs redb's repair of a file that was not closed cleanly, at most every tenth of the
/// way, so that an operator waiting for a large node to start sees why and how far along
/// it is (the node serves nothing until the store is open).
struct RepairLog {
    path: String,
    /// Whether the file existed before this open: a new one is never logged.
    existed: bool,
    /// The last tenth logged, plus one; 0 while no repair ran.
    logged: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RepairLog {
    fn new(path: &Path, existed: bool) -> RepairLog {
        RepairLog { path: path.display().to_string(), existed, logged: Default::default() }
    }

    fn callback(&self) -> impl Fn(&mut redb::RepairSession) + 'static {
        let (path, existed, logged) = (self.path.clone(), self.existed, self.logged.clone());
        move |session: &mut redb::RepairSession| {
            let tenth = (session.progress().clamp(0.0, 1.0) * 10.0) as u64 + 1;
            if logged.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth && existed {
                tracing::warn!(path = %path, percent = (tenth - 1) * 10, "repairing the state store after an unclean shutdown: redb walks the whole file before the node can serve");
            }
        }
    }

    fn happened(&self) -> bool {
        self.logged.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

/// redb's own default read cache.
pub const DEFAULT_CACHE_SIZE_BYTES: usize = 1024 * 1024 * 1024;

/// Every write transaction of the state store: with redb's quick repair, each commit also
/// saves the allocator's state (and commits in two phases), so that opening a file left
/// unclean by a crash or a power loss reads that state instead of walking the whole file
/// (105.7 s at 7.13 M certifications without it; BENCHMARKS.md "crash restart").
fn begin_write(db: &Database) -> Result<WriteTransaction, StateError> {
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(true);
    Ok(txn)
}

/// How a Raft member's applies reach the disk. The Raft log already holds every committed
/// entry durably on a majority, so an apply may commit without fsync: after a crash the
/// state comes back at its last durable commit and the driver applies the log's entries
/// after it again (apply is deterministic). A durable commit is made at least every
/// [`PERSIST_INTERVAL`] and every [`PERSIST_ENTRIES_MAX`] entries, as etcd commits its
/// backend (100 ms or 10,000 writes), and the log is compacted only up to
/// [`StateMachine::durable_index`]. A standalone node has no log: each of its applies is
/// durable before it answers.
pub const PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// See [`PERSIST_INTERVAL`].
pub const PERSIST_ENTRIES_MAX: u64 = 10_000;

/// How far the state is applied, and how far of that is durable.
#[derive(Debug)]
struct Persistence {
    applied: u64,
    durable: u64,
    durable_at: std::time::Instant,
    volatile_entries: u64,
}

impl Persistence {
    fn durable_at(index: u64) -> Self {
        Persistence { applied: index, durable: index, durable_at: std::time::Instant::now(), volatile_entries: 0 }
    }

    fn due(&self, more_entries: u64) -> bool {
        self.volatile_entries + more_entries >= PERSIST_ENTRIES_MAX || self.durable_at.elapsed() >= PERSIST_INTERVAL
    }
}

/// Whether an apply's commit is durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    Durable,
    /// Without fsync: the Raft log holds the entries (see [`PERSIST_INTERVAL`]).
    Volatile,
}

/// The replicated state of one node.
pub struct StateStore {
    db: std::sync::Arc<Database>,
    /// The Raft snapshot staging area's in-process state (see `snapshot`).
    staging: std::sync::Arc<std::sync::Mutex<snapshot::StagingState>>,
    /// TEST ONLY: commit without fsync (see `crate::fault::skips_fsync`).
    skip_fsync: bool,
    /// How long redb repaired the file on open, when it was not closed cleanly (a crash
    /// or a power loss): it walks the whole file, so this grows with the state.
    repaired_on_open: Option<std::time::Duration>,
    persistence: std::sync::Mutex<Persistence>,
    /// What verify reads keep between them (`kept`): the generation every cache checks,
    /// the signers' reference leaves unpacked, the log's node and range hashes
    /// (`log_hashes`), certifications decoded from their log leaves, and signers decoded
    /// from their rows.
    generation: Generation,
    references: std::sync::Arc<ReferenceLeaves>,
    log_hashes: LogHashes,
    leaf_records: std::sync::Arc<LeafRecords>,
    signers: Kept<String, std::sync::Arc<KeptSigner>>,
}

impl StateStore {
    /// Opens (or creates) the store at `path`.
    /// Opens (or creates) the store with redb's default read cache (1 GiB).
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        Self::open_with_cache(path, DEFAULT_CACHE_SIZE_BYTES)
    }

    /// Opens (or creates) the store; redb's page cache holds at most `cache_size_bytes`,
    /// which bounds the node's memory however many records the store holds.
    pub fn open_with_cache(path: &Path, cache_size_bytes: usize) -> Result<StateStore, StateError> {
        let existed = std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > 0);
        let repair = RepairLog::new(path, existed);
        let opened_at = std::time::Instant::now();
        let db = redb::Builder::new().set_cache_size(cache_size_bytes).set_repair_callback(repair.callback()).create(path)?;
        // redb takes a file it has just created for one that needs repairing (it has no
        // saved allocator state yet); only a file that existed was left unclean.
        let repaired_on_open = (existed && repair.happened()).then(|| opened_at.elapsed());
        if let Some(took) = repaired_on_open {
            tracing::warn!(path = %path.display(), seconds = took.as_secs_f64(), "the state store was not closed cleanly (crash or power loss); redb checked and repaired it on open");
        }
        let txn = begin_write(&db)?;
        {
            txn.open_table(META)?;
            txn.open_table(REQUESTS)?;
            txn.open_table(DOSSIERS)?;
            txn.open_table(SIGNERS)?;
            txn.open_table(CERTIFICATIONS)?;
            txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
            txn.open_table(BLOBS)?;
            txn.open_table(TLOG_NODE_BUCKETS)?;
            txn.open_table(REGISTER)?;
            txn.open_table(TLOG_LEAF_BUCKETS)?;
            txn.open_table(CERTIFICATION_LEAVES)?;
            txn.open_table(SECURITY)?;
            txn.open_multimap_table(BLOB_AGENCIES)?;
            txn.open_table(REQUEST_DETAILS)?;
            txn.open_table(STATISTICS)?;
            txn.open_table(BLOB_ARRIVALS)?;
            let earlier_leaves = match txn.list_tables()?.any(|table| redb::TableHandle::name(&table) == redb::TableHandle::name(&TLOG_LEAVES)) {
                true => !txn.open_table(TLOG_LEAVES)?.is_empty()?,
                false => false,
            };
            if txn.open_table(META)?.get(RECORD_LAYOUT_KEY)?.is_none() && !earlier_leaves {
                // A fresh store starts in the current layout.
                txn.open_table(META)?.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT)?;
            }
        }
        txn.commit()?;
        let generation = Generation::default();
        let store = StateStore {
            db: std::sync::Arc::new(db),
            staging: Default::default(),
            skip_fsync: false,
            repaired_on_open,
            persistence: std::sync::Mutex::new(Persistence::durable_at(0)),
            references: std::sync::Arc::new(Kept::new(&generation, REFERENCE_LEAVES_KEPT)),
            log_hashes: LogHashes::new(&generation),
            leaf_records: std::sync::Arc::new(Kept::new(&generation, LEAF_RECORDS_KEPT)),
            signers: Kept::new(&generation, SIGNERS_KEPT),
            generation,
        };
        store.migrate_record_layout()?;
        store.index_derived_tables()?;
        // What a file holds on open is what its last durable commit wrote.
        store.committed_durably(store.applied()?);
        Ok(store)
    }

    /// Builds each derived table that is not marked as complete (data directories from
    /// before it, or a backup of an earlier layout just restored and migrated).
    fn index_derived_tables(&self) -> Result<(), StateError> {
        let txn = begin_write(&self.db)?;
        {
            let indexed = txn.open_table(META)?.get(BLOB_AGENCIES_INDEXED)?.is_some();
            if !indexed {
                rebuild_blob_agencies(&txn)?;
            }
            let indexed = txn.open_table(META)?.get(BLOB_ARRIVALS_INDEXED)?.is_some();
            if !indexed {
                rebuild_blob_arrivals(&txn)?;
            }
            let indexed = txn.open_table(META)?.get(REQUEST_DETAILS_INDEXED)?.is_some();
            if !indexed {
                rebuild_request_details(&txn)?;
            }
            let indexed = txn.open_table(META)?.get(STATISTICS_INDEXED)?.is_some();
            if !indexed {
                count_statistics_of_records(&txn)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Rewrites a data directory from before issue 16 into the current record layout, a
    /// bounded number of rows per transaction (a crash resumes where it stopped: rows
    /// already rewritten are recognised by their first byte). Certification records
    /// become rows naming their leaf, certification leaves are packed, and remembered
    /// outcomes name their certifications by code. Logs its progress.
    pub fn migrate_record_layout(&self) -> Result<(), StateError> {
        let layout = {
            let txn = self.db.begin_read()?;
            txn.open_table(META)?.get(RECORD_LAYOUT_KEY)?.map(|value| value.value()).unwrap_or(1)
        };
        if layout < RECORD_LAYOUT_EACH_RECORD_ONCE {
            self.migrate_to_each_record_once()?;
        }
        if layout < RECORD_LAYOUT {
            self.migrate_to_layout_3()?;
        }
        Ok(())
    }

    /// Layout 1 to 2: each record stored once (see [`Self::migrate_record_layout`]).
    fn migrate_to_each_record_once(&self) -> Result<(), StateError> {
        let started = std::time::Instant::now();
        tracing::info!("migrating the state store to record layout {RECORD_LAYOUT_EACH_RECORD_ONCE} (each record stored once)");
        let mut rewritten = [0u64; 3];
        // 1. Leaves: certification leaves are packed.
        let mut next_leaf = 0u64;
        loop {
            let txn = begin_write(&self.db)?;
            let mut done = true;
            {
                // Layouts 1 and 2 keep one leaf to a row.
                let mut leaves = Leaves { table: txn.open_table(TLOG_LEAVES)?, one_per_row: true, references: None };
                let mut security = txn.open_table(SECURITY)?;
                let mut batch = Vec::new();
                for row in leaves.table.range(next_leaf..)?.take(MIGRATION_ROWS_PER_TRANSACTION) {
                    let (index, value) = row?;
                    batch.push((index.value(), value.value().to_vec()));
                }
                done = done && batch.len() < MIGRATION_ROWS_PER_TRANSACTION;
                for (index, stored) in batch {
                    next_leaf = index + 1;
                    if matches!(stored.first(), Some(&packing::PACKED_LEAF | &packing::DELTA_LEAF)) {
                        continue;
                    }
                    let Ok(LogLeaf { event: LogEvent::Certification(certification), .. }) = LogLeaf::decode(&stored) else { continue };
                    let packed = pack_certification_leaf(&leaves, &mut security, index, &stored, &certification)?;
                    if packed != stored {
                        leaves.table.insert(index, packed.as_slice())?;
                        rewritten[0] += 1;
                    }
                }
            }
            txn.commit()?;
            if done {
                break;
            }
        }
        // 2. Certifications: rows naming their leaf.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let txn = begin_write(&self.db)?;
            let mut done = true;
            {
                let mut table = txn.open_table(CERTIFICATIONS)?;
                let leaves = txn.open_table(CERTIFICATION_LEAVES)?;
                let mut batch = Vec::new();
                let range = match &after {
                    Some(key) => table.range::<&[u8]>((std::ops::Bound::Excluded(key.as_slice()), std::ops::Bound::Unbounded))?,
                    None => table.range::<&[u8]>(..)?,
                };
                for row in range.take(MIGRATION_ROWS_PER_TRANSACTION) {
                    let (key, value) = row?;
                    batch.push((key.value().to_vec(), value.value().to_vec()));
                }
                done = done && batch.len() < MIGRATION_ROWS_PER_TRANSACTION;
                for (key, value) in batch {
                    after = Some(key.clone());
                    let StoredCertification::Full(certification) = decode_certification_value(&value)? else { continue };
                    // Kept whole when no leaf is known for it (nothing else holds it then).
                    let Some(leaf_index) = leaves.get(key.as_slice())?.map(|value| value.value()) else { continue };
                    let row = CertificationRow { leaf_index, revocation: certification.revocation };
                    table.insert(key.as_slice(), row.encode().as_slice())?;
                    rewritten[1] += 1;
                }
            }
            txn.commit()?;
            if done {
                break;
            }
        }
        // 3. Remembered outcomes: certifications by code (and dossiers by id).
        rewritten[2] = self.compact_request_rows()?;
        let txn = begin_write(&self.db)?;
        {
            // Every index CERTIFICATION_LEAVES held now sits in its certification's row,
            // except for records kept whole (none of them has an entry there).
            let certifications = txn.open_table(CERTIFICATIONS)?;
            let leaves = txn.open_table(CERTIFICATION_LEAVES)?;
            let mut still_needed = Vec::new();
            for row in leaves.iter()? {
                let (key, value) = row?;
                if let Some(stored) = certifications.get(key.value())? {
                    if let StoredCertification::Full(_) = decode_certification_value(stored.value())? {
                        still_needed.push((key.value().to_vec(), value.value()));
                    }
                }
            }
            drop(leaves);
            txn.delete_table(CERTIFICATION_LEAVES)?;
            let mut leaves = txn.open_table(CERTIFICATION_LEAVES)?;
            for (key, index) in still_needed {
                leaves.insert(key.as_slice(), index)?;
            }
            txn.open_table(META)?.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT_EACH_RECORD_ONCE)?;
            // Derived: re-listed from the rewritten rows.
            txn.delete_table(REQUEST_DETAILS)?;
            rebuild_request_details(&txn)?;
        }
        txn.commit()?;
        tracing::info!(
            leaves_packed = rewritten[0],
            certifications = rewritten[1],
            request_rows = rewritten[2],
            seconds = started.elapsed().as_secs_f64(),
            "state store migrated to record layout {RECORD_LAYOUT_EACH_RECORD_ONCE}"
        );
        Ok(())
    }

    /// Rewrites request rows that still copy a record into rows that name it
    /// ([`compact_outcome`]), a bounded number per transaction; returns how many changed.
    /// Rows already compact are left as they are, so a crash resumes it.
    fn compact_request_rows(&self) -> Result<u64, StateError> {
        let mut rewritten = 0u64;
        let mut after: Option<String> = None;
        loop {
            let txn = begin_write(&self.db)?;
            let mut done = true;
            {
                let mut requests = txn.open_table(REQUESTS)?;
                let mut batch = Vec::new();
                let range = match &after {
                    Some(key) => requests.range::<&str>((std::ops::Bound::Excluded(key.as_str()), std::ops::Bound::Unbounded))?,
                    None => requests.range::<&str>(..)?,
                };
                for row in range.take(MIGRATION_ROWS_PER_TRANSACTION) {
                    let (key, value) = row?;
                    batch.push((key.value().to_string(), value.value().to_vec()));
                }
                done = done && batch.len() < MIGRATION_ROWS_PER_TRANSACTION;
                for (key, value) in batch {
                    after = Some(key.clone());
                    let rewritten_row = if is_scoped_request_key(&key) {
                        let mut row: RequestRow = decode(&value)?;
                        // Rows with nothing to strip are no longer marked detailed (a row
                        // naming its dossier already says whether the answer has them).
                        let names_dossier = matches!(row.outcome, Outcome::DossierById(_));
                        let detailed = row.detailed && (names_dossier || has_private_details(&row.outcome));
                        let compact = compact_outcome(&row.outcome);
                        if compact.is_none() && detailed == row.detailed {
                            continue;
                        }
                        row.outcome = compact.unwrap_or(row.outcome);
                        row.detailed = detailed;
                        encode(&row)
                    } else {
                        // Rows without a retention flag keep their dossiers whole.
                        let (fingerprint, outcome): ([u8; 32], Outcome) = decode(&value)?;
                        let Some(compact) = certifications_by_code(&outcome) else { continue };
                        encode(&(fingerprint, compact))
                    };
                    requests.insert(key.as_str(), rewritten_row.as_slice())?;
                    rewritten += 1;
                }
            }
            txn.commit()?;
            if done {
                break;
            }
        }
        Ok(rewritten)
    }

    /// Layout 2 to 3: request rows name their dossier by id, the log's leaves move from one
    /// row each ([`TLOG_LEAVES`]) to rows of many ([`TLOG_LEAF_BUCKETS`]) and its nodes
    /// likewise ([`TLOG_NODES`] to [`TLOG_NODE_BUCKETS`]), a bounded number per
    /// transaction; each transaction deletes the rows it moved, so a crash resumes where it
    /// stopped. Leaf bytes, hashes, roots and proofs are unchanged.
    fn migrate_to_layout_3(&self) -> Result<(), StateError> {
        let started = std::time::Instant::now();
        tracing::info!("migrating the state store to record layout {RECORD_LAYOUT} (dossiers kept once, log leaves and nodes many to a row)");
        let request_rows = self.compact_request_rows()?;
        let mut leaves_moved = 0u64;
        self.in_bounded_transactions(|txn| {
            let mut old = txn.open_table(TLOG_LEAVES)?;
            let mut rows = txn.open_table(TLOG_LEAF_BUCKETS)?;
            let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
            for row in old.iter()?.take(MIGRATION_ROWS_PER_TRANSACTION) {
                let (index, stored) = row?;
                batch.push((index.value(), stored.value().to_vec()));
            }
            append_leaves_to_rows(&mut rows, batch.iter().map(|(index, stored)| (*index, stored.as_slice())))?;
            for (index, _) in &batch {
                old.remove(*index)?;
            }
            leaves_moved += batch.len() as u64;
            let done = batch.len() < MIGRATION_ROWS_PER_TRANSACTION;
            if done {
                drop((old, rows));
                txn.delete_table(TLOG_LEAVES)?;
            }
            Ok(done)
        })?;
        let mut moved = 0u64;
        self.in_bounded_transactions(|txn| {
            let done = {
                let mut old = txn.open_table(TLOG_NODES)?;
                let mut buckets = txn.open_table(TLOG_NODE_BUCKETS)?;
                let mut batch: Vec<((u8, u64), [u8; 32])> = Vec::new();
                for row in old.iter()?.take(MIGRATION_ROWS_PER_TRANSACTION) {
                    let (key, value) = row?;
                    batch.push((key.value(), node_from(value.value())?));
                }
                // Rows come in key order: by level, then index, as the nodes were appended.
                for run in batch.chunk_by(|(one, _), (other, _)| one.0 == other.0 && node_bucket(one.1).0 == node_bucket(other.1).0) {
                    let ((level, first), _) = run[0];
                    let (bucket, offset) = node_bucket(first);
                    let mut row = buckets.get((level, bucket))?.map(|value| value.value().to_vec()).unwrap_or_default();
                    for ((_, index), hash) in run {
                        if row.len() != node_bucket(*index).1 || row.len() < offset {
                            return Err(StateError::Corrupt(format!("log node ({level}, {index}) is not the next of its level")));
                        }
                        row.extend_from_slice(hash);
                    }
                    buckets.insert((level, bucket), row.as_slice())?;
                }
                for (key, _) in &batch {
                    old.remove(*key)?;
                }
                moved += batch.len() as u64;
                batch.len() < MIGRATION_ROWS_PER_TRANSACTION
            };
            if done {
                txn.delete_table(TLOG_NODES)?;
                txn.open_table(META)?.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT)?;
            }
            Ok(done)
        })?;
        tracing::info!(request_rows, leaves = leaves_moved, nodes = moved, seconds = started.elapsed().as_secs_f64(), "state store migrated to record layout {RECORD_LAYOUT}");
        Ok(())
    }

    /// Runs `step` in one write transaction after another, each committed, until it says
    /// it is done.
    fn in_bounded_transactions(&self, mut step: impl FnMut(&WriteTransaction) -> Result<bool, StateError>) -> Result<(), StateError> {
        loop {
            let txn = begin_write(&self.db)?;
            let done = step(&txn)?;
            txn.commit()?;
            if done {
                return Ok(());
            }
        }
    }

    /// The agencies kyso knows by name: those of registered signers and of grants (not
    /// the wildcard). Small: one entry per agency, read when a new id is checked for
    /// look-alikes.
    pub fn known_agencies(&self) -> Result<std::collections::BTreeSet<String>, StateError> {
        let txn = self.db.begin_read()?;
        let mut agencies = std::collections::BTreeSet::new();
        for row in txn.open_table(SIGNERS)?.iter()? {
            let (_, value) = row?;
            let signer: Signer = decode(value.value())?;
            agencies.extend(signer.agency_ids);
        }
        for row in txn.open_table(SECURITY)?.range("principal/".."principal0")? {
            let (_, value) = row?;
            let principal: Principal = decode(value.value())?;
            agencies.extend(principal.agency_ids.into_iter().filter(|agency| agency != crate::access::ANY));
        }
        Ok(agencies)
    }

    /// The agencies whose dossiers hold the blob `hash` (empty when none does).
    pub fn blob_agencies(&self, hash: &Sha256) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_multimap_table(BLOB_AGENCIES)?;
        let mut agencies = Vec::new();
        for value in table.get(hash.0.as_slice())? {
            agencies.push(value?.value().to_string());
        }
        Ok(agencies)
    }

    // ----- queries -------------------------------------------------------------------

    /// The statistics of days `first_day..=last_day` (Vietnam days), summed per agency;
    /// only `agencies` when given. Reads at most one row per agency and day of the period.
    pub fn statistics(
        &self,
        first_day: i64,
        last_day: i64,
        agencies: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<std::collections::BTreeMap<String, Summary>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STATISTICS)?;
        let mut summaries: std::collections::BTreeMap<String, Summary> = std::collections::BTreeMap::new();
        for row in table.range((first_day, "")..(last_day.saturating_add(1), ""))? {
            let (key, value) = row?;
            let (_, agency) = key.value();
            if agencies.is_some_and(|wanted| !wanted.contains(agency)) {
                continue;
            }
            let day: DayStatistics = decode(value.value())?;
            summaries.entry(agency.to_string()).or_default().add_day(&day);
        }
        Ok(summaries)
    }

    pub fn applied(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0))
    }

    /// The outcome stored for `actor`'s request id, with the fingerprint of the request
    /// that produced it. A row from before request ids were scoped per caller counts only
    /// when its fingerprint (bound to the caller) is `fingerprint`: another caller's id is
    /// never an answer, nor an error.
    pub fn request_outcome(&self, actor: &Actor, request_id: &str, fingerprint: &[u8; 32]) -> Result<Option<([u8; 32], Outcome)>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REQUESTS)?;
        let Some((stored_fingerprint, outcome, detailed)) = find_request(&table, actor, request_id, fingerprint)? else {
            return Ok(None);
        };
        let outcome = expand_dossier(&txn.open_table(DOSSIERS)?, outcome, detailed)?;
        let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open(&txn)?, txn.open_table(SECURITY)?);
        Ok(Some((stored_fingerprint, records.expand(outcome)?)))
    }

    pub fn dossier(&self, id: &str) -> Result<Option<Dossier>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOSSIERS)?;
        table.get(id)?.map(|value| decode(value.value())).transpose()
    }

    pub fn signer(&self, id: &str) -> Result<Option<Signer>, StateError> {
        read_signer(&self.db.begin_read()?.open_table(SIGNERS)?, id)
    }

    /// Every registered signer, in id order.
    pub fn signers(&self) -> Result<Vec<Signer>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SIGNERS)?;
        let mut signers = Vec::new();
        for row in table.iter()? {
            signers.push(decode(row?.1.value())?);
        }
        Ok(signers)
    }

    /// A client certificate's replicated grants.
    pub fn principal(&self, certificate_sha256: &Sha256) -> Result<Option<Principal>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECURITY)?;
        table.get(principal_key(certificate_sha256).as_str())?.map(|value| decode(value.value())).transpose()
    }

    /// A signer's wrong-PIN count and revocation (default when none was recorded).
    pub fn signer_status(&self, signer_id: &str) -> Result<SignerStatus, StateError> {
        read_signer_status(&self.db.begin_read()?.open_table(SECURITY)?, signer_id)
    }

    /// The CRL kept for the issuer whose name's DER hashes to `issuer_name_sha256`.
    pub fn kept_crl(&self, issuer_name_sha256: &Sha256) -> Result<Option<KeptCrl>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECURITY)?;
        table.get(kept_crl_key(issuer_name_sha256).as_str())?.map(|value| decode(value.value())).transpose()
    }

    /// The lookup code of the certification that recorded exactly this CMS signature.
    pub fn signature_recorded(&self, cms_der: &[u8]) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SECURITY)?;
        table.get(signature_key(cms_der).as_str())?.map(|value| decode(value.value())).transpose()
    }

    /// The certification of a lookup code (read through the caches verify reads keep).
    pub fn certification(&self, code: &LookupCode) -> Result<Option<Certification>, StateError> {
        let (txn, generation) = self.begin_log_read()?;
        self.kept_records(&txn, generation)?.certification(code.index_key().as_slice())
    }

    /// What a verify of the document `hash` names reads, from one read transaction (one
    /// consistent view; a verify read six before): the hash of the certified document
    /// (`hash` itself, or, with `follow_delivered_pdf`, the scan a delivered PDF with that
    /// hash was made from) and, for each of its certifications in lookup-key order, its
    /// signer, the signer's status and its inclusion proof at the current tree size. Each
    /// log leaf is read once; with [`Proofs::Left`], no proof is made.
    pub fn verify_read(&self, hash: &Sha256, follow_delivered_pdf: bool, proofs: Proofs) -> Result<(Sha256, Vec<VerifyRecord>), StateError> {
        let (txn, generation) = self.begin_log_read()?;
        let records = self.kept_records(&txn, generation)?;
        self.verify_read_in(&txn, generation, &records, hash, follow_delivered_pdf, proofs)
    }

    /// What a verify by lookup code reads, from one read transaction: the code's
    /// certification names its own document (never the scan a delivered PDF was made
    /// from), read as [`StateStore::verify_read`] reads it. `None` when no certification
    /// has this code.
    pub fn verify_read_code(&self, code: &LookupCode, proofs: Proofs) -> Result<Option<(Sha256, Vec<VerifyRecord>)>, StateError> {
        let (txn, generation) = self.begin_log_read()?;
        let records = self.kept_records(&txn, generation)?;
        let Some(certification) = records.certification(code.index_key().as_slice())? else { return Ok(None) };
        self.verify_read_in(&txn, generation, &records, &certification.document_sha256, false, proofs).map(Some)
    }

    /// The certifications `txn` reads, through the caches verify reads keep.
    fn kept_records(&self, txn: &redb::ReadTransaction, generation: u64) -> Result<ReadRecords, StateError> {
        let leaves = Leaves::open(txn)?.with_references(&self.references, generation);
        Ok(Records::new(txn.open_table(CERTIFICATIONS)?, leaves, txn.open_table(SECURITY)?).with_kept(&self.leaf_records, generation))
    }

    fn verify_read_in(
        &self,
        txn: &redb::ReadTransaction,
        generation: u64,
        records: &ReadRecords,
        hash: &Sha256,
        follow_delivered_pdf: bool,
        proofs: Proofs,
    ) -> Result<(Sha256, Vec<VerifyRecord>), StateError> {
        let index = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
        let mut found = records.of_document(&index, hash)?;
        let scan = if follow_delivered_pdf {
            found
                .iter()
                .find(|(certification, _)| certification.delivered_pdf.as_ref().is_some_and(|pdf| pdf.sha256 == *hash))
                .map(|(certification, _)| certification.document_sha256)
        } else {
            None
        };
        if let Some(scan) = scan {
            found = records.of_document(&index, &scan)?;
        }
        let signers = txn.open_table(SIGNERS)?;
        let mut verified = Vec::with_capacity(found.len());
        for (certification, leaf) in found {
            let signer = self.read_signer_kept(&signers, &certification.signer_id, generation)?;
            let signer_status = read_signer_status(&records.security, &certification.signer_id)?;
            let leaf = match leaf {
                _ if proofs == Proofs::Left => None,
                Some(leaf) => Some(leaf),
                // A record of layout 1 names its leaf in CERTIFICATION_LEAVES.
                None => txn
                    .open_table(CERTIFICATION_LEAVES)?
                    .get(certification.lookup_code.index_key().as_slice())?
                    .map(|value| LeafRead { index: value.value(), data: None }),
            };
            let proof = match leaf {
                Some(leaf) => inclusion_in(txn, self.log_nodes(txn, generation)?, leaf.index, 0, leaf.data)?,
                None => None,
            };
            verified.push(VerifyRecord { certification, signer, signer_status, proof });
        }
        Ok((scan.unwrap_or(*hash), verified))
    }

    /// A signer as [`read_signer`] reads it, decoded once per version of its row: a row
    /// can change (a new sealed key), so the kept signer is used only while the row is
    /// byte for byte the one it was decoded from.
    fn read_signer_kept(
        &self,
        signers: &impl ReadableTable<&'static str, &'static [u8]>,
        signer_id: &str,
        generation: u64,
    ) -> Result<Option<Signer>, StateError> {
        let Some(row) = signers.get(signer_id)? else { return Ok(None) };
        let row = row.value();
        if let Some(kept) = self.signers.get(signer_id).filter(|kept| kept.row == row) {
            return Ok(Some(kept.signer.clone()));
        }
        let signer: Signer = decode(row)?;
        self.signers.keep(generation, signer_id.to_string(), std::sync::Arc::new(KeptSigner { row: row.to_vec(), signer: signer.clone() }));
        Ok(Some(signer))
    }

    /// Every certification of a document, in lookup-key order.
    pub fn certifications_of(&self, document: &Sha256) -> Result<Vec<Certification>, StateError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
        let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open(&txn)?, txn.open_table(SECURITY)?);
        Ok(records.of_document(&index, document)?.into_iter().map(|(certification, _)| certification).collect())
    }

    /// Whether a dossier archived this blob.
    pub fn blob_known(&self, hash: &Sha256) -> Result<bool, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        Ok(table.get(hash.0.as_slice())?.is_some())
    }

    /// Size of an archived blob, if a dossier archived it.
    pub fn blob_size(&self, hash: &Sha256) -> Result<Option<u64>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        Ok(table.get(hash.0.as_slice())?.map(|value| value.value()))
    }

    /// Up to `limit` archived blobs (hash, size) in hash order, after `after` if given:
    /// pages for a scrub that must not hold one read transaction for hours.
    pub fn blobs_after(&self, after: Option<&Sha256>, limit: usize) -> Result<Vec<(Sha256, u64)>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let rows = match after {
            Some(hash) => table.range::<&[u8]>((std::ops::Bound::Excluded(hash.0.as_slice()), std::ops::Bound::Unbounded))?,
            None => table.range::<&[u8]>(..)?,
        };
        let mut page = Vec::new();
        for row in rows.take(limit) {
            let (key, size) = row?;
            let hash = Sha256::from_slice(key.value())
                .ok_or_else(|| StateError::Corrupt(format!("blob key of {} bytes", key.value().len())))?;
            page.push((hash, size.value()));
        }
        Ok(page)
    }

    /// Blobs that arrived at sequence number `from` or later, in arrival order, at most
    /// `limit` of them.
    pub fn blob_arrivals(&self, from: u64, limit: usize) -> Result<Vec<(u64, Sha256)>, StateError> {
        let txn = self.db.begin_read()?;
        let mut page = Vec::new();
        for row in txn.open_table(BLOB_ARRIVALS)?.range(from..)?.take(limit) {
            let (sequence, hash) = row?;
            let hash = Sha256::from_slice(hash.value()).ok_or_else(|| StateError::Corrupt("a blob arrival is not a SHA-256".into()))?;
            page.push((sequence.value(), hash));
        }
        Ok(page)
    }

    /// This node's refill cursor (see [`BLOB_FILL_CURSOR`]).
    pub fn blob_fill_cursor(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(META)?.get(BLOB_FILL_CURSOR)?.map(|value| value.value()).unwrap_or(0))
    }

    /// Moves the refill cursor from `from` forward to `cursor`, unless it is no longer at
    /// `from` (a snapshot reset the arrivals meanwhile: the pass looked at another list).
    pub fn advance_blob_fill_cursor(&self, from: u64, cursor: u64) -> Result<(), StateError> {
        let txn = begin_write(&self.db)?;
        {
            let mut meta = txn.open_table(META)?;
            let current = meta.get(BLOB_FILL_CURSOR)?.map(|value| value.value()).unwrap_or(0);
            if current == from && cursor > current {
                meta.insert(BLOB_FILL_CURSOR, cursor)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Number of archived blobs (cheap: redb keeps table lengths).
    pub fn blob_count(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BLOBS)?.len()?)
    }

    /// Number and total size of archived blobs.
    pub fn blob_totals(&self) -> Result<(u64, u64), StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let mut count = 0u64;
        let mut bytes = 0u64;
        for row in table.iter()? {
            let (_, size) = row?;
            count += 1;
            bytes += size.value();
        }
        Ok((count, bytes))
    }

    // ----- transparency log ----------------------------------------------------------

    /// Number of leaves in the log.
    pub fn tlog_size(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(META)?.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0))
    }

    /// The current size and root, read in one transaction.
    pub fn tlog_head(&self) -> Result<(u64, [u8; 32]), StateError> {
        let (txn, generation) = self.begin_log_read()?;
        let size = txn.open_table(META)?.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0);
        Ok((size, tlog::root(&self.log_nodes(&txn, generation)?, size).map_err(merkle_error)?))
    }

    /// Root of the tree at an earlier (or the current) size.
    pub fn tlog_root(&self, size: u64) -> Result<[u8; 32], StateError> {
        let (txn, generation) = self.begin_log_read()?;
        tlog::root(&self.log_nodes(&txn, generation)?, size).map_err(merkle_error)
    }

    /// Inclusion proof of a leaf at `tree_size` (0 = current size). `None` if the leaf or
    /// the size is beyond the log.
    pub fn tlog_inclusion(&self, leaf_index: u64, tree_size: u64) -> Result<Option<LogProof>, StateError> {
        let (txn, generation) = self.begin_log_read()?;
        inclusion_in(&txn, self.log_nodes(&txn, generation)?, leaf_index, tree_size, None)
    }

    /// Consistency proof between two sizes; `None` if a size is beyond the log.
    pub fn tlog_consistency(&self, first_size: u64, second_size: u64) -> Result<Option<Vec<[u8; 32]>>, StateError> {
        let (txn, generation) = self.begin_log_read()?;
        let current = txn.open_table(META)?.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0);
        if second_size > current {
            return Ok(None);
        }
        tlog::consistency_proof(&self.log_nodes(&txn, generation)?, first_size, second_size).map(Some).map_err(merkle_error)
    }

    /// Forgets what reads kept of the state a snapshot or backup has just replaced:
    /// the generation advances, then every cache empties (see `kept`). Every install
    /// calls it after its commit.
    fn state_replaced(&self) {
        self.generation.advance();
        self.references.forget_all();
        self.log_hashes.forget_all();
        self.leaf_records.forget_all();
        self.signers.forget_all();
    }

    /// A read transaction whose reads may keep what they read: the generation is taken
    /// before it begins (see `kept`).
    fn begin_log_read(&self) -> Result<(redb::ReadTransaction, u64), StateError> {
        let generation = self.generation.current();
        Ok((self.db.begin_read()?, generation))
    }

    /// The log's committed nodes as `txn` reads them, with the kept hashes in front.
    fn log_nodes(&self, txn: &redb::ReadTransaction, generation: u64) -> Result<impl tlog::NodeStore<Error = StateError> + '_, StateError> {
        Ok(self.log_hashes.in_front_of(ReadNodes(txn.open_table(TLOG_NODE_BUCKETS)?), generation))
    }

    /// Leaves in `[start, end)`, clipped to the log's size.
    pub fn tlog_entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        let (txn, generation) = self.begin_log_read()?;
        let security = txn.open_table(SECURITY)?;
        let leaves = Leaves::open(&txn)?.with_references(&self.references, generation);
        let mut entries = Vec::new();
        for (index, stored) in leaves.stored_range(start, end)? {
            entries.push((index, unpack(&stored, &leaves, &security)?));
        }
        Ok(entries)
    }

    /// The agency's organisation certificate and sealed key, when one is registered.
    pub fn agency_seal(&self, agency_id: &str) -> Result<Option<AgencySeal>, StateError> {
        let txn = self.db.begin_read()?;
        txn.open_table(REGISTER)?.get(agency_seal_key(agency_id).as_str())?.map(|value| decode(value.value())).transpose()
    }

    /// Every agency's seal, in agency order (a few per province).
    pub fn agency_seals(&self) -> Result<Vec<AgencySeal>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REGISTER)?;
        let mut seals = Vec::new();
        for row in table.range("seal/".."seal0")? {
            seals.push(decode(row?.1.value())?);
        }
        Ok(seals)
    }

    /// The next number of an agency's register for `year` (1 for a fresh register).
    pub fn register_next(&self, agency_id: &str, year: i64) -> Result<u64, StateError> {
        let txn = self.db.begin_read()?;
        Ok(read_register_last(&txn.open_table(REGISTER)?, agency_id, year)? + 1)
    }

    /// An agency's register for `year`: (number, lookup code), in number order, numbers
    /// above `after_number`, at most `limit` of them.
    pub fn register(&self, agency_id: &str, year: i64, after_number: u64, limit: usize) -> Result<Vec<(u64, String)>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REGISTER)?;
        let prefix = format!("entry/{agency_id}/{year}/");
        let start = register_entry_key(agency_id, year, after_number.saturating_add(1));
        let mut entries = Vec::new();
        for row in table.range(start.as_str()..)?.take(limit) {
            let (key, value) = row?;
            let Some(number) = key.value().strip_prefix(prefix.as_str()) else { break };
            let number = number.parse().map_err(|_| StateError::Corrupt(format!("register key {:?}", key.value())))?;
            entries.push((number, decode(value.value())?));
        }
        Ok(entries)
    }

    /// Index of a certification's leaf.
    pub fn certification_leaf(&self, code: &LookupCode) -> Result<Option<u64>, StateError> {
        let txn = self.db.begin_read()?;
        let key = code.index_key();
        if let Some(stored) = txn.open_table(CERTIFICATIONS)?.get(key.as_slice())? {
            if let StoredCertification::Row(row) = decode_certification_value(stored.value())? {
                return Ok(Some(row.leaf_index));
            }
        }
        Ok(txn.open_table(CERTIFICATION_LEAVES)?.get(key.as_slice())?.map(|value| value.value()))
    }

    // ----- apply ---------------------------------------------------------------------

    /// How long redb repaired the file when this store was opened, if it was not closed
    /// cleanly.
    pub fn repaired_on_open(&self) -> Option<std::time::Duration> {
        self.repaired_on_open
    }

    /// TEST ONLY (power-loss tests prove they catch it): commit applies without fsync.
    pub fn without_fsync(mut self) -> Self {
        self.skip_fsync = true;
        self
    }

    fn begin_apply(&self) -> Result<WriteTransaction, StateError> {
        self.begin_apply_as(Commit::Durable)
    }

    fn begin_apply_as(&self, commit: Commit) -> Result<WriteTransaction, StateError> {
        let mut txn = begin_write(&self.db)?;
        if self.skip_fsync || commit == Commit::Volatile {
            txn.set_durability(redb::Durability::None).map_err(|error| StateError::Storage(error.to_string()))?;
        }
        Ok(txn)
    }

    fn persistence(&self) -> std::sync::MutexGuard<'_, Persistence> {
        // Plain numbers, each update whole: a panic elsewhere cannot leave them half-set.
        self.persistence.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that a durable commit left the state applied up to `index`.
    fn committed_durably(&self, index: u64) {
        *self.persistence() = Persistence::durable_at(index);
    }

    /// The last applied index a crash cannot take back (see [`PERSIST_INTERVAL`]).
    pub fn durable_applied(&self) -> u64 {
        self.persistence().durable
    }

    /// Makes every apply durable now if the last durable commit is older than
    /// [`PERSIST_INTERVAL`] (one empty durable commit persists the volatile ones before it).
    pub fn persist_if_due(&self) -> Result<(), StateError> {
        let mut persistence = self.persistence();
        if persistence.durable == persistence.applied || !persistence.due(0) {
            return Ok(());
        }
        let txn = self.begin_apply()?;
        txn.commit()?;
        *persistence = Persistence::durable_at(persistence.applied);
        Ok(())
    }

    fn apply_batch(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateError> {
        self.apply_batch_as(entries, Commit::Durable)
    }

    /// Applies entries that the Raft log holds: durable only when due.
    fn apply_logged(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateError> {
        let commit = if self.persistence().due(entries.len() as u64) { Commit::Durable } else { Commit::Volatile };
        self.apply_batch_as(entries, commit)
    }

    fn apply_batch_as(&self, entries: &[Entry], commit: Commit) -> Result<Vec<Bytes>, StateError> {
        let txn = self.begin_apply_as(commit)?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut applied = txn.open_table(META)?.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0);
        for entry in entries {
            assert_eq!(entry.index, applied + 1, "entries must be applied in order, without gaps");
            if entry.data.is_empty() {
                // A leader's no-op or a membership change: nothing to apply.
                responses.push(Bytes::new());
            } else {
                responses.push(Bytes::from(apply_entry(&txn, &entry.data)?.encode()));
            }
            applied = entry.index;
        }
        txn.open_table(META)?.insert(APPLIED_INDEX, applied)?;
        txn.commit()?;
        match commit {
            Commit::Durable => self.committed_durably(applied),
            Commit::Volatile => {
                let mut persistence = self.persistence();
                persistence.applied = applied;
                persistence.volatile_entries += entries.len() as u64;
            }
        }
        Ok(responses)
    }
}

/// The whole state as one record: what a lagging node installs instead of old log entries.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct SnapshotV2 {
    applied: u64,
    requests: Vec<(String, Vec<u8>)>,
    dossiers: Vec<(String, Vec<u8>)>,
    signers: Vec<(String, Vec<u8>)>,
    certifications: Vec<(Vec<u8>, Vec<u8>)>,
    certifications_by_document: Vec<(Vec<u8>, Vec<u8>)>,
    blobs: Vec<(Vec<u8>, u64)>,
    tlog_size: u64,
    tlog_nodes: Vec<((u8, u64), Vec<u8>)>,
    tlog_leaves: Vec<(u64, Vec<u8>)>,
    certification_leaves: Vec<(Vec<u8>, u64)>,
    security: Vec<(String, Vec<u8>)>,
    register: Vec<(String, Vec<u8>)>,
    statistics: Vec<((i64, String), Vec<u8>)>,
}

/// Version of the whole-state record ([`SnapshotV2`]) that backups hold. Version 2 added the
/// security table, version 3 the register, version 4 the statistics. Raft snapshots used
/// it too up to version 4; they are streamed since version 5 (`snapshot::SNAPSHOT_VERSION`).
/// Version 5 holds the same tables in the layout of issue 16 (`state::packing`); version 6
/// holds record layout 3 (the log's leaves and nodes in rows of many). A backup of
/// version 4 or 5 is restored, then migrated.
const BACKUP_SNAPSHOT_VERSION: u8 = 6;
const BACKUP_SNAPSHOT_VERSION_LAYOUT_2: u8 = 5;
const BACKUP_SNAPSHOT_VERSION_LAYOUT_3: u8 = 6;
/// The oldest backup version this build restores.
const BACKUP_SNAPSHOT_VERSION_OLDEST: u8 = 4;

#[path = "store_snapshot.rs"]
mod snapshot;

/// A snapshot taken for a backup: the bytes a restored node installs, and what the
/// backup's manifest lists (all from the same read transaction).
pub struct BackupSnapshot {
    pub applied: u64,
    /// The versioned whole-state encoding ([`BACKUP_SNAPSHOT_VERSION`]).
    pub bytes: Bytes,
    pub tlog_size: u64,
    pub tlog_root: [u8; 32],
    /// Every archived blob the state references (hash, size), in hash order.
    pub blobs: Vec<(Sha256, u64)>,
}

impl StateStore {
    /// The whole state as one backup-format record (tests install it like a backup).
    #[cfg(test)]
    fn take_snapshot(&self) -> Result<(u64, Bytes), StateError> {
        let snapshot = self.snapshot_record()?;
        let mut bytes = vec![BACKUP_SNAPSHOT_VERSION];
        bytes.extend(encode(&snapshot));
        Ok((snapshot.applied, Bytes::from(bytes)))
    }

    /// The snapshot for `kyso backup`. Its tree root is computed after the read
    /// transaction ends, which is sound: a root at an earlier size never changes.
    pub fn backup_snapshot(&self) -> Result<BackupSnapshot, StateError> {
        let snapshot = self.snapshot_record()?;
        let mut blobs = Vec::with_capacity(snapshot.blobs.len());
        for (key, size) in &snapshot.blobs {
            let hash = Sha256::from_slice(key).ok_or_else(|| StateError::Corrupt(format!("blob key of {} bytes", key.len())))?;
            blobs.push((hash, *size));
        }
        let (applied, tlog_size) = (snapshot.applied, snapshot.tlog_size);
        let mut bytes = vec![BACKUP_SNAPSHOT_VERSION];
        bytes.extend(encode(&snapshot));
        drop(snapshot);
        Ok(BackupSnapshot { applied, bytes: Bytes::from(bytes), tlog_size, tlog_root: self.tlog_root(tlog_size)?, blobs })
    }

    /// Installs a backup's snapshot (`kyso restore`) into this store, which should be
    /// fresh; returns the applied index it holds. Refuses bytes of another version.
    pub fn restore_backup(&self, bytes: &[u8]) -> Result<u64, StateError> {
        let Some((&(BACKUP_SNAPSHOT_VERSION_OLDEST..=BACKUP_SNAPSHOT_VERSION), body)) = bytes.split_first() else {
            return Err(StateError::Corrupt(format!(
                "the backup's state has snapshot version {:?}, this kyso reads versions {BACKUP_SNAPSHOT_VERSION_OLDEST}-{BACKUP_SNAPSHOT_VERSION}; restore it with the release that made it",
                bytes.first()
            )));
        };
        let applied = decode::<SnapshotV2>(body)?.applied;
        self.install_snapshot(applied, bytes)?;
        // A backup of an earlier version holds an earlier record layout.
        self.migrate_record_layout()?;
        self.index_derived_tables()?;
        Ok(applied)
    }

    fn snapshot_record(&self) -> Result<SnapshotV2, StateError> {
        let txn = self.db.begin_read()?;
        let mut snapshot = SnapshotV2 {
            applied: txn.open_table(META)?.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0),
            ..SnapshotV2::default()
        };
        for row in txn.open_table(REQUESTS)?.iter()? {
            let (key, value) = row?;
            snapshot.requests.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(DOSSIERS)?.iter()? {
            let (key, value) = row?;
            snapshot.dossiers.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(SIGNERS)?.iter()? {
            let (key, value) = row?;
            snapshot.signers.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(CERTIFICATIONS)?.iter()? {
            let (key, value) = row?;
            snapshot.certifications.push((key.value().to_vec(), value.value().to_vec()));
        }
        for row in txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?.iter()? {
            let (key, values) = row?;
            for value in values {
                snapshot.certifications_by_document.push((key.value().to_vec(), value?.value().to_vec()));
            }
        }
        for row in txn.open_table(BLOBS)?.iter()? {
            let (key, value) = row?;
            snapshot.blobs.push((key.value().to_vec(), value.value()));
        }
        snapshot.tlog_size = txn.open_table(META)?.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0);
        for row in txn.open_table(TLOG_NODE_BUCKETS)?.iter()? {
            let (key, value) = row?;
            snapshot.tlog_nodes.push((key.value(), value.value().to_vec()));
        }
        for row in txn.open_table(TLOG_LEAF_BUCKETS)?.iter()? {
            let (key, value) = row?;
            snapshot.tlog_leaves.push((key.value(), value.value().to_vec()));
        }
        for row in txn.open_table(CERTIFICATION_LEAVES)?.iter()? {
            let (key, value) = row?;
            snapshot.certification_leaves.push((key.value().to_vec(), value.value()));
        }
        for row in txn.open_table(SECURITY)?.iter()? {
            let (key, value) = row?;
            snapshot.security.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(REGISTER)?.iter()? {
            let (key, value) = row?;
            snapshot.register.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(STATISTICS)?.iter()? {
            let (key, value) = row?;
            let (day, agency) = key.value();
            snapshot.statistics.push(((day, agency.to_string()), value.value().to_vec()));
        }
        Ok(snapshot)
    }

    fn install_snapshot(&self, index: u64, data: &[u8]) -> Result<(), StateError> {
        let Some((&version @ (BACKUP_SNAPSHOT_VERSION_OLDEST..=BACKUP_SNAPSHOT_VERSION), body)) = data.split_first() else {
            return Err(StateError::Corrupt("snapshot has an unknown version; upgrade this node".into()));
        };
        let snapshot: SnapshotV2 = decode(body)?;
        if snapshot.applied != index {
            return Err(StateError::Corrupt(format!("snapshot holds index {} but was offered as {index}", snapshot.applied)));
        }
        let txn = self.begin_apply()?;
        txn.delete_table(REQUESTS)?;
        txn.delete_table(DOSSIERS)?;
        txn.delete_table(SIGNERS)?;
        txn.delete_table(CERTIFICATIONS)?;
        txn.delete_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
        txn.delete_table(BLOBS)?;
        txn.delete_table(TLOG_NODES)?;
        txn.delete_table(TLOG_NODE_BUCKETS)?;
        txn.delete_table(TLOG_LEAVES)?;
        txn.delete_table(TLOG_LEAF_BUCKETS)?;
        txn.delete_table(CERTIFICATION_LEAVES)?;
        txn.delete_table(SECURITY)?;
        txn.delete_table(REGISTER)?;
        txn.delete_table(STATISTICS)?;
        {
            let mut table = txn.open_table(REQUESTS)?;
            for (key, value) in &snapshot.requests {
                table.insert(key.as_str(), value.as_slice())?;
            }
            let mut table = txn.open_table(DOSSIERS)?;
            for (key, value) in &snapshot.dossiers {
                table.insert(key.as_str(), value.as_slice())?;
            }
            let mut table = txn.open_table(SIGNERS)?;
            for (key, value) in &snapshot.signers {
                table.insert(key.as_str(), value.as_slice())?;
            }
            let mut table = txn.open_table(CERTIFICATIONS)?;
            for (key, value) in &snapshot.certifications {
                table.insert(key.as_slice(), value.as_slice())?;
            }
            let mut table = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
            for (key, value) in &snapshot.certifications_by_document {
                table.insert(key.as_slice(), value.as_slice())?;
            }
            let mut table = txn.open_table(BLOBS)?;
            for (key, value) in &snapshot.blobs {
                table.insert(key.as_slice(), *value)?;
            }
            // Before version 6, one node to a row (migrated by the caller).
            let nodes = if version >= BACKUP_SNAPSHOT_VERSION_LAYOUT_3 { TLOG_NODE_BUCKETS } else { TLOG_NODES };
            {
                let mut table = txn.open_table(nodes)?;
                for (key, value) in &snapshot.tlog_nodes {
                    table.insert(*key, value.as_slice())?;
                }
            }
            txn.open_table(TLOG_NODE_BUCKETS)?;
            // Before version 6, one leaf to a row (migrated by the caller).
            let leaves = if version >= BACKUP_SNAPSHOT_VERSION_LAYOUT_3 { TLOG_LEAF_BUCKETS } else { TLOG_LEAVES };
            {
                let mut table = txn.open_table(leaves)?;
                for (key, value) in &snapshot.tlog_leaves {
                    table.insert(*key, value.as_slice())?;
                }
            }
            txn.open_table(TLOG_LEAF_BUCKETS)?;
            let mut table = txn.open_table(CERTIFICATION_LEAVES)?;
            for (key, value) in &snapshot.certification_leaves {
                table.insert(key.as_slice(), *value)?;
            }
            let mut table = txn.open_table(SECURITY)?;
            for (key, value) in &snapshot.security {
                table.insert(key.as_str(), value.as_slice())?;
            }
            let mut table = txn.open_table(REGISTER)?;
            for (key, value) in &snapshot.register {
                table.insert(key.as_str(), value.as_slice())?;
            }
            let mut table = txn.open_table(STATISTICS)?;
            for ((day, agency), value) in &snapshot.statistics {
                table.insert((*day, agency.as_str()), value.as_slice())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(TLOG_SIZE, snapshot.tlog_size)?;
            meta.insert(APPLIED_INDEX, index)?;
            meta.insert(STATISTICS_INDEXED, 1)?;
            if version >= BACKUP_SNAPSHOT_VERSION_LAYOUT_3 {
                meta.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT)?;
            } else if version >= BACKUP_SNAPSHOT_VERSION_LAYOUT_2 {
                meta.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT_EACH_RECORD_ONCE)?;
            } else {
                meta.remove(RECORD_LAYOUT_KEY)?;
            }
        }
        txn.delete_multimap_table(BLOB_AGENCIES)?;
        if version >= BACKUP_SNAPSHOT_VERSION_LAYOUT_3 {
            rebuild_blob_agencies(&txn)?;
        } else {
            // It reads certifications from leaves stored in a layout this release reads
            // only once migrated: built after the migration (`restore_backup`).
            txn.open_table(META)?.remove(BLOB_AGENCIES_INDEXED)?;
        }
        txn.delete_table(REQUEST_DETAILS)?;
        rebuild_request_details(&txn)?;
        rebuild_blob_arrivals(&txn)?;
        txn.commit()?;
        self.committed_durably(index);
        self.state_replaced();
        Ok(())
    }

    /// SHA-256 over the canonical encoding of the replicated records, without the applied
    /// index (log entries that carry no command, such as a new leader's no-op, advance the
    /// index but not the state). Equal on every replica that applied the same commands.
    /// Returns the applied index beside it.
    /// Streamed (`snapshot::streamed_digest`): memory stays bounded at any state size.
    pub fn digest(&self) -> Result<(u64, Sha256), StateError> {
        self.streamed_digest()
    }
}

impl StateMachine for StateStore {
    fn apply(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        self.apply_batch(entries).map_err(|error| StateMachineError(error.to_string()))
    }

    fn apply_logged(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        self.apply_logged(entries).map_err(|error| StateMachineError(error.to_string()))
    }

    fn durable_index(&self) -> Result<u64, StateMachineError> {
        Ok(self.durable_applied())
    }

    fn persist_if_due(&self) -> Result<(), StateMachineError> {
        self.persist_if_due().map_err(|error| StateMachineError(error.to_string()))
    }

    fn applied_index(&self) -> Result<u64, StateMachineError> {
        self.applied().map_err(|error| StateMachineError(error.to_string()))
    }

    fn snapshot(&self) -> Result<std::sync::Arc<dyn kyso_cluster::SnapshotSource>, StateMachineError> {
        let source = self.snapshot_source().map_err(|error| StateMachineError(error.to_string()))?;
        Ok(std::sync::Arc::new(source))
    }

    fn receive_snapshot(&self, index: u64) -> Result<Box<dyn kyso_cluster::SnapshotSink>, StateMachineError> {
        self.stage_snapshot(index).map_err(|error| StateMachineError(error.to_string()))
    }

    fn restore(&self, index: u64) -> Result<(), StateMachineError> {
        self.restore_staged(index).map_err(|error| StateMachineError(error.to_string()))
    }
}

/// Applies one command. Rejections are outcomes (the entry is a no-op); only storage
/// failures are errors. Reads nothing but the command and the transaction.
fn apply_entry(txn: &WriteTransaction, data: &[u8]) -> Result<Outcome, StateError> {
    let envelope = match CommandEnvelope::decode(data) {
        Ok(envelope) => envelope,
        Err(rejection) => return Ok(Outcome::Rejected(rejection)),
    };
    // Open for the whole entry: no command reads or writes these two tables.
    let mut requests = txn.open_table(REQUESTS)?;
    let mut details = txn.open_table(REQUEST_DETAILS)?;
    strip_expired_request_details(&mut requests, &mut details, envelope.issued_at_unix)?;
    let key = request_key(&envelope.actor, &envelope.request_id);
    if let Some((fingerprint, outcome, detailed)) = find_request(&requests, &envelope.actor, &envelope.request_id, &envelope.request_fingerprint)? {
        if fingerprint == envelope.request_fingerprint {
            let outcome = expand_dossier(&txn.open_table(DOSSIERS)?, outcome, detailed)?;
            let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open_for_apply(txn)?, txn.open_table(SECURITY)?);
            return records.expand(outcome);
        }
        return Ok(Outcome::Rejected(Rejection::RequestIdReused(envelope.request_id.clone())));
    }
    let actor = &envelope.actor;
    let outcome = match envelope.command {
        Command::RegisterSigner(signer) => register_signer(txn, actor, signer)?,
        Command::ArchiveDossier(dossier) => archive_dossier(txn, dossier)?,
        Command::Certify(certifications) => certify(txn, actor, certifications)?,
        Command::RevokeCertification { lookup_code, reason, revoked_at_unix } => {
            revoke(txn, actor, &lookup_code, Revocation { reason, revoked_at_unix })?
        }
        Command::SetAccess(principal) => set_access(txn, actor, principal)?,
        Command::Audit(event) => audit(txn, actor, event)?,
        Command::RevokeSignerCertificates { revocations, .. } => revoke_signers(txn, actor, revocations)?,
        Command::ImportCrl { revocations, kept, .. } => {
            if let Some(kept) = kept {
                keep_crl(txn, &kept)?;
            }
            revoke_signers(txn, actor, revocations)?
        }
        Command::PinRejected { signer_id } => pin_rejected(txn, actor, &signer_id)?,
        Command::UnlockSigner { signer_id } => unlock_signer(txn, actor, &signer_id)?,
        Command::ReplaceSignerKey { signer_id, sealed_key } => replace_signer_key(txn, actor, &signer_id, sealed_key)?,
        Command::TallyVerifications(counts) => tally_verifications(txn, &counts)?,
        Command::RegisterAgencySeal(seal) => {
            // Kept beside the register: both are the agency's, both in the snapshot.
            txn.open_table(REGISTER)?.insert(agency_seal_key(&seal.agency_id).as_str(), encode(&seal).as_slice())?;
            Outcome::AgencySeal(seal)
        }
    };
    // Rejected requests are remembered too: a retry gets the same answer. Except a taken
    // register number: the proposer signs again under the next one, with the same id.
    if matches!(outcome, Outcome::Rejected(Rejection::RegisterNumberTaken { .. })) {
        return Ok(outcome);
    }
    // The row names certifications by code and a dossier by id: the records themselves are
    // kept once.
    let stored = compact_outcome(&outcome).unwrap_or_else(|| outcome.clone());
    #[cfg(test)]
    let stored = match tests::layout_1::writing_layout() {
        1 => outcome.clone(),
        2 => certifications_by_code(&outcome).unwrap_or_else(|| outcome.clone()),
        _ => stored,
    };
    // Only rows with something to strip later are indexed for the retention.
    let detailed = has_private_details(&outcome);
    #[cfg(test)]
    let detailed = detailed || tests::layout_1::writing();
    let row = RequestRow { fingerprint: envelope.request_fingerprint, issued_at_unix: envelope.issued_at_unix, detailed, outcome: stored };
    requests.insert(key.as_str(), encode(&row).as_slice())?;
    if detailed {
        details.insert((envelope.issued_at_unix, key.as_str()), ())?;
    }
    Ok(outcome)
}

/// The stored answer to `actor`'s `request_id` (see [`StateStore::request_outcome`]), and
/// whether the row still holds its private details.
fn find_request(
    requests: &impl ReadableTable<&'static str, &'static [u8]>,
    actor: &Actor,
    request_id: &str,
    fingerprint: &[u8; 32],
) -> Result<Option<([u8; 32], Outcome, bool)>, StateError> {
    if let Some(stored) = requests.get(request_key(actor, request_id).as_str())? {
        let row: RequestRow = decode(stored.value())?;
        return Ok(Some((row.fingerprint, row.outcome, row.detailed)));
    }
    if let Some(stored) = requests.get(request_id)? {
        let (stored_fingerprint, outcome): ([u8; 32], Outcome) = decode(stored.value())?;
        if &stored_fingerprint == fingerprint {
            // These rows hold whole outcomes, never a dossier by id.
            return Ok(Some((stored_fingerprint, outcome, true)));
        }
    }
    Ok(None)
}

/// A remembered `DossierById` as the caller receives it: the dossier, without its private
/// fields once the row's retention passed (`detailed` false).
fn expand_dossier(dossiers: &impl ReadableTable<&'static str, &'static [u8]>, outcome: Outcome, detailed: bool) -> Result<Outcome, StateError> {
    let Outcome::DossierById(id) = outcome else { return Ok(outcome) };
    let stored = dossiers.get(id.as_str())?.ok_or_else(|| StateError::Corrupt(format!("a remembered outcome names dossier {id}, which is missing")))?;
    let dossier = Outcome::Dossier(decode(stored.value())?);
    Ok(if detailed { dossier } else { dossier.without_private_details() })
}

/// Strips, from at most [`REQUEST_DETAILS_STRIPPED_PER_ENTRY_MAX`] request rows issued
/// more than [`REQUEST_DETAILS_RETENTION_SECONDS`] before `now_unix` (the applied command's
/// own issue time), everything deduplication does not need.
fn strip_expired_request_details(
    requests: &mut redb::Table<'_, &'static str, &'static [u8]>,
    details: &mut redb::Table<'_, (i64, &'static str), ()>,
    now_unix: i64,
) -> Result<(), StateError> {
    let cutoff = now_unix.saturating_sub(REQUEST_DETAILS_RETENTION_SECONDS);
    let mut expired: Vec<(i64, String)> = Vec::new();
    for row in details.range((i64::MIN, "")..(cutoff, ""))?.take(REQUEST_DETAILS_STRIPPED_PER_ENTRY_MAX) {
        let (key, _) = row?;
        let (issued_at, request_key) = key.value();
        expired.push((issued_at, request_key.to_string()));
    }
    for (issued_at, key) in expired {
        details.remove((issued_at, key.as_str()))?;
        let Some(stored) = requests.get(key.as_str())? else { continue };
        let bytes = stored.value().to_vec();
        drop(stored);
        let stripped = if is_scoped_request_key(&key) {
            let mut row: RequestRow = decode(&bytes)?;
            row.outcome = row.outcome.without_private_details();
            row.detailed = false;
            encode(&row)
        } else {
            let (fingerprint, outcome): ([u8; 32], Outcome) = decode(&bytes)?;
            encode(&(fingerprint, outcome.without_private_details()))
        };
        requests.insert(key.as_str(), stripped.as_slice())?;
    }
    Ok(())
}

/// Indexes every request row that still holds its full outcome (rows from before the
/// index count as issued at time 0: the first entry applied strips them).
fn rebuild_request_details(txn: &WriteTransaction) -> Result<(), StateError> {
    let requests = txn.open_table(REQUESTS)?;
    let mut details = txn.open_table(REQUEST_DETAILS)?;
    for row in requests.iter()? {
        let (key, value) = row?;
        let key = key.value();
        if !is_scoped_request_key(key) {
            let (_, outcome): ([u8; 32], Outcome) = decode(value.value())?;
            if outcome.without_private_details() != outcome {
                details.insert((0, key), ())?;
            }
            continue;
        }
        let row: RequestRow = decode(value.value())?;
        if row.detailed {
            details.insert((row.issued_at_unix, key), ())?;
        }
    }
    txn.open_table(META)?.insert(REQUEST_DETAILS_INDEXED, 1)?;
    Ok(())
}

fn register_signer(txn: &WriteTransaction, actor: &Actor, signer: Signer) -> Result<Outcome, StateError> {
    let mut signers = txn.open_table(SIGNERS)?;
    if signers.get(signer.id.as_str())?.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyExists(format!(
            "signer {} is already registered with this certificate",
            signer.id
        ))));
    }
    signers.insert(signer.id.as_str(), encode(&signer).as_slice())?;
    let public = Signer { sealed_key: None, ..signer.clone() };
    append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::SignerRegistered(public)))?;
    Ok(Outcome::Signer(signer))
}

fn archive_dossier(txn: &WriteTransaction, dossier: Dossier) -> Result<Outcome, StateError> {
    let mut dossiers = txn.open_table(DOSSIERS)?;
    if dossiers.get(dossier.id.as_str())?.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyExists(format!("dossier {} already exists", dossier.id))));
    }
    let mut blobs = txn.open_table(BLOBS)?;
    let mut arrivals = txn.open_table(BLOB_ARRIVALS)?;
    let mut agencies = txn.open_multimap_table(BLOB_AGENCIES)?;
    for file in &dossier.files {
        if blobs.insert(file.sha256.0.as_slice(), file.size_bytes)?.is_none() {
            record_blob_arrival(&mut arrivals, &file.sha256)?;
        }
        agencies.insert(file.sha256.0.as_slice(), dossier.agency_id.as_str())?;
    }
    dossiers.insert(dossier.id.as_str(), encode(&dossier).as_slice())?;
    count_dossier(txn, &dossier)?;
    Ok(Outcome::Dossier(dossier))
}

/// The tables a certify command reads and writes, each opened once for the command: an
/// open is a lookup in redb's table of tables, and a certification opened about 25.
struct CertifyTables<'txn> {
    signers: redb::Table<'txn, &'static str, &'static [u8]>,
    blobs: redb::Table<'txn, &'static [u8], u64>,
    arrivals: redb::Table<'txn, u64, &'static [u8]>,
    dossiers: redb::Table<'txn, &'static str, &'static [u8]>,
    blob_agencies: redb::MultimapTable<'txn, &'static [u8], &'static str>,
    certifications: redb::Table<'txn, &'static [u8], &'static [u8]>,
    by_document: redb::MultimapTable<'txn, &'static [u8], &'static [u8]>,
    security: redb::Table<'txn, &'static str, &'static [u8]>,
    register: redb::Table<'txn, &'static str, &'static [u8]>,
    statistics: redb::Table<'txn, (i64, &'static str), &'static [u8]>,
    log: LogTables<'txn>,
}

impl<'txn> CertifyTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        Ok(CertifyTables {
            signers: txn.open_table(SIGNERS)?,
            blobs: txn.open_table(BLOBS)?,
            arrivals: txn.open_table(BLOB_ARRIVALS)?,
            dossiers: txn.open_table(DOSSIERS)?,
            blob_agencies: txn.open_multimap_table(BLOB_AGENCIES)?,
            certifications: txn.open_table(CERTIFICATIONS)?,
            by_document: txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?,
            security: txn.open_table(SECURITY)?,
            register: txn.open_table(REGISTER)?,
            statistics: txn.open_table(STATISTICS)?,
            log: LogTables::open(txn)?,
        })
    }
}

fn certify(txn: &WriteTransaction, actor: &Actor, certifications: Vec<Certification>) -> Result<Outcome, StateError> {
    let mut tables = CertifyTables::open(txn)?;
    if let Some(rejection) = check_certifiable(&tables, &certifications)? {
        return Ok(Outcome::Rejected(rejection));
    }
    #[cfg(test)]
    if tests::layout_1::writing() {
        drop(tables);
        return tests::layout_1::certify(txn, actor, certifications);
    }
    for certification in &certifications {
        let key = certification.lookup_code.index_key();
        // The record is kept once, in its leaf; the row names the leaf.
        let leaf = LogLeaf::new(actor.clone(), LogEvent::Certification(certification.clone()));
        let leaf_index = append_leaf_packed(&mut tables.log, &mut tables.security, &leaf, certification)?;
        tables.certifications.insert(key.as_slice(), CertificationRow { leaf_index, revocation: None }.encode().as_slice())?;
        tables.by_document.insert(certification.document_sha256.0.as_slice(), key.as_slice())?;
        if let Some(delivered) = &certification.delivered_pdf {
            // Verify and lookup answer to the delivered PDF's hash as to the scan's.
            tables.by_document.insert(delivered.sha256.0.as_slice(), key.as_slice())?;
            if tables.blobs.insert(delivered.sha256.0.as_slice(), delivered.size_bytes)?.is_none() {
                record_blob_arrival(&mut tables.arrivals, &delivered.sha256)?;
            }
            // The delivered PDF is read within its agency, as the scan it came from.
            tables.blob_agencies.insert(delivered.sha256.0.as_slice(), certification.agency_id.as_str())?;
            let (agency, year, number) = (&certification.agency_id, delivered.register_year, delivered.register_number);
            tables.register.insert(register_last_key(agency, year).as_str(), encode(&number).as_slice())?;
            tables.register.insert(register_entry_key(agency, year, number).as_str(), encode(&certification.lookup_code.to_string()).as_slice())?;
        }
        let code = certification.lookup_code.to_string();
        tables.security.insert(signature_key(&certification.cms_der).as_str(), encode(&code).as_slice())?;
        // A signature made with the key is a correct PIN (or a client-side signature): the
        // wrong-PIN count starts again.
        update_signer_status_in(&mut tables.security, &certification.signer_id, |status| status.pin_failures = 0)?;
        count_certification_in(&tables.dossiers, &mut tables.statistics, certification)?;
    }
    Ok(Outcome::Certifications(certifications))
}

/// The checks a certification must pass at apply time, all against replicated state only.
fn check_certifiable(tables: &CertifyTables<'_>, certifications: &[Certification]) -> Result<Option<Rejection>, StateError> {
    let CertifyTables { signers, blobs, dossiers, blob_agencies, certifications: table, security, register, .. } = tables;
    let mut codes = std::collections::BTreeSet::new();
    let mut signatures = std::collections::BTreeSet::new();
    let mut register_next: std::collections::BTreeMap<(String, i64), u64> = std::collections::BTreeMap::new();
    for certification in certifications {
        if let Some(delivered) = &certification.delivered_pdf {
            let slot = (certification.agency_id.clone(), delivered.register_year);
            let expected = match register_next.get(&slot) {
                Some(next) => *next,
                None => read_register_last(register, &slot.0, slot.1)? + 1,
            };
            if delivered.register_number != expected {
                return Ok(Some(Rejection::RegisterNumberTaken {
                    agency_id: slot.0,
                    year: slot.1,
                    number: delivered.register_number,
                    expected,
                }));
            }
            register_next.insert(slot, expected + 1);
        }
        let Some(signer) = signers.get(certification.signer_id.as_str())? else {
            return Ok(Some(Rejection::NotFound(format!("signer {} is not registered", certification.signer_id))));
        };
        let signer: Signer = decode(signer.value())?;
        if !signer.may_sign_for(&certification.agency_id) {
            return Ok(Some(Rejection::PermissionDenied(format!(
                "signer {} is not registered for agency {}",
                signer.id, certification.agency_id
            ))));
        }
        if let Some(revocation) = read_signer_status(security, &signer.id)?.revoked_at(certification.signed_at_unix) {
            return Ok(Some(Rejection::PermissionDenied(format!(
                "signer {}'s certificate was revoked at {} ({}); it cannot sign",
                signer.id, revocation.revoked_at_unix, revocation.reason
            ))));
        }
        let signature = signature_key(&certification.cms_der);
        if let Some(existing) = security.get(signature.as_str())? {
            let code: String = decode(existing.value())?;
            return Ok(Some(Rejection::AlreadyExists(format!(
                "this signature was already recorded as certification {code}; a signature is recorded once"
            ))));
        }
        if !signatures.insert(signature) {
            return Ok(Some(Rejection::AlreadyExists("the batch holds the same signature twice".into())));
        }
        if blobs.get(certification.document_sha256.0.as_slice())?.is_none() {
            return Ok(Some(Rejection::NotFound(format!(
                "document {} is not archived; upload it in a dossier first",
                certification.document_sha256
            ))));
        }
        if let Some(rejection) = check_document_belongs(dossiers, blob_agencies, certification)? {
            return Ok(Some(rejection));
        }
        let key = certification.lookup_code.index_key();
        if table.get(key.as_slice())?.is_some() || !codes.insert(key) {
            return Ok(Some(Rejection::AlreadyExists(format!(
                "lookup code {} is already taken; retry the request",
                certification.lookup_code
            ))));
        }
    }
    Ok(None)
}

/// A certification's document must be a file of a dossier of the certification's agency
/// (of the named dossier, when it names one): a signer of one agency never certifies
/// another agency's files.
fn check_document_belongs(
    dossiers: &impl ReadableTable<&'static str, &'static [u8]>,
    blob_agencies: &impl ReadableMultimapTable<&'static [u8], &'static str>,
    certification: &Certification,
) -> Result<Option<Rejection>, StateError> {
    let hash = &certification.document_sha256;
    if certification.dossier_id.is_empty() {
        for agency in blob_agencies.get(hash.0.as_slice())? {
            if agency?.value() == certification.agency_id {
                return Ok(None);
            }
        }
        return Ok(Some(Rejection::PermissionDenied(document_not_of_agency(hash, &certification.agency_id))));
    }
    let Some(stored) = dossiers.get(certification.dossier_id.as_str())? else {
        return Ok(Some(Rejection::NotFound(format!("dossier {} does not exist", certification.dossier_id))));
    };
    let dossier: Dossier = decode(stored.value())?;
    if dossier.agency_id != certification.agency_id || !dossier.files.iter().any(|file| &file.sha256 == hash) {
        return Ok(Some(Rejection::PermissionDenied(format!(
            "document {hash} is not a file of dossier {} of agency {}; certify only documents your agency archived",
            certification.dossier_id, certification.agency_id
        ))));
    }
    Ok(None)
}

/// The refusal of a document that no dossier of `agency_id` holds.
pub fn document_not_of_agency(hash: &Sha256, agency_id: &str) -> String {
    format!("document {hash} is not a file of any dossier of agency {agency_id}; certify only documents your agency archived")
}

/// Appends a blob new to the state to BLOB_ARRIVALS.
fn record_blob_arrival(arrivals: &mut redb::Table<'_, u64, &'static [u8]>, hash: &Sha256) -> Result<(), StateError> {
    let next = arrivals.last()?.map(|(sequence, _)| sequence.value() + 1).unwrap_or(0);
    arrivals.insert(next, hash.0.as_slice())?;
    Ok(())
}

/// Lists every blob of the state as arrived, in hash order, and resets the refill cursor:
/// after a snapshot replaced the state, every blob is checked once more.
fn rebuild_blob_arrivals(txn: &WriteTransaction) -> Result<(), StateError> {
    txn.delete_table(BLOB_ARRIVALS)?;
    let blobs = txn.open_table(BLOBS)?;
    let mut arrivals = txn.open_table(BLOB_ARRIVALS)?;
    for (sequence, row) in blobs.iter()?.enumerate() {
        let (hash, _) = row?;
        arrivals.insert(sequence as u64, hash.value())?;
    }
    let mut meta = txn.open_table(META)?;
    meta.remove(BLOB_FILL_CURSOR)?;
    meta.insert(BLOB_ARRIVALS_INDEXED, 1)?;
    Ok(())
}

/// Indexes every dossier's files by agency (data from before the index, or a snapshot).
fn rebuild_blob_agencies(txn: &WriteTransaction) -> Result<(), StateError> {
    let dossiers = txn.open_table(DOSSIERS)?;
    let mut agencies = txn.open_multimap_table(BLOB_AGENCIES)?;
    for row in dossiers.iter()? {
        let (_, value) = row?;
        let dossier: Dossier = decode(value.value())?;
        for file in &dossier.files {
            agencies.insert(file.sha256.0.as_slice(), dossier.agency_id.as_str())?;
        }
    }
    let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open_for_apply(txn)?, txn.open_table(SECURITY)?);
    for row in records.table.iter()? {
        let (_, value) = row?;
        let certification = records.from_value(value.value())?;
        if let Some(delivered) = &certification.delivered_pdf {
            agencies.insert(delivered.sha256.0.as_slice(), certification.agency_id.as_str())?;
        }
    }
    txn.open_table(META)?.insert(BLOB_AGENCIES_INDEXED, 1)?;
    Ok(())
}

fn revoke(txn: &WriteTransaction, actor: &Actor, code: &LookupCode, revocation: Revocation) -> Result<Outcome, StateError> {
    let key = code.index_key();
    let (mut certification, stored) = {
        let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open_for_apply(txn)?, txn.open_table(SECURITY)?);
        let Some(value) = records.table.get(key.as_slice())? else {
            return Ok(Outcome::Rejected(Rejection::NotFound(format!("no certification has lookup code {code}"))));
        };
        let value = value.value().to_vec();
        (records.from_value(&value)?, decode_certification_value(&value)?)
    };
    if let Some(existing) = &certification.revocation {
        return Ok(Outcome::Rejected(Rejection::FailedPrecondition(format!(
            "certification {code} was already revoked at {} ({})",
            existing.revoked_at_unix, existing.reason
        ))));
    }
    append_leaf(
        txn,
        &LogLeaf::new(actor.clone(), LogEvent::Revocation {
            lookup_code: code.clone(),
            document_sha256: certification.document_sha256,
            reason: revocation.reason.clone(),
            revoked_at_unix: revocation.revoked_at_unix,
        }),
    )?;
    let revoked_at_unix = revocation.revoked_at_unix;
    certification.revocation = Some(revocation);
    let value = match stored {
        StoredCertification::Row(row) => CertificationRow { revocation: certification.revocation.clone(), ..row }.encode(),
        StoredCertification::Full(_) => encode(&certification),
    };
    txn.open_table(CERTIFICATIONS)?.insert(key.as_slice(), value.as_slice())?;
    count_revocation(txn, &certification.agency_id, revoked_at_unix)?;
    Ok(Outcome::Certifications(vec![certification]))
}

/// Changes one agency-day's statistics row.
fn update_statistics(txn: &WriteTransaction, day: i64, agency_id: &str, change: impl FnOnce(&mut DayStatistics)) -> Result<(), StateError> {
    update_statistics_in(&mut txn.open_table(STATISTICS)?, day, agency_id, change)
}

fn update_statistics_in(
    table: &mut redb::Table<'_, (i64, &'static str), &'static [u8]>,
    day: i64,
    agency_id: &str,
    change: impl FnOnce(&mut DayStatistics),
) -> Result<(), StateError> {
    let mut statistics: DayStatistics = match table.get((day, agency_id))? {
        Some(stored) => decode(stored.value())?,
        None => DayStatistics::default(),
    };
    change(&mut statistics);
    table.insert((day, agency_id), encode(&statistics).as_slice())?;
    Ok(())
}

/// Counts an archived dossier on the day of its own `archived_at_unix`.
fn count_dossier(txn: &WriteTransaction, dossier: &Dossier) -> Result<(), StateError> {
    let day = crate::statistics::vietnam_day(dossier.archived_at_unix);
    update_statistics(txn, day, &dossier.agency_id, |statistics| {
        statistics.counts.dossiers_archived = statistics.counts.dossiers_archived.saturating_add(1);
        statistics.counts.files_archived = statistics.counts.files_archived.saturating_add(dossier.files.len() as u64);
        let bytes = dossier.files.iter().fold(0u64, |sum, file| sum.saturating_add(file.size_bytes));
        statistics.counts.bytes_archived = statistics.counts.bytes_archived.saturating_add(bytes);
    })
}

/// Counts a certification on the day it was signed, with its delay from its dossier's
/// archive when it names its dossier (a certification without one has no delay).
fn count_certification(txn: &WriteTransaction, certification: &Certification) -> Result<(), StateError> {
    count_certification_in(&txn.open_table(DOSSIERS)?, &mut txn.open_table(STATISTICS)?, certification)
}

fn count_certification_in(
    dossiers: &impl ReadableTable<&'static str, &'static [u8]>,
    statistics: &mut redb::Table<'_, (i64, &'static str), &'static [u8]>,
    certification: &Certification,
) -> Result<(), StateError> {
    let archived_at = if certification.dossier_id.is_empty() {
        None
    } else {
        let stored = dossiers.get(certification.dossier_id.as_str())?;
        stored.map(|stored| decode::<Dossier>(stored.value())).transpose()?.map(|dossier| dossier.archived_at_unix)
    };
    let day = crate::statistics::vietnam_day(certification.signed_at_unix);
    update_statistics_in(statistics, day, &certification.agency_id, |statistics| {
        match certification.kind {
            crate::domain::CertificationKind::Result => statistics.counts.results_signed = statistics.counts.results_signed.saturating_add(1),
            crate::domain::CertificationKind::CertifiedCopy => statistics.counts.copies_certified = statistics.counts.copies_certified.saturating_add(1),
        }
        if let Some(archived_at) = archived_at {
            statistics.add_signature_delay(certification.signed_at_unix.saturating_sub(archived_at));
        }
    })
}

fn count_revocation(txn: &WriteTransaction, agency_id: &str, revoked_at_unix: i64) -> Result<(), StateError> {
    update_statistics(txn, crate::statistics::vietnam_day(revoked_at_unix), agency_id, |statistics| statistics.counts.revocations = statistics.counts.revocations.saturating_add(1))
}

/// Adds a node's verification tally. Bounded: at most
/// [`TALLY_ENTRIES_PER_COMMAND_MAX`](super::command::TALLY_ENTRIES_PER_COMMAND_MAX) lines,
/// agency ids of at most 64 bytes; anything else refuses the whole tally.
fn tally_verifications(txn: &WriteTransaction, counts: &[VerificationCount]) -> Result<Outcome, StateError> {
    if counts.len() > super::command::TALLY_ENTRIES_PER_COMMAND_MAX {
        return Ok(Outcome::Rejected(Rejection::FailedPrecondition(format!(
            "a verification tally holds {} lines, more than {}",
            counts.len(),
            super::command::TALLY_ENTRIES_PER_COMMAND_MAX
        ))));
    }
    if let Some(count) = counts.iter().find(|count| count.agency_id.is_empty() || count.agency_id.len() > 64) {
        return Ok(Outcome::Rejected(Rejection::FailedPrecondition(format!(
            "a verification tally names agency {:?}: agency ids have 1-64 bytes",
            count.agency_id
        ))));
    }
    for count in counts {
        update_statistics(txn, count.day, &count.agency_id, |statistics| statistics.add_verifications(count.channel, count.count))?;
    }
    Ok(Outcome::Tallied(counts.len() as u64))
}

/// Counts every dossier, certification and revocation already recorded (a data directory
/// from before the statistics). The same counts apply would have made; verifications,
/// which no record keeps, start at zero.
fn count_statistics_of_records(txn: &WriteTransaction) -> Result<(), StateError> {
    // Streamed, one record at a time: a data directory may hold millions.
    for row in txn.open_table(DOSSIERS)?.iter()? {
        let (_, value) = row?;
        count_dossier(txn, &decode::<Dossier>(value.value())?)?;
    }
    let records = Records::new(txn.open_table(CERTIFICATIONS)?, Leaves::open_for_apply(txn)?, txn.open_table(SECURITY)?);
    for row in records.table.iter()? {
        let (_, value) = row?;
        let certification = records.from_value(value.value())?;
        count_certification(txn, &certification)?;
        if let Some(revocation) = &certification.revocation {
            count_revocation(txn, &certification.agency_id, revocation.revoked_at_unix)?;
        }
    }
    txn.open_table(META)?.insert(STATISTICS_INDEXED, 1)?;
    Ok(())
}

fn read_register_last(register: &impl ReadableTable<&'static str, &'static [u8]>, agency_id: &str, year: i64) -> Result<u64, StateError> {
    register.get(register_last_key(agency_id, year).as_str())?.map(|value| decode(value.value())).transpose().map(|last| last.unwrap_or(0))
}

fn read_signer(signers: &impl ReadableTable<&'static str, &'static [u8]>, signer_id: &str) -> Result<Option<Signer>, StateError> {
    signers.get(signer_id)?.map(|value| decode(value.value())).transpose()
}

fn read_signer_status(security: &impl ReadableTable<&'static str, &'static [u8]>, signer_id: &str) -> Result<SignerStatus, StateError> {
    Ok(security.get(signer_status_key(signer_id).as_str())?.map(|value| decode(value.value())).transpose()?.unwrap_or_default())
}

/// Applies `change` to a signer's status and writes it back if it changed; returns it.
fn update_signer_status(txn: &WriteTransaction, signer_id: &str, change: impl FnOnce(&mut SignerStatus)) -> Result<SignerStatus, StateError> {
    update_signer_status_in(&mut txn.open_table(SECURITY)?, signer_id, change)
}

fn update_signer_status_in(
    security: &mut redb::Table<'_, &'static str, &'static [u8]>,
    signer_id: &str,
    change: impl FnOnce(&mut SignerStatus),
) -> Result<SignerStatus, StateError> {
    let before = read_signer_status(&*security, signer_id)?;
    let mut status = before.clone();
    change(&mut status);
    if status != before {
        security.insert(signer_status_key(signer_id).as_str(), encode(&status).as_slice())?;
    }
    Ok(status)
}

/// A rejection when `signer_id` is not registered.
fn unknown_signer(txn: &WriteTransaction, signer_id: &str) -> Result<Option<Outcome>, StateError> {
    Ok(txn
        .open_table(SIGNERS)?
        .get(signer_id)?
        .is_none()
        .then(|| Outcome::Rejected(Rejection::NotFound(format!("signer {signer_id} is not registered")))))
}

fn set_access(txn: &WriteTransaction, actor: &Actor, principal: Principal) -> Result<Outcome, StateError> {
    let mut security = txn.open_table(SECURITY)?;
    security.insert(principal_key(&principal.certificate_sha256).as_str(), encode(&principal).as_slice())?;
    drop(security);
    append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::AccessChanged(principal.clone())))?;
    Ok(Outcome::Principal(principal))
}

fn audit(txn: &WriteTransaction, actor: &Actor, event: AuditEvent) -> Result<Outcome, StateError> {
    let event = match event {
        AuditEvent::Refused { action, reason, suppressed_before } => LogEvent::Refused { action, reason, suppressed_before },
        AuditEvent::ClusterChanged { change } => LogEvent::ClusterChanged { change },
    };
    Ok(Outcome::Audited(append_leaf(txn, &LogLeaf::new(actor.clone(), event))?))
}

/// Records each revocation of a registered signer, keeping the earliest time when a
/// certificate appears in several CRLs. Returns the revocations that changed state.
fn revoke_signers(txn: &WriteTransaction, actor: &Actor, revocations: Vec<SignerRevocation>) -> Result<Outcome, StateError> {
    let signers = txn.open_table(SIGNERS)?;
    let mut recorded = Vec::new();
    for revocation in revocations {
        if signers.get(revocation.signer_id.as_str())?.is_none() {
            continue;
        }
        let earlier_known = read_signer_status(&txn.open_table(SECURITY)?, &revocation.signer_id)?
            .revocation
            .is_some_and(|existing| existing.revoked_at_unix <= revocation.revoked_at_unix);
        if earlier_known {
            continue;
        }
        update_signer_status(txn, &revocation.signer_id, |status| status.revocation = Some(revocation.clone()))?;
        append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::SignerCertificateRevoked(revocation.clone())))?;
        recorded.push(revocation);
    }
    Ok(Outcome::SignerRevocations(recorded))
}

/// Keeps `kept` unless the CRL kept for its issuer is as new or newer (a CRL imported late
/// never replaces a later one).
fn keep_crl(txn: &WriteTransaction, kept: &KeptCrl) -> Result<(), StateError> {
    let mut security = txn.open_table(SECURITY)?;
    let key = kept_crl_key(&kept.issuer_name_sha256);
    let newer_known = match security.get(key.as_str())? {
        Some(value) => decode::<KeptCrl>(value.value())?.this_update_unix >= kept.this_update_unix,
        None => false,
    };
    if !newer_known {
        security.insert(key.as_str(), encode(kept).as_slice())?;
    }
    Ok(())
}

fn pin_rejected(txn: &WriteTransaction, actor: &Actor, signer_id: &str) -> Result<Outcome, StateError> {
    if let Some(rejected) = unknown_signer(txn, signer_id)? {
        return Ok(rejected);
    }
    let status = update_signer_status(txn, signer_id, |status| {
        if !status.locked() {
            status.pin_failures += 1;
        }
    })?;
    let event = LogEvent::PinRejected { signer_id: signer_id.to_string(), failures: status.pin_failures, locked: status.locked() };
    append_leaf(txn, &LogLeaf::new(actor.clone(), event))?;
    Ok(Outcome::SignerStatus(status))
}

fn unlock_signer(txn: &WriteTransaction, actor: &Actor, signer_id: &str) -> Result<Outcome, StateError> {
    if let Some(rejected) = unknown_signer(txn, signer_id)? {
        return Ok(rejected);
    }
    let status = update_signer_status(txn, signer_id, |status| status.pin_failures = 0)?;
    append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::SignerUnlocked { signer_id: signer_id.to_string() }))?;
    Ok(Outcome::SignerStatus(status))
}

fn replace_signer_key(txn: &WriteTransaction, actor: &Actor, signer_id: &str, sealed_key: Vec<u8>) -> Result<Outcome, StateError> {
    let mut signers = txn.open_table(SIGNERS)?;
    let Some(stored) = signers.get(signer_id)? else {
        return Ok(Outcome::Rejected(Rejection::NotFound(format!("signer {signer_id} is not registered"))));
    };
    let mut signer: Signer = decode(stored.value())?;
    drop(stored);
    if signer.sealed_key.is_none() {
        return Ok(Outcome::Rejected(Rejection::FailedPrecondition(format!("the node holds no key for signer {signer_id}"))));
    }
    signer.sealed_key = Some(sealed_key);
    signers.insert(signer_id, encode(&signer).as_slice())?;
    drop(signers);
    update_signer_status(txn, signer_id, |status| status.pin_failures = 0)?;
    append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::SignerKeyReplaced { signer_id: signer_id.to_string() }))?;
    Ok(Outcome::Signer(Signer { sealed_key: None, ..signer }))
}

/// Appends a leaf to the Merkle log; returns its index. O(log n) node writes.
fn append_leaf(txn: &WriteTransaction, leaf: &LogLeaf) -> Result<u64, StateError> {
    LogTables::open(txn)?.append(&leaf.encode(), None)
}

/// The tables the Merkle log is appended to: its size (in META), its nodes and its leaves.
struct LogTables<'txn> {
    meta: redb::Table<'txn, &'static str, u64>,
    nodes: WriteNodes<'txn>,
    leaves: Leaves<redb::Table<'txn, u64, &'static [u8]>>,
}

impl<'txn> LogTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        Ok(LogTables { meta: txn.open_table(META)?, nodes: WriteNodes::open(txn)?, leaves: Leaves::open_for_apply(txn)? })
    }

    fn size(&self) -> Result<u64, StateError> {
        Ok(self.meta.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0))
    }

    /// Appends leaf bytes `data`, stored as `stored` when given (a packed form of the same
    /// bytes); returns its index.
    fn append(&mut self, data: &[u8], stored: Option<&[u8]>) -> Result<u64, StateError> {
        let size = self.size()?;
        tlog::append(&mut self.nodes, size, data).map_err(merkle_error)?;
        self.leaves.append(size, stored.unwrap_or(data))?;
        self.meta.insert(TLOG_SIZE, size + 1)?;
        Ok(size)
    }
}

/// Appends a certification's leaf in its stored form (`state::packing`): a delta against
/// the signer's reference leaf, or, for the signer's first, packed with the certificates
/// its CMS carries kept once in `security` (and it becomes the reference). Same bytes in
/// the tree either way. The leaf is inserted once, already packed: inserting the whole
/// leaf and then its packed form split pages for bytes that did not stay.
fn append_leaf_packed(
    log: &mut LogTables<'_>,
    security: &mut redb::Table<'_, &'static str, &'static [u8]>,
    leaf: &LogLeaf,
    certification: &Certification,
) -> Result<u64, StateError> {
    let index = log.size()?;
    let data = leaf.encode();
    let stored = pack_certification_leaf(&log.leaves, security, index, &data, certification)?;
    let appended = log.append(&data, Some(stored.as_slice()))?;
    debug_assert_eq!(appended, index);
    Ok(index)
}

/// The stored form of certification leaf `index` (see [`append_leaf_packed`]).
fn pack_certification_leaf(
    leaves: &Leaves<impl ReadableTable<u64, &'static [u8]>>,
    security: &mut redb::Table<'_, &'static str, &'static [u8]>,
    index: u64,
    leaf_bytes: &[u8],
    certification: &Certification,
) -> Result<Vec<u8>, StateError> {
    let reference_key = packing::reference_leaf_key(&certification.signer_id);
    let reference_index = security.get(reference_key.as_str())?.map(|value| decode::<u64>(value.value())).transpose()?;
    if let Some(reference_index) = reference_index.filter(|&reference| reference != index) {
        let reference = read_leaf(leaves, &*security, reference_index)?
            .ok_or_else(|| StateError::Corrupt(format!("signer {}'s reference leaf {reference_index} is missing", certification.signer_id)))?;
        return Ok(packing::delta_leaf(leaf_bytes, reference_index, &reference));
    }
    let certificates = crate::crypto::cms::embedded_certificates(&certification.cms_der);
    let (packed, referred) = packing::pack_leaf(leaf_bytes, &certificates);
    for (hash, der) in referred {
        let key = packing::certificate_key(&hash);
        if security.get(key.as_str())?.is_none() {
            security.insert(key.as_str(), der.as_slice())?;
        }
    }
    security.insert(reference_key.as_str(), encode(&index).as_slice())?;
    Ok(packed)
}

fn unpack(
    stored: &[u8],
    leaves: &Leaves<impl ReadableTable<u64, &'static [u8]>>,
    security: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<u8>, StateError> {
    let certificate = |hash: &Sha256| Ok(security.get(packing::certificate_key(hash).as_str())?.map(|value| value.value().to_vec()));
    if let (Some((references, generation)), Some(index)) = (&leaves.references, packing::delta_reference(stored)) {
        let base = references.get_or_load(*generation, index, || {
            let reference = leaves
                .stored(index)?
                .ok_or_else(|| StateError::Corrupt(format!("a delta leaf refers to leaf {index}, which is missing")))?;
            if reference.first() == Some(&packing::DELTA_LEAF) {
                return Err(StateError::Corrupt(format!("a delta leaf refers to leaf {index}, itself a delta")));
            }
            packing::unpack_leaf(&reference, certificate, |_| Ok(None), StateError::Corrupt).map(std::sync::Arc::new)
        })?;
        return packing::unpack_delta(stored, &base, certificate, StateError::Corrupt);
    }
    packing::unpack_leaf(stored, certificate, |index| leaves.stored(index), StateError::Corrupt)
}

/// A log leaf's index, with its bytes when they were already read.
struct LeafRead {
    index: u64,
    data: Option<Vec<u8>>,
}

/// Inclusion proof of leaf `leaf_index` at `tree_size` (0: the current size) within `txn`;
/// `leaf_data` when the caller already read the leaf.
fn inclusion_in(
    txn: &redb::ReadTransaction,
    nodes: impl tlog::NodeStore<Error = StateError>,
    leaf_index: u64,
    tree_size: u64,
    leaf_data: Option<Vec<u8>>,
) -> Result<Option<LogProof>, StateError> {
    let current = txn.open_table(META)?.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0);
    let tree_size = if tree_size == 0 { current } else { tree_size };
    if tree_size > current || leaf_index >= tree_size {
        return Ok(None);
    }
    let audit_path = tlog::inclusion_proof(&nodes, leaf_index, tree_size).map_err(merkle_error)?;
    let root = tlog::root(&nodes, tree_size).map_err(merkle_error)?;
    // Kept hashes hold their lock while a proof reads them: let it go before the leaf.
    drop(nodes);
    let leaf_data = match leaf_data {
        Some(data) => data,
        None => read_leaf(&Leaves::open(txn)?, &txn.open_table(SECURITY)?, leaf_index)?
            .ok_or_else(|| StateError::Corrupt(format!("log leaf {leaf_index} is missing")))?,
    };
    Ok(Some(LogProof { leaf_index, tree_size, root, leaf_data, audit_path }))
}

/// A leaf's own bytes (unpacked), or `None` beyond the log.
fn read_leaf(
    leaves: &Leaves<impl ReadableTable<u64, &'static [u8]>>,
    security: &impl ReadableTable<&'static str, &'static [u8]>,
    index: u64,
) -> Result<Option<Vec<u8>>, StateError> {
    leaves.stored(index)?.map(|stored| unpack(&stored, leaves, security)).transpose()
}

/// The log's leaves as stored: in rows of many ([`TLOG_LEAF_BUCKETS`]), or one to a row
/// ([`TLOG_LEAVES`], layouts 1 and 2: the migration, and tests writing those layouts).
struct Leaves<T> {
    table: T,
    one_per_row: bool,
    /// Where unpacked reference leaves are kept between reads, and the generation the
    /// read took (the read paths that verify; `None` elsewhere).
    references: Option<(std::sync::Arc<ReferenceLeaves>, u64)>,
}

impl<T> Leaves<T> {
    fn with_references(mut self, references: &std::sync::Arc<ReferenceLeaves>, generation: u64) -> Self {
        self.references = Some((references.clone(), generation));
        self
    }
}

/// How many unpacked reference leaves [`ReferenceLeaves`] keeps (one per signer that signs;
/// a few KB each).
const REFERENCE_LEAVES_KEPT: usize = 1024;

/// Signers' reference leaves, unpacked. Every delta-encoded leaf copies from its signer's
/// one reference leaf (`packing`), so without this every verify read that reference's row
/// of leaves and its certificates and rebuilt it. A leaf never changes once appended.
type ReferenceLeaves = Kept<u64, std::sync::Arc<Vec<u8>>>;

/// How many certifications decoded from their leaves [`LeafRecords`] keeps: about 3 KB
/// each (the record and its leaf), 24 MiB in all. Those verified most are the recent
/// ones, whose QR codes citizens have just scanned.
const LEAF_RECORDS_KEPT: usize = 8192;

/// A certification as its log leaf records it (without its revocation, which lives in
/// its row and is read afresh), with the leaf's bytes for its inclusion proof.
#[derive(Clone)]
struct LeafRecord {
    certification: Certification,
    leaf: Vec<u8>,
}

/// How many decoded signers verify keeps (a few KB each: the chain and the sealed key).
const SIGNERS_KEPT: usize = 1024;

/// A signer decoded from its row, with the row's bytes it was decoded from.
struct KeptSigner {
    row: Vec<u8>,
    signer: Signer,
}

/// Certifications decoded from their log leaves, by leaf index: a leaf never changes
/// once appended, so a verify of a document read recently neither unpacks its leaf nor
/// decodes it again.
type LeafRecords = Kept<u64, std::sync::Arc<LeafRecord>>;

impl Leaves<redb::ReadOnlyTable<u64, &'static [u8]>> {
    fn open(txn: &redb::ReadTransaction) -> Result<Self, StateError> {
        Ok(Leaves { table: txn.open_table(TLOG_LEAF_BUCKETS)?, one_per_row: false, references: None })
    }
}

impl<'txn> Leaves<redb::Table<'txn, u64, &'static [u8]>> {
    fn open_for_apply(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        #[cfg(test)]
        if tests::layout_1::writing_layout() < 3 {
            return Ok(Leaves { table: txn.open_table(TLOG_LEAVES)?, one_per_row: true, references: None });
        }
        Ok(Leaves { table: txn.open_table(TLOG_LEAF_BUCKETS)?, one_per_row: false, references: None })
    }

    /// Appends leaf `index`'s stored form; `index` must be the next leaf.
    fn append(&mut self, index: u64, stored: &[u8]) -> Result<(), StateError> {
        if self.one_per_row {
            self.table.insert(index, stored)?;
            return Ok(());
        }
        append_to_leaf_rows(&mut self.table, index, stored)
    }
}

impl<T: ReadableTable<u64, &'static [u8]>> Leaves<T> {
    /// The stored form of leaf `index`, or `None` beyond the log.
    fn stored(&self, index: u64) -> Result<Option<Vec<u8>>, StateError> {
        if self.one_per_row {
            return Ok(self.table.get(index)?.map(|value| value.value().to_vec()));
        }
        let Some(row) = self.table.range(..=index)?.next_back() else { return Ok(None) };
        let (first, row) = row?;
        Ok(leaves_in_row(row.value())?.into_iter().nth((index - first.value()) as usize).map(<[u8]>::to_vec))
    }

    /// The stored forms of leaves `start..end` that exist, in index order.
    fn stored_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        let mut found = Vec::new();
        if start >= end {
            return Ok(found);
        }
        if self.one_per_row {
            for row in self.table.range(start..end)? {
                let (index, stored) = row?;
                found.push((index.value(), stored.value().to_vec()));
            }
            return Ok(found);
        }
        let first_row = match self.table.range(..=start)?.next_back() {
            Some(row) => row?.0.value(),
            None => start,
        };
        for row in self.table.range(first_row..end)? {
            let (first, row) = row?;
            for (offset, stored) in leaves_in_row(row.value())?.into_iter().enumerate() {
                let index = first.value() + offset as u64;
                if (start..end).contains(&index) {
                    found.push((index, stored.to_vec()));
                }
            }
        }
        Ok(found)
    }
}

/// The stored leaves one row of [`TLOG_LEAF_BUCKETS`] holds, in order.
fn leaves_in_row(mut row: &[u8]) -> Result<Vec<&[u8]>, StateError> {
    let mut leaves = Vec::new();
    while !row.is_empty() {
        let corrupt = || StateError::Corrupt("a row of log leaves ends inside a leaf".into());
        let (length, rest) = row.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let length = u32::from_be_bytes(*length) as usize;
        let leaf = rest.get(..length).ok_or_else(corrupt)?;
        leaves.push(leaf);
        row = &rest[length..];
    }
    Ok(leaves)
}

/// Appends leaf `index`'s stored form to the last row of [`TLOG_LEAF_BUCKETS`] when it
/// fits there, else starts a row; `index` must be the next leaf.
fn append_to_leaf_rows(table: &mut redb::Table<'_, u64, &'static [u8]>, index: u64, stored: &[u8]) -> Result<(), StateError> {
    append_leaves_to_rows(table, [(index, stored)])
}

/// Appends consecutive leaves (index, stored form) to [`TLOG_LEAF_BUCKETS`]: each goes to
/// the last row when it fits there, else starts a row. Each row is written once.
fn append_leaves_to_rows<'a>(table: &mut redb::Table<'_, u64, &'static [u8]>, leaves: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<(), StateError> {
    // The last row (its first index and bytes), and the index of the next leaf.
    let mut row: Option<(u64, Vec<u8>)> = table.last()?.map(|(first, row)| (first.value(), row.value().to_vec()));
    let mut next = match &row {
        Some((first, bytes)) => first + leaves_in_row(bytes)?.len() as u64,
        None => 0,
    };
    for (index, stored) in leaves {
        if index != next {
            return Err(StateError::Corrupt(format!("log leaf {index} is appended where leaf {next} is next")));
        }
        let length = u32::try_from(stored.len()).map_err(|_| StateError::Corrupt(format!("log leaf {index} exceeds 4 GiB")))?;
        if row.as_ref().is_some_and(|(_, bytes)| bytes.len() + 4 + stored.len() > LEAF_ROW_BYTES_MAX) {
            let (first, bytes) = row.take().expect("checked above");
            table.insert(first, bytes.as_slice())?;
        }
        let (_, bytes) = row.get_or_insert_with(|| (index, Vec::new()));
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(stored);
        next = index + 1;
    }
    if let Some((first, bytes)) = row {
        table.insert(first, bytes.as_slice())?;
    }
    Ok(())
}

fn decode_certification_value(bytes: &[u8]) -> Result<StoredCertification, StateError> {
    packing::decode_certification_value(bytes).map_err(StateError::Corrupt)
}

/// [`Records`] of a read transaction.
type ReadRecords = Records<
    redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    redb::ReadOnlyTable<u64, &'static [u8]>,
    redb::ReadOnlyTable<&'static str, &'static [u8]>,
>;

/// The tables a certification is read from: its row, its leaf, shared certificates.
struct Records<C, L, S> {
    table: C,
    leaves: Leaves<L>,
    security: S,
    /// Where decoded leaf records are kept between reads, and the generation the read
    /// took (verify only; `None` elsewhere).
    kept: Option<(std::sync::Arc<LeafRecords>, u64)>,
}

impl<C, L, S> Records<C, L, S>
where
    C: ReadableTable<&'static [u8], &'static [u8]>,
    L: ReadableTable<u64, &'static [u8]>,
    S: ReadableTable<&'static str, &'static [u8]>,
{
    fn new(table: C, leaves: Leaves<L>, security: S) -> Self {
        Records { table, leaves, security, kept: None }
    }

    fn with_kept(mut self, kept: &std::sync::Arc<LeafRecords>, generation: u64) -> Self {
        self.kept = Some((kept.clone(), generation));
        self
    }

    fn certification(&self, key: &[u8]) -> Result<Option<Certification>, StateError> {
        let Some(value) = self.table.get(key)? else { return Ok(None) };
        self.from_value(value.value()).map(Some)
    }

    /// Every certification `index` (CERTIFICATIONS_BY_DOCUMENT) lists for `document`, in
    /// lookup-key order, each with the leaf it was read from.
    fn of_document(
        &self,
        index: &impl ReadableMultimapTable<&'static [u8], &'static [u8]>,
        document: &Sha256,
    ) -> Result<Vec<(Certification, Option<LeafRead>)>, StateError> {
        let mut found = Vec::new();
        for key in index.get(document.0.as_slice())? {
            let key = key?;
            let value = self
                .table
                .get(key.value())?
                .ok_or_else(|| StateError::Corrupt(format!("index names a missing certification of {document}")))?;
            found.push(self.from_value_with_leaf(value.value())?);
        }
        Ok(found)
    }

    /// A `certifications` value as the record it stands for.
    fn from_value(&self, value: &[u8]) -> Result<Certification, StateError> {
        self.from_value_with_leaf(value).map(|(certification, _)| certification)
    }

    /// [`Records::from_value`], with the leaf it was read from (`None` for a record of
    /// layout 1, which is stored whole).
    fn from_value_with_leaf(&self, value: &[u8]) -> Result<(Certification, Option<LeafRead>), StateError> {
        let row = match decode_certification_value(value)? {
            StoredCertification::Full(certification) => return Ok((certification, None)),
            StoredCertification::Row(row) => row,
        };
        let record = match &self.kept {
            Some((kept, generation)) => std::sync::Arc::unwrap_or_clone(
                kept.get_or_load(*generation, row.leaf_index, || self.leaf_record(row.leaf_index).map(std::sync::Arc::new))?,
            ),
            None => self.leaf_record(row.leaf_index)?,
        };
        Ok((
            Certification { revocation: row.revocation, ..record.certification },
            Some(LeafRead { index: row.leaf_index, data: Some(record.leaf) }),
        ))
    }

    /// The certification log leaf `index` records, read and decoded.
    fn leaf_record(&self, index: u64) -> Result<LeafRecord, StateError> {
        let leaf = read_leaf(&self.leaves, &self.security, index)?
            .ok_or_else(|| StateError::Corrupt(format!("a certification names log leaf {index}, which is missing")))?;
        match LogLeaf::decode(&leaf).map_err(StateError::Corrupt)?.event {
            LogEvent::Certification(certification) => Ok(LeafRecord { certification, leaf }),
            _ => Err(StateError::Corrupt(format!("log leaf {index} is not a certification"))),
        }
    }

    /// A remembered outcome as the caller receives it.
    fn expand(&self, outcome: Outcome) -> Result<Outcome, StateError> {
        let Outcome::CertificationsByCode(codes) = outcome else { return Ok(outcome) };
        let mut certifications = Vec::with_capacity(codes.len());
        for code in codes {
            let certification = self
                .certification(code.index_key().as_slice())?
                .ok_or_else(|| StateError::Corrupt(format!("a remembered outcome names certification {code}, which is missing")))?;
            certifications.push(certification);
        }
        Ok(Outcome::Certifications(certifications))
    }
}

/// Whether an outcome holds anything the retention strips (private fields, a sealed key).
fn has_private_details(outcome: &Outcome) -> bool {
    outcome.without_private_details() != *outcome
}

/// How a request row remembers an outcome that holds records: certifications by code, a
/// dossier by id (the row's `detailed` flag says whether its private fields are part of
/// the answer).
fn compact_outcome(outcome: &Outcome) -> Option<Outcome> {
    match outcome {
        Outcome::Dossier(dossier) => Some(Outcome::DossierById(dossier.id.clone())),
        other => certifications_by_code(other),
    }
}

/// Certifications by code (record layout 2; rows without a retention flag since).
fn certifications_by_code(outcome: &Outcome) -> Option<Outcome> {
    match outcome {
        Outcome::Certifications(certifications) => {
            Some(Outcome::CertificationsByCode(certifications.iter().map(|certification| certification.lookup_code.clone()).collect()))
        }
        _ => None,
    }
}

/// The log nodes of an apply: [`TLOG_NODE_BUCKETS`] (tests writing an earlier layout use
/// one row per node in [`TLOG_NODES`]).
struct WriteNodes<'txn> {
    table: redb::Table<'txn, (u8, u64), &'static [u8]>,
    one_per_row: bool,
}
struct ReadNodes(redb::ReadOnlyTable<(u8, u64), &'static [u8]>);

impl<'txn> WriteNodes<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        #[cfg(test)]
        if tests::layout_1::writing_layout() < 3 {
            return Ok(WriteNodes { table: txn.open_table(TLOG_NODES)?, one_per_row: true });
        }
        Ok(WriteNodes { table: txn.open_table(TLOG_NODE_BUCKETS)?, one_per_row: false })
    }
}

/// The row of node `index` and the node's offset in it.
fn node_bucket(index: u64) -> (u64, usize) {
    (index / NODES_PER_BUCKET, (index % NODES_PER_BUCKET) as usize * 32)
}

fn node_in_bucket(bucket: &[u8], index: u64) -> Option<[u8; 32]> {
    let (_, offset) = node_bucket(index);
    bucket.get(offset..offset + 32).map(|hash| hash.try_into().expect("32 bytes"))
}

fn node_from(bytes: &[u8]) -> Result<[u8; 32], StateError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StateError::Corrupt(format!("log node of {} bytes", bytes.len())))
}

/// Appends node `(level, index)` to its row; it must be the next node of its level.
fn put_node_in_bucket(table: &mut redb::Table<'_, (u8, u64), &'static [u8]>, level: u8, index: u64, hash: &[u8; 32]) -> Result<(), StateError> {
    let (bucket, offset) = node_bucket(index);
    let mut row = table.get((level, bucket))?.map(|value| value.value().to_vec()).unwrap_or_default();
    if row.len() != offset {
        return Err(StateError::Corrupt(format!("log node ({level}, {index}) is not the next of its level ({} stored in its row)", row.len() / 32)));
    }
    row.extend_from_slice(hash);
    table.insert((level, bucket), row.as_slice())?;
    Ok(())
}

impl tlog::NodeStore for WriteNodes<'_> {
    type Error = StateError;
    fn get(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>, StateError> {
        if self.one_per_row {
            return self.table.get((level, index))?.map(|value| node_from(value.value())).transpose();
        }
        Ok(self.table.get((level, node_bucket(index).0))?.and_then(|row| node_in_bucket(row.value(), index)))
    }
    fn put(&mut self, level: u8, index: u64, hash: [u8; 32]) -> Result<(), StateError> {
        if self.one_per_row {
            self.table.insert((level, index), hash.as_slice())?;
            return Ok(());
        }
        put_node_in_bucket(&mut self.table, level, index, &hash)
    }
}

impl tlog::NodeStore for ReadNodes {
    type Error = StateError;
    fn get(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>, StateError> {
        Ok(self.0.get((level, node_bucket(index).0))?.and_then(|row| node_in_bucket(row.value(), index)))
    }
    fn put(&mut self, _level: u8, _index: u64, _hash: [u8; 32]) -> Result<(), StateError> {
        Err(StateError::Storage("log nodes are read-only outside apply".into()))
    }
}

fn merkle_error(error: tlog::MerkleError<StateError>) -> StateError {
    match error {
        tlog::MerkleError::Store(inner) => inner,
        other => StateError::Corrupt(format!("transparency log: {other}")),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard serialisation of owned data into a Vec")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|error| StateError::Corrupt(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ArchivedFile;

    fn dossier(id: &str, agency: &str, content: &[u8]) -> Dossier {
        Dossier {
            id: id.into(),
            agency_id: agency.into(),
            procedure_code: "1.001193".into(),
            dossier_number: "HS-1".into(),
            received_date: "2026-12-01".into(),
            private_fields: vec![("applicant_name".into(), "Lê Văn Cường".into())],
            files: vec![ArchivedFile { name: "a.pdf".into(), content_type: "application/pdf".into(), size_bytes: content.len() as u64, sha256: Sha256::digest(content) }],
            archived_at_unix: 0,
        }
    }

    fn envelope(actor: &Actor, request_id: &str, issued_at_unix: i64, command: Command) -> Bytes {
        let envelope = CommandEnvelope {
            version: super::super::command::COMMAND_VERSION,
            request_id: request_id.into(),
            request_fingerprint: [1; 32],
            issued_at_unix,
            command,
            actor: actor.clone(),
        };
        Bytes::from(envelope.encode())
    }

    /// The record layout before issue 16, written by the code of that time, so that the
    /// migration is tested against what earlier releases really stored.
    pub(super) mod layout_1 {
        use super::super::*;
        use std::cell::Cell;

        thread_local! {
            /// The record layout apply writes on this thread (0: the current one).
            static WRITING: Cell<u64> = const { Cell::new(0) };
        }

        /// Whether apply writes layout 1 on this thread.
        pub fn writing() -> bool {
            WRITING.with(Cell::get) == 1
        }

        /// The record layout apply writes on this thread.
        pub fn writing_layout() -> u64 {
            match WRITING.with(Cell::get) {
                0 => RECORD_LAYOUT,
                layout => layout,
            }
        }

        /// Runs `body` with apply writing layout 1 on this thread.
        pub fn with<T>(body: impl FnOnce() -> T) -> T {
            with_layout(1, body)
        }

        /// Runs `body` with apply writing `layout` on this thread.
        pub fn with_layout<T>(layout: u64, body: impl FnOnce() -> T) -> T {
            WRITING.with(|writing| writing.set(layout));
            let result = body();
            WRITING.with(|writing| writing.set(0));
            result
        }

        /// `certify` as it was: the full record in `certifications`, the leaf index in
        /// `certification_leaves`, the leaf unpacked.
        pub fn certify(txn: &WriteTransaction, actor: &Actor, certifications: Vec<Certification>) -> Result<Outcome, StateError> {
            let mut table = txn.open_table(CERTIFICATIONS)?;
            let mut by_document = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
            let mut leaves = txn.open_table(CERTIFICATION_LEAVES)?;
            for certification in &certifications {
                let key = certification.lookup_code.index_key();
                table.insert(key.as_slice(), encode(certification).as_slice())?;
                by_document.insert(certification.document_sha256.0.as_slice(), key.as_slice())?;
                let leaf_index = append_leaf(txn, &LogLeaf::new(actor.clone(), LogEvent::Certification(certification.clone())))?;
                leaves.insert(key.as_slice(), leaf_index)?;
                let code = certification.lookup_code.to_string();
                txn.open_table(SECURITY)?.insert(signature_key(&certification.cms_der).as_str(), encode(&code).as_slice())?;
                update_signer_status(txn, &certification.signer_id, |status| status.pin_failures = 0)?;
                count_certification(txn, certification)?;
            }
            Ok(Outcome::Certifications(certifications))
        }
    }

    fn apply(store: &StateStore, data: Vec<Bytes>) -> Vec<Outcome> {
        let first = store.applied().unwrap() + 1;
        let entries: Vec<Entry> = data.into_iter().enumerate().map(|(offset, data)| Entry { index: first + offset as u64, term: 1, data }).collect();
        store.apply_batch(&entries).unwrap().iter().map(|bytes| Outcome::decode(bytes).unwrap()).collect()
    }

    /// The variables naming the file [`leave_a_store_unclean`] writes, and how its last
    /// commit is made: "quick" (as kyso commits) or "plain" (without quick repair).
    const UNCLEAN_STORE_VARIABLE: &str = "KYSO_TEST_UNCLEAN_STORE";
    const UNCLEAN_COMMIT_VARIABLE: &str = "KYSO_TEST_UNCLEAN_COMMIT";

    /// What a test's tracing subscriber wrote.
    #[derive(Clone, Default)]
    struct LogLines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl LogLines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for LogLines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogLines {
        type Writer = LogLines;
        fn make_writer(&'a self) -> LogLines {
            self.clone()
        }
    }

    /// Child half of the test below (run only by it): one more commit, then an abort with
    /// the store open, which is what a kill leaves.
    #[test]
    #[ignore = "run as a child process by a_store_is_walked_on_open_only_after_a_commit_without_quick_repair"]
    fn leave_a_store_unclean() {
        let path = std::env::var(UNCLEAN_STORE_VARIABLE).expect("run by the test that names the file");
        let store = StateStore::open(Path::new(&path)).unwrap();
        let commit = std::env::var(UNCLEAN_COMMIT_VARIABLE).unwrap_or_default();
        if commit == "plain" {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("test-padding", 1).unwrap();
            txn.commit().unwrap();
        } else if commit == "volatile" {
            // One durable apply, then three a Raft member makes without fsync.
            let next = store.applied().unwrap() + 1;
            let clerk = Actor { name: "clerk".into(), certificate_sha256: Some(Sha256([9; 32])) };
            let dossier = |index: u64| envelope(&clerk, &format!("r-{index}"), 1_000_000, Command::ArchiveDossier(dossier(&format!("d{index}"), "xa-a", b"scan")));
            store.apply_batch(&[Entry { index: next, term: 1, data: dossier(next) }]).unwrap();
            for index in next + 1..next + 4 {
                store.apply_batch_as(&[Entry { index, term: 1, data: dossier(index) }], Commit::Volatile).unwrap();
            }
            assert_eq!((store.applied().unwrap(), store.durable_applied()), (next + 3, next));
        } else {
            let next = store.applied().unwrap() + 1;
            store.apply_batch(&[Entry { index: next, term: 1, data: Bytes::new() }]).unwrap();
        }
        std::process::abort();
    }

    /// Every commit kyso makes saves redb's allocator state (quick repair), so a file a
    /// kill leaves opens at once. A file whose last commit did not (an older kyso's) is
    /// walked whole on open, and the store reports how long that took. The node-level
    /// test: `tests/single_node.rs::a_start_after_a_kill_needs_no_state_repair_and_a_clean_stop_leaves_none`.
    #[test]
    fn a_store_is_walked_on_open_only_after_a_commit_without_quick_repair() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let leave_unclean = |commit: &str| {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "state::store::tests::leave_a_store_unclean", "--ignored", "--test-threads=1"])
                .env(UNCLEAN_STORE_VARIABLE, &path)
                .env(UNCLEAN_COMMIT_VARIABLE, commit)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "the child aborts with the store open");
        };
        leave_unclean("quick");
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.repaired_on_open(), None, "the last commit saved the allocator state: nothing to walk");
        drop(store);
        leave_unclean("plain");
        let log = LogLines::default();
        let subscriber = tracing_subscriber::fmt().with_writer(log.clone()).with_ansi(false).finish();
        let store = tracing::subscriber::with_default(subscriber, || StateStore::open(&path).unwrap());
        assert!(store.repaired_on_open().is_some(), "a commit without quick repair leaves a file that must be walked");
        let log = log.text();
        assert!(log.contains("repairing the state store after an unclean shutdown"), "the walk's progress is logged:\n{log}");
        assert!(log.contains("redb checked and repaired it on open"), "its end is logged:\n{log}");
        drop(store);
        assert_eq!(StateStore::open(&path).unwrap().repaired_on_open(), None, "closed cleanly");
    }

    /// A Raft member's applies between durable commits are volatile: a kill takes them back
    /// to the last durable commit (the Raft log replays them), and the file still opens
    /// without a walk, since that commit saved the allocator state.
    #[test]
    fn a_kill_takes_the_state_back_to_its_last_durable_commit_without_a_walk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let before = StateStore::open(&path).unwrap().applied().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "state::store::tests::leave_a_store_unclean", "--ignored", "--test-threads=1"])
            .env(UNCLEAN_STORE_VARIABLE, &path)
            .env(UNCLEAN_COMMIT_VARIABLE, "volatile")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child aborts with the store open");
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.repaired_on_open(), None, "the last durable commit saved the allocator state");
        assert_eq!(store.applied().unwrap(), before + 1, "the three volatile applies are gone, the durable one stayed");
        assert_eq!(store.durable_applied(), before + 1);
        assert!(store.dossier("d1").unwrap().is_some() && store.dossier("d2").unwrap().is_none());
        // The Raft log would replay entries 2-4: they apply again on top.
        let clerk = Actor { name: "clerk".into(), certificate_sha256: Some(Sha256([9; 32])) };
        for index in 2..5 {
            let data = envelope(&clerk, &format!("r-{index}"), 1_000_000, Command::ArchiveDossier(dossier(&format!("d{index}"), "xa-a", b"scan")));
            store.apply_logged(&[Entry { index, term: 1, data }]).unwrap();
        }
        assert!(store.dossier("d4").unwrap().is_some());
    }

    #[test]
    fn a_durable_commit_is_due_after_the_interval_or_the_entry_bound() {
        let now = std::time::Instant::now();
        let at = |age: std::time::Duration, volatile_entries: u64| Persistence {
            applied: 10 + volatile_entries,
            durable: 10,
            durable_at: now.checked_sub(age).unwrap(),
            volatile_entries,
        };
        let young = std::time::Duration::from_secs(3600);
        assert!(at(PERSIST_INTERVAL, 0).due(1), "the interval passed");
        assert!(at(PERSIST_INTERVAL * 5, 3).due(0));
        // Far from the interval (an hour ahead, so no slow machine reaches it): only the count.
        let fresh = |volatile_entries| Persistence { durable_at: now + young, ..at(std::time::Duration::ZERO, volatile_entries) };
        assert!(!fresh(0).due(PERSIST_ENTRIES_MAX - 1));
        assert!(fresh(0).due(PERSIST_ENTRIES_MAX));
        assert!(fresh(PERSIST_ENTRIES_MAX - 5).due(5));
        assert!(!fresh(PERSIST_ENTRIES_MAX - 5).due(4));
    }

    /// After the interval, the driver's call makes the volatile applies durable with one
    /// empty commit.
    #[test]
    fn persist_if_due_makes_volatile_applies_durable_once_the_interval_passed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let clerk = Actor { name: "clerk".into(), certificate_sha256: Some(Sha256([9; 32])) };
        let data = envelope(&clerk, "r-1", 1_000_000, Command::ArchiveDossier(dossier("d1", "xa-a", b"scan")));
        store.apply_batch_as(&[Entry { index: 1, term: 1, data }], Commit::Volatile).unwrap();
        assert_eq!((store.applied().unwrap(), store.durable_applied()), (1, 0));
        std::thread::sleep(PERSIST_INTERVAL);
        store.persist_if_due().unwrap();
        assert_eq!(store.durable_applied(), 1, "an empty durable commit persisted the volatile apply");
    }

    #[test]
    fn request_rows_lose_private_details_after_the_retention_and_still_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let clerk = Actor { name: "clerk".into(), certificate_sha256: Some(Sha256([9; 32])) };
        let day = 86_400;
        apply(&store, vec![envelope(&clerk, "r-1", 1_000_000, Command::ArchiveDossier(dossier("d1", "xa-a", b"one")))]);
        let (_, outcome) = store.request_outcome(&clerk, "r-1", &[1; 32]).unwrap().unwrap();
        assert!(matches!(&outcome, Outcome::Dossier(kept) if !kept.private_fields.is_empty()), "within the retention the full answer is kept");
        // A command issued within the retention strips nothing; one issued after it does.
        apply(&store, vec![envelope(&clerk, "r-2", 1_000_000 + 29 * day, Command::ArchiveDossier(dossier("d2", "xa-a", b"two")))]);
        assert!(matches!(store.request_outcome(&clerk, "r-1", &[1; 32]).unwrap().unwrap().1, Outcome::Dossier(kept) if !kept.private_fields.is_empty()));
        apply(&store, vec![envelope(&clerk, "r-3", 1_000_000 + 31 * day, Command::ArchiveDossier(dossier("d3", "xa-a", b"three")))]);
        let (fingerprint, outcome) = store.request_outcome(&clerk, "r-1", &[1; 32]).unwrap().unwrap();
        assert_eq!(fingerprint, [1; 32]);
        let Outcome::Dossier(stripped) = outcome else { panic!("{outcome:?}") };
        assert!(stripped.private_fields.is_empty(), "the row keeps no private field after the retention");
        assert_eq!(stripped.id, "d1", "deduplication still answers with the same dossier");
        // A retry of r-1 by its caller gets that answer; the same id from another caller is a new request.
        let retry = apply(&store, vec![envelope(&clerk, "r-1", 1_000_000 + 32 * day, Command::ArchiveDossier(dossier("d9", "xa-a", b"nine")))]);
        assert!(matches!(&retry[0], Outcome::Dossier(answer) if answer.id == "d1"), "{retry:?}");
        let other = Actor { name: "other".into(), certificate_sha256: Some(Sha256([8; 32])) };
        let theirs = apply(&store, vec![envelope(&other, "r-1", 1_000_000 + 32 * day, Command::ArchiveDossier(dossier("d9", "xa-a", b"nine")))]);
        assert!(matches!(&theirs[0], Outcome::Dossier(answer) if answer.id == "d9"), "{theirs:?}");
        // The derived index survives a restart (rebuilt, not replicated).
        drop(store);
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply(&store, vec![envelope(&clerk, "r-4", 1_000_000 + 70 * day, Command::ArchiveDossier(dossier("d4", "xa-a", b"four")))]);
        let Outcome::Dossier(stripped) = store.request_outcome(&other, "r-1", &[1; 32]).unwrap().unwrap().1 else { panic!() };
        assert!(stripped.private_fields.is_empty());
    }

    fn signer_for(agencies: &[&str]) -> Signer {
        Signer {
            id: "s1".into(),
            name: "Người Ký".into(),
            title: "Chủ tịch".into(),
            agency_ids: agencies.iter().map(|agency| agency.to_string()).collect(),
            subject: "CN=Người Ký".into(),
            issuer: "CN=CA".into(),
            serial_hex: "01".into(),
            not_before_unix: 0,
            not_after_unix: i64::MAX,
            key_algorithm: "ecdsa-p256".into(),
            chain_der: Vec::new(),
            sealed_key: None,
            registered_at_unix: 0,
        }
    }

    fn certification_of(dossier: &Dossier, kind: crate::domain::CertificationKind, signed_at_unix: i64, signature: u8) -> Certification {
        Certification {
            version: crate::domain::CERTIFICATION_RECORD_VERSION,
            lookup_code: crate::lookup::LookupCode::generate(&ring::rand::SystemRandom::new()).unwrap(),
            document_sha256: dossier.files[0].sha256,
            kind,
            agency_id: dossier.agency_id.clone(),
            signer_id: "s1".into(),
            dossier_id: dossier.id.clone(),
            signed_at_unix,
            cms_der: vec![signature],
            delivered_pdf: None,
            revocation: None,
        }
    }

    #[test]
    fn the_same_entries_give_the_same_statistics_on_every_store() {
        use crate::domain::CertificationKind::{CertifiedCopy, Result as SignedResult};
        use crate::statistics::{vietnam_day, VerificationChannel, VerificationCount};
        // 2026-12-01 08:00 in Vietnam.
        let morning = 1_796_086_800;
        let actor = Actor::local("test");
        let mut first = dossier("d1", "xa-a", b"first scan");
        first.archived_at_unix = morning;
        let mut second = dossier("d2", "xa-b", b"second scan, longer");
        second.archived_at_unix = morning;
        let result = certification_of(&first, SignedResult, morning + 3600, 1);
        let copy = certification_of(&second, CertifiedCopy, morning + 7200, 2);
        let day = vietnam_day(morning);
        let tally = vec![
            VerificationCount { day, agency_id: "xa-a".into(), channel: VerificationChannel::Grpc, count: 3 },
            VerificationCount { day, agency_id: "xa-b".into(), channel: VerificationChannel::PublicPage, count: 2 },
        ];
        let entries = vec![
            envelope(&actor, "a1", morning, Command::ArchiveDossier(first.clone())),
            envelope(&actor, "a2", morning, Command::ArchiveDossier(second.clone())),
            envelope(&actor, "s", morning, Command::RegisterSigner(signer_for(&["xa-a", "xa-b"]))),
            envelope(&actor, "c", morning, Command::Certify(vec![result.clone(), copy.clone()])),
            envelope(&actor, "r", morning, Command::RevokeCertification { lookup_code: copy.lookup_code.clone(), reason: "sai".into(), revoked_at_unix: morning + 86_400 }),
            envelope(&actor, "t", morning, Command::TallyVerifications(tally.clone())),
            // A retry of the same tally is not added twice.
            envelope(&actor, "t", morning, Command::TallyVerifications(tally)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let one = StateStore::open(&dir.path().join("one.redb")).unwrap();
        let other = StateStore::open(&dir.path().join("other.redb")).unwrap();
        apply(&one, entries.clone());
        for entry in entries {
            apply(&other, vec![entry]);
        }
        let all = |store: &StateStore| store.statistics(day, day + 1, None).unwrap();
        assert_eq!(all(&one), all(&other));
        assert_eq!(one.digest().unwrap().1, other.digest().unwrap().1, "the statistics are in the digest and agree");
        let on_day = one.statistics(day, day, None).unwrap();
        let a = &on_day["xa-a"];
        let counts = &a.counts;
        assert_eq!((counts.dossiers_archived, counts.files_archived, counts.bytes_archived), (1, 1, 10));
        assert_eq!((counts.results_signed, counts.copies_certified, counts.revocations), (1, 0, 0));
        assert_eq!((counts.verifications_grpc, counts.verifications_public_page), (3, 0));
        assert_eq!(a.signature_delays(), 1);
        let median = a.signature_delay_median_seconds().unwrap();
        assert!(median > 3600 && (median as f64) < 3601.0 * 1.1893, "{median}");
        let b = &on_day["xa-b"].counts;
        assert_eq!((b.dossiers_archived, b.bytes_archived, b.copies_certified, b.verifications_public_page, b.revocations), (1, 19, 1, 2, 0));
        let next_day = one.statistics(day + 1, day + 1, None).unwrap();
        assert_eq!(next_day["xa-b"].counts.revocations, 1, "a revocation counts on the day it was made");
        let only_a = one.statistics(day, day + 1, Some(&std::collections::BTreeSet::from(["xa-a".to_string()]))).unwrap();
        assert_eq!(only_a.keys().collect::<Vec<_>>(), vec!["xa-a"]);
        // A snapshot carries them; a data directory from before them counts its records on
        // open (verifications, in no record, start at zero).
        let (index, snapshot) = one.take_snapshot().unwrap();
        let installed = StateStore::open(&dir.path().join("installed.redb")).unwrap();
        installed.install_snapshot(index, &snapshot).unwrap();
        assert_eq!(all(&installed), all(&one));
        drop(installed);
        {
            let old = StateStore::open(&dir.path().join("installed.redb")).unwrap();
            let txn = old.db.begin_write().unwrap();
            txn.delete_table(STATISTICS).unwrap();
            txn.open_table(META).unwrap().remove(STATISTICS_INDEXED).unwrap();
            txn.commit().unwrap();
        }
        let reopened = StateStore::open(&dir.path().join("installed.redb")).unwrap();
        let mut expected = all(&one);
        for summary in expected.values_mut() {
            summary.counts.verifications_grpc = 0;
            summary.counts.verifications_public_page = 0;
        }
        assert_eq!(all(&reopened), expected);
    }

    #[test]
    fn a_streamed_snapshot_is_staged_then_swapped_in_whole_and_a_cut_one_changes_nothing() {
        use kyso_cluster::SnapshotSource as _;
        let dir = tempfile::tempdir().unwrap();
        let actor = Actor::local("test");
        let leader = StateStore::open(&dir.path().join("leader.redb")).unwrap();
        let mut entries: Vec<Bytes> = (0..40)
            .map(|index| envelope(&actor, &format!("a{index}"), 0, Command::ArchiveDossier(dossier(&format!("d{index}"), "xa-a", format!("scan {index}").as_bytes()))))
            .collect();
        entries.push(envelope(&actor, "s", 0, Command::RegisterSigner(signer_for(&["xa-a"]))));
        apply(&leader, entries);
        let first = dossier("d0", "xa-a", b"scan 0");
        let copy = certification_of(&first, crate::domain::CertificationKind::CertifiedCopy, 3600, 1);
        apply(&leader, vec![envelope(&actor, "c", 0, Command::Certify(vec![copy]))]);
        let follower = StateStore::open(&dir.path().join("follower.redb")).unwrap();
        apply(&follower, vec![envelope(&actor, "other", 0, Command::ArchiveDossier(dossier("x", "xa-b", b"other")))]);
        let follower_before = follower.digest().unwrap();

        let view = leader.snapshot_source().unwrap();
        let at_view = leader.digest().unwrap();
        assert_eq!(view.index(), at_view.0);
        // Writes after the view was opened are not in it.
        apply(&leader, vec![envelope(&actor, "late", 0, Command::ArchiveDossier(dossier("late", "xa-a", b"late")))]);
        let mut pieces = Vec::new();
        view.read(256, &mut |piece| {
            pieces.push(piece);
            Ok(())
        })
        .unwrap();
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|piece| piece.len() < 256 + 4096), "a piece holds about its size");

        // A transfer cut halfway leaves the live state alone and cannot be installed.
        let mut sink = follower.stage_snapshot(view.index()).unwrap();
        for piece in &pieces[..pieces.len() / 2] {
            sink.write(piece).unwrap();
        }
        assert!(sink.finish().is_err(), "an incomplete stream does not finish");
        assert!(follower.restore_staged(view.index()).is_err());
        assert_eq!(follower.digest().unwrap(), follower_before);
        // A damaged piece is refused.
        let mut sink = follower.stage_snapshot(view.index()).unwrap();
        sink.write(&pieces[0]).unwrap();
        assert!(sink.write(&pieces[1][..pieces[1].len() - 1]).is_err());
        drop(sink);
        // A whole one is staged, and swapped in only by restore.
        let mut sink = follower.stage_snapshot(view.index()).unwrap();
        for piece in &pieces {
            sink.write(piece).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(follower.digest().unwrap(), follower_before, "staging leaves the live state alone");
        follower.restore_staged(view.index()).unwrap();
        assert_eq!(follower.digest().unwrap(), at_view);
        follower.restore_staged(view.index()).unwrap();
        assert_eq!(follower.digest().unwrap(), at_view, "installing the same snapshot again changes nothing");
        drop(follower);
        let reopened = StateStore::open(&dir.path().join("follower.redb")).unwrap();
        assert_eq!(reopened.digest().unwrap(), at_view);
        assert_eq!(reopened.blob_agencies(&Sha256::digest(b"scan 7")).unwrap(), vec!["xa-a".to_string()], "derived tables rebuilt");
        assert!(reopened.dossier("x").unwrap().is_none(), "the old state is gone");

        // A stream of another version is refused with a message that says what to do.
        let mut old = pieces[0].clone();
        old[1 + 4 + snapshot::HEADER_KEY_LENGTH + 4] = 4;
        let error = reopened.stage_snapshot(view.index()).unwrap().write(&old).err().unwrap();
        assert!(error.to_string().contains("same kyso release"), "{error}");
    }

    #[test]
    fn apply_refuses_a_certification_of_another_agencys_document() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let actor = Actor::local("test");
        apply(&store, vec![envelope(&actor, "d", 1, Command::ArchiveDossier(dossier("d1", "xa-b", b"scan of b")))]);
        assert_eq!(store.blob_agencies(&Sha256::digest(b"scan of b")).unwrap(), vec!["xa-b".to_string()]);
        let signer = signer_for(&["xa-a"]);
        apply(&store, vec![envelope(&actor, "s", 1, Command::RegisterSigner(signer))]);
        let certification = Certification {
            version: crate::domain::CERTIFICATION_RECORD_VERSION,
            lookup_code: crate::lookup::LookupCode::generate(&ring::rand::SystemRandom::new()).unwrap(),
            document_sha256: Sha256::digest(b"scan of b"),
            kind: crate::domain::CertificationKind::CertifiedCopy,
            agency_id: "xa-a".into(),
            signer_id: "s1".into(),
            dossier_id: String::new(),
            signed_at_unix: 1,
            cms_der: vec![1, 2, 3],
            delivered_pdf: None,
            revocation: None,
        };
        let outcome = apply(&store, vec![envelope(&actor, "c", 1, Command::Certify(vec![certification]))]);
        assert!(
            matches!(&outcome[0], Outcome::Rejected(Rejection::PermissionDenied(message)) if message.contains("not a file of any dossier of agency xa-a")),
            "{outcome:?}"
        );
        assert_eq!(store.tlog_size().unwrap(), 1, "only the signer's registration reached the log");
    }
}


#[cfg(test)]
mod layout_tests {
    use super::tests::layout_1;
    use super::*;
    use crate::crypto::testutil::test_chain;
    use crate::crypto::KeyAlgorithm;
    use crate::domain::{ArchivedFile, CertificationKind};

    fn envelope(request_id: &str, issued_at_unix: i64, command: Command) -> Bytes {
        let envelope = CommandEnvelope {
            version: super::super::command::COMMAND_VERSION,
            request_id: request_id.into(),
            request_fingerprint: [3; 32],
            issued_at_unix,
            command,
            actor: Actor { name: "Người Ký".into(), certificate_sha256: Some(Sha256([4; 32])) },
        };
        Bytes::from(envelope.encode())
    }

    /// A signer with a real chain of two and `count` documents, each certified with a real
    /// CMS carrying that chain, one of them revoked afterwards.
    fn commands(count: usize) -> Vec<Bytes> {
        let chain = test_chain(KeyAlgorithm::EcdsaP256);
        let key = chain.leaf.signing_key().unwrap();
        let signer = Signer {
            id: "s1".into(),
            name: "Người Ký".into(),
            title: "Chủ tịch".into(),
            agency_ids: vec!["xa-a".into()],
            subject: "CN=Alice".into(),
            issuer: "CN=CA".into(),
            serial_hex: "01".into(),
            not_before_unix: 0,
            not_after_unix: i64::MAX,
            key_algorithm: "ecdsa-p256".into(),
            chain_der: chain.chain_der(),
            sealed_key: None,
            registered_at_unix: 0,
        };
        let mut data = vec![envelope("register", 1_000, Command::RegisterSigner(signer))];
        let documents: Vec<Vec<u8>> = (0..count).map(|index| format!("document {index}").into_bytes()).collect();
        let dossier = Dossier {
            id: "d1".into(),
            agency_id: "xa-a".into(),
            procedure_code: "1.001193".into(),
            dossier_number: "HS-1".into(),
            received_date: "2026-12-01".into(),
            private_fields: vec![("applicant_name".into(), "Trần Thị Bình".into())],
            files: documents
                .iter()
                .enumerate()
                .map(|(index, content)| ArchivedFile {
                    name: format!("{index}.pdf"),
                    content_type: "application/pdf".into(),
                    size_bytes: content.len() as u64,
                    sha256: Sha256::digest(content),
                })
                .collect(),
            archived_at_unix: 1_000,
        };
        data.push(envelope("archive", 1_000, Command::ArchiveDossier(dossier)));
        let random = ring::rand::SystemRandom::new();
        let mut codes = Vec::new();
        for (index, content) in documents.iter().enumerate() {
            let cms_der = crate::crypto::cms::sign_detached(content, 2_000, &chain.chain_der(), &key).unwrap();
            let code = LookupCode::generate(&random).unwrap();
            codes.push(code.clone());
            let certification = Certification {
                version: crate::domain::CERTIFICATION_RECORD_VERSION,
                lookup_code: code,
                document_sha256: Sha256::digest(content),
                kind: CertificationKind::CertifiedCopy,
                agency_id: "xa-a".into(),
                signer_id: "s1".into(),
                dossier_id: "d1".into(),
                signed_at_unix: 2_000,
                cms_der,
                revocation: None,
                delivered_pdf: None,
            };
            data.push(envelope(&format!("certify-{index}"), 2_000, Command::Certify(vec![certification])));
        }
        data.push(envelope(
            "revoke",
            3_000,
            Command::RevokeCertification { lookup_code: codes[1].clone(), reason: "nhầm hồ sơ".into(), revoked_at_unix: 3_000 },
        ));
        data
    }

    fn apply_all(store: &StateStore, data: &[Bytes]) -> Vec<Bytes> {
        let entries: Vec<Entry> = data.iter().enumerate().map(|(offset, data)| Entry { index: 1 + offset as u64, term: 1, data: data.clone() }).collect();
        store.apply_batch(&entries).unwrap()
    }

    /// The log nodes of a store written in layout 1 or 2 (one node to a row).
    struct OneNodePerRow(redb::ReadOnlyTable<(u8, u64), &'static [u8]>);

    impl tlog::NodeStore for OneNodePerRow {
        type Error = StateError;
        fn get(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>, StateError> {
            self.0.get((level, index))?.map(|value| node_from(value.value())).transpose()
        }
        fn put(&mut self, _level: u8, _index: u64, _hash: [u8; 32]) -> Result<(), StateError> {
            unreachable!("read only")
        }
    }

    /// Size and root of the log of a store written in layout 1 or 2.
    fn head_of_one_node_per_row(store: &StateStore) -> (u64, [u8; 32]) {
        let txn = store.db.begin_read().unwrap();
        let size = txn.open_table(META).unwrap().get(TLOG_SIZE).unwrap().unwrap().value();
        let nodes = OneNodePerRow(txn.open_table(TLOG_NODES).unwrap());
        (size, tlog::root(&nodes, size).unwrap())
    }

    /// The log's leaves of a store written in layout 1 or 2 (one to a row).
    fn entries_of_one_leaf_per_row(store: &StateStore) -> Vec<(u64, Vec<u8>)> {
        let txn = store.db.begin_read().unwrap();
        let security = txn.open_table(SECURITY).unwrap();
        let leaves = Leaves { table: txn.open_table(TLOG_LEAVES).unwrap(), one_per_row: true, references: None };
        let stored = leaves.stored_range(0, u64::MAX).unwrap();
        stored.into_iter().map(|(index, stored)| (index, unpack(&stored, &leaves, &security).unwrap())).collect()
    }

    /// A backup of `version` (4 or 5) of a store written in layout 1 or 2, as the release
    /// of that time made it (its log leaves and nodes one to a row).
    fn backup_of_layout_1_or_2(store: &StateStore, version: u8) -> Vec<u8> {
        let mut record = store.snapshot_record().unwrap();
        let txn = store.db.begin_read().unwrap();
        fn rows<K>(txn: &redb::ReadTransaction, table: TableDefinition<K, &'static [u8]>) -> Vec<(K, Vec<u8>)>
        where
            K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
        {
            txn.open_table(table).unwrap().iter().unwrap().map(|row| row.unwrap()).map(|(key, value)| (key.value(), value.value().to_vec())).collect()
        }
        record.tlog_nodes = rows(&txn, TLOG_NODES);
        record.tlog_leaves = rows(&txn, TLOG_LEAVES);
        let mut bytes = vec![version];
        bytes.extend(encode(&record));
        bytes
    }

    fn table_bytes<K: redb::Key + 'static>(store: &StateStore, table: TableDefinition<K, &'static [u8]>) -> u64 {
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(table).unwrap();
        table.iter().unwrap().map(|row| row.unwrap().1.value().len() as u64).sum()
    }

    #[test]
    fn a_data_directory_of_the_earlier_layout_migrates_to_exactly_the_state_the_new_layout_writes() {
        let data = commands(12);
        let dir = tempfile::tempdir().unwrap();
        // The earlier layout, as the code of that time wrote it.
        let old = StateStore::open(&dir.path().join("old.redb")).unwrap();
        let old_answers = layout_1::with(|| apply_all(&old, &data));
        {
            let txn = old.db.begin_write().unwrap();
            txn.open_table(META).unwrap().remove(RECORD_LAYOUT_KEY).unwrap();
            txn.commit().unwrap();
        }
        let old_leaf_bytes = table_bytes(&old, TLOG_LEAVES);
        let old_request_bytes = table_bytes(&old, REQUESTS);
        let (_, digest_before) = old.digest().unwrap();
        let entries_before = entries_of_one_leaf_per_row(&old);
        let (size_before, root_before) = head_of_one_node_per_row(&old);
        drop(old);
        // Opening migrates it.
        let migrated = StateStore::open(&dir.path().join("old.redb")).unwrap();
        let fresh = StateStore::open(&dir.path().join("new.redb")).unwrap();
        let fresh_answers = apply_all(&fresh, &data);
        assert_eq!(old_answers, fresh_answers, "apply answers the same in both layouts");
        let (_, migrated_digest) = migrated.digest().unwrap();
        let (_, fresh_digest) = fresh.digest().unwrap();
        assert_ne!(digest_before, migrated_digest, "the migration rewrote the tables");
        assert_eq!(migrated_digest, fresh_digest, "a migrated store equals one written in the new layout");
        // Leaves, root and proofs are unchanged; the stored bytes shrank.
        assert_eq!(migrated.tlog_entries(0, 1_000).unwrap(), entries_before);
        assert_eq!(migrated.tlog_head().unwrap(), (size_before, root_before));
        // Each certification leaf no longer carries the chain (two certificates, ~800 bytes).
        assert!(
            table_bytes(&migrated, TLOG_LEAF_BUCKETS) + 12 * 700 < old_leaf_bytes,
            "leaves {} bytes packed, {old_leaf_bytes} before",
            table_bytes(&migrated, TLOG_LEAF_BUCKETS)
        );
        assert!(table_bytes(&migrated, REQUESTS) * 3 < old_request_bytes, "request rows {} bytes, {old_request_bytes} before", table_bytes(&migrated, REQUESTS));
        assert_eq!(migrated.db.begin_read().unwrap().open_table(CERTIFICATION_LEAVES).unwrap().len().unwrap(), 0);
        // Every record reads back as it was, revocation included, and so do retries.
        for (index, answer) in fresh_answers.iter().enumerate().skip(2).take(12) {
            let Outcome::Certifications(recorded) = Outcome::decode(answer).unwrap() else { panic!("entry {index}: {answer:?}") };
            let code = &recorded[0].lookup_code;
            let mut expected = recorded[0].clone();
            if index == 3 {
                expected.revocation = Some(Revocation { reason: "nhầm hồ sơ".into(), revoked_at_unix: 3_000 });
            }
            for store in [&migrated, &fresh] {
                assert_eq!(store.certification(code).unwrap().as_ref(), Some(&expected));
                assert_eq!(store.certifications_of(&expected.document_sha256).unwrap(), vec![expected.clone()]);
                let leaf = store.certification_leaf(code).unwrap().expect("a leaf index");
                let proof = store.tlog_inclusion(leaf, 0).unwrap().unwrap();
                assert_eq!(LogLeaf::decode(&proof.leaf_data).unwrap().event, LogEvent::Certification(recorded[0].clone()));
                // A verify's one read gives what the separate reads give.
                assert_eq!(
                    store.verify_read(&expected.document_sha256, false, Proofs::Included).unwrap(),
                    store.verify_read(&expected.document_sha256, true, Proofs::Included).unwrap(),
                    "a scan's hash names the scan either way"
                );
                let (scan, read) = store.verify_read(&expected.document_sha256, true, Proofs::Included).unwrap();
                assert_eq!(scan, expected.document_sha256);
                assert_eq!(read.len(), 1);
                assert_eq!(read[0].certification, expected);
                assert_eq!(read[0].signer, store.signer(&expected.signer_id).unwrap());
                assert!(read[0].signer.is_some());
                assert_eq!(read[0].signer_status, store.signer_status(&expected.signer_id).unwrap());
                assert_eq!(read[0].proof.as_ref(), Some(&proof));
                let actor = Actor { name: "Người Ký".into(), certificate_sha256: Some(Sha256([4; 32])) };
                let (_, outcome) = store.request_outcome(&actor, &format!("certify-{}", index - 2), &[3; 32]).unwrap().unwrap();
                assert_eq!(outcome, Outcome::Certifications(vec![expected.clone()]));
            }
        }
        // A retry through apply answers from the remembered row.
        let next = fresh.applied().unwrap() + 1;
        let retry = fresh.apply_batch(&[Entry { index: next, term: 1, data: data[2].clone() }]).unwrap();
        assert_eq!(Outcome::decode(&retry[0]).unwrap(), Outcome::decode(&fresh_answers[2]).unwrap());
    }

    /// Verify reads keep each signer's unpacked reference leaf between calls: the leaves
    /// they give, cold and warm, are those read and unpacked afresh each time.
    #[test]
    fn reference_leaves_kept_between_reads_give_the_leaves_read_afresh() {
        let data = commands(30);
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply_all(&store, &data);
        let afresh: Vec<(u64, Vec<u8>)> = {
            let txn = store.db.begin_read().unwrap();
            let security = txn.open_table(SECURITY).unwrap();
            let leaves = Leaves::open(&txn).unwrap();
            assert!(leaves.references.is_none());
            let stored = leaves.stored_range(0, u64::MAX).unwrap();
            let deltas = stored.iter().filter(|(_, stored)| packing::delta_reference(stored).is_some()).count();
            assert!(deltas >= 25, "most certification leaves copy from the signer's reference: {deltas}");
            stored.into_iter().map(|(index, stored)| (index, unpack(&stored, &leaves, &security).unwrap())).collect()
        };
        assert_eq!(store.references.len(), 0);
        assert_eq!(store.tlog_entries(0, u64::MAX).unwrap(), afresh, "cold");
        assert_eq!(store.references.len(), 1, "one signer, one reference kept");
        assert_eq!(store.tlog_entries(0, u64::MAX).unwrap(), afresh, "warm");
    }

    /// The log's hashes kept between reads give the roots and proofs read afresh, and a
    /// state that replaces the store (another log of the same size: each `commands` call
    /// signs with a new key) is never answered from the hashes of the one it replaced.
    #[test]
    fn kept_log_hashes_answer_as_fresh_reads_and_go_with_a_replaced_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply_all(&store, &commands(30));
        let afresh = |store: &StateStore, size: u64| {
            let txn = store.db.begin_read().unwrap();
            let nodes = ReadNodes(txn.open_table(TLOG_NODE_BUCKETS).unwrap());
            let proofs: Vec<_> = (0..size).map(|leaf| tlog::inclusion_proof(&nodes, leaf, size).unwrap()).collect();
            (tlog::root(&nodes, size).unwrap(), proofs)
        };
        let (size, _) = store.tlog_head().unwrap();
        assert!(size >= 30, "a leaf per certification at least: {size}");
        let kept = |store: &StateStore| {
            let proofs: Vec<_> = (0..size).map(|leaf| store.tlog_inclusion(leaf, size).unwrap().unwrap().audit_path).collect();
            (store.tlog_root(size).unwrap(), proofs)
        };
        let before = afresh(&store, size);
        assert_eq!(kept(&store), before, "cold");
        assert!(store.log_hashes.len() > 0);
        assert_eq!(kept(&store), before, "warm");

        let other_dir = tempfile::tempdir().unwrap();
        let other = StateStore::open(&other_dir.path().join("state.redb")).unwrap();
        apply_all(&other, &commands(30));
        assert_eq!(other.tlog_head().unwrap().0, size);
        let replacing = afresh(&other, size);
        assert_ne!(replacing.0, before.0, "another log of the same size");
        store.restore_backup(&other.backup_snapshot().unwrap().bytes).unwrap();
        assert_eq!(store.tlog_head().unwrap(), (size, replacing.0));
        assert_eq!(kept(&store), replacing, "after the state was replaced");
    }

    /// Certifications kept decoded between verify reads answer as a read afresh does: by
    /// hash and by lookup code, cold and warm; a revocation recorded after they were kept
    /// shows at once (it lives in the row, read each time); and a state that replaces the
    /// store, whose leaves at the same indexes record other certifications, is never
    /// answered from the replaced one's.
    #[test]
    fn kept_leaf_records_answer_as_fresh_reads_show_a_later_revocation_and_go_with_a_replaced_state() {
        let data = commands(20);
        let (revoke, before_revoke) = data.split_last().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply_all(&store, before_revoke);
        let documents: Vec<Sha256> = (0..20).map(|index| Sha256::digest(format!("document {index}").as_bytes())).collect();
        let afresh = |store: &StateStore, document: &Sha256| {
            let txn = store.db.begin_read().unwrap();
            let index = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT).unwrap();
            let records = Records::new(txn.open_table(CERTIFICATIONS).unwrap(), Leaves::open(&txn).unwrap(), txn.open_table(SECURITY).unwrap());
            assert!(records.kept.is_none());
            let found = records.of_document(&index, document).unwrap();
            found.into_iter().map(|(certification, leaf)| (certification, leaf.unwrap().data.unwrap())).collect::<Vec<_>>()
        };
        let read = |store: &StateStore, document: &Sha256| {
            let (_, records) = store.verify_read(document, true, Proofs::Included).unwrap();
            records.into_iter().map(|record| (record.certification, record.proof.unwrap().leaf_data)).collect::<Vec<_>>()
        };
        assert_eq!(store.leaf_records.len(), 0);
        for pass in ["cold", "warm"] {
            for document in &documents {
                let expected = afresh(&store, document);
                assert_eq!(expected.len(), 1);
                assert_eq!(read(&store, document), expected, "{pass}: verify by hash");
                let by_code = store.certification(&expected[0].0.lookup_code).unwrap().unwrap();
                assert_eq!(by_code, expected[0].0, "{pass}: by lookup code");
                let (named, verify_by_code) = store.verify_read_code(&expected[0].0.lookup_code, Proofs::Included).unwrap().unwrap();
                assert_eq!(named, *document);
                let verify_by_code: Vec<_> =
                    verify_by_code.into_iter().map(|record| (record.certification, record.proof.unwrap().leaf_data)).collect();
                assert_eq!(verify_by_code, expected, "{pass}: verify by lookup code");
                // Without proofs: the same records, and no proof.
                let (_, full) = store.verify_read(document, true, Proofs::Included).unwrap();
                let (_, without) = store.verify_read(document, true, Proofs::Left).unwrap();
                let (_, by_code_without) = store.verify_read_code(&expected[0].0.lookup_code, Proofs::Left).unwrap().unwrap();
                assert!(without.iter().chain(&by_code_without).all(|record| record.proof.is_none()), "{pass}: no proof made");
                let unproven = |records: Vec<VerifyRecord>| records.into_iter().map(|record| VerifyRecord { proof: None, ..record }).collect::<Vec<_>>();
                assert_eq!(without, unproven(full.clone()), "{pass}: verify by hash without proofs");
                assert_eq!(by_code_without, unproven(full), "{pass}: verify by code without proofs");
            }
            assert_eq!(store.leaf_records.len(), 20, "{pass}: one kept per certification");
        }

        let next = store.applied().unwrap() + 1;
        store.apply_batch(&[Entry { index: next, term: 1, data: revoke.clone() }]).unwrap();
        let revoked = read(&store, &documents[1]);
        assert_eq!(revoked, afresh(&store, &documents[1]));
        assert_eq!(revoked[0].0.revocation.as_ref().map(|revocation| revocation.reason.as_str()), Some("nhầm hồ sơ"), "kept, yet revoked");

        let other_dir = tempfile::tempdir().unwrap();
        let other = StateStore::open(&other_dir.path().join("state.redb")).unwrap();
        apply_all(&other, &commands(20));
        let replaced: Vec<_> = documents.iter().map(|document| read(&store, document)).collect();
        store.restore_backup(&other.backup_snapshot().unwrap().bytes).unwrap();
        for (document, replaced) in documents.iter().zip(&replaced) {
            let replacing = afresh(&other, document);
            assert_eq!(replacing[0].0.document_sha256, *document);
            assert_ne!(replacing, *replaced, "another key signed the replacing state's certifications");
            assert_eq!(read(&store, document), replacing, "after the state was replaced");
        }
    }

    /// A signer kept decoded between verify reads is the one its row holds now: a row
    /// written since (whatever command wrote it) is decoded again.
    #[test]
    fn a_kept_signer_follows_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply_all(&store, &commands(2));
        let document = Sha256::digest(b"document 0");
        let signer_read = |store: &StateStore| store.verify_read(&document, true, Proofs::Included).unwrap().1[0].signer.clone().unwrap();
        let first = signer_read(&store);
        assert_eq!(first, store.signer("s1").unwrap().unwrap());
        assert_eq!(signer_read(&store), first, "warm");
        assert_eq!(store.signers.len(), 1);
        let renamed = Signer { name: "Người Ký Mới".into(), sealed_key: Some(vec![7; 40]), ..first.clone() };
        let txn = begin_write(&store.db).unwrap();
        txn.open_table(SIGNERS).unwrap().insert("s1", encode(&renamed).as_slice()).unwrap();
        txn.commit().unwrap();
        assert_eq!(signer_read(&store), renamed, "the row changed, so the kept signer is not used");
        assert_eq!(signer_read(&store), renamed);
    }

    #[test]
    fn a_data_directory_of_layout_2_migrates_to_dossiers_kept_once_and_log_leaves_and_nodes_in_rows_of_many_with_the_same_answers_roots_and_proofs() {
        // More nodes than one migration transaction moves, and more than a row holds.
        let data = commands(140);
        let dir = tempfile::tempdir().unwrap();
        let old = StateStore::open(&dir.path().join("old.redb")).unwrap();
        let old_answers = layout_1::with_layout(2, || apply_all(&old, &data));
        {
            let txn = old.db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(RECORD_LAYOUT_KEY, 2).unwrap();
            txn.commit().unwrap();
        }
        let (size_before, root_before) = head_of_one_node_per_row(&old);
        let node_rows = old.db.begin_read().unwrap().open_table(TLOG_NODES).unwrap().len().unwrap();
        assert_eq!(node_rows, 2 * size_before - u64::from(size_before.count_ones()), "one row per complete subtree");
        let backup = backup_of_layout_1_or_2(&old, 5);
        let entries_before = entries_of_one_leaf_per_row(&old);
        let old_request_bytes = table_bytes(&old, REQUESTS);
        drop(old);
        let migrated = StateStore::open(&dir.path().join("old.redb")).unwrap();
        let fresh = StateStore::open(&dir.path().join("new.redb")).unwrap();
        assert_eq!(apply_all(&fresh, &data), old_answers);
        assert_eq!(migrated.digest().unwrap().1, fresh.digest().unwrap().1, "a migrated store equals one written in layout 3");
        // The archive's request row names its dossier instead of copying it (140 files).
        let request_bytes = table_bytes(&migrated, REQUESTS);
        assert!(request_bytes + 140 * 40 < old_request_bytes, "request rows {request_bytes} bytes, {old_request_bytes} before");
        let actor = Actor { name: "Người Ký".into(), certificate_sha256: Some(Sha256([4; 32])) };
        let Outcome::Dossier(archived) = Outcome::decode(&old_answers[1]).unwrap() else { panic!("{:?}", old_answers[1]) };
        assert!(!archived.private_fields.is_empty());
        for store in [&migrated, &fresh] {
            let (_, outcome) = store.request_outcome(&actor, "archive", &[3; 32]).unwrap().unwrap();
            assert_eq!(outcome, Outcome::Dossier(archived.clone()), "within its retention a retry gets the private fields");
        }
        assert_eq!(migrated.tlog_head().unwrap(), (size_before, root_before));
        assert_eq!(migrated.tlog_entries(0, u64::MAX).unwrap(), entries_before);
        assert_eq!(fresh.tlog_entries(0, u64::MAX).unwrap(), entries_before);
        assert_eq!(fresh.tlog_entries(3, 140).unwrap(), entries_before[3..140].to_vec());
        let txn = migrated.db.begin_read().unwrap();
        assert!(matches!(txn.open_table(TLOG_NODES), Err(redb::TableError::TableDoesNotExist(_))), "the one-per-row table is gone");
        assert!(matches!(txn.open_table(TLOG_LEAVES), Err(redb::TableError::TableDoesNotExist(_))), "the one-per-row table is gone");
        let leaf_rows = txn.open_table(TLOG_LEAF_BUCKETS).unwrap().len().unwrap();
        assert!(leaf_rows * 8 < size_before, "{leaf_rows} rows for {size_before} leaves");
        let rows = txn.open_table(TLOG_NODE_BUCKETS).unwrap().len().unwrap();
        assert!(node_rows > MIGRATION_ROWS_PER_TRANSACTION as u64 && size_before > NODES_PER_BUCKET);
        assert!(rows < 16, "{rows} rows for {node_rows} nodes");
        drop(txn);
        // Every root and proof of every size is the one layout 2 gave.
        for size in 1..=size_before {
            assert_eq!(migrated.tlog_root(size).unwrap(), fresh.tlog_root(size).unwrap());
            for leaf in (0..size).step_by(5).chain([size - 1]) {
                assert_eq!(migrated.tlog_inclusion(leaf, size).unwrap(), fresh.tlog_inclusion(leaf, size).unwrap());
            }
            assert_eq!(migrated.tlog_consistency(1, size).unwrap(), fresh.tlog_consistency(1, size).unwrap());
        }
        // A layout 2 backup restores, then migrates, to the same state.
        let restored = StateStore::open(&dir.path().join("restored.redb")).unwrap();
        restored.restore_backup(&backup).unwrap();
        assert_eq!(restored.digest().unwrap().1, fresh.digest().unwrap().1);
        assert_eq!(restored.tlog_head().unwrap(), (size_before, root_before));
        // Past the retention, the same entry strips the private fields on both.
        let later = envelope("later", 1_000 + REQUEST_DETAILS_RETENTION_SECONDS + 1, Command::Audit(AuditEvent::ClusterChanged { change: "none".into() }));
        for store in [&migrated, &fresh] {
            let next = store.applied().unwrap() + 1;
            store.apply_batch(&[Entry { index: next, term: 1, data: later.clone() }]).unwrap();
            let (_, outcome) = store.request_outcome(&actor, "archive", &[3; 32]).unwrap().unwrap();
            assert_eq!(outcome, Outcome::Dossier(Dossier { private_fields: Vec::new(), ..archived.clone() }));
        }
        assert_eq!(migrated.digest().unwrap().1, fresh.digest().unwrap().1);
    }

    #[test]
    fn leaves_fill_a_row_until_the_next_would_not_fit_and_read_back_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let sizes = [5_000usize, 10, 10, 4_000, 3, 0, 4_060];
        let leaves: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, &size)| vec![index as u8; size]).collect();
        let txn = store.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TLOG_LEAF_BUCKETS).unwrap();
            append_to_leaf_rows(&mut table, 0, &leaves[0]).unwrap();
            append_leaves_to_rows(&mut table, (1..4).map(|index| (index as u64, leaves[index].as_slice()))).unwrap();
            for index in 4..leaves.len() {
                append_to_leaf_rows(&mut table, index as u64, &leaves[index]).unwrap();
            }
            // Only the next leaf may be appended.
            assert!(append_to_leaf_rows(&mut table, 9, b"gap").is_err());
            assert!(append_to_leaf_rows(&mut table, 3, b"again").is_err());
            let rows: Vec<(u64, usize)> = table.iter().unwrap().map(|row| row.unwrap()).map(|(first, row)| (first.value(), row.value().len())).collect();
            // A leaf larger than a row has one to itself; the others share rows of at most
            // LEAF_ROW_BYTES_MAX bytes.
            assert_eq!(rows, vec![(0, 5_004), (1, 14 + 14 + 4_004 + 7 + 4), (6, 4_064)]);
        }
        txn.commit().unwrap();
        let txn = store.db.begin_read().unwrap();
        let read = Leaves::open(&txn).unwrap();
        for (index, leaf) in leaves.iter().enumerate() {
            assert_eq!(read.stored(index as u64).unwrap().as_ref(), Some(leaf));
        }
        assert_eq!(read.stored(leaves.len() as u64).unwrap(), None);
        let range = read.stored_range(2, 6).unwrap();
        assert_eq!(range, (2..6).map(|index| (index as u64, leaves[index].clone())).collect::<Vec<_>>());
        assert!(read.stored_range(4, 4).unwrap().is_empty());
    }

    #[test]
    fn a_layout_1_backup_restores_and_migrates_and_a_current_one_restores_as_it_is() {
        let data = commands(3);
        let dir = tempfile::tempdir().unwrap();
        let old = StateStore::open(&dir.path().join("old.redb")).unwrap();
        layout_1::with(|| apply_all(&old, &data));
        let backup = backup_of_layout_1_or_2(&old, 4);
        let restored = StateStore::open(&dir.path().join("restored.redb")).unwrap();
        restored.restore_backup(&backup).unwrap();
        let fresh = StateStore::open(&dir.path().join("fresh.redb")).unwrap();
        apply_all(&fresh, &data);
        assert_eq!(restored.digest().unwrap().1, fresh.digest().unwrap().1);
        let again = StateStore::open(&dir.path().join("again.redb")).unwrap();
        again.advance_blob_fill_cursor(0, 2).unwrap();
        again.restore_backup(&fresh.backup_snapshot().unwrap().bytes).unwrap();
        assert_eq!(again.digest().unwrap().1, fresh.digest().unwrap().1);
        // A state put in place lists every blob as arrived and starts the refill over.
        assert_eq!(again.blob_fill_cursor().unwrap(), 0);
        assert_eq!(again.blob_arrivals(0, 100).unwrap().len(), 3);
    }

    #[test]
    fn blobs_arrive_once_in_order_and_the_refill_cursor_only_moves_forward_from_where_it_was() {
        let data = commands(3);
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        apply_all(&store, &data);
        let arrivals = store.blob_arrivals(0, 100).unwrap();
        assert_eq!(arrivals.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(arrivals[1].1, Sha256::digest(b"document 1"));
        // The same file in another dossier is no new arrival; a new one is.
        let mut again = Dossier {
            id: "d2".into(),
            agency_id: "xa-a".into(),
            procedure_code: "1.001193".into(),
            dossier_number: "HS-2".into(),
            received_date: "2026-12-01".into(),
            private_fields: Vec::new(),
            files: Vec::new(),
            archived_at_unix: 1_000,
        };
        for content in [&b"document 1"[..], b"document new"] {
            again.files.push(ArchivedFile { name: "x.pdf".into(), content_type: "application/pdf".into(), size_bytes: content.len() as u64, sha256: Sha256::digest(content) });
        }
        let next = store.applied().unwrap() + 1;
        store.apply_batch(&[Entry { index: next, term: 1, data: envelope("again", 1_000, Command::ArchiveDossier(again)) }]).unwrap();
        assert_eq!(store.blob_arrivals(2, 100).unwrap(), vec![(2, arrivals[2].1), (3, Sha256::digest(b"document new"))]);
        store.advance_blob_fill_cursor(0, 3).unwrap();
        assert_eq!(store.blob_fill_cursor().unwrap(), 3);
        // A pass that started elsewhere (before a reset) moves nothing; nor does going back.
        store.advance_blob_fill_cursor(1, 4).unwrap();
        store.advance_blob_fill_cursor(3, 2).unwrap();
        assert_eq!(store.blob_fill_cursor().unwrap(), 3);
        // The index and the cursor survive a restart.
        drop(store);
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(store.blob_fill_cursor().unwrap(), 3);
        assert_eq!(store.blob_arrivals(0, 100).unwrap().len(), 4);
    }
}
