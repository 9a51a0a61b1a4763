//! Raft snapshots of the [`StateStore`], streamed from disk both ways.
//!
//! Sending: [`StateStore::snapshot_source`] opens one redb read transaction (cheap, on the
//! Raft driver thread, so that it reflects exactly the applied index); the transport then
//! reads it on another thread, table by table in key order, as a sequence of records cut
//! into pieces of about the chunk size. Nothing but the current piece is in memory.
//!
//! Receiving: [`StateStore::receive_snapshot`] empties the staging tables (one per
//! replicated table, `staging.<name>`) and each piece is written into them in its own
//! transaction as it arrives; the live tables are not touched. Only
//! [`StateStore::restore_staged`] swaps the staged tables in, in ONE durable transaction
//! (delete the live table, rename the staged one), with the applied index and the derived
//! indexes: a crash leaves the old state or the new, never a mix, and a repeated install
//! of an index already applied is a no-op.
//!
//! The stream format is [`SNAPSHOT_VERSION`]: records `[tag u8][key length u32 BE][key]
//! [value length u32 BE][value]`, keys and values in redb's own byte encoding except the
//! statistics key (`day i64 BE` then the agency). Record 0 is the header (version,
//! applied index, log tree size), the last record (tag 255) counts the records between
//! them. A receiver refuses any other version, so mixed releases never exchange state.
//! Backups keep the whole-record format ([`BACKUP_SNAPSHOT_VERSION`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyso_cluster::{SnapshotSink, SnapshotSource, StateMachineError};
use redb::{Database, Key, MultimapTableDefinition, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, Value, WriteTransaction};

use super::*;

/// Version of the streamed Raft snapshot. Versions up to 4 were one whole-state record
/// (still the backup format); version 5 is a stream of records; version 6 is the same
/// stream of records in the layout of issue 16 (each record stored once, `state::packing`);
/// version 7 streams the log's leaves and nodes as rows of many (record layout 3).
pub(super) const SNAPSHOT_VERSION: u8 = 7;

const TAG_HEADER: u8 = 0;
/// Piece size of [`StateStore::streamed_digest`].
const DIGEST_PIECE_BYTES: usize = 1 << 20;
const TAG_TRAILER: u8 = 255;
const HEADER_KEY: &[u8] = b"kyso-state-snapshot";
#[cfg(test)]
pub(super) const HEADER_KEY_LENGTH: usize = HEADER_KEY.len();

const STAGING_REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("staging.requests");
const STAGING_DOSSIERS: TableDefinition<&str, &[u8]> = TableDefinition::new("staging.dossiers");
const STAGING_SIGNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("staging.signers");
const STAGING_CERTIFICATIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("staging.certifications");
const STAGING_CERTIFICATIONS_BY_DOCUMENT: MultimapTableDefinition<&[u8], &[u8]> =
    MultimapTableDefinition::new("staging.certifications_by_document");
const STAGING_BLOBS: TableDefinition<&[u8], u64> = TableDefinition::new("staging.blobs");
const STAGING_TLOG_NODE_BUCKETS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("staging.tlog_node_buckets");
/// Staged log nodes of an earlier release (one to a row): deleted when a transfer starts.
const STAGING_TLOG_NODES_LAYOUT_2: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("staging.tlog_nodes");
const STAGING_TLOG_LEAF_BUCKETS: TableDefinition<u64, &[u8]> = TableDefinition::new("staging.tlog_leaf_buckets");
/// Staged log leaves of an earlier release (one to a row): deleted when a transfer starts.
const STAGING_TLOG_LEAVES_LAYOUT_2: TableDefinition<u64, &[u8]> = TableDefinition::new("staging.tlog_leaves");
const STAGING_CERTIFICATION_LEAVES: TableDefinition<&[u8], u64> = TableDefinition::new("staging.certification_leaves");
const STAGING_SECURITY: TableDefinition<&str, &[u8]> = TableDefinition::new("staging.security");
const STAGING_REGISTER: TableDefinition<&str, &[u8]> = TableDefinition::new("staging.register");
const STAGING_STATISTICS: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("staging.statistics");

/// META keys of the staging area: the index being staged, the log tree size it holds, and
/// (once finished) a completion mark.
const STAGING_INDEX: &str = "staging_index";
const STAGING_TLOG_SIZE: &str = "staging_tlog_size";
const STAGING_COMPLETE: &str = "staging_complete";

