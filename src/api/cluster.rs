//! Cluster operations over gRPC (status, membership, digests) on the client port, and the
//! node-to-node service (forwarded commands, blob replicas) on the peer port only.

use std::time::Duration;

use bytes::Bytes;
use kyso_cluster::raft::{AdminError, NodeStatus};
use kyso_cluster::ProposeError;
use kyso_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::grpc::{caller_of, GrpcApi};
use super::status::to_status;
use crate::access::{self, Caller};
use crate::consensus::{role_name, Consensus, PeerPort};
use crate::domain::Sha256;

/// Deadline of a membership change forwarded to the leader (it waits for catch-up).
pub const ADMIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
pub struct ClusterApi {
    api: GrpcApi<Consensus>,
    fault_injection: bool,
}

impl ClusterApi {
    pub fn new(api: GrpcApi<Consensus>, fault_injection: bool) -> Self {
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
    /// The node that an admin called records the change in the log (a forwarded call,
    /// whose caller is a node, is not recorded twice).
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
        if !caller.has(access::Role::Node) {
            if let Err(error) = self.api.kyso.audit_cluster_change(&caller.actor, &change).await {
                tracing::error!(%error, change, "the membership change is done but could not be recorded in the log");
            }
        }
        Ok(response)
    }

    async fn forward_admin(&self, leader: &str, request: AdminForward) -> Result<Response<pb::ClusterStatus>, Status> {
        let peers = self.api.kyso.proposer().peers().ok_or_else(|| Status::internal("a standalone node has no leader to forward to"))?;
        let channel = peers
            .channel(leader, PeerPort::Client)
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
        self.admin(&caller, move |node| async move { node.add_node(request.id, request.raft_addr, request.client_addr).await }, forward)
            .await
    }

    async fn remove_node(&self, request: Request<pb::RemoveNodeRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let forward = AdminForward::Remove(request.clone());
        self.admin(&caller, move |node| async move { node.remove_node(request.id).await }, forward).await
    }

    async fn transfer_leader(&self, request: Request<pb::TransferLeaderRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let forward = AdminForward::Transfer(request.clone());
        self.admin(&caller, move |node| async move { node.transfer_leader(request.id).await }, forward).await
    }

    async fn inject_fault(&self, request: Request<pb::InjectFaultRequest>) -> Result<Response<pb::InjectFaultResponse>, Status> {
        if !self.fault_injection {
            return Err(Status::failed_precondition("fault injection is off on this node (fault_injection = false)"));
        }
        self.api.kyso.proposer().raft().ok_or_else(|| Status::failed_precondition("this node is standalone"))?;
        let isolate_from = request.into_inner().isolate_from;
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
        let command = Bytes::from(request.into_inner().command);
        let response = self.api.kyso.proposer().propose_here(command).await.map_err(propose_status)?;
        Ok(Response::new(pb::ForwardCommandResponse { response: response.to_vec() }))
    }

    async fn put_blob_replica(&self, request: Request<Streaming<pb::BlobReplicaChunk>>) -> Result<Response<pb::PutBlobReplicaResponse>, Status> {
        let mut stream = request.into_inner();
        let limit = self.api.kyso.limits().file_size_bytes_max;
        let mut hash: Option<Sha256> = None;
        let mut content = Vec::new();
        while let Some(chunk) = self.api.next_message(&mut stream).await? {
            if hash.is_none() {
                hash = Some(Sha256::from_slice(&chunk.sha256).ok_or_else(|| Status::invalid_argument("the first replica chunk must carry the 32-byte sha256"))?);
            }
            if content.len() as u64 + chunk.data.len() as u64 > limit {
                return Err(Status::resource_exhausted(format!("replica exceeds {limit} bytes")));
            }
            content.extend_from_slice(&chunk.data);
        }
        let hash = hash.ok_or_else(|| Status::invalid_argument("empty replica stream"))?;
        self.api.bounded(self.api.kyso.store_replica(hash, Bytes::from(content))).await?;
        Ok(Response::new(pb::PutBlobReplicaResponse {}))
    }
}
