//! The peer transport: raft messages between nodes over a small tonic service
//! (`kyso.cluster.v1.RaftPeer`), each raft message an opaque protobuf 2 payload.
//!
//! Outbound: one bounded queue and one task per peer. The driver only ever `try_send`s: a
//! full queue (a slow or dead peer) drops the message and reports the peer unreachable to
//! raft-rs, so no peer ever blocks the driver or the other peers. A peer task sends the
//! messages it finds queued as one batch per request; a snapshot message goes as a stream
//! of bounded chunks, and its outcome is reported to raft-rs (`report_snapshot`).
//!
//! Inbound: [`PeerService`] checks that each message is addressed to this node by the peer
//! that sent it, and hands it to the driver without waiting (a full driver queue refuses
//! the batch; the sender's raft retransmits).
//!
//! Security: this service parses protobuf 2 from the network (RUSTSEC-2024-0437): it must
//! only be reachable by authenticated peers. TLS is the job of the server it is mounted
//! on; [`serve_peers`] serves plain HTTP/2 for tests and trusted networks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use super::codec::{self, pb};
use super::config::RaftConfig;
use super::driver::Internal;
use super::replica::Outbox;
use super::PeerAddress;
use pb::raft_peer_client::RaftPeerClient;
use pb::raft_peer_server::{RaftPeer, RaftPeerServer};

/// Peers this node exchanges no messages with (fault injection for test harnesses; empty in
/// normal operation). Shared by the outbound and inbound sides.
pub(crate) type Isolation = Arc<std::sync::RwLock<std::collections::BTreeSet<u64>>>;

fn is_isolated(isolation: &Isolation, id: u64) -> bool {
    isolation.read().map(|isolated| isolated.contains(&id)).unwrap_or(false)
}

/// The transport limits, copied from [`RaftConfig`].
#[derive(Debug, Clone)]
pub(crate) struct TransportLimits {
    pub peer_queue_depth_max: usize,
    pub peer_batch_messages_max: usize,
    pub peer_batch_size_bytes_max: usize,
    pub grpc_message_size_bytes_max: usize,
    pub snapshot_chunk_size_bytes: usize,
    pub peer_connect_timeout: std::time::Duration,
    pub peer_request_timeout: std::time::Duration,
    /// TLS toward peers (`https://`), or plain text when `None`.
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl TransportLimits {
    pub fn from_config(config: &RaftConfig) -> Self {
        TransportLimits {
            peer_queue_depth_max: config.peer_queue_depth_max,
            peer_batch_messages_max: config.peer_batch_messages_max,
            peer_batch_size_bytes_max: config.peer_batch_size_bytes_max,
            grpc_message_size_bytes_max: config.grpc_message_size_bytes_max,
            snapshot_chunk_size_bytes: config.snapshot_chunk_size_bytes,
            peer_connect_timeout: config.peer_connect_timeout,
            peer_request_timeout: config.peer_request_timeout,
            peer_tls: config.peer_tls.clone(),
        }
    }
}

struct PeerQueue {
    raft_addr: String,
    queue: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

/// The outbound side, owned by the driver thread.
pub(crate) struct Outbound {
    me: pb::PeerAddress,
    runtime: tokio::runtime::Handle,
    limits: Arc<TransportLimits>,
    /// Addresses: the replicated membership first, then hints (configuration, senders).
    members: BTreeMap<u64, PeerAddress>,
    hints: BTreeMap<u64, PeerAddress>,
    peers: HashMap<u64, PeerQueue>,
    /// Peers a message could not be queued for: (id, was a snapshot).
    undeliverable: Vec<(u64, bool)>,
    reports: crossbeam_channel::Sender<Internal>,
    isolated: Isolation,
}

impl Outbound {
    pub fn new(
        me: &PeerAddress,
        runtime: tokio::runtime::Handle,
        limits: TransportLimits,
        hints: &[PeerAddress],
        reports: crossbeam_channel::Sender<Internal>,
    ) -> Self {
        Outbound {
            me: codec::peer_to_pb(me),
            runtime,
            limits: Arc::new(limits),
            members: BTreeMap::new(),
            hints: hints.iter().map(|peer| (peer.id, peer.clone())).collect(),
            peers: HashMap::new(),
            undeliverable: Vec::new(),
            reports,
            isolated: Isolation::default(),
        }
    }

