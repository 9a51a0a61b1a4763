//! Cluster operations over gRPC (status, membership, digests) on the client port, and the
//! node-to-node service (forwarded commands, blob replicas) on the peer port only.

use std::time::Duration;

use bytes::Bytes;
use kyso_cluster::raft::{AdminError, NodeStatus, RaftNode};
use kyso_cluster::ProposeError;
use kyso_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::grpc::{caller_of, GrpcApi};
use super::status::to_status;
use crate::access::Caller;
use crate::consensus::{role_name, Consensus, PeerPort};
use crate::domain::Sha256;
use crate::service::archive::BlobFill;

/// Deadline of a membership change forwarded to the leader (it waits for catch-up and,
/// with per-node storage, for blob copies: up to ~2 × `BLOB_CATCH_UP_TIMEOUT`). Past it the
/// follower answers DEADLINE_EXCEEDED while the leader carries on; the calls are idempotent.
pub const ADMIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Clone)]
pub struct ClusterApi {
    api: GrpcApi<Consensus>,
    /// Present only when the node runs with `fault_injection = true`.
    fault_injection: Option<crate::fault::StorageFault>,
}

impl ClusterApi {
    pub fn new(api: GrpcApi<Consensus>, fault_injection: Option<crate::fault::StorageFault>) -> Self {
        ClusterApi { api, fault_injection }
    }

    fn status_message(&self) -> Result<pb::ClusterStatus, Status> {
        let kyso = &self.api.kyso;
        let log_tree_size = kyso.state().tlog_size().map_err(|error| to_status(error.into()))?;
        Ok(match kyso.proposer().raft() {
            None => pb::ClusterStatus {
                role: "standalone".into(),
                applied_index: kyso.state().applied().map_err(|error| to_status(error.into()))?,
                log_tree_size,
                ..Default::default()
            },
            Some(node) => status_to_proto(&node.status(), log_tree_size),
        })
    }

    /// Runs a membership operation; on a follower, sends the same request to the leader.
    /// Both record it: the node an admin called in the admin's name, the leader in the
    /// forwarding node's.
    async fn admin<F, Fut>(&self, caller: &Caller, operation: F, forward: AdminForward) -> Result<Response<pb::ClusterStatus>, Status>
    where
        F: FnOnce(kyso_cluster::raft::RaftNode) -> Fut,
        Fut: std::future::Future<Output = Result<(), AdminError>>,
    {
        let node = self
            .api
            .kyso
            .proposer()
            .raft()
            .cloned()
            .ok_or_else(|| Status::failed_precondition("this node is standalone; start it with a [cluster] section"))?;
        let change = forward.describe();
        let response = match operation(node).await {
            Ok(()) => Response::new(self.status_message()?),
            Err(AdminError::NotLeader { leader: Some(leader) }) => self.forward_admin(&leader, forward).await?,
            Err(error) => return Err(admin_status(error)),
        };
        // Every change is a log entry, whoever asked: an admin on the node it called, and
        // a node (a forwarded call, or a node certificate used directly) on the leader.
        if let Err(error) = self.api.kyso.audit_cluster_change(&caller.actor, &change).await {
            tracing::error!(%error, change, "the membership change is done but could not be recorded in the log");
        }
        Ok(response)
    }

    async fn forward_admin(&self, leader: &str, request: AdminForward) -> Result<Response<pb::ClusterStatus>, Status> {
        let peers = self.api.kyso.proposer().peers().ok_or_else(|| Status::internal("a standalone node has no leader to forward to"))?;
        let channel = peers
            .channel_with_timeout(leader, PeerPort::Client, ADMIN_FORWARD_TIMEOUT)
            .map_err(|error| Status::unavailable(format!("cannot reach the leader at {leader}: {error}")))?;
        let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel);
        fn call<T>(message: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request.set_timeout(ADMIN_FORWARD_TIMEOUT);
            request
        }
        match request {
            AdminForward::Add(request) => client.add_node(call(request)).await,
            AdminForward::Remove(request) => client.remove_node(call(request)).await,
            AdminForward::Transfer(request) => client.transfer_leader(call(request)).await,
        }
    }
}

