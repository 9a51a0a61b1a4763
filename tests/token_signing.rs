//! A certified PDF signed with the signer's own PKCS#11 token (issue 15, item 2): the key
//! lives in a SoftHSM2 token, the node holds only the signer's certificate, and the real
//! `kyso signer sign-pdf` binary prepares, signs on the token and completes. The PDF is
//! checked by pdfsig, pyHanko and qpdf, and found by Verify. Then what must be refused:
//! a signature by another key, an unknown or foreign prepared id, a caller that does not
//! act as the signer.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-dong-hung";
const TOKEN_LABEL: &str = "kyso-test-token";
const TOKEN_PIN: &str = "246810";
const KEY_LABEL: &str = "signer-key";

fn artefacts() -> PathBuf {
    artefacts_dir("token-signing")
}



/// A SoftHSM2 token in `dir` holding `key_pem` (PKCS#8) as KEY_LABEL; returns the
/// environment that points SoftHSM2 at it.
fn softhsm_token(dir: &Path, key_pem: &str) -> Vec<(&'static str, String)> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display())).unwrap();
    let env = vec![("SOFTHSM2_CONF", conf.display().to_string())];
    let (ok, output) = tool_with_env("softhsm2-util", &["--init-token", "--free", "--label", TOKEN_LABEL, "--pin", TOKEN_PIN, "--so-pin", "13579246"], &env);
    assert!(ok, "softhsm2-util --init-token:\n{output}");
    let key_path = dir.join("signer-key.pem");
    write_private(&key_path, key_pem.as_bytes());
    let (ok, output) = tool_with_env(
        "softhsm2-util",
        &["--import", key_path.to_str().unwrap(), "--token", TOKEN_LABEL, "--label", KEY_LABEL, "--id", "01", "--pin", TOKEN_PIN],
        &env,
    );
    assert!(ok, "softhsm2-util --import:\n{output}");
    std::fs::remove_file(&key_path).unwrap();
    env
}

/// Registers a signer with its certificate only: the node holds no key for it.
async fn verify(node: &TestNode, subject: pb::verify_request::Subject) -> Result<pb::VerifyResponse, tonic::Status> {
    node.verification().await.verify(pb::VerifyRequest { subject: Some(subject), correlation_id: String::new(), ..Default::default() }).await.map(|response| response.into_inner())
}

