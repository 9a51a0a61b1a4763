//! The peer transport: raft messages between nodes over a small tonic service
//! (`kyso.cluster.v1.RaftPeer`), each raft message an opaque protobuf 2 payload.
//!
//! Outbound: one bounded queue and one task per peer. The driver only ever `try_send`s: a
//! full queue (a slow or dead peer) drops the message and reports the peer unreachable to
//! raft-rs, so no peer ever blocks the driver or the other peers. A peer task sends the
//! messages it finds queued as one batch per request. A snapshot message goes as a stream
//! of bounded chunks read from the state view the replica made (see
//! [`SnapshotSources`]): a blocking task reads the state piece by piece and hands each
//! piece to a channel of [`SNAPSHOT_CHUNKS_IN_FLIGHT`] chunks that the gRPC stream drains,
//! so the sender holds a few chunks whatever the state's size and the driver thread never
//! reads the state. The outcome is reported to raft-rs (`report_snapshot`); on a failure
//! raft-rs sends the snapshot again later (a new stream, from the start).
//!
//! Inbound: [`PeerService`] checks that each message is addressed to this node by the peer
//! that sent it, and hands it to the driver without waiting (a full driver queue refuses
//! the batch; the sender's raft retransmits). A snapshot stream is written piece by piece
//! into the state machine's staging area as it arrives ([`crate::SnapshotSink`]); only when
//! the last chunk arrived and the size and CRC-32 of every piece match is the staged state
//! finished and the snapshot message handed to the driver, which swaps the state in.
//!
//! Security: this service parses protobuf 2 from the network (RUSTSEC-2024-0437): it must
//! only be reachable by authenticated peers. TLS is the job of the server it is mounted
//! on; [`serve_peers`] serves plain HTTP/2 for tests and trusted networks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use super::codec::{self, pb};
use super::config::RaftConfig;
use super::driver::Internal;
use super::replica::Outbox;
use super::storage::SnapshotSources;
use super::PeerAddress;
use crate::{StateMachine, StateMachineError};
use pb::raft_peer_client::RaftPeerClient;
use pb::raft_peer_server::{RaftPeer, RaftPeerServer};

/// Peers this node exchanges no messages with (fault injection for test harnesses; empty in
/// normal operation). Shared by the outbound and inbound sides.
pub(crate) type Isolation = Arc<std::sync::RwLock<std::collections::BTreeSet<u64>>>;

fn is_isolated(isolation: &Isolation, id: u64) -> bool {
    isolation.read().map(|isolated| isolated.contains(&id)).unwrap_or(false)
}

/// Chunks of a snapshot stream read ahead of the network, per transfer.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 2;

/// Once the last chunk left, how many `peer_request_timeout`s the receiver may take to make
/// the staged state durable and answer.
const SNAPSHOT_FINISH_TIMEOUTS: u32 = 30;

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
    sources: SnapshotSources,
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
            sources: SnapshotSources::default(),
        }
    }

    /// Shares the replica's snapshot views, which peer tasks stream from.
    pub fn set_snapshot_sources(&mut self, sources: SnapshotSources) {
        self.sources = sources;
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
                self.sources.clone(),
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

fn peer_endpoint(raft_addr: &str, limits: &TransportLimits, request_timeout: Option<std::time::Duration>) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = if limits.peer_tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{raft_addr}"))?.connect_timeout(limits.peer_connect_timeout).tcp_nodelay(true);
    if let Some(timeout) = request_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    match &limits.peer_tls {
        Some(tls) => endpoint.tls_config(tls.clone()),
        None => Ok(endpoint),
    }
}

