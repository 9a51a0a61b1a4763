//! [`RaftNode`]: the handle the service layer holds. It implements [`Proposer`] and the
//! admin operations, and never touches raft-rs itself: it talks to the driver thread
//! through bounded queues and reads the status the driver publishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use tokio::sync::{oneshot, watch};

use super::codec;
use super::config::RaftConfig;
use super::driver::{Channels, Driver, Internal, Proposal, Request, ADMIN_POLL_INTERVAL};
use super::log_store::EngineLog;
use super::replica::{Replica, ReplicaConfig};
use super::transport::{Outbound, PeerService, TransportLimits};
use super::PeerAddress;
use crate::health::{self, HealthBounds, QuorumContact, Unhealthy};
use crate::{ProposeError, Proposer, StateMachine};

/// A member's role in the current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// What a node knows of itself and the cluster, as of its last driver turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader_id: Option<u64>,
    /// The leader's client address, when the membership names it.
    pub leader_client_addr: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Leader only: proposals appended and waiting for their entry to apply.
    pub proposals_in_flight: u64,
    /// The first index the log still holds (entries before it were compacted).
    pub first_log_index: u64,
    pub last_log_index: u64,
    /// Voters, including outgoing voters while `joint`.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// True while a membership change is between its two configurations.
    pub joint: bool,
    /// Every member's addresses, as replicated.
    pub members: Vec<PeerAddress>,
    /// Leader only: member id -> highest index known to be in its log.
    pub matched: BTreeMap<u64, u64>,
    /// Why the node stopped, once it has.
    pub stopped: Option<String>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("a raft node must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot open the raft node: {0}")]
    Open(String),
}

/// Why an admin operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Admin operations run on the leader; `leader` is its client address if known.
    #[error("not the leader")]
    NotLeader { leader: Option<String> },
    #[error("refused membership change: {0}")]
    Invalid(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("outcome unknown: leadership changed while the change was in flight; check status() and retry")]
    Unknown,
    #[error("too many requests in flight; retry shortly")]
    Busy,
    #[error("node stopped: {0}")]
    Stopped(String),
}

struct Inner {
    id: u64,
    config: Arc<RaftConfig>,
    proposals: crossbeam_channel::Sender<Proposal>,
    requests: crossbeam_channel::Sender<Request>,
    internal: crossbeam_channel::Sender<Internal>,
    inbound: crossbeam_channel::Sender<super::transport::Inbound>,
    status: watch::Receiver<NodeStatus>,
    exited: watch::Receiver<bool>,
    isolated: super::transport::Isolation,
    contact: Arc<QuorumContact>,
    /// Where the peer service stages received snapshots.
    state: Arc<dyn crate::StateMachine>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.internal.send(Internal::Stop);
    }
}

/// Handle to a running Raft member. Cheap to clone; the node stops when the last clone is
/// dropped or on [`RaftNode::shutdown`].
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