/// A finished staged snapshot that is not yet installed is kept this long against a new
/// transfer: the driver swaps it in within milliseconds of its arrival, unless raft-rs
/// refused it (then a newer transfer may replace it).
const STAGED_SNAPSHOT_KEPT: Duration = Duration::from_secs(60);

/// What this process knows of its staging area beyond the durable META keys.
#[derive(Default)]
pub(super) struct StagingState {
    /// A sink is alive (one transfer at a time).
    receiving: bool,
    /// When the staged snapshot was finished (none after a restart).
    finished_at: Option<Instant>,
}

fn machine_error(error: StateError) -> StateMachineError {
    StateMachineError(error.to_string())
}

/// Appends records to a piece and hands the piece on once it reaches its size.
struct Pieces<'a> {
    piece: Vec<u8>,
    piece_size_bytes: usize,
    emit: &'a mut dyn FnMut(Vec<u8>) -> Result<(), StateMachineError>,
    records: u64,
}

impl Pieces<'_> {
    fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StateMachineError> {
        self.piece.push(tag);
        for part in [key, value] {
            let length = u32::try_from(part.len()).map_err(|_| StateMachineError(format!("a record of table {tag} exceeds 4 GiB")))?;
            self.piece.extend_from_slice(&length.to_be_bytes());
            self.piece.extend_from_slice(part);
        }
        if tag != TAG_HEADER && tag != TAG_TRAILER {
            self.records += 1;
        }
        if self.piece.len() >= self.piece_size_bytes {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateMachineError> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(self.piece_size_bytes));
        (self.emit)(piece)
    }
}

fn read_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
    tag: u8,
    out: &mut Pieces,
) -> Result<(), StateMachineError> {
    let table = txn.open_table(table).map_err(|error| machine_error(error.into()))?;
    for row in table.iter().map_err(|error| machine_error(error.into()))? {
        let (key, value) = row.map_err(|error| machine_error(error.into()))?;
        out.record(tag, K::as_bytes(&key.value()).as_ref(), V::as_bytes(&value.value()).as_ref())?;
    }
    Ok(())
}

/// One redb read transaction: the state at `applied`, read as often as needed.
pub(super) struct StoreSnapshotSource {
    /// redb's read transaction is read through `&self`; the lock only makes the view `Sync`
    /// (two transfers of the same view read one after the other).
    txn: Mutex<ReadTransaction>,
    applied: u64,
    tlog_size: u64,
}

impl SnapshotSource for StoreSnapshotSource {
    fn index(&self) -> u64 {
        self.applied
    }

    fn read(&self, piece_size_bytes: usize, emit: &mut dyn FnMut(Vec<u8>) -> Result<(), StateMachineError>) -> Result<(), StateMachineError> {
        let txn = self.txn.lock().map_err(|_| StateMachineError("a snapshot reader panicked".into()))?;
        let mut out = Pieces { piece: Vec::with_capacity(piece_size_bytes), piece_size_bytes, emit, records: 0 };
        let mut header = vec![SNAPSHOT_VERSION];
        header.extend_from_slice(&self.applied.to_be_bytes());
        header.extend_from_slice(&self.tlog_size.to_be_bytes());
        out.record(TAG_HEADER, HEADER_KEY, &header)?;
        read_table(&txn, REQUESTS, 1, &mut out)?;
        read_table(&txn, DOSSIERS, 2, &mut out)?;
        read_table(&txn, SIGNERS, 3, &mut out)?;
        read_table(&txn, CERTIFICATIONS, 4, &mut out)?;
        {
            let table = txn.open_multimap_table(CERTIFICATIONS_BY_DOCUMENT).map_err(|error| machine_error(error.into()))?;
            for row in table.iter().map_err(|error| machine_error(error.into()))? {
                let (key, values) = row.map_err(|error| machine_error(error.into()))?;
                for value in values {
                    let value = value.map_err(|error| machine_error(error.into()))?;
                    out.record(5, key.value(), value.value())?;
                }
            }
        }
        read_table(&txn, BLOBS, 6, &mut out)?;
        read_table(&txn, TLOG_NODE_BUCKETS, 7, &mut out)?;
        read_table(&txn, TLOG_LEAF_BUCKETS, 8, &mut out)?;
        read_table(&txn, CERTIFICATION_LEAVES, 9, &mut out)?;
        read_table(&txn, SECURITY, 10, &mut out)?;
        read_table(&txn, REGISTER, 11, &mut out)?;
        {
            let table = txn.open_table(STATISTICS).map_err(|error| machine_error(error.into()))?;
            for row in table.iter().map_err(|error| machine_error(error.into()))? {
                let (key, value) = row.map_err(|error| machine_error(error.into()))?;
                let (day, agency) = key.value();
                let mut key = day.to_be_bytes().to_vec();
                key.extend_from_slice(agency.as_bytes());
                out.record(12, &key, value.value())?;
            }
        }
        let records = out.records;
        out.record(TAG_TRAILER, &[], &records.to_be_bytes())?;
        out.flush()
    }
}

