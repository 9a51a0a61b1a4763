//! The node's consensus driver as the service layer sees it: a standalone single node, or
//! a Raft member whose writes on a follower are forwarded to the leader, plus the
//! node-to-node blob replication that per-node local storage needs.
//!
//! This is an adapter: it knows tonic (to reach other nodes) and kyso-cluster, but never
//! a document's meaning. Forwarding happens once per attempt and never chains: a leader
//! answering a forwarded command proposes it locally or refuses.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use kyso_cluster::raft::{RaftNode, Role};
use kyso_cluster::single::SingleNode;
use kyso_cluster::{ProposeError, Proposer};
use kyso_proto::v1 as pb;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::archive::{BlobStore, Spool, SpooledBlob};
use crate::domain::Sha256;
use crate::service::PeerBlobs;

/// Attempts to find and reach a leader before a write gives up.
pub const FORWARD_ATTEMPTS_MAX: u32 = 8;
/// Pause between attempts while no leader is known (an election takes ~1-2 s).
pub const FORWARD_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Deadline of one node-to-node call.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per message when pushing a blob replica: the most a push holds of a blob, besides
/// what the transport buffers.
pub const REPLICA_CHUNK_SIZE_BYTES: usize = 1024 * 1024;
/// The slowest a replica push or fetch may go on average before it is abandoned: its
/// deadline is [`PEER_CALL_TIMEOUT`] plus one second per this many bytes.
const REPLICA_BYTES_PER_SECOND_MIN: u64 = 1024 * 1024;

/// A standalone node or a Raft member.
pub enum Consensus {
    Single(SingleNode),
    Raft { node: RaftNode, peers: std::sync::Arc<PeerClients> },
}

impl Consensus {
    /// Proposes on this node only, never forwarding: what a leader does with a forwarded
    /// command.
    pub async fn propose_here(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        match self {
            Consensus::Single(node) => node.propose(command).await,
            Consensus::Raft { node, .. } => node.propose(command).await,
        }
    }

    pub fn raft(&self) -> Option<&RaftNode> {
        match self {
            Consensus::Single(_) => None,
            Consensus::Raft { node, .. } => Some(node),
        }
    }

    /// Fault injection: cut Raft messages and kyso's own node-to-node calls to and from
    /// these members. An empty list heals.
    pub fn isolate(&self, ids: &[u64]) {
        if let Consensus::Raft { node, peers } = self {
            node.set_isolated_peers(ids);
            let members = node.status().members;
            peers.set_isolated_addresses(
                members
                    .iter()
                    .filter(|member| ids.contains(&member.id))
                    .flat_map(|member| [member.raft_addr.clone(), member.client_addr.clone()]),
            );
        }
    }

    /// The clients to other nodes, when this node is a Raft member.
    pub fn peers(&self) -> Option<&PeerClients> {
        match self {
            Consensus::Single(_) => None,
            Consensus::Raft { peers, .. } => Some(peers),
        }
    }
}

impl Proposer for Consensus {
    async fn propose(&self, command: Bytes) -> Result<Bytes, ProposeError> {
        let (node, peers) = match self {
            Consensus::Single(node) => return node.propose(command).await,
            Consensus::Raft { node, peers } => (node, peers),
        };
        let mut last_error = ProposeError::Unavailable("no leader elected yet; retry shortly".into());
        for _ in 0..FORWARD_ATTEMPTS_MAX {
            match node.propose(command.clone()).await {
                Err(ProposeError::NotLeader { .. }) => match leader_raft_addr(node) {
                    Some(leader) => match peers.forward(&leader, command.clone()).await {
                        Ok(response) => return Ok(response),
                        Err(error @ ProposeError::Unknown) => return Err(error),
                        Err(error) => last_error = error,
                    },
                    None => {}
                },
                outcome => return outcome,
            }
            tokio::time::sleep(FORWARD_RETRY_PAUSE).await;
        }
        Err(last_error)
    }

    async fn read_barrier(&self) -> Result<(), ProposeError> {
        match self {
            Consensus::Single(node) => node.read_barrier().await,
            Consensus::Raft { node, .. } => node.read_barrier().await,
        }
    }

    fn check_health(&self, bounds: &kyso_cluster::HealthBounds) -> Result<(), kyso_cluster::Unhealthy> {
        match self {
            Consensus::Single(node) => node.check_health(bounds),
            Consensus::Raft { node, .. } => node.check_health(bounds),
        }
    }
}

/// The leader's peer address, if a leader other than this node is known (this node still
/// names itself while it hands its leadership on: then wait and ask again).
fn leader_raft_addr(node: &RaftNode) -> Option<String> {
    let status = node.status();
    let leader = status.leader_id.filter(|leader| *leader != status.id)?;
    status.members.iter().find(|member| member.id == leader).map(|member| member.raft_addr.clone())
}