impl RaftNode {
    /// Opens the node's log in `config.data_dir`, finishes any interrupted snapshot
    /// restore, and starts its driver thread. Must run inside a tokio runtime (the peer
    /// transport spawns its tasks there). The caller MUST then serve the peer service
    /// ([`RaftNode::peer_service`] or [`super::serve_peers`]) at `config.raft_addr`.
    ///
    /// `state` MUST be the node's own durable state machine: on start, raft-rs is told
    /// that `state.applied_index()` entries are applied, and they are never delivered again.
    pub async fn start<S: StateMachine>(config: RaftConfig, state: Arc<S>) -> Result<RaftNode, StartError> {
        config.validate().map_err(StartError::Config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let config = Arc::new(config);
        let (proposals, proposals_receiver) = crossbeam_channel::bounded(config.driver.proposal_queue_depth_max);
        let (requests, requests_receiver) = crossbeam_channel::bounded(config.request_queue_depth_max);
        let (inbound, inbound_receiver) = crossbeam_channel::bounded(config.inbound_queue_depth_max);
        let (internal, internal_receiver) = crossbeam_channel::unbounded();
        let (status_sender, status) = watch::channel(initial_status(config.id));
        let (exited_sender, exited) = watch::channel(false);
        let (opened_sender, opened) = oneshot::channel();
        let channels = Channels {
            proposals: proposals_receiver,
            requests: requests_receiver,
            inbound: inbound_receiver,
            internal: internal_receiver,
        };
        let mut hints = config.known_peers.clone();
        hints.extend(config.initial_members.iter().cloned());
        let isolated = super::transport::Isolation::default();
        let mut outbound = Outbound::new(
            &config.address(),
            runtime,
            TransportLimits::from_config(&config),
            &hints,
            internal.clone(),
        );
        outbound.set_isolation(isolated.clone());
        let thread_config = config.clone();
        let shared_state: Arc<dyn crate::StateMachine> = state.clone();
        let contact = Arc::new(QuorumContact::default());
        let thread_contact = contact.clone();
        std::thread::Builder::new()
            .name(format!("raft-{}", config.id))
            .spawn(move || {
                let replica = match open_replica(&thread_config, state) {
                    Ok(replica) => replica,
                    Err(reason) => {
                        let _ = opened_sender.send(Err(reason));
                        let _ = exited_sender.send(true);
                        return;
                    }
                };
                // `Driver::new` publishes the opened state: `status()` is current on return.
                let driver = Driver::new(replica, outbound, channels, status_sender, thread_config, thread_contact);
                let _ = opened_sender.send(Ok(()));
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run()));
                if let Err(panic) = outcome {
                    let reason = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(%reason, "raft driver panicked; node stopped");
                }
                let _ = exited_sender.send(true);
            })
            .map_err(|error| StartError::Open(format!("cannot spawn the driver thread: {error}")))?;
        match opened.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(StartError::Open(reason)),
            Err(_) => return Err(StartError::Open("the driver thread died while opening".into())),
        }
        let inner = Inner { id: config.id, config, proposals, requests, internal, inbound, status, exited, isolated, contact, state: shared_state };
        Ok(RaftNode { inner: Arc::new(inner) })
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Fault injection for test harnesses: exchange no Raft messages with these peers
    /// (outbound dropped and reported unreachable, inbound refused). An empty list heals.
    pub fn set_isolated_peers(&self, ids: &[u64]) {
        if let Ok(mut isolated) = self.inner.isolated.write() {
            *isolated = ids.iter().copied().collect();
        }
    }

    /// The status as of the driver's last turn.
    pub fn status(&self) -> NodeStatus {
        self.inner.status.borrow().clone()
    }

    /// False once the node stopped (shutdown, storage failure).
    pub fn is_healthy(&self) -> bool {
        self.inner.status.borrow().stopped.is_none() && !*self.inner.exited.borrow()
    }

    /// The peer service to mount on a tonic server at `raft_addr` (the server SHOULD
    /// require mutual TLS between nodes). Message size limits are already set.
    pub fn peer_service(&self) -> pb::raft_peer_server::RaftPeerServer<PeerService> {
        PeerService::new(self.inner.id, self.inner.inbound.clone(), self.inner.state.clone())
            .with_isolation(self.inner.isolated.clone())
            .into_server(self.inner.config.grpc_message_size_bytes_max)
    }

    /// Stops the driver and waits until it released the data directory. Callers in flight
    /// get `Stopped`.
    pub async fn shutdown(&self) {
        let _ = self.inner.internal.send(Internal::Stop);
        let mut exited = self.inner.exited.clone();
        let _ = exited.wait_for(|exited| *exited).await;
    }

    /// Adds a node: first as a learner (it receives the log, or a snapshot, without
    /// voting), then, once it caught up with the commit index, promotes it to voter through
    /// a joint configuration that is left explicitly. Call it on the leader, after the new
    /// node was started with an empty `initial_members`. Idempotent: adding a voter again
    /// succeeds. [`add_learner`](Self::add_learner) and [`promote`](Self::promote) are the
    /// two halves, for callers that have more to wait for in between.
    pub async fn add_node(&self, id: u64, raft_addr: String, client_addr: String) -> Result<(), AdminError> {
        self.add_learner(id, raft_addr, client_addr).await?;
        self.promote(id).await
    }

    /// Adds a node as a learner, unless it is already a member, and waits until it caught
    /// up with the commit index. Call it on the leader.
    pub async fn add_learner(&self, id: u64, raft_addr: String, client_addr: String) -> Result<(), AdminError> {
        if id == 0 || raft_addr.is_empty() || client_addr.is_empty() {
            return Err(AdminError::Invalid("a node needs a non-zero id and both addresses".into()));
        }
        let status = self.leader_status()?;
        if status.voters.contains(&id) {
            return Ok(());
        }
        if !status.learners.contains(&id) {
            let peer = PeerAddress { id, raft_addr, client_addr };
            let change = single_change(ConfChangeType::AddLearnerNode, id, codec::encode_peer(&peer));
            self.change_membership(change).await?;
        }
        self.wait_caught_up(id).await
    }

    /// Promotes learner `id` to voter and waits until the configuration settled. Promoting
    /// a voter succeeds. Call it on the leader.
    pub async fn promote(&self, id: u64) -> Result<(), AdminError> {
        let status = self.leader_status()?;
        if status.voters.contains(&id) && !status.joint {
            return Ok(());
        }
        if !status.voters.contains(&id) {
            if !status.learners.contains(&id) {
                return Err(AdminError::Invalid(format!("node {id} is not a member; add it first")));
            }
            let mut promote = single_change(ConfChangeType::AddNode, id, Vec::new());
            promote.set_transition(ConfChangeTransition::Explicit);
            self.change_membership(promote).await?;
        }
        let timeout = self.inner.config.admin_timeout;
        self.wait_for("the promoted node to become a voter", timeout, |status| {
            status.voters.contains(&id) && !status.joint
        })
        .await
    }

    /// Removes a node. A voter is first demoted to learner (joint configuration, left
    /// explicitly), then removed. The leader cannot remove itself: transfer leadership
    /// first. Removing a node that is not a member succeeds.
    pub async fn remove_node(&self, id: u64) -> Result<(), AdminError> {
        let status = self.leader_status()?;
        if id == status.id {
            return Err(AdminError::Invalid("this node is the leader: transfer leadership before removing it".into()));
        }
        let timeout = self.inner.config.admin_timeout;
        if status.voters.contains(&id) {
            if status.voters.len() <= 1 {
                return Err(AdminError::Invalid("cannot remove the last voter".into()));
            }
            let mut demote = single_change(ConfChangeType::AddLearnerNode, id, Vec::new());
            demote.set_transition(ConfChangeTransition::Explicit);
            self.change_membership(demote).await?;
            self.wait_for("the demoted node to become a learner", timeout, |status| {
                !status.joint && !status.voters.contains(&id)
            })
            .await?;
        }
        if self.status().learners.contains(&id) {
            self.change_membership(single_change(ConfChangeType::RemoveNode, id, Vec::new())).await?;
        }
        self.wait_for("the node to leave the membership", timeout, |status| {
            !status.voters.contains(&id) && !status.learners.contains(&id)
        })
        .await
    }

    /// Hands leadership to voter `id` and waits until it leads. Call it on the leader.
    pub async fn transfer_leader(&self, id: u64) -> Result<(), AdminError> {
        let status = self.status();
        if status.leader_id == Some(id) {
            return Ok(());
        }
        let status = self.leader_status()?;
        if !status.voters.contains(&id) {
            return Err(AdminError::Invalid(format!("node {id} is not a voter")));
        }
        self.send_request(Request::TransferLeader { to: id })?;
        let timeout = self.election_timeout() * 3 + self.inner.config.admin_timeout;
        let inner = self.inner.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = inner.status.borrow().clone();
            if current.leader_id == Some(id) {
                return Ok(());
            }
            if let Some(reason) = current.stopped {
                return Err(AdminError::Stopped(reason));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Timeout(format!("node {id} did not take the leadership")));
            }
            // The transfer may have been aborted by raft-rs (after an election timeout);
            // ask again while we still lead.
            if current.role == super::Role::Leader {
                let _ = self.send_request(Request::TransferLeader { to: id });
            }
            tokio::time::sleep(ADMIN_POLL_INTERVAL * 4).await;
        }
    }

    /// Waits for the driver's answer; `None` if the driver exited without answering (a
    /// request queued while it was stopping stays in the queue unanswered, so waiting on
    /// the answer alone could hang).
    async fn reply<T>(&self, answer: oneshot::Receiver<T>) -> Option<T> {
        let mut exited = self.inner.exited.clone();
        tokio::select! {
            biased;
            answer = answer => answer.ok(),
            _ = exited.wait_for(|exited| *exited) => None,
        }
    }

    fn election_timeout(&self) -> Duration {
        self.inner.config.tick_interval * self.inner.config.election_ticks as u32
    }

    fn leader_status(&self) -> Result<NodeStatus, AdminError> {
        let status = self.status();
        if let Some(reason) = status.stopped {
            return Err(AdminError::Stopped(reason));
        }
        if status.role != Role::Leader {
            return Err(AdminError::NotLeader { leader: status.leader_client_addr });
        }
        Ok(status)
    }

    fn send_request(&self, request: Request) -> Result<(), AdminError> {
        self.inner.requests.try_send(request).map_err(|error| match error {
            crossbeam_channel::TrySendError::Full(_) => AdminError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => AdminError::Stopped("driver exited".into()),
        })
    }

    async fn change_membership(&self, change: ConfChangeV2) -> Result<(), AdminError> {
        let (reply, outcome) = oneshot::channel();
        self.send_request(Request::ChangeMembership { change, reply })?;
        match tokio::time::timeout(self.inner.config.admin_timeout, self.reply(outcome)).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(AdminError::Stopped("driver exited".into())),
            Err(_) => Err(AdminError::Timeout("the membership change was not applied in time; check status()".into())),
        }
    }

    async fn wait_caught_up(&self, id: u64) -> Result<(), AdminError> {
        let target = self.status().commit_index;
        let timeout = self.inner.config.catch_up_timeout;
        self.wait_for("the learner to catch up", timeout, |status| {
            status.matched.get(&id).is_some_and(|matched| *matched >= target)
        })
        .await
    }

    /// Waits until `condition` holds on the published status, while this node leads.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&NodeStatus) -> bool,
    ) -> Result<(), AdminError> {
        let mut status = self.inner.status.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let current = status.borrow_and_update();
                if condition(&current) {
                    return Ok(());
                }
                if let Some(reason) = &current.stopped {
                    return Err(AdminError::Stopped(reason.clone()));
                }
                if current.role != Role::Leader {
                    return Err(AdminError::NotLeader { leader: current.leader_client_addr.clone() });
                }
            }
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(AdminError::Stopped("driver exited".into())),
                Err(_) => return Err(AdminError::Timeout(format!("waited {} ms for {what}", timeout.as_millis()))),
            }
        }
    }
}