/// How long AddNode waits for a new member to fetch every archived blob before it gives
/// up (the member keeps fetching; calling AddNode again promotes it once it holds them).
const BLOB_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for the read barrier a FillBlobs call starts with.
const FILL_BLOBS_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest fill pass one FillBlobs call runs (under the peer call deadline).
const FILL_BLOBS_BUDGET: Duration = Duration::from_secs(20);

/// Membership changes with per-node local storage: the leader makes sure no archived
/// document ends up on fewer than a majority of the voters. (With a shared object store
/// there is one copy for everyone and nothing to check.)
impl ClusterApi {
    fn per_node_storage(&self) -> bool {
        self.api.kyso.peer_blobs.is_some()
    }

    /// Fills in the blobs member `id` lacks (on this node, or through its FillBlobs) and
    /// says what it then holds.
    async fn blob_holdings(&self, node: &RaftNode, id: u64) -> Result<BlobFill, String> {
        let status = node.status();
        if id == status.id {
            return self.api.kyso.fill_missing_blobs(FILL_BLOBS_BUDGET).await.map_err(|error| error.to_string());
        }
        let member = status.members.iter().find(|member| member.id == id).ok_or_else(|| format!("node {id} is not a member"))?;
        let peers = self.api.kyso.proposer().peers().ok_or_else(|| "a standalone node has no peers".to_string())?;
        let answer = peers.fill_blobs(&member.raft_addr).await?;
        Ok(BlobFill {
            archived: answer.archived_blobs,
            fetched: answer.fetched_blobs,
            missing: answer.missing_blobs,
            complete: answer.complete,
            checked: answer.checked_blobs,
        })
    }

    /// Before a voter is removed: a majority of the voters that remain must each hold every
    /// archived blob, or the removal (a replaced member's disk is usually wiped) could take
    /// the last copies of some document with it. Asking them also makes them fill in.
    async fn check_removal_keeps_every_blob(&self, node: &RaftNode, id: u64) -> Result<(), AdminError> {
        let status = node.status();
        if !self.per_node_storage() || status.role != kyso_cluster::raft::Role::Leader || !status.voters.contains(&id) || id == status.id {
            // A follower forwards; removing a learner drops no voter's copy (a learner's
            // copy never counts toward an upload's majority); the leader's own removal and
            // the last voter's are refused by `remove_node` with their own reasons.
            return Ok(());
        }
        let remaining: Vec<u64> = status.voters.iter().copied().filter(|voter| *voter != id).collect();
        if remaining.is_empty() {
            return Ok(());
        }
        self.majority_holds_every_blob(node, &remaining).await.map_err(|why| {
            AdminError::Invalid(format!(
                "removing node {id} now could leave archived documents on fewer than a majority of the remaining voters: {why}; they fetch missing copies from each other in the background — retry shortly"
            ))
        })
    }

