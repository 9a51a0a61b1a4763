//! Deterministic simulation of a cluster: real [`Replica`]s (raft-rs + the Ready cycle this
//! crate runs in production) over the in-memory log, an in-memory state machine and an
//! in-memory network that drops, reorders and partitions messages, every choice drawn from
//! one seeded RNG.
//!
//! Each test prints its seed first (cargo shows it when the test fails); set
//! `KYSO_SIM_SEED=<seed>` to replay one seed. raft-rs draws its election timeouts from its
//! own thread RNG: the harness overrides them from the seeded RNG whenever a replica's term
//! or role changes, so a seed replays the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message, MessageType};
use raft::{SnapshotStatus, StateRole};

use super::codec;
use super::log_store::{MemLog, MemLogImage};
use super::replica::{Outbox, Replica, ReplicaConfig};
use super::PeerAddress;
use crate::{Entry, StateMachine, StateMachineError};

// ---- the state machine: every applied entry, in order ------------------------------------

#[derive(Default)]
struct Applied {
    /// `entries[i]` is the data of log index i + 1 (empty for no-ops).
    entries: Vec<Bytes>,
    restores: usize,
}

/// Records every entry; answers each with its index. Snapshots carry the whole history,
/// so histories can be compared across nodes even after a snapshot install.
#[derive(Default)]
pub(crate) struct History(Mutex<Applied>, crate::memory_snapshot::Staging);

impl History {
    fn entries(&self) -> Vec<Bytes> {
        self.0.lock().unwrap().entries.clone()
    }

    fn commands(&self) -> Vec<Bytes> {
        self.entries().into_iter().filter(|data| !data.is_empty()).collect()
    }

    fn restores(&self) -> usize {
        self.0.lock().unwrap().restores
    }
}

impl StateMachine for History {
    fn apply(&self, entries: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        let mut applied = self.0.lock().unwrap();
        let mut responses = Vec::new();
        for entry in entries {
            assert_eq!(entry.index, applied.entries.len() as u64 + 1, "entries must arrive in order, once");
            applied.entries.push(entry.data.clone());
            responses.push(Bytes::from(entry.index.to_string()));
        }
        Ok(responses)
    }

    fn applied_index(&self) -> Result<u64, StateMachineError> {
        Ok(self.0.lock().unwrap().entries.len() as u64)
    }

    fn snapshot(&self) -> Result<Arc<dyn crate::SnapshotSource>, StateMachineError> {
        let applied = self.0.lock().unwrap();
        let mut bytes = Vec::new();
        for data in &applied.entries {
            bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
            bytes.extend_from_slice(data);
        }
        Ok(Arc::new(crate::memory_snapshot::BytesSource { index: applied.entries.len() as u64, bytes: Bytes::from(bytes) }))
    }

    fn receive_snapshot(&self, index: u64) -> Result<Box<dyn crate::SnapshotSink>, StateMachineError> {
        Ok(self.1.sink(index))
    }

    fn restore(&self, index: u64) -> Result<(), StateMachineError> {
        let Some(data) = self.1.take(index) else {
            assert_eq!(self.applied_index()?, index, "restore without a staged snapshot repeats an install");
            return Ok(());
        };
        let mut entries = Vec::new();
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let (length, tail) = rest.split_at(4);
            let length = u32::from_be_bytes(length.try_into().unwrap()) as usize;
            entries.push(Bytes::copy_from_slice(&tail[..length]));
            rest = &tail[length..];
        }
        assert_eq!(entries.len() as u64, index, "snapshot history length must match its index");
        let mut applied = self.0.lock().unwrap();
        applied.entries = entries;
        applied.restores += 1;
        Ok(())
    }
}

// ---- the network -------------------------------------------------------------------------

struct Collect(Vec<Message>);

impl Outbox for Collect {
    fn send(&mut self, messages: Vec<Message>) {
        self.0.extend(messages);
    }
}

