//! Verify on a received PDF (issue 15, item 3) through a real node: the certified PDF kyso
//! delivered reports both signatures, valid, trusted and time-stamped, with its lookup
//! code; the same file after pyHanko appended an incremental update is reported changed
//! after both signatures, as pdfsig agrees; a changed signed byte is reported invalid;
//! garbage and oversized files get INVALID_ARGUMENT with a precise message. The public
//! page's file check (`POST /check`) shows the same in Vietnamese, 400 and 413 for bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kyso::crypto::KeyAlgorithm;
use kyso_proto::v1 as pb;

const AGENCY: &str = "xa-dong-hung";
/// Verify messages in this test's node: the received-pdf limit is this less 4 KiB.
const VERIFY_MESSAGE_SIZE_BYTES_MAX: usize = 1024 * 1024;

fn artefacts() -> PathBuf {
    artefacts_dir("received-pdf")
}


/// Appends an incremental update with pyHanko's own writer (an independent tool): a new
/// catalog entry, nothing signed.
fn append_update_with_pyhanko(path: &Path) {
    let script = [
        "import sys",
        "from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter",
        "from pyhanko.pdf_utils import generic",
        "with open(sys.argv[1], 'rb+') as f:",
        "    w = IncrementalPdfFileWriter(f)",
        "    w.root['/KysoTestChange'] = generic.NameObject('/AppendedByPyHanko')",
        "    w.update_root()",
        "    w.write_in_place()",
    ]
    .join("\n");
    let script = script.as_str();
    let output = Command::new("python3").args(["-c", script, path.to_str().unwrap()]).output().expect("python3 runs");
    assert!(output.status.success(), "pyhanko's incremental writer: {}", String::from_utf8_lossy(&output.stderr));
}

async fn verify_pdf(node: &TestNode, pdf: Vec<u8>) -> Result<pb::VerifyResponse, tonic::Status> {
    let request = pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Pdf(pdf)), correlation_id: "received".into(), ..Default::default() };
    node.verification().await.verify(request).await.map(tonic::Response::into_inner)
}