use super::codec::pb;

impl Proposer for RaftNode {
    async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        let limit_bytes = self.inner.config.driver.command_size_bytes_max;
        if command.len() > limit_bytes {
            return Err(ProposeError::TooLarge { size_bytes: command.len(), limit_bytes });
        }
        {
            let status = self.inner.status.borrow();
            if let Some(reason) = &status.stopped {
                return Err(ProposeError::Stopped(reason.clone()));
            }
            if status.role != Role::Leader {
                return Err(ProposeError::NotLeader { leader: status.leader_client_addr.clone() });
            }
        }
        let (reply, response) = oneshot::channel();
        self.inner.proposals.try_send(Proposal { command, reply }).map_err(|error| match error {
            crossbeam_channel::TrySendError::Full(_) => ProposeError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => ProposeError::Stopped("driver exited".into()),
        })?;
        self.reply(response).await.unwrap_or_else(|| Err(ProposeError::Stopped("driver exited".into())))
    }

    /// ReadIndex: the leader confirms with a quorum that it still leads and names its
    /// commit index; this node waits until it applied that index. Works on followers too
    /// (the request is forwarded to the leader).
    async fn read_barrier(&self) -> Result<(), ProposeError> {
        if let Some(reason) = &self.inner.status.borrow().stopped {
            return Err(ProposeError::Stopped(reason.clone()));
        }
        let (reply, outcome) = oneshot::channel();
        self.inner.requests.try_send(Request::Read { reply }).map_err(|error| match error {
            crossbeam_channel::TrySendError::Full(_) => ProposeError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => ProposeError::Stopped("driver exited".into()),
        })?;
        self.reply(outcome).await.unwrap_or_else(|| Err(ProposeError::Stopped("driver exited".into())))
    }

    fn check_health(&self, bounds: &HealthBounds) -> Result<(), Unhealthy> {
        let status = self.inner.status.borrow().clone();
        let stopped = match (&status.stopped, *self.inner.exited.borrow()) {
            (Some(reason), _) => Some(reason.clone()),
            (None, true) => Some("driver exited".to_string()),
            (None, false) => None,
        };
        let age = self.inner.contact.age(std::time::Instant::now());
        health::judge(stopped.as_deref(), age, status.commit_index, status.applied_index, bounds)
    }
}

