//! One Raft member as a synchronous value: a raft-rs `RawNode` over a [`LogStore`], the
//! application's [`StateMachine`], and the Ready cycle that ties them together.
//!
//! The same code runs in production (driven by [`super::driver`] on its own thread, with
//! raft-engine and gRPC) and in the deterministic simulation tests (with the in-memory log
//! and network). It never blocks on the network: outgoing messages go to an [`Outbox`]
//! that must not block.
//!
//! The Ready cycle follows raft-rs 0.7's contract, in this order:
//! 1. send `messages` at once (a leader replicates while it writes);
//! 2. install a snapshot, if any: stage its data durably, record it in the log together
//!    with the hard state (one synced write), then restore the state machine;
//! 3. append `entries` and the hard state in one write, fsync'd when `must_sync`;
//! 4. only then send `persisted_messages` (votes, append responses);
//! 5. apply committed entries in order, in batches (membership changes are recorded, with
//!    an fsync, before the batch that contains them is applied). After the write and its
//!    messages, not before them as in raft-rs's example: a follower's append response
//!    and the leader's own fsync of new proposals do not wait for this apply (3-node
//!    certify, A/B: +4 to +6 % at 16 clients, +1.5 to +12 % at 64; BENCHMARKS.md, stop 32);
//! 6. `advance`; record the new commit index; send; apply; `advance_apply_to`.
//!
//! A failed write or apply returns an error and the caller stops the node: nothing is
//! advanced after a failure.

use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry as RaftEntry, EntryType, HardState,
    Message, Snapshot,
};
use raft::{RawNode, ReadState, StateRole, Storage as _};

use super::codec::{self, Membership};
use super::log_store::{LogError, LogStore, LogWrite, Truncated};
use super::logger::raft_logger;
use super::storage::{RaftStorage, SnapshotSources};
use super::PeerAddress;
use crate::{Entry, StateMachine, StateMachineError};

/// Where a replica's outgoing messages go. Implementations MUST NOT block: a full queue
/// drops the message (Raft retransmits).
pub(crate) trait Outbox {
    fn send(&mut self, messages: Vec<Message>);
}

/// A fatal failure: the replica must stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("corrupt replicated record: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("inconsistent storage: {0}")]
    Inconsistent(String),
}

/// The tuning a replica needs (a subset of [`super::RaftConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct ReplicaConfig {
    pub id: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub message_size_bytes_max: u64,
    pub inflight_messages_max: usize,
    pub apply_batch_entries_max: usize,
    pub compaction_interval_entries: u64,
    pub log_retained_entries: u64,
}

/// An entry this replica applied that carried a proposal tag (entry context).
#[derive(Debug, Clone)]
pub(crate) struct AppliedEntry {
    pub index: u64,
    pub term: u64,
    pub context: Bytes,
    pub response: Bytes,
}

/// What one Ready cycle produced for the driver.
#[derive(Debug, Default)]
pub(crate) struct ReadyOutcome {
    pub applied: Vec<AppliedEntry>,
    pub read_states: Vec<ReadState>,
    pub membership_changed: bool,
}

/// A point-in-time view of a replica.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplicaStatus {
    pub role: StateRole,
    pub term: u64,
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub conf_state: ConfState,
    /// Leader only: how far each member's log is known to match (member id, index).
    pub matched: Vec<(u64, u64)>,
}

pub(crate) struct Replica<S: StateMachine, L: LogStore> {
    pub raw: RawNode<RaftStorage<L>>,
    state: Arc<S>,
    config: ReplicaConfig,
    membership: Membership,
    applied: u64,
    sources: SnapshotSources,
}

/// A state view no transfer used for this long is released, so that the state machine
/// does not keep an old read transaction (and the pages it pins) for ever.
const SNAPSHOT_VIEW_IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(60);