    /// Waits until a majority of the members `voters_of` names (read afresh each round) each
    /// hold every archived blob; past [`BLOB_CATCH_UP_TIMEOUT`], `timed_out` turns the
    /// last shortfall into the error. Serves three checks: a learner before its promotion
    /// (a "majority" of that one member: it must hold every blob archived so far, so that
    /// promoting it never lowers the share of voters that hold a document), and the voters
    /// after an addition or a removal (a document acknowledged while the change was
    /// checked had its first copies on a majority of the old voters: for a removal maybe
    /// including the removed member, for an addition maybe not the new one).
    async fn wait_until_majority_holds_every_blob(
        &self,
        node: &RaftNode,
        voters_of: impl Fn(&NodeStatus) -> Vec<u64>,
        timed_out: impl Fn(&str) -> AdminError,
    ) -> Result<(), AdminError> {
        if !self.per_node_storage() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + BLOB_CATCH_UP_TIMEOUT;
        loop {
            let voters = voters_of(&node.status());
            match self.majority_holds_every_blob(node, &voters).await {
                Ok(()) => return Ok(()),
                Err(why) if tokio::time::Instant::now() >= deadline => return Err(timed_out(&why)),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Whether a majority of `voters` each hold every archived blob; if not, who lacks what.
    async fn majority_holds_every_blob(&self, node: &RaftNode, voters: &[u64]) -> Result<(), String> {
        let archived = self.archived_blob_count().map_err(|error| error.to_string())?;
        let answers = futures::future::join_all(voters.iter().map(|voter| self.blob_holdings(node, *voter))).await;
        let mut complete = 0;
        let mut lacking = Vec::new();
        for (voter, answer) in voters.iter().zip(answers) {
            match answer {
                Ok(fill) if fill.holds_all(archived) => complete += 1,
                Ok(fill) if !fill.complete => lacking.push(format!("node {voter} is still checking its copies")),
                Ok(fill) if fill.archived < archived => {
                    lacking.push(format!("node {voter} has applied {} of the {archived} archived documents", fill.archived))
                }
                Ok(fill) => lacking.push(format!("node {voter} lacks {} documents", fill.missing)),
                Err(error) => lacking.push(format!("node {voter} did not answer: {error}")),
            }
        }
        let needed = voters.len() / 2 + 1;
        if complete < needed {
            return Err(format!("{complete} of {} hold all {archived}, {needed} must ({})", voters.len(), lacking.join("; ")));
        }
        Ok(())
    }

    fn archived_blob_count(&self) -> Result<u64, AdminError> {
        self.api.kyso.state().blob_count().map_err(|error| AdminError::Stopped(format!("cannot read the state: {error}")))
    }
}

/// The voters, for [`ClusterApi::wait_until_majority_holds_every_blob`].
fn voters(status: &NodeStatus) -> Vec<u64> {
    status.voters.clone()
}

/// A membership request that a follower sends on to the leader.
pub enum AdminForward {
    Add(pb::AddNodeRequest),
    Remove(pb::RemoveNodeRequest),
    Transfer(pb::TransferLeaderRequest),
}

impl AdminForward {
    fn describe(&self) -> String {
        match self {
            AdminForward::Add(request) => format!("add node {} raft {} client {}", request.id, request.raft_addr, request.client_addr),
            AdminForward::Remove(request) => format!("remove node {}", request.id),
            AdminForward::Transfer(request) => format!("transfer leadership to node {}", request.id),
        }
    }
}

fn admin_status(error: AdminError) -> Status {
    let message = error.to_string();
    match error {
        AdminError::NotLeader { .. } => Status::unavailable(format!("{message}; no leader is known yet, retry shortly")),
        AdminError::Invalid(_) => Status::failed_precondition(message),
        AdminError::Timeout(_) => Status::deadline_exceeded(message),
        AdminError::Unknown => Status::unknown(message),
        AdminError::Busy => Status::resource_exhausted(message),
        AdminError::Stopped(_) => Status::unavailable(message),
    }
}

pub fn status_to_proto(status: &NodeStatus, log_tree_size: u64) -> pb::ClusterStatus {
    let role_of = |id: u64| if status.learners.contains(&id) { "learner" } else { "voter" };
    pb::ClusterStatus {
        node_id: status.id,
        role: role_name(status.role).into(),
        term: status.term,
        leader_id: status.leader_id.unwrap_or(0),
        leader_client_addr: status.leader_client_addr.clone().unwrap_or_default(),
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        first_log_index: status.first_log_index,
        last_log_index: status.last_log_index,
        members: status
            .members
            .iter()
            .map(|member| pb::ClusterMember {
                id: member.id,
                raft_addr: member.raft_addr.clone(),
                client_addr: member.client_addr.clone(),
                role: role_of(member.id).into(),
            })
            .collect(),
        joint: status.joint,
        stopped: status.stopped.clone().unwrap_or_default(),
        log_tree_size,
    }
}

#[tonic::async_trait]
impl pb::cluster_service_server::ClusterService for ClusterApi {
    async fn status(&self, _request: Request<pb::ClusterStatusRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(self.status_message()?))
    }

    async fn add_node(&self, request: Request<pb::AddNodeRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let forward = AdminForward::Add(request.clone());
        let this = self.clone();
        let add = move |node: RaftNode| async move {
            let id = request.id;
            node.add_learner(id, request.raft_addr, request.client_addr).await?;
            if !node.status().voters.contains(&id) {
                let learner = |_: &NodeStatus| vec![id];
                this.wait_until_majority_holds_every_blob(&node, learner, |why| {
                    AdminError::Timeout(format!(
                        "node {id} caught up with the log but not yet with the archive ({why}); it stays a learner and keeps fetching — call AddNode again to promote it once it holds every document"
                    ))
                })
                .await?;
            }
            node.promote(id).await?;
            this.wait_until_majority_holds_every_blob(&node, voters, |why| {
                AdminError::Timeout(format!(
                    "node {id} is a voter, but documents archived meanwhile are not yet on a majority of the voters ({why}); call AddNode again to check again"
                ))
            })
            .await
        };
        self.admin(&caller, add, forward).await
    }

    async fn remove_node(&self, request: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let forward = AdminForward::Remove(request);
        let this = self.clone();
        let remove = move |node: RaftNode| async move {
            let id = request.id;
            this.check_removal_keeps_every_blob(&node, id).await?;
            node.remove_node(id).await?;
            this.wait_until_majority_holds_every_blob(&node, voters, |why| {
                AdminError::Timeout(format!(
                    "node {id} left the membership, but documents archived meanwhile are not yet on a majority of the voters ({why}); keep its disk (a copy there can be restored with `kyso scrub --repair-from`) until `kyso cluster remove --id {id}` succeeds"
                ))
            })
            .await
        };
        self.admin(&caller, remove, forward).await
    }

    async fn transfer_leader(&self, request: Request<pb::TransferLeaderRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let forward = AdminForward::Transfer(request);
        self.admin(&caller, move |node| async move { node.transfer_leader(request.id).await }, forward).await
    }

    async fn inject_fault(&self, request: Request<pb::InjectFaultRequest>) -> Result<Response<pb::InjectFaultResponse>, Status> {
        let Some(storage_fault) = &self.fault_injection else {
            return Err(Status::failed_precondition("fault injection is off on this node (fault_injection = false)"));
        };
        self.api.kyso.proposer().raft().ok_or_else(|| Status::failed_precondition("this node is standalone"))?;
        let request = request.into_inner();
        if request.fail_storage {
            tracing::warn!("fault injection: state store writes fail from now on");
            storage_fault.fail_from_now_on();
        }
        let isolate_from = request.isolate_from;
        tracing::warn!(?isolate_from, "fault injection: links to these nodes cut");
        self.api.kyso.proposer().isolate(&isolate_from);
        Ok(Response::new(pb::InjectFaultResponse {}))
    }

    async fn state_digest(&self, _request: Request<pb::StateDigestRequest>) -> Result<Response<pb::StateDigestResponse>, Status> {
        let state = self.api.kyso.state();
        let (applied_index, digest) = state.digest().map_err(|error| to_status(error.into()))?;
        let (log_tree_size, root) = state.tlog_head().map_err(|error| to_status(error.into()))?;
        Ok(Response::new(pb::StateDigestResponse {
            applied_index,
            sha256: digest.0.to_vec(),
            log_tree_size,
            log_root_hash: root.to_vec(),
        }))
    }
}

/// The node-to-node service, mounted on the peer port only.
#[derive(Clone)]
pub struct NodeInternalApi {
    api: GrpcApi<Consensus>,
}

impl NodeInternalApi {
    pub fn new(api: GrpcApi<Consensus>) -> Self {
        NodeInternalApi { api }
    }
}

fn propose_status(error: ProposeError) -> Status {
    let message = error.to_string();
    match error {
        ProposeError::Busy => Status::resource_exhausted(message),
        ProposeError::TooLarge { .. } => Status::invalid_argument(message),
        ProposeError::NotLeader { .. } | ProposeError::Stopped(_) | ProposeError::Unavailable(_) => Status::unavailable(message),
        ProposeError::Unknown => Status::unknown(message),
    }
}

#[tonic::async_trait]
impl pb::node_internal_service_server::NodeInternalService for NodeInternalApi {
    async fn forward_command(&self, request: Request<pb::ForwardCommandRequest>) -> Result<Response<pb::ForwardCommandResponse>, Status> {
        let forwarder = caller_of(&request);
        if let (Some(node), Some(id)) = (self.api.kyso.proposer().raft(), forwarder.node_id) {
            if !node.status().members.iter().any(|member| member.id == id) {
                return Err(Status::permission_denied(format!("node {id} is not a member of this cluster; it may not forward commands")));
            }
        }
        let span = crate::api::auth::RequestSpan::of(request.extensions());
        let admitted = self.api.kyso.admit_forwarded(&forwarder, &request.into_inner().command).map_err(to_status)?;
        span.record_request_id(&admitted.request_id);
        span.0.record("caller", tracing::field::display(&admitted.actor));
        let response = self.api.kyso.proposer().propose_here(Bytes::from(admitted.command)).await.map_err(propose_status)?;
        Ok(Response::new(pb::ForwardCommandResponse { response: response.to_vec() }))
    }

    async fn put_blob_replica(&self, request: Request<Streaming<pb::BlobReplicaChunk>>) -> Result<Response<pb::PutBlobReplicaResponse>, Status> {
        let mut stream = request.into_inner();
        let limit = self.api.kyso.limits().file_size_bytes_max;
        let mut hash: Option<Sha256> = None;
        // Spooled while hashed, so a replica never sits whole in memory; dropped (deleted)
        // if the stream fails.
        let mut incoming = self.api.kyso.new_upload_file().await.map_err(to_status)?;
        while let Some(chunk) = self.api.next_message(&mut stream).await? {
            if hash.is_none() {
                hash = Some(Sha256::from_slice(&chunk.sha256).ok_or_else(|| Status::invalid_argument("the first replica chunk must carry the 32-byte sha256"))?);
            }
            if incoming.size_bytes() + chunk.data.len() as u64 > limit {
                return Err(Status::resource_exhausted(format!("replica exceeds {limit} bytes (limits.file_size_bytes_max); give every node the same limits")));
            }
            incoming.write(&chunk.data).await.map_err(|error| to_status(error.into()))?;
        }
        let hash = hash.ok_or_else(|| Status::invalid_argument("empty replica stream"))?;
        let received = incoming.finish().await.map_err(|error| to_status(error.into()))?;
        self.api.bounded(self.api.kyso.store_replica(hash, received)).await?;
        Ok(Response::new(pb::PutBlobReplicaResponse {}))
    }

    async fn fill_blobs(&self, _request: Request<pb::FillBlobsRequest>) -> Result<Response<pb::FillBlobsResponse>, Status> {
        // The leader compares the answer with the archive as it knew it before asking; catch
        // up with it first, so that a follower applying a little behind under load is not
        // taken for one that lacks documents. Best effort: a node that cannot reach the
        // leader answers from what it has (and may be found incomplete).
        let _ = tokio::time::timeout(FILL_BLOBS_BARRIER_TIMEOUT, self.api.kyso.read_barrier()).await;
        let fill = self.api.kyso.fill_missing_blobs(FILL_BLOBS_BUDGET).await.map_err(to_status)?;
        Ok(Response::new(pb::FillBlobsResponse {
            archived_blobs: fill.archived,
            fetched_blobs: fill.fetched,
            missing_blobs: fill.missing,
            complete: fill.complete,
            checked_blobs: fill.checked,
        }))
    }
}
