//! The driver: runs one [`Replica`] on a dedicated thread, turning requests from
//! [`super::RaftNode`] handles and messages from peers into Ready cycles.
//!
//! One turn of the loop: wait for input or the next tick; take everything queued
//! (proposals up to one group-commit batch, so concurrent writers share one Ready, one
//! write and one fsync); tick when due; issue pending reads; run the Ready cycle; make a
//! requested snapshot view (cheap: the transport streams it), release an idle one, compact the log; report unreachable peers; answer the callers whose
//! entries were applied; publish the status.
//!
//! Proposals are tagged with a per-node id and matched on (index, term) when applied: if
//! the entry at that index was applied with another term or tag, or leadership changed
//! while it was in flight, the caller gets `ProposeError::Unknown`, never a guess.
//! A storage failure ends the loop: every caller in flight gets `Stopped`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{select, Receiver};
use raft::eraftpb::ConfChangeV2;
use raft::{ReadState, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use super::config::RaftConfig;
use super::log_store::EngineLog;
use super::node::{AdminError, NodeStatus, Role};
use super::replica::{ReadyOutcome, Replica, ReplicaStatus};
use super::transport::{Inbound, Outbound};
use crate::health::{self, QuorumContact};
use crate::{ProposeError, StateMachine};

/// Events from the transport's peer tasks and from the node handle.
pub(crate) enum Internal {
    Unreachable(u64),
    SnapshotStatus(u64, SnapshotStatus),
    Stop,
}

pub(crate) struct Proposal {
    pub command: Bytes,
    pub reply: oneshot::Sender<Result<Bytes, ProposeError>>,
}

pub(crate) enum Request {
    Read { reply: oneshot::Sender<Result<(), ProposeError>> },
    ChangeMembership { change: ConfChangeV2, reply: oneshot::Sender<Result<(), AdminError>> },
    TransferLeader { to: u64 },
}

pub(crate) struct Channels {
    pub proposals: Receiver<Proposal>,
    pub requests: Receiver<Request>,
    pub inbound: Receiver<Inbound>,
    pub internal: Receiver<Internal>,
}

enum Waiter {
    Command(oneshot::Sender<Result<Bytes, ProposeError>>),
    Membership(oneshot::Sender<Result<(), AdminError>>),
}

impl Waiter {
    fn succeed(self, response: Bytes) {
        match self {
            Waiter::Command(reply) => drop(reply.send(Ok(response))),
            Waiter::Membership(reply) => drop(reply.send(Ok(()))),
        }
    }

    fn unknown(self) {
        match self {
            Waiter::Command(reply) => drop(reply.send(Err(ProposeError::Unknown))),
            Waiter::Membership(reply) => drop(reply.send(Err(AdminError::Unknown))),
        }
    }

    fn not_leader(self, leader: Option<String>) {
        match self {
            Waiter::Command(reply) => drop(reply.send(Err(ProposeError::NotLeader { leader }))),
            Waiter::Membership(reply) => drop(reply.send(Err(AdminError::NotLeader { leader }))),
        }
    }

    fn stopped(self, reason: &str) {
        match self {
            Waiter::Command(reply) => drop(reply.send(Err(ProposeError::Stopped(reason.to_string())))),
            Waiter::Membership(reply) => drop(reply.send(Err(AdminError::Stopped(reason.to_string())))),
        }
    }
}

struct Pending {
    term: u64,
    tag: u64,
    waiter: Waiter,
}

struct ReadWaiter {
    reply: oneshot::Sender<Result<(), ProposeError>>,
    deadline: Instant,
}

/// Read barriers, shared as etcd shares them: at most one ReadIndex round is in flight; the
/// barriers that arrive meanwhile wait for it to end and then go together in the next.
/// A round names its request by (node id, counter) so that no two nodes' requests share a
/// context (raft-rs silently drops a ReadIndex whose context is already pending at the
/// leader). A round that got no answer is asked again at once when the leader or term
/// changed, else after a short backoff; any of its requests' answers confirms it, since
/// every barrier of the round began before the first was sent.
#[derive(Default)]
struct Reads {
    waiting: Vec<ReadWaiter>,
    in_flight: Option<ReadRound>,
    confirmed: Vec<(u64, Vec<ReadWaiter>)>,
    next_context: u64,
}

struct ReadRound {
    /// Counters of the requests sent for this round, the latest last (bounded).
    contexts: Vec<u64>,
    sent_at: Instant,
    /// (leader id, term) when the latest request was sent.
    sent_to: (u64, u64),
    retries: u32,
    waiters: Vec<ReadWaiter>,
}

/// Requests remembered per round: an answer to an older one is still good, but a round
/// that needed more retries than this has lost the earlier ones for good.
const READ_ROUND_CONTEXTS_MAX: usize = 8;

/// How long a round waits for an answer before it asks again: the configured interval,
/// doubled on each retry up to 8 times it.
fn read_backoff(config: &RaftConfig, retries: u32) -> Duration {
    config.read_retry_interval * 2u32.pow(retries.min(3))
}

/// The context of a ReadIndex request: this node's id, then its counter.
fn read_context(node_id: u64, counter: u64) -> Vec<u8> {
    let mut context = Vec::with_capacity(16);
    context.extend_from_slice(&node_id.to_be_bytes());
    context.extend_from_slice(&counter.to_be_bytes());
    context
}

pub(crate) struct Driver<S: StateMachine> {
    replica: Replica<S, EngineLog>,
    outbound: Outbound,
    channels: Channels,
    status: watch::Sender<NodeStatus>,
    config: Arc<RaftConfig>,
    pending: BTreeMap<u64, Pending>,
    next_tag: u64,
    reads: Reads,
    leader_term: Option<u64>,
    next_tick: Instant,
    /// When each peer's last message arrived.
    heard: BTreeMap<u64, Instant>,
    contact: Arc<QuorumContact>,
}

/// Why the loop ended.
type Stop = String;

impl<S: StateMachine> Driver<S> {
    pub fn new(
        replica: Replica<S, EngineLog>,
        mut outbound: Outbound,
        channels: Channels,
        status: watch::Sender<NodeStatus>,
        config: Arc<RaftConfig>,
        contact: Arc<QuorumContact>,
    ) -> Self {
        outbound.set_members(&replica.membership().peers);
        outbound.set_snapshot_sources(replica.snapshot_sources().clone());
        let mut driver = Driver {
            replica,
            outbound,
            channels,
            status,
            next_tick: Instant::now() + config.tick_interval,
            config,
            pending: BTreeMap::new(),
            next_tag: 1,
            reads: Reads::default(),
            leader_term: None,
            heard: BTreeMap::new(),
            contact,
        };
        driver.publish();
        driver
    }

    /// Runs until stopped or a storage failure; returns the reason and fails every caller
    /// still waiting.
    pub fn run(mut self) -> String {
        let reason = loop {
            if let Err(reason) = self.turn() {
                break reason;
            }
        };
        tracing::info!(node_id = self.replica.id(), %reason, "raft driver stopped");
        self.fail_everything(&reason);
        reason
    }

    fn turn(&mut self) -> Result<(), Stop> {
        self.take_inputs()?;
        let now = Instant::now();
        if now >= self.next_tick {
            self.replica.raw.tick();
            self.next_tick = now + self.config.tick_interval;
        }
        self.issue_reads(now);
        self.replica.maybe_leave_joint();
        // A Ready cycle can make another one ready (e.g. entries committed by `advance`).
        for _ in 0..4 {
            if !self.replica.raw.has_ready() {
                break;
            }
            let outcome = self.replica.handle_ready(&mut self.outbound).map_err(|error| error.to_string())?;
            self.on_outcome(outcome);
        }
        self.replica.prepare_requested_snapshot().map_err(|error| error.to_string())?;
        self.replica.release_idle_snapshot();
        self.replica.persist_state_if_due().map_err(|error| error.to_string())?;
        self.replica.maybe_compact().map_err(|error| error.to_string())?;
        for (peer, was_snapshot) in self.outbound.take_undeliverable() {
            self.replica.raw.report_unreachable(peer);
            if was_snapshot {
                self.replica.raw.report_snapshot(peer, SnapshotStatus::Failure);
            }
        }
        self.check_leadership();
        self.record_quorum_contact(Instant::now());
        self.answer_reads(Instant::now());
        self.publish();
        Ok(())
    }

    fn take_inputs(&mut self) -> Result<(), Stop> {
        let timeout = self.wake_at().saturating_duration_since(Instant::now());
        select! {
            recv(self.channels.internal) -> event => {
                // The driver holds a sender of its own (in the transport): never disconnected.
                if let Ok(event) = event { self.on_internal(event)?; }
            }
            recv(self.channels.inbound) -> inbound => {
                if let Ok(inbound) = inbound { self.on_inbound(inbound); }
            }
            recv(self.channels.requests) -> request => match request {
                Ok(request) => self.on_request(request),
                Err(_) => return Err("every node handle was dropped".into()),
            },
            recv(self.channels.proposals) -> proposal => match proposal {
                Ok(proposal) => self.on_proposals(proposal),
                Err(_) => return Err("every node handle was dropped".into()),
            },
            default(timeout) => {}
        }
        while let Ok(event) = self.channels.internal.try_recv() {
            self.on_internal(event)?;
        }
        for _ in 0..self.config.inbound_queue_depth_max {
            match self.channels.inbound.try_recv() {
                Ok(inbound) => self.on_inbound(inbound),
                Err(_) => break,
            }
        }
        for _ in 0..self.config.request_queue_depth_max {
            match self.channels.requests.try_recv() {
                Ok(request) => self.on_request(request),
                Err(_) => break,
            }
        }
        if let Ok(proposal) = self.channels.proposals.try_recv() {
            self.on_proposals(proposal);
        }
        Ok(())
    }

    fn on_internal(&mut self, event: Internal) -> Result<(), Stop> {
        match event {
            Internal::Unreachable(peer) => self.replica.raw.report_unreachable(peer),
            Internal::SnapshotStatus(peer, status) => self.replica.raw.report_snapshot(peer, status),
            Internal::Stop => return Err("shut down".into()),
        }
        Ok(())
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        self.heard.insert(inbound.message.from, Instant::now());
        self.outbound.learn(inbound.from);
        self.replica.step(inbound.message);
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Read { reply } => {
                let deadline = Instant::now() + self.config.read_timeout;
                self.reads.waiting.push(ReadWaiter { reply, deadline });
            }
            Request::ChangeMembership { change, reply } => {
                let waiter = Waiter::Membership(reply);
                if !self.replica.is_leader() {
                    return waiter.not_leader(self.leader_client_addr());
                }
                let tag = self.take_tag();
                let appended = self.replica.propose_membership(tag.to_be_bytes().to_vec(), change);
                self.track(appended, tag, waiter);
            }
            Request::TransferLeader { to } => self.replica.raw.transfer_leader(to),
        }
    }

    /// Proposes `first` and whatever else is queued, up to one group-commit batch.
    fn on_proposals(&mut self, first: Proposal) {
        let limits = &self.config.driver;
        let (batch_entries_max, batch_size_bytes_max) = (limits.batch_entries_max, limits.batch_size_bytes_max);
        let mut size_bytes = 0;
        let mut count = 0;
        let mut next = Some(first);
        while let Some(proposal) = next.take() {
            size_bytes += proposal.command.len();
            count += 1;
            self.propose(proposal);
            if count < batch_entries_max && size_bytes < batch_size_bytes_max {
                next = self.channels.proposals.try_recv().ok();
            }
        }
    }

    fn propose(&mut self, proposal: Proposal) {
        let waiter = Waiter::Command(proposal.reply);
        if !self.replica.is_leader() {
            return waiter.not_leader(self.leader_client_addr());
        }
        if self.replica.transferring_leadership() {
            // raft-rs would drop it unappended: say so, rather than "outcome unknown", so
            // that the caller may send it to the next leader (a graceful stop hands the
            // leadership on while calls keep coming).
            return waiter.not_leader(None);
        }
        let tag = self.take_tag();
        let appended = self.replica.propose(tag.to_be_bytes().to_vec(), proposal.command.to_vec());
        self.track(appended, tag, waiter);
    }

    fn take_tag(&mut self) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        tag
    }

    fn track(&mut self, appended: Option<(u64, u64)>, tag: u64, waiter: Waiter) {
        match appended {
            Some((index, term)) => {
                if let Some(replaced) = self.pending.insert(index, Pending { term, tag, waiter }) {
                    // The entry it waited for was overwritten by a later leader.
                    replaced.waiter.unknown();
                }
            }
            // Dropped by raft-rs (leadership transfer in progress, or leadership lost).
            None => waiter.unknown(),
        }
    }

    fn on_outcome(&mut self, outcome: ReadyOutcome) {
        for applied in outcome.applied {
            if let Some(pending) = self.pending.remove(&applied.index) {
                let same = pending.term == applied.term && applied.context.as_ref() == pending.tag.to_be_bytes();
                if same {
                    pending.waiter.succeed(applied.response);
                } else {
                    pending.waiter.unknown();
                }
            }
        }
        // An index applied without our tag (raft-rs replaced a refused membership change
        // by an empty entry, or another leader's entry won): the outcome is not ours.
        let still_pending = self.pending.split_off(&(self.replica.applied_index() + 1));
        for (_, pending) in std::mem::replace(&mut self.pending, still_pending) {
            pending.waiter.unknown();
        }
        for read_state in outcome.read_states {
            self.on_read_state(read_state);
        }
        if outcome.membership_changed {
            self.outbound.set_members(&self.replica.membership().peers);
        }
    }

    /// On any change of leadership, the outcome of every proposal in flight is unknown.
    fn check_leadership(&mut self) {
        let leader_term = self.replica.is_leader().then(|| self.replica.term());
        if leader_term != self.leader_term {
            if self.leader_term.is_some() {
                for (_, pending) in std::mem::take(&mut self.pending) {
                    pending.waiter.unknown();
                }
            }
            self.leader_term = leader_term;
        }
    }

    fn issue_reads(&mut self, now: Instant) {
        let leader = self.replica.leader_id();
        let sent_to = (leader, self.replica.term());
        if let Some(round) = &mut self.reads.in_flight {
            // Ask again at once when the leader or term changed (the request may have been
            // dropped with the old leader or before the new one committed in its term),
            // else after a short, growing backoff.
            let backoff = read_backoff(&self.config, round.retries);
            if leader == raft::INVALID_ID || (round.sent_to == sent_to && now < round.sent_at + backoff) {
                return;
            }
            self.reads.next_context += 1;
            let context = self.reads.next_context;
            round.contexts.push(context);
            if round.contexts.len() > READ_ROUND_CONTEXTS_MAX {
                round.contexts.remove(0);
            }
            round.sent_at = now;
            round.sent_to = sent_to;
            round.retries += 1;
            self.replica.raw.read_index(read_context(self.replica.id(), context));
            return;
        }
        if self.reads.waiting.is_empty() || leader == raft::INVALID_ID {
            return;
        }
        self.reads.next_context += 1;
        let context = self.reads.next_context;
        let waiters = std::mem::take(&mut self.reads.waiting);
        self.reads.in_flight = Some(ReadRound { contexts: vec![context], sent_at: now, sent_to, retries: 0, waiters });
        self.replica.raw.read_index(read_context(self.replica.id(), context));
    }

    fn on_read_state(&mut self, read_state: ReadState) {
        let context = read_state.request_ctx.as_slice();
        if context.len() != 16 || context[..8] != self.replica.id().to_be_bytes() {
            return;
        }
        let counter = u64::from_be_bytes(context[8..].try_into().expect("16 bytes checked"));
        if self.reads.in_flight.as_ref().is_some_and(|round| round.contexts.contains(&counter)) {
            let round = self.reads.in_flight.take().expect("checked above");
            self.reads.confirmed.push((read_state.index, round.waiters));
        }
    }

    fn answer_reads(&mut self, now: Instant) {
        let applied = self.replica.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads.confirmed).into_iter().partition(|(index, _)| *index <= applied);
        self.reads.confirmed = waiting;
        for (_, waiters) in ready {
            for waiter in waiters {
                let _ = waiter.reply.send(Ok(()));
            }
        }
        let timeout = self.config.read_timeout;
        let expire = |waiters: &mut Vec<ReadWaiter>| {
            let (expired, alive): (Vec<_>, Vec<_>) =
                std::mem::take(waiters).into_iter().partition(|waiter| waiter.deadline <= now || waiter.reply.is_closed());
            *waiters = alive;
            for waiter in expired {
                let _ = waiter.reply.send(Err(ProposeError::Unavailable(format!(
                    "no leader confirmed a read point within {} ms",
                    timeout.as_millis()
                ))));
            }
        };
        expire(&mut self.reads.waiting);
        if let Some(round) = &mut self.reads.in_flight {
            expire(&mut round.waiters);
            if round.waiters.is_empty() {
                self.reads.in_flight = None;
            }
        }
        for (_, waiters) in self.reads.confirmed.iter_mut() {
            expire(waiters);
        }
        self.reads.confirmed.retain(|(_, waiters)| !waiters.is_empty());
    }

    /// When the next turn must run even if nothing arrives: the next tick, or at once when
    /// barriers wait for a round that just ended, or when a round's backoff is over.
    fn wake_at(&self) -> Instant {
        if self.replica.leader_id() == raft::INVALID_ID {
            return self.next_tick;
        }
        match &self.reads.in_flight {
            None if !self.reads.waiting.is_empty() => Instant::now(),
            Some(round) => self.next_tick.min(round.sent_at + read_backoff(&self.config, round.retries)),
            None => self.next_tick,
        }
    }

    fn leader_client_addr(&self) -> Option<String> {
        let leader = self.replica.leader_id();
        if leader == raft::INVALID_ID {
            return None;
        }
        self.outbound.address(leader).map(|peer| peer.client_addr.clone())
    }

    /// A leader has quorum contact when a majority of the voters (itself included) spoke
    /// to it; a follower or learner when its current leader did (under check_quorum a
    /// leader without a majority steps down). A candidate records nothing: its contact ages.
    fn record_quorum_contact(&mut self, now: Instant) {
        let id = self.replica.id();
        let heard = if self.replica.is_leader() {
            let status = self.replica.status();
            let voters: Vec<u64> = status.conf_state.voters.to_vec();
            health::majority_heard(&voters, id, |peer| self.heard.get(&peer).copied(), now)
        } else {
            match self.replica.leader_id() {
                raft::INVALID_ID => None,
                leader => self.heard.get(&leader).copied(),
            }
        };
        if let Some(at) = heard {
            self.contact.record(at);
        }
    }

    fn publish(&mut self) {
        let status = self.replica.status();
        let next = node_status(self.replica.id(), &status, self);
        self.status.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }

    fn fail_everything(&mut self, reason: &str) {
        // Published first, so that handles stop queueing requests as early as possible.
        let mut status = self.status.borrow().clone();
        status.stopped = Some(reason.to_string());
        status.role = Role::Follower;
        status.leader_id = None;
        status.leader_client_addr = None;
        self.status.send_replace(status);
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending.waiter.stopped(reason);
        }
        let mut reads = std::mem::take(&mut self.reads.waiting);
        reads.extend(self.reads.in_flight.take().into_iter().flat_map(|round| round.waiters));
        reads.extend(std::mem::take(&mut self.reads.confirmed).into_iter().flat_map(|(_, waiters)| waiters));
        for waiter in reads {
            let _ = waiter.reply.send(Err(ProposeError::Stopped(reason.to_string())));
        }
        while let Ok(proposal) = self.channels.proposals.try_recv() {
            let _ = proposal.reply.send(Err(ProposeError::Stopped(reason.to_string())));
        }
        self.outbound.close();
    }
}