/// A node with its own TSA and an agency seal, and one certified PDF scan: the node, the
/// delivered PDF, its lookup code and the CA's PEM path.
async fn certified_pdf(dir: &Path) -> (TestNode, Vec<u8>, String, PathBuf) {
    let pki = TestPki::new(&dir.join("pki"));
    let top_level = format!("[agency_names]\n\"{AGENCY}\" = \"UBND xã Đông Hưng\"\n{}", pki.tsa_toml(&dir.join("pki"), "tsa"));
    let node = TestNode::start_with(&dir.join("node"), &pki.ca_pem_path, &top_level, &format!("verify_message_size_bytes_max = {VERIFY_MESSAGE_SIZE_BYTES_MAX}\n"));
    let signer = register_signer(&node, &pki.issue(&signer_spec("Trần Thị Bình", KeyAlgorithm::EcdsaP256)), &[AGENCY]).await.unwrap();
    let agency_certificate = pki.issue(&signer_spec("UBND xã Đông Hưng", KeyAlgorithm::EcdsaP256));
    let (cert_path, key_path) = (dir.join("agency.pem"), dir.join("agency.key"));
    std::fs::write(&cert_path, agency_certificate.cert_pem()).unwrap();
    std::fs::write(&key_path, agency_certificate.key_pem().as_bytes()).unwrap();
    let (ok, stdout, stderr) = kyso_cli_for(
        &node,
        &["agency", "seal", "--server", &node.grpc_url, "--agency", AGENCY, "--org-cert", cert_path.to_str().unwrap(), "--org-key", key_path.to_str().unwrap()],
    );
    assert!(ok, "kyso agency seal: {stdout}{stderr}");
    let scan = kyso::cli::dev::sample_pdf("received pdf");
    upload(&node, "dossier", AGENCY, &[("scan.pdf", &scan)]).await.unwrap();
    let certified = node.signing().await.certify(certify_request("c-1", &scan, AGENCY, &signer.signer_id)).await.unwrap().into_inner();
    let delivered = get_blob(&node, &certified.delivered_pdf_sha256).await.unwrap();
    (node, delivered, certified.lookup_code, pki.ca_pem_path.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_pdf_reports_each_signature_and_a_later_change_by_another_tool() {
    let dir = tempdir();
    let (node, delivered, code, ca_pem) = certified_pdf(dir.path()).await;

    // (a) The delivered PDF: two valid, trusted, time-stamped signatures; the performer's
    // covers its own revision, the agency's the whole file; both belong to the code.
    let answer = verify_pdf(&node, delivered.clone()).await.expect("verify the delivered pdf");
    assert_eq!(answer.correlation_id, "received");
    assert_eq!(answer.document_sha256, sha256(&delivered));
    let signatures = &answer.pdf_signatures;
    assert_eq!(signatures.iter().map(|signature| signature.field_name.as_str()).collect::<Vec<_>>(), ["kyso-performer", "kyso-agency"]);
    assert_eq!(signatures[0].signer_common_name, "Trần Thị Bình");
    assert_eq!(signatures[1].signer_common_name, "UBND xã Đông Hưng");
    for signature in signatures {
        assert!(signature.cryptographically_valid && signature.signer_trusted, "{signature:?}");
        assert!(signature.timestamp_unix > 0 && signature.timestamp_trusted, "PAdES B-T by the node's own TSA: {signature:?}");
        assert!(signature.signing_time_unix > 0 && signature.signer_certificate_sha256.len() == 32);
        assert!(!signature.changed_after_signature && signature.reason.is_empty(), "{signature:?}");
        assert_eq!(signature.lookup_code, code, "every signature inside the delivered pdf belongs to its certification");
        assert_eq!(signature.sub_filter, "ETSI.CAdES.detached");
    }
    assert!(!signatures[0].covers_whole_file, "the performer signed the revision before the agency's signature");
    assert!(signatures[1].covers_whole_file);
    assert_eq!(signatures[1].signed_revision_sha256, sha256(&delivered));
    assert_eq!(answer.certifications.len(), 1);
    assert_eq!(answer.certifications[0].summary, "valid");
    assert_eq!(answer.certifications[0].certification.as_ref().map(|certification| certification.lookup_code.as_str()), Some(code.as_str()));
    // The summary view: the same signature reports and verdict, without the evidence.
    let request = pb::VerifyRequest {
        subject: Some(pb::verify_request::Subject::Pdf(delivered.clone())),
        correlation_id: "received".into(),
        view: pb::VerifyView::Summary as i32,
    };
    let summary = node.verification().await.verify(request).await.expect("verify the delivered pdf, summary view").into_inner();
    assert_eq!(summary.pdf_signatures, answer.pdf_signatures);
    let mut expected = answer.clone();
    let evidence = &mut expected.certifications[0];
    assert!(evidence.inclusion.take().is_some(), "the full answer carries the proof");
    evidence.certification.as_mut().unwrap().cms_signature.clear();
    evidence.signer.as_mut().unwrap().certificate_chain_der.clear();
    assert_eq!(summary, expected);

    // (b) pyHanko appends an incremental update: both signatures still verify but the
    // file was changed after them; pdfsig agrees that neither signs the whole document.
    let (_nss, database) = nss_database_trusting(&ca_pem);
    let delivered_path = artefacts().join("delivered.pdf");
    std::fs::write(&delivered_path, &delivered).unwrap();
    let pdfsig = tool("pdfsig", &["-nssdir", &database, "-no-ocsp", delivered_path.to_str().unwrap()]);
    assert_eq!(pdfsig.matches("Total document signed").count(), 1, "pdfsig on the delivered pdf:\n{pdfsig}");
    let changed_path = artefacts().join("changed-by-pyhanko.pdf");
    std::fs::write(&changed_path, &delivered).unwrap();
    append_update_with_pyhanko(&changed_path);
    let changed = std::fs::read(&changed_path).unwrap();
    assert!(changed.len() > delivered.len() && changed.starts_with(&delivered), "an incremental update keeps the signed bytes");
    let pdfsig = tool("pdfsig", &["-nssdir", &database, "-no-ocsp", changed_path.to_str().unwrap()]);
    println!("pdfsig on the pdf pyHanko changed:\n{pdfsig}");
    assert_eq!(pdfsig.matches("Not total document signed").count(), 2, "pdfsig:\n{pdfsig}");
    assert_eq!(pdfsig.matches("Signature is Valid.").count(), 2, "pdfsig:\n{pdfsig}");
    let answer = verify_pdf(&node, changed.clone()).await.expect("verify the changed pdf");
    assert_eq!(answer.pdf_signatures.len(), 2);
    for signature in &answer.pdf_signatures {
        assert!(signature.cryptographically_valid && signature.changed_after_signature && !signature.covers_whole_file, "{signature:?}");
        assert_eq!(signature.lookup_code, code, "the delivered pdf is still a revision of the changed file");
    }

    // (b2) pyHanko adds a document time stamp (PAdES B-LTA's ETSI.RFC3161) from the node's
    // own /tsa: a third signature, checked, whose signer is the authority, over the whole
    // delivered PDF. pyHanko then appends a DSS revision after it, which is reported as a
    // change after every signature.
    let stamped_path = artefacts().join("document-timestamp.pdf");
    let tsa_url = format!("{}/tsa", node.http_url);
    let (ok, output) = tool_with_env(
        "pyhanko",
        &["sign", "timestamp", "--timestamp-url", &tsa_url, "--trust", ca_pem.to_str().unwrap(), "--trust-replace", delivered_path.to_str().unwrap(), stamped_path.to_str().unwrap()],
        &[],
    );
    assert!(ok, "pyhanko sign timestamp:\n{output}");
    let stamped = std::fs::read(&stamped_path).unwrap();
    let answer = verify_pdf(&node, stamped.clone()).await.expect("verify the time-stamped pdf");
    assert_eq!(answer.pdf_signatures.len(), 3, "{:?}", answer.pdf_signatures);
    let document_stamp = &answer.pdf_signatures[2];
    assert_eq!(document_stamp.sub_filter, "ETSI.RFC3161");
    assert!(document_stamp.cryptographically_valid && document_stamp.timestamp_trusted && document_stamp.signer_trusted, "{document_stamp:?}");
    assert!(document_stamp.timestamp_unix > 0 && document_stamp.reason.is_empty() && document_stamp.signing_time_unix == 0, "{document_stamp:?}");
    assert!(document_stamp.byte_range[2] + document_stamp.byte_range[3] > delivered.len() as u64, "the stamp covers the delivered pdf: {document_stamp:?}");
    assert_eq!(document_stamp.signer_common_name, "tsa");
    assert!(stamped[(document_stamp.byte_range[2] + document_stamp.byte_range[3]) as usize..].windows(4).any(|window| window == b"/DSS"), "what follows the stamp is pyHanko's DSS");
    assert!(answer.pdf_signatures.iter().all(|signature| signature.cryptographically_valid && signature.changed_after_signature), "{:?}", answer.pdf_signatures);
    let mut broken = stamped.clone();
    let at = broken.windows(8).position(|window| window == b"/MediaBox").unwrap_or(300) + 1;
    broken[at] ^= 0x01;
    let answer = verify_pdf(&node, broken).await.expect("a pdf with a broken time stamp still parses");
    let document_stamp = answer.pdf_signatures.last().expect("three signatures");
    assert!(!document_stamp.cryptographically_valid && document_stamp.reason.contains("changed inside what was signed"), "{document_stamp:?}");

    // (c) One changed byte inside the signed ranges: both signatures invalid.
    let mut tampered = delivered.clone();
    let position = tampered.windows(8).position(|window| window == b"/MediaBox").unwrap_or(300);
    tampered[position + 1] ^= 0x01;
    let answer = verify_pdf(&node, tampered).await.expect("a tampered pdf still parses");
    assert_eq!(answer.pdf_signatures.len(), 2);
    for signature in &answer.pdf_signatures {
        assert!(!signature.cryptographically_valid, "{signature:?}");
        assert!(signature.reason.contains("changed inside what was signed"), "{signature:?}");
        assert!(signature.reason_vi.contains("bị thay đổi"), "{signature:?}");
    }
    assert!(answer.certifications.is_empty(), "a tampered file matches no certification");

    // (d) Garbage, an unsigned pdf and an oversized file.
    let garbage = verify_pdf(&node, b"this is not a pdf at all".to_vec()).await;
    assert_status(garbage, tonic::Code::InvalidArgument, "the file is not a readable pdf (no %PDF- header in its first 1024 bytes)");
    let unsigned = verify_pdf(&node, kyso::cli::dev::sample_pdf("never signed")).await;
    assert_status(unsigned, tonic::Code::NotFound, "the pdf carries no signature");
    let limit = VERIFY_MESSAGE_SIZE_BYTES_MAX - 4096;
    let mut oversized = delivered.clone();
    oversized.resize(limit + 1, b' ');
    let oversized = verify_pdf(&node, oversized).await;
    assert_status(oversized, tonic::Code::InvalidArgument, &format!("the pdf is {} bytes, more than the limit of {limit} bytes", limit + 1));

    // The other subjects answer as before.
    let by_hash = node
        .verification()
        .await
        .verify(pb::VerifyRequest { subject: Some(pb::verify_request::Subject::Sha256(sha256(&delivered))), correlation_id: String::new(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_hash.certifications.len(), 1);
    assert!(by_hash.pdf_signatures.is_empty(), "only a pdf subject reports signatures");
}

/// A POST over a plain TCP stream (as `common::http_get`): the status code and the body.
async fn http_post(base: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccept-Language: vi\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The node may answer 413 and close before reading an oversized body to its end.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status line in {response:?}"));
    (status, response)
}

/// A browser's form submission of one file field named `file`.
fn multipart_form(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----kysotestboundary7MA4YWxkTrZu0gW";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"nhan-duoc.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_file_check_shows_each_signature_in_vietnamese() {
    let dir = tempdir();
    let (node, delivered, code, _) = certified_pdf(dir.path()).await;
    let url = node.http_url.clone();

    let home = http_get(&format!("{url}/")).await;
    assert!(home.contains("action=\"/check?lang=vi\"") && home.contains("enctype=\"multipart/form-data\""), "{home}");

    let (content_type, form) = multipart_form(&delivered);
    let (status, page) = http_post(&url, "/check", &content_type, &form).await;
    assert_eq!(status, 200, "{page}");
    for expected in ["Kết quả kiểm tra chữ ký số", "Chữ ký 1", "Chữ ký 2", "Người ký", "Trần Thị Bình", "UBND xã Đông Hưng", "Thời điểm ký", "Dấu thời gian", "Toàn bộ tệp được ký", "Chữ ký hợp lệ", &format!("/v/{code}?lang=vi")] {
        assert!(page.contains(expected), "{expected:?} missing from:\n{page}");
    }
    assert!(!page.contains("Tệp đã bị thay đổi sau khi ký"), "{page}");

    let changed_path = artefacts().join("public-changed.pdf");
    std::fs::write(&changed_path, &delivered).unwrap();
    append_update_with_pyhanko(&changed_path);
    let (content_type, form) = multipart_form(&std::fs::read(&changed_path).unwrap());
    let (status, page) = http_post(&url, "/check", &content_type, &form).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.matches("Tệp đã bị thay đổi sau khi ký").count(), 2, "{page}");
    assert!(!page.contains("Toàn bộ tệp được ký"), "{page}");

    let (content_type, form) = multipart_form(b"GIF89a not a pdf");
    let (status, page) = http_post(&url, "/check", &content_type, &form).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Tệp không phải PDF"), "{page}");

    let oversized = vec![b'%'; VERIFY_MESSAGE_SIZE_BYTES_MAX - 4096 + 1];
    let (status, page) = http_post(&url, "/check", "application/pdf", &oversized).await;
    assert_eq!(status, 413, "{page}");
    assert!(page.contains("Tệp quá lớn"), "{page}");
}
