//! Raft snapshots streamed from disk, on a real cluster of `kyso node` processes on
//! 127.0.0.1 with a compacted log: a new member catches up through a snapshot of many
//! chunks, larger than the state store's whole memory budget, while neither end's peak
//! resident set (VmHWM) grows by as much as the snapshot and the leader's term never
//! changes; and a transfer cut by killing the receiver completes once it is back, with
//! the sender retrying by itself.
//!
//! Each node is its own process, so its VmHWM measures that node. The state digest (which
//! reads the whole state) is compared only after the memory was measured.

mod common;

use std::time::{Duration, Instant};

use common::s3::peak_rss_bytes;
use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-snap";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(180);
/// Pieces of state read, sent and staged at a time.
const CHUNK_BYTES: u64 = 64 * 1024;
/// The state store's page cache on every node: the memory budget a whole-state snapshot
/// buffer would have had to fit in.
const STATE_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Documents per uploaded dossier and per certify batch.
const DOSSIER_FILES: usize = 200;
const BATCH_ITEMS: usize = 25;
/// Dossiers of the first test, each with as many private fields of the longest value as
/// a dossier may hold (about 50 KB of state each, kept once since record layout 3: its
/// request row names it): the bulk of its snapshot, about 70 MB.
const BULKY_DOSSIERS: usize = 1400;
const BULKY_UPLOADS_IN_FLIGHT: usize = 3;

fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

async fn metric(metrics_addr: &str, series: &str) -> f64 {
    sample(&http_get(&format!("http://{metrics_addr}/metrics")).await, series).unwrap_or(0.0)
}

struct SnapshotCluster {
    _dir: tempfile::TempDir,
    layout: ClusterLayout,
    nodes: Vec<TestNode>,
    /// metrics_addr of members 1..=4 (index id - 1).
    metrics: Vec<String>,
    leader: usize,
}

impl SnapshotCluster {
    fn config(&self, id: u64, grpc: u16, raft: u16, join: bool) -> String {
        let metrics = format!("metrics_addr = {:?}", self.metrics[(id - 1) as usize]);
        let limits = format!("[limits]\nstate_cache_size_bytes_max = {STATE_CACHE_BYTES}\n");
        self.layout.config_with(id, grpc, raft, join, &metrics).replacen("[limits]\n", &limits, 1)
    }

    /// Three members with a compacted log (every 20 entries) and small
    /// snapshot chunks, holding `certifications` certifications and `bulky` dossiers.
    ///
    /// `retained_entries` are kept behind each compaction: enough for the founding members,
    /// which may lag a few hundred entries while the state is written, to catch up from the
    /// log, too few for a new member.
    async fn start(chunk_bytes: u64, certifications: usize, bulky: usize, retained_entries: u64) -> SnapshotCluster {
        let dir = tempdir();
        let extra = format!(
            "compaction_interval_entries = 20\nlog_retained_entries = {retained_entries}\nsnapshot_chunk_size_bytes = {chunk_bytes}"
        );
        let layout = ClusterLayout::new(dir.path(), 3, &extra);
        let metrics = (0..4).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let mut cluster = SnapshotCluster { _dir: dir, layout, nodes: Vec::new(), metrics, leader: 0 };
        cluster.nodes = cluster
            .layout
            .members
            .iter()
            .map(|&(id, grpc, raft)| {
                let config = cluster.config(id, grpc, raft, false);
                TestNode::start_config(&cluster.layout.dir.join(format!("node{id}")), &config, &cluster.layout.tls)
            })
            .collect();
        cluster.leader = wait_for_leader(&cluster.nodes, ELECTION_DEADLINE).await;
        cluster.certify(certifications).await;
        cluster.upload_bulky(bulky).await;
        let status = cluster.leader_status().await;
        assert!(status.first_log_index > 2, "the leader compacted its log, so a new member needs a snapshot: {status:?}");
        cluster
    }