/// One record of a received piece, borrowed from it.
struct Record<'a> {
    tag: u8,
    key: &'a [u8],
    value: &'a [u8],
}

fn take<'a>(piece: &mut &'a [u8], length: usize) -> Result<&'a [u8], StateError> {
    if piece.len() < length {
        return Err(StateError::Corrupt("a snapshot piece ends inside a record".into()));
    }
    let (head, tail) = piece.split_at(length);
    *piece = tail;
    Ok(head)
}

fn parse_piece(mut piece: &[u8]) -> Result<Vec<Record<'_>>, StateError> {
    let mut records = Vec::new();
    while !piece.is_empty() {
        let tag = take(&mut piece, 1)?[0];
        let key_length = u32::from_be_bytes(take(&mut piece, 4)?.try_into().expect("four bytes")) as usize;
        let key = take(&mut piece, key_length)?;
        let value_length = u32::from_be_bytes(take(&mut piece, 4)?.try_into().expect("four bytes")) as usize;
        let value = take(&mut piece, value_length)?;
        records.push(Record { tag, key, value });
    }
    Ok(records)
}

/// Checks a received key or value against its redb type before redb decodes it (redb's
/// decoders assume well-formed bytes).
fn check_width<T: Value>(bytes: &[u8], text: bool, tag: u8) -> Result<(), StateError> {
    let fits = T::fixed_width().is_none_or(|width| width == bytes.len()) && (!text || std::str::from_utf8(bytes).is_ok());
    if !fits {
        return Err(StateError::Corrupt(format!("a snapshot record of table {tag} is malformed")));
    }
    Ok(())
}

fn insert_all<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<K, V>,
    text_key: bool,
    run: &[Record],
) -> Result<(), StateError> {
    let mut table = txn.open_table(table)?;
    for record in run {
        check_width::<K>(record.key, text_key, record.tag)?;
        check_width::<V>(record.value, false, record.tag)?;
        table.insert(K::from_bytes(record.key), V::from_bytes(record.value))?;
    }
    Ok(())
}

fn insert_run(txn: &WriteTransaction, tag: u8, run: &[Record]) -> Result<(), StateError> {
    match tag {
        1 => insert_all(txn, STAGING_REQUESTS, true, run),
        2 => insert_all(txn, STAGING_DOSSIERS, true, run),
        3 => insert_all(txn, STAGING_SIGNERS, true, run),
        4 => insert_all(txn, STAGING_CERTIFICATIONS, false, run),
        5 => {
            let mut table = txn.open_multimap_table(STAGING_CERTIFICATIONS_BY_DOCUMENT)?;
            for record in run {
                table.insert(record.key, record.value)?;
            }
            Ok(())
        }
        6 => insert_all(txn, STAGING_BLOBS, false, run),
        7 => insert_all(txn, STAGING_TLOG_NODE_BUCKETS, false, run),
        8 => insert_all(txn, STAGING_TLOG_LEAF_BUCKETS, false, run),
        9 => insert_all(txn, STAGING_CERTIFICATION_LEAVES, false, run),
        10 => insert_all(txn, STAGING_SECURITY, true, run),
        11 => insert_all(txn, STAGING_REGISTER, true, run),
        12 => {
            let mut table = txn.open_table(STAGING_STATISTICS)?;
            for record in run {
                let malformed = || StateError::Corrupt("a snapshot statistics record is malformed".into());
                let (day, agency) = record.key.split_at_checked(8).ok_or_else(malformed)?;
                let day = i64::from_be_bytes(day.try_into().expect("eight bytes"));
                let agency = std::str::from_utf8(agency).map_err(|_| malformed())?;
                table.insert((day, agency), record.value)?;
            }
            Ok(())
        }
        other => Err(StateError::Corrupt(format!("a snapshot record names table {other}, unknown to this release"))),
    }
}

