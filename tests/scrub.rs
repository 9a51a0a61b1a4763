//! `kyso scrub` against real nodes with their own local storage: a corrupt and a missing
//! blob are reported (non-zero exit), then repaired from a peer node holding good copies;
//! a blob that is bad on the peer too is refused, never copied. The two independent single
//! nodes stand in for two members of a cluster with per-node storage.

mod common;

use common::*;

const AGENCY: &str = "xa-thu-nghiem";

fn blob_file(node: &TestNode, document: &[u8]) -> std::path::PathBuf {
    let hash = kyso::domain::Sha256::digest(document);
    node.dir.join("data/blobs").join(kyso::archive::blob_key(&hash).as_ref())
}


fn flip_one_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_reports_bad_copies_and_repairs_them_from_a_peer_with_good_ones() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let peer = TestNode::start(&dir.path().join("peer"), &pki.ca_pem_path, "");
    let corrupt = document(31, 400_000);
    let missing = document(32, 20_000);
    let bad_everywhere = document(33, 5_000);
    let healthy = document(34, 70_000);
    let files: [(&str, &[u8]); 4] =
        [("giay-to-1.pdf", &corrupt), ("giay-to-2.pdf", &missing), ("giay-to-3.pdf", &bad_everywhere), ("giay-to-4.pdf", &healthy)];
    upload(&node, "dossier-node", AGENCY, &files).await.unwrap();
    upload(&peer, "dossier-peer", AGENCY, &files).await.unwrap();

    let (clean, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url]);
    assert!(clean, "a fresh archive must scrub clean: {stdout}\n{stderr}");

    flip_one_byte(&blob_file(&node, &corrupt));
    std::fs::remove_file(blob_file(&node, &missing)).unwrap();
    flip_one_byte(&blob_file(&node, &bad_everywhere));
    flip_one_byte(&blob_file(&peer, &bad_everywhere));
    let read = get_blob(&node, &sha256(&corrupt)).await.unwrap_err();
    assert_eq!(read.code(), tonic::Code::DataLoss, "{read:?}");

    // Report only: every bad copy named, non-zero exit, nothing written.
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url]);
    assert!(!ok, "scrub must fail while blobs are bad: {stdout}");
    assert!(stdout.contains(&format!("corrupt {}", hex::encode(sha256(&corrupt)))), "{stdout}");
    assert!(stdout.contains(&format!("missing {}", hex::encode(sha256(&missing)))), "{stdout}");
    assert!(stdout.contains(&format!("corrupt {}", hex::encode(sha256(&bad_everywhere)))), "{stdout}");
    assert!(!stdout.contains(&hex::encode(sha256(&healthy))), "{stdout}");
    assert!(stdout.contains("scrub checked 4 blobs") && stdout.contains("3 bad, 0 repaired"), "{stdout}");
    assert!(stderr.contains("--repair-from"), "the error should say how to repair: {stderr}");
    assert!(!blob_file(&node, &missing).exists());

    // Repair from the peer: good copies replace bad ones; a copy bad on the peer too is refused.
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url, "--repair-from", &peer.grpc_url]);
    assert!(!ok, "one blob is bad on both nodes, so the scrub must still fail: {stdout}");
    assert!(stdout.contains("3 bad, 2 repaired"), "{stdout}\n{stderr}");
    let refused_line = stdout.lines().find(|line| line.contains(&hex::encode(sha256(&bad_everywhere)))).unwrap();
    assert!(refused_line.contains("not repaired") && refused_line.contains("DataLoss"), "{refused_line}");
    assert_eq!(std::fs::read(blob_file(&node, &corrupt)).unwrap(), corrupt);
    assert_eq!(std::fs::read(blob_file(&node, &missing)).unwrap(), missing);
    assert_ne!(std::fs::read(blob_file(&node, &bad_everywhere)).unwrap(), bad_everywhere, "bad bytes were accepted as a repair");
    assert_eq!(get_blob(&node, &sha256(&corrupt)).await.unwrap(), corrupt);

    // Once the peer's copy is good again, the last one is repaired and the scrub is clean.
    std::fs::write(blob_file(&peer, &bad_everywhere), &bad_everywhere).unwrap();
    let (ok, stdout, stderr) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url, "--repair-from", &peer.grpc_url, "--json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["problems"][0]["repaired"], true, "{report}");
    let (ok, stdout, _) = kyso_cli_for(&node, &["scrub", "--server", &node.grpc_url]);
    assert!(ok && stdout.contains("0 bad"), "{stdout}");
    assert_eq!(std::fs::read(blob_file(&peer, &corrupt)).unwrap(), corrupt, "the peer's good copy must be untouched");
}
