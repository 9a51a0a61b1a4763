//! kyso's RFC 3161 time-stamping authority through real nodes and independent tools:
//! `openssl ts -query` → `POST /tsa` (curl) → `openssl ts -verify`, the same over gRPC,
//! bad input on `/tsa`, and a node whose signatures are stamped by another node's TSA
//! (`[tsa] url`), checked with `openssl ts -verify` on the token and `openssl cms -verify
//! -cades` on the detached CMS.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-thoi-gian";

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("this test needs {program}: {error}; scripts/test.sh installs it"));
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// POSTs `body_file` to `url` with `content_type` through curl; returns the status code,
/// the Content-Type answered and the body (written to `out_file`).
fn post(url: &str, content_type: &str, body_file: &str, out_file: &str) -> (u16, String, Vec<u8>) {
    let (ok, output) = run(
        "curl",
        &["-sS", "-o", out_file, "-w", "%{http_code} %{content_type}", "-H", &format!("Content-Type: {content_type}"), "--data-binary", &format!("@{body_file}"), url],
    );
    assert!(ok, "curl failed: {output}");
    let (status, answered_type) = output.trim().split_once(' ').unwrap_or((output.trim(), ""));
    (status.parse().expect("an HTTP status"), answered_type.to_string(), std::fs::read(out_file).unwrap_or_default())
}

