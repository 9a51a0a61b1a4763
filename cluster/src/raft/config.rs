//! Configuration of a [`super::RaftNode`]: identity, addresses, and a limit on everything.

use std::path::PathBuf;
use std::time::Duration;

use super::PeerAddress;
use crate::DriverConfig;

/// Everything a node needs to start. Build it with [`RaftConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id: non-zero, unique in the cluster, never reused after a removal.
    pub id: u64,
    /// host:port where peers reach this node's peer service.
    pub raft_addr: String,
    /// host:port of this node's client API (named by followers in NotLeader answers).
    pub client_addr: String,
    /// Directory of this node's raft log (`<data_dir>/log`) and staged snapshot. One node
    /// per directory.
    pub data_dir: PathBuf,
    /// The founding members, this node included, when creating a new cluster: every
    /// founding member MUST be given the same list. Empty for a node that joins an existing
    /// cluster: it waits until a leader adds it with [`super::RaftNode::add_node`]. Ignored
    /// once the log holds anything.
    pub initial_members: Vec<PeerAddress>,
    /// Addresses of other nodes known in advance, used until the replicated membership
    /// names them (e.g. so a joining node can answer the leader before it learns the
    /// membership).
    pub known_peers: Vec<PeerAddress>,
    /// One Raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before a follower campaigns (randomised up to twice that).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Bytes of entries in one append message (raft-rs `max_size_per_msg`).
    pub message_size_bytes_max: u64,
    /// Append messages in flight to one follower (raft-rs `max_inflight_msgs`).
    pub inflight_messages_max: usize,
    /// Compact the log once this many applied entries accumulated past the retained
    /// ones (0 = never compact).
    pub compaction_interval_entries: u64,
    /// Applied entries kept at the head of the log after a compaction, so that slightly
    /// lagging followers catch up from the log rather than a snapshot.
    pub log_retained_entries: u64,
    /// Messages queued for one peer; beyond this, messages are dropped and the peer is
    /// reported unreachable (a slow peer never blocks the others).
    pub peer_queue_depth_max: usize,
    /// Messages sent to one peer in one request.
    pub peer_batch_messages_max: usize,
    /// Bytes of messages sent to one peer in one request (at least one message is sent).
    pub peer_batch_size_bytes_max: usize,
    /// Size of one gRPC message of the peer protocol, both ways.
    pub grpc_message_size_bytes_max: usize,
    /// Size of one chunk of a streamed snapshot: the state is read, sent and staged this
    /// much at a time (a single record larger than that goes alone in its chunk, within
    /// `grpc_message_size_bytes_max`). A snapshot as a whole has no size limit but the
    /// receiver's disk.
    pub snapshot_chunk_size_bytes: usize,
    /// Messages from peers waiting for the driver; beyond this they are refused.
    pub inbound_queue_depth_max: usize,
    /// Read-barrier and admin requests waiting for the driver.
    pub request_queue_depth_max: usize,
    pub peer_connect_timeout: Duration,
    pub peer_request_timeout: Duration,
    /// A read round asks the leader again after this long without an answer (doubling up
    /// to 8 times this on each retry); at once when the leader or term changed.
    pub read_retry_interval: Duration,
    /// A read barrier fails with `ProposeError::Unavailable` after this long.
    pub read_timeout: Duration,
    /// How long `add_node` waits for a learner to catch up before promoting it.
    pub catch_up_timeout: Duration,
    /// How long an admin operation waits for each membership change to apply.
    pub admin_timeout: Duration,
    /// The proposal pipeline: queue depth, group-commit batch bounds, command size.
    pub driver: DriverConfig,
    /// TLS for dialling peers (the cluster CA as the only root, this node's certificate as
    /// its client identity); `None` dials `http://`. The serving side is the embedder's:
    /// it serves [`super::RaftNode::peer_service`] behind its own TLS acceptor.
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
    /// TEST ONLY (power-loss tests prove they catch it): write the log without fsync.
    pub unsafe_skip_log_fsync: bool,
}

