//! The durable Raft log: entries, hard state, membership and the point the log was
//! truncated at, behind the [`LogStore`] trait, with raft-engine as the real
//! implementation ([`EngineLog`]) and an in-memory twin for the simulation tests.
//!
//! Why raft-engine: it is the log TiKV runs in production for raft-rs, it stores protobuf 2
//! entries directly, and it batches concurrent writers into one fdatasync. A log store
//! never interprets commands and never talks to the network.
//!
//! Every [`LogWrite`] is one atomic raft-engine batch. A failed write is returned to the
//! driver, which stops the node: nothing is acknowledged after a failed write.

use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};
use raft_engine::{Command, Engine, LogBatch, MessageExt};

use super::codec::{self, pb, Membership};

/// A failure of the log's storage. Fatal for the node.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft log storage failed: {0}")]
    Engine(String),
    #[error("raft log record is corrupt: {0}")]
    Corrupt(String),
    #[error("staged snapshot file failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<raft_engine::Error> for LogError {
    fn from(error: raft_engine::Error) -> Self {
        LogError::Engine(error.to_string())
    }
}

impl From<codec::CodecError> for LogError {
    fn from(error: codec::CodecError) -> Self {
        LogError::Corrupt(error.to_string())
    }
}

/// The last entry removed from the head of the log (index 0, term 0 for a full log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Truncated {
    pub index: u64,
    pub term: u64,
}

/// Everything one Ready cycle (or one compaction) changes in the log, written atomically.
#[derive(Debug, Default)]
pub(crate) struct LogWrite {
    /// Discard the whole log and restart it after this point (an installed snapshot).
    pub reset_to: Option<Truncated>,
    /// Entries to append; an entry at an index already present replaces it and everything
    /// after it.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub membership: Option<Membership>,
    /// Remove the head of the log up to and including this point.
    pub compact_to: Option<Truncated>,
    /// Wait for the write to reach the disk (fdatasync) before returning.
    pub sync: bool,
}

impl LogWrite {
    pub fn is_empty(&self) -> bool {
        self.reset_to.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.membership.is_none()
            && self.compact_to.is_none()
    }
}

/// The durable log of one node. Reads are served from memory or the engine's index;
/// `write` is the only mutation.
pub(crate) trait LogStore: Send + 'static {
    fn hard_state(&self) -> HardState;
    fn membership(&self) -> Membership;
    fn truncated(&self) -> Truncated;
    /// Index of the last entry (the truncation point when the log holds no entry).
    fn last_index(&self) -> u64;
    /// Entries in `[low, high)`, at least one when the range is not empty, then as many as
    /// fit in `max_size_bytes`. The caller guarantees `truncated < low` and
    /// `high <= last_index() + 1`.
    fn entries(&self, low: u64, high: u64, max_size_bytes: Option<u64>) -> Result<Vec<Entry>, LogError>;
    /// The term of a held entry (`truncated < index <= last_index()`).
    fn term(&self, index: u64) -> Result<u64, LogError>;
    fn write(&mut self, write: LogWrite) -> Result<(), LogError>;

    /// Removes a whole snapshot staged in the log directory by a release before snapshots
    /// were streamed (the state machine stages them now); a no-op when there is none.
    fn clear_staged_snapshot(&mut self) -> Result<(), LogError>;
}

/// raft-engine group id of the one Raft group a node runs.
const GROUP_ID: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_TRUNCATED: &[u8] = b"truncated";
const STAGED_SNAPSHOT_FILE: &str = "staged.snapshot";

pub(crate) struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// The raft-engine log of one node, in `<data_dir>/log` (and, from releases before
/// streamed snapshots, a staged snapshot in `<data_dir>/staged.snapshot`, removed at start).
pub(crate) struct EngineLog {
    engine: Engine,
    dir: PathBuf,
    hard_state: HardState,
    membership: Membership,
    truncated: Truncated,
    skip_fsync: bool,
}

impl EngineLog {
    /// Opens (or creates) the log under `data_dir`.
    #[cfg(test)]
    pub fn open(data_dir: &Path) -> Result<EngineLog, LogError> {
        Self::open_with(data_dir, false)
    }