/// A test CA and a node running a TSA certificate issued by it.
fn node_with_own_tsa(work: &Path) -> (TestPki, TestNode) {
    let pki = TestPki::new(&work.join("pki"));
    let tsa = pki.tsa_toml(&work.join("pki"), "tsa");
    let node = TestNode::start_with(&work.join("node"), &pki.ca_pem_path, &tsa, "");
    (pki, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ts_verifies_replies_of_post_tsa_and_grpc_and_refuses_other_data() {
    let dir = tempdir();
    let work = dir.path();
    let (pki, node) = node_with_own_tsa(work);
    std::fs::write(work.join("data.txt"), "giấy khai sinh, bản sao\n").unwrap();
    std::fs::write(work.join("other.txt"), "another document\n").unwrap();
    let (ok, output) = run("openssl", &["ts", "-query", "-data", &path(work, "data.txt"), "-sha256", "-cert", "-out", &path(work, "query.tsq")]);
    assert!(ok, "openssl ts -query: {output}");

    let (status, content_type, _) = post(&format!("{}/tsa", node.http_url), "application/timestamp-query", &path(work, "query.tsq"), &path(work, "reply.tsr"));
    assert_eq!((status, content_type.as_str()), (200, "application/timestamp-reply"));
    let ca = pki.ca_pem_path.display().to_string();
    let (ok, verified) = run("openssl", &["ts", "-verify", "-data", &path(work, "data.txt"), "-in", &path(work, "reply.tsr"), "-CAfile", &ca]);
    println!("openssl ts -verify (POST /tsa, same data): {}", verified.trim());
    assert!(ok && verified.contains("Verification: OK"), "openssl ts -verify refused the reply:\n{verified}");
    let (ok, refused) = run("openssl", &["ts", "-verify", "-data", &path(work, "other.txt"), "-in", &path(work, "reply.tsr"), "-CAfile", &ca]);
    println!("openssl ts -verify (POST /tsa, other data): {}", refused.trim());
    assert!(!ok && refused.contains("Verification: FAILED") && refused.contains("message imprint mismatch"), "openssl accepted the reply for other data:\n{refused}");

    let (ok, text) = run("openssl", &["ts", "-reply", "-in", &path(work, "reply.tsr"), "-text"]);
    assert!(ok && text.contains("Status: Granted.") && text.contains("Accuracy: 0x01 seconds"), "openssl ts -reply -text:\n{text}");
    assert!(text.contains(&format!("Policy OID: {}", kyso::crypto::tsa::DEFAULT_POLICY_OID)), "{text}");
    let serial = |text: &str| text.lines().find(|line| line.starts_with("Serial number:")).map(str::to_string).expect("a serial number line");

    let query = std::fs::read(work.join("query.tsq")).unwrap();
    let mut log = pb::log_service_client::LogServiceClient::new(node.channel().await);
    let reply = log.timestamp(pb::TimestampRequest { query: query.clone() }).await.unwrap().into_inner().reply;
    std::fs::write(work.join("grpc.tsr"), &reply).unwrap();
    let (ok, verified) = run("openssl", &["ts", "-verify", "-data", &path(work, "data.txt"), "-in", &path(work, "grpc.tsr"), "-CAfile", &ca]);
    assert!(ok && verified.contains("Verification: OK"), "openssl ts -verify refused the gRPC reply:\n{verified}");
    let (_, grpc_text) = run("openssl", &["ts", "-reply", "-in", &path(work, "grpc.tsr"), "-text"]);
    assert_ne!(serial(&text), serial(&grpc_text), "every token has its own serial number");

    let garbage = log.timestamp(pb::TimestampRequest { query: b"not der".to_vec() }).await;
    assert_status(garbage, tonic::Code::InvalidArgument, "not a DER TimeStampReq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_post_tsa_gets_a_precise_4xx() {
    let dir = tempdir();
    let work = dir.path();
    let (_pki, node) = node_with_own_tsa(work);
    let url = format!("{}/tsa", node.http_url);
    std::fs::write(work.join("data.txt"), "data").unwrap();
    run("openssl", &["ts", "-query", "-data", &path(work, "data.txt"), "-sha256", "-out", &path(work, "good.tsq")]);
    run("openssl", &["ts", "-query", "-data", &path(work, "data.txt"), "-sha1", "-out", &path(work, "sha1.tsq")]);
    run("openssl", &["ts", "-query", "-data", &path(work, "data.txt"), "-sha256", "-tspolicy", "1.2.3.4", "-out", &path(work, "policy.tsq")]);
    std::fs::write(work.join("garbage.bin"), b"\x30\x05hello").unwrap();
    std::fs::write(work.join("huge.bin"), vec![0x30u8; 64 * 1024]).unwrap();

    let out = path(work, "answer");
    let answer = |file: &str, content_type: &str| {
        let (status, _, body) = post(&url, content_type, &path(work, file), &out);
        (status, String::from_utf8_lossy(&body).to_string())
    };
    let (status, body) = answer("good.tsq", "application/octet-stream");
    assert!(status == 415 && body.contains("application/timestamp-query"), "{status} {body}");
    let (status, body) = answer("garbage.bin", "application/timestamp-query");
    assert!(status == 400 && body.contains("not a DER TimeStampReq"), "{status} {body}");
    let (status, body) = answer("sha1.tsq", "application/timestamp-query");
    assert!(status == 400 && body.contains("use sha256"), "{status} {body}");
    let (status, body) = answer("policy.tsq", "application/timestamp-query");
    assert!(status == 400 && body.contains("policy 1.2.3.4"), "{status} {body}");
    let (status, body) = answer("huge.bin", "application/timestamp-query");
    assert_eq!(status, 413, "an oversized body: {body}");
    let (status, _) = answer("good.tsq", "application/timestamp-query");
    assert_eq!(status, 200, "the node still answers after bad requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_configured_with_an_external_tsa_gets_its_signatures_stamped_there() {
    let dir = tempdir();
    let work = dir.path();
    let pki = TestPki::new(&work.join("pki"));
    let authority_toml = pki.tsa_toml(&work.join("pki"), "external-tsa");
    let mut authority = TestNode::start_with(&work.join("authority"), &pki.ca_pem_path, &authority_toml, "");
    let external = format!("[tsa]\nurl = \"{}/tsa\"\n", authority.http_url);
    let node = TestNode::start_with(&work.join("node"), &pki.ca_pem_path, &external, "");

    let signer = register_signer(&node, &pki.issue(&signer_spec("Lê Văn Cường", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let content = document(21, 10_000);
    upload(&node, "d-external", AGENCY, &[("x.bin", &content)]).await.unwrap();
    let certification = node.signing().await.certify(certify_request("c-external", &content, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let cms = certification.cms_signature;

    let token = kyso::crypto::cms::signature_timestamp_token(&cms).unwrap().expect("the detached CMS carries a signature-time-stamp");
    let tsa_certificate = pem::parse(std::fs::read(work.join("pki/external-tsa.pem")).unwrap()).unwrap().into_contents();
    assert!(token.windows(tsa_certificate.len()).any(|window| window == tsa_certificate), "the token embeds the external TSA's certificate");
    std::fs::write(work.join("token.der"), &token).unwrap();
    std::fs::write(work.join("signature-value.bin"), kyso::crypto::signature_value(&cms).unwrap()).unwrap();
    let ca = pki.ca_pem_path.display().to_string();
    let (ok, verified) = run("openssl", &["ts", "-verify", "-data", &path(work, "signature-value.bin"), "-in", &path(work, "token.der"), "-token_in", "-CAfile", &ca]);
    println!("openssl ts -verify (external TSA token over the SignatureValue): {}", verified.trim());
    assert!(ok && verified.contains("Verification: OK"), "the external token does not cover the signature value:\n{verified}");

    std::fs::write(work.join("sig.p7s"), &cms).unwrap();
    std::fs::write(work.join("doc.bin"), &content).unwrap();
    let (ok, cades) = run(
        "openssl",
        &["cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-cades", "-out", "/dev/null", "-in", &path(work, "sig.p7s"), "-content", &path(work, "doc.bin"), "-CAfile", &ca],
    );
    assert!(ok && cades.contains("Verification successful"), "openssl cms -verify -cades: {cades}");

    let answered = node.verification().await.verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::File(content.clone())), correlation_id: String::new(), ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(answered.certifications[0].summary, "valid", "kyso verify checks the stamped CMS");
    let stamped_at = answered.certifications[0].signature_timestamp_unix;
    let signed_at = answered.certifications[0].certification.as_ref().unwrap().signed_at_unix;
    assert!((signed_at..=now_unix()).contains(&stamped_at), "verify reports the token's genTime {stamped_at}, after signing at {signed_at}");

    std::fs::write(work.join("small.bin"), b"\x30\x00").unwrap();
    let (status, _, body) = post(&format!("{}/tsa", node.http_url), "application/timestamp-query", &path(work, "small.bin"), &path(work, "answer"));
    assert!(status == 404 && String::from_utf8_lossy(&body).contains("[tsa] cert_file"), "a node without its own authority: {status}");

    authority.stop();
    let other = document(22, 10_000);
    upload(&node, "d-external-2", AGENCY, &[("y.bin", &other)]).await.unwrap();
    let refused = node.signing().await.certify(certify_request("c-external-2", &other, AGENCY, &signer.signer_id)).await;
    assert_status(refused, tonic::Code::Unavailable, "time-stamping authority");
}
