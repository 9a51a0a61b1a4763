//! raft-rs's view of the durable log ([`raft::Storage`]), plus the snapshot cache.
//!
//! Snapshots are made on demand from the live state machine, never stored: when raft-rs
//! needs one for a lagging follower, [`RaftStorage::snapshot`] answers "temporarily
//! unavailable" and raises a flag; the driver then asks the state machine for a snapshot
//! between two Ready cycles and caches it here; raft-rs retries on the follower's next
//! heartbeat response. This keeps a possibly slow state-machine read out of raft-rs calls.

use std::cell::Cell;

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::log_store::{LogError, LogStore};

pub(crate) struct RaftStorage<L: LogStore> {
    pub log: L,
    /// The latest snapshot made by this node, if any.
    cached_snapshot: Option<Snapshot>,
    /// Set when raft-rs asked for a snapshot newer than the cached one.
    snapshot_requested: Cell<Option<u64>>,
}

// SAFETY-free note: `Cell` makes this type !Sync, which is fine: the storage lives inside
// the RawNode owned by the driver thread and is never shared.

impl<L: LogStore> RaftStorage<L> {
    pub fn new(log: L) -> Self {
        RaftStorage { log, cached_snapshot: None, snapshot_requested: Cell::new(None) }
    }

    /// The index raft-rs asked a snapshot for, if it is waiting for one.
    pub fn take_snapshot_request(&self) -> Option<u64> {
        self.snapshot_requested.take()
    }

    pub fn cache_snapshot(&mut self, snapshot: Snapshot) {
        self.cached_snapshot = Some(snapshot);
    }
}

fn storage_error(error: LogError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(error)))
}

impl<L: LogStore> raft::Storage for RaftStorage<L> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hard_state: HardState = self.log.hard_state();
        Ok(RaftState::new(hard_state, self.log.membership().conf_state))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let truncated = self.log.truncated();
        if low <= truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let last = self.log.last_index();
        assert!(high <= last + 1, "raft-rs asked for entries up to {high} but the log ends at {last}");
        let max_size = max_size.into().filter(|limit| *limit != raft::NO_LIMIT);
        let entries = self.log.entries(low, high, max_size).map_err(storage_error)?;
        if entries.is_empty() && low < high {
            return Err(storage_error(LogError::Corrupt(format!("entries {low}..{high} are missing from the log"))));
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let truncated = self.log.truncated();
        if index == truncated.index {
            return Ok(truncated.term);
        }
        if index < truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.log.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.log.term(index).map_err(storage_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.truncated().index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let truncated = self.log.truncated().index;
        if let Some(snapshot) = &self.cached_snapshot {
            let index = snapshot.get_metadata().index;
            if index >= request_index && index >= truncated {
                return Ok(snapshot.clone());
            }
        }
        self.snapshot_requested.set(Some(request_index.max(truncated)));
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}