/// Runs the real `kyso signer sign-pdf` as the node's operator against the SoftHSM2 token
/// of `token_env`, writing `out`; returns its success and output.
fn sign_pdf_on_token(node: &TestNode, token_env: &[(&'static str, String)], signer_id: &str, scan: &[u8], out: &Path) -> (bool, String) {
    let _ = std::fs::remove_file(out);
    let mut env = node.tls.cli_env();
    env.extend(token_env.iter().cloned());
    env.push(("KYSO_TOKEN_PIN", TOKEN_PIN.into()));
    env.push(("KYSO_LOG", "warn".into()));
    let hash = hex::encode(sha256(scan));
    tool_with_env(
        env!("CARGO_BIN_EXE_kyso"),
        &[
            "signer", "sign-pdf", "--server", &node.grpc_url, "--hash", &hash, "--kind", "copy", "--agency", AGENCY, "--signer", signer_id,
            "--token-label", TOKEN_LABEL, "--key-label", KEY_LABEL, "--out", out.to_str().unwrap(),
        ],
        &env,
    )
}

/// pdfsig's report on `path`, trusting the test CA through a fresh NSS database.
fn pdfsig_trusting(pki: &TestPki, path: &Path) -> String {
    let (_nss, database) = nss_database_trusting(&pki.ca_pem_path);
    tool("pdfsig", &["-nssdir", &database, path.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_signed_on_a_token_is_certified_trusted_by_independent_validators_and_verifiable() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let top_level = format!(
        "public_base_url = \"https://tra-cuu.example.vn\"\n[agency_names]\n\"{AGENCY}\" = \"UBND xã Đông Hưng\"\n{}",
        pki.tsa_toml(&dir.path().join("pki"), "tsa")
    );
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &top_level, "");
    let performer = pki.issue(&signer_spec("Phạm Minh Châu", KeyAlgorithm::EcdsaP256));
    let token_env = softhsm_token(&dir.path().join("softhsm"), performer.key_pem().as_str());
    let signer = register_token_signer(&node, &performer.cert_pem(), AGENCY).await;
    assert!(!signer.has_server_key, "the node holds only the certificate");

    let agency_certificate = pki.issue(&signer_spec("UBND xã Đông Hưng", KeyAlgorithm::EcdsaP256));
    let (cert_path, key_path) = (dir.path().join("agency.pem"), dir.path().join("agency.key"));
    std::fs::write(&cert_path, agency_certificate.cert_pem()).unwrap();
    write_private(&key_path, agency_certificate.key_pem().as_bytes());
    let (ok, stdout, stderr) = kyso_cli_for(
        &node,
        &["agency", "seal", "--server", &node.grpc_url, "--agency", AGENCY, "--org-cert", cert_path.to_str().unwrap(), "--org-key", key_path.to_str().unwrap()],
    );
    assert!(ok, "kyso agency seal: {stdout}{stderr}");

    // The CA's CRL held by kyso: the token-signed PDF gets it in its DSS (PAdES B-LT).
    let crl = kyso::crypto::devpki::issue_crl(&pki.ca, &[], now_unix() - 60, 30 * 86_400).unwrap();
    node.signing().await.import_crl(pb::ImportCrlRequest { request_id: "crl-token".into(), crl }).await.unwrap();

    let scan = kyso::cli::dev::sample_pdf("giấy khai sinh, bản chính");
    upload(&node, "dossier-token", AGENCY, &[("khai-sinh.pdf", &scan)]).await.unwrap();
    let out = artefacts().join("token-signed.pdf");
    let (ok, output) = sign_pdf_on_token(&node, &token_env, &signer.signer_id, &scan, &out);
    assert!(ok && output.contains("signed with the token"), "kyso signer sign-pdf:\n{output}");
    let delivered = std::fs::read(&out).expect("the certified pdf was written");
    assert!(delivered.starts_with(&scan), "the scan's bytes are the delivered pdf's prefix");

    let qpdf = tool("qpdf", &["--check", out.to_str().unwrap()]);
    println!("qpdf --check:\n{}", qpdf.trim());
    assert!(qpdf.contains("No syntax or stream encoding errors") && !qpdf.to_lowercase().contains("warning"), "qpdf:\n{qpdf}");

    let pdfsig = pdfsig_trusting(&pki, &out);
    println!("pdfsig:\n{}", pdfsig.trim());
    assert_eq!(pdfsig.matches("Signature is Valid.").count(), 2, "the token's and the agency's signatures:\n{pdfsig}");
    assert_eq!(pdfsig.matches("Certificate is Trusted.").count(), 2, "pdfsig:\n{pdfsig}");
    assert!(pdfsig.contains("kyso-performer") && pdfsig.contains("kyso-agency"), "pdfsig:\n{pdfsig}");

    let pyhanko = tool("pyhanko", &["sign", "validate", "--trust", pki.ca_pem_path.to_str().unwrap(), "--trust-replace", "--no-revocation-check", out.to_str().unwrap()]);
    println!("pyhanko sign validate:\n{}", pyhanko.trim());
    assert_eq!(
        pyhanko.matches(":INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>").count(),
        2,
        "both signatures intact and trusted, each with a trusted time stamp; pyhanko:\n{pyhanko}"
    );

    let (ok, ades) = tool_with_env("pyhanko", &["sign", "adesverify", "--trust", pki.ca_pem_path.to_str().unwrap(), "--trust-replace", out.to_str().unwrap()], &[]);
    println!("pyhanko sign adesverify (revocation checked from the dss, offline):\n{}", ades.trim());
    assert!(ok && ades.matches(":INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>").count() == 2, "pades b-lt: pyhanko:\n{ades}");

    let by_pdf = verify(&node, pb::verify_request::Subject::Sha256(sha256(&delivered))).await.expect("verify by the pdf's hash");
    assert_eq!(by_pdf.document_sha256, sha256(&scan), "answered with the scan the pdf was made from");
    assert_eq!(by_pdf.certifications.len(), 1);
    let found = &by_pdf.certifications[0];
    assert_eq!(found.summary, "valid", "{found:?}");
    assert!(found.signature_valid && found.chain_valid_at_signing);
    assert!(found.signature_timestamp_unix > 0, "the token's signature carries kyso's time stamp");
    let certification = found.certification.clone().expect("certification");
    assert_eq!(certification.signer_id, signer.signer_id);
    assert_eq!(certification.register_number, 1);
    assert_eq!(certification.delivered_pdf_sha256, sha256(&delivered));
    let by_code = verify(&node, pb::verify_request::Subject::LookupCode(certification.lookup_code.clone())).await.expect("verify by lookup code");
    assert_eq!(by_code.certifications[0].summary, "valid");
    let by_file = verify(&node, pb::verify_request::Subject::File(delivered.clone())).await.expect("verify by the pdf itself");
    assert_eq!(by_file.certifications[0].certification.as_ref().map(|found| found.lookup_code.clone()), Some(certification.lookup_code.clone()));

    // Offline: the token's CMS covers the certified PDF, so the bundle checks it there, and
    // given only the scan it says which file to pass.
    let offline = offline_bundle(&node, &pki.ca_pem_path, &certification.lookup_code);
    let (ok, output) = offline(&out);
    assert!(ok && output.contains("verified offline"), "kyso verify --offline with the certified pdf:\n{output}");
    let scan_path = artefacts().join("token-scan.pdf");
    std::fs::write(&scan_path, &scan).unwrap();
    let (ok, output) = offline(&scan_path);
    assert!(!ok && output.contains("pass the certified pdf as --file"), "kyso verify --offline with the scan:\n{output}");
    let mut changed = delivered.clone();
    let at = changed.len() / 3;
    changed[at] ^= 1;
    let changed_path = artefacts().join("token-signed-changed.pdf");
    std::fs::write(&changed_path, &changed).unwrap();
    let (ok, output) = offline(&changed_path);
    assert!(!ok && output.contains("not the certified document"), "kyso verify --offline with a changed pdf:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_signature_a_stale_prepared_id_and_a_foreign_caller_are_refused() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &pki.tsa_toml(&dir.path().join("pki"), "tsa"), "");
    let performer = pki.issue(&signer_spec("Phạm Minh Châu", KeyAlgorithm::EcdsaP256));
    let signer = register_token_signer(&node, &performer.cert_pem(), AGENCY).await;
    let scan = kyso::cli::dev::sample_pdf("bằng tốt nghiệp, bản chính");
    upload(&node, "dossier-refusals", AGENCY, &[("bang.pdf", &scan)]).await.unwrap();

    let prepared = node.signing().await.prepare_token_signature(token_prepare_request(AGENCY, &scan, &signer.signer_id)).await.expect("prepare").into_inner();
    assert_eq!(prepared.signed_attributes_der.first(), Some(&0x31), "the token signs the SET OF encoding");
    assert_eq!(prepared.key_algorithm, "ecdsa-p256");
    assert_eq!(prepared.register_number, 1);
    assert!(prepared.prepared_id.starts_with("n0-"), "{}", prepared.prepared_id);

    // Another key's signature: INVALID_ARGUMENT, and nothing is recorded.
    let other_key = pki.issue(&signer_spec("Kẻ mạo danh", KeyAlgorithm::EcdsaP256)).signing_key().unwrap();
    let forged = other_key.sign(&prepared.signed_attributes_der).unwrap();
    let complete = |request_id: &str, signature_value: Vec<u8>| pb::CompleteTokenSignatureRequest {
        request_id: request_id.into(),
        prepared_id: prepared.prepared_id.clone(),
        signature_value,
    };
    let refused = node.signing().await.complete_token_signature(complete("complete-forged", forged)).await;
    assert_status(refused, tonic::Code::InvalidArgument, "does not verify with signer");
    assert_status(verify(&node, pb::verify_request::Subject::Sha256(sha256(&scan))).await, tonic::Code::NotFound, "no certification");

    // A caller granted the signer role for another signer only may neither prepare nor
    // complete for this one.
    let stranger = node.tls.issue_client("Nguyễn Văn Lạ");
    grant(&node, &stranger, &["signer"], &[AGENCY], &["someone-else"]).await;
    let mut stranger_signing = pb::signing_service_client::SigningServiceClient::new(node.channel_as(&stranger).await);
    assert_status(stranger_signing.prepare_token_signature(token_prepare_request(AGENCY, &scan, &signer.signer_id)).await, tonic::Code::PermissionDenied, "may not sign as signer");
    let right_value = performer.signing_key().unwrap().sign(&prepared.signed_attributes_der).unwrap();
    assert_status(
        stranger_signing.complete_token_signature(complete("complete-stranger", right_value.clone())).await,
        tonic::Code::PermissionDenied,
        "may not sign as signer",
    );

    // Unknown here, and prepared on another node.
    let unknown = pb::CompleteTokenSignatureRequest { request_id: "complete-unknown".into(), prepared_id: "n0-00000000000000000000000000000000".into(), signature_value: right_value.clone() };
    assert_status(node.signing().await.complete_token_signature(unknown).await, tonic::Code::NotFound, "prepare the signature again");
    let foreign = pb::CompleteTokenSignatureRequest { request_id: "complete-foreign".into(), prepared_id: "n7-00000000000000000000000000000000".into(), signature_value: right_value.clone() };
    assert_status(node.signing().await.complete_token_signature(foreign).await, tonic::Code::FailedPrecondition, "call CompleteTokenSignature on node 7");

    // The refusals left the prepared signature in place: the right value completes it,
    // a retry with the same request id answers the same certification, and the prepared
    // id is then used up.
    let recorded = node.signing().await.complete_token_signature(complete("complete-right", right_value.clone())).await.expect("complete").into_inner();
    assert_eq!(recorded.lookup_code, prepared.lookup_code);
    assert_eq!(recorded.register_number, 1);
    let again = node.signing().await.complete_token_signature(complete("complete-right", right_value.clone())).await.expect("retry").into_inner();
    assert_eq!(again.lookup_code, recorded.lookup_code);
    assert_status(node.signing().await.complete_token_signature(complete("complete-twice", right_value)).await, tonic::Code::NotFound, "was completed");
    let answer = verify(&node, pb::verify_request::Subject::LookupCode(recorded.lookup_code.clone())).await.expect("verify");
    assert_eq!(answer.certifications[0].summary, "valid");

    // A number taken meanwhile: two revisions prepared with the same next number; the
    // second to complete is ABORTED and nothing of it is recorded.
    let second_scan = kyso::cli::dev::sample_pdf("giấy chứng nhận kết hôn, bản chính");
    upload(&node, "dossier-race", AGENCY, &[("ket-hon.pdf", &second_scan)]).await.unwrap();
    let first = node.signing().await.prepare_token_signature(token_prepare_request(AGENCY, &second_scan, &signer.signer_id)).await.unwrap().into_inner();
    let second = node.signing().await.prepare_token_signature(token_prepare_request(AGENCY, &second_scan, &signer.signer_id)).await.unwrap().into_inner();
    assert_eq!((first.register_number, second.register_number), (2, 2), "a prepared number is not reserved");
    let sign = |attributes: &[u8]| performer.signing_key().unwrap().sign(attributes).unwrap();
    let completed = node
        .signing()
        .await
        .complete_token_signature(pb::CompleteTokenSignatureRequest { request_id: "race-1".into(), prepared_id: first.prepared_id.clone(), signature_value: sign(&first.signed_attributes_der) })
        .await
        .expect("the first completes")
        .into_inner();
    assert_eq!(completed.register_number, 2);
    let aborted = node
        .signing()
        .await
        .complete_token_signature(pb::CompleteTokenSignatureRequest { request_id: "race-2".into(), prepared_id: second.prepared_id.clone(), signature_value: sign(&second.signed_attributes_der) })
        .await;
    assert_status(aborted, tonic::Code::Aborted, "prepare the signature again");
    let answer = verify(&node, pb::verify_request::Subject::Sha256(sha256(&second_scan))).await.expect("verify");
    assert_eq!(answer.certifications.len(), 1, "only the first of the two was recorded");
}

/// An RSA key on the token signs through CKM_SHA256_RSA_PKCS (PKCS#1 v1.5); the agency has
/// no seal here, so the PDF carries the token's signature alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_on_a_token_signs_the_pdf_with_pkcs1_v1_5() {
    let dir = tempdir();
    let pki = TestPki::new(&dir.path().join("pki"));
    let node = TestNode::start_with(&dir.path().join("node"), &pki.ca_pem_path, &pki.tsa_toml(&dir.path().join("pki"), "tsa"), "");
    let rsa_key = openssl_rsa_key(dir.path());
    let performer = kyso::crypto::devpki::issue_with_key(&signer_spec("Võ Thị Hạnh", KeyAlgorithm::Rsa), &rsa_key, &pki.ca).unwrap();
    let token_env = softhsm_token(&dir.path().join("softhsm"), performer.key_pem().as_str());
    let signer = register_token_signer(&node, &performer.cert_pem(), AGENCY).await;
    let scan = kyso::cli::dev::sample_pdf("giấy xác nhận cư trú");
    upload(&node, "dossier-rsa", AGENCY, &[("cu-tru.pdf", &scan)]).await.unwrap();
    let out = artefacts().join("token-signed-rsa.pdf");
    let (ok, output) = sign_pdf_on_token(&node, &token_env, &signer.signer_id, &scan, &out);
    assert!(ok && output.contains("signed with the token"), "kyso signer sign-pdf:\n{output}");
    let pdfsig = pdfsig_trusting(&pki, &out);
    assert!(pdfsig.contains("Signature is Valid.") && pdfsig.contains("Certificate is Trusted."), "pdfsig:\n{pdfsig}");
    assert!(!pdfsig.contains("Signature #2"), "no agency seal, one signature:\n{pdfsig}");
    let delivered = std::fs::read(&out).unwrap();
    let answer = verify(&node, pb::verify_request::Subject::File(delivered)).await.expect("verify the pdf");
    assert_eq!(answer.certifications[0].summary, "valid");
}