/// gRPC clients to other nodes (peer ports for internal calls, client ports for reads and
/// forwarded admin calls), one lazily connected channel each. With TLS, the node presents
/// its own certificate and trusts only the cluster CA.
pub struct PeerClients {
    channels: Mutex<HashMap<String, Channel>>,
    /// Addresses cut off by fault injection (test harnesses only).
    isolated: Mutex<std::collections::HashSet<String>>,
    to_client_ports: Option<ClientTlsConfig>,
    to_peer_ports: Option<ClientTlsConfig>,
}

/// Which port of another node a channel reaches.
#[derive(Clone, Copy)]
pub enum PeerPort {
    Client,
    Peer,
}

impl PeerClients {
    /// `None` for a port means it serves plain text.
    pub fn new(to_client_ports: Option<ClientTlsConfig>, to_peer_ports: Option<ClientTlsConfig>) -> PeerClients {
        PeerClients { channels: Mutex::new(HashMap::new()), isolated: Mutex::default(), to_client_ports, to_peer_ports }
    }

    /// Fault injection: refuse every call to these addresses (peer and client ports).
    pub fn set_isolated_addresses(&self, addresses: impl IntoIterator<Item = String>) {
        *self.isolated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = addresses.into_iter().collect();
    }

    /// A channel to `address` (host:port) on `port`, created once and reused; each call on
    /// it is bounded by [`PEER_CALL_TIMEOUT`].
    pub fn channel(&self, address: &str, port: PeerPort) -> Result<Channel, ProposeError> {
        self.channel_with_timeout(address, port, PEER_CALL_TIMEOUT)
    }

    /// Like [`channel`](Self::channel), with calls bounded by `timeout` instead (a
    /// forwarded membership change waits much longer than an ordinary call).
    pub fn channel_with_timeout(&self, address: &str, port: PeerPort, timeout: Duration) -> Result<Channel, ProposeError> {
        if self.isolated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(address) {
            return Err(ProposeError::Unavailable(format!("{address} is cut off (fault injection)")));
        }
        let tls = match port {
            PeerPort::Client => &self.to_client_ports,
            PeerPort::Peer => &self.to_peer_ports,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{address}");
        let key = format!("{url} {}ms", timeout.as_millis());
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let bad_address = |error: &dyn std::fmt::Display| ProposeError::Unavailable(format!("bad peer address {address}: {error}"));
        let mut endpoint = Channel::from_shared(url)
            .map_err(|error| bad_address(&error))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|error| bad_address(&error))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    fn internal_client(&self, raft_addr: &str) -> Result<pb::node_internal_service_client::NodeInternalServiceClient<Channel>, ProposeError> {
        Ok(pb::node_internal_service_client::NodeInternalServiceClient::new(self.channel(raft_addr, PeerPort::Peer)?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024))
    }

    /// Hands a prepared command to the leader. A transport failure after sending means the
    /// command may have been applied: the outcome is then unknown. The call carries the
    /// current trace (`traceparent`), so the leader's span of it is this one's child.
    #[tracing::instrument(name = "forward", skip_all, fields(leader = %leader, otel.kind = "client"))]
    async fn forward(&self, leader: &str, command: Bytes) -> Result<Bytes, ProposeError> {
        let mut client = self.internal_client(leader)?;
        let mut request = tonic::Request::new(pb::ForwardCommandRequest { command: command.to_vec() });
        crate::telemetry::inject_current_context(request.metadata_mut());
        match client.forward_command(request).await {
            Ok(response) => Ok(Bytes::from(response.into_inner().response)),
            Err(status) => Err(match status.code() {
                // The leader refused before proposing: safe to try again.
                tonic::Code::Unavailable | tonic::Code::FailedPrecondition | tonic::Code::ResourceExhausted => {
                    ProposeError::Unavailable(format!("leader {leader}: {}", status.message()))
                }
                tonic::Code::InvalidArgument => ProposeError::TooLarge { size_bytes: command.len(), limit_bytes: 0 },
                _ => ProposeError::Unknown,
            }),
        }
    }

    /// Pushes a blob from this node's store to one peer's peer port, streamed in
    /// [`REPLICA_CHUNK_SIZE_BYTES`] messages read (and re-hashed) as the transport takes
    /// them. The peer spools what it receives and stores it only if the bytes hash to
    /// `hash`; a local read that fails ends the stream early, so the peer refuses it.
    async fn push_blob(&self, raft_addr: &str, blobs: &BlobStore, hash: Sha256, size_bytes: u64) -> Result<(), String> {
        let source = blobs.open(&hash).await.map_err(|error| format!("cannot read blob {hash} to replicate it: {error}"))?;
        if source.size_bytes() != size_bytes {
            return Err(format!("blob {hash} holds {} bytes here, {size_bytes} were expected", source.size_bytes()));
        }
        let channel = self.channel_with_timeout(raft_addr, PeerPort::Peer, replica_call_timeout(size_bytes)).map_err(|error| error.to_string())?;
        let mut client = pb::node_internal_service_client::NodeInternalServiceClient::new(channel);
        let read_error = std::sync::Arc::new(Mutex::new(None::<String>));
        let chunks = futures::stream::unfold((source, true, read_error.clone()), move |(mut source, first, read_error)| async move {
            let data = match source.next_chunk(REPLICA_CHUNK_SIZE_BYTES).await {
                Ok(Some(data)) => data.to_vec(),
                // An empty blob still sends one message: it carries the hash.
                Ok(None) if first => Vec::new(),
                Ok(None) => return None,
                Err(error) => {
                    *read_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
                    return None;
                }
            };
            let sha256 = if first { hash.0.to_vec() } else { Vec::new() };
            Some((pb::BlobReplicaChunk { sha256, data }, (source, false, read_error)))
        });
        let outcome = client.put_blob_replica(chunks).await;
        if let Some(error) = read_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            return Err(format!("reading blob {hash} to replicate it failed: {error}"));
        }
        outcome.map(|_| ()).map_err(|status| status.message().to_string())
    }