fn node_status<S: StateMachine>(id: u64, status: &ReplicaStatus, driver: &Driver<S>) -> NodeStatus {
    let leader_id = (status.leader_id != raft::INVALID_ID).then_some(status.leader_id);
    let conf_state = &status.conf_state;
    let mut voters: Vec<u64> = conf_state.voters.to_vec();
    for outgoing in &conf_state.voters_outgoing {
        if !voters.contains(outgoing) {
            voters.push(*outgoing);
        }
    }
    voters.sort_unstable();
    let mut learners: Vec<u64> = conf_state.learners.iter().chain(conf_state.learners_next.iter()).copied().collect();
    learners.sort_unstable();
    learners.dedup();
    NodeStatus {
        id,
        role: match status.role {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        },
        term: status.term,
        leader_id,
        leader_client_addr: driver.leader_client_addr(),
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        proposals_in_flight: driver.pending.len() as u64,
        first_log_index: status.first_index,
        last_log_index: status.last_index,
        voters,
        learners,
        joint: !conf_state.voters_outgoing.is_empty(),
        members: driver.replica.membership().peers.values().cloned().collect(),
        matched: status.matched.iter().copied().collect(),
        stopped: None,
    }
}

/// How often a waiting admin operation re-checks its deadline.
pub(crate) const ADMIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