/// Empties (creates) every staging table and marks the area as receiving `index`.
fn reset_staging(txn: &WriteTransaction, index: u64) -> Result<(), StateError> {
    for table in [STAGING_REQUESTS, STAGING_DOSSIERS, STAGING_SIGNERS, STAGING_SECURITY, STAGING_REGISTER] {
        txn.delete_table(table)?;
        txn.open_table(table)?;
    }
    txn.delete_table(STAGING_CERTIFICATIONS)?;
    txn.open_table(STAGING_CERTIFICATIONS)?;
    for table in [STAGING_BLOBS, STAGING_CERTIFICATION_LEAVES] {
        txn.delete_table(table)?;
        txn.open_table(table)?;
    }
    txn.delete_multimap_table(STAGING_CERTIFICATIONS_BY_DOCUMENT)?;
    txn.open_multimap_table(STAGING_CERTIFICATIONS_BY_DOCUMENT)?;
    txn.delete_table(STAGING_TLOG_NODES_LAYOUT_2)?;
    txn.delete_table(STAGING_TLOG_NODE_BUCKETS)?;
    txn.open_table(STAGING_TLOG_NODE_BUCKETS)?;
    txn.delete_table(STAGING_TLOG_LEAVES_LAYOUT_2)?;
    txn.delete_table(STAGING_TLOG_LEAF_BUCKETS)?;
    txn.open_table(STAGING_TLOG_LEAF_BUCKETS)?;
    txn.delete_table(STAGING_STATISTICS)?;
    txn.open_table(STAGING_STATISTICS)?;
    let mut meta = txn.open_table(META)?;
    meta.remove(STAGING_COMPLETE)?;
    meta.remove(STAGING_TLOG_SIZE)?;
    meta.insert(STAGING_INDEX, index)?;
    Ok(())
}

/// Replaces each live table by its staged twin (delete, rename) inside `txn`.
fn swap_in_staged_tables(txn: &WriteTransaction) -> Result<(), StateError> {
    for (live, staged) in [
        (REQUESTS, STAGING_REQUESTS),
        (DOSSIERS, STAGING_DOSSIERS),
        (SIGNERS, STAGING_SIGNERS),
        (SECURITY, STAGING_SECURITY),
        (REGISTER, STAGING_REGISTER),
    ] {
        txn.delete_table(live)?;
        txn.rename_table(staged, live)?;
    }
    txn.delete_table(CERTIFICATIONS)?;
    txn.rename_table(STAGING_CERTIFICATIONS, CERTIFICATIONS)?;
    for (live, staged) in [(BLOBS, STAGING_BLOBS), (CERTIFICATION_LEAVES, STAGING_CERTIFICATION_LEAVES)] {
        txn.delete_table(live)?;
        txn.rename_table(staged, live)?;
    }
    txn.delete_multimap_table(CERTIFICATIONS_BY_DOCUMENT)?;
    txn.rename_multimap_table(STAGING_CERTIFICATIONS_BY_DOCUMENT, CERTIFICATIONS_BY_DOCUMENT)?;
    // A store migrated from layout 2 has no TLOG_NODES left; one interrupted mid-migration
    // is replaced whole.
    txn.delete_table(TLOG_NODES)?;
    txn.delete_table(TLOG_NODE_BUCKETS)?;
    txn.rename_table(STAGING_TLOG_NODE_BUCKETS, TLOG_NODE_BUCKETS)?;
    txn.delete_table(TLOG_LEAVES)?;
    txn.delete_table(TLOG_LEAF_BUCKETS)?;
    txn.rename_table(STAGING_TLOG_LEAF_BUCKETS, TLOG_LEAF_BUCKETS)?;
    txn.delete_table(STATISTICS)?;
    txn.rename_table(STAGING_STATISTICS, STATISTICS)?;
    Ok(())
}

/// Writes received pieces into the staging tables, one transaction per piece.
struct StagingSink {
    db: Arc<Database>,
    staging: Arc<Mutex<StagingState>>,
    index: u64,
    skip_fsync: bool,
    header_seen: bool,
    /// Records written, and the count the trailer announced once it arrived.
    records: u64,
    trailer: Option<u64>,
}