impl<S: StateMachine, L: LogStore> Replica<S, L> {
    /// Opens a replica over an existing log, or a fresh one. A fresh log with a non-empty
    /// `bootstrap` list becomes a founding member of a new cluster; a fresh log without one
    /// waits to be added by a leader (it never campaigns until it is a voter).
    pub fn open(config: ReplicaConfig, state: Arc<S>, mut log: L, bootstrap: &[PeerAddress]) -> Result<Self, ReplicaError> {
        if is_pristine(&log) && !bootstrap.is_empty() {
            write_bootstrap_entries(&mut log, bootstrap)?;
        }
        let applied = finish_staged_snapshot(&mut log, state.as_ref())?;
        if applied > log.last_index() {
            return Err(ReplicaError::Inconsistent(format!(
                "the state machine applied {applied} but the raft log ends at {}: the log lost entries",
                log.last_index()
            )));
        }
        let mut hard_state = log.hard_state();
        if hard_state.commit < applied {
            // Applied entries are committed by definition; the commit index is written
            // lazily, so it may lag after a crash.
            hard_state.commit = applied;
            log.write(LogWrite { hard_state: Some(hard_state), sync: true, ..LogWrite::default() })?;
        }
        let membership = log.membership();
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: config.message_size_bytes_max,
            max_inflight_msgs: config.inflight_messages_max,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let raw = RawNode::new(&raft_config, RaftStorage::new(log), &raft_logger(config.id))?;
        Ok(Replica { raw, state, config, membership, applied, sources: SnapshotSources::default() })
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Where the transport finds the state view of the cached snapshot.
    pub fn snapshot_sources(&self) -> &SnapshotSources {
        &self.sources
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Whether this leader is handing its leadership to another member; raft-rs drops
    /// proposals meanwhile.
    pub fn transferring_leadership(&self) -> bool {
        self.raw.raft.lead_transferee.is_some()
    }

    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Steps a message from a peer. Messages raft-rs refuses (a response from a node that
    /// is not a member, a local message type from the network) are dropped.
    pub fn step(&mut self, message: Message) {
        let (from, kind) = (message.from, message.get_msg_type());
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(from, ?kind, %error, "raft message dropped");
        }
    }

    /// Appends a command when this replica leads. Returns the (index, term) the entry got,
    /// or `None` when raft-rs dropped the proposal (not leader, leadership transfer).
    pub fn propose(&mut self, tag: Vec<u8>, command: Vec<u8>) -> Option<(u64, u64)> {
        if !self.is_leader() {
            return None;
        }
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(tag, command) {
            Ok(()) => self.appended_since(before),
            Err(error) => {
                tracing::debug!(%error, "proposal dropped by raft");
                None
            }
        }
    }

    /// Appends a membership change when this replica leads; like [`Replica::propose`].
    pub fn propose_membership(&mut self, tag: Vec<u8>, change: ConfChangeV2) -> Option<(u64, u64)> {
        if !self.is_leader() {
            return None;
        }
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose_conf_change(tag, change) {
            Ok(()) => self.appended_since(before),
            Err(error) => {
                tracing::debug!(%error, "membership change dropped by raft");
                None
            }
        }
    }

    fn appended_since(&self, before: u64) -> Option<(u64, u64)> {
        let last = self.raw.raft.raft_log.last_index();
        // raft-rs may turn a refused membership change into an empty entry; either way one
        // entry was appended at the end of the log in the current term.
        (last == before + 1).then_some((last, self.raw.raft.term))
    }

    /// Leaves a joint configuration as soon as this leader may: raft-rs does not do it by
    /// itself for explicit transitions, and a joint configuration left behind by a crashed
    /// leader must be left by the next one.
    pub fn maybe_leave_joint(&mut self) {
        let joint = !self.membership.conf_state.voters_outgoing.is_empty();
        if joint && self.is_leader() && !self.raw.raft.has_pending_conf() && self.membership.index <= self.applied {
            if let Err(error) = self.raw.propose_conf_change(Vec::new(), ConfChangeV2::default()) {
                tracing::debug!(%error, "could not propose leaving the joint configuration yet");
            }
        }
    }

    /// Runs one Ready cycle, if raft-rs has one. See the module documentation for the order.
    pub fn handle_ready(&mut self, outbox: &mut impl Outbox) -> Result<ReadyOutcome, ReplicaError> {
        let mut outcome = ReadyOutcome::default();
        if !self.raw.has_ready() {
            return Ok(outcome);
        }
        let mut ready = self.raw.ready();
        send(outbox, ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(snapshot, ready.hs().cloned())?;
            outcome.membership_changed = true;
        }
        let committed = ready.take_committed_entries();
        let write = LogWrite {
            entries: ready.take_entries(),
            hard_state: ready.hs().cloned(),
            sync: ready.must_sync(),
            ..LogWrite::default()
        };
        self.raw.mut_store().log.write(write)?;
        send(outbox, ready.take_persisted_messages());
        self.apply_committed(committed, &mut outcome)?;
        outcome.read_states = ready.take_read_states();
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.raw.store().log.hard_state();
            hard_state.commit = commit;
            // Not synced: a lost commit index is recomputed from the applied index at start.
            self.raw.mut_store().log.write(LogWrite { hard_state: Some(hard_state), ..LogWrite::default() })?;
        }
        send(outbox, light.take_messages());
        self.apply_committed(light.take_committed_entries(), &mut outcome)?;
        self.raw.advance_apply_to(self.applied);
        Ok(outcome)
    }

    /// Installs a snapshot whose state the transport already staged in the state machine
    /// (see [`crate::StateMachine::receive_snapshot`]): the log is reset to it together
    /// with the hard state and the membership (one synced write), then the staged state
    /// replaces the live one in one transaction. A crash in between is finished at the next
    /// start (`finish_staged_snapshot`).
    fn install_snapshot(&mut self, snapshot: Snapshot, hard_state: Option<HardState>) -> Result<(), ReplicaError> {
        let metadata = snapshot.get_metadata();
        let (index, term) = (metadata.index, metadata.term);
        let peers = codec::decode_snapshot(&snapshot.data)?;
        let membership = Membership { index, conf_state: metadata.get_conf_state().clone(), peers };
        let log = &mut self.raw.mut_store().log;
        let mut hard_state = hard_state.unwrap_or_else(|| log.hard_state());
        hard_state.commit = hard_state.commit.max(index);
        log.write(LogWrite {
            reset_to: Some(Truncated { index, term }),
            hard_state: Some(hard_state),
            membership: Some(membership.clone()),
            sync: true,
            ..LogWrite::default()
        })?;
        self.state.restore(index)?;
        check_applied(self.state.as_ref(), index)?;
        tracing::info!(index, term, "installed a snapshot from the leader");
        self.applied = index;
        self.membership = membership;
        Ok(())
    }

    fn apply_committed(&mut self, entries: Vec<RaftEntry>, outcome: &mut ReadyOutcome) -> Result<(), ReplicaError> {
        let entries: Vec<RaftEntry> = entries.into_iter().filter(|entry| entry.index > self.applied).collect();
        for chunk in entries.chunks(self.config.apply_batch_entries_max.max(1)) {
            self.apply_chunk(chunk, outcome)?;
        }
        Ok(())
    }

    fn apply_chunk(&mut self, chunk: &[RaftEntry], outcome: &mut ReadyOutcome) -> Result<(), ReplicaError> {
        assert_eq!(chunk[0].index, self.applied + 1, "committed entries must follow the applied index");
        let mut commands = Vec::with_capacity(chunk.len());
        let mut membership_changed = false;
        for entry in chunk {
            let data = match entry.get_entry_type() {
                EntryType::EntryNormal => entry.data.clone(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    membership_changed |= self.apply_membership_change(entry)?;
                    Bytes::new()
                }
            };
            commands.push(Entry { index: entry.index, term: entry.term, data });
        }
        if membership_changed {
            // Durable before the state machine moves past the change: after a crash the
            // change is not applied to raft-rs twice (see `apply_membership_change`).
            let membership = Some(self.membership.clone());
            self.raw.mut_store().log.write(LogWrite { membership, sync: true, ..LogWrite::default() })?;
            outcome.membership_changed = true;
        }
        let responses = self.state.apply_logged(&commands)?;
        assert_eq!(responses.len(), commands.len(), "the state machine must answer every entry");
        self.applied = chunk[chunk.len() - 1].index;
        for (entry, response) in chunk.iter().zip(responses) {
            if !entry.context.is_empty() {
                outcome.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    context: entry.context.clone(),
                    response,
                });
            }
        }
        Ok(())
    }

    /// Applies a committed membership change to raft-rs and to the address book. Returns
    /// false for a change already reflected in the recorded membership (re-delivered after a
    /// restart).
    fn apply_membership_change(&mut self, entry: &RaftEntry) -> Result<bool, ReplicaError> {
        if entry.index <= self.membership.index {
            return Ok(false);
        }
        let change = decode_conf_change(entry)?;
        let conf_state = self.raw.apply_conf_change(&change)?;
        for single in change.get_changes() {
            match single.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    if !change.context.is_empty() {
                        let peer = codec::decode_peer(&change.context)?;
                        if peer.id == single.node_id {
                            self.membership.peers.insert(peer.id, peer);
                        }
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.membership.peers.remove(&single.node_id);
                }
            }
        }
        tracing::info!(index = entry.index, ?conf_state, "membership changed");
        self.membership.index = entry.index;
        self.membership.conf_state = conf_state;
        Ok(true)
    }

    /// Makes the snapshot raft-rs asked for, from the live state machine, and caches it.
    pub fn prepare_requested_snapshot(&mut self) -> Result<(), ReplicaError> {
        if self.raw.store().take_snapshot_request().is_none() {
            return Ok(());
        }
        if self.membership.index > self.applied {
            // Just restarted: the recorded membership is ahead of the state; the entries in
            // between are being re-applied. raft-rs will ask again.
            return Ok(());
        }
        let source = self.state.snapshot()?;
        let index = source.index();
        if index != self.applied {
            return Err(ReplicaError::Inconsistent(format!(
                "the state machine snapshot is at {index} but {} was applied",
                self.applied
            )));
        }
        let term = self.raw.store().term(index)?;
        let mut snapshot = Snapshot { data: codec::encode_snapshot(&self.membership.peers), ..Snapshot::default() };
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(self.membership.conf_state.clone());
        tracing::info!(index, term, "made a snapshot view for a lagging member");
        self.sources.set(source);
        self.raw.mut_store().cache_snapshot(snapshot);
        Ok(())
    }

    /// Releases the snapshot's state view once no transfer used it for a while; raft-rs
    /// asks for a new snapshot when it needs one again.
    pub fn release_idle_snapshot(&mut self) {
        if self.sources.release_if_idle(SNAPSHOT_VIEW_IDLE_RELEASE) {
            self.raw.mut_store().forget_snapshot();
            tracing::debug!("released an idle snapshot view");
        }
    }

    /// Lets the state machine make its applies durable when its bound says so.
    pub fn persist_state_if_due(&mut self) -> Result<(), ReplicaError> {
        Ok(self.state.persist_if_due()?)
    }

    /// Removes applied entries from the head of the log once `compaction_interval_entries`
    /// have accumulated past what must be retained. Members that lag behind the new head
    /// catch up through a snapshot.
    pub fn maybe_compact(&mut self) -> Result<(), ReplicaError> {
        let truncated = self.raw.store().log.truncated().index;
        // Never past what the state machine holds durably: after a crash it replays the
        // entries after its durable index from this log.
        let durable = self.state.durable_index()?.min(self.applied);
        let target = durable.saturating_sub(self.config.log_retained_entries);
        if self.config.compaction_interval_entries == 0
            || target < truncated + self.config.compaction_interval_entries
            || self.membership.index > self.applied
        {
            return Ok(());
        }
        let term = self.raw.store().term(target)?;
        let compact_to = Some(Truncated { index: target, term });
        self.raw.mut_store().log.write(LogWrite { compact_to, ..LogWrite::default() })?;
        tracing::info!(compacted_to = target, "raft log compacted");
        Ok(())
    }

    pub fn status(&self) -> ReplicaStatus {
        let raft = &self.raw.raft;
        let matched = if self.is_leader() {
            raft.prs().iter().map(|(id, progress)| (*id, progress.matched)).collect()
        } else {
            Vec::new()
        };
        ReplicaStatus {
            role: raft.state,
            term: raft.term,
            leader_id: raft.leader_id,
            commit_index: raft.raft_log.committed,
            applied_index: self.applied,
            first_index: raft.raft_log.first_index(),
            last_index: raft.raft_log.last_index(),
            conf_state: self.membership.conf_state.clone(),
            matched,
        }
    }
}