async fn run_peer(
    peer_id: u64,
    raft_addr: String,
    mut queue: mpsc::Receiver<Message>,
    me: pb::PeerAddress,
    limits: Arc<TransportLimits>,
    reports: crossbeam_channel::Sender<Internal>,
    sources: SnapshotSources,
) {
    // Snapshot streams have no overall deadline (they last as long as the state is large);
    // `send_snapshot` watches their progress instead.
    let endpoints = peer_endpoint(&raft_addr, &limits, Some(limits.peer_request_timeout))
        .and_then(|messages| Ok((messages, peer_endpoint(&raft_addr, &limits, None)?)));
    let (endpoint, snapshot_endpoint) = match endpoints {
        Ok(endpoints) => endpoints,
        Err(error) => {
            tracing::error!(peer_id, %raft_addr, %error, "peer address is not usable; messages to it are dropped");
            return;
        }
    };
    let mut client = RaftPeerClient::new(endpoint.connect_lazy())
        .max_encoding_message_size(limits.grpc_message_size_bytes_max)
        .max_decoding_message_size(limits.grpc_message_size_bytes_max);
    let mut snapshot_client = RaftPeerClient::new(snapshot_endpoint.connect_lazy())
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
            let index = snapshot.get_snapshot().get_metadata().index;
            let started = std::time::Instant::now();
            let outcome = send_snapshot(&mut snapshot_client, &me, peer_id, snapshot, &sources, &limits).await;
            crate::metrics::SNAPSHOT_SENDS.with_label_values(&[if outcome.is_ok() { "finished" } else { "failed" }]).inc();
            let status = match outcome {
                Ok(size_bytes) => {
                    crate::metrics::SNAPSHOT_SENT_BYTES.inc_by(size_bytes);
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::info!(peer_id, index, size_bytes, seconds, "sent a snapshot");
                    SnapshotStatus::Finish
                }
                Err(status) => {
                    tracing::warn!(peer_id, %raft_addr, index, %status, "sending a snapshot failed; raft will send it again");
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

/// Streams the state view of `message`'s snapshot to `to`; returns the bytes of state sent.
async fn send_snapshot(
    client: &mut RaftPeerClient<tonic::transport::Channel>,
    me: &pb::PeerAddress,
    to: u64,
    message: Message,
    sources: &SnapshotSources,
    limits: &TransportLimits,
) -> Result<u64, Status> {
    let index = message.get_snapshot().get_metadata().index;
    let source = sources.get(index).ok_or_else(|| {
        Status::failed_precondition(format!("the state view of snapshot {index} was released; raft asks for a new one"))
    })?;
    let (chunks, pending) = mpsc::channel::<pb::SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
    let piece_size_bytes = limits.snapshot_chunk_size_bytes;
    let mut first = Some((me.clone(), codec::encode_raft_message(&message)));
    let reader = tokio::task::spawn_blocking(move || -> Result<u64, StateMachineError> {
        let mut send = |data: Vec<u8>, last: Option<(u64, u32)>| {
            let (from, message) = match first.take() {
                Some((me, header)) => (Some(me), header),
                None => (None, Vec::new()),
            };
            let (data_size_bytes, data_crc32) = last.unwrap_or((0, 0));
            let chunk = pb::SnapshotChunk { from, to, message, data_size_bytes, data, last: last.is_some(), data_crc32 };
            chunks.blocking_send(chunk).map_err(|_| StateMachineError("the snapshot stream closed".into()))
        };
        let mut hasher = crc32fast::Hasher::new();
        let mut size_bytes = 0u64;
        source.read(piece_size_bytes, &mut |piece| {
            hasher.update(&piece);
            size_bytes += piece.len() as u64;
            send(piece, None)
        })?;
        send(Vec::new(), Some((size_bytes, hasher.finalize())))?;
        Ok(size_bytes)
    });
    let progress = Arc::new(Progress::default());
    let watched = progress.clone();
    let stream = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(pending), move |chunk| {
        watched.record(chunk.last);
        chunk
    });
    let call = client.send_snapshot(stream);
    let outcome = tokio::select! {
        result = call => result.map(|_| ()),
        stalled = progress.stalled(limits.peer_request_timeout) => Err(stalled),
    };
    let read = reader.await.map_err(|error| Status::internal(format!("the snapshot reader failed: {error}")))?;
    outcome?;
    read.map_err(|error| Status::internal(format!("reading the snapshot failed: {error}")))
}

/// When a snapshot stream last handed a chunk to gRPC, to stop a transfer that stalled.
#[derive(Default)]
struct Progress {
    /// When the last chunk was handed over, and whether it was the stream's last.
    at: std::sync::Mutex<(Option<std::time::Instant>, bool)>,
}

impl Progress {
    fn record(&self, last: bool) {
        if let Ok(mut at) = self.at.lock() {
            *at = (Some(std::time::Instant::now()), last);
        }
    }

    /// Resolves once no chunk moved for `timeout` (or, after the last chunk, for
    /// [`SNAPSHOT_FINISH_TIMEOUTS`] times that, while the receiver makes the state durable).
    async fn stalled(&self, timeout: std::time::Duration) -> Status {
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(timeout / 4).await;
            let (at, last) = self.at.lock().map(|at| *at).unwrap_or((None, false));
            let quiet = at.unwrap_or(started).elapsed();
            let allowed = if last { timeout * SNAPSHOT_FINISH_TIMEOUTS } else { timeout };
            if quiet >= allowed {
                return Status::deadline_exceeded(format!("the snapshot stream made no progress for {} ms", quiet.as_millis()));
            }
        }
    }
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
    /// Where received snapshots are staged.
    state: Arc<dyn StateMachine>,
    isolated: Isolation,
}

impl PeerService {
    pub(crate) fn new(node_id: u64, inbound: crossbeam_channel::Sender<Inbound>, state: Arc<dyn StateMachine>) -> Self {
        PeerService { node_id, inbound, state, isolated: Isolation::default() }
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
        let mut chunk = chunks.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let from = self.check_sender(chunk.from.take(), chunk.to, authenticated)?;
        let message = self.decode(&chunk.message, &from)?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(Status::invalid_argument("the snapshot stream does not carry a snapshot message"));
        }
        codec::decode_snapshot(&message.get_snapshot().data).map_err(|error| Status::invalid_argument(error.to_string()))?;
        let index = message.get_snapshot().get_metadata().index;
        let state = self.state.clone();
        let mut sink = blocking(move || state.receive_snapshot(index)).await.map_err(|error| {
            Status::unavailable(format!("node {} cannot receive snapshot {index} now: {error}", self.node_id))
        })?;
        let mut hasher = crc32fast::Hasher::new();
        let mut size_bytes = 0u64;
        loop {
            hasher.update(&chunk.data);
            size_bytes += chunk.data.len() as u64;
            crate::metrics::SNAPSHOT_RECEIVED_BYTES.inc_by(chunk.data.len() as u64);
            if !chunk.data.is_empty() {
                let data = std::mem::take(&mut chunk.data);
                sink = blocking(move || sink.write(&data).map(|()| sink)).await.map_err(staging_failed)?;
            }
            if chunk.last {
                break;
            }
            chunk = chunks
                .message()
                .await?
                .ok_or_else(|| Status::invalid_argument(format!("snapshot stream ended after {size_bytes} bytes, before its last chunk")))?;
        }
        let crc32 = hasher.finalize();
        if size_bytes != chunk.data_size_bytes || crc32 != chunk.data_crc32 {
            return Err(Status::data_loss(format!(
                "snapshot {index} arrived damaged: {size_bytes} bytes with CRC-32 {crc32:08x}, the sender read {} bytes with CRC-32 {:08x}",
                chunk.data_size_bytes, chunk.data_crc32
            )));
        }
        blocking(move || sink.finish()).await.map_err(staging_failed)?;
        tracing::info!(index, size_bytes, from = from.id, "received a snapshot; staged for install");
        self.deliver(message, &from)?;
        Ok(Response::new(pb::SendAck {}))
    }
}

/// Runs a state-machine call on the blocking pool (it writes to disk).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StateMachineError> + Send + 'static,
) -> Result<T, StateMachineError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| StateMachineError(format!("staging task failed: {error}")))?
}

fn staging_failed(error: StateMachineError) -> Status {
    Status::internal(format!("staging the snapshot failed: {error}"))
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