impl StagingSink {
    fn write_piece(&mut self, piece: &[u8]) -> Result<(), StateError> {
        let mut records = parse_piece(piece)?;
        if self.trailer.is_some() && !records.is_empty() {
            return Err(StateError::Corrupt("snapshot records arrived after its trailer".into()));
        }
        let mut txn = begin_write(&self.db)?;
        // Durable at `finish`: redb's next durable commit persists these too.
        txn.set_durability(redb::Durability::None).map_err(|error| StateError::Storage(error.to_string()))?;
        if !self.header_seen {
            let header = records.first().filter(|record| record.tag == TAG_HEADER && record.key == HEADER_KEY);
            let header = header.ok_or_else(|| StateError::Corrupt("a snapshot stream must start with its header".into()))?;
            let (version, applied, tlog_size) = parse_header(header.value)?;
            if version != SNAPSHOT_VERSION {
                return Err(StateError::Corrupt(format!(
                    "the snapshot has version {version}, this kyso reads version {SNAPSHOT_VERSION}: run the same kyso release on every member"
                )));
            }
            if applied != self.index {
                return Err(StateError::Corrupt(format!("snapshot holds index {applied} but was offered as {}", self.index)));
            }
            txn.open_table(META)?.insert(STAGING_TLOG_SIZE, tlog_size)?;
            self.header_seen = true;
            records.remove(0);
        }
        if records.last().is_some_and(|record| record.tag == TAG_TRAILER) {
            let trailer = records.pop().expect("checked above");
            let count = <[u8; 8]>::try_from(trailer.value).map_err(|_| StateError::Corrupt("a snapshot trailer is malformed".into()))?;
            self.trailer = Some(u64::from_be_bytes(count));
        }
        for run in records.chunk_by(|one, other| one.tag == other.tag) {
            insert_run(&txn, run[0].tag, run)?;
        }
        self.records += records.len() as u64;
        let still_ours = txn.open_table(META)?.get(STAGING_INDEX)?.map(|value| value.value()) == Some(self.index);
        if !still_ours {
            return Err(StateError::Corrupt("the staging area was reset under this transfer".into()));
        }
        txn.commit()?;
        Ok(())
    }

    fn finish_staging(&mut self) -> Result<(), StateError> {
        match self.trailer {
            Some(count) if self.header_seen && count == self.records => {}
            _ => {
                return Err(StateError::Corrupt(format!(
                    "the snapshot stream is incomplete: {} records written, its trailer announced {:?}",
                    self.records, self.trailer
                )))
            }
        }
        let mut txn = begin_write(&self.db)?;
        if self.skip_fsync {
            txn.set_durability(redb::Durability::None).map_err(|error| StateError::Storage(error.to_string()))?;
        }
        txn.open_table(META)?.insert(STAGING_COMPLETE, 1)?;
        txn.commit()?;
        Ok(())
    }
}

fn parse_header(value: &[u8]) -> Result<(u8, u64, u64), StateError> {
    let malformed = || StateError::Corrupt("a snapshot header is malformed".into());
    let (&version, rest) = value.split_first().ok_or_else(malformed)?;
    if version != SNAPSHOT_VERSION {
        return Ok((version, 0, 0));
    }
    let numbers: [u8; 16] = rest.try_into().map_err(|_| malformed())?;
    let applied = u64::from_be_bytes(numbers[..8].try_into().expect("eight bytes"));
    let tlog_size = u64::from_be_bytes(numbers[8..].try_into().expect("eight bytes"));
    Ok((version, applied, tlog_size))
}

impl SnapshotSink for StagingSink {
    fn write(&mut self, piece: &[u8]) -> Result<(), StateMachineError> {
        self.write_piece(piece).map_err(machine_error)
    }

    fn finish(mut self: Box<Self>) -> Result<(), StateMachineError> {
        self.finish_staging().map_err(machine_error)?;
        if let Ok(mut staging) = self.staging.lock() {
            staging.finished_at = Some(Instant::now());
        }
        Ok(())
    }
}

impl Drop for StagingSink {
    fn drop(&mut self) {
        if let Ok(mut staging) = self.staging.lock() {
            staging.receiving = false;
        }
    }
}