    /// Shares the set of peers to cut off (see [`Isolation`]).
    pub fn set_isolation(&mut self, isolation: Isolation) {
        self.isolated = isolation;
    }

    /// Replaces the member addresses by the replicated membership's.
    pub fn set_members(&mut self, members: &BTreeMap<u64, PeerAddress>) {
        self.members = members.clone();
    }

    /// Remembers the address a peer announced in its own request, unless the replicated
    /// membership already names it.
    pub fn learn(&mut self, peer: PeerAddress) {
        if peer.id != self.me.id && !self.members.contains_key(&peer.id) {
            self.hints.insert(peer.id, peer);
        }
    }

    pub fn address(&self, id: u64) -> Option<&PeerAddress> {
        self.members.get(&id).or_else(|| self.hints.get(&id))
    }

    pub fn take_undeliverable(&mut self) -> Vec<(u64, bool)> {
        std::mem::take(&mut self.undeliverable)
    }

    /// Stops every peer task; queued messages are dropped.
    pub fn close(&mut self) {
        for (_, peer) in self.peers.drain() {
            peer.task.abort();
        }
    }

    fn queue_for(&mut self, id: u64) -> Option<&mpsc::Sender<Message>> {
        let raft_addr = self.address(id)?.raft_addr.clone();
        let current = self.peers.get(&id).is_some_and(|peer| peer.raft_addr == raft_addr && !peer.queue.is_closed());
        if !current {
            if let Some(old) = self.peers.remove(&id) {
                old.task.abort();
            }
            let (queue, receiver) = mpsc::channel(self.limits.peer_queue_depth_max);
            let task = self.runtime.spawn(run_peer(
                id,
                raft_addr.clone(),
                receiver,
                self.me.clone(),
                self.limits.clone(),
                self.reports.clone(),
            ));
            self.peers.insert(id, PeerQueue { raft_addr, queue, task });
        }
        self.peers.get(&id).map(|peer| &peer.queue)
    }
}

impl Outbox for Outbound {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            if is_isolated(&self.isolated, to) {
                self.undeliverable.push((to, is_snapshot));
                continue;
            }
            let queued = match self.queue_for(to) {
                Some(queue) => queue.try_send(message).is_ok(),
                None => false,
            };
            if !queued {
                self.undeliverable.push((to, is_snapshot));
            }
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.close();
    }
}

async fn run_peer(
    peer_id: u64,
    raft_addr: String,
    mut queue: mpsc::Receiver<Message>,
    me: pb::PeerAddress,
    limits: Arc<TransportLimits>,
    reports: crossbeam_channel::Sender<Internal>,
) {
    let scheme = if limits.peer_tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{raft_addr}")).and_then(|endpoint| {
        let endpoint = endpoint.connect_timeout(limits.peer_connect_timeout).timeout(limits.peer_request_timeout).tcp_nodelay(true);
        match &limits.peer_tls {
            Some(tls) => endpoint.tls_config(tls.clone()),
            None => Ok(endpoint),
        }
    });
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::error!(peer_id, %raft_addr, %error, "peer address is not usable; messages to it are dropped");
            return;
        }
    };
    let mut client = RaftPeerClient::new(endpoint.connect_lazy())
        .max_encoding_message_size(limits.grpc_message_size_bytes_max)
        .max_decoding_message_size(limits.grpc_message_size_bytes_max);
    while let Some(first) = queue.recv().await {
        let (messages, snapshots) = drain_batch(first, &mut queue, &limits);
        if !messages.is_empty() {
            let batch = pb::MessageBatch { from: Some(me.clone()), to: peer_id, messages };
            if let Err(status) = client.send(batch).await {
                tracing::debug!(peer_id, %raft_addr, %status, "sending raft messages failed");
                let _ = reports.send(Internal::Unreachable(peer_id));
            }
        }
        for snapshot in snapshots {
            let outcome = send_snapshot(&mut client, &me, peer_id, snapshot, limits.snapshot_chunk_size_bytes).await;
            crate::metrics::SNAPSHOT_SENDS.with_label_values(&[if outcome.is_ok() { "finished" } else { "failed" }]).inc();
            let status = match outcome {
                Ok(()) => SnapshotStatus::Finish,
                Err(status) => {
                    tracing::warn!(peer_id, %raft_addr, %status, "sending a snapshot failed");
                    let _ = reports.send(Internal::Unreachable(peer_id));
                    SnapshotStatus::Failure
                }
            };
            let _ = reports.send(Internal::SnapshotStatus(peer_id, status));
        }
    }
}

