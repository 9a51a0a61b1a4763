//! The transparency log end to end: every record is a leaf, proofs verify against signed
//! checkpoints, an offline bundle checks with no node running, and the witness notices a
//! rewritten history.

mod common;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso::state::{LogEvent, LogLeaf};
use kyso::tlog;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-log";

struct Certified {
    content: Vec<u8>,
    code: String,
}

async fn certify_documents(node: &TestNode, pki: &TestPki, seeds: &[u8]) -> Vec<Certified> {
    let issued = pki.issue(&signer_spec("Phạm Thị Dung", KeyAlgorithm::EcdsaP256));
    let signer = match register_signer(node, &issued, &[AGENCY]).await {
        Ok(signer) => signer,
        Err(status) => panic!("register failed: {status:?}"),
    };
    let mut certified = Vec::new();
    for &seed in seeds {
        let content = document(seed, 4_000);
        upload(node, &format!("d-{seed}"), AGENCY, &[("a.pdf", &content)]).await.unwrap();
        let certification = node
            .signing()
            .await
            .certify(certify_request(&format!("c-{seed}"), &content, AGENCY, &signer.signer_id))
            .await
            .unwrap()
            .into_inner();
        certified.push(Certified { content, code: certification.lookup_code });
    }
    certified
}

fn log_verifier(node: &TestNode) -> tlog::LogVerifier {
    let text = std::fs::read_to_string(node.dir.join("data/log.pub")).unwrap();
    tlog::LogVerifier::parse(text.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_a_leaf_and_its_proofs_verify_against_signed_checkpoints() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let certified = certify_documents(&node, &pki, &[1, 2, 3]).await;
    node.signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: "rv".into(),
            lookup_code: certified[1].code.clone(),
            reason: "sai thông tin".into(),
        })
        .await
        .unwrap();
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let entries = log.get_entries(pb::GetEntriesRequest { start: 0, end: 100 }).await.unwrap().into_inner().entries;
    let events: Vec<LogEvent> = entries.iter().map(|entry| LogLeaf::decode(&entry.leaf_data).unwrap().event).collect();
    assert_eq!(events.len(), 5, "one signer registration, three certifications, one revocation");
    assert!(matches!(&events[0], LogEvent::SignerRegistered(signer) if signer.sealed_key.is_none()));
    assert!(matches!(&events[4], LogEvent::Revocation { reason, .. } if reason == "sai thông tin"));

    let verifier = log_verifier(&node);
    let checkpoint = log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    let opened = tlog::open_checkpoint(&checkpoint.note, &verifier).unwrap();
    assert_eq!(opened.size(), 5);

    for item in &certified {
        let proof = log
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: Some(pb::get_inclusion_proof_request::Leaf::LookupCode(item.code.clone())),
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let at = tlog::open_checkpoint(&proof.checkpoint.as_ref().unwrap().note, &verifier).unwrap();
        let path: Vec<[u8; 32]> = proof.audit_path.iter().map(|hash| hash.as_slice().try_into().unwrap()).collect();
        tlog::verify_inclusion(&tlog::leaf_hash(&proof.leaf_data), proof.leaf_index, at.size(), &path, at.root()).unwrap();
        let mut forged = proof.leaf_data.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(tlog::verify_inclusion(&tlog::leaf_hash(&forged), proof.leaf_index, at.size(), &path, at.root()).is_err());
    }

    let consistency = log.get_consistency_proof(pb::GetConsistencyProofRequest { first_size: 2, second_size: 0 }).await.unwrap().into_inner();
    let path: Vec<[u8; 32]> = consistency.proof.iter().map(|hash| hash.as_slice().try_into().unwrap()).collect();
    let old = log
        .get_inclusion_proof(pb::GetInclusionProofRequest { leaf: Some(pb::get_inclusion_proof_request::Leaf::LeafIndex(0)), tree_size: 2 })
        .await
        .unwrap()
        .into_inner();
    let old_checkpoint = tlog::open_checkpoint(&old.checkpoint.unwrap().note, &verifier).unwrap();
    tlog::verify_consistency(2, 5, old_checkpoint.root(), opened.root(), &path).unwrap();

    let verify = node
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::LookupCode(certified[0].code.clone())), correlation_id: String::new(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let inclusion = verify.certifications[0].inclusion.as_ref().expect("verify answers carry an inclusion proof");
    assert_eq!(inclusion.tree_size, 5);

    let bad_range = log.get_entries(pb::GetEntriesRequest { start: 0, end: 5000 }).await.unwrap_err();
    assert_eq!(bad_range.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_key_is_served_over_grpc_and_http_and_checks_the_checkpoint() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    certify_documents(&node, &pki, &[40]).await;
    let on_disk = std::fs::read_to_string(node.dir.join("data/log.pub")).unwrap();
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let key = log.get_log_key(pb::GetLogKeyRequest {}).await.unwrap().into_inner();
    assert_eq!(format!("{}\n", key.verifier_key), on_disk);
    assert!(key.verifier_key.starts_with(&format!("{}+", key.origin)), "{key:?}");
    let response = http_get(&format!("{}/log-key", node.http_url)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, on_disk, "GET /log-key serves the key line");
    let verifier = tlog::LogVerifier::parse(body.trim()).unwrap();
    let checkpoint = log.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert_eq!(tlog::open_checkpoint(&checkpoint.note, &verifier).unwrap().size(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_bundle_verifies_with_no_node_running_and_rejects_tampering() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let mut node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let certified = certify_documents(&node, &pki, &[7]).await;
    let document_path = dir.path().join("doc.pdf");
    std::fs::write(&document_path, &certified[0].content).unwrap();
    let bundle_path = dir.path().join("bundle.json");
    let (ok, _, stderr) = kyso_cli_for(&node, &[
        "verify", "--server", &node.grpc_url, "--code", &certified[0].code, "--bundle", bundle_path.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let log_key = node.dir.join("data/log.pub");
    node.stop();

    let offline = |bundle: &std::path::Path, file: &std::path::Path, key: &std::path::Path| {
        kyso_cli(&[
            "verify", "--offline", "--bundle", bundle.to_str().unwrap(), "--file", file.to_str().unwrap(),
            "--trust", pki.ca_pem_path.to_str().unwrap(), "--log-key", key.to_str().unwrap(),
        ])
    };
    let (ok, stdout, stderr) = offline(&bundle_path, &document_path, &log_key);
    assert!(ok && stdout.contains("verified offline"), "{stdout}{stderr}");

    let other_document = dir.path().join("other.pdf");
    std::fs::write(&other_document, document(8, 4_000)).unwrap();
    let (ok, _, stderr) = offline(&bundle_path, &other_document, &log_key);
    assert!(!ok && stderr.contains("not the certified document"), "{stderr}");

    let original = std::fs::read_to_string(&bundle_path).unwrap();
    let mut bundle: kyso::bundle::Bundle = serde_json::from_str(&original).unwrap();
    bundle.certifications[0].tree_size += 1;
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, bundle.to_json()).unwrap();
    let (ok, _, stderr) = offline(&tampered, &document_path, &log_key);
    assert!(!ok && stderr.contains("checkpoint"), "{stderr}");

    let foreign_key = dir.path().join("foreign.pub");
    let pkcs8 = tlog::LogSigner::generate().unwrap();
    let foreign = tlog::LogSigner::from_pkcs8("kyso.localhost/log", &pkcs8).unwrap();
    std::fs::write(&foreign_key, foreign.verifier().to_string()).unwrap();
    let (ok, _, stderr) = offline(&bundle_path, &document_path, &foreign_key);
    assert!(!ok && stderr.contains("pinned log key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_accepts_growth_and_detects_a_rewritten_history() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let shared_key = dir.path().join("shared-log.key");
    write_private(&shared_key, &tlog::LogSigner::generate().unwrap());
    let top = format!("log_key_file = {:?}", shared_key.display().to_string());
    let honest = TestNode::start_with(&dir.path().join("honest"), &pki.ca_pem_path, &top, "");
    // A second log under the same key but with a different history: what a rewrite looks like.
    let rewritten = TestNode::start_with(&dir.path().join("rewritten"), &pki.ca_pem_path, &top, "");
    certify_documents(&honest, &pki, &[20, 21]).await;
    certify_documents(&rewritten, &pki, &[30, 31, 32, 33, 34, 35]).await;
    let witness = dir.path().join("witness.checkpoint");
    let log_key = honest.dir.join("data/log.pub");
    let audit = |server: &str| {
        kyso_cli_for(&honest, &["audit", "--server", server, "--from", witness.to_str().unwrap(), "--log-key", log_key.to_str().unwrap()])
    };
    let (ok, stdout, stderr) = audit(&honest.grpc_url);
    assert!(ok && stdout.contains("first checkpoint"), "{stdout}{stderr}");
    certify_documents(&honest, &pki, &[22]).await;
    let (ok, stdout, stderr) = audit(&honest.grpc_url);
    assert!(ok && stdout.contains("consistent: 3 -> 5"), "{stdout}{stderr}");
    let stored = std::fs::read_to_string(&witness).unwrap();
    let (ok, stdout, stderr) = audit(&rewritten.grpc_url);
    assert!(!ok && stderr.contains("INCONSISTENT"), "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&witness).unwrap(), stored, "a failed audit keeps the stored checkpoint");
}
