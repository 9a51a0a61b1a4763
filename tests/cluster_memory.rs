//! Memory of a real 3-node cluster with per-node local storage while a 200 MiB file is
//! uploaded and replicated: the receiving node streams the copies to its peers from disk
//! and each peer spools what it receives, so no node's peak resident set (VmHWM) grows
//! with the file's size. Each node is its own process, so its VmHWM measures that node.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::s3::peak_rss_bytes;
use common::*;

const AGENCY: &str = "xa-bo-nho";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// How long the copies beyond the majority may take to land after the upload returns.
const REPLICATION_DEADLINE: Duration = Duration::from_secs(180);
/// The file: larger than any buffer a node may hold.
const FILE_BYTES: u64 = 200 * 1024 * 1024;
/// Peak resident set allowed for each node (debug build), whatever the file's size.
const NODE_PEAK_RSS_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// SHA-256 of a file on disk, read in 1 MiB blocks.
fn sha256_of_file(path: &std::path::Path) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut block = vec![0u8; LARGE_CHUNK_BYTES];
    loop {
        let read = file.read(&mut block).unwrap();
        if read == 0 {
            return hasher.finish().as_ref().to_vec();
        }
        hasher.update(&block[..read]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_reaches_every_node_with_each_under_128_mib_peak_memory() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let limits = format!("[limits]\nfile_size_bytes_max = {}\nrequest_timeout_seconds = 300\n", 256 * 1024 * 1024);
    let nodes: Vec<TestNode> = layout
        .members
        .iter()
        .map(|&(id, grpc, raft)| {
            let config = layout.config(id, grpc, raft, false).replacen("[limits]\n", &limits, 1);
            TestNode::start_config(&dir.path().join(format!("node{id}")), &config, &layout.tls)
        })
        .collect();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    // Through a follower: it stores the file, pushes it to the leader and the other
    // follower, and forwards the proposal.
    let via = &nodes[(leader + 1) % nodes.len()];
    let rss_at_start: Vec<u64> = nodes.iter().map(|node| peak_rss_bytes(node.pid().unwrap())).collect();

    let started = Instant::now();
    let (response, expected) = upload_generated(via, "large-cluster-1", AGENCY, FILE_BYTES).await;
    let response = response.unwrap();
    let upload_seconds = started.elapsed().as_secs_f64();
    assert_eq!(response.files[0].sha256, expected);
    assert_eq!(response.files[0].size_bytes, FILE_BYTES);

    let hash = kyso::domain::Sha256::from_slice(&expected).unwrap();
    let blob_path = |node: &TestNode| -> PathBuf { node.dir.join("data/blobs").join(kyso::archive::blob_key(&hash).as_ref()) };
    let deadline = Instant::now() + REPLICATION_DEADLINE;
    while !nodes.iter().all(|node| std::fs::metadata(blob_path(node)).is_ok_and(|meta| meta.len() == FILE_BYTES)) {
        assert!(Instant::now() < deadline, "not every node held the 200 MiB blob within {REPLICATION_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let replicated_seconds = started.elapsed().as_secs_f64();
    let peaks: Vec<u64> = nodes.iter().map(|node| peak_rss_bytes(node.pid().unwrap())).collect();
    println!(
        "200 MiB upload through node {}: acknowledged after {upload_seconds:.1} s, on every node after {replicated_seconds:.1} s; \
         peak RSS (VmHWM) per node at start {:?} MiB, after replication {:?} MiB",
        (leader + 1) % nodes.len() + 1,
        rss_at_start.iter().map(|bytes| bytes >> 20).collect::<Vec<_>>(),
        peaks.iter().map(|bytes| bytes >> 20).collect::<Vec<_>>(),
    );
    for (node, peak) in nodes.iter().zip(&peaks) {
        assert!(
            *peak < NODE_PEAK_RSS_BYTES_MAX,
            "node {} peaked at {} MiB resident while a 200 MiB file was uploaded and replicated",
            node.grpc_url,
            peak >> 20
        );
    }
    for node in &nodes {
        assert_eq!(sha256_of_file(&blob_path(node)), expected, "{} holds the file's bytes", node.grpc_url);
    }
    let spool_files = |node: &TestNode| std::fs::read_dir(node.dir.join("data/spool")).unwrap().count();
    while nodes.iter().any(|node| spool_files(node) > 0) {
        assert!(Instant::now() < deadline, "a spool file outlived the replication: {:?}", nodes.iter().map(spool_files).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_identical_state(&nodes, ELECTION_DEADLINE).await;
}

/// The peer side of replication spools a pushed copy and stores it only if its bytes hash
/// to the key the sender claimed: a damaged or cut stream leaves neither a blob nor a
/// spool file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_replica_that_does_not_hash_to_its_key_is_refused_and_leaves_nothing() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 2, "");
    let nodes = layout.start_all();
    wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let (_, _, raft) = layout.members[1];
    let channel = layout.tls.channel_as(&format!("https://127.0.0.1:{raft}"), &node_leaf(1, &layout.tls.cluster_ca)).await.unwrap();
    let mut client = kyso_proto::v1::node_internal_service_client::NodeInternalServiceClient::new(channel);
    let claimed = kyso::domain::Sha256::digest(&large_chunk(1));
    let messages: Vec<kyso_proto::v1::BlobReplicaChunk> = (0..3)
        .map(|index| kyso_proto::v1::BlobReplicaChunk {
            sha256: if index == 0 { claimed.0.to_vec() } else { Vec::new() },
            data: large_chunk(index),
        })
        .collect();
    assert_status(client.put_blob_replica(futures::stream::iter(messages)).await, tonic::Code::InvalidArgument, "do not hash to");
    let node = &nodes[1];
    assert!(!node.dir.join("data/blobs").join(kyso::archive::blob_key(&claimed).as_ref()).exists(), "the refused replica was stored");
    let spool_files = std::fs::read_dir(node.dir.join("data/spool")).unwrap().count();
    assert_eq!(spool_files, 0, "the refused replica left its spool file");

    // The same bytes under their own key are stored.
    let honest = kyso::domain::Sha256::digest(&large_chunk(1));
    let message = kyso_proto::v1::BlobReplicaChunk { sha256: honest.0.to_vec(), data: large_chunk(1) };
    client.put_blob_replica(futures::stream::iter([message])).await.unwrap();
    let stored = std::fs::read(node.dir.join("data/blobs").join(kyso::archive::blob_key(&honest).as_ref())).unwrap();
    assert_eq!(stored, large_chunk(1));
}
