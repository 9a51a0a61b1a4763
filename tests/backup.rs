//! Backup and restore on real processes: `kyso backup` taken from a 3-node cluster under
//! an archive-and-certify load, `kyso restore` into a new directory as the first member
//! of a new cluster (a new node id), and the restored node checked against what the
//! original cluster acknowledged. A damaged backup is refused before anything is built.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use tonic::transport::Channel;

const AGENCY: &str = "xa-binh-an";
const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// Certifications acknowledged before the backup is taken, and after it ended, at least.
const ACKNOWLEDGED_BEFORE_MIN: usize = 6;
const ACKNOWLEDGED_AFTER_MIN: usize = 3;
/// The load's time to reach each of those counts (a slow shared machine).
const LOAD_DEADLINE: Duration = Duration::from_secs(90);

/// One acknowledged certification and when its call returned.
struct Acknowledged {
    lookup_code: String,
    document_sha256: Vec<u8>,
    finished: Instant,
}

/// Archives a fresh document and certifies it, over and over, until `stop`; returns what
/// was acknowledged. Failed calls are retried with new documents (none is expected).
async fn archive_and_certify(
    archive: pb::archive_service_client::ArchiveServiceClient<Channel>,
    signing: pb::signing_service_client::SigningServiceClient<Channel>,
    worker: usize,
    signer_id: String,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> (Vec<Acknowledged>, usize) {
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    let mut number = 0usize;
    // Bounded even if `stop` were never set.
    while !stop.load(Ordering::SeqCst) && number < 10_000 {
        number += 1;
        let mut content = format!("worker {worker} document {number}\n").into_bytes();
        content.extend(document((worker * 31 + number) as u8, 2_000));
        let request_id = format!("load-{worker}-{number}");
        let messages = upload_messages(&format!("{request_id}-dossier"), AGENCY, &[("scan.bin", content.as_slice())], 64 * 1024);
        if archive.clone().upload_dossier(futures::stream::iter(messages)).await.is_err() {
            failures += 1;
            continue;
        }
        match signing.clone().certify(certify_request(&request_id, &content, AGENCY, &signer_id)).await {
            Ok(response) => {
                acknowledged.push(Acknowledged {
                    lookup_code: response.into_inner().lookup_code,
                    document_sha256: sha256(&content),
                    finished: Instant::now(),
                });
                count.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => failures += 1,
        }
    }
    (acknowledged, failures)
}

/// Waits until the load acknowledged at least `target` certifications.
async fn wait_for_count(count: &AtomicUsize, target: usize) {
    let start = Instant::now();
    while count.load(Ordering::SeqCst) < target {
        assert!(start.elapsed() < LOAD_DEADLINE, "the load acknowledged {} of {target} certifications within {LOAD_DEADLINE:?}", count.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// `cp -r` with std only.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn restore_args<'a>(from: &'a str, data_dir: &'a str, shared: &'a str) -> Vec<String> {
    vec![
        "restore".into(),
        "--from".into(),
        from.into(),
        "--data-dir".into(),
        data_dir.into(),
        "--master-key".into(),
        format!("{shared}/master.key"),
        "--log-key".into(),
        format!("{shared}/log.key"),
    ]
}

fn run_cli(args: &[String]) -> (bool, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kyso_cli(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_as_a_new_cluster_with_every_acknowledged_certification() {
    let dir = tempdir();
    let layout = ClusterLayout::new(dir.path(), 3, "");
    let nodes = layout.start_all();
    let leader = wait_for_leader(&nodes, ELECTION_DEADLINE).await;
    let signer = register_signer(&nodes[leader], &layout.pki.issue(&signer_spec("Nguyễn Văn An", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();

    // The load: one archive-and-certify worker per node.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (position, node) in nodes.iter().enumerate() {
        workers.push(tokio::spawn(archive_and_certify(
            node.archive().await,
            node.signing().await,
            position,
            signer.signer_id.clone(),
            stop.clone(),
            count.clone(),
        )));
    }
    wait_for_count(&count, ACKNOWLEDGED_BEFORE_MIN).await;

    // The backup, from a follower, while the load goes on.
    let follower = (leader + 1) % nodes.len();
    let backup_dir = dir.path().join("backup");
    let backup_started = Instant::now();
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| {
        kyso_cli_for(&nodes[follower], &["backup", "--server", &nodes[follower].grpc_url, "--to", backup_dir.to_str().unwrap()])
    });
    let backup_finished = Instant::now();
    assert!(ok, "kyso backup failed: {stdout}\n{stderr}");
    eprintln!("{}", stdout.trim());
    wait_for_count(&count, count.load(Ordering::SeqCst) + ACKNOWLEDGED_AFTER_MIN).await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (done, failed) = worker.await.unwrap();
        acknowledged.extend(done);
        failures += failed;
    }
    assert_eq!(failures, 0, "the load saw failed calls");
    let before: Vec<&Acknowledged> = acknowledged.iter().filter(|ack| ack.finished < backup_started).collect();
    let during = acknowledged.iter().filter(|ack| ack.finished >= backup_started && ack.finished <= backup_finished).count();
    eprintln!(
        "backup under load: {} certifications acknowledged, {} before the backup began, {during} while it ran ({:?})",
        acknowledged.len(),
        before.len(),
        backup_finished - backup_started
    );
    assert!(!before.is_empty(), "the load acknowledged nothing before the backup");
    assert!(acknowledged.len() > before.len(), "the load went on after the backup began");
    assert!(!backup_dir.with_file_name("backup.partial").exists(), "the partial directory was renamed into place");

    // The manifest lists the state and every blob; the files match it.
    let manifest = read_manifest(&backup_dir);
    assert_eq!(manifest["format"], "kyso-backup/v1");
    let tree_size = manifest["log"]["tree_size"].as_u64().unwrap();
    let root_hex = manifest["log"]["root"].as_str().unwrap().to_string();
    let blobs = manifest["blobs"].as_array().unwrap();
    assert!(tree_size > before.len() as u64, "the signer's registration and every certification before the backup are in its log");
    assert!(blobs.len() >= before.len(), "every archived document before the backup is in it");
    let state = std::fs::read(backup_dir.join("state.snapshot")).unwrap();
    assert_eq!(hex::encode(sha256(&state)), manifest["state"]["sha256"].as_str().unwrap());
    for blob in blobs {
        let hex = blob["sha256"].as_str().unwrap();
        let bytes = std::fs::read(backup_dir.join("blobs").join(&hex[..2]).join(hex)).unwrap();
        assert_eq!(hex::encode(sha256(&bytes)), hex);
    }

    // The original cluster's root at the backup's size, and the log key's verifier.
    let mut original_log = pb::log_service_client::LogServiceClient::new(nodes[leader].channel().await);
    let original_at_size = original_log
        .get_consistency_proof(pb::GetConsistencyProofRequest { first_size: tree_size, second_size: tree_size })
        .await
        .unwrap()
        .into_inner();
    let original_checkpoint = original_at_size.checkpoint.unwrap();
    assert_eq!(original_checkpoint.tree_size, tree_size);
    assert_eq!(hex::encode(&original_checkpoint.root_hash), root_hex, "the manifest's root is the cluster's root at that size");
    assert_eq!(original_checkpoint.note, manifest["log"]["checkpoint"].as_str().unwrap());

    // A damaged backup is refused, precisely, and leaves no data directory behind.
    let shared = layout.dir.join("shared").display().to_string();
    let corrupt_dir = dir.path().join("backup-corrupt");
    copy_tree(&backup_dir, &corrupt_dir);
    let victim = blobs[blobs.len() / 2]["sha256"].as_str().unwrap().to_string();
    let victim_path = corrupt_dir.join("blobs").join(&victim[..2]).join(&victim);
    let mut bytes = std::fs::read(&victim_path).unwrap();
    bytes[7] ^= 0x20;
    std::fs::write(&victim_path, &bytes).unwrap();
    let refused_dir = dir.path().join("refused");
    let (ok, stdout, stderr) = run_cli(&restore_args(corrupt_dir.to_str().unwrap(), refused_dir.to_str().unwrap(), &shared));
    assert!(!ok, "a corrupt blob was restored: {stdout}");
    assert!(stderr.contains(&format!("blob {victim} in the backup")) && stderr.contains("is corrupt"), "{stderr}");
    assert!(!refused_dir.exists() && !dir.path().join("refused.restoring").exists(), "a refused restore left a directory");
    std::fs::remove_file(&victim_path).unwrap();
    let (ok, _, stderr) = run_cli(&restore_args(corrupt_dir.to_str().unwrap(), refused_dir.to_str().unwrap(), &shared));
    assert!(!ok && stderr.contains(&format!("blob {victim} listed in the manifest is missing")), "{stderr}");
    let other_log_key = dir.path().join("other-log.key");
    write_private(&other_log_key, &kyso::tlog::LogSigner::generate().unwrap());
    let mut wrong_key = restore_args(backup_dir.to_str().unwrap(), refused_dir.to_str().unwrap(), &shared);
    wrong_key[8] = other_log_key.display().to_string();
    let (ok, _, stderr) = run_cli(&wrong_key);
    assert!(!ok && stderr.contains("is not the key that signed this backup's checkpoint"), "{stderr}");
    assert!(!refused_dir.exists());

    // Restore as the first member of a new cluster: node id 11, new ports.
    let (grpc, raft) = (free_port(), free_port());
    let restored_dir = dir.path().join("restored");
    let mut restore = restore_args(backup_dir.to_str().unwrap(), restored_dir.join("data").to_str().unwrap(), &shared);
    restore.extend(["--node-id", "11", "--raft-addr", &format!("127.0.0.1:{raft}"), "--client-addr", &format!("127.0.0.1:{grpc}")].map(String::from));
    let (ok, stdout, stderr) = run_cli(&restore);
    assert!(ok, "kyso restore failed: {stdout}\n{stderr}");
    eprintln!("{}", stdout.trim());
    for node in nodes {
        drop(node);
    }
    let config = format!(
        "data_dir = \"data\"\ngrpc_addr = \"127.0.0.1:{grpc}\"\nhttp_addr = \"127.0.0.1:0\"\n\
         master_key_file = \"master.key\"\nlog_key_file = \"log.key\"\ntrust_anchor_files = [{:?}]\n\
         {}[limits]\n{TEST_LIMITS}\n\
         [cluster]\nnode_id = 11\nraft_addr = \"127.0.0.1:{raft}\"\ntick_interval_milliseconds = 50\n\
         members = [{{ id = 11, raft_addr = \"127.0.0.1:{raft}\", client_addr = \"127.0.0.1:{grpc}\" }}]\n",
        layout.pki.ca_pem_path.display().to_string(),
        layout.tls.toml_for_node(11),
    );
    let mut restored = vec![TestNode::start_config(&restored_dir, &config, &layout.tls)];
    wait_for_leader(&restored, ELECTION_DEADLINE).await;
    let status = restored[0].cluster().await.status(pb::ClusterStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.node_id, 11, "the restored cluster has a new node id");

    // The same log, signed by the same key: the checkpoint at the backup's size is the
    // original's, byte for byte.
    let mut restored_log = pb::log_service_client::LogServiceClient::new(restored[0].channel().await);
    let checkpoint = restored_log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert_eq!(checkpoint.tree_size, tree_size, "the restored log has the backup's size");
    assert_eq!(checkpoint.root_hash, original_checkpoint.root_hash, "the restored root at that size is the original's");
    assert_eq!(checkpoint.note, original_checkpoint.note);

    // Every certification acknowledged before the backup began verifies there.
    let mut verification = restored[0].verification().await;
    for ack in &before {
        let answer = verification
            .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(ack.lookup_code.clone())), correlation_id: String::new(), ..Default::default() })
            .await
            .unwrap_or_else(|status| panic!("{} does not verify on the restored node: {status:?}", ack.lookup_code))
            .into_inner();
        assert_eq!(answer.document_sha256, ack.document_sha256);
        let found = answer.certifications.iter().find(|verified| {
            verified.certification.as_ref().is_some_and(|certification| certification.lookup_code == ack.lookup_code)
        });
        let verified = found.unwrap_or_else(|| panic!("{} is missing from the restored node", ack.lookup_code));
        assert_eq!(verified.summary, "valid", "{}", ack.lookup_code);
        let proof = verified.inclusion.as_ref().expect("an inclusion proof");
        assert!(proof.checkpoint.as_ref().is_some_and(|checkpoint| checkpoint.tree_size == tree_size));
    }

    // And it is a working cluster: the restored signer key opens with the original master
    // key and the PIN, and the log grows from the backup's size.
    let content = b"a document certified after the restore".to_vec();
    upload(&restored[0], "after-restore-dossier", AGENCY, &[("scan.bin", content.as_slice())]).await.unwrap();
    restored[0]
        .signing()
        .await
        .certify(certify_request("after-restore", &content, AGENCY, &signer.signer_id))
        .await
        .unwrap();
    let grown = restored_log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert!(grown.tree_size > tree_size);
    let consistency = restored_log
        .get_consistency_proof(pb::GetConsistencyProofRequest { first_size: tree_size, second_size: grown.tree_size })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<[u8; 32]> = consistency.proof.iter().map(|hash| hash.as_slice().try_into().unwrap()).collect();
    let old_root: [u8; 32] = original_checkpoint.root_hash.as_slice().try_into().unwrap();
    let new_root: [u8; 32] = grown.root_hash.as_slice().try_into().unwrap();
    kyso::tlog::verify_consistency(tree_size, grown.tree_size, &old_root, &new_root, &path)
        .expect("the restored log extends the original's tree");

    // Other members join the new cluster with the usual flow (a learner that receives the
    // state as a Raft snapshot and every blob, then a voter).
    let (grpc, raft) = (free_port(), free_port());
    restored.push(TestNode::start_config(&dir.path().join("joined"), &layout.config(12, grpc, raft, true), &layout.tls));
    let added = restored[0]
        .cluster()
        .await
        .add_node(pb::AddNodeRequest { id: 12, raft_addr: format!("127.0.0.1:{raft}"), client_addr: format!("127.0.0.1:{grpc}") })
        .await
        .unwrap()
        .into_inner();
    assert!(added.members.iter().any(|member| member.id == 12 && member.role == "voter"), "{added:?}");
    wait_for_identical_state(&restored, Duration::from_secs(90)).await;
    let first = before[0];
    let answer = restored[1]
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(first.lookup_code.clone())), correlation_id: String::new(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.certifications[0].summary, "valid", "the joined member verifies what the backup held");
}

/// Runs the kyso CLI with extra environment variables.
fn kyso_with_env(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kyso")).args(args).env("KYSO_LOG", "warn").envs(env.iter().cloned()).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The same backup and restore through an S3 bucket (s3s-fs, which checks SigV4), with
/// the settings from the usual AWS_* variables: a standalone node is backed up to a
/// prefix, a second backup to that prefix is refused, and the restore from the bucket
/// puts the blobs into the bucket (`--blobs-to`), not the data directory; the restored
/// node, on S3 storage, serves every document and verifies what was certified under the
/// same checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_goes_to_an_s3_prefix_and_restores_from_it() {
    let Fixture { dir, pki, node } = fixture("");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Phạm Thị Lan", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let mut codes = Vec::new();
    let mut contents = Vec::new();
    for number in 0..3u8 {
        let content = document(number + 40, 3_000 + usize::from(number));
        contents.push(content.clone());
        upload(&node, &format!("s3-dossier-{number}"), AGENCY, &[("scan.bin", content.as_slice())]).await.unwrap();
        let certification = node
            .signing()
            .await
            .certify(certify_request(&format!("s3-certify-{number}"), &content, AGENCY, &signer.signer_id))
            .await
            .unwrap()
            .into_inner();
        codes.push(certification.lookup_code);
    }
    let s3 = s3::S3Server::start(&dir.path().join("s3"));
    let mut env: Vec<(String, String)> = s3.credential_env();
    env.extend([
        ("AWS_ENDPOINT_URL".to_string(), s3.endpoint()),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ("AWS_REGION".to_string(), s3::S3_REGION.to_string()),
    ]);
    env.extend(node.tls.cli_env().into_iter().map(|(name, value)| (name.to_string(), value)));
    let target = format!("s3://{}/backups/first", s3::S3_BUCKET);
    let (ok, stdout, stderr) = kyso_with_env(&["backup", "--server", &node.grpc_url, "--to", &target], &env);
    assert!(ok, "kyso backup to s3 failed: {stdout}\n{stderr}");
    assert!(s3.object_file("backups/first/manifest.json").is_file(), "the manifest is in the bucket under the prefix");
    let (ok, _, stderr) = kyso_with_env(&["backup", "--server", &node.grpc_url, "--to", &target], &env);
    assert!(!ok && stderr.contains("already holds a backup"), "{stderr}");

    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let original = log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    let data = node.dir.join("data");
    let restored_dir = dir.path().join("restored");
    let (ok, stdout, stderr) = kyso_with_env(
        &[
            "restore",
            "--from",
            &target,
            "--data-dir",
            restored_dir.join("data").to_str().unwrap(),
            "--master-key",
            data.join("master.key").to_str().unwrap(),
            "--log-key",
            data.join("log.key").to_str().unwrap(),
            "--blobs-to",
            &format!("s3://{}", s3::S3_BUCKET),
        ],
        &env,
    );
    assert!(ok, "kyso restore from s3 failed: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("in bucket {}", s3::S3_BUCKET)), "{stdout}");
    assert!(!restored_dir.join("data/blobs").exists(), "blobs restored into a bucket were also written to the data directory");
    for content in &contents {
        let hex = hex::encode(sha256(content));
        let key = format!("blobs/sha256/{}/{}/{hex}", &hex[..2], &hex[2..4]);
        assert_eq!(std::fs::read(s3.object_file(&key)).unwrap_or_default(), *content, "{key} is not the document in the bucket");
    }
    let (ok, _, stderr) = kyso_with_env(
        &["restore", "--from", &target, "--data-dir", dir.path().join("refused").to_str().unwrap(), "--master-key", "x", "--log-key", "y", "--blobs-to", &target],
        &env,
    );
    assert!(!ok && stderr.contains("has a prefix"), "{stderr}");
    drop(node);
    let restored = TestNode::start_with(&restored_dir, &pki.ca_pem_path, &s3.storage_toml(Some(&dir.path().join("s3.toml"))), "");
    for content in &contents {
        let served = get_blob(&restored, &sha256(content)).await.expect("the restored node serves a document from the bucket");
        assert_eq!(&served, content);
    }
    let mut restored_log = pb::log_service_client::LogServiceClient::new(restored.channel().await);
    let checkpoint = restored_log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert_eq!(checkpoint.note, original.note, "the restored log is the original's, under the same key");
    let mut verification = restored.verification().await;
    for code in &codes {
        let answer = verification
            .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(code.clone())), correlation_id: String::new(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.certifications[0].summary, "valid", "{code}");
    }
}