/// Takes what is queued, up to the batch limits: encoded messages, and snapshot messages
/// (sent separately, streamed).
fn drain_batch(first: Message, queue: &mut mpsc::Receiver<Message>, limits: &TransportLimits) -> (Vec<Vec<u8>>, Vec<Message>) {
    let mut messages = Vec::new();
    let mut snapshots = Vec::new();
    let mut size_bytes = 0;
    let mut next = Some(first);
    while let Some(message) = next.take() {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            snapshots.push(message);
        } else {
            let encoded = codec::encode_raft_message(&message);
            size_bytes += encoded.len();
            messages.push(encoded);
        }
        let full = messages.len() + snapshots.len() >= limits.peer_batch_messages_max
            || size_bytes >= limits.peer_batch_size_bytes_max;
        if !full {
            next = queue.try_recv().ok();
        }
    }
    (messages, snapshots)
}

async fn send_snapshot(
    client: &mut RaftPeerClient<tonic::transport::Channel>,
    me: &pb::PeerAddress,
    to: u64,
    mut message: Message,
    chunk_size_bytes: usize,
) -> Result<(), Status> {
    let data: Bytes = std::mem::take(&mut message.mut_snapshot().data);
    let header = codec::encode_raft_message(&message);
    let total = data.len();
    let chunk_count = total.div_ceil(chunk_size_bytes).max(1);
    let me = me.clone();
    let chunks = (0..chunk_count).map(move |position| {
        let start = position * chunk_size_bytes;
        let end = (start + chunk_size_bytes).min(total);
        let first = position == 0;
        pb::SnapshotChunk {
            from: first.then(|| me.clone()),
            to,
            message: if first { header.clone() } else { Vec::new() },
            data_size_bytes: if first { total as u64 } else { 0 },
            data: data.slice(start..end).to_vec(),
        }
    });
    client.send_snapshot(tokio_stream::iter(chunks)).await?;
    Ok(())
}

/// The node id the caller's TLS certificate is bound to, attached to each request by the
/// embedding server's authentication layer (kyso's `api::auth`). When present, a batch or
/// snapshot that claims another sender is refused: a member's certificate speaks for that
/// member only. Absent only where the embedder serves peers without identities (plain
/// text on a trusted network, tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthenticatedPeer(pub u64);

/// A message from a peer, for the driver.
pub(crate) struct Inbound {
    pub message: Message,
    pub from: PeerAddress,
}

/// The inbound side of the peer protocol. Mount it with [`super::RaftNode::peer_service`]
/// on a tonic server, or let [`serve_peers`] serve it.
#[derive(Clone)]
pub struct PeerService {
    node_id: u64,
    inbound: crossbeam_channel::Sender<Inbound>,
    snapshot_size_bytes_max: usize,
    isolated: Isolation,
}

impl PeerService {
    pub(crate) fn new(node_id: u64, inbound: crossbeam_channel::Sender<Inbound>, snapshot_size_bytes_max: usize) -> Self {
        PeerService { node_id, inbound, snapshot_size_bytes_max, isolated: Isolation::default() }
    }