fn single_change(change_type: ConfChangeType, node_id: u64, context: Vec<u8>) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(change_type);
    single.node_id = node_id;
    let mut change = ConfChangeV2::default();
    change.mut_changes().push(single);
    change.context = context.into();
    change
}

fn initial_status(id: u64) -> NodeStatus {
    NodeStatus {
        id,
        role: Role::Follower,
        term: 0,
        leader_id: None,
        leader_client_addr: None,
        commit_index: 0,
        applied_index: 0,
        proposals_in_flight: 0,
        first_log_index: 0,
        last_log_index: 0,
        voters: Vec::new(),
        learners: Vec::new(),
        joint: false,
        members: Vec::new(),
        matched: BTreeMap::new(),
        stopped: None,
    }
}

fn open_replica<S: StateMachine>(config: &RaftConfig, state: Arc<S>) -> Result<Replica<S, EngineLog>, String> {
    let log = EngineLog::open_with(&config.data_dir, config.unsafe_skip_log_fsync).map_err(|error| error.to_string())?;
    let replica_config = ReplicaConfig {
        id: config.id,
        election_ticks: config.election_ticks,
        heartbeat_ticks: config.heartbeat_ticks,
        message_size_bytes_max: config.message_size_bytes_max,
        inflight_messages_max: config.inflight_messages_max,
        apply_batch_entries_max: config.driver.batch_entries_max,
        compaction_interval_entries: config.compaction_interval_entries,
        log_retained_entries: config.log_retained_entries,
    };
    Replica::open(replica_config, state, log, &config.initial_members).map_err(|error| error.to_string())
}
