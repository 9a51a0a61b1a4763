//! Blobs in a real S3-compatible store (s3s-fs on 127.0.0.1): nodes sharing one bucket,
//! write-once blobs, a 200 MiB file through multipart upload with bounded memory, and an
//! outage of the store, and a three-member Raft cluster sharing one bucket (the receiving
//! node writes the blob once before proposing; no node keeps a local copy).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::s3::*;
use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use pb::verify_request::Subject;

const AGENCY: &str = "xa-thu-nghiem";
/// How long a recovering store may take before the node writes to it again.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);

async fn verify_hash(node: &TestNode, document: &[u8]) -> Result<pb::VerifyResponse, tonic::Status> {
    node.verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(Subject::Sha256(sha256(document))), correlation_id: String::new(), ..Default::default() })
        .await
        .map(|response| response.into_inner())
}


#[cfg(unix)]
fn inode_and_mtime(path: &std::path::Path) -> (u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    (metadata.ino(), metadata.mtime(), metadata.mtime_nsec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_bucket_archive_certify_verify_and_never_overwrite_a_blob() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let s3 = S3Server::start(&dir.path().join("s3"));
    // Node A reads its keys from a file, node B from its environment.
    let node_a = TestNode::start_with(
        &dir.path().join("a"),
        &pki.ca_pem_path,
        &s3.storage_toml(Some(&dir.path().join("a-s3.toml"))),
        "",
    );
    let node_b =
        TestNode::start_with_env(&dir.path().join("b"), &pki.ca_pem_path, &s3.storage_toml(None), "", s3.credential_env());
    let signer_a = register_signer(&node_a, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    let signer_b = register_signer(&node_b, &pki.issue(&signer_spec("Lê Văn Cường", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();

    let result = document(11, 700_000);
    let attachment = document(12, 3_000);
    let files: [(&str, &[u8]); 2] = [("ket-qua.pdf", &result), ("don.pdf", &attachment)];
    let archived = upload(&node_a, "s3-dossier-a", AGENCY, &files).await.unwrap();
    assert_eq!(archived.files[0].sha256, sha256(&result));

    let bucket = s3.client();
    let key = ObjectPath::from(blob_key(&sha256(&result)));
    let stored = bucket.head(&key).await.expect("node A stored the blob in the bucket");
    assert_eq!(stored.size, result.len() as u64);
    let object_file = s3.object_file(key.as_ref());
    let on_disk = inode_and_mtime(&object_file);
    // Wait (on a condition, not a fixed time) until the clock has left the second of the
    // object's Last-Modified, so that a rewrite would show in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while SystemTime::now() < SystemTime::from(stored.last_modified) + Duration::from_millis(1_100) {
        assert!(Instant::now() < deadline, "the clock did not advance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Node B archives the same files into the same bucket: success, and nothing rewritten.
    let archived_b = upload(&node_b, "s3-dossier-b", AGENCY, &files).await.unwrap();
    assert_eq!(archived_b.files[0].sha256, sha256(&result));
    let after = bucket.head(&key).await.unwrap();
    assert_eq!(after.e_tag, stored.e_tag, "a second write of an existing blob changed its ETag");
    assert_eq!(after.last_modified, stored.last_modified, "a second write of an existing blob rewrote it");
    assert_eq!(inode_and_mtime(&object_file), on_disk, "s3s-fs replaced the object's file");

    // Different bytes under an existing key, conditionally, straight to S3: refused.
    let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    let forged = bucket.put_opts(&key, PutPayload::from_static(b"forged scan"), create).await;
    assert!(matches!(forged, Err(object_store::Error::AlreadyExists { .. })), "{forged:?}");
    assert_eq!(bucket.head(&key).await.unwrap().e_tag, stored.e_tag);

    // Both nodes certify and verify, reading the shared blob back and re-hashing it.
    let certified_a = node_a
        .signing()
        .await
        .certify(certify_request("s3-certify-a", &result, AGENCY, &signer_a.signer_id))
        .await
        .unwrap()
        .into_inner();
    let certified_b = node_b
        .signing()
        .await
        .certify(certify_request("s3-certify-b", &result, AGENCY, &signer_b.signer_id))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(certified_a.lookup_code, certified_b.lookup_code);
    for node in [&node_a, &node_b] {
        let answer = verify_hash(node, &result).await.unwrap();
        assert_eq!(answer.certifications.len(), 1);
        assert_eq!(answer.certifications[0].summary, "valid", "{:?}", answer.certifications[0]);
        assert_eq!(get_blob(node, &sha256(&result)).await.unwrap(), result);
    }
}

/// Size of the file that must go through multipart upload.
const LARGE_FILE_BYTES: u64 = 200 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_of_200_mib_goes_through_multipart_upload_with_bounded_memory() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let s3 = S3Server::start(&dir.path().join("s3"));
    let limits = format!("file_size_bytes_max = {}\nrequest_timeout_seconds = 300\n", 256 * 1024 * 1024);
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &s3.storage_toml(Some(&dir.path().join("s3.toml"))), &limits);
    let rss_at_start = peak_rss_bytes(node.pid().expect("the node is running"));

    // The client generates and hashes the file while it streams it: no copy in memory.
    let started = Instant::now();
    let (response, expected) = upload_generated(&node, "large-1", AGENCY, LARGE_FILE_BYTES).await;
    let response = response.unwrap();
    let upload_seconds = started.elapsed().as_secs_f64();
    assert_eq!(response.files[0].sha256, expected);
    assert_eq!(response.files[0].size_bytes, LARGE_FILE_BYTES);
    let rss_after_upload = peak_rss_bytes(node.pid().expect("the node is running"));

    let key = ObjectPath::from(blob_key(&expected));
    let meta = s3.client().head(&key).await.unwrap();
    assert_eq!(meta.size, LARGE_FILE_BYTES);
    let spool = node.dir.join("data/spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "the spool file outlived the upload");

    // Streamed back with GetBlob and re-hashed by the client.
    let mut stream = node.archive().await.get_blob(pb::GetBlobRequest { sha256: expected.clone() }).await.unwrap().into_inner();
    let mut read_back = ring::digest::Context::new(&ring::digest::SHA256);
    let mut read_bytes = 0u64;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.data.len() <= 1024 * 1024);
        read_bytes += chunk.data.len() as u64;
        read_back.update(&chunk.data);
    }
    assert_eq!(read_bytes, LARGE_FILE_BYTES);
    assert_eq!(read_back.finish().as_ref(), expected.as_slice());
    let rss_after_download = peak_rss_bytes(node.pid().expect("the node is running"));

    println!(
        "200 MiB upload: {upload_seconds:.1} s; node peak RSS (VmHWM) at start {} MiB, after upload {} MiB, after download {} MiB; ETag {:?}",
        rss_at_start >> 20,
        rss_after_upload >> 20,
        rss_after_download >> 20,
        meta.e_tag
    );
    let bound = LARGE_FILE_BYTES / 2;
    assert!(rss_after_upload < bound, "node peak RSS {} MiB while uploading 200 MiB", rss_after_upload >> 20);
    assert!(rss_after_download < bound, "node peak RSS {} MiB while streaming 200 MiB back", rss_after_download >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_answers_unavailable_records_nothing_and_the_node_recovers() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let mut s3 = S3Server::start(&dir.path().join("s3"));
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &s3.storage_toml(Some(&dir.path().join("s3.toml"))), "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    let before = document(21, 50_000);
    upload(&node, "before-outage", AGENCY, &[("truoc.pdf", &before)]).await.unwrap();

    s3.stop();
    let during = document(22, 80_000);
    let refused = upload(&node, "during-outage", AGENCY, &[("trong.pdf", &during)]).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let message = refused.message();
    assert!(message.contains("object storage is unavailable") && message.contains(&s3.endpoint()), "{message}");
    assert!(message.contains("retry"), "the message should say what to do: {message}");
    let spool = node.dir.join("data/spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "the refused upload left its spool file behind");
    let read = get_blob(&node, &sha256(&before)).await.unwrap_err();
    assert_eq!(read.code(), tonic::Code::Unavailable, "{read:?}");
    // No record points at the blob that was never stored.
    let certify = node.signing().await.certify(certify_request("certify-during", &during, AGENCY, &signer.signer_id)).await.unwrap_err();
    assert_eq!(certify.code(), tonic::Code::NotFound, "{certify:?}");

    s3.restart();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let archived = loop {
        match upload(&node, "during-outage", AGENCY, &[("trong.pdf", &during)]).await {
            Ok(archived) => break archived,
            Err(status) if status.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(status) => panic!("the node did not recover after the store came back: {status:?}"),
        }
    };
    assert_eq!(archived.files[0].sha256, sha256(&during));
    assert_eq!(get_blob(&node, &sha256(&during)).await.unwrap(), during);
    assert_eq!(get_blob(&node, &sha256(&before)).await.unwrap(), before);
    node.signing().await.certify(certify_request("certify-after", &during, AGENCY, &signer.signer_id)).await.unwrap();
    assert_eq!(verify_hash(&node, &during).await.unwrap().certifications[0].summary, "valid");

    // Every recorded blob is in the bucket, whole.
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url]);
    assert!(ok, "scrub after recovery: {stdout}\n{stderr}");
    assert!(stdout.contains("scrub checked 2 blobs") && stdout.contains("0 bad"), "{stdout}");
}

#[test]
fn credentials_the_store_refuses_stop_the_node_at_startup() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let s3 = S3Server::start(&dir.path().join("s3"));
    let credentials = dir.path().join("wrong-s3.toml");
    let storage = s3.storage_toml(Some(&credentials));
    std::fs::write(&credentials, format!("access_key_id = {:?}\nsecret_access_key = \"not-the-secret\"\n", s3.access_key)).unwrap();
    let config = dir.path().join("kyso.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\ntrust_anchor_files = [{:?}]\n{storage}\n{}",
            pki.ca_pem_path.display().to_string(),
            tls_beside(&pki.ca_pem_path).toml()
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = kyso_cli(&["node", "--config", config.to_str().unwrap()]);
    assert!(!ok, "the node started with a wrong secret key: {stdout}");
    assert!(stderr.contains("refused kyso's credentials") && stderr.contains("check the access key"), "{stderr}");
    println!("{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_a_corrupt_object_in_the_bucket_and_replaces_it_from_a_peer() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let s3 = S3Server::start(&dir.path().join("s3"));
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &s3.storage_toml(Some(&dir.path().join("s3.toml"))), "");
    // A node with its own local storage that archived the same file holds a good copy.
    let peer = TestNode::start(&dir.path().join("peer"), &pki.ca_pem_path, "");
    let scan = document(41, 120_000);
    upload(&node, "scan-node", AGENCY, &[("quyet-dinh.pdf", &scan)]).await.unwrap();
    upload(&peer, "scan-peer", AGENCY, &[("quyet-dinh.pdf", &scan)]).await.unwrap();

    // Bit rot behind the store's back: the object's bytes change on the server's disk.
    let object_file = s3.object_file(&blob_key(&sha256(&scan)));
    let mut rotten = std::fs::read(&object_file).unwrap();
    rotten[60_000] ^= 0x01;
    std::fs::write(&object_file, &rotten).unwrap();
    assert_eq!(get_blob(&node, &sha256(&scan)).await.unwrap_err().code(), tonic::Code::DataLoss);

    let (ok, stdout, _) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url]);
    assert!(!ok && stdout.contains(&format!("corrupt {}", hex::encode(sha256(&scan)))), "{stdout}");
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url, "--repair-from", &peer.grpc_url]);
    assert!(ok && stdout.contains("1 bad, 1 repaired"), "{stdout}\n{stderr}");
    assert_eq!(std::fs::read(&object_file).unwrap(), scan);
    assert_eq!(get_blob(&node, &sha256(&scan)).await.unwrap(), scan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_sharing_one_bucket_archives_certifies_and_verifies_on_every_node() {
    let dir = tempdir();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all_with(|id| s3.storage_toml(Some(&dir.path().join(format!("s3-{id}.toml")))));
    let leader = wait_for_leader(&nodes, Duration::from_secs(60)).await;
    let (first, second) = ((leader + 1) % 3, (leader + 2) % 3);
    let signer = register_signer(&nodes[first], &layout.pki.issue(&signer_spec("Hoàng Thị Lan", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    let content = document(31, 400_000);
    upload(&nodes[first], "s3-cluster-dossier", AGENCY, &[("ket-qua.pdf", &content)]).await.unwrap();
    let stored = s3.client().head(&ObjectPath::from(blob_key(&sha256(&content)))).await.expect("the blob is in the shared bucket");
    assert_eq!(stored.size, content.len() as u64);
    for node in &nodes {
        assert!(!node.dir.join("data/blobs").join(blob_key(&sha256(&content))).exists(), "no node keeps a local copy");
    }
    let certification = nodes[second]
        .signing()
        .await
        .certify(certify_request("s3-cluster-certify", &content, AGENCY, &signer.signer_id))
        .await
        .unwrap()
        .into_inner();
    for node in &nodes {
        let answer = verify_hash(node, &content).await.unwrap();
        assert_eq!(answer.certifications[0].summary, "valid", "on {}", node.grpc_url);
        assert_eq!(answer.certifications[0].certification.as_ref().unwrap().lookup_code, certification.lookup_code);
    }
    wait_for_identical_state(&nodes, Duration::from_secs(60)).await;
}