struct Node {
    replica: Option<Replica<History, MemLog>>,
    state: Arc<History>,
    /// The log of a crashed node, kept for its restart.
    stored_log: Option<MemLog>,
    /// (term, role) when the election timeout was last drawn.
    seen: (u64, StateRole),
}

pub(crate) struct Cluster {
    rng: fastrand::Rng,
    nodes: BTreeMap<u64, Node>,
    in_flight: Vec<Message>,
    /// Pairs of nodes that cannot talk (both directions).
    cut: BTreeSet<(u64, u64)>,
    drop_percent: u8,
    config: ReplicaConfig,
    founders: Vec<PeerAddress>,
    next_tag: u64,
    /// tag -> (proposer, command), for every proposal a leader appended.
    proposed: BTreeMap<u64, (u64, Bytes)>,
    /// Commands whose proposer applied them with its tag: acknowledged to a client.
    acknowledged: Vec<(u64, Bytes)>,
    steps: u64,
}

fn address(id: u64) -> PeerAddress {
    PeerAddress { id, raft_addr: format!("sim-{id}:1"), client_addr: format!("sim-{id}:2") }
}

pub(crate) fn seed() -> u64 {
    let seed = match std::env::var("KYSO_SIM_SEED") {
        Ok(value) => value.parse().expect("KYSO_SIM_SEED must be an unsigned integer"),
        Err(_) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            u64::from(nanos)
        }
    };
    eprintln!("simulation seed = {seed} (replay with KYSO_SIM_SEED={seed})");
    seed
}

impl Cluster {
    pub fn new(seed: u64, size: u64) -> Cluster {
        Cluster::with_compaction(seed, size, 0, 0)
    }

    pub fn with_compaction(seed: u64, size: u64, interval_entries: u64, retained_entries: u64) -> Cluster {
        let config = ReplicaConfig {
            id: 0,
            election_ticks: 10,
            heartbeat_ticks: 2,
            message_size_bytes_max: 1024 * 1024,
            inflight_messages_max: 256,
            apply_batch_entries_max: 16,
            compaction_interval_entries: interval_entries,
            log_retained_entries: retained_entries,
        };
        let founders: Vec<PeerAddress> = (1..=size).map(address).collect();
        let mut cluster = Cluster {
            rng: fastrand::Rng::with_seed(seed),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            drop_percent: 0,
            config,
            founders: founders.clone(),
            next_tag: 1,
            proposed: BTreeMap::new(),
            acknowledged: Vec::new(),
            steps: 0,
        };
        for id in 1..=size {
            cluster.start(id, Arc::new(History::default()), MemLog::default(), &founders);
        }
        cluster
    }

    fn start(&mut self, id: u64, state: Arc<History>, log: MemLog, bootstrap: &[PeerAddress]) {
        let config = ReplicaConfig { id, ..self.config.clone() };
        let replica = Replica::open(config, state.clone(), log, bootstrap).expect("replica opens");
        let seen = (replica.term(), replica.raw.raft.state);
        let mut node = Node { replica: Some(replica), state, stored_log: None, seen };
        self.draw_election_timeout(&mut node);
        self.nodes.insert(id, node);
    }

    fn draw_election_timeout(&mut self, node: &mut Node) {
        let Some(replica) = node.replica.as_mut() else { return };
        let (low, high) = (self.config.election_ticks, self.config.election_ticks * 2);
        replica.raw.raft.set_randomized_election_timeout(self.rng.usize(low..high));
        node.seen = (replica.term(), replica.raw.raft.state);
    }

    /// A new, empty node that waits to be added by the leader.
    pub fn add_empty_node(&mut self, id: u64) {
        self.start(id, Arc::new(History::default()), MemLog::default(), &[]);
    }

    pub fn set_drop_percent(&mut self, percent: u8) {
        self.drop_percent = percent;
    }