    /// Asks another node (peer port) to fill in the blobs it lacks and to say what it holds.
    pub async fn fill_blobs(&self, raft_addr: &str) -> Result<pb::FillBlobsResponse, String> {
        let mut client = self.internal_client(raft_addr).map_err(|error| error.to_string())?;
        client.fill_blobs(pb::FillBlobsRequest {}).await.map(tonic::Response::into_inner).map_err(|status| status.message().to_string())
    }

    /// Reads a blob of `size_bytes` from a peer into the spool, and checks its size and
    /// hash; the bytes never sit in memory beyond one message.
    async fn fetch_blob(&self, client_addr: &str, spool: &Spool, hash: Sha256, size_bytes: u64) -> Result<SpooledBlob, String> {
        let channel = self.channel(client_addr, PeerPort::Client).map_err(|error| error.to_string())?;
        let mut client = pb::archive_service_client::ArchiveServiceClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
        let mut stream = client.get_blob(pb::GetBlobRequest { sha256: hash.0.to_vec() }).await.map_err(|status| status.message().to_string())?.into_inner();
        let mut incoming = spool.create().await.map_err(|error| error.to_string())?;
        let deadline = tokio::time::Instant::now() + replica_call_timeout(size_bytes);
        loop {
            let message = tokio::time::timeout_at(deadline, stream.message())
                .await
                .map_err(|_| format!("peer {client_addr} did not send blob {hash} within {:?}", replica_call_timeout(size_bytes)))?;
            let Some(chunk) = message.map_err(|status| status.message().to_string())? else { break };
            if incoming.size_bytes() + chunk.data.len() as u64 > size_bytes {
                return Err(format!("peer {client_addr} sent more than the {size_bytes} bytes of blob {hash}"));
            }
            incoming.write(&chunk.data).await.map_err(|error| error.to_string())?;
        }
        let received = incoming.finish().await.map_err(|error| error.to_string())?;
        if received.hash != hash || received.size_bytes != size_bytes {
            return Err(format!("peer {client_addr} sent {} bytes that do not hash to {hash}", received.size_bytes));
        }
        Ok(received)
    }
}

/// Deadline of one replica push or fetch of `size_bytes`: [`PEER_CALL_TIMEOUT`] plus time
/// at [`REPLICA_BYTES_PER_SECOND_MIN`], rounded up to whole minutes, because a push's
/// channel is kept per deadline and per peer (so a handful of channels, not one per size).
fn replica_call_timeout(size_bytes: u64) -> Duration {
    let seconds = PEER_CALL_TIMEOUT.as_secs() + size_bytes / REPLICA_BYTES_PER_SECOND_MIN;
    Duration::from_secs(seconds.div_ceil(60) * 60)
}

/// Pushes beyond the majority the client waited for that may go on in the background at
/// once (each holds about one [`REPLICA_CHUNK_SIZE_BYTES`] message, whatever the blob's
/// size); past it those members catch up by their own fill passes.
const BACKGROUND_PUSHES_MAX: usize = 32;