impl StateStore {
    /// The state at the applied index as a streamable view: one read transaction.
    pub(super) fn snapshot_source(&self) -> Result<StoreSnapshotSource, StateError> {
        let txn = self.db.begin_read()?;
        let (applied, tlog_size) = {
            let meta = txn.open_table(META)?;
            let applied = meta.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0);
            (applied, meta.get(TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0))
        };
        Ok(StoreSnapshotSource { txn: Mutex::new(txn), applied, tlog_size })
    }

    /// SHA-256 of the streamed snapshot's records with the applied index left out: equal
    /// on every replica that applied the same commands, read from one read transaction a
    /// piece at a time, so memory stays at one piece whatever the state's size.
    pub(super) fn streamed_digest(&self) -> Result<(u64, Sha256), StateError> {
        let source = self.snapshot_source()?;
        let applied = source.applied;
        let without_index = StoreSnapshotSource { applied: 0, ..source };
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        without_index
            .read(DIGEST_PIECE_BYTES, &mut |piece| {
                context.update(&piece);
                Ok(())
            })
            .map_err(|error| StateError::Storage(error.0))?;
        let digest = context.finish();
        Ok((applied, Sha256(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))))
    }

    /// Starts staging a snapshot at `index`; refuses while another transfer is staging or
    /// while a finished one waits to be installed (for [`STAGED_SNAPSHOT_KEPT`]).
    pub(super) fn stage_snapshot(&self, index: u64) -> Result<Box<dyn SnapshotSink>, StateError> {
        let mut staging = self.staging.lock().map_err(|_| StateError::Storage("the staging lock is poisoned".into()))?;
        if staging.receiving {
            return Err(StateError::Storage("another snapshot is being received; retry when it ends".into()));
        }
        let txn = self.begin_apply()?;
        {
            let meta = txn.open_table(META)?;
            let applied = meta.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0);
            let staged = meta.get(STAGING_INDEX)?.map(|value| value.value());
            let complete = meta.get(STAGING_COMPLETE)?.is_some();
            let waiting = staging.finished_at.is_some_and(|at| at.elapsed() < STAGED_SNAPSHOT_KEPT);
            if let Some(staged) = staged.filter(|staged| complete && waiting && *staged > applied) {
                return Err(StateError::Storage(format!("snapshot {staged} was received and waits to be installed; retry shortly")));
            }
        }
        reset_staging(&txn, index)?;
        txn.commit()?;
        staging.receiving = true;
        staging.finished_at = None;
        Ok(Box::new(StagingSink {
            db: self.db.clone(),
            staging: self.staging.clone(),
            index,
            skip_fsync: self.skip_fsync,
            header_seen: false,
            records: 0,
            trailer: None,
        }))
    }

    /// Swaps the snapshot staged at `index` in, in one durable transaction (see the module
    /// documentation). A no-op when `index` is applied and nothing is staged for it.
    pub(super) fn restore_staged(&self, index: u64) -> Result<(), StateError> {
        let txn = self.begin_apply()?;
        let tlog_size = {
            let meta = txn.open_table(META)?;
            let applied = meta.get(APPLIED_INDEX)?.map(|value| value.value()).unwrap_or(0);
            let staged = meta.get(STAGING_INDEX)?.map(|value| value.value());
            let complete = meta.get(STAGING_COMPLETE)?.is_some();
            if staged != Some(index) || !complete {
                if applied == index {
                    return Ok(());
                }
                return Err(StateError::Corrupt(format!(
                    "no complete snapshot is staged at {index} (staged: {staged:?}, complete: {complete}; applied: {applied})"
                )));
            }
            let tlog_size = meta.get(STAGING_TLOG_SIZE)?.map(|value| value.value()).unwrap_or(0);
            tlog_size
        };
        swap_in_staged_tables(&txn)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(TLOG_SIZE, tlog_size)?;
            meta.insert(APPLIED_INDEX, index)?;
            meta.insert(STATISTICS_INDEXED, 1)?;
            meta.insert(RECORD_LAYOUT_KEY, RECORD_LAYOUT)?;
            meta.remove(STAGING_INDEX)?;
            meta.remove(STAGING_TLOG_SIZE)?;
            meta.remove(STAGING_COMPLETE)?;
        }
        txn.delete_multimap_table(BLOB_AGENCIES)?;
        rebuild_blob_agencies(&txn)?;
        txn.delete_table(REQUEST_DETAILS)?;
        rebuild_request_details(&txn)?;
        rebuild_blob_arrivals(&txn)?;
        txn.commit()?;
        self.committed_durably(index);
        self.state_replaced();
        if let Ok(mut staging) = self.staging.lock() {
            staging.finished_at = None;
        }
        Ok(())
    }
}