fn send(outbox: &mut impl Outbox, messages: Vec<Message>) {
    if !messages.is_empty() {
        outbox.send(messages);
    }
}

fn decode_conf_change(entry: &RaftEntry) -> Result<ConfChangeV2, ReplicaError> {
    let malformed = |error: protobuf::ProtobufError| {
        ReplicaError::Codec(codec::CodecError::Malformed { what: "membership change", reason: error.to_string() })
    };
    match entry.get_entry_type() {
        EntryType::EntryConfChange => {
            // This driver proposes only V2 changes; a V1 change is its one-change V2 form.
            let legacy = ConfChange::parse_from_bytes(&entry.data).map_err(malformed)?;
            let single = ConfChangeSingle { change_type: legacy.change_type, node_id: legacy.node_id, ..Default::default() };
            Ok(ConfChangeV2 { changes: vec![single].into(), context: legacy.context, ..ConfChangeV2::default() })
        }
        _ => ConfChangeV2::parse_from_bytes(&entry.data).map_err(malformed),
    }
}

fn check_applied<S: StateMachine>(state: &S, expected: u64) -> Result<(), ReplicaError> {
    let applied = state.applied_index()?;
    if applied != expected {
        return Err(ReplicaError::Inconsistent(format!(
            "the state machine reports {applied} applied after restoring a snapshot at {expected}"
        )));
    }
    Ok(())
}