    /// Cuts every link between `group` and the other nodes.
    pub fn isolate(&mut self, group: &[u64]) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for a in group {
            for b in &ids {
                if !group.contains(b) {
                    self.cut.insert((*a, *b));
                    self.cut.insert((*b, *a));
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Stops a node at an arbitrary point between two Ready cycles, as a power loss would:
    /// everything synced survives, unsynced log writes and everything in memory are lost.
    pub fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut replica) = node.replica.take() {
            let mut log = std::mem::take(&mut replica.raw.mut_store().log);
            log.lose_unsynced();
            node.stored_log = Some(log);
        }
    }

    /// The log image a power loss on node `id` would leave now.
    pub fn synced_log(&self, id: u64) -> MemLogImage {
        self.replica(id).raw.store().log.synced_image().clone()
    }

    /// The log image node `id` reads after its restart.
    pub fn log_image(&self, id: u64) -> MemLogImage {
        self.replica(id).raw.store().log.image().clone()
    }

    pub fn restart(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        let log = node.stored_log.take().expect("restart a crashed node");
        let state = node.state.clone();
        let founders = self.founders.clone();
        self.start(id, state, log, &founders);
    }

    pub fn replica(&self, id: u64) -> &Replica<History, MemLog> {
        self.nodes[&id].replica.as_ref().expect("live node")
    }

    fn replica_mut(&mut self, id: u64) -> &mut Replica<History, MemLog> {
        self.nodes.get_mut(&id).and_then(|node| node.replica.as_mut()).expect("live node")
    }

    pub fn is_live(&self, id: u64) -> bool {
        self.nodes[&id].replica.is_some()
    }

    fn live_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, node)| node.replica.is_some()).map(|(id, _)| *id).collect()
    }

    /// The live leader of the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.live_ids()
            .into_iter()
            .filter(|id| self.replica(*id).is_leader())
            .max_by_key(|id| self.replica(*id).term())
    }

    pub fn leader_among(&self, group: &[u64]) -> Option<u64> {
        group.iter().copied().filter(|id| self.is_live(*id) && self.replica(*id).is_leader()).max_by_key(|id| self.replica(*id).term())
    }

    /// Proposes `command` on node `id`; returns false if it does not lead or dropped it.
    pub fn propose(&mut self, id: u64, command: &str) -> bool {
        let tag = self.next_tag;
        self.next_tag += 1;
        let command = Bytes::from(command.to_string());
        match self.replica_mut(id).propose(tag.to_be_bytes().to_vec(), command.to_vec()) {
            Some(_) => {
                self.proposed.insert(tag, (id, command));
                true
            }
            None => false,
        }
    }

    pub fn propose_membership(&mut self, id: u64, change: ConfChangeV2) -> bool {
        self.replica_mut(id).propose_membership(Vec::new(), change).is_some()
    }

    pub fn history(&self, id: u64) -> Vec<Bytes> {
        self.nodes[&id].state.entries()
    }

    pub fn commands(&self, id: u64) -> Vec<Bytes> {
        self.nodes[&id].state.commands()
    }

    pub fn restores(&self, id: u64) -> usize {
        self.nodes[&id].state.restores()
    }

    /// One step: deliver what is in flight (shuffled, some dropped, cut links dropped),
    /// tick every third step, and run every live replica's Ready cycle.
    pub fn step(&mut self) {
        self.steps += 1;
        let mut messages = std::mem::take(&mut self.in_flight);
        self.rng.shuffle(&mut messages);
        for message in messages {
            self.deliver(message);
        }
        let tick = self.steps.is_multiple_of(3);
        for id in self.live_ids() {
            self.run_node(id, tick);
        }
        self.check_agreement();
    }

    fn deliver(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let lost = self.cut.contains(&(from, to))
            || self.nodes.get(&to).is_none_or(|node| node.replica.is_none())
            || (self.drop_percent > 0 && self.rng.u8(0..100) < self.drop_percent);
        if lost {
            if is_snapshot && self.is_live(from) {
                self.replica_mut(from).raw.report_snapshot(to, SnapshotStatus::Failure);
            }
            return;
        }
        if is_snapshot && !self.stream_snapshot(&message) {
            if self.is_live(from) {
                self.replica_mut(from).raw.report_snapshot(to, SnapshotStatus::Failure);
            }
            return;
        }
        self.replica_mut(to).step(message);
        if is_snapshot && self.is_live(from) {
            self.replica_mut(from).raw.report_snapshot(to, SnapshotStatus::Finish);
        }
    }

    /// What the transport does: streams the sender's snapshot view into the receiver's
    /// staging area in small pieces. False when the sender no longer holds that view.
    fn stream_snapshot(&mut self, message: &Message) -> bool {
        let index = message.get_snapshot().get_metadata().index;
        if !self.is_live(message.from) {
            return false;
        }
        let Some(source) = self.replica_mut(message.from).snapshot_sources().get(index) else {
            return false;
        };
        let mut sink = self.nodes[&message.to].state.receive_snapshot(index).expect("staging succeeds in memory");
        source.read(16, &mut |piece| sink.write(&piece)).expect("streaming succeeds in memory");
        sink.finish().expect("staging succeeds in memory");
        true
    }

    fn run_node(&mut self, id: u64, tick: bool) {
        let mut node = self.nodes.remove(&id).expect("known node");
        let replica = node.replica.as_mut().expect("live node");
        if tick {
            replica.raw.tick();
        }
        replica.maybe_leave_joint();
        let mut outbox = Collect(Vec::new());
        while replica.raw.has_ready() {
            let outcome = replica.handle_ready(&mut outbox).expect("ready cycle succeeds in memory");
            for applied in outcome.applied {
                let tag = u64::from_be_bytes(applied.context.as_ref().try_into().unwrap_or([0; 8]));
                match self.proposed.get(&tag) {
                    Some((proposer, command)) if *proposer == id => self.acknowledged.push((applied.index, command.clone())),
                    _ => {}
                }
            }
        }
        replica.prepare_requested_snapshot().expect("snapshot succeeds in memory");
        replica.maybe_compact().expect("compaction succeeds in memory");
        let changed = (replica.term(), replica.raw.raft.state) != node.seen;
        if changed {
            self.draw_election_timeout(&mut node);
        }
        self.in_flight.extend(outbox.0);
        self.nodes.insert(id, node);
    }

    /// Runs until `condition` holds; false after `steps_max` steps.
    pub fn run_until(&mut self, steps_max: u64, condition: impl Fn(&Cluster) -> bool) -> bool {
        for _ in 0..steps_max {
            if condition(self) {
                return true;
            }
            self.step();
        }
        condition(self)
    }

    /// Safety: no two nodes ever applied different entries at the same index.
    fn check_agreement(&self) {
        let histories: Vec<(u64, Vec<Bytes>)> = self.nodes.iter().map(|(id, node)| (*id, node.state.entries())).collect();
        for (a, history_a) in &histories {
            for (b, history_b) in &histories {
                let common = history_a.len().min(history_b.len());
                if let Some(index) = (0..common).find(|index| history_a[*index] != history_b[*index]) {
                    panic!("nodes {a} and {b} applied different entries at index {}", index + 1);
                }
            }
        }
    }

    /// Every acknowledged command is in every given node's history, at its index.
    pub fn check_acknowledged_on(&self, ids: &[u64]) {
        for id in ids {
            let history = self.history(*id);
            for (index, command) in &self.acknowledged {
                assert_eq!(history.get(*index as usize - 1), Some(command), "node {id} lost acknowledged entry {index}");
            }
        }
    }

    pub fn all_applied_equal(&self, ids: &[u64]) -> bool {
        let first = self.history(ids[0]);
        let leader_commit = self.leader().map(|leader| self.replica(leader).status().commit_index).unwrap_or(0);
        first.len() as u64 >= leader_commit && ids.iter().all(|id| self.history(*id) == first)
    }
}