/// [`PeerBlobs`] over the cluster's membership.
pub struct RaftPeerBlobs {
    node: RaftNode,
    peers: std::sync::Arc<PeerClients>,
    /// This node's store: pushes read from it, fetches spool into its spool.
    blobs: BlobStore,
    background: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Another member, as blob replication sees it.
struct OtherMember {
    raft_addr: String,
    client_addr: String,
    voter: bool,
}

impl RaftPeerBlobs {
    pub fn new(node: RaftNode, peers: std::sync::Arc<PeerClients>, blobs: BlobStore) -> RaftPeerBlobs {
        let background = std::sync::Arc::new(tokio::sync::Semaphore::new(BACKGROUND_PUSHES_MAX));
        RaftPeerBlobs { node, peers, blobs, background }
    }

    /// The other members, the number of voters, and whether this node is one of them.
    fn other_members(&self) -> (Vec<OtherMember>, usize, bool) {
        let status = self.node.status();
        let voters = status.voters.len().max(1);
        let is_voter = status.voters.contains(&status.id);
        let others = status
            .members
            .iter()
            .filter(|member| member.id != status.id)
            .map(|member| OtherMember {
                raft_addr: member.raft_addr.clone(),
                client_addr: member.client_addr.clone(),
                voter: status.voters.contains(&member.id),
            })
            .collect();
        (others, voters, is_voter)
    }
}

impl PeerBlobs for RaftPeerBlobs {
    /// Pushes to every other member at once and returns when, with this node's copy if it
    /// is a voter, a majority of the voters holds the blob (a learner's copy does not count). The pushes
    /// still running then go on in the background, so every member normally holds every
    /// blob and a later removal does not take the only copies with it.
    fn replicate(&self, hash: Sha256, size_bytes: u64) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            use futures::StreamExt;
            let (others, voters, is_voter) = self.other_members();
            let needed = other_voter_copies_needed(voters, is_voter);
            let mut pending: futures::stream::FuturesUnordered<_> = others
                .into_iter()
                .map(|member| {
                    let (peers, blobs) = (self.peers.clone(), self.blobs.clone());
                    async move { (member.voter, peers.push_blob(&member.raft_addr, &blobs, hash, size_bytes).await) }
                })
                .collect();
            let (mut stored, mut failures) = (0usize, Vec::new());
            while stored < needed {
                match pending.next().await {
                    Some((voter, Ok(()))) => stored += usize::from(voter),
                    Some((_, Err(error))) => failures.push(error),
                    None => {
                        return Err(format!(
                            "blob {hash} reached {stored} of the {needed} other voters a majority needs: {}",
                            failures.join("; ")
                        ))
                    }
                }
            }
            if !pending.is_empty() {
                let permits = u32::try_from(pending.len()).unwrap_or(u32::MAX);
                if let Ok(permit) = self.background.clone().try_acquire_many_owned(permits) {
                    tokio::spawn(async move {
                        let _permit = permit;
                        while pending.next().await.is_some() {}
                    });
                }
            }
            Ok(())
        })
    }

    /// Asks the other members in turn, starting at a place that depends on the hash, so
    /// that a member that is down does not delay every fetch and the load spreads.
    fn fetch(&self, hash: Sha256, size_bytes: u64) -> Pin<Box<dyn Future<Output = Result<SpooledBlob, String>> + Send + '_>> {
        Box::pin(async move {
            let (mut others, _, _) = self.other_members();
            if !others.is_empty() {
                let start = usize::from(hash.0[0]) % others.len();
                others.rotate_left(start);
            }
            let mut errors = Vec::new();
            for member in others {
                match self.peers.fetch_blob(&member.client_addr, self.blobs.spool(), hash, size_bytes).await {
                    Ok(content) => return Ok(content),
                    Err(error) => errors.push(error),
                }
            }
            Err(format!("no peer could supply blob {hash}: {}", errors.join("; ")))
        })
    }
}

/// Copies on other voters an upload needs before it is acknowledged: with this node's own
/// copy, a majority of the voters; its own copy counts only if it is a voter (a learner,
/// or a member being removed, takes uploads too).
fn other_voter_copies_needed(voters: usize, is_voter: bool) -> usize {
    (voters / 2 + 1).saturating_sub(usize::from(is_voter))
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

#[cfg(test)]
mod tests {
    use super::other_voter_copies_needed;

    #[test]
    fn a_learners_own_copy_does_not_count_toward_an_uploads_majority() {
        assert_eq!(other_voter_copies_needed(1, true), 0, "a single voter holds it alone");
        assert_eq!(other_voter_copies_needed(3, true), 1);
        assert_eq!(other_voter_copies_needed(3, false), 2, "a learner needs two voters of three");
        assert_eq!(other_voter_copies_needed(4, true), 2);
        assert_eq!(other_voter_copies_needed(5, true), 2);
        assert_eq!(other_voter_copies_needed(5, false), 3);
    }
}