    /// Opens (or creates) the log under `data_dir`; `skip_fsync` (tests that prove a power loss is caught,
    /// never production) writes every batch without fsync.
    pub fn open_with(data_dir: &Path, skip_fsync: bool) -> Result<EngineLog, LogError> {
        fs::create_dir_all(data_dir)?;
        let config = raft_engine::Config {
            dir: data_dir.join("log").to_string_lossy().into_owned(),
            ..raft_engine::Config::default()
        };
        let engine = Engine::open(config)?;
        let hard_state = match engine.get(GROUP_ID, KEY_HARD_STATE) {
            Some(bytes) => HardState::parse_from_bytes(&bytes)
                .map_err(|error| LogError::Corrupt(format!("hard state: {error}")))?,
            None => HardState::default(),
        };
        let membership = match engine.get(GROUP_ID, KEY_MEMBERSHIP) {
            Some(bytes) => codec::decode_membership(&bytes)?,
            None => Membership::default(),
        };
        let truncated = match engine.get(GROUP_ID, KEY_TRUNCATED) {
            Some(bytes) => {
                let record: pb::TruncatedState = prost::Message::decode(bytes.as_slice())
                    .map_err(|error| LogError::Corrupt(format!("truncated state: {error}")))?;
                Truncated { index: record.index, term: record.term }
            }
            None => Truncated::default(),
        };
        let log = EngineLog { engine, dir: data_dir.to_path_buf(), hard_state, membership, truncated, skip_fsync };
        log.check_bounds()?;
        Ok(log)
    }

    /// The entries the engine holds must start right after the truncation point.
    fn check_bounds(&self) -> Result<(), LogError> {
        if let Some(first) = self.engine.first_index(GROUP_ID) {
            if first != self.truncated.index + 1 {
                return Err(LogError::Corrupt(format!(
                    "log starts at {first} but was truncated at {}",
                    self.truncated.index
                )));
            }
        }
        Ok(())
    }

    fn staged_path(&self) -> PathBuf {
        self.dir.join(STAGED_SNAPSHOT_FILE)
    }
}

fn put_truncated(batch: &mut LogBatch, truncated: Truncated) -> Result<(), LogError> {
    let record = pb::TruncatedState { index: truncated.index, term: truncated.term };
    batch.put(GROUP_ID, KEY_TRUNCATED.to_vec(), prost::Message::encode_to_vec(&record))?;
    Ok(())
}

impl LogStore for EngineLog {
    fn hard_state(&self) -> HardState {
        self.hard_state.clone()
    }

    fn membership(&self) -> Membership {
        self.membership.clone()
    }

    fn truncated(&self) -> Truncated {
        self.truncated
    }

    fn last_index(&self) -> u64 {
        self.engine.last_index(GROUP_ID).unwrap_or(self.truncated.index)
    }