fn single(change_type: ConfChangeType, node_id: u64) -> ConfChangeSingle {
    ConfChangeSingle { change_type, node_id, ..Default::default() }
}

fn change(changes: Vec<ConfChangeSingle>, transition: ConfChangeTransition, context: Vec<u8>) -> ConfChangeV2 {
    ConfChangeV2 { changes: changes.into(), transition, context: context.into(), ..Default::default() }
}

const STEPS_MAX: u64 = 3_000;

fn elect(cluster: &mut Cluster) -> u64 {
    assert!(cluster.run_until(STEPS_MAX, |cluster| cluster.leader().is_some()), "no leader elected");
    cluster.leader().unwrap()
}

fn seeds() -> Vec<u64> {
    let first = seed();
    if std::env::var("KYSO_SIM_SEED").is_ok() {
        vec![first]
    } else {
        (0..4).map(|offset| first.wrapping_add(offset * 7919)).collect()
    }
}

#[test]
fn a_leader_is_elected_and_replicates_to_every_member() {
    for seed in seeds() {
        let mut cluster = Cluster::new(seed, 3);
        cluster.set_drop_percent(5);
        let leader = elect(&mut cluster);
        // Exactly one leader per term.
        let leaders: Vec<u64> = [1, 2, 3].into_iter().filter(|id| cluster.replica(*id).is_leader()).collect();
        assert_eq!(leaders.len(), 1, "seed {seed}: leaders {leaders:?}");
        for i in 0..20 {
            let leader = cluster.leader().unwrap_or(leader);
            cluster.propose(leader, &format!("command {i}"));
            cluster.step();
        }
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3])),
            "seed {seed}: members did not converge"
        );
        assert!(!cluster.commands(1).is_empty(), "seed {seed}: nothing was committed");
        cluster.check_acknowledged_on(&[1, 2, 3]);
    }
}