    /// Refuses messages from the peers in `isolation` (fault injection).
    pub(crate) fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolated = isolation;
        self
    }

    pub(crate) fn into_server(self, grpc_message_size_bytes_max: usize) -> RaftPeerServer<PeerService> {
        RaftPeerServer::new(self)
            .max_decoding_message_size(grpc_message_size_bytes_max)
            .max_encoding_message_size(grpc_message_size_bytes_max)
    }

    fn check_sender(&self, from: Option<pb::PeerAddress>, to: u64, authenticated: Option<AuthenticatedPeer>) -> Result<PeerAddress, Status> {
        let from = from.ok_or_else(|| Status::invalid_argument("the sender's address is missing"))?;
        if let Some(AuthenticatedPeer(id)) = authenticated {
            if id != from.id {
                return Err(Status::permission_denied(format!(
                    "a batch claiming to come from node {} arrived with node {id}'s certificate; a member speaks only for itself",
                    from.id
                )));
            }
        }
        if to != self.node_id {
            return Err(Status::invalid_argument(format!(
                "messages for node {to} reached node {}: check the peer addresses",
                self.node_id
            )));
        }
        let from = codec::peer_from_pb(&from);
        if is_isolated(&self.isolated, from.id) {
            return Err(Status::unavailable(format!("node {} is cut off from node {} (fault injection)", self.node_id, from.id)));
        }
        Ok(from)
    }

    fn decode(&self, bytes: &[u8], from: &PeerAddress) -> Result<Message, Status> {
        let message = codec::decode_raft_message(bytes).map_err(|error| Status::invalid_argument(error.to_string()))?;
        if message.from != from.id || message.to != self.node_id {
            return Err(Status::invalid_argument(format!(
                "a message from {} to {} arrived in a request from {} to {}",
                message.from, message.to, from.id, self.node_id
            )));
        }
        Ok(message)
    }

    fn deliver(&self, message: Message, from: &PeerAddress) -> Result<(), Status> {
        let inbound = Inbound { message, from: from.clone() };
        self.inbound.try_send(inbound).map_err(|error| match error {
            crossbeam_channel::TrySendError::Full(_) => Status::resource_exhausted("the raft driver is behind; retry"),
            crossbeam_channel::TrySendError::Disconnected(_) => Status::unavailable("this raft node stopped"),
        })
    }
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn send(&self, request: Request<pb::MessageBatch>) -> Result<Response<pb::SendAck>, Status> {
        let authenticated = request.extensions().get::<AuthenticatedPeer>().copied();
        let batch = request.into_inner();
        let from = self.check_sender(batch.from, batch.to, authenticated)?;
        let messages = batch
            .messages
            .iter()
            .map(|bytes| self.decode(bytes, &from))
            .collect::<Result<Vec<Message>, Status>>()?;
        for message in messages {
            self.deliver(message, &from)?;
        }
        Ok(Response::new(pb::SendAck {}))
    }

    async fn send_snapshot(&self, request: Request<Streaming<pb::SnapshotChunk>>) -> Result<Response<pb::SendAck>, Status> {
        let authenticated = request.extensions().get::<AuthenticatedPeer>().copied();
        let mut chunks = request.into_inner();
        let first = chunks.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let from = self.check_sender(first.from, first.to, authenticated)?;
        let mut message = self.decode(&first.message, &from)?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("the snapshot stream does not carry a snapshot message"));
        }
        let total = usize::try_from(first.data_size_bytes).unwrap_or(usize::MAX);
        if total > self.snapshot_size_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "snapshot of {total} bytes exceeds the limit of {} bytes",
                self.snapshot_size_bytes_max
            )));
        }
        let mut data = Vec::with_capacity(total);
        data.extend_from_slice(&first.data);
        while let Some(chunk) = chunks.message().await? {
            if data.len() + chunk.data.len() > total {
                return Err(Status::invalid_argument("snapshot chunks exceed the announced size"));
            }
            data.extend_from_slice(&chunk.data);
        }
        if data.len() != total {
            return Err(Status::invalid_argument(format!("snapshot stream ended at {} of {total} bytes", data.len())));
        }
        message.mut_snapshot().data = Bytes::from(data);
        self.deliver(message, &from)?;
        Ok(Response::new(pb::SendAck {}))
    }
}

/// Serves `node`'s peer service alone on `listener` (plain HTTP/2) until `shutdown`
/// completes. For tests and trusted networks; in production mount
/// [`super::RaftNode::peer_service`] on the node's TLS server instead.
pub async fn serve_peers(
    node: &super::RaftNode,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(node.peer_service())
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), shutdown)
        .await
}
