//! raft-rs's view of the durable log ([`raft::Storage`]), plus the snapshot cache.
//!
//! Snapshots are made on demand from the live state machine, never stored: when raft-rs
//! needs one for a lagging follower, [`RaftStorage::snapshot`] answers "temporarily
//! unavailable" and raises a flag; the driver then asks the state machine for a read view
//! between two Ready cycles (cheap: a read transaction, nothing read yet) and caches the
//! snapshot message here, whose data holds only the members' addresses; raft-rs retries
//! on the follower's next heartbeat response. The view itself goes to [`SnapshotSources`],
//! where the transport's peer tasks find it and stream the state from it, off the driver
//! thread.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::log_store::{LogError, LogStore};
use crate::SnapshotSource;

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

    /// Forgets the cached snapshot (its state view was released): raft-rs asks again.
    pub fn forget_snapshot(&mut self) {
        self.cached_snapshot = None;
    }
}

/// The state view behind the cached snapshot, shared between the replica (which makes it)
/// and the transport's peer tasks (which stream it). Holding a view pins the state
/// machine's read transaction, so an idle one is released (see
/// [`SnapshotSources::release_if_idle`]).
#[derive(Clone, Default)]
pub(crate) struct SnapshotSources(Arc<Mutex<Option<(Arc<dyn SnapshotSource>, Instant)>>>);

impl SnapshotSources {
    pub fn set(&self, source: Arc<dyn SnapshotSource>) {
        if let Ok(mut current) = self.0.lock() {
            *current = Some((source, Instant::now()));
        }
    }

    /// The view at `index`, if it is still held.
    pub fn get(&self, index: u64) -> Option<Arc<dyn SnapshotSource>> {
        let mut current = self.0.lock().ok()?;
        let (source, last_used) = current.as_mut()?;
        if source.index() != index {
            return None;
        }
        *last_used = Instant::now();
        Some(source.clone())
    }

    /// Drops the view when no transfer uses it and none started for `idle`. Returns
    /// whether it was dropped.
    pub fn release_if_idle(&self, idle: Duration) -> bool {
        let Ok(mut current) = self.0.lock() else {
            return false;
        };
        let idle = current
            .as_ref()
            .is_some_and(|(source, last_used)| Arc::strong_count(source) == 1 && last_used.elapsed() >= idle);
        if idle {
            *current = None;
        }
        idle
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

    /// The cached snapshot if it is recent enough for `to`: at or past `request_index` and
    /// the log's head, and made when `to` was already a member. A snapshot made before `to`
    /// was added (say for an earlier joiner) names a membership without it; the receiver
    /// refuses to restore it ("not in the ConfState") and would wait forever, so a new one
    /// is requested instead.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let truncated = self.log.truncated().index;
        if let Some(snapshot) = &self.cached_snapshot {
            let metadata = snapshot.get_metadata();
            let conf_state = metadata.get_conf_state();
            let names_receiver = [conf_state.get_voters(), conf_state.get_learners(), conf_state.get_learners_next()]
                .iter()
                .any(|ids| ids.contains(&to));
            if metadata.index >= request_index && metadata.index >= truncated && names_receiver {
                return Ok(snapshot.clone());
            }
        }
        self.snapshot_requested.set(Some(request_index.max(truncated)));
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::ConfState;
    use raft::Storage;

    use super::*;
    use crate::raft::log_store::MemLog;

    fn snapshot_for(index: u64, voters: Vec<u64>, learners: Vec<u64>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().set_conf_state(ConfState { voters, learners, ..ConfState::default() });
        snapshot
    }

    fn temporarily_unavailable(result: raft::Result<Snapshot>) -> bool {
        matches!(result, Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)))
    }

    /// Found by the 5-node soak: node 10 was added while the leader still cached the
    /// snapshot it had made for node 9; node 10 refused it again and again and never joined.
    #[test]
    fn a_cached_snapshot_made_before_the_receiver_joined_is_not_sent_to_it() {
        let mut storage = RaftStorage::new(MemLog::default());
        storage.cache_snapshot(snapshot_for(50, vec![1, 5, 7, 8], vec![9]));
        assert!(storage.snapshot(0, 9).is_ok(), "a learner named in the snapshot receives it");
        assert!(storage.snapshot(0, 7).is_ok(), "so does a voter");
        assert_eq!(storage.take_snapshot_request(), None);
        assert!(temporarily_unavailable(storage.snapshot(0, 10)), "node 10 is not in the cached membership");
        assert_eq!(storage.take_snapshot_request(), Some(0), "a new snapshot is asked for");
        storage.cache_snapshot(snapshot_for(80, vec![1, 5, 7, 9], vec![10]));
        assert_eq!(storage.snapshot(0, 10).unwrap().get_metadata().index, 80);
    }

    #[test]
    fn a_cached_snapshot_older_than_the_request_is_not_sent() {
        let mut storage = RaftStorage::new(MemLog::default());
        storage.cache_snapshot(snapshot_for(50, vec![1, 2, 3], vec![]));
        assert!(temporarily_unavailable(storage.snapshot(60, 2)));
        assert_eq!(storage.take_snapshot_request(), Some(60));
    }
}