    fn entries(&self, low: u64, high: u64, max_size_bytes: Option<u64>) -> Result<Vec<Entry>, LogError> {
        let mut entries = Vec::with_capacity((high - low).min(1024) as usize);
        let max_size = max_size_bytes.map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX));
        self.engine.fetch_entries_to::<EntryExt>(GROUP_ID, low, high, max_size, &mut entries)?;
        Ok(entries)
    }

    fn term(&self, index: u64) -> Result<u64, LogError> {
        match self.engine.get_entry::<EntryExt>(GROUP_ID, index)? {
            Some(entry) => Ok(entry.term),
            None => Err(LogError::Corrupt(format!("entry {index} is missing from the log"))),
        }
    }

    fn write(&mut self, write: LogWrite) -> Result<(), LogError> {
        if write.is_empty() {
            return Ok(());
        }
        let mut batch = LogBatch::default();
        if let Some(point) = write.reset_to {
            // raft-engine can drop a log's head (Compact) and replace its tail (an append at
            // an index it already holds), but not empty it while keeping the group's keys:
            // drop the head, replace the rest by one placeholder entry, then drop that too.
            // The three commands are replayed in the same order at recovery.
            batch.add_command(GROUP_ID, Command::Compact { index: point.index + 1 });
            let placeholder = Entry { index: point.index + 1, term: point.term, ..Entry::default() };
            batch.add_entries::<EntryExt>(GROUP_ID, &[placeholder])?;
            batch.add_command(GROUP_ID, Command::Compact { index: point.index + 2 });
            put_truncated(&mut batch, point)?;
        }
        batch.add_entries::<EntryExt>(GROUP_ID, &write.entries)?;
        if let Some(hard_state) = &write.hard_state {
            batch.put_message(GROUP_ID, KEY_HARD_STATE.to_vec(), hard_state)?;
        }
        if let Some(membership) = &write.membership {
            batch.put(GROUP_ID, KEY_MEMBERSHIP.to_vec(), codec::encode_membership(membership))?;
        }
        if let Some(point) = write.compact_to {
            batch.add_command(GROUP_ID, Command::Compact { index: point.index + 1 });
            put_truncated(&mut batch, point)?;
        }
        self.engine.write(&mut batch, write.sync && !self.skip_fsync)?;
        if let Some(point) = write.reset_to {
            self.truncated = point;
        }
        if let Some(point) = write.compact_to {
            self.truncated = point;
        }
        if let Some(hard_state) = write.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(membership) = write.membership {
            self.membership = membership;
        }
        if write.compact_to.is_some() {
            // Reclaims log files that hold only compacted entries; best effort.
            if let Err(error) = self.engine.purge_expired_files() {
                tracing::warn!(%error, "raft log purge failed; will retry after the next compaction");
            }
        }
        Ok(())
    }

    fn clear_staged_snapshot(&mut self) -> Result<(), LogError> {
        match fs::remove_file(self.staged_path()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// The in-memory twin of [`EngineLog`], for the deterministic simulation tests. Same
/// contract; "durable" means synced: a write made with `sync` (and everything before it)
/// survives [`MemLog::lose_unsynced`], the simulated power loss a crash applies; writes
/// made without it since the last synced one are thrown away, as a page cache would.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemLog {
    current: MemLogImage,
    /// The image as of the last synced write.
    synced: MemLogImage,
}

#[cfg(test)]
#[derive(Default, Clone, PartialEq, Debug)]
pub(crate) struct MemLogImage {
    entries: std::collections::VecDeque<Entry>,
    hard_state: HardState,
    membership: Membership,
    truncated: Truncated,
}

#[cfg(test)]
impl MemLogImage {
    pub fn last_index(&self) -> u64 {
        self.truncated.index + self.entries.len() as u64
    }

    /// The image with the commit index cleared: a replica writes the commit index unsynced
    /// and recomputes it at start, so a restart may legitimately change it.
    pub fn without_commit(mut self) -> MemLogImage {
        self.hard_state.commit = 0;
        self
    }
}

#[cfg(test)]
impl MemLog {
    /// A power loss: everything written since the last synced write is gone.
    pub fn lose_unsynced(&mut self) {
        self.current = self.synced.clone();
    }

    /// What a power loss would leave.
    pub fn synced_image(&self) -> &MemLogImage {
        &self.synced
    }

    pub fn image(&self) -> &MemLogImage {
        &self.current
    }
}

#[cfg(test)]
impl LogStore for MemLog {
    fn hard_state(&self) -> HardState {
        self.current.hard_state.clone()
    }

    fn membership(&self) -> Membership {
        self.current.membership.clone()
    }

    fn truncated(&self) -> Truncated {
        self.current.truncated
    }

    fn last_index(&self) -> u64 {
        self.current.truncated.index + self.current.entries.len() as u64
    }

    fn entries(&self, low: u64, high: u64, max_size_bytes: Option<u64>) -> Result<Vec<Entry>, LogError> {
        let offset = self.current.truncated.index + 1;
        let mut found = Vec::new();
        let mut size_bytes = 0u64;
        for index in low..high {
            let entry = &self.current.entries[(index - offset) as usize];
            size_bytes += u64::from(entry.compute_size());
            if !found.is_empty() && max_size_bytes.is_some_and(|max| size_bytes > max) {
                break;
            }
            found.push(entry.clone());
        }
        Ok(found)
    }

    fn term(&self, index: u64) -> Result<u64, LogError> {
        Ok(self.current.entries[(index - self.current.truncated.index - 1) as usize].term)
    }

    fn write(&mut self, write: LogWrite) -> Result<(), LogError> {
        if let Some(point) = write.reset_to {
            self.current.entries.clear();
            self.current.truncated = point;
        }
        if let Some(first) = write.entries.first() {
            assert!(first.index > self.current.truncated.index, "append below the truncation point");
            assert!(first.index <= self.last_index() + 1, "append leaves a hole in the log");
            self.current.entries.truncate((first.index - self.current.truncated.index - 1) as usize);
            self.current.entries.extend(write.entries.iter().cloned());
        }
        if let Some(hard_state) = write.hard_state {
            self.current.hard_state = hard_state;
        }
        if let Some(membership) = write.membership {
            self.current.membership = membership;
        }
        if let Some(point) = write.compact_to {
            let count = (point.index - self.current.truncated.index) as usize;
            self.current.entries.drain(..count.min(self.current.entries.len()));
            self.current.truncated = point;
        }
        if write.sync {
            self.synced = self.current.clone();
        }
        Ok(())
    }

    fn clear_staged_snapshot(&mut self) -> Result<(), LogError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: format!("command {index}").into_bytes().into(), ..Entry::default() }
    }

    fn append(log: &mut EngineLog, entries: Vec<Entry>) {
        log.write(LogWrite { entries, sync: true, ..LogWrite::default() }).unwrap();
    }

    #[test]
    fn engine_log_survives_reopen_with_replaced_tail_and_compacted_head() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = EngineLog::open(dir.path()).unwrap();
            append(&mut log, (1..=10).map(|index| entry(index, 1)).collect());
            // A new leader overwrites 8..: the old 8, 9, 10 must disappear.
            append(&mut log, vec![entry(8, 2)]);
            let hard_state = HardState { term: 2, vote: 3, commit: 7, ..HardState::default() };
            log.write(LogWrite {
                hard_state: Some(hard_state),
                compact_to: Some(Truncated { index: 4, term: 1 }),
                sync: true,
                ..LogWrite::default()
            })
            .unwrap();
        }
        let log = EngineLog::open(dir.path()).unwrap();
        assert_eq!(log.truncated(), Truncated { index: 4, term: 1 });
        assert_eq!(log.last_index(), 8);
        assert_eq!(log.term(8).unwrap(), 2);
        assert_eq!(log.hard_state().commit, 7);
        let held = log.entries(5, 9, None).unwrap();
        assert_eq!(held.iter().map(|entry| entry.index).collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        assert_eq!(held[0].data.as_ref(), b"command 5");
    }

    #[test]
    fn engine_log_reset_to_a_snapshot_drops_every_entry_even_past_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = EngineLog::open(dir.path()).unwrap();
            append(&mut log, (1..=30).map(|index| entry(index, 1)).collect());
            log.write(LogWrite {
                reset_to: Some(Truncated { index: 20, term: 3 }),
                sync: true,
                ..LogWrite::default()
            })
            .unwrap();
            assert_eq!(log.last_index(), 20);
            append(&mut log, vec![entry(21, 3), entry(22, 3)]);
            // A later snapshot far past the log, with no entry after it.
            log.write(LogWrite {
                reset_to: Some(Truncated { index: 100, term: 4 }),
                sync: true,
                ..LogWrite::default()
            })
            .unwrap();
            assert_eq!(log.last_index(), 100);
        }
        let mut log = EngineLog::open(dir.path()).unwrap();
        assert_eq!(log.truncated(), Truncated { index: 100, term: 4 });
        assert_eq!(log.last_index(), 100);
        append(&mut log, vec![entry(101, 4)]);
        assert_eq!(log.entries(101, 102, None).unwrap()[0].term, 4);
    }
}
