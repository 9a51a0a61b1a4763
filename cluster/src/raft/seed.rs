//! The Raft log of a cluster restored from a backup: its founding member starts with a
//! log that begins right after the backup's applied index, as if it had just installed a
//! snapshot at that index, with itself as the only voter. Other members join it with the
//! usual flow (added as learners, they receive its state as a Raft snapshot).

use std::path::Path;

use raft::eraftpb::{ConfState, HardState};

use super::codec::Membership;
use super::log_store::{EngineLog, LogStore as _, LogWrite, Truncated};
use super::PeerAddress;

/// Writes, under `raft_dir` (a node's `data_dir/raft`), the log of a new one-member
/// cluster whose state machine already holds everything up to `applied_index`. The term
/// restarts at 1: the entries before it belong to another cluster and are never read.
/// Refuses a directory that already holds a log.
pub fn seed_restored_log(raft_dir: &Path, applied_index: u64, member: &PeerAddress) -> Result<(), String> {
    if applied_index == 0 {
        return Err("the state holds no applied command (index 0): start a new cluster instead of restoring".into());
    }
    if member.id == 0 {
        return Err("a member id must be non-zero".into());
    }
    let mut log = EngineLog::open_with(raft_dir, false).map_err(|error| error.to_string())?;
    if log.last_index() != 0 || log.hard_state() != HardState::default() {
        return Err(format!("{} already holds a Raft log; restore into an empty directory", raft_dir.display()));
    }
    let membership = Membership {
        index: applied_index,
        conf_state: ConfState { voters: vec![member.id], ..ConfState::default() },
        peers: [(member.id, member.clone())].into_iter().collect(),
    };
    log.write(LogWrite {
        reset_to: Some(Truncated { index: applied_index, term: 1 }),
        hard_state: Some(HardState { term: 1, vote: 0, commit: applied_index, ..HardState::default() }),
        membership: Some(membership),
        sync: true,
        ..LogWrite::default()
    })
    .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_log_starts_after_the_backup_with_one_voter_and_refuses_a_second_seed() {
        let dir = tempfile::tempdir().unwrap();
        let member = PeerAddress { id: 7, raft_addr: "127.0.0.1:1".into(), client_addr: "127.0.0.1:2".into() };
        seed_restored_log(dir.path(), 42, &member).unwrap();
        let log = EngineLog::open_with(dir.path(), false).unwrap();
        assert_eq!(log.truncated(), Truncated { index: 42, term: 1 });
        assert_eq!(log.last_index(), 42);
        assert_eq!(log.hard_state().commit, 42);
        assert_eq!(log.membership().conf_state.voters, vec![7]);
        assert_eq!(log.membership().peers.get(&7), Some(&member));
        drop(log);
        let again = seed_restored_log(dir.path(), 42, &member).unwrap_err();
        assert!(again.contains("already holds a Raft log"), "{again}");
        let empty = tempfile::tempdir().unwrap();
        assert!(seed_restored_log(empty.path(), 0, &member).unwrap_err().contains("index 0"));
    }
}