fn is_pristine<L: LogStore>(log: &L) -> bool {
    log.hard_state() == HardState::default() && log.last_index() == 0 && log.membership() == Membership::default()
}

/// The founding members' log: one membership change per member, identical on every
/// founding member (same order, term 1), committed by construction. A member restarted
/// with a wiped directory writes the same entries again. This is etcd's bootstrap.
fn write_bootstrap_entries<L: LogStore>(log: &mut L, members: &[PeerAddress]) -> Result<(), ReplicaError> {
    let mut members = members.to_vec();
    members.sort_by_key(|member| member.id);
    let entries: Vec<RaftEntry> = members
        .iter()
        .enumerate()
        .map(|(position, member)| {
            let change = ConfChangeV2 {
                changes: vec![ConfChangeSingle { change_type: ConfChangeType::AddNode, node_id: member.id, ..Default::default() }]
                    .into(),
                context: codec::encode_peer(member).into(),
                ..ConfChangeV2::default()
            };
            RaftEntry {
                entry_type: EntryType::EntryConfChangeV2,
                term: 1,
                index: position as u64 + 1,
                data: change.write_to_bytes().expect("a conf change always serialises").into(),
                ..RaftEntry::default()
            }
        })
        .collect();
    let hard_state = HardState { term: 1, vote: 0, commit: entries.len() as u64, ..HardState::default() };
    log.write(LogWrite { entries, hard_state: Some(hard_state), sync: true, ..LogWrite::default() })?;
    Ok(())
}

/// Restores the state machine from a snapshot that was recorded in the log but not yet
/// swapped in when the node stopped: its state is still staged in the state machine.
/// Returns the applied index.
fn finish_staged_snapshot<L: LogStore, S: StateMachine>(log: &mut L, state: &S) -> Result<u64, ReplicaError> {
    let truncated = log.truncated().index;
    let applied = state.applied_index()?;
    // A whole snapshot staged in the log directory by an older release (envelope version
    // 1) is no longer read: drop it.
    log.clear_staged_snapshot()?;
    if applied >= truncated {
        return Ok(applied);
    }
    state.restore(truncated).map_err(|error| {
        ReplicaError::Inconsistent(format!(
            "the state machine applied {applied} but the raft log starts after {truncated}, and the snapshot \
             staged at {truncated} cannot be installed ({error}); wipe this node's data directory and add it again"
        ))
    })?;
    check_applied(state, truncated)?;
    tracing::info!(index = truncated, "finished installing a snapshot interrupted by a stop");
    Ok(truncated)
}
