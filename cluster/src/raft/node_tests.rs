//! The real thing in one process: three (or four) [`RaftNode`]s with raft-engine logs in
//! temporary directories, talking gRPC over 127.0.0.1 on ephemeral ports. Every wait has a
//! generous deadline (the machine is slow and shared) and polls a condition; no test
//! sleeps for a fixed time to let something happen.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{serve_peers, AdminError, PeerAddress, RaftConfig, RaftNode, Role};
use crate::{Entry, ProposeError, Proposer, StateMachine, StateMachineError};

const DEADLINE: Duration = Duration::from_secs(60);

/// A durable test state machine: every entry in order, the whole history rewritten
/// atomically (temp file + rename + fsync) on each apply.
struct FileState {
    path: PathBuf,
    entries: Mutex<Vec<Bytes>>,
    restores: std::sync::atomic::AtomicUsize,
    /// When set, every apply fails as a full disk would.
    fail: std::sync::atomic::AtomicBool,
    staging: crate::memory_snapshot::Staging,
}

impl FileState {
    fn open(path: &Path) -> Arc<FileState> {
        let entries = match std::fs::read(path) {
            Ok(bytes) => decode(&bytes),
            Err(_) => Vec::new(),
        };
        Arc::new(FileState { path: path.to_path_buf(), entries: Mutex::new(entries), restores: Default::default(), fail: Default::default(), staging: Default::default() })
    }

    fn commands(&self) -> Vec<Bytes> {
        self.entries.lock().unwrap().iter().filter(|data| !data.is_empty()).cloned().collect()
    }

    fn entries(&self) -> Vec<Bytes> {
        self.entries.lock().unwrap().clone()
    }

    fn persist(&self, entries: &[Bytes]) -> Result<(), StateMachineError> {
        let temporary = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            std::io::Write::write_all(&mut file, &encode(entries))?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|error| StateMachineError(error.to_string()))
    }
}

fn encode(entries: &[Bytes]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for data in entries {
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        bytes.extend_from_slice(data);
    }
    bytes
}

fn decode(mut bytes: &[u8]) -> Vec<Bytes> {
    let mut entries = Vec::new();
    while bytes.len() >= 4 {
        let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        entries.push(Bytes::copy_from_slice(&bytes[4..4 + length]));
        bytes = &bytes[4 + length..];
    }
    entries
}