#[test]
fn a_minority_cannot_commit_while_the_majority_can_and_healing_converges() {
    for seed in seeds() {
        let mut cluster = Cluster::new(seed, 5);
        let old_leader = elect(&mut cluster);
        let follower = [1, 2, 3, 4, 5].into_iter().find(|id| *id != old_leader).unwrap();
        let minority = [old_leader, follower];
        let majority: Vec<u64> = [1, 2, 3, 4, 5].into_iter().filter(|id| !minority.contains(id)).collect();
        cluster.isolate(&minority);
        assert!(cluster.propose(old_leader, "minority write"), "seed {seed}: the old leader still accepts proposals");
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.leader_among(&majority).is_some()),
            "seed {seed}: the majority did not elect a leader"
        );
        let new_leader = cluster.leader_among(&majority).unwrap();
        assert!(cluster.propose(new_leader, "majority write"));
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| majority
                .iter()
                .all(|id| cluster.commands(*id).contains(&Bytes::from("majority write")))),
            "seed {seed}: the majority did not commit"
        );
        for id in minority {
            assert!(
                !cluster.commands(id).contains(&Bytes::from("minority write")),
                "seed {seed}: node {id} applied a write only a minority had"
            );
        }
        cluster.heal();
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3, 4, 5])
                && cluster.commands(old_leader).contains(&Bytes::from("majority write"))),
            "seed {seed}: healing did not converge"
        );
        for id in 1..=5 {
            assert!(!cluster.commands(id).contains(&Bytes::from("minority write")), "seed {seed}");
        }
        cluster.check_acknowledged_on(&[1, 2, 3, 4, 5]);
    }
}