impl RaftConfig {
    /// A configuration with the default limits: 100 ms ticks, elections after 1-2 s,
    /// heartbeats every 200 ms, 1 MiB append messages, 256 in flight, compaction every
    /// 10,000 entries keeping 1,000.
    pub fn new(id: u64, raft_addr: impl Into<String>, client_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            id,
            raft_addr: raft_addr.into(),
            client_addr: client_addr.into(),
            data_dir: data_dir.into(),
            initial_members: Vec::new(),
            known_peers: Vec::new(),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            message_size_bytes_max: 1024 * 1024,
            inflight_messages_max: 256,
            compaction_interval_entries: 10_000,
            log_retained_entries: 1_000,
            peer_queue_depth_max: 4096,
            peer_batch_messages_max: 256,
            peer_batch_size_bytes_max: 4 * 1024 * 1024,
            grpc_message_size_bytes_max: 16 * 1024 * 1024,
            snapshot_chunk_size_bytes: 1024 * 1024,
            inbound_queue_depth_max: 8192,
            request_queue_depth_max: 4096,
            peer_connect_timeout: Duration::from_secs(2),
            peer_request_timeout: Duration::from_secs(10),
            read_retry_interval: Duration::from_millis(50),
            read_timeout: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(60),
            admin_timeout: Duration::from_secs(10),
            driver: DriverConfig::default(),
            peer_tls: None,
            unsafe_skip_log_fsync: false,
        }
    }

    /// This node's own address record.
    pub fn address(&self) -> PeerAddress {
        PeerAddress { id: self.id, raft_addr: self.raft_addr.clone(), client_addr: self.client_addr.clone() }
    }

    /// Checks every field; the message names the field to fix.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("election_ticks", self.election_ticks),
            ("heartbeat_ticks", self.heartbeat_ticks),
            ("inflight_messages_max", self.inflight_messages_max),
            ("peer_queue_depth_max", self.peer_queue_depth_max),
            ("peer_batch_messages_max", self.peer_batch_messages_max),
            ("peer_batch_size_bytes_max", self.peer_batch_size_bytes_max),
            ("snapshot_chunk_size_bytes", self.snapshot_chunk_size_bytes),
            ("inbound_queue_depth_max", self.inbound_queue_depth_max),
            ("request_queue_depth_max", self.request_queue_depth_max),
            ("driver.proposal_queue_depth_max", self.driver.proposal_queue_depth_max),
            ("driver.batch_entries_max", self.driver.batch_entries_max),
            ("driver.batch_size_bytes_max", self.driver.batch_size_bytes_max),
            ("driver.command_size_bytes_max", self.driver.command_size_bytes_max),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.id == 0 {
            return Err("id must not be 0".into());
        }
        if self.raft_addr.is_empty() || self.client_addr.is_empty() {
            return Err("raft_addr and client_addr must be set".into());
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err("election_ticks must be greater than heartbeat_ticks".into());
        }
        if self.tick_interval.is_zero() {
            return Err("tick_interval must be greater than 0".into());
        }
        if !self.initial_members.is_empty() && !self.initial_members.iter().any(|member| member.id == self.id) {
            return Err("initial_members must include this node".into());
        }
        let mut ids: Vec<u64> = self.initial_members.iter().map(|member| member.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.initial_members.len() || ids.contains(&0) {
            return Err("initial_members must have distinct, non-zero ids".into());
        }
        if self.driver.command_size_bytes_max as u64 + 1024 > self.grpc_message_size_bytes_max as u64 {
            return Err("grpc_message_size_bytes_max must exceed driver.command_size_bytes_max".into());
        }
        // A chunk holds up to a chunk's worth of records plus one more, and no record is
        // larger than the command that wrote it.
        if self.snapshot_chunk_size_bytes as u64 + self.driver.command_size_bytes_max as u64 + 1024 > self.grpc_message_size_bytes_max as u64 {
            return Err("grpc_message_size_bytes_max must exceed snapshot_chunk_size_bytes plus driver.command_size_bytes_max".into());
        }
        if self.read_retry_interval.is_zero() || self.read_timeout < self.read_retry_interval {
            return Err("read_timeout must be at least read_retry_interval, which must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn founding_members_must_include_the_node_itself() {
        let mut config = RaftConfig::new(1, "127.0.0.1:1", "127.0.0.1:2", "/tmp/x");
        assert!(config.validate().is_ok());
        config.initial_members =
            vec![PeerAddress { id: 2, raft_addr: "127.0.0.1:3".into(), client_addr: "127.0.0.1:4".into() }];
        assert!(config.validate().unwrap_err().contains("initial_members"));
    }
}