    /// Uploads `count` dossiers, each with 32 private fields of 500 three-byte characters.
    async fn upload_bulky(&self, count: usize) {
        use futures::StreamExt;
        use pb::upload_dossier_request::Part;
        let leader = &self.nodes[self.leader];
        let uploads = futures::stream::iter(0..count).map(|index| async move {
            let mut messages = upload_messages(&format!("bulky-{index}"), AGENCY, &[("scan.pdf", format!("bulky {index}").as_bytes())], 1024);
            if let Some(Part::Metadata(metadata)) = &mut messages[0].part {
                metadata.private_fields = (0..32).map(|field| (format!("field_{field:02}"), "ệ".repeat(500))).collect();
            }
            retry_while_busy(|| async { leader.archive().await.upload_dossier(futures::stream::iter(messages.clone())).await.map(|_| ()) }).await;
        });
        uploads.buffer_unordered(BULKY_UPLOADS_IN_FLIGHT).collect::<Vec<()>>().await;
    }

    async fn certify(&self, count: usize) {
        let leader = &self.nodes[self.leader];
        let signer = register_signer(leader, &self.layout.pki.issue(&signer_spec("Lê Văn Chín", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
        let documents: Vec<Vec<u8>> = (0..count).map(|index| format!("snapshot test document {index:08}").into_bytes()).collect();
        for (position, files) in documents.chunks(DOSSIER_FILES).enumerate() {
            let files: Vec<(&str, &[u8])> = files.iter().map(|content| ("scan.pdf", content.as_slice())).collect();
            upload(leader, &format!("dossier-{position}"), AGENCY, &files).await.unwrap();
        }
        for (position, batch) in documents.chunks(BATCH_ITEMS).enumerate() {
            let items = batch.iter().map(|content| certify_request("", content, AGENCY, &signer.signer_id)).collect();
            let request = pb::CertifyBatchRequest { request_id: format!("batch-{position}"), items, pin: TEST_PIN.into() };
            let answer = retry_while_busy(|| async { leader.signing().await.certify_batch(request.clone()).await }).await.into_inner();
            assert_eq!(answer.certifications.len(), batch.len());
        }
    }

    fn leader_metrics(&self) -> &str {
        &self.metrics[self.leader]
    }

    /// Starts member 4, empty, waiting to be added.
    fn start_fourth(&mut self) -> (u16, u16) {
        let (grpc, raft) = (free_port(), free_port());
        let config = self.config(4, grpc, raft, true);
        self.nodes.push(TestNode::start_config(&self.layout.dir.join("node4"), &config, &self.layout.tls));
        (grpc, raft)
    }

    async fn leader_status(&self) -> pb::ClusterStatus {
        self.nodes[self.leader].cluster().await.status(pb::ClusterStatusRequest {}).await.unwrap().into_inner()
    }
}

/// Retries a write (same request id: applied at most once) while the cluster is busy or
/// electing, as a client would.
async fn retry_while_busy<T, F: std::future::Future<Output = Result<T, tonic::Status>>>(call: impl Fn() -> F) -> T {
    let deadline = Instant::now() + ELECTION_DEADLINE;
    loop {
        match call().await {
            Ok(answer) => return answer,
            Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::ResourceExhausted | tonic::Code::DeadlineExceeded) => {
                assert!(Instant::now() < deadline, "a write kept failing: {status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("a write failed: {status:?}"),
        }
    }
}

fn add_request(grpc: u16, raft: u16) -> pb::AddNodeRequest {
    pb::AddNodeRequest { id: 4, raft_addr: format!("127.0.0.1:{raft}"), client_addr: format!("127.0.0.1:{grpc}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_catches_up_through_a_streamed_snapshot_with_bounded_memory_and_no_election() {
    let started = Instant::now();
    let mut cluster = SnapshotCluster::start(CHUNK_BYTES, 300, BULKY_DOSSIERS, 400).await;
    let populated_seconds = started.elapsed().as_secs_f64();
    let before = cluster.leader_status().await;
    let (grpc, raft) = cluster.start_fourth();
    let leader_pid = cluster.nodes[cluster.leader].pid().unwrap();
    let fourth_pid = cluster.nodes[3].pid().unwrap();
    let (leader_rss_before, fourth_rss_before) = (peak_rss_bytes(leader_pid), peak_rss_bytes(fourth_pid));

    let transfer_started = Instant::now();
    let added = cluster.nodes[cluster.leader].cluster().await.add_node(add_request(grpc, raft)).await.unwrap().into_inner();
    assert!(added.members.iter().any(|member| member.id == 4 && member.role == "voter"), "{added:?}");
    let transfer_seconds = transfer_started.elapsed().as_secs_f64();
    let (leader_rss_after, fourth_rss_after) = (peak_rss_bytes(leader_pid), peak_rss_bytes(fourth_pid));

    let after = cluster.leader_status().await;
    assert_eq!((after.term, after.leader_id), (before.term, before.leader_id), "no election while the snapshot was made and sent");
    let sent_bytes = metric(cluster.leader_metrics(), "kyso_raft_snapshot_sent_bytes_total").await as u64;
    let received_bytes = metric(&cluster.metrics[3], "kyso_raft_snapshot_received_bytes_total").await as u64;
    let fourth_status = cluster.nodes[3].cluster().await.status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    println!(
        "300 certifications and {BULKY_DOSSIERS} dossiers in {populated_seconds:.1} s; snapshot of {sent_bytes} bytes ({} chunks of {CHUNK_BYTES}) sent in \
         {transfer_seconds:.1} s; VmHWM leader {} -> {} MiB, new member {} -> {} MiB; term {} throughout",
        sent_bytes / CHUNK_BYTES,
        leader_rss_before >> 20,
        leader_rss_after >> 20,
        fourth_rss_before >> 20,
        fourth_rss_after >> 20,
        after.term,
    );
    assert!(sent_bytes > 0 && received_bytes >= sent_bytes, "the member caught up through a snapshot: sent {sent_bytes}, received {received_bytes}");
    assert!(sent_bytes > 100 * CHUNK_BYTES, "the snapshot spans many chunks: {sent_bytes} bytes");
    assert!(sent_bytes > 2 * STATE_CACHE_BYTES, "the snapshot outgrows the memory budget of a node: {sent_bytes} bytes");
    assert!(fourth_status.first_log_index > 2, "the new member's log starts after the snapshot: {fourth_status:?}");
    for (who, before, after) in [("leader", leader_rss_before, leader_rss_after), ("new member", fourth_rss_before, fourth_rss_after)] {
        assert!(
            after.saturating_sub(before) < sent_bytes / 2,
            "the {who}'s peak resident set grew by {} bytes for a snapshot of {sent_bytes}: it buffered the snapshot",
            after.saturating_sub(before)
        );
    }
    let digest = wait_for_identical_state(&cluster.nodes, CONVERGE_DEADLINE).await;
    assert_eq!(digest.log_tree_size, 1 + 300 + 1, "the signer, every certification and the new member's addition, on all four members");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_transfer_cut_by_killing_the_receiver_completes_after_its_restart() {
    let mut cluster = SnapshotCluster::start(4 * 1024, 600, 0, 2).await;
    let before = cluster.leader_status().await;
    let (grpc, raft) = cluster.start_fourth();
    let mut leader_client = cluster.nodes[cluster.leader].cluster().await;
    let adding = tokio::spawn(async move { leader_client.add_node(add_request(grpc, raft)).await });
    // Kill the new member as soon as state started to arrive.
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    while metric(&cluster.metrics[3], "kyso_raft_snapshot_received_bytes_total").await == 0.0 {
        assert!(Instant::now() < deadline, "no snapshot reached the new member");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.nodes[3].kill();
    let deadline = Instant::now() + CONVERGE_DEADLINE;
    while metric(cluster.leader_metrics(), "kyso_raft_snapshot_sends_total{outcome=\"failed\"}").await == 0.0 {
        assert!(Instant::now() < deadline, "the leader never saw the transfer fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.nodes[3].start_again();
    // The leader sends the snapshot again by itself; the add either finished or timed out
    // while the member was down, and repeating it is safe.
    let first_attempt = adding.await.unwrap();
    if first_attempt.is_err() {
        cluster.nodes[cluster.leader].cluster().await.add_node(add_request(grpc, raft)).await.unwrap();
    }
    let digest = wait_for_identical_state(&cluster.nodes, CONVERGE_DEADLINE).await;
    assert!(digest.log_tree_size > 600, "the signer, every certification and the new member's addition: {digest:?}");
    let received = metric(&cluster.metrics[3], "kyso_raft_snapshot_received_bytes_total").await;
    assert!(received > 0.0, "the restarted member received the snapshot again");
    let finished = metric(cluster.leader_metrics(), "kyso_raft_snapshot_sends_total{outcome=\"finished\"}").await;
    assert!(finished >= 1.0, "a transfer finished after the cut");
    let after = cluster.leader_status().await;
    assert_eq!((after.term, after.leader_id), (before.term, before.leader_id), "the leader kept its term through the cut transfer");
}