#[test]
fn restarted_members_keep_their_state_and_rejoin() {
    for seed in seeds() {
        let mut cluster = Cluster::new(seed, 3);
        let leader = elect(&mut cluster);
        for i in 0..10 {
            cluster.propose(leader, &format!("before restart {i}"));
        }
        assert!(cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3])
            && cluster.commands(1).len() == 10));
        let before = cluster.history(1);
        // What a crash touches: the Raft log and hard state (unsynced writes are lost) and
        // every in-memory value (term, vote, applied index). Each must come back as synced.
        let synced: Vec<MemLogImage> = (1..=3).map(|id| cluster.synced_log(id).without_commit()).collect();
        let terms: Vec<u64> = (1..=3).map(|id| cluster.replica(id).term()).collect();
        let applied: Vec<u64> = (1..=3).map(|id| cluster.replica(id).applied_index()).collect();
        for id in 1..=3 {
            cluster.crash(id);
        }
        for id in 1..=3 {
            cluster.restart(id);
            let at = (id - 1) as usize;
            assert_eq!(cluster.log_image(id).without_commit(), synced[at], "seed {seed}: node {id} did not read back its synced log");
            assert_eq!(cluster.replica(id).term(), terms[at], "seed {seed}: node {id} forgot its term");
            assert_eq!(cluster.replica(id).applied_index(), applied[at], "seed {seed}: node {id} forgot what it applied");
            assert!(cluster.log_image(id).last_index() >= applied[at], "seed {seed}: node {id} lost applied entries");
            assert_eq!(cluster.history(id), before, "seed {seed}: node {id} changed across a restart");
        }
        let leader = elect(&mut cluster);
        cluster.propose(leader, "after restart");
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3])
                && cluster.commands(1).len() == 11),
            "seed {seed}: the restarted cluster did not commit"
        );
        assert_eq!(&cluster.history(1)[..before.len()], &before[..]);
    }
}

#[test]
fn a_lagging_member_catches_up_through_a_snapshot_after_compaction() {
    for seed in seeds() {
        let mut cluster = Cluster::with_compaction(seed, 3, 10, 0);
        let leader = elect(&mut cluster);
        let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
        cluster.crash(lagging);
        for i in 0..60 {
            let leader = cluster.leader().expect("two of three members keep a leader");
            cluster.propose(leader, &format!("while down {i}"));
            cluster.step();
        }
        let live: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != lagging).collect();
        assert!(cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&live)));
        let leader = cluster.leader().unwrap();
        assert!(cluster.replica(leader).status().first_index > 2, "seed {seed}: the leader's log was not compacted");
        cluster.restart(lagging);
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3])),
            "seed {seed}: the lagging member did not catch up"
        );
        assert!(cluster.restores(lagging) >= 1, "seed {seed}: caught up without a snapshot");
        assert_eq!(cluster.replica(lagging).membership().peers.len(), 3, "seed {seed}: addresses travel with snapshots");
        // And it keeps following from the log afterwards.
        let leader = cluster.leader().unwrap();
        cluster.propose(leader, "after catch-up");
        assert!(cluster.run_until(STEPS_MAX, |cluster| cluster.commands(lagging).contains(&Bytes::from("after catch-up"))));
    }
}