impl StateMachine for FileState {
    fn apply(&self, batch: &[Entry]) -> Result<Vec<Bytes>, StateMachineError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StateMachineError("disk full".into()));
        }
        let mut entries = self.entries.lock().unwrap();
        let mut next = entries.clone();
        for entry in batch {
            assert_eq!(entry.index, next.len() as u64 + 1, "entries must arrive in order, once");
            next.push(entry.data.clone());
        }
        self.persist(&next)?;
        *entries = next;
        Ok(batch.iter().map(|entry| Bytes::from(format!("applied at {}", entry.index))).collect())
    }

    fn applied_index(&self) -> Result<u64, StateMachineError> {
        Ok(self.entries.lock().unwrap().len() as u64)
    }

    fn snapshot(&self) -> Result<Arc<dyn crate::SnapshotSource>, StateMachineError> {
        let entries = self.entries.lock().unwrap();
        Ok(Arc::new(crate::memory_snapshot::BytesSource { index: entries.len() as u64, bytes: Bytes::from(encode(&entries)) }))
    }

    fn receive_snapshot(&self, index: u64) -> Result<Box<dyn crate::SnapshotSink>, StateMachineError> {
        Ok(self.staging.sink(index))
    }

    fn restore(&self, index: u64) -> Result<(), StateMachineError> {
        let Some(data) = self.staging.take(index) else {
            if self.applied_index()? == index {
                return Ok(());
            }
            return Err(StateMachineError(format!("no snapshot is staged at {index}")));
        };
        let restored = decode(&data);
        assert_eq!(restored.len() as u64, index);
        let mut entries = self.entries.lock().unwrap();
        self.persist(&restored)?;
        *entries = restored;
        self.restores.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

struct TestNode {
    config: RaftConfig,
    node: RaftNode,
    state: Arc<FileState>,
    stop_server: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl TestNode {
    async fn start(config: RaftConfig, listener: tokio::net::TcpListener) -> TestNode {
        let state = FileState::open(&config.data_dir.join("state.bin"));
        let node = RaftNode::start(config.clone(), state.clone()).await.expect("node starts");
        let (stop_server, stopped) = oneshot::channel::<()>();
        let served = node.clone();
        let server = tokio::spawn(async move {
            serve_peers(&served, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("peer server runs");
        });
        TestNode { config, node, state, stop_server: Some(stop_server), server }
    }

    /// Stops the node and its server, and waits until both released their resources.
    /// A graceful server stop waits for open connections, and on a shared machine a
    /// stranger may hold one to a recycled ephemeral port: after a bounded wait the server
    /// task is aborted, which closes the listening socket all the same.
    async fn stop(mut self) -> RaftConfig {
        self.node.shutdown().await;
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server).await.is_err() {
            self.server.abort();
            let _ = (&mut self.server).await;
        }
        self.config
    }
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

fn fast_config(id: u64, raft_addr: &str, data_dir: &Path) -> RaftConfig {
    let mut config = RaftConfig::new(id, raft_addr, format!("client-{id}.test:443"), data_dir);
    config.tick_interval = Duration::from_millis(50);
    config.election_ticks = 10;
    config.heartbeat_ticks = 2;
    config.catch_up_timeout = DEADLINE;
    config.admin_timeout = DEADLINE;
    config
}

async fn start_cluster(root: &Path, size: u64) -> Vec<TestNode> {
    start_cluster_with(root, size, |_| {}).await
}

/// [`start_cluster`] with every node's configuration adjusted by `configure`.
async fn start_cluster_with(root: &Path, size: u64, configure: impl Fn(&mut RaftConfig)) -> Vec<TestNode> {
    let mut listeners = Vec::new();
    for _ in 0..size {
        listeners.push(listener().await);
    }
    let members: Vec<PeerAddress> = listeners
        .iter()
        .enumerate()
        .map(|(position, (_, address))| {
            let id = position as u64 + 1;
            PeerAddress { id, raft_addr: address.clone(), client_addr: format!("client-{id}.test:443") }
        })
        .collect();
    let mut nodes = Vec::new();
    for (position, (listener, address)) in listeners.into_iter().enumerate() {
        let id = position as u64 + 1;
        let mut config = fast_config(id, &address, &root.join(format!("node-{id}")));
        config.initial_members = members.clone();
        configure(&mut config);
        nodes.push(TestNode::start(config, listener).await);
    }
    nodes
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {DEADLINE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one node of `nodes` that leads, once every one of them agrees on it.
async fn agreed_leader(nodes: &[&TestNode]) -> u64 {
    eventually("every live node to agree on one leader among them", || {
        let first = nodes[0].node.status().leader_id;
        let leads = nodes.iter().any(|node| Some(node.node.id()) == first && node.node.status().role == Role::Leader);
        leads && nodes.iter().all(|node| node.node.status().leader_id == first)
    })
    .await;
    nodes[0].node.status().leader_id.unwrap()
}

fn by_id(nodes: &[TestNode], id: u64) -> &TestNode {
    nodes.iter().find(|node| node.node.id() == id).unwrap()
}

/// Proposes on whichever node leads, retrying while leadership moves.
async fn propose_on_leader(nodes: &[&TestNode], command: &str) -> Bytes {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        for node in nodes {
            if node.node.status().role == Role::Leader {
                match node.node.propose(Bytes::from(command.to_string())).await {
                    Ok(response) => return response,
                    Err(ProposeError::NotLeader { .. } | ProposeError::Unknown) => {}
                    Err(error) => panic!("proposal failed: {error}"),
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader accepted {command:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_followers_name_the_leader() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&all).await;
    let leader = by_id(&nodes, leader_id);

    let response = leader.node.propose(Bytes::from_static(b"first")).await.expect("the leader accepts");
    assert!(response.starts_with(b"applied at "), "{response:?}");

    let follower = nodes.iter().find(|node| node.node.id() != leader_id).unwrap();
    let refused = follower.node.propose(Bytes::from_static(b"on a follower")).await.unwrap_err();
    assert_eq!(refused, ProposeError::NotLeader { leader: Some(format!("client-{leader_id}.test:443")) });

    // A read barrier on a follower covers every write acknowledged before it.
    leader.node.propose(Bytes::from_static(b"second")).await.unwrap();
    follower.node.read_barrier().await.expect("read barrier on a follower");
    assert!(follower.state.commands().contains(&Bytes::from_static(b"second")));

    eventually("every node to apply both writes", || {
        nodes.iter().all(|node| node.state.commands() == vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")])
    })
    .await;
    let status = leader.node.status();
    assert_eq!(status.voters, vec![1, 2, 3]);
    assert_eq!(status.members.len(), 3);
    for node in nodes {
        node.stop().await;
    }
}

/// Issue 18: concurrent read barriers on every node (the leader and both followers) each
/// observe every write acknowledged before they began, and none is lost. The retry
/// interval is set far beyond the per-read bound below, so a ReadIndex request the leader
/// drops (raft-rs drops one whose context is already pending there, which is what two
/// nodes counting their requests from 1 produced) shows as a failed read, not a slow one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_on_every_node_see_every_acknowledged_write_and_none_is_dropped() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster_with(root.path(), 3, |config| {
        config.read_retry_interval = Duration::from_secs(30);
        config.read_timeout = Duration::from_secs(60);
    })
    .await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let leader_id = agreed_leader(&all).await;
    // The leader has committed in its term: it serves ReadIndex from here on.
    propose_on_leader(&all, "warm").await;
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (leader, acknowledged) = (by_id(&nodes, leader_id).node.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for index in 0..40 {
                leader.propose(Bytes::from(format!("w-{index}"))).await.expect("the leader accepts while it leads");
                acknowledged.store(index + 1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let mut readers = Vec::new();
    for node in &nodes {
        for reader in 0..12 {
            let (handle, state, acknowledged) = (node.node.clone(), node.state.clone(), acknowledged.clone());
            readers.push(tokio::spawn(async move {
                for round in 0..8 {
                    let before = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
                    tokio::time::timeout(Duration::from_secs(15), handle.read_barrier())
                        .await
                        .unwrap_or_else(|_| panic!("node {}: read {reader}/{round} stalled: its ReadIndex was lost", handle.id()))
                        .expect("read barrier");
                    if before > 0 {
                        let last = Bytes::from(format!("w-{}", before - 1));
                        assert!(
                            state.commands().contains(&last),
                            "node {}: a read that began after w-{} was acknowledged did not see it",
                            handle.id(),
                            before - 1
                        );
                    }
                }
            }));
        }
    }
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_a_restarted_node_keeps_its_state() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let old_leader = agreed_leader(&all).await;
    for i in 0..5 {
        propose_on_leader(&all, &format!("before failover {i}")).await;
    }

    // Kill the leader: the two others elect a new one and keep accepting writes.
    let position = nodes.iter().position(|node| node.node.id() == old_leader).unwrap();
    let killed = nodes.remove(position);
    let killed_config = killed.stop().await;
    let survivors: Vec<&TestNode> = nodes.iter().collect();
    let new_leader = agreed_leader(&survivors).await;
    assert_ne!(new_leader, old_leader);
    propose_on_leader(&survivors, "after failover").await;

    // Restart a follower from its directory: identical state, then it follows again.
    let follower_position = nodes.iter().position(|node| node.node.id() != new_leader).unwrap();
    let follower = nodes.remove(follower_position);
    eventually("the follower to apply the write after failover", || {
        follower.state.commands().contains(&Bytes::from_static(b"after failover"))
    })
    .await;
    let before = follower.state.entries();
    let follower_config = follower.stop().await;
    let raft_addr = follower_config.raft_addr.clone();
    let listener = tokio::net::TcpListener::bind(&raft_addr).await.expect("rebind the same port");
    let restarted = TestNode::start(follower_config, listener).await;
    assert_eq!(restarted.state.entries(), before, "the restarted node's state changed");
    assert_eq!(restarted.node.status().applied_index, before.len() as u64);
    nodes.push(restarted);

    // The old leader comes back too, and everyone converges on one history.
    let listener = tokio::net::TcpListener::bind(&killed_config.raft_addr).await.expect("rebind the old leader's port");
    nodes.push(TestNode::start(killed_config, listener).await);
    let all: Vec<&TestNode> = nodes.iter().collect();
    propose_on_leader(&all, "after restarts").await;
    eventually("all three nodes to hold the same history", || {
        let first = nodes[0].state.entries();
        first.last() == Some(&Bytes::from_static(b"after restarts"))
            && nodes.iter().all(|node| node.state.entries() == first)
    })
    .await;
    assert_eq!(nodes[0].state.commands().len(), 7);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_added_through_a_snapshot_removed_and_handed_leadership() {
    let root = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..4 {
        listeners.push(listener().await);
    }
    let members: Vec<PeerAddress> = (1..=3)
        .map(|id| PeerAddress {
            id,
            raft_addr: listeners[id as usize - 1].1.clone(),
            client_addr: format!("client-{id}.test:443"),
        })
        .collect();
    let mut nodes = Vec::new();
    for (position, (listener, address)) in listeners.into_iter().enumerate() {
        let id = position as u64 + 1;
        let mut config = fast_config(id, &address, &root.path().join(format!("node-{id}")));
        config.compaction_interval_entries = 10;
        config.log_retained_entries = 0;
        config.snapshot_chunk_size_bytes = 64; // many chunks even for a small state
        if id <= 3 {
            config.initial_members = members.clone();
        }
        nodes.push(TestNode::start(config, listener).await);
    }
    let founders: Vec<&TestNode> = nodes[..3].iter().collect();
    for i in 0..30 {
        propose_on_leader(&founders, &format!("before the new node {i}")).await;
    }
    let leader_id = agreed_leader(&founders).await;
    let leader = by_id(&nodes, leader_id);
    eventually("the leader to compact its log", || leader.node.status().first_log_index > 2).await;

    // Node 4 joins: learner, snapshot (its log would start after the compaction), voter.
    let raft_addr = nodes[3].config.raft_addr.clone();
    leader.node.add_node(4, raft_addr, "client-4.test:443".into()).await.expect("add node 4");
    let status = leader.node.status();
    assert_eq!(status.voters, vec![1, 2, 3, 4]);
    assert!(!status.joint);
    eventually("node 4 to hold the whole history", || {
        nodes[3].state.entries() == leader.state.entries() && nodes[3].state.commands().len() == 30
    })
    .await;
    assert!(nodes[3].state.restores.load(std::sync::atomic::Ordering::SeqCst) >= 1, "node 4 caught up without a snapshot");

    // A follower refuses admin operations and names the leader.
    let follower = nodes.iter().find(|node| node.node.id() != leader_id).unwrap();
    assert_eq!(
        follower.node.remove_node(4).await.unwrap_err(),
        AdminError::NotLeader { leader: Some(format!("client-{leader_id}.test:443")) }
    );

    // Hand leadership to node 4, then remove the old leader from the new one.
    leader.node.transfer_leader(4).await.expect("transfer to node 4");
    let new_leader = &nodes[3];
    eventually("node 4 to lead", || new_leader.node.status().role == Role::Leader).await;
    new_leader.node.remove_node(leader_id).await.expect("remove the old leader");
    let status = new_leader.node.status();
    assert!(!status.voters.contains(&leader_id) && !status.learners.contains(&leader_id));
    assert!(!status.members.iter().any(|member| member.id == leader_id));

    let remaining: Vec<&TestNode> = nodes.iter().filter(|node| node.node.id() != leader_id).collect();
    propose_on_leader(&remaining, "after membership changes").await;
    eventually("the remaining members to apply the last write", || {
        remaining.iter().all(|node| node.state.commands().last() == Some(&Bytes::from_static(b"after membership changes")))
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_stops_the_node_instead_of_advancing() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 1).await;
    let node = &nodes[0];
    eventually("the single member to lead", || node.node.status().role == Role::Leader).await;
    node.node.propose(Bytes::from_static(b"kept")).await.expect("a healthy node accepts");
    node.state.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = node.node.propose(Bytes::from_static(b"lost")).await.unwrap_err();
    assert!(matches!(failed, ProposeError::Stopped(ref reason) if reason.contains("disk full")), "{failed:?}");
    node.state.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(node.node.propose(Bytes::from_static(b"refused")).await, Err(ProposeError::Stopped(_))));
    assert!(matches!(node.node.read_barrier().await, Err(ProposeError::Stopped(_))));
    assert!(!node.node.is_healthy());
    assert_eq!(node.state.commands(), vec![Bytes::from_static(b"kept")]);
    for node in nodes {
        node.stop().await;
    }
}