#[test]
fn members_are_added_as_learners_promoted_and_removed() {
    for seed in seeds() {
        let mut cluster = Cluster::with_compaction(seed, 3, 5, 0);
        let leader = elect(&mut cluster);
        for i in 0..20 {
            cluster.propose(leader, &format!("early {i}"));
            cluster.step();
        }
        // Add node 4 as a learner; it catches up (by snapshot: the log was compacted).
        cluster.add_empty_node(4);
        let leader = cluster.leader().unwrap();
        let add = change(vec![single(ConfChangeType::AddLearnerNode, 4)], ConfChangeTransition::Auto, codec::encode_peer(&address(4)));
        assert!(cluster.propose_membership(leader, add));
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| cluster.all_applied_equal(&[1, 2, 3, 4])
                && cluster.replica(4).membership().conf_state.learners.contains(&4)),
            "seed {seed}: the learner did not catch up"
        );
        // Promote through a joint configuration, left explicitly by the leader.
        let leader = cluster.leader().unwrap();
        let promote = change(vec![single(ConfChangeType::AddNode, 4)], ConfChangeTransition::Explicit, Vec::new());
        assert!(cluster.propose_membership(leader, promote));
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| (1..=4).all(|id| {
                let conf = &cluster.replica(id).membership().conf_state;
                conf.voters.contains(&4) && conf.voters_outgoing.is_empty()
            })),
            "seed {seed}: promotion did not complete"
        );
        // Remove node 3 (not the leader if possible): demote, then remove.
        let leader = cluster.leader().unwrap();
        let removed = [3, 2].into_iter().find(|id| *id != leader).unwrap();
        let demote = change(vec![single(ConfChangeType::AddLearnerNode, removed)], ConfChangeTransition::Explicit, Vec::new());
        assert!(cluster.propose_membership(leader, demote));
        assert!(cluster.run_until(STEPS_MAX, |cluster| {
            let conf = &cluster.replica(leader).membership().conf_state;
            !conf.voters.contains(&removed) && conf.voters_outgoing.is_empty() && !cluster.replica(leader).raw.raft.has_pending_conf()
        }));
        assert!(cluster.propose_membership(leader, change(vec![single(ConfChangeType::RemoveNode, removed)], ConfChangeTransition::Auto, Vec::new())));
        let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != removed).collect();
        assert!(
            cluster.run_until(STEPS_MAX, |cluster| remaining.iter().all(|id| {
                let conf = &cluster.replica(*id).membership().conf_state;
                !conf.voters.contains(&removed) && !conf.learners.contains(&removed)
            })),
            "seed {seed}: removal did not complete"
        );
        assert!(!cluster.replica(leader).membership().peers.contains_key(&removed));
        cluster.crash(removed);
        // The three remaining voters still commit, and membership survives a restart.
        let leader = cluster.leader().unwrap();
        cluster.propose(leader, "after membership changes");
        assert!(cluster.run_until(STEPS_MAX, |cluster| remaining
            .iter()
            .all(|id| cluster.commands(*id).contains(&Bytes::from("after membership changes")))));
        cluster.crash(4);
        cluster.restart(4);
        let conf = cluster.replica(4).membership().conf_state.clone();
        assert!(conf.voters.contains(&4) && !conf.voters.contains(&removed), "seed {seed}: {conf:?}");
        assert_eq!(cluster.replica(4).membership().peers.get(&4), Some(&address(4)));
    }
}

#[test]
fn random_drops_partitions_and_crashes_never_break_agreement() {
    for seed in seeds() {
        let mut cluster = Cluster::with_compaction(seed, 5, 20, 5);
        let mut chaos = fastrand::Rng::with_seed(seed ^ 0x5eed);
        cluster.set_drop_percent(10);
        let mut written = 0;
        for round in 0..400 {
            match chaos.u8(0..100) {
                0..=2 => {
                    let size = chaos.usize(1..=2);
                    let group: Vec<u64> = (0..size).map(|_| chaos.u64(1..=5)).collect();
                    cluster.isolate(&group);
                }
                3..=5 => cluster.heal(),
                6 => {
                    let id = chaos.u64(1..=5);
                    let live = (1..=5).filter(|id| cluster.is_live(*id)).count();
                    if cluster.is_live(id) && live > 3 {
                        cluster.crash(id);
                    }
                }
                7..=9 => {
                    if let Some(id) = (1..=5).find(|id| !cluster.is_live(*id)) {
                        cluster.restart(id);
                    }
                }
                _ => {}
            }
            if let Some(leader) = cluster.leader() {
                if cluster.propose(leader, &format!("write {round}")) {
                    written += 1;
                }
            }
            cluster.step();
        }
        cluster.heal();
        cluster.set_drop_percent(0);
        for id in 1..=5 {
            if !cluster.is_live(id) {
                cluster.restart(id);
            }
        }
        assert!(
            cluster.run_until(STEPS_MAX * 2, |cluster| cluster.all_applied_equal(&[1, 2, 3, 4, 5])),
            "seed {seed}: the cluster did not converge after the faults stopped"
        );
        assert!(written > 0, "seed {seed}: no write was ever accepted");
        eprintln!("seed {seed}: {written} writes accepted, {} acknowledged, final term {}", cluster.acknowledged.len(), cluster.replica(1).term());
        cluster.check_acknowledged_on(&[1, 2, 3, 4, 5]);
    }
}
